"""Item 4: OPC UA server restarted, and the link black-holed (packets silently dropped, as a pulled cable).

The real OpcUaAdapter against a real asyncua server on loopback; the black hole is
``adapters.opcua.testing.BlackholeProxy`` (a TCP proxy we control that stops forwarding without closing).
During each fault a setpoint write and a read are attempted every 0.5 s: none may block longer than the
configured request timeout (+0.5 s for scheduling on a loaded machine). After the fault clears, a new
server value must reach the sink within 10 s. CI: restart with 3 s down, 15 s black hole; slow: 120 s
black hole (``tests/integration/test_opcua_asyncua.py`` holds the adapter's own functional tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio

from adapters.base import AdapterError, Sample
from adapters.opcua.client import OpcUaAdapter
from adapters.opcua.config import (
    DataType,
    Direction,
    OpcUaConfig,
    OpcUaSecurity,
    OpcUaTag,
    OpcUaTimeouts,
    SecurityMode,
    SecurityPolicy,
)
from adapters.opcua.testing import BlackholeProxy, OpcUaTestServer, ServerVariable, quiet_server_logs
from tests.support.reliability import record

pytestmark = pytest.mark.asyncio(loop_scope="module")

VARS = [ServerVariable("Level", DataType.DOUBLE, 1.0), ServerVariable("Valve", DataType.FLOAT, 2.0)]
TIMEOUTS = OpcUaTimeouts(connect_s=2.0, request_s=1.0, probe_s=0.5, disconnect_s=0.5)
SLACK_S = 0.5


class ListSink:
    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def write(self, samples: Sequence[Sample]) -> None:
        self.samples.extend(samples)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[OpcUaTestServer]:
    quiet_server_logs()
    srv = OpcUaTestServer(VARS)
    await srv.start()
    yield srv
    if srv._server is not None:
        await srv.stop()


def _config(endpoint: str, srv: OpcUaTestServer) -> OpcUaConfig:
    tags = tuple(
        OpcUaTag(v.name, srv.node_id(v.name), v.data_type, Direction.SETPOINT, sampling_interval_s=0.05)
        for v in VARS
    )
    return OpcUaConfig(
        endpoint,
        tags,
        security=OpcUaSecurity(SecurityPolicy.NONE, SecurityMode.NONE),
        publishing_interval_s=0.05,
        timeouts=TIMEOUTS,
        watchdog_period_s=0.2,
        reconnect_hang_s=1.0,
    )


async def _probe_calls(adapter: OpcUaAdapter, stop: asyncio.Event, durations: list[float]) -> None:
    """Write and read every 0.5 s while the fault lasts; record how long each call blocked."""
    k = 0
    while not stop.is_set():
        for what in ("write", "read"):
            t0 = time.monotonic()
            with contextlib.suppress(AdapterError, TimeoutError, ConnectionError):
                if what == "write":
                    await adapter.write_setpoints({"Valve": float(k % 50)})
                else:
                    await adapter.read()
            durations.append(time.monotonic() - t0)
        k += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def _wait_value(sink: ListSink, value: float, timeout_s: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if any(s.tag == "Level" and s.value == value for s in sink.samples):
            return time.monotonic() - t0
        await asyncio.sleep(0.02)
    return None


@pytest.mark.parametrize(
    ("fault", "fault_s"),
    [
        ("restart", 3.0),
        ("blackhole", 15.0),
        pytest.param("blackhole", 120.0, marks=pytest.mark.slow, id="full-120s"),
    ],
)
async def test_opcua_fault_recovers_and_calls_stay_bounded(
    server: OpcUaTestServer, fault: str, fault_s: float
) -> None:
    variant = "full" if fault_s >= 120 else "ci"
    started = time.monotonic()
    if server._server is None:
        await server.start()
    sink = ListSink()
    durations: list[float] = []
    stop = asyncio.Event()
    async with BlackholeProxy(server.port) as proxy:
        endpoint = server.endpoint if fault == "restart" else f"opc.tcp://127.0.0.1:{proxy.port}/symtwin"
        adapter = OpcUaAdapter(_config(endpoint, server), sink)
        await adapter.start()
        try:
            await server.set("Level", 10.0)
            assert await _wait_value(sink, 10.0, 5.0) is not None
            probe = asyncio.create_task(_probe_calls(adapter, stop, durations))
            if fault == "restart":
                await server.stop()
                await asyncio.sleep(fault_s)
                await server.start()
            else:
                proxy.blackhole()
                await asyncio.sleep(fault_s)
                proxy.restore()
            cleared = time.monotonic()
            await server.set("Level", 99.0)
            flow_after = await _wait_value(sink, 99.0, 30.0)
            stop.set()
            await probe
            stats = adapter.stats
        finally:
            stop.set()
            await adapter.stop()
    figure = {
        "fault": fault,
        "fault_s": fault_s,
        "data_flows_after_clear_s": None if flow_after is None else round(flow_after, 2),
        "since_clear_incl_server_set_s": round(time.monotonic() - cleared, 2) if flow_after is None else None,
        "calls_during_fault": len(durations),
        "max_call_s": round(max(durations), 3) if durations else None,
        "request_timeout_s": TIMEOUTS.request_s,
        "fresh_clients": stats.fresh_clients,
        "resubscriptions": stats.resubscriptions,
    }
    bounded = bool(durations) and max(durations) <= TIMEOUTS.request_s + SLACK_S
    ok = flow_after is not None and flow_after <= 10.0 and bounded
    record(4, f"OPC UA {fault}: recovery and bounded calls", figure, ok, variant, time.monotonic() - started)
    assert flow_after is not None and flow_after <= 10.0
    assert bounded, durations
