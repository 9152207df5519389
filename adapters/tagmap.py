"""Tag mapping at the adapter edge: a protocol's raw value → :class:`Sample` in SI units.

Protocol-neutral (MQTT and OPC UA both use it). A :class:`TagBinding` says which tag a raw value belongs to,
how its engineering unit converts to SI (affine ``si = raw * factor + offset``, or a converter for the rare
non-affine case) and which SI range is plausible. Values are refused, not clamped: the caller counts the
:class:`Refusal` and keeps the input in its dead-letter store.

The unit table itself lives with the site config (``symtwin.units``); the lead maps a tag's engineering
unit to ``factor``/``offset`` when building bindings, so adapters never see unit names.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

from adapters.base import Quality, Sample

# Plausible source timestamps [s since the Unix epoch]: 2000-01-01 .. 2200-01-01. Outside this a timestamp
# is almost certainly in the wrong unit (ms read as s, or s read as ms).
TS_MIN_S = 946_684_800.0
TS_MAX_S = 7_258_118_400.0


class Refusal(enum.StrEnum):
    """Why an input value was refused (protocol-neutral reasons; adapters add their own)."""

    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    BAD_TIMESTAMP = "bad_timestamp"


@dataclass(frozen=True, slots=True)
class TagBinding:
    """How one raw value becomes one tag's SI value.

    tag: tag id from the site config.
    factor, offset: ``si = raw * factor + offset`` (e.g. degC → K: 1, 273.15; t/h → kg/s: 1/3.6, 0).
    lower, upper: plausible SI range [SI unit of the tag]; values outside are refused.
    converter: optional non-affine raw → SI function; replaces factor/offset when given.
    inverse: SI → raw for a converter (needed only to write setpoints through it).
    """

    tag: str
    factor: float = 1.0
    offset: float = 0.0
    lower: float = -math.inf
    upper: float = math.inf
    converter: Callable[[float], float] | None = None
    inverse: Callable[[float], float] | None = None

    def __post_init__(self) -> None:
        if not self.tag:
            raise ValueError("TagBinding.tag must be a non-empty tag id")
        if self.converter is None and (self.factor == 0.0 or not math.isfinite(self.factor)):
            raise ValueError(f"tag {self.tag}: factor must be finite and non-zero, got {self.factor}")
        if not math.isfinite(self.offset):
            raise ValueError(f"tag {self.tag}: offset must be finite, got {self.offset}")
        if self.lower > self.upper:
            raise ValueError(f"tag {self.tag}: lower bound {self.lower} is above upper bound {self.upper}")

    def to_si(self, raw: float) -> float:
        if self.converter is not None:
            return float(self.converter(raw))
        return raw * self.factor + self.offset

    def from_si(self, si: float) -> float:
        """SI value → raw engineering value (for setpoints going out)."""
        if self.converter is not None:
            if self.inverse is None:
                raise ValueError(f"tag {self.tag}: a converter without an inverse cannot write setpoints")
            return float(self.inverse(si))
        return (si - self.offset) / self.factor

    def in_bounds(self, si: float) -> bool:
        return self.lower <= si <= self.upper

    def sample(self, raw: object, timestamp: float, quality: Quality = Quality.GOOD) -> Sample | Refusal:
        """The Sample for a raw decoded value, or why it is refused.

        Numbers (and booleans, as 0/1 for on/off tags) are accepted; anything else is WRONG_TYPE.
        """
        if type(raw) is float:  # the common case first
            value = raw
        elif isinstance(raw, int | float):  # bool is an int: True → 1.0
            try:
                value = float(raw)
            except OverflowError:
                return Refusal.NON_FINITE
        else:
            return Refusal.WRONG_TYPE
        if quality is not Quality.GOOD and not math.isfinite(value):
            # A server that says the value is bad and sends NaN with it: a bad sample, which the service
            # acts on at once (fallback), not a malformed input set aside until the tag goes stale.
            return Sample(self.tag, timestamp, math.nan, quality)
        if self.converter is None:
            # A non-finite raw value, or an overflow in the conversion, both show up as a non-finite si.
            si = value * self.factor + self.offset
        else:
            if not math.isfinite(value):
                return Refusal.NON_FINITE
            try:
                si = float(self.converter(value))
            except (ArithmeticError, ValueError):
                return Refusal.NON_FINITE
        if not math.isfinite(si):
            return Refusal.NON_FINITE
        if not self.lower <= si <= self.upper:
            return Refusal.OUT_OF_RANGE
        return Sample(self.tag, timestamp, si, quality)


def plausible_timestamp(ts_s: float) -> bool:
    """True when a timestamp [s since the epoch] is finite and between 2000 and 2200."""
    return math.isfinite(ts_s) and TS_MIN_S <= ts_s <= TS_MAX_S
