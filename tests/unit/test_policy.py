from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import Quality, Sample
from symtwin.governance.policy import (
    Party,
    PolicyError,
    Resolution,
    SharingRule,
    StreamFilter,
    TagGroup,
    TagInfo,
    aggregate_series,
    build_policy,
    format_interval,
    parse_interval,
    parse_resolution,
    split_output_name,
    validate_policy,
)

PARTIES = [Party("powerco"), Party("pharma"), Party("utility")]
TAGS = [
    TagInfo("pc.steam_flow", "powerco"),
    TagInfo("pc.boiler_load", "powerco"),
    TagInfo("pc.fuel_cost", "powerco"),
    TagInfo("ph.steam_demand", "pharma"),
    TagInfo("ut.dh_supply_t", "utility"),
]
GROUPS = [
    TagGroup("pc_exchange", ("pc.steam_flow",)),
    TagGroup("pc_ops", ("pc.boiler_load",)),
    TagGroup("ph_all", ("ph.steam_demand",)),
]
RULES = [
    SharingRule("pc_exchange", "pharma", Resolution.raw()),
    SharingRule("pc_ops", "pharma", Resolution.aggregated(900)),
    SharingRule("pc_exchange", "utility", Resolution.aggregated(3600)),
    SharingRule("ph_all", "powerco", Resolution.raw()),
]


def policy():
    return build_policy(PARTIES, TAGS, GROUPS, RULES)


def test_parse_interval_and_resolution():
    assert parse_interval("15 min") == 900
    assert parse_interval("1h") == 3600
    assert parse_interval("30 s") == 30
    assert parse_interval("2 days") == 172800
    assert parse_interval(60) == 60
    for bad in ("", "fifteen minutes", "15 parsecs", "0 min", "-1 h"):
        with pytest.raises(ValueError):
            parse_interval(bad)
    assert parse_resolution("raw") == Resolution.raw()
    assert parse_resolution("none") == Resolution.none()
    assert parse_resolution({"aggregated": "15 min"}) == Resolution.aggregated(900)
    with pytest.raises(ValueError):
        parse_resolution({"aggregated": "15 min", "extra": 1})
    with pytest.raises(ValueError):
        parse_resolution("hourly")
    with pytest.raises(ValueError):
        Resolution.aggregated(0)


def test_format_interval_and_names_round_trip():
    assert [format_interval(x) for x in (900, 3600, 86400, 45, 90, 0.5)] == [
        "15min",
        "1h",
        "1d",
        "45s",
        "90s",
        "0.5s",
    ]
    assert split_output_name("pc.boiler_load:mean_15min") == ("pc.boiler_load", "mean", "15min")
    assert split_output_name("pc.boiler_load") == ("pc.boiler_load", None, None)
    assert split_output_name("odd:name") == ("odd:name", None, None)


def test_valid_policy_has_no_issues_and_owner_sees_own_raw():
    p = policy()
    assert validate_policy(PARTIES, TAGS, GROUPS, RULES) == []
    assert p.resolution("pc.fuel_cost", "powerco") == Resolution.raw()
    assert p.resolution("pc.fuel_cost", "pharma") == Resolution.none()  # in no group: default deny
    assert p.resolution("pc.boiler_load", "pharma") == Resolution.aggregated(900)
    assert p.resolution("pc.steam_flow", "utility") == Resolution.aggregated(3600)
    assert p.resolution("ph.steam_demand", "utility") == Resolution.none()
    assert set(p.grants("pharma")) == {"ph.steam_demand", "pc.steam_flow", "pc.boiler_load"}
    assert p.shared_by("powerco") == {
        "pharma": {"pc.steam_flow": Resolution.raw(), "pc.boiler_load": Resolution.aggregated(900)},
        "utility": {"pc.steam_flow": Resolution.aggregated(3600)},
    }


def test_validation_reports_unknown_references_with_paths():
    groups = [*GROUPS, TagGroup("ghost", ("pc.nope",))]
    rules = [
        *RULES,
        SharingRule("pc_exchange", "refinery", Resolution.raw()),
        SharingRule("missing", "pharma", Resolution.raw()),
    ]
    tags = [*TAGS, TagInfo("x.t", "nobody")]
    issues = validate_policy(PARTIES, tags, groups, rules)
    paths = {i.path for i in issues}
    assert ("sharing", "groups", 3, "tags", 0) in paths
    assert ("sharing", "rules", 4, "recipient") in paths
    assert ("sharing", "rules", 5, "group") in paths
    assert ("tags", 5, "owner") in paths
    assert any("refinery" in i.message for i in issues)


def test_validation_refuses_contradictions():
    # the same tag in two groups that reach pharma at different resolutions
    groups = [*GROUPS, TagGroup("pc_more", ("pc.steam_flow", "pc.fuel_cost"))]
    rules = [*RULES, SharingRule("pc_more", "pharma", Resolution.none())]
    issues = validate_policy(PARTIES, TAGS, groups, rules)
    assert len(issues) == 1
    assert issues[0].path == ("sharing", "rules", 4, "resolution")
    assert "pc.steam_flow" in issues[0].message and "sharing.rules[0]" in issues[0].message
    # the same resolution twice is not a contradiction
    ok_rules = [*RULES, SharingRule("pc_more", "pharma", Resolution.raw())]
    assert validate_policy(PARTIES, TAGS, groups, ok_rules) == []
    # an owner cannot be given less than raw on its own tags; a duplicate group id is refused
    issues = validate_policy(
        PARTIES,
        TAGS,
        [*GROUPS, TagGroup("pc_ops", ("pc.fuel_cost",))],
        [*RULES, SharingRule("pc_ops", "powerco", Resolution.none())],
    )
    assert {i.path for i in issues} == {("sharing", "groups", 3, "id"), ("sharing", "rules", 4, "resolution")}
    with pytest.raises(PolicyError) as err:
        build_policy(PARTIES, TAGS, groups, rules)
    assert "sharing.rules.4.resolution" in str(err.value)


def _s(tag, t, v, q=Quality.GOOD):
    return Sample(tag, t, v, q)


def test_filter_for_drops_withheld_passes_raw_and_aggregates():
    p = policy()
    samples = [
        _s("pc.steam_flow", 0.0, 50.0),
        _s("pc.fuel_cost", 0.0, 99.0),
        _s("pc.boiler_load", 10.0, 1.0),
        _s("pc.boiler_load", 890.0, 3.0),
        _s("pc.boiler_load", 900.0, 10.0),  # next interval
        _s("pc.boiler_load", 950.0, 99.0, Quality.BAD),  # bad quality never enters an aggregate
        _s("pc.boiler_load", 960.0, math.nan),
        _s("ph.steam_demand", 5.0, 7.0),
    ]
    out = p.filter_for("pharma", samples)
    names = [(s.tag, s.timestamp, s.value) for s in out]
    assert ("pc.steam_flow", 0.0, 50.0) in names
    assert ("ph.steam_demand", 5.0, 7.0) in names  # own tag, raw
    assert not any(n[0].startswith("pc.fuel_cost") for n in names)
    assert not any(n[0] == "pc.boiler_load" for n in names)  # never raw
    assert ("pc.boiler_load:mean_15min", 900.0, 2.0) in names
    assert ("pc.boiler_load:min_15min", 900.0, 1.0) in names
    assert ("pc.boiler_load:max_15min", 900.0, 3.0) in names
    assert ("pc.boiler_load:mean_15min", 1800.0, 10.0) in names
    assert {s.tag for s in out} <= p.visible_names("pharma")
    # an incomplete interval is held back when the caller says until when data is complete
    held = p.filter_for("pharma", samples, until=1000.0)
    assert not any(s.timestamp == 1800.0 for s in held)
    # utility sees only the hourly aggregate of the exchange flow
    assert [s.tag for s in p.filter_for("utility", samples)] == [
        "pc.steam_flow:mean_1h",
        "pc.steam_flow:min_1h",
        "pc.steam_flow:max_1h",
    ]


def test_aggregate_series_against_loop():
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 10_000, 500))
    v = rng.normal(size=500)
    ends, stats = aggregate_series(t, v, 600.0)
    for k, end in enumerate(ends):
        sel = (t >= end - 600) & (t < end)
        assert stats["mean"][k] == pytest.approx(v[sel].mean())
        assert stats["min"][k] == v[sel].min() and stats["max"][k] == v[sel].max()
    assert ends.size == len(set(np.floor(t / 600)))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 7200, allow_nan=False), st.floats(-1e6, 1e6, allow_nan=False)),
        min_size=0,
        max_size=60,
    )
)
def test_stream_filter_matches_batch_filter(points):
    p = policy()
    points = sorted(points)
    samples = [_s("pc.boiler_load", t, v) for t, v in points] + [_s("pc.fuel_cost", t, v) for t, v in points]
    stream = StreamFilter(p, "pharma")
    got = []
    for s in sorted(samples, key=lambda s: s.timestamp):
        got.extend(stream.push([s]))
    got.extend(stream.flush(1e9))
    want = p.filter_for("pharma", samples)
    key = lambda s: (s.tag, s.timestamp)  # noqa: E731
    assert [(s.tag, s.timestamp) for s in sorted(got, key=key)] == [
        (s.tag, s.timestamp) for s in sorted(want, key=key)
    ]
    for a, b in zip(sorted(got, key=key), sorted(want, key=key), strict=True):
        assert a.value == pytest.approx(b.value, rel=1e-9, abs=1e-6)


def test_stream_filter_releases_each_interval_once():
    f = StreamFilter(policy(), "pharma")
    assert f.push([_s("pc.boiler_load", 10.0, 1.0), _s("pc.steam_flow", 11.0, 5.0)]) == [
        _s("pc.steam_flow", 11.0, 5.0)
    ]
    assert f.flush(899.0) == []
    released = f.flush(900.0)
    assert [s.tag for s in released] == [
        "pc.boiler_load:mean_15min",
        "pc.boiler_load:min_15min",
        "pc.boiler_load:max_15min",
    ]
    # a late sample for the released interval must not re-open it
    assert f.push([_s("pc.boiler_load", 20.0, 100.0)]) == []
    assert f.flush(10_000.0) == []
    assert f.push([_s("pc.fuel_cost", 30.0, 1.0)]) == []


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_nothing_leaves_that_the_policy_withholds(data):
    parties = [Party(p) for p in ("a", "b", "c")]
    tags = [TagInfo(f"t{i}", data.draw(st.sampled_from("abc"))) for i in range(6)]
    groups = [TagGroup(f"g{i}", (f"t{i}",)) for i in range(6)]
    resolutions = st.sampled_from(
        [Resolution.raw(), Resolution.none(), Resolution.aggregated(60), Resolution.aggregated(600)]
    )
    rules = [
        SharingRule(f"g{i}", r, data.draw(resolutions))
        for i in range(6)
        for r in "abc"
        if r != tags[i].owner and data.draw(st.booleans())
    ]
    p = build_policy(parties, tags, groups, rules)
    samples = [_s(f"t{i}", float(t), float(t % 7)) for i in range(6) for t in range(0, 1200, 37)]
    for recipient in "abc":
        out = p.filter_for(recipient, samples)
        assert {s.tag for s in out} <= p.visible_names(recipient)
        for s in out:
            tag, stat, _ = split_output_name(s.tag)
            res = p.resolution(tag, recipient)
            assert res.kind.value == ("raw" if stat is None else "aggregated")
            if res.kind.value == "none":
                pytest.fail(f"{tag} withheld from {recipient} but sent")
        own = {t.id for t in tags if t.owner == recipient}
        assert own <= {s.tag for s in out}  # the owner always sees its own, raw
