from __future__ import annotations

import contextlib
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import Sample
from adapters.mqtt.sparkplug import (
    REBIRTH_METRIC,
    DataType,
    Metric,
    MetricKey,
    Payload,
    SparkplugDecodeError,
    SparkplugHost,
    decode_payload,
    encode_payload,
    parse_topic,
)
from adapters.tagmap import TagBinding

MS = 1_700_000_000_000
RX = 1_700_000_100.0
G, E, D = "park", "chp", "boiler1"


def test_known_wire_bytes() -> None:
    # Hand-assembled protobuf: timestamp=1 (varint 300), seq=3 (5),
    # metric{name="a", alias=7, datatype=10, double_value=1.5}.
    metric = b"\x0a\x01a" + b"\x10\x07" + b"\x20\x0a" + b"\x69" + struct.pack("<d", 1.5)
    raw = b"\x08\xac\x02" + b"\x12" + bytes([len(metric)]) + metric + b"\x18\x05"
    p = decode_payload(raw)
    assert p.timestamp == 300 and p.seq == 5
    assert p.metrics == [Metric(name="a", alias=7, datatype=DataType.DOUBLE, value=1.5)]
    assert encode_payload(p) == raw


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        (DataType.INT8, -128),
        (DataType.INT16, -2),
        (DataType.INT32, -(2**31)),
        (DataType.INT64, -(2**63)),
        (DataType.UINT8, 255),
        (DataType.UINT32, 2**32 - 1),
        (DataType.UINT64, 2**64 - 1),
        (DataType.FLOAT, 0.5),
        (DataType.DOUBLE, -1e300),
        (DataType.BOOLEAN, True),
        (DataType.STRING, "läuft"),
    ],
)
def test_round_trip_each_datatype(datatype: DataType, value: int | float | bool | str) -> None:
    p = Payload(
        timestamp=MS,
        seq=255,
        metrics=[Metric(name="m", alias=2**40, timestamp=MS, datatype=datatype, value=value)],
    )  # type: ignore[arg-type]
    assert decode_payload(encode_payload(p)) == p


def test_int8_accepts_8_bit_two_complement_too() -> None:
    raw = b"\x12\x07" + b"\x20\x01" + b"\x50\xff\x01" + b"\x38\x00"  # int_value=0xFF, is_null=false
    assert decode_payload(raw).metrics[0].value == -1


def test_unknown_fields_are_skipped() -> None:
    raw = encode_payload(Payload(seq=1)) + b"\x22\x03abc" + b"\x2d\x00\x00\x00\x00"  # uuid, fixed32 ext
    assert decode_payload(raw).seq == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"\x08",
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        b"\x12\x05ab",
        b"\x0b",
        b"\x00\x01",
        b"\x12\x02\x0a\x05",
        b"\x12\x03\x0a\x01\xff",
        b"\x0a\x01a",
    ],
)
def test_malformed_payloads_raise_typed_error(raw: bytes) -> None:
    with pytest.raises(SparkplugDecodeError):
        decode_payload(raw)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decoder_only_raises_its_error(raw: bytes) -> None:
    with contextlib.suppress(SparkplugDecodeError):
        decode_payload(raw)


def test_topic_parsing() -> None:
    t = parse_topic(f"spBv1.0/{G}/DDATA/{E}/{D}")
    assert t is not None and (t.group, t.message_type, t.edge, t.device) == (G, "DDATA", E, D)
    assert parse_topic(f"spBv1.0/{G}/NDATA/{E}").device is None  # type: ignore[union-attr]
    assert parse_topic("spBv1.0/STATE/host") is None
    assert parse_topic("other/a/b/c") is None


# ------------------------------------------------------------------ host state


def host() -> SparkplugHost:
    return SparkplugHost(
        {
            MetricKey(G, E, None, "Steam/Pressure"): TagBinding("p_header", factor=1e5, lower=0, upper=50e5),
            MetricKey(G, E, D, "Load"): TagBinding("q_boiler", factor=1e6),
        },
        rebirth_retry_s=5.0,
    )


def nbirth(seq: int = 0, bd: int = 3) -> bytes:
    return encode_payload(
        Payload(
            timestamp=MS,
            seq=seq,
            metrics=[
                Metric(name="bdSeq", datatype=DataType.INT64, value=bd),
                Metric(name=REBIRTH_METRIC, datatype=DataType.BOOLEAN, value=False),
                Metric(name="Steam/Pressure", alias=1, datatype=DataType.FLOAT, value=10.0),
            ],
        )
    )


def dbirth(seq: int) -> bytes:
    return encode_payload(
        Payload(
            timestamp=MS,
            seq=seq,
            metrics=[Metric(name="Load", alias=2, datatype=DataType.DOUBLE, value=20.0)],
        )
    )


def ddata(seq: int, value: float, alias: int = 2, ts: int = MS + 1000) -> bytes:
    return encode_payload(
        Payload(
            timestamp=MS,
            seq=seq,
            metrics=[Metric(alias=alias, timestamp=ts, datatype=DataType.DOUBLE, value=value)],
        )
    )


def topic(kind: str, device: bool = False) -> str:
    return f"spBv1.0/{G}/{kind}/{E}" + (f"/{D}" if device else "")


def test_births_and_aliased_data_become_samples() -> None:
    h = host()
    r = h.handle(topic("NBIRTH"), nbirth(), RX)
    assert r.samples == [Sample("p_header", MS / 1000, 10e5)] and r.commands == [] and not r.seq_gap
    r = h.handle(topic("DBIRTH", True), dbirth(1), RX)
    assert r.samples == [Sample("q_boiler", MS / 1000, 20e6)]
    r = h.handle(topic("DDATA", True), ddata(2, 21.0), RX)
    assert r.samples == [Sample("q_boiler", MS / 1000 + 1, 21e6)] and r.refusals == [] and not r.seq_gap
    assert h.node_online(G, E)


def test_seq_wraps_at_255_without_a_gap() -> None:
    h = host()
    h.handle(topic("NBIRTH"), nbirth(seq=254), RX)
    r1 = h.handle(topic("DBIRTH", True), dbirth(255), RX)
    r2 = h.handle(topic("DDATA", True), ddata(0, 1.0), RX)
    assert not r1.seq_gap and not r2.seq_gap and r2.commands == []


def test_seq_gap_requests_one_rebirth_and_keeps_the_data() -> None:
    h = host()
    h.handle(topic("NBIRTH"), nbirth(), RX)
    h.handle(topic("DBIRTH", True), dbirth(1), RX)
    r = h.handle(topic("DDATA", True), ddata(5, 22.0), RX)
    assert r.seq_gap and len(r.samples) == 1
    assert len(r.commands) == 1
    cmd_topic, cmd = r.commands[0]
    assert cmd_topic == f"spBv1.0/{G}/NCMD/{E}"
    m = decode_payload(cmd).metrics[0]
    assert (m.name, m.datatype, m.value) == (REBIRTH_METRIC, DataType.BOOLEAN, True)
    # a second gap within the retry interval does not flood the node with requests
    r = h.handle(topic("DDATA", True), ddata(9, 23.0), RX + 1)
    assert r.seq_gap and r.commands == []
    r = h.handle(topic("DDATA", True), ddata(20, 23.0), RX + 6)
    assert len(r.commands) == 1
    # the rebirth resets the state
    h.handle(topic("NBIRTH"), nbirth(), RX + 7)
    r = h.handle(
        topic("NDATA"),
        encode_payload(
            Payload(seq=1, metrics=[Metric(alias=1, timestamp=MS, datatype=DataType.FLOAT, value=11.0)])
        ),
        RX + 7,
    )
    assert not r.seq_gap and r.samples == [Sample("p_header", MS / 1000, 11e5)]


def test_ndeath_takes_node_offline_and_requests_rebirth() -> None:
    h = host()
    h.handle(topic("NBIRTH"), nbirth(bd=3), RX)
    stale = encode_payload(Payload(metrics=[Metric(name="bdSeq", datatype=DataType.INT64, value=2)]))
    assert h.handle(topic("NDEATH"), stale, RX).commands == []
    assert h.node_online(G, E)
    death = encode_payload(Payload(metrics=[Metric(name="bdSeq", datatype=DataType.INT64, value=3)]))
    r = h.handle(topic("NDEATH"), death, RX)
    assert not h.node_online(G, E) and len(r.commands) == 1
    r = h.handle(topic("DDATA", True), ddata(1, 1.0), RX + 10)
    assert r.samples == [] and [c for c, _ in r.refusals] == ["sparkplug_no_birth"]


def test_data_before_birth_and_unknown_alias_request_rebirth() -> None:
    h = host()
    r = h.handle(topic("DDATA", True), ddata(7, 1.0), RX)
    assert [c for c, _ in r.refusals] == ["sparkplug_no_birth"] and len(r.commands) == 1
    h.handle(topic("NBIRTH"), nbirth(), RX + 10)
    r = h.handle(topic("NDATA"), ddata(1, 1.0, alias=99), RX + 10)
    assert [c for c, _ in r.refusals] == ["sparkplug_unknown_alias"] and len(r.commands) == 1


def test_bad_values_are_refused_with_reasons() -> None:
    h = host()
    h.handle(topic("NBIRTH"), nbirth(), RX)
    h.handle(topic("DBIRTH", True), dbirth(1), RX)
    r = h.handle(topic("DDATA", True), ddata(2, math.nan), RX)
    assert [c for c, _ in r.refusals] == ["non_finite"]
    r = h.handle(
        topic("NDATA"),
        encode_payload(
            Payload(seq=3, metrics=[Metric(alias=1, timestamp=MS, datatype=DataType.FLOAT, value=99.0)])
        ),
        RX,
    )
    assert [c for c, _ in r.refusals] == ["out_of_range"]
    r = h.handle(
        topic("NDATA"),
        encode_payload(
            Payload(seq=4, metrics=[Metric(alias=1, timestamp=MS, datatype=DataType.STRING, value="x")])
        ),
        RX,
    )
    assert [c for c, _ in r.refusals] == ["wrong_type"]
    r = h.handle(
        topic("NDATA"),
        encode_payload(
            Payload(seq=5, metrics=[Metric(alias=1, timestamp=MS, datatype=DataType.FLOAT, is_null=True)])
        ),
        RX,
    )
    assert [c for c, _ in r.refusals] == ["sparkplug_null_value"]
    r = h.handle(topic("DDATA", True), ddata(6, 1.0, ts=MS * 1000), RX)
    assert [c for c, _ in r.refusals] == ["bad_timestamp"]
    r = h.handle(topic("DDATA", True), b"\x12\x09garbage", RX)
    assert [c for c, _ in r.refusals] == ["sparkplug_undecodable"]


def test_commands_and_state_messages_are_ignored() -> None:
    h = host()
    assert h.handle(topic("NCMD"), b"\xff", RX).refusals == []
    assert h.handle(f"spBv1.0/{G}/STATE/{E}", b"", RX).refusals == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["NBIRTH", "DBIRTH", "NDATA", "DDATA", "NDEATH", "DDEATH"]),
            st.binary(max_size=60),
        ),
        max_size=8,
    )
)
def test_fuzz_host_never_raises(messages: list[tuple[str, bytes]]) -> None:
    h = host()
    h.handle(topic("NBIRTH"), nbirth(), RX)
    for kind, raw in messages:
        r = h.handle(topic(kind, device=kind.startswith("D")), raw, RX)
        assert all(math.isfinite(s.value) for s in r.samples)


def test_metric_key_from_config_binding() -> None:
    from adapters.mqtt.sparkplug import metric_key

    assert metric_key("spBv1.0/park/+/chp/boiler1", "Load") == MetricKey("park", "chp", "boiler1", "Load")
    assert metric_key("spBv1.0/park/NDATA/chp", "/Steam/Pressure") == MetricKey(
        "park", "chp", None, "Steam/Pressure"
    )
    for bad in ("park/NDATA/chp", "spBv1.0/+/NDATA/chp", "spBv1.0/park/NDATA/chp/a/b"):
        with pytest.raises(ValueError):
            metric_key(bad, "x")


metric_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
)
metrics = st.builds(
    Metric,
    name=st.one_of(st.none(), st.sampled_from(["Steam/Pressure", "Load", "bdSeq", "other"])),
    alias=st.one_of(st.none(), st.integers(min_value=0, max_value=4)),
    timestamp=st.one_of(st.none(), st.integers(min_value=0, max_value=2**64 - 1)),
    datatype=st.sampled_from(list(DataType)),
    is_null=st.booleans(),
    value=metric_values,
)
payloads = st.builds(
    Payload,
    timestamp=st.one_of(st.none(), st.integers(min_value=0, max_value=2**64 - 1)),
    metrics=st.lists(metrics, max_size=3),
    seq=st.one_of(st.none(), st.integers(min_value=0, max_value=300)),
)


def _encodable(p: Payload) -> bytes | None:
    try:
        return encode_payload(p)
    except (ValueError, TypeError, OverflowError, struct.error):
        return None  # e.g. a string value declared as Double: the encoder refuses it


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["NBIRTH", "DBIRTH", "NDATA", "DDATA", "NDEATH", "DDEATH"]), payloads),
        max_size=5,
    )
)
def test_fuzz_host_with_well_formed_payloads(messages: list[tuple[str, Payload]]) -> None:
    h = host()
    for kind, p in messages:
        raw = _encodable(p)
        if raw is None:
            continue
        r = h.handle(topic(kind, device=kind.startswith("D")), raw, RX)
        for s in r.samples:
            assert math.isfinite(s.value) and math.isfinite(s.timestamp)
        for cmd_topic, _ in r.commands:
            assert cmd_topic == f"spBv1.0/{G}/NCMD/{E}"
