from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.mqtt.jsonpayload import JsonField, TimestampUnit, compile_pointer, decode_json, resolve
from adapters.tagmap import TagBinding

TS = 1_700_000_000.0
RX = 1_700_000_100.0


def fields(ts_pointer: str | None = "/ts", unit: TimestampUnit = TimestampUnit.SECONDS) -> list[JsonField]:
    return [
        JsonField.of(TagBinding("t", offset=273.15, lower=250.0, upper=450.0), "/temp", ts_pointer, unit),
        JsonField.of(TagBinding("p", factor=1e5), "/data/0/p", ts_pointer, unit),
    ]


def enc(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_pointer_compilation_and_escapes() -> None:
    assert compile_pointer("") == ()
    assert compile_pointer("/a~1b/c~0d/0") == ("a/b", "c~d", "0")
    doc = {"a/b": {"c~d": [5]}}
    assert resolve(doc, compile_pointer("/a~1b/c~0d/0")) == 5
    with pytest.raises(ValueError):
        compile_pointer("a/b")


def test_array_index_rules() -> None:
    doc = {"a": [1, 2]}
    assert resolve(doc, ("a", "1")) == 2
    missing = resolve(doc, ("a", "01"))
    assert missing is resolve(doc, ("a", "2")) is resolve(doc, ("a", "-1")) is resolve(doc, ("a", "x"))


def test_good_message_gives_si_samples_with_source_timestamp() -> None:
    d = decode_json(enc({"ts": TS, "temp": 80.0, "data": [{"p": 10}]}), fields(), RX)
    assert d.refusals == []
    assert [(s.tag, s.timestamp) for s in d.samples] == [("t", TS), ("p", TS)]
    assert [s.value for s in d.samples] == [pytest.approx(353.15), 1e6]


def test_without_timestamp_pointer_receive_time_is_used() -> None:
    d = decode_json(enc({"temp": 80.0, "data": [{"p": 1}]}), fields(None), RX)
    assert [s.timestamp for s in d.samples] == [RX, RX]


def test_millisecond_and_iso_timestamps() -> None:
    d = decode_json(
        enc({"ts": TS * 1000, "temp": 1, "data": [{"p": 1}]}), fields("/ts", TimestampUnit.MILLISECONDS), RX
    )
    assert d.samples[0].timestamp == TS
    d = decode_json(enc({"ts": "2023-11-14T22:13:20Z", "temp": 1, "data": [{"p": 1}]}), fields(), RX)
    assert d.samples[0].timestamp == TS


@pytest.mark.parametrize("ts", ["2023-11-14T22:13:20", "yesterday", TS * 1000, None, True, [TS]])
def test_bad_timestamps_are_refused(ts: object) -> None:
    d = decode_json(enc({"ts": ts, "temp": 1, "data": [{"p": 1}]}), fields(), RX)
    assert d.samples == []
    assert [r for r, _ in d.refusals] == ["bad_timestamp", "bad_timestamp"]


@pytest.mark.parametrize("payload", [b"{", b"not json", b"\xff\xfe\x00", b"", b"[" * 100_000])
def test_malformed_json_is_one_refusal(payload: bytes) -> None:
    d = decode_json(payload, fields(), RX)
    assert d.samples == [] and [r for r, _ in d.refusals] == ["malformed_json"]


def test_wrong_types_missing_pointers_and_partial_messages() -> None:
    d = decode_json(enc({"ts": TS, "temp": "80", "data": []}), fields(), RX)
    assert sorted(r for r, _ in d.refusals) == ["missing_pointer", "wrong_type"]
    d = decode_json(enc({"ts": TS, "temp": None, "data": [{"p": 2}]}), fields(), RX)
    assert [s.tag for s in d.samples] == ["p"]
    assert [r for r, _ in d.refusals] == ["wrong_type"]
    d = decode_json(enc([1, 2]), fields(), RX)
    assert [r for r, _ in d.refusals] == ["missing_pointer", "missing_pointer"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_refused(literal: str) -> None:
    payload = f'{{"ts": {TS}, "temp": {literal}, "data": [{{"p": 1}}]}}'.encode()
    d = decode_json(payload, fields(), RX)
    assert [s.tag for s in d.samples] == ["p"]
    assert [r for r, _ in d.refusals] == ["non_finite"]


def test_out_of_range_is_refused() -> None:
    d = decode_json(enc({"ts": TS, "temp": 500.0, "data": [{"p": 1}]}), fields(), RX)
    assert [r for r, _ in d.refusals] == ["out_of_range"]


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["ts", "temp", "data", "p", "0"]), children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_raise(payload: bytes) -> None:
    d = decode_json(payload, fields(), RX)
    assert all(math.isfinite(s.value) for s in d.samples)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_fuzz_json_documents_never_raise(doc: object) -> None:
    d = decode_json(json.dumps(doc).encode(), fields(), RX)
    assert len(d.samples) + len(d.refusals) >= 1
    for s in d.samples:
        assert math.isfinite(s.value) and math.isfinite(s.timestamp)


def shared_parent_fields() -> list[JsonField]:
    return [
        JsonField.of(TagBinding("a", offset=273.15, lower=250.0, upper=450.0), "/data/0/p", "/ts"),
        JsonField.of(TagBinding("b", factor=1e5), "/data/0/temp", "/ts"),
        JsonField.of(TagBinding("c"), "/data/1", "/ts", TimestampUnit.MILLISECONDS),
        JsonField.of(TagBinding("d"), "/temp"),
        JsonField.of(TagBinding("e"), ""),
    ]


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_compiled_decoder_matches_field_by_field(doc: object) -> None:
    payload = json.dumps(doc).encode()
    fs = shared_parent_fields()
    whole = decode_json(payload, fs, RX)
    parts = [decode_json(payload, [f], RX) for f in fs]
    assert sorted(map(repr, whole.samples)) == sorted(repr(s) for p in parts for s in p.samples)
    assert sorted(whole.refusals) == sorted(r for p in parts for r in p.refusals)
