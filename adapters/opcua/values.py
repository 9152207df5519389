"""Pure conversions between OPC UA values and symtwin numbers: typed Variants, quality, read-back checks.

No I/O here, so every rule is unit-tested without a server.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from typing import TypeVar

from asyncua import ua

from adapters.base import Quality
from adapters.opcua.config import DataType

_T = TypeVar("_T")

# Integer ranges of the built-in types (OPC 10000-6 §5.1.2).
_INT_RANGES: dict[DataType, tuple[int, int]] = {
    DataType.SBYTE: (-(2**7), 2**7 - 1),
    DataType.BYTE: (0, 2**8 - 1),
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38


class ValueRefused(ValueError):
    """A value cannot be represented in the node's type (out of range, not finite, not integral)."""


def variant_type(dt: DataType) -> ua.VariantType:
    return ua.VariantType(dt.value)


def data_type_of_node_id(node_id: ua.NodeId) -> DataType | None:
    """The built-in type a DataType attribute names, or None for anything else (structures, enums, String)."""
    if node_id.NamespaceIndex != 0 or not isinstance(node_id.Identifier, int):
        return None
    try:
        return DataType(node_id.Identifier)
    except ValueError:
        return None


def to_variant(value: float, dt: DataType) -> ua.Variant:
    """Build the Variant a write needs: the node's exact type, never a plain Python float.

    Integers are rounded to nearest; a value outside the type's range is refused, not wrapped.
    Booleans accept 0/1 (anything >= 0.5 is True). Float refuses magnitudes beyond float32.
    """
    if not math.isfinite(value):
        raise ValueRefused(f"{value} is not finite")
    vt = variant_type(dt)
    if dt is DataType.BOOLEAN:
        return ua.Variant(value >= 0.5, vt)
    if dt is DataType.DOUBLE:
        return ua.Variant(float(value), vt)
    if dt is DataType.FLOAT:
        if abs(value) > _FLOAT32_MAX:
            raise ValueRefused(f"{value} does not fit a Float (float32)")
        return ua.Variant(float(value), vt)
    lo, hi = _INT_RANGES[dt]
    n = round(value)
    if not lo <= n <= hi:
        raise ValueRefused(f"{value} is outside {dt.name.title()} range [{lo}, {hi}]")
    return ua.Variant(n, vt)


def as_number(value: object) -> float | None:
    """A scalar OPC UA value as float (bool → 0/1), or None when it is not a number."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def quality_of(status: ua.StatusCode | None) -> Quality:
    """Map an OPC UA status code to a quality by its severity bits (OPC 10000-4 §7.39)."""
    if status is None:
        return Quality.GOOD
    severity = (status.value >> 30) & 0x3
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def readback_matches(written: ua.Variant, read: object, dt: DataType, tolerance: float | None) -> bool:
    """Whether a read-back value confirms a write.

    Float nodes store float32, so the written double comes back rounded; compare against that rounding.
    """
    got = as_number(read)
    want = as_number(written.Value)
    if got is None or want is None:
        return False
    if tolerance is not None:
        return abs(got - want) <= tolerance
    if dt is DataType.FLOAT:
        return got == struct.unpack("f", struct.pack("f", want))[0]
    if dt is DataType.DOUBLE:
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    return got == want


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """Consecutive slices of at most ``size`` items (size >= 1)."""
    size = max(1, size)
    for i in range(0, len(items), size):
        yield items[i : i + size]


def effective_limit(server_limit: int | None, own_cap: int) -> int:
    """Items per call: the server's advertised operation limit, 0/absent meaning 'no limit', capped by ours."""
    if server_limit is None or server_limit <= 0:
        return own_cap
    return min(server_limit, own_cap)
