"""Pure OPC UA value rules: typed Variants for writes, quality from status codes, read-back, chunking."""

from __future__ import annotations

import math
import struct

import pytest
from asyncua import ua

from adapters.base import Quality
from adapters.opcua.config import DataType
from adapters.opcua.values import (
    ValueRefused,
    as_number,
    chunks,
    data_type_of_node_id,
    effective_limit,
    quality_of,
    readback_matches,
    to_variant,
)


@pytest.mark.parametrize(
    ("dt", "value", "expected", "vtype"),
    [
        (DataType.DOUBLE, 1.25, 1.25, ua.VariantType.Double),
        (DataType.FLOAT, 1.1, 1.1, ua.VariantType.Float),
        (DataType.INT16, 12.4, 12, ua.VariantType.Int16),
        (DataType.INT16, -32768.0, -32768, ua.VariantType.Int16),
        (DataType.UINT16, 65535.0, 65535, ua.VariantType.UInt16),
        (DataType.BOOLEAN, 1.0, True, ua.VariantType.Boolean),
        (DataType.BOOLEAN, 0.0, False, ua.VariantType.Boolean),
    ],
)
def test_to_variant_uses_the_node_type(
    dt: DataType, value: float, expected: object, vtype: ua.VariantType
) -> None:
    v = to_variant(value, dt)
    assert v.VariantType == vtype
    assert v.Value == expected
    assert type(v.Value) is type(expected)


@pytest.mark.parametrize(
    ("dt", "value"),
    [
        (DataType.INT16, 32768.0),
        (DataType.INT16, -32769.0),
        (DataType.UINT16, -1.0),
        (DataType.BYTE, 256.0),
        (DataType.FLOAT, 1e39),
        (DataType.DOUBLE, math.nan),
        (DataType.INT32, math.inf),
    ],
)
def test_to_variant_refuses_what_does_not_fit(dt: DataType, value: float) -> None:
    with pytest.raises(ValueRefused):
        to_variant(value, dt)


def test_to_variant_encodes_on_the_wire() -> None:
    # The Variant must serialise as the declared type (an Int16 with an int, not a Double).
    v = to_variant(7.0, DataType.INT16)
    data = ua.ua_binary.variant_to_binary(v)
    assert data[0] == ua.VariantType.Int16.value
    assert len(data) == 1 + 2


def test_quality_by_severity_bits() -> None:
    assert quality_of(ua.StatusCode(ua.UInt32(ua.StatusCodes.Good))) is Quality.GOOD
    assert quality_of(None) is Quality.GOOD
    assert quality_of(ua.StatusCode(ua.UInt32(ua.StatusCodes.UncertainLastUsableValue))) is Quality.UNCERTAIN
    assert quality_of(ua.StatusCode(ua.UInt32(ua.StatusCodes.BadSensorFailure))) is Quality.BAD
    assert quality_of(ua.StatusCode(ua.UInt32(ua.StatusCodes.BadCommunicationError))) is Quality.BAD


def test_as_number() -> None:
    assert as_number(True) == 1.0
    assert as_number(False) == 0.0
    assert as_number(3) == 3.0
    assert as_number(2.5) == 2.5
    assert as_number("2.5") is None
    assert as_number(None) is None
    assert as_number([1.0]) is None


def test_readback_float_compares_at_float32_precision() -> None:
    written = to_variant(1.1, DataType.FLOAT)
    stored = struct.unpack("f", struct.pack("f", 1.1))[0]
    assert stored != 1.1
    assert readback_matches(written, stored, DataType.FLOAT, None)
    assert not readback_matches(written, 1.2, DataType.FLOAT, None)


def test_readback_integer_bool_and_tolerance() -> None:
    assert readback_matches(to_variant(5, DataType.INT16), 5, DataType.INT16, None)
    assert not readback_matches(to_variant(5, DataType.INT16), 6, DataType.INT16, None)
    assert readback_matches(to_variant(1, DataType.BOOLEAN), True, DataType.BOOLEAN, None)
    assert not readback_matches(to_variant(1, DataType.BOOLEAN), False, DataType.BOOLEAN, None)
    assert readback_matches(to_variant(10.0, DataType.DOUBLE), 10.04, DataType.DOUBLE, 0.05)
    assert not readback_matches(to_variant(10.0, DataType.DOUBLE), 10.06, DataType.DOUBLE, 0.05)
    assert not readback_matches(to_variant(10.0, DataType.DOUBLE), "10", DataType.DOUBLE, None)


def test_data_type_of_node_id() -> None:
    assert data_type_of_node_id(ua.NodeId.from_string("i=10")) is DataType.FLOAT
    assert data_type_of_node_id(ua.NodeId.from_string("i=4")) is DataType.INT16
    assert data_type_of_node_id(ua.NodeId.from_string("i=12")) is None  # String
    assert data_type_of_node_id(ua.NodeId.from_string("ns=2;i=10")) is None
    assert data_type_of_node_id(ua.NodeId.from_string("ns=0;s=Float")) is None


def test_chunks_cover_everything_in_order_within_the_limit() -> None:
    items = list(range(23))
    parts = list(chunks(items, 5))
    assert [len(p) for p in parts] == [5, 5, 5, 5, 3]
    assert [x for p in parts for x in p] == items
    assert list(chunks([], 5)) == []
    assert [len(p) for p in chunks(items, 0)] == [1] * 23


def test_effective_limit() -> None:
    assert effective_limit(None, 1000) == 1000
    assert effective_limit(0, 1000) == 1000  # 0 means "no limit" (OPC 10000-5)
    assert effective_limit(50, 1000) == 50
    assert effective_limit(5000, 1000) == 1000
