from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import DeadLetter
from adapters.mqtt.jsonpayload import JsonField
from adapters.mqtt.router import MqttRouter
from adapters.mqtt.sparkplug import DataType, Metric, MetricKey, Payload, encode_payload
from adapters.tagmap import TagBinding

TS = 1_700_000_000.0
RX = 1_700_000_100.0


def router(**kw: object) -> MqttRouter:
    return MqttRouter(
        {"site/hx1": [JsonField.of(TagBinding("t_hx1", offset=273.15), "/t", "/ts")]},
        {MetricKey("park", "chp", None, "P"): TagBinding("p", factor=1e5)},
        extra_subscriptions=["site/#"],
        **kw,  # type: ignore[arg-type]
    )


def test_subscriptions_cover_json_topics_sparkplug_groups_and_extras() -> None:
    assert router().subscriptions() == ["spBv1.0/park/#", "site/#"]  # site/hx1 is covered by site/#


def test_json_message_routes_to_samples() -> None:
    r = router()
    out = r.handle("site/hx1", json.dumps({"t": 20.0, "ts": TS}).encode(), RX)
    assert [(s.tag, s.value) for s in out.samples] == [("t_hx1", 293.15)]
    assert out.dead_letters == [] and r.counts["samples"] == 1


def test_unknown_topic_and_oversized_are_dead_lettered_with_reason() -> None:
    r = router(max_payload_bytes=100)
    out = r.handle("site/other", b"{}", RX)
    assert out.dead_letters == [DeadLetter("mqtt:site/other", RX, "unknown_topic", b"{}")]
    out = r.handle("site/hx1", b"x" * 101, RX)
    assert out.samples == [] and out.dead_letters[0].reason.startswith("oversized_payload")
    assert r.counts["unknown_topic"] == 1 and r.counts["oversized_payload"] == 1


def test_each_refusal_is_counted_and_kept() -> None:
    r = router()
    for payload in [
        b"{",
        b'{"t": "hot", "ts": 1700000000}',
        b'{"t": NaN, "ts": 1700000000}',
        b'{"ts": 1700000000}',
    ]:
        r.handle("site/hx1", payload, RX)
    assert {k: r.counts[k] for k in ("malformed_json", "wrong_type", "non_finite", "missing_pointer")} == {
        "malformed_json": 1,
        "wrong_type": 1,
        "non_finite": 1,
        "missing_pointer": 1,
    }


def test_redelivered_samples_are_dropped_as_duplicates() -> None:
    r = router(dedupe_window=4)
    msg = json.dumps({"t": 20.0, "ts": TS}).encode()
    assert len(r.handle("site/hx1", msg, RX).samples) == 1
    assert r.handle("site/hx1", msg, RX).samples == []
    assert r.counts["duplicates"] == 1
    for i in range(1, 6):  # push the first timestamp out of the window
        r.handle("site/hx1", json.dumps({"t": 20.0, "ts": TS + i}).encode(), RX)
    assert len(r.handle("site/hx1", msg, RX).samples) == 1


def test_sparkplug_gap_produces_rebirth_command_and_counts() -> None:
    r = router()
    birth = Payload(
        seq=0,
        timestamp=1_700_000_000_000,
        metrics=[Metric(name="P", alias=1, datatype=DataType.DOUBLE, value=1.0)],
    )
    assert len(r.handle("spBv1.0/park/NBIRTH/chp", encode_payload(birth), RX).samples) == 1
    data = Payload(
        seq=3, timestamp=1_700_000_001_000, metrics=[Metric(alias=1, datatype=DataType.DOUBLE, value=2.0)]
    )
    out = r.handle("spBv1.0/park/NDATA/chp", encode_payload(data), RX)
    assert [t for t, _ in out.commands] == ["spBv1.0/park/NCMD/chp"]
    assert r.counts["sparkplug_seq_gap"] == 1 and r.counts["rebirth_requests"] == 1
    out = r.handle("spBv1.0/park/NDATA/chp", b"\x0a", RX)
    assert out.dead_letters[0].reason.startswith("sparkplug_undecodable")


def test_filter_coverage() -> None:
    from adapters.mqtt.router import filter_covers

    assert filter_covers("site/#", "site/hx1")
    assert filter_covers("site/+", "site/hx1")
    assert filter_covers("#", "spBv1.0/park/#")
    assert not filter_covers("site/+", "site/hx1/t")
    assert not filter_covers("site/+", "site/#")
    assert not filter_covers("site/hx1", "site/hx2")
    assert not filter_covers("site/hx1/x", "site/hx1")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "site/hx1",
                    "site/other",
                    "spBv1.0/park/NBIRTH/chp",
                    "spBv1.0/park/NDATA/chp",
                    "spBv1.0/x",
                    "#",
                ]
            ),
            st.binary(max_size=120),
        ),
        max_size=6,
    )
)
def test_fuzz_router_never_raises(messages: list[tuple[str, bytes]]) -> None:
    r = router(max_payload_bytes=100)
    for topic, payload in messages:
        out = r.handle(topic, payload, RX)
        assert all(d.reason for d in out.dead_letters)
    assert r.snapshot().get("messages", 0) == len(messages)
