"""End to end over real OPC UA on loopback: virtual plant server ↔ OPC UA adapter ↔ service.

No mocks: the plant is the park physics behind an asyncua server, the service reads it through the OPC UA
client adapter and writes its setpoints back through the same adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from asyncua import ua

from adapters.opcua.client import OpcUaAdapter
from adapters.opcua.testing import free_port, quiet_server_logs
from controllers.supervisor import Mode
from sim.faults import Fault, FaultKind
from sim.plant import PlantParams, VirtualPlant
from sim.scenario import CountingSink, make_controller
from sim.server import PlantServer, plant_server_for
from symtwin.config import LoadedSite, load_site
from symtwin.runtime.clock import RealClock, ScaledClock
from symtwin.runtime.service import Service, ServiceParams
from symtwin.runtime.state import Snapshot
from symtwin.runtime.wiring import ProfileForecasts, opcua_config, service_params

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_server_logs()
    for name in ("controllers.supervisor", "symtwin.runtime.service", "asyncua"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@dataclass
class Rig:
    site: LoadedSite
    plant: VirtualPlant
    server: PlantServer
    adapter: OpcUaAdapter
    service: Service
    history: CountingSink
    snapshots: list[Snapshot]


async def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


@contextlib.asynccontextmanager
async def rig(config: str, clock: RealClock | ScaledClock, params: ServiceParams) -> AsyncIterator[Rig]:
    site = load_site(REPO / "configs" / config)
    plant = VirtualPlant.from_site(site, start=clock.now(), params=PlantParams(settle_s=1800.0, seed=3))
    server = plant_server_for(site, plant, clock=clock, port=free_port(), step_s=1.0)
    await server.start()
    history = CountingSink()
    origin = plant.origin
    service = Service(
        site,
        clock=clock,
        params=params,
        controller=make_controller("baseline", site, params.control_period_s),
        writer=None,
        history=history,
        forecasts=ProfileForecasts(site, origin),
        mode=Mode.AUTO,
    )
    adapter = OpcUaAdapter(
        opcua_config(site, endpoint=server.endpoint, insecure=True), service, clock=clock.now
    )
    service.writer = adapter
    snapshots: list[Snapshot] = []
    service.on_snapshot(snapshots.append)
    await adapter.start()
    task = asyncio.create_task(service.run())
    try:
        yield Rig(site, plant, server, adapter, service, history, snapshots)
    finally:
        service.stop()
        await asyncio.wait_for(task, 10)
        await adapter.stop()
        await server.close()


@pytest.fixture
async def demo() -> AsyncIterator[Rig]:
    params = ServiceParams(cycle_s=0.5, control_period_s=2.0, step_s=900.0, horizon_steps=8)
    async with rig("demo.yaml", RealClock(), params) as r:
        yield r


async def test_a_measurement_changed_in_the_plant_reaches_the_service(demo: Rig) -> None:
    tag = "utility.hx.t_out"
    spec = demo.site.tags[tag]
    await wait_for(lambda: tag in demo.service.latest.table, 10, "the first sample")
    truth = demo.plant.true_value(spec.key)
    assert demo.service.latest.table[tag].value == pytest.approx(
        truth, abs=1.0
    )  # SI (K), through degC on the wire
    # A step of +50 K in the plant's sensor shows up in the service's table (what the twin is updated from)
    demo.plant.inject(Fault(FaultKind.SENSOR_DRIFT, time.time(), None, tag=tag, rate_si_per_s=1e6))
    took = await wait_for(lambda: demo.service.latest.table[tag].value > truth + 50.0, 5, "the changed value")
    latest = demo.service.latest.table[tag]
    assert abs(latest.timestamp - time.time()) < 3.0  # the plant's source timestamp
    assert took < 5.0

    def shown() -> bool:  # the snapshot (live view, twin inputs) follows at the next cycle
        value = demo.service.snapshot().tags[tag].value
        return value is not None and value > truth + 50.0

    await wait_for(shown, 5, "the changed value in the snapshot")
    assert demo.history.count > 0


async def test_a_setpoint_computed_by_the_controller_reaches_the_plant_node_as_float(demo: Rig) -> None:
    await wait_for(
        lambda: (
            demo.service.counters.solves.get("optimal", 0) + demo.service.counters.solves.get("suboptimal", 0)
            > 0
        ),
        15,
        "a usable baseline solve",
    )
    await wait_for(lambda: demo.service.counters.writes_ok > 0, 10, "a setpoint write")
    tag = "utility.boiler.load_sp"
    nid = demo.site.tags[tag].binding.opcua
    assert nid is not None and nid.data_type == "Float"
    assert await demo.server.read_variant_type(nid.node_id) == ua.VariantType.Float
    written = demo.service.snapshot().tags[tag].value
    assert written is not None

    def arrived() -> bool:
        return any(t == tag and abs(v - written) < 1e-6 for _, t, v in demo.plant.writes)

    await wait_for(arrived, 5, "the written value in the plant")
    node_value = await demo.server.read(tag)
    assert isinstance(node_value, float)
    assert demo.site.tags[tag].to_si(node_value) == pytest.approx(written, abs=1e-6)  # float32 on the wire


async def test_killing_the_plant_server_for_30_s_engages_the_fallback_and_recovers_without_restart() -> None:
    speed = 5.0  # 30 s of plant time in 6 s
    clock = ScaledClock(time.time(), speed)
    site_params = service_params(load_site(REPO / "configs" / "kalundborg.yaml"))
    params = dataclasses.replace(site_params, control_period_s=30.0, horizon_steps=8)
    async with rig("kalundborg.yaml", clock, params) as r:
        service = r.service

        def fallback_now() -> str:
            return r.snapshots[-1].fallback if r.snapshots else "?"

        await wait_for(lambda: fallback_now() == "none", 30, "normal operation (baseline plan accepted)")
        t_loss = clock.now() + 2.0
        r.plant.inject(Fault(FaultKind.COMMS_LOSS, t_loss, 30.0))
        await wait_for(lambda: not r.server.serving, 5, "the server going down")
        await wait_for(
            lambda: fallback_now() != "none" or r.server.serving, 20, "the fallback or the end of the outage"
        )
        assert fallback_now() != "none", "the outage ended before the fallback engaged"
        assert not r.server.serving or r.server.restarts == 1
        cycles_before = service.counters.cycles
        await wait_for(lambda: r.server.serving and r.server.restarts == 1, 10, "the server back")
        t_back = clock.now()
        await wait_for(lambda: fallback_now() == "none", 60, "recovery to normal operation")
        fresh = [s for s in service.latest.table.values() if s.timestamp >= t_back]
        assert len(fresh) >= len(service.measurement_tags)  # samples flow again on the same adapter
        assert service.counters.cycles > cycles_before  # the same service kept cycling throughout
        assert not any(math.isnan(s.value) for s in fresh)


async def test_restarting_the_server_keeps_one_plant_loop(tmp_path: Path) -> None:
    """stop() then start() brings the network side back; the plant keeps a single loop (no double stepping)."""
    from sim.plant import VirtualPlant
    from sim.server import PlantServer
    from symtwin.config import load_site
    from symtwin.runtime.clock import ScaledClock
    from tests.support.servers import free_port

    site = load_site(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
    clock = ScaledClock(start=1_627_768_800.0, speed=60.0)
    plant = VirtualPlant.from_site(site, start=clock.now())
    server = PlantServer(plant, clock=clock, port=free_port(), step_s=5.0)
    await server.start()
    try:
        first = server._task
        await server.stop()
        await server.start()
        assert server._task is first and first is not None and not first.done()
        assert server.serving
    finally:
        await server.close()


async def test_a_written_setpoint_reads_back_with_plant_time() -> None:
    """The read-back of a setpoint node (and the heartbeat node) carries the plant's clock, as measurements do,
    not the wall clock the server would stamp a timestamp-less client write with."""
    from asyncua import Client

    site = load_site(REPO / "configs" / "demo.yaml")
    clock = ScaledClock(start=1_627_768_800.0, speed=60.0)  # 2021-08-01: years before the wall clock
    plant = VirtualPlant.from_site(site, start=clock.now(), params=PlantParams(settle_s=0.0))
    server = plant_server_for(site, plant, clock=clock, port=free_port(), step_s=5.0)
    await server.start()
    try:
        tag = next(t for t in plant.setpoint_tags if t.node_id)
        async with Client(server.endpoint, timeout=15) as client:
            node = client.get_node(tag.node_id)
            vtype = (await node.read_data_value()).Value.VariantType
            assert tag.bounds_si is not None
            mid = tag.to_eng(0.5 * (tag.bounds_si[0] + tag.bounds_si[1]))
            await node.write_value(ua.DataValue(ua.Variant(mid, vtype)))
            t_written = clock.now()

            async def stamp() -> float:
                dv = await node.read_data_value()
                return dv.SourceTimestamp.replace(tzinfo=dt.UTC).timestamp()

            await wait_for_async(lambda: stamp(), lambda ts: abs(ts - t_written) < 120.0, 5.0)
            assert abs(await stamp() - time.time()) > 86400.0  # not the wall clock
    finally:
        await server.close()


async def wait_for_async(get: Callable[[], object], ok: Callable[[float], bool], timeout_s: float) -> None:
    t0 = time.monotonic()
    while True:
        value = await get()  # type: ignore[misc]
        if ok(value):
            return
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out: last value {value}")
        await asyncio.sleep(0.05)
