"""OPC UA adapter against node-opcua, an independent implementation, with small operation limits.

The server is ``tests/support/nodeopcua/server.js`` (npm packages pinned in its package.json and
installed by ``install.sh``). Skipped only when node/npm cannot provide it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from asyncua import Client, ua

from adapters.base import Sample
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
from tests.support.nodeopcua import NodeOpcUaServer, ensure_installed

NONE = OpcUaSecurity(SecurityPolicy.NONE, SecurityMode.NONE)
FAST = OpcUaTimeouts(connect_s=3.0, request_s=2.0, probe_s=1.0, disconnect_s=0.5)
LIMITS = {"maxMonitoredItemsPerCall": 3, "maxNodesPerRead": 2, "maxNodesPerWrite": 2}
TYPED = {
    "Double": DataType.DOUBLE,
    "Float": DataType.FLOAT,
    "Int16": DataType.INT16,
    "Boolean": DataType.BOOLEAN,
}
BULK = 20


class ListSink:
    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def write(self, samples: Sequence[Sample]) -> None:
        self.samples.extend(samples)


async def wait_until(cond: object, timeout_s: float = 5.0) -> float:
    t0 = time.monotonic()
    while not cond():  # type: ignore[operator]
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def node_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeOpcUaServer]:
    reason = ensure_installed()
    if reason is not None:
        pytest.skip(f"node-opcua unavailable: {reason}")
    srv = NodeOpcUaServer(
        tmp_path_factory.mktemp("node-opcua") / "pki",
        options={**LIMITS, "bulk": BULK, "bulkPeriodMs": 200, "tickPeriodMs": 100},
    )
    srv.start()
    yield srv
    srv.stop()


def tags(srv: NodeOpcUaServer) -> list[OpcUaTag]:
    typed = [
        OpcUaTag(n, srv.node_id(n), dt, Direction.SETPOINT, sampling_interval_s=0.05)
        for n, dt in TYPED.items()
    ]
    counter = OpcUaTag("Counter", srv.node_id("Counter"), DataType.DOUBLE, sampling_interval_s=0.05)
    bulk = [
        OpcUaTag(f"bulk{i}", srv.node_id(f"Bulk.{i}"), DataType.DOUBLE, sampling_interval_s=0.1)
        for i in range(BULK)
    ]
    return [*typed, counter, *bulk]


def config(srv: NodeOpcUaServer, tag_list: Sequence[OpcUaTag], **kw: object) -> OpcUaConfig:
    base: dict[str, object] = {"security": NONE, "publishing_interval_s": 0.1, "timeouts": FAST}
    base.update(kw)
    return OpcUaConfig(srv.endpoint, tuple(tag_list), **base)  # type: ignore[arg-type]


async def test_server_enforces_its_limits(node_server: NodeOpcUaServer) -> None:
    """Without chunking the same requests are refused; this is what makes the next test meaningful."""
    async with Client(node_server.endpoint) as client:
        nodes = [client.get_node(node_server.node_id(n)) for n in TYPED]
        with pytest.raises(ua.UaStatusCodeError, match="BadTooManyOperations"):
            await client.read_values(nodes)
        sub = await client.create_subscription(100, None)
        try:
            with pytest.raises(ua.UaStatusCodeError, match="BadTooManyOperations"):
                await sub.subscribe_data_change(nodes)
        finally:
            await sub.delete()


async def test_read_subscribe_and_typed_write_within_small_limits(node_server: NodeOpcUaServer) -> None:
    sink = ListSink()
    tag_list = tags(node_server)
    adapter = OpcUaAdapter(config(node_server, tag_list), sink)
    await adapter.start()
    try:
        assert adapter._limits == {"read": 2, "write": 2, "items": 3}
        assert adapter.stats.monitored_items == len(tag_list)
        assert adapter.stats.dead_letters == 0
        samples = await adapter.read()
        assert {s.tag for s in samples} == {t.tag for t in tag_list}
        await wait_until(lambda: {s.tag for s in sink.samples} >= {t.tag for t in tag_list})
        ticks = [s for s in sink.samples if s.tag == "Counter"]
        assert ticks and abs(ticks[-1].timestamp - time.time()) < 5  # node-opcua's source timestamp, kept

        written = {"Double": -3.75, "Float": 0.1, "Int16": 1234.0, "Boolean": 1.0}
        assert await adapter.write_setpoints(written) == dict.fromkeys(written, True)
        back = {s.tag: s.value for s in await adapter.read(list(TYPED))}
        assert back == {
            "Double": -3.75,
            "Float": struct.unpack("f", struct.pack("f", 0.1))[0],
            "Int16": 1234.0,
            "Boolean": 1.0,
        }
        # The subscription reports the written values too.
        await wait_until(lambda: any(s.tag == "Int16" and s.value == 1234.0 for s in sink.samples))
        assert await adapter.write_setpoints({"Int16": 1e6}) == {"Int16": False}  # outside Int16
    finally:
        await adapter.stop()


async def test_missing_and_mistyped_nodes_on_node_opcua(node_server: NodeOpcUaServer) -> None:
    sink = ListSink()
    tag_list = [
        OpcUaTag("Double", node_server.node_id("Double"), DataType.DOUBLE),
        OpcUaTag("ghost", node_server.node_id("Nope"), DataType.DOUBLE),
        OpcUaTag("mistyped", node_server.node_id("Int16"), DataType.FLOAT),
    ]
    adapter = OpcUaAdapter(config(node_server, tag_list), sink)
    await adapter.start()
    try:
        assert adapter.connected and adapter.stats.monitored_items == 1
        assert adapter.stats.dead_letters_by_reason == {"node_missing": 1, "wrong_type": 1}
        await wait_until(lambda: any(s.tag == "Double" for s in sink.samples))
    finally:
        await adapter.stop()


async def test_reconnect_after_node_opcua_restart(
    node_server: NodeOpcUaServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    sink = ListSink()
    tag_list = tags(node_server)
    adapter = OpcUaAdapter(config(node_server, tag_list, watchdog_period_s=0.3, reconnect_hang_s=2.0), sink)
    await adapter.start()
    try:
        await wait_until(lambda: any(s.tag == "Counter" for s in sink.samples))
        node_server.kill()  # a crash: no orderly goodbye to the client
        await wait_until(lambda: not adapter.connected, timeout_s=5)
        await asyncio.to_thread(node_server.start)
        restarted = time.monotonic()
        # The new process counts from 0 again, so a value below the last one proves fresh data.
        last = max(s.value for s in sink.samples if s.tag == "Counter")
        await wait_until(
            lambda: any(s.tag == "Counter" and s.value < last for s in sink.samples[-200:]), timeout_s=15
        )
        assert time.monotonic() - restarted <= 10.0
        await wait_until(lambda: adapter.connected, timeout_s=5)
        assert adapter.stats.monitored_items == len(tag_list)  # re-created in chunks of 3
        assert not [r for r in caplog.records if r.exc_info]
        ours = [r.getMessage() for r in caplog.records if r.name == "adapters.opcua.client"]
        assert sum("no connection" in m for m in ours) == 1
        assert sum("recovered" in m for m in ours) == 1
    finally:
        await adapter.stop()


async def test_sign_and_encrypt_against_node_opcua(node_server: NodeOpcUaServer, tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    trust.mkdir()
    own = next(node_server.pki_dir.rglob("own/certs/*.pem"))  # node-opcua's self-made server certificate
    shutil.copy(own, trust / "node-opcua.pem")
    tag_list = [OpcUaTag("Float", node_server.node_id("Float"), DataType.FLOAT, Direction.SETPOINT)]
    for policy in (SecurityPolicy.BASIC256SHA256, SecurityPolicy.AES128_SHA256_RSAOAEP):
        sec = OpcUaSecurity(
            policy,
            SecurityMode.SIGN_AND_ENCRYPT,
            cert_path=tmp_path / "pki" / "cert.der",
            key_path=tmp_path / "pki" / "key.pem",
            trust_dir=trust,
            application_uri="urn:symtwin:edge",
        )
        adapter = OpcUaAdapter(config(node_server, tag_list, security=sec), ListSink())
        await adapter.start()
        try:
            assert adapter.connected
            assert await adapter.write_setpoints({"Float": 4.5}) == {"Float": True}
        finally:
            await adapter.stop()


def test_install_script_is_idempotent(node_server: NodeOpcUaServer) -> None:
    script = Path(__file__).resolve().parents[1] / "support" / "nodeopcua" / "install.sh"
    first = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    t0 = time.monotonic()
    again = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and time.monotonic() - t0 < 2.0  # nothing to do the second time
