"""What each party sees of a snapshot in the live view (the policy applied to frames, meta and units)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping

from adapters.base import Sample
from symtwin.governance.policy import Party, Resolution, SharingRule, TagGroup, TagInfo, build_policy
from symtwin.runtime.metrics import Metrics
from symtwin.runtime.state import Alarm, Flow, PlanView, Snapshot, TagStatus, TagView
from symtwin.web.app import _Client, _Hub
from symtwin.web.auth import Session, User
from symtwin.web.view import ExchangeInfo, PartyView, SiteInfo, UnitInfo, to_eng, trend

SITE = SiteInfo(
    "t",
    (("a", "A"), ("b", "B"), ("c", "C")),
    (
        UnitInfo("ua", "a", "surplus_heat"),
        UnitInfo("ub", "b", "storage_tank"),
        UnitInfo("uc", "c", "heat_demand"),
    ),
    (ExchangeInfo("x1", "a", "b", "ua", "ub", "waste_heat"),),
)
TAGS = [
    TagInfo("a.pub", "a"),
    TagInfo("a.agg", "a"),
    TagInfo("a.secret", "a"),
    TagInfo("a.sp", "a"),
]
POLICY = build_policy(
    [Party("a"), Party("b"), Party("c")],
    TAGS,
    [TagGroup("pub", ("a.pub",)), TagGroup("agg", ("a.agg",))],
    [
        SharingRule("pub", "b", Resolution.raw()),
        SharingRule("agg", "b", Resolution.aggregated(60.0)),
        SharingRule("pub", "c", Resolution.none()),
    ],
)


def tv(tag: str, value_si: float, t: float, eng: str = "degC", direction: str = "measurement") -> TagView:
    return TagView(
        tag,
        "a",
        "ua",
        "temperature",
        direction,
        "K",
        eng,
        value_si,
        to_eng(value_si, eng),
        t,
        TagStatus.OK,
        value_si + 0.5,
        0.2,
        None,
    )


def snap(t: float, v: float = 350.0, cycle: int = 1) -> Snapshot:
    tags = {
        "a.pub": tv("a.pub", v, t),
        "a.agg": tv("a.agg", v, t),
        "a.secret": tv("a.secret", v + 1, t),
        "a.sp": tv("a.sp", 0.5, t, "%", "setpoint"),
    }
    return Snapshot(
        t,
        "auto",
        tags,
        flows=(Flow("x1", "a", "b", "ua", "ub", "waste_heat", 2.5e6, 10.0),),
        unit_states={"ub": {"layer_01_t_k": 350.0}, "ua": {"fouling_m2k_w": 1e-4}},
        plans={
            "a.sp": PlanView("a.sp", (t, t + 900), (0.4, 0.6)),
            "a.secret": PlanView("a.secret", (t,), (1.0,)),
        },
        alarms=(
            Alarm("stale:a.secret", "warning", "a.secret stale", t),
            Alarm("fallback", "alarm", "fallback", t),
            Alarm("stale:a.pub", "warning", "a.pub stale", t, ("a.pub",)),
        ),
        cycle=cycle,
        wall_time=t,
    )


def test_owner_sees_everything_raw_in_engineering_units() -> None:
    view = PartyView("a", POLICY, SITE)
    s = snap(1000.0)
    view.update(s)
    f = view.frame(s)
    assert set(f["tags"]) == {"a.pub", "a.agg", "a.secret", "a.sp"}
    value, est, std, status, _ovr, _ts = f["tags"]["a.pub"]
    assert abs(value - 76.85) < 1e-9 and abs(est - 77.35) < 1e-9 and std == 0.2 and status == "ok"
    assert (
        f["tags"]["a.sp"][0] == 50.0 and abs(f["tags"]["a.sp"][1] - 100.0) < 1e-9
    )  # 0.5 → 50 %, 1.0 → 100 %
    assert f["flows"] == [["x1", 2.5, 36.0]]  # MW, t/h
    assert f["states"] == {"ua": {"fouling_m2k_w": 1e-4}}  # ub is b's unit
    assert f["plans"]["a.sp"]["planned"] == [40.0, 60.0]
    assert {a["key"] for a in f["alarms"]} == {"stale:a.secret", "fallback", "stale:a.pub"}


def test_recipient_sees_only_what_the_policy_grants() -> None:
    view = PartyView("b", POLICY, SITE)
    s = snap(1000.0)
    view.update(s)
    f = view.frame(s)
    body = json.dumps(f) + json.dumps(view.meta(s)) + view.frame_event(s).decode()
    assert "a.secret" not in body and "a.sp" not in body  # not even the id
    assert set(f["tags"]) == {"a.pub"}
    assert "a.agg" not in f["tags"] and f["agg"] == {}  # no closed interval yet
    assert view.meta(s)["tags"]["a.agg"]["resolution"] == "aggregated"
    assert f["flows"] == [["x1", 2.5, 36.0]]  # b receives this exchange
    assert f["states"] == {"ub": {"layer_01_t_k": 350.0}}
    assert f["plans"] == {}
    assert {a["key"] for a in f["alarms"]} == {"fallback", "stale:a.pub"}


def test_third_party_sees_no_tag_and_no_flow_value() -> None:
    view = PartyView("c", POLICY, SITE)
    s = snap(1000.0)
    view.update(s)
    f = view.frame(s)
    assert f["tags"] == {} and f["agg"] == {} and f["states"] == {} and f["plans"] == {}
    assert f["flows"] == [["x1", None, None]]
    assert view.meta(s)["tags"] == {}
    assert view.meta(s)["exchanges"][0]["shared"] is False


def test_aggregate_released_only_after_its_interval_closes() -> None:
    view = PartyView("b", POLICY, SITE)
    for k, t in enumerate([1200.0, 1210.0, 1230.0, 1259.0]):
        s = snap(t, 300.0 + 10 * k, cycle=k)
        view.update(s)
        assert view.frame(s)["agg"] == {}
    s = snap(1261.0, 400.0, cycle=9)
    view.update(s)
    end, mean, lo, hi = view.frame(s)["agg"]["a.agg"]
    assert end == 1260.0
    assert abs(mean - (315.0 - 273.15)) < 1e-6 and abs(lo - 26.85) < 1e-6 and abs(hi - 56.85) < 1e-6
    assert "a.agg" not in view.frame(s)["tags"]  # never the raw value


class History:
    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def query(self, tag: str, start: float, end: float, max_points: int = 1000) -> list[Sample]:
        return [s for s in self.samples if s.tag == tag and start <= s.timestamp < end][:max_points]


def test_seed_from_history_gives_the_last_closed_interval() -> None:
    hist = History([Sample("a.agg", 1200.0 + k, 300.0 + k) for k in range(0, 90, 5)])
    view = PartyView("b", POLICY, SITE)
    view.seed(hist, now=1290.0)
    s = snap(1290.0, cycle=3)
    view.update(s)
    end, _mean, lo, hi = view.frame(s)["agg"]["a.agg"]
    assert end == 1260.0 and abs(lo - (300.0 - 273.15)) < 1e-9 and abs(hi - (355.0 - 273.15)) < 1e-9


def test_trend_respects_resolution() -> None:
    hist = History(
        [Sample(t, 1000.0 + k, 300.0 + k) for t in ("a.pub", "a.agg", "a.secret") for k in range(0, 180, 10)]
    )
    view = PartyView("b", POLICY, SITE)
    raw = trend(view, hist, "a.pub", "degC", now=1180.0, hours=1.0)
    assert raw is not None and raw["resolution"] == "raw" and len(raw["points"]) == 18
    agg = trend(view, hist, "a.agg", "degC", now=1180.0, hours=1.0)
    assert agg is not None and agg["resolution"] == "aggregated"
    assert [p[0] for p in agg["points"]] == [1020.0, 1080.0, 1140.0]  # the open bin to 1200 is held back
    assert trend(view, hist, "a.secret", "degC", now=1180.0, hours=1.0) is None


def test_to_eng() -> None:
    assert to_eng(373.15, "degC") == 100.0
    assert to_eng(None, "MW") is None and to_eng(float("nan"), "MW") is None
    assert to_eng(2e6, "MW") == 2.0


class Source:
    def __init__(self) -> None:
        self.t = 1000.0
        self.current = snap(self.t)

    def snapshot(self) -> Snapshot:
        return self.current

    def advance(self) -> None:
        self.t += 1.0
        self.current = snap(self.t, cycle=int(self.t))


async def test_slow_client_keeps_only_the_latest_frame() -> None:
    source = Source()
    hub = _Hub(source, {p: PartyView(p, POLICY, SITE) for p in ("a", "b")}, None, Metrics())
    hub.seeded = True  # no history to seed from
    hub.current()
    client = _Client(Session("s", User("u", "b", "viewer", "x"), "c", 0.0, 1e12))
    hub.clients["b"].add(client)
    for _ in range(50):  # the client reads nothing meanwhile
        source.advance()
        hub.step()
    assert client.dropped == 49 and hub.frames_dropped == 49
    assert client.pending is not None and f'"t":{source.t}'.encode() in client.pending
    assert client.event.is_set()
    hub.step()  # no new snapshot: nothing to send
    assert client.dropped == 49
    await asyncio.sleep(0)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str], list[float]]] = []

    def shared(
        self, recipient: str, channel: str, tags: Mapping[str, str], times: Iterable[float], now: float
    ) -> None:
        self.calls.append((recipient, channel, dict(tags), list(times)))


def test_deliveries_of_foreign_data_are_recorded() -> None:
    source = Source()
    rec = Recorder()
    hub = _Hub(source, {p: PartyView(p, POLICY, SITE) for p in ("a", "b")}, None, Metrics(), rec)
    hub.seeded = True
    hub.current()
    hub.clients["a"].add(_Client(Session("s1", User("u", "a", "viewer", "x"), "c", 0.0, 1e12)))
    source.advance()
    hub.step()
    assert rec.calls == []  # a receives only its own data
    hub.clients["b"].add(_Client(Session("s2", User("v", "b", "viewer", "x"), "c", 0.0, 1e12)))
    source.advance()
    hub.step()
    assert rec.calls == [("b", "live", {"a.pub": "raw", "a.agg": "aggregated 1min"}, [source.t])]
