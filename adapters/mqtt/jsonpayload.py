"""JSON payloads: one message carries one or more tags, each found by a JSON pointer (RFC 6901).

Pure functions (bytes → samples and refusals), separate from the MQTT client so they can be fuzzed.
A message's timestamp comes from an optional pointer per field (seconds or milliseconds since the epoch as
a number, or an ISO 8601 string with a UTC offset); without one the receive time is used.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from adapters.base import Quality, Sample
from adapters.tagmap import Refusal, TagBinding, plausible_timestamp


class JsonRefusal(enum.StrEnum):
    MALFORMED = "malformed_json"
    MISSING = "missing_pointer"


class TimestampUnit(enum.Enum):
    """Unit of a numeric timestamp field (strings are always ISO 8601)."""

    SECONDS = "s"
    MILLISECONDS = "ms"


Pointer = tuple[str, ...]


def compile_pointer(pointer: str) -> Pointer:
    """RFC 6901 JSON pointer → reference tokens (``"/a/b~1c"`` → ``("a", "b/c")``; ``""`` → whole document)."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must be empty or start with '/'")
    return tuple(tok.replace("~1", "/").replace("~0", "~") for tok in pointer[1:].split("/"))


_MISSING = object()


def resolve(doc: object, pointer: Pointer) -> object:
    """The value at ``pointer`` in ``doc``, or ``_MISSING``."""
    node = doc
    for tok in pointer:
        kind = type(node)  # json.loads builds plain dicts and lists; exact type checks are cheapest
        if kind is dict:
            node = node.get(tok, _MISSING)  # type: ignore[attr-defined]
            if node is _MISSING:
                return _MISSING
        elif kind is list:
            # RFC 6901: array indices are decimal without leading zeros.
            if not tok.isdigit() or not tok.isascii() or (len(tok) > 1 and tok[0] == "0"):
                return _MISSING
            i = int(tok)
            if i >= len(node):  # type: ignore[arg-type]
                return _MISSING
            node = node[i]  # type: ignore[index]
        else:
            return _MISSING
    return node


@dataclass(frozen=True, slots=True)
class JsonField:
    """One tag inside a JSON message: where its value is, where its timestamp is, how to convert it."""

    binding: TagBinding
    pointer: Pointer
    timestamp_pointer: Pointer | None = None
    timestamp_unit: TimestampUnit = TimestampUnit.SECONDS

    @classmethod
    def of(
        cls,
        binding: TagBinding,
        pointer: str,
        timestamp_pointer: str | None = None,
        timestamp_unit: TimestampUnit = TimestampUnit.SECONDS,
    ) -> JsonField:
        ts = compile_pointer(timestamp_pointer) if timestamp_pointer is not None else None
        return cls(binding, compile_pointer(pointer), ts, timestamp_unit)


@dataclass(slots=True)
class Decoded:
    """What a payload yielded: samples, and (reason code, detail) for each refused part."""

    samples: list[Sample] = field(default_factory=list)
    refusals: list[tuple[str, str]] = field(default_factory=list)


def _timestamp(raw: object, unit: TimestampUnit) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        try:
            ts = float(raw)
        except OverflowError:
            return None
        if unit is TimestampUnit.MILLISECONDS:
            ts /= 1000.0
    elif isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            return None
        if dt.tzinfo is None:  # a local time without offset is ambiguous: refuse rather than guess
            return None
        try:
            ts = dt.timestamp()
        except (OverflowError, OSError, ValueError):
            return None
    else:
        return None
    return ts if plausible_timestamp(ts) else None


def _refuse_constant(name: str) -> float:
    # NaN/Infinity are not JSON; parse them as non-finite floats so the tag check names them precisely.
    return math.nan if name == "NaN" else (math.inf if name == "Infinity" else -math.inf)


def _array_index(tok: str) -> int | None:
    # RFC 6901: array indices are decimal without leading zeros.
    if not tok.isdigit() or not tok.isascii() or (len(tok) > 1 and tok[0] == "0"):
        return None
    return int(tok)


_MISSING_DETAIL = "{}: no value at /{}"


class JsonDecoder:
    """A compiled decoder for one topic's fields.

    Fields sharing a parent (``/v/0`` … ``/v/9``) resolve the parent once per message, and a float value
    through an affine binding is converted inline; everything else goes the general way. The result is
    the same as decoding field by field.
    """

    def __init__(self, fields: Sequence[JsonField]) -> None:
        self.fields = tuple(fields)
        # ts key → parent pointer → [(leaf token, leaf index, field)]; dicts keep the fields' order.
        plan: dict[
            tuple[Pointer | None, TimestampUnit], dict[Pointer, list[tuple[str, int | None, JsonField]]]
        ] = {}
        for f in self.fields:
            parents = plan.setdefault((f.timestamp_pointer, f.timestamp_unit), {})
            if f.pointer:
                parents.setdefault(f.pointer[:-1], []).append((f.pointer[-1], _array_index(f.pointer[-1]), f))
            else:  # the whole document is the value
                parents.setdefault((), []).append(("", None, f))
        self._plan = [(ts_ptr, unit, list(parents.items())) for (ts_ptr, unit), parents in plan.items()]

    def decode(self, payload: bytes, received_at: float) -> Decoded:
        """Decode one message; never raises on bad input."""
        out = Decoded()
        try:
            doc = json.loads(payload, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            out.refusals.append((JsonRefusal.MALFORMED.value, type(exc).__name__))
            return out
        samples = out.samples
        refusals = out.refusals
        good = Quality.GOOD
        for ts_ptr, unit, parents in self._plan:
            if ts_ptr is None:
                ts: float | None = received_at
            else:
                ts_raw = resolve(doc, ts_ptr)
                ts = None if ts_raw is _MISSING else _timestamp(ts_raw, unit)
            for parent_ptr, leaves in parents:
                parent = resolve(doc, parent_ptr)
                kind = type(parent)
                for tok, idx, f in leaves:
                    if not f.pointer:
                        raw = parent
                    elif kind is dict:
                        raw = parent.get(tok, _MISSING)  # type: ignore[attr-defined]
                    elif kind is list and idx is not None and idx < len(parent):  # type: ignore[arg-type]
                        raw = parent[idx]  # type: ignore[index]
                    else:
                        raw = _MISSING
                    b = f.binding
                    if raw is _MISSING:
                        refusals.append(
                            (JsonRefusal.MISSING.value, _MISSING_DETAIL.format(b.tag, "/".join(f.pointer)))
                        )
                        continue
                    if ts is None:
                        refusals.append(
                            (Refusal.BAD_TIMESTAMP.value, f"{b.tag}: missing or implausible timestamp")
                        )
                        continue
                    if type(raw) is float and b.converter is None:
                        si = raw * b.factor + b.offset
                        # si - si is 0.0 only for finite si (inf - inf and NaN give NaN)
                        if si - si == 0.0 and b.lower <= si <= b.upper:
                            samples.append(Sample(b.tag, ts, si, good))
                            continue
                    result = b.sample(raw, ts)
                    if isinstance(result, Sample):
                        samples.append(result)
                    else:
                        refusals.append((result.value, f"{b.tag}: {type(raw).__name__} {str(raw)[:40]}"))
        return out


def decode_json(payload: bytes, fields: Sequence[JsonField], received_at: float) -> Decoded:
    """Decode one message into samples for ``fields``; never raises on bad input.

    (Compiles the fields each call; the router keeps a :class:`JsonDecoder` per topic instead.)
    """
    return JsonDecoder(fields).decode(payload, received_at)
