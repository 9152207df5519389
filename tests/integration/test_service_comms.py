"""A 30 s loss of the plant link, wired the way `symtwin sim` wires it: ScaledClock at 60x and the OPC UA
adapter's periods scaled by ``opcua_config(time_scale=60)``. The fallback engages during the outage
(/metrics ``symtwin_fallback_engaged``) and clears after it, on the same service and adapter objects.

(tests/integration/test_sim_opcua.py checks the same at 10x on the reference park with unscaled adapter
periods; this one checks the scaled wiring and the metric.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from adapters.opcua.client import OpcUaAdapter
from adapters.opcua.testing import free_port, quiet_server_logs
from controllers.supervisor import Mode
from sim.faults import Fault, FaultKind
from sim.plant import PlantParams, VirtualPlant
from sim.scenario import make_controller
from sim.server import plant_server_for
from symtwin.config import load_site
from symtwin.runtime.clock import ScaledClock
from symtwin.runtime.service import Service
from symtwin.runtime.wiring import ProfileForecasts, opcua_config, service_params
from tests.support.service_process import ROOT

SPEED = 60.0
OUTAGE_S = 30.0  # [s of clock time]
MAX_AGE_S = 20.0  # measurements older than this are stale [s of clock time]


def demo_with_max_age(tmp: Path) -> Path:
    doc = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    for p in doc["profiles"]:
        if "csv" in p:
            p["csv"]["path"] = str(ROOT / "configs" / p["csv"]["path"])
    for t in doc["tags"]:
        if t["direction"] == "measurement":
            t["max_age"] = f"{MAX_AGE_S:g} s"
    doc["controller"].update(kind="baseline", period="1 min")
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


async def test_a_30_s_outage_engages_the_fallback_and_recovers_without_restart(tmp_path: Path) -> None:
    quiet_server_logs()
    for name in ("controllers.supervisor", "symtwin.runtime.service", "asyncua", "adapters.opcua.client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    site = load_site(demo_with_max_age(tmp_path))
    clock = ScaledClock(time.time(), SPEED)
    params = service_params(site)
    plant = VirtualPlant.from_site(site, start=clock.now(), params=PlantParams(settle_s=1800.0, seed=2))
    server = plant_server_for(site, plant, clock=clock, port=free_port(), step_s=min(params.cycle_s, 5.0))
    await server.start()
    service = Service(
        site,
        clock=clock,
        params=params,
        controller=make_controller("baseline", site, params.control_period_s),
        forecasts=ProfileForecasts(site, plant.origin),
        mode=Mode.AUTO,
    )
    adapter = OpcUaAdapter(
        opcua_config(site, endpoint=server.endpoint, insecure=True, time_scale=SPEED),
        service,
        clock=clock.now,
    )
    service.writer = adapter
    await adapter.start()
    task = asyncio.create_task(service.run())

    def fallback() -> float:
        return service.metrics.value("fallback_engaged") or 0.0

    try:
        await wait_for(lambda: service.counters.cycles > 3 and fallback() == 0, 20, "normal operation")
        plant.inject(Fault(FaultKind.COMMS_LOSS, clock.now() + 1.0, OUTAGE_S))
        await wait_for(lambda: not server.serving, 5, "the plant server going down")
        t_down = clock.now()
        await wait_for(lambda: fallback() > 0, 5, "the fallback")
        assert clock.now() - t_down <= OUTAGE_S + 2 * params.cycle_s  # engaged while the link was down
        cycles_down = service.counters.cycles
        await wait_for(lambda: server.serving and server.restarts == 1, 10, "the plant server back")
        t_back = clock.now()
        await wait_for(lambda: fallback() == 0, 20, "the fallback to clear")
        assert clock.now() - t_back < 120.0  # back to normal within two minutes of plant time
        fresh = [s for s in service.latest.table.values() if s.timestamp >= t_back]
        assert {s.tag for s in fresh} >= set(service.measurement_tags)  # samples flow on the same adapter
        assert service.counters.cycles > cycles_down and adapter.stats.recoveries >= 1
        assert service.metrics.value("stale_tags") == 0
    finally:
        service.stop()
        await asyncio.wait_for(task, 10)
        await adapter.stop()
        await server.close()
