"""Checks every historian applies before a sample is stored; a failed check names its reason.

Reasons are short stable phrases (counted per reason); details follow after ": ".
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from adapters.base import DeadLetter, Quality, Sample

# Line protocol stores int64 nanoseconds: 1677-09-21 .. 2262-04-11. We also refuse times before 1970.
MAX_TIMESTAMP_S = (2**63 - 1) / 1e9

REASON_NOT_A_SAMPLE = "not a sample"
REASON_NON_FINITE = "non-finite value"
REASON_OUT_OF_RANGE = "value out of range"
REASON_BAD_TIMESTAMP = "timestamp out of range"
REASON_BAD_TAG = "invalid tag id"
REASON_BAD_QUALITY = "invalid quality"
REASON_REFUSED_BY_STORE = "refused by store"


def check_sample(sample: object, bounds: Mapping[str, tuple[float, float]] | None = None) -> str | None:
    """The reason ``sample`` cannot be stored, or None if it can.

    bounds: optional plausible range per tag id [SI units]; values outside are refused.
    """
    if not isinstance(sample, Sample):
        return f"{REASON_NOT_A_SAMPLE}: {type(sample).__name__}"
    tag = sample.tag
    if not isinstance(tag, str) or not tag or "\n" in tag or "\r" in tag or tag.endswith("\\"):
        return f"{REASON_BAD_TAG}: {tag!r}"
    try:
        value = float(sample.value)
        ts = float(sample.timestamp)
        quality = int(sample.quality)
    except (TypeError, ValueError) as e:
        return f"{REASON_NOT_A_SAMPLE}: {e}"
    if not math.isfinite(value):
        return f"{REASON_NON_FINITE}: {value}"
    if not (0.0 <= ts < MAX_TIMESTAMP_S):
        return f"{REASON_BAD_TIMESTAMP}: {ts}"
    if quality not in (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD):
        return f"{REASON_BAD_QUALITY}: {quality}"
    if bounds is not None:
        lim = bounds.get(tag)
        if lim is not None and not (lim[0] <= value <= lim[1]):
            return f"{REASON_OUT_OF_RANGE}: {value} not in [{lim[0]}, {lim[1]}]"
    return None


def sample_payload(sample: object) -> bytes:
    """A readable JSON rendering of a refused item for the dead-letter store (never raises)."""
    if isinstance(sample, Sample):
        try:
            return json.dumps(
                {
                    "tag": str(sample.tag),
                    "timestamp": sample.timestamp,
                    "value": sample.value,
                    "quality": int(sample.quality),
                },
                allow_nan=True,
                default=str,
            ).encode()
        except (TypeError, ValueError):
            pass
    return repr(sample).encode(errors="replace")


def dead_letter(source: str, received_at: float, reason: str, item: object) -> DeadLetter:
    return DeadLetter(source=source, received_at=received_at, reason=reason, payload=sample_payload(item))
