"""A forecast published on MQTT during a run changes the next plan; an expired one falls back with an alarm.

Real components only: mosquitto, the ForecastFeed with its paho subscriber, the MPC in its worker process,
the service on a manual clock (time moves when the test says; solves run in real time).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import paho.mqtt.publish as mqtt_publish
import pytest

from adapters.base import Quality, Sample
from adapters.mqtt import MqttConfig
from controllers.supervisor import Mode
from controllers.types import ControlResult
from symtwin.config import LoadedSite, load_site
from symtwin.forecasting.runtime import ForecastFeed
from symtwin.runtime.clock import ManualClock
from symtwin.runtime.service import Service, ServiceParams, SolveRequest
from symtwin.runtime.twin_tracker import site_epoch
from tests.support.servers import Mosquitto

N = 8  # horizon steps
STEP = 900.0
PERIOD = 60.0  # control period on the manual clock [s]
TOPIC = "park/forecast/town_demand"
BOILER = "utility.boiler.load_sp"
FORECASTS = f"""
forecasts:
  - id: town_demand
    series: town.demand
    unit: "%"
    bounds: [0, 120]
    mqtt: {{topic: {TOPIC}, max_age: 30 min, points: {N + 1}}}
"""


class Recorder:
    """The real controller port, with every request and result kept for the assertions."""

    def __init__(self, port: object) -> None:
        self.port = port
        self.calls: list[tuple[SolveRequest, ControlResult]] = []
        self.started = 0

    async def solve(self, request: SolveRequest, deadline_s: float) -> ControlResult:
        self.started += 1
        result: ControlResult = await self.port.solve(request, deadline_s)  # type: ignore[attr-defined]
        self.calls.append((request, result))
        return result

    def reset_warm_start(self) -> None:
        self.port.reset_warm_start()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> LoadedSite:
    root = Path(__file__).resolve().parents[2]
    d = tmp_path_factory.mktemp("forecast_site")
    (d / "profiles").symlink_to(root / "configs" / "profiles")
    (d / "site.yaml").write_text((root / "configs" / "demo.yaml").read_text() + FORECASTS)
    return load_site(d / "site.yaml")


@pytest.fixture(scope="module")
def mpc(site: LoadedSite) -> Iterator[object]:
    from controllers.mpc import MpcPort, problem_from_site

    spec = dataclasses.replace(problem_from_site(site, horizon_steps=N), max_solve_s=20.0)
    port = MpcPort(spec, {t.id: t.key for t in site.tags.values()})
    yield port
    port.close()


def _measure(service: Service, now: float) -> None:
    """Plausible plant values for every measured tag and the current setpoints [SI]."""
    values = {
        "factory.heat": 3.0e6,
        "utility.hx.t_out": 353.15,
        "utility.storage.top_t": 350.15,
        "utility.town.heat": 5.0e6,
        "factory.use_sp": 1.0,
        "utility.storage.charge_sp": 0.0,
        BOILER: 0.3,
    }
    service.write([Sample(tag, now, v, Quality.GOOD) for tag, v in values.items()])


async def _solve_once(
    service: Service, clock: ManualClock, rec: Recorder, timeout_s: float = 60.0
) -> ControlResult:
    """Run cycles (5 s of clock each) until the next solve has started, then wait for it in real time."""
    before = len(rec.calls)
    for _ in range(int(PERIOD / service.params.cycle_s) + 1):
        _measure(service, clock.now())
        await service.cycle()
        await asyncio.sleep(0)  # the solve task, if the cycle started one, reaches the controller
        if rec.started > before:
            break
        clock.advance(service.params.cycle_s)
    else:
        raise AssertionError("no solve started within a control period")
    end = time.monotonic() + timeout_s
    while len(rec.calls) == before:
        assert time.monotonic() < end, "the solve did not finish"
        await asyncio.sleep(0.02)
    _, result = rec.calls[-1]
    assert result.status.usable, result.message
    clock.advance(service.params.cycle_s)
    return result


def _publish(broker: Mosquitto, doc: object) -> None:
    mqtt_publish.single(TOPIC, json.dumps(doc), qos=1, hostname=broker.host, port=broker.port)


def _wait_received(feed: ForecastFeed, now: float, times: Sequence[float], timeout_s: float = 5.0) -> None:
    end = time.monotonic() + timeout_s
    while feed.listeners["town.demand"].counts["received"] == 0:
        feed.listeners["town.demand"].forecast(now, np.asarray(times))  # drains what the client thread queued
        assert time.monotonic() < end, "the forecast did not arrive"
        time.sleep(0.02)


async def test_mqtt_forecast_changes_the_next_plan_and_expiry_falls_back(
    site: LoadedSite, mpc: object, mosquitto: Mosquitto
) -> None:
    t0 = site_epoch(site.config.site.start, 0.0)
    clock = ManualClock(t0 + 150 * 86400.0)  # late December: the town needs heat
    feed = ForecastFeed.from_site(
        site, t0, MqttConfig(mosquitto.host, mosquitto.port, client_id="test-forecasts")
    )
    feed.start()
    try:
        assert feed.wait_subscribed(10.0)
        rec = Recorder(mpc)
        params = ServiceParams(cycle_s=5.0, control_period_s=PERIOD, horizon_steps=N, step_s=STEP)
        service = Service(site, clock=clock, params=params, controller=rec, forecasts=feed, mode=Mode.SHADOW)

        # 1. nothing on the topic yet: the profile covers the horizon, and the missing source is an alarm
        before = await _solve_once(service, clock, rec)
        req_before = rec.calls[-1][0]
        assert feed.sources()["town.demand"] == ("profile:town_demand",) * N
        assert any(a.kind == "unavailable" and a.source == f"mqtt:{TOPIC}" for a in feed.alarms())
        profile_demand = np.asarray(req_before.forecasts["town.demand"])
        assert profile_demand.max() < 0.9, "the test needs headroom above the profile"

        # 2. a forecast arrives between two control periods: the town will need its full design load
        published = clock.now()
        times = [published + k * STEP for k in range(N + 1)]  # reaches past the next solve's horizon
        _publish(mosquitto, {"issued_at": published, "times": times, "values": [100.0] * (N + 1)})
        _wait_received(feed, clock.now(), times)
        after = await _solve_once(service, clock, rec)
        req_after = rec.calls[-1][0]
        assert req_after.now > published
        np.testing.assert_allclose(req_after.forecasts["town.demand"], 1.0)  # % → fraction
        assert feed.sources()["town.demand"] == (f"mqtt:{TOPIC}",) * N
        boiler_before, boiler_after = np.asarray(before.plan[BOILER]), np.asarray(after.plan[BOILER])
        assert boiler_after.sum() > boiler_before.sum() + 2.0, (boiler_before, boiler_after)  # load-steps
        assert not [a for a in feed.alarms() if a.kind in ("expired", "unavailable")]

        # 3. no new forecast for longer than max_age (30 min): the profile again, with an expired alarm
        clock.advance(31 * 60.0)
        expired = await _solve_once(service, clock, rec)
        req_expired = rec.calls[-1][0]
        assert feed.sources()["town.demand"] == ("profile:town_demand",) * N
        assert any(a.kind == "expired" and a.source == f"mqtt:{TOPIC}" for a in feed.alarms())
        np.testing.assert_allclose(
            req_expired.forecasts["town.demand"], feed.base(req_expired.now, req_expired.times)["town.demand"]
        )
        assert np.asarray(expired.plan[BOILER]).sum() < boiler_after.sum() - 2.0
    finally:
        feed.stop()
