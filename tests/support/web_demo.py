"""A live-view backend for tests and benchmarks: the real web app fed by a moving snapshot source.

:class:`DemoSource` builds snapshots from a site config (configs/demo.yaml, configs/kalundborg.yaml):
every tag, exchange flow, tank layer, plan and alarm moves with wall time, so the page has something
to show. :class:`DemoControl` records operator commands and applies them to the next snapshots (mode,
overrides), so a test can check "the service obeys" through the page and API alone — which is also
how it will check the real ``symtwin sim`` service when that backend replaces this one.

:func:`serve_demo` runs the app in a thread with its own event loop on a free loopback port.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from adapters.base import Sample
from adapters.store.history import HistoryParams, LocalHistory
from symtwin.config import LoadedSite, load_site
from symtwin.governance.policy import Party, SharingPolicy, SharingRule, TagGroup, TagInfo, build_policy
from symtwin.runtime.metrics import Metrics
from symtwin.runtime.state import Alarm, Flow, PlanView, Snapshot, TagStatus, TagView
from symtwin.units import UNITS
from symtwin.web.app import WebConfig, bound_port, create_app, start_web
from symtwin.web.auth import User, hash_password
from symtwin.web.view import SiteInfo

ROOT = Path(__file__).resolve().parents[2]

# typical engineering values (centre, swing) per engineering unit, for tags without bounds
_TYPICAL = {
    "MW": (5.0, 1.0),
    "degC": (75.0, 4.0),
    "bar": (10.0, 0.3),
    "kg/s": (20.0, 2.0),
    "t/h": (150.0, 10.0),
    "%": (60.0, 10.0),
}


def _si(value_eng: float, eng_unit: str) -> float:
    d = UNITS.get(eng_unit)
    return value_eng if d is None else value_eng * d.factor + d.offset


@dataclass(frozen=True)
class DemoTag:
    id: str
    owner: str
    unit: str
    quantity: str
    direction: str
    si_unit: str
    eng_unit: str
    centre: float  # [eng]
    swing: float  # [eng]
    phase: float


def demo_tags(site: LoadedSite, extra: int = 0, extra_owner: str | None = None) -> list[DemoTag]:
    """The site's tags plus ``extra`` synthetic temperature tags owned by ``extra_owner``."""
    rng = random.Random(7)
    out = []
    for t in site.tags.values():
        if t.bounds_si is not None:
            lo, hi = (t.from_si(b) for b in t.bounds_si)
            centre, swing = (lo + hi) / 2, (hi - lo) / 6
        else:
            centre, swing = _TYPICAL.get(t.eng_unit, (1.0, 0.1))
        out.append(
            DemoTag(
                t.id,
                t.owner,
                t.unit,
                t.quantity,
                str(t.direction),
                t.si_unit,
                t.eng_unit,
                centre,
                swing,
                rng.uniform(0, 2 * math.pi),
            )
        )
    owner = extra_owner or site.config.parties[0].id
    units = [u.id for u in site.config.units if u.owner == owner] or [site.config.units[0].id]
    for i in range(extra):
        out.append(
            DemoTag(
                f"{owner}.synthetic.t{i:04d}",
                owner,
                units[i % len(units)],
                "temperature",
                "measurement",
                "K",
                "degC",
                60.0 + (i % 30),
                2.0,
                rng.uniform(0, 2 * math.pi),
            )
        )
    return out


def demo_policy(site: LoadedSite, tags: list[DemoTag]) -> SharingPolicy:
    """The site's sharing policy over the demo tags (synthetic ones private to their owner)."""
    cfg = site.config
    from symtwin.units import parse_quantity

    rules = []
    for r in cfg.sharing.rules:
        from symtwin.governance.policy import Resolution

        res = r.resolution
        resolution = (
            Resolution.raw()
            if res == "raw"
            else Resolution.none()
            if res == "none"
            else Resolution.aggregated(parse_quantity(res.aggregated, "s"))
        )  # type: ignore[union-attr]
        rules.append(SharingRule(r.group, r.recipient, resolution))
    return build_policy(
        [Party(p.id, p.name) for p in cfg.parties],
        [TagInfo(t.id, t.owner, t.quantity, t.si_unit) for t in tags],
        [TagGroup(g.id, tuple(g.tags)) for g in cfg.sharing.groups],
        rules,
    )


@dataclass
class DemoControl:
    """Records every command and applies it: the ServiceControl a test can check."""

    mode: str = "auto"
    overrides: dict[str, float] = field(default_factory=dict)
    commands: list[tuple[str, ...]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_mode(self, mode: str, user: str, reason: str = "") -> None:
        with self.lock:
            self.mode = mode
            self.commands.append(("mode", mode, user))

    def override(self, tag: str, value_si: float, user: str, reason: str = "") -> None:
        with self.lock:
            self.overrides[tag] = value_si
            self.commands.append(("override", tag, repr(value_si), user))

    def release(self, tag: str, user: str, reason: str = "") -> None:
        with self.lock:
            self.overrides.pop(tag, None)
            self.commands.append(("release", tag, user))


class DemoSource:
    """Snapshots that move with wall time (a new one every ``period_s``), written to history too."""

    def __init__(
        self,
        site: LoadedSite,
        tags: list[DemoTag],
        control: DemoControl,
        history: LocalHistory | None = None,
        period_s: float = 0.5,
    ) -> None:
        self.site = site
        self.tags = tags
        self.control = control
        self.history = history
        self.period_s = period_s
        self.info = SiteInfo.from_site(site)
        self._last: Snapshot | None = None
        self._cycle = 0
        self._lock = threading.Lock()
        self.t0 = time.time()

    def value_eng(self, tag: DemoTag, t: float) -> float:
        return tag.centre + tag.swing * math.sin(2 * math.pi * (t - self.t0) / 60.0 + tag.phase)

    def prefill(self, hours: float = 3.0, step_s: float = 30.0) -> None:
        """History for trends: the site's own tags over the last ``hours``."""
        if self.history is None:
            return
        now = time.time()
        samples = [
            Sample(
                tag.id,
                ts,
                _si(tag.centre + tag.swing * math.sin(2 * math.pi * ts / 3600.0 + tag.phase), tag.eng_unit),
            )
            for tag in self.tags
            if tag.id in self.site.tags
            for ts in (now - hours * 3600 + k * step_s for k in range(int(hours * 3600 / step_s)))
        ]
        self.history.write(samples)
        self.history.flush()

    def snapshot(self) -> Snapshot:
        now = time.time()
        with self._lock:
            if self._last is not None and now - self._last.wall_time < self.period_s:  # type: ignore[operator]
                return self._last
            self._cycle += 1
            self._last = self._build(now)
            return self._last

    def _build(self, now: float) -> Snapshot:
        with self.control.lock:
            mode, overrides = self.control.mode, dict(self.control.overrides)
        views: dict[str, TagView] = {}
        samples = []
        stale_idx = int(now // 20) % max(1, len(self.tags))
        for i, tag in enumerate(self.tags):
            v_eng = self.value_eng(tag, now)
            v_si = _si(v_eng, tag.eng_unit)
            ovr = overrides.get(tag.id)
            if ovr is not None:
                v_si = ovr
                d = UNITS.get(tag.eng_unit)
                v_eng = ovr if d is None else (ovr - d.offset) / d.factor
            status = TagStatus.STALE if i == stale_idx and tag.direction == "measurement" else TagStatus.OK
            d = UNITS.get(tag.eng_unit)
            f = 1.0 if d is None else d.factor
            est = v_si + 0.02 * tag.swing * f * math.sin(now / 7.0 + i)
            views[tag.id] = TagView(
                tag.id,
                tag.owner,
                tag.unit,
                tag.quantity,
                tag.direction,
                tag.si_unit,
                tag.eng_unit,
                v_si,
                v_eng,
                now,
                status,
                est,
                0.05 * abs(tag.swing * f) + 1e-9,
                ovr,
            )
            if tag.id in self.site.tags and status is TagStatus.OK:
                samples.append(Sample(tag.id, now, v_si))
        if self.history is not None and samples:
            self.history.write(samples)
        flows = []
        for k, ex in enumerate(self.info.exchanges):
            heat_w = (3.0 + 2.0 * k % 5 + 0.8 * math.sin(2 * math.pi * (now - self.t0) / 30.0 + k)) * 1e6
            if ex.medium == "steam":
                heat_w *= 10.0
            mass = heat_w / 2.1e6 if ex.medium == "steam" else heat_w / (4186.0 * 30.0)
            flows.append(
                Flow(ex.id, ex.supplier, ex.receiver, ex.source_unit, ex.target_unit, ex.medium, heat_w, mass)
            )
        states: dict[str, dict[str, float]] = {}
        for u in self.site.config.units:
            if u.model == "storage_tank":
                states[u.id] = {
                    f"layer_{n:02d}_t_k": 273.15 + 85.0 - 4.0 * n + 1.5 * math.sin(now / 10.0 + n)
                    for n in range(1, 11)
                }
            elif u.model == "heat_exchanger":
                states[u.id] = {"fouling_m2k_w": 1e-4 * (1.0 + (now - self.t0) / 3600.0)}
        plans = {}
        step = 900.0
        for tag in self.tags:
            if tag.direction != "setpoint":
                continue
            t_start = math.floor(now / step) * step
            times = tuple(t_start + k * step for k in range(48))
            planned = tuple(
                _si(tag.centre + tag.swing * math.sin(2 * math.pi * k / 48 + tag.phase), tag.eng_unit)
                for k in range(48)
            )
            past = tuple(t_start - k * step for k in range(12, 0, -1))
            actual = tuple(
                _si(
                    tag.centre + tag.swing * math.sin(2 * math.pi * (-k) / 48 + tag.phase) * 1.1, tag.eng_unit
                )
                for k in range(12, 0, -1)
            )
            plans[tag.id] = PlanView(tag.id, times, planned, past, actual)
        stale = [t for t, v in views.items() if v.status is TagStatus.STALE]
        alarms = tuple(Alarm(f"stale:{t}", "warning", f"{t}: no fresh value", now - 5.0, (t,)) for t in stale)
        alarms += (Alarm("dead_letters", "warning", "3 inputs dead-lettered (out of bounds)", self.t0),)
        return Snapshot(
            now,
            mode,
            views,
            tuple(flows),
            states,
            plans,
            "optimal",
            0.12 + 0.05 * math.sin(now),
            now - (now % 15.0),
            "none",
            alarms,
            3,
            self._cycle,
            wall_time=time.time(),  # published after the build, like a service would
        )


@dataclass
class DemoUser:
    name: str
    party: str
    role: str
    password: str


def demo_users(site: LoadedSite) -> list[DemoUser]:
    """An operator and a viewer per party (test-only passwords)."""
    return [
        DemoUser(f"{p.id}_{role[:2]}", p.id, role, f"pw-{p.id}-{role}")
        for p in site.config.parties
        for role in ("operator", "viewer")
    ]


@dataclass
class LiveViewBackend:
    url: str
    site: LoadedSite
    users: dict[str, DemoUser]
    control: DemoControl | None = None  # None for a real service
    source: DemoSource | None = None


@contextmanager
def serve_demo(
    config: str | Path = ROOT / "configs" / "demo.yaml",
    *,
    workdir: Path,
    extra_tags: int = 0,
    extra_owner: str | None = None,
    session_ttl_s: float = 3600.0,
    period_s: float = 0.5,
    hash_n: int = 2**12,
) -> Iterator[LiveViewBackend]:
    """Run the live view on a free loopback port against a :class:`DemoSource`."""
    site = load_site(config)
    tags = demo_tags(site, extra_tags, extra_owner)
    policy = demo_policy(site, tags)
    users = demo_users(site)
    web_cfg = WebConfig(
        {u.name: User(u.name, u.party, u.role, hash_password(u.password, n=hash_n)) for u in users},
        session_ttl_s,
    )
    history = LocalHistory(HistoryParams(workdir / "history.sqlite", flush_interval_s=0.1))
    control = DemoControl()
    source = DemoSource(site, tags, control, history, period_s)
    source.prefill()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            app = create_app(site, source, control, Metrics(), history, policy=policy, web_config=web_cfg)
            runner = await start_web(app, "127.0.0.1", 0)
            box["runner"] = runner
            box["port"] = bound_port(runner)
            ready.set()

        loop.run_until_complete(main())
        loop.run_forever()

    thread = threading.Thread(target=run, name="live-view-demo", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the live view did not start")
    try:
        yield LiveViewBackend(
            f"http://127.0.0.1:{box['port']}", site, {u.name: u for u in users}, control, source
        )
    finally:
        runner = box["runner"]
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(15)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        history.close()
