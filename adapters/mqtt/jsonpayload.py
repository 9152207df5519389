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

from adapters.base import Sample
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


def decode_json(payload: bytes, fields: Sequence[JsonField], received_at: float) -> Decoded:
    """Decode one message into samples for ``fields``; never raises on bad input."""
    out = Decoded()
    try:
        doc = json.loads(payload, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        out.refusals.append((JsonRefusal.MALFORMED.value, type(exc).__name__))
        return out
    ts_cache: dict[Pointer, float | None] = {}
    for f in fields:
        raw = resolve(doc, f.pointer)
        if raw is _MISSING:
            out.refusals.append(
                (JsonRefusal.MISSING.value, f"{f.binding.tag}: no value at /{'/'.join(f.pointer)}")
            )
            continue
        if f.timestamp_pointer is None:
            ts: float | None = received_at
        elif f.timestamp_pointer in ts_cache:
            ts = ts_cache[f.timestamp_pointer]
        else:
            ts_raw = resolve(doc, f.timestamp_pointer)
            ts = None if ts_raw is _MISSING else _timestamp(ts_raw, f.timestamp_unit)
            ts_cache[f.timestamp_pointer] = ts
        if ts is None:
            out.refusals.append(
                (Refusal.BAD_TIMESTAMP.value, f"{f.binding.tag}: missing or implausible timestamp")
            )
            continue
        result = f.binding.sample(raw, ts)
        if isinstance(result, Sample):
            out.samples.append(result)
        else:
            out.refusals.append((result.value, f"{f.binding.tag}: {type(raw).__name__} {str(raw)[:40]}"))
    return out
