"""OPC UA adapter against a real in-process asyncua Server on a loopback port (no mocks)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import shutil
import struct
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import ua

from adapters.base import ConnectionLost, Quality, Sample
from adapters.opcua.client import OpcUaAdapter
from adapters.opcua.config import (
    DataType,
    Direction,
    OpcUaConfig,
    OpcUaConfigError,
    OpcUaSecurity,
    OpcUaTag,
    OpcUaTimeouts,
    SecurityMode,
    SecurityPolicy,
)
from adapters.opcua.security import SecurityRefused
from adapters.opcua.testing import BlackholeProxy, OpcUaTestServer, ServerVariable, quiet_server_logs

NONE = OpcUaSecurity(SecurityPolicy.NONE, SecurityMode.NONE)
TYPED = [
    ServerVariable("Double", DataType.DOUBLE, 1.5),
    ServerVariable("Float", DataType.FLOAT, 2.5),
    ServerVariable("Int16", DataType.INT16, 3),
    ServerVariable("Boolean", DataType.BOOLEAN, 0),
]
FAST = OpcUaTimeouts(connect_s=2.0, request_s=1.0, probe_s=0.5, disconnect_s=0.5)


class ListSink:
    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def write(self, samples: Sequence[Sample]) -> None:
        self.samples.extend(samples)

    def of(self, tag: str) -> list[Sample]:
        return [s for s in self.samples if s.tag == tag]


async def wait_until(cond: object, timeout_s: float = 5.0) -> float:
    """Poll ``cond()`` until true; returns the time it took [s]."""
    t0 = time.monotonic()
    while not cond():  # type: ignore[operator]
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


# asyncua's Server.init() builds the standard address space (seconds on a loaded machine): one server
# per module, its typed values reset before each test.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_server() -> AsyncIterator[OpcUaTestServer]:
    quiet_server_logs()
    srv = OpcUaTestServer(
        TYPED, operation_limits={"max_monitored_items_per_call": 2, "max_nodes_per_read": 3}
    )
    await srv.start()
    yield srv
    await srv.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def server(module_server: OpcUaTestServer) -> OpcUaTestServer:
    if module_server._server is None:  # a test stopped it and failed before starting it again
        await module_server.start()
    for v in TYPED:
        await module_server.set(v.name, v.value)
    return module_server


def typed_tags(srv: OpcUaTestServer, **kw: object) -> list[OpcUaTag]:
    return [
        OpcUaTag(v.name, srv.node_id(v.name), v.data_type, Direction.SETPOINT, sampling_interval_s=0.05, **kw)  # type: ignore[arg-type]
        for v in TYPED
    ]


def config(endpoint: str, tags: Sequence[OpcUaTag], **kw: object) -> OpcUaConfig:
    base: dict[str, object] = {"security": NONE, "publishing_interval_s": 0.05, "timeouts": FAST}
    base.update(kw)
    return OpcUaConfig(endpoint, tuple(tags), **base)  # type: ignore[arg-type]


async def test_subscribe_keeps_source_timestamp_and_status(server: OpcUaTestServer) -> None:
    sink = ListSink()
    adapter = OpcUaAdapter(config(server.endpoint, typed_tags(server)), sink)
    await adapter.start()
    try:
        assert adapter.stats.monitored_items == 4
        # Limits advertised by the server are what the adapter chunks to.
        assert adapter._limits["items"] == 2 and adapter._limits["read"] == 3
        await wait_until(lambda: {s.tag for s in sink.samples} == {"Double", "Float", "Int16", "Boolean"})
        src = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        await server.set("Double", 42.0, source_time=src, status=ua.StatusCodes.UncertainLastUsableValue)
        await wait_until(lambda: any(s.value == 42.0 for s in sink.of("Double")))
        got = next(s for s in sink.of("Double") if s.value == 42.0)
        assert got.timestamp == src.timestamp()
        assert got.quality is Quality.UNCERTAIN
        first_bool = sink.of("Boolean")[0]
        assert first_bool.value == 0.0 and first_bool.quality is Quality.GOOD
    finally:
        await adapter.stop()


async def test_typed_writes_with_read_back(server: OpcUaTestServer) -> None:
    adapter = OpcUaAdapter(config(server.endpoint, typed_tags(server)), ListSink())
    await adapter.start()
    try:
        result = await adapter.write_setpoints({"Double": 7.25, "Float": 1.1, "Int16": -12.0, "Boolean": 1.0})
        assert result == {"Double": True, "Float": True, "Int16": True, "Boolean": True}
        assert await server.get("Double") == 7.25
        assert await server.get("Float") == struct.unpack("f", struct.pack("f", 1.1))[0]
        assert await server.get("Int16") == -12
        assert await server.get("Boolean") is True
        # Out of the node's range: refused before anything is sent, the node keeps its value.
        assert await adapter.write_setpoints({"Int16": 40000.0, "Nope": 1.0}) == {
            "Int16": False,
            "Nope": False,
        }
        assert await server.get("Int16") == -12
        assert adapter.stats.writes_ok == 4 and adapter.stats.writes_failed == 2
        samples = await adapter.read(["Double", "Int16"])
        assert [(s.tag, s.value) for s in samples] == [("Double", 7.25), ("Int16", -12.0)]
    finally:
        await adapter.stop()


async def test_plain_python_float_write_fails_on_float_node(server: OpcUaTestServer) -> None:
    """The reason the adapter builds Variants from the DataType: the naive write is refused."""
    from asyncua import Client

    async with Client(server.endpoint) as client:
        node = client.get_node(server.node_id("Int16"))
        with pytest.raises(ua.UaStatusCodeError, match="BadTypeMismatch"):
            await node.write_value(5.0)


async def test_missing_and_mistyped_nodes_are_dead_letters_and_the_rest_flows(
    server: OpcUaTestServer,
) -> None:
    sink = ListSink()
    letters: list[object] = []
    tags = [
        *typed_tags(server),
        OpcUaTag("ghost", "ns=2;s=DoesNotExist", DataType.DOUBLE),
        OpcUaTag("mistyped", server.node_id("Float"), DataType.INT16),
    ]
    adapter = OpcUaAdapter(config(server.endpoint, tags), sink, on_dead_letter=letters.append)
    await adapter.start()
    try:
        assert adapter.connected
        assert adapter.stats.monitored_items == 4
        assert adapter.stats.dead_letters_by_reason == {"node_missing": 1, "wrong_type": 1}
        reasons = sorted(d.reason for d in adapter.dead_letters())
        assert "BadNodeIdUnknown" in reasons[0]
        assert "is Float, the config says Int16" in reasons[1]
        assert len(letters) == 2
        await server.set("Double", 9.0)
        await wait_until(lambda: any(s.value == 9.0 for s in sink.of("Double")))
        assert not sink.of("ghost") and not sink.of("mistyped")
        assert await adapter.write_setpoints({"ghost": 1.0}) == {"ghost": False}
    finally:
        await adapter.stop()


async def test_deadband_suppresses_small_changes(server: OpcUaTestServer) -> None:
    sink = ListSink()
    tag = OpcUaTag(
        "Double", server.node_id("Double"), DataType.DOUBLE, sampling_interval_s=0.02, deadband=1.0
    )
    adapter = OpcUaAdapter(config(server.endpoint, [tag]), sink)
    await adapter.start()
    try:
        await wait_until(lambda: len(sink.samples) == 1)
        for v in (1.6, 1.9, 2.2):  # all within 1.0 of the last reported 1.5
            await server.set("Double", v)
            await asyncio.sleep(0.1)
        await server.set("Double", 5.0)
        await wait_until(lambda: any(s.value == 5.0 for s in sink.samples))
        assert [s.value for s in sink.samples] == [1.5, 5.0]
    finally:
        await adapter.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OpcUaTestServer]:
    quiet_server_logs()
    pki = tmp_path_factory.mktemp("secure-server")
    users = {"operator": "correct horse"}
    async with OpcUaTestServer(TYPED[:1], secure=True, allow_none=False, pki_dir=pki, users=users) as srv:
        yield srv


@pytest.mark.parametrize("policy", [SecurityPolicy.BASIC256SHA256, SecurityPolicy.AES128_SHA256_RSAOAEP])
async def test_sign_and_encrypt_with_trust_list_and_user(
    secure_server: OpcUaTestServer, tmp_path: Path, policy: SecurityPolicy
) -> None:
    srv = secure_server
    trust = tmp_path / "trust"
    trust.mkdir()

    def sec(password: str, uri: str = "urn:symtwin:edge") -> OpcUaSecurity:
        return OpcUaSecurity(
            policy,
            SecurityMode.SIGN_AND_ENCRYPT,
            cert_path=tmp_path / "pki" / "client_cert.der",
            key_path=tmp_path / "pki" / "client_key.pem",
            trust_dir=trust,
            application_uri=uri,
            username="operator",
            password=password,
        )

    tags = [OpcUaTag("Double", srv.node_id("Double"), DataType.DOUBLE)]
    # Untrusted server certificate: refused before any session (and credentials) go out.
    untrusted = OpcUaAdapter(config(srv.endpoint, tags, security=sec("correct horse")), ListSink())
    with pytest.raises(SecurityRefused, match="not in the trust list"):
        await untrusted.start()
    assert (tmp_path / "pki" / "client_cert.der").exists()  # generated because it was absent

    shutil.copy(srv.cert_path, trust / "server.der")  # type: ignore[arg-type]
    adapter = OpcUaAdapter(config(srv.endpoint, tags, security=sec("correct horse")), ListSink())
    await adapter.start()
    try:
        assert adapter.connected
        assert [s.value for s in await adapter.read()] == [1.5]
    finally:
        await adapter.stop()

    wrong = OpcUaAdapter(config(srv.endpoint, tags, security=sec("wrong")), ListSink())
    with pytest.raises(SecurityRefused, match="BadUserAccessDenied"):
        await wrong.start()

    # The existing certificate names another URI than the config: a config error, not a silent mismatch.
    with pytest.raises(OpcUaConfigError, match="urn:symtwin:edge"):
        await OpcUaAdapter(config(srv.endpoint, tags, security=sec("x", uri="urn:other")), ListSink()).start()


async def test_security_none_is_refused_by_a_secure_only_server(secure_server: OpcUaTestServer) -> None:
    tags = [OpcUaTag("Double", secure_server.node_id("Double"), DataType.DOUBLE)]
    adapter = OpcUaAdapter(config(secure_server.endpoint, tags), ListSink())
    with pytest.raises(SecurityRefused, match="no endpoint with None/None"):
        await adapter.start()


async def test_server_restart_recovers_with_one_log_line_each_way(
    server: OpcUaTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sink = ListSink()
    cfg = config(server.endpoint, typed_tags(server), watchdog_period_s=0.2, reconnect_hang_s=1.0)
    adapter = OpcUaAdapter(cfg, sink)
    await adapter.start()
    try:
        await wait_until(lambda: len(sink.samples) >= 4)
        await server.stop()
        await wait_until(lambda: not adapter.connected)
        await asyncio.sleep(1.5)
        await server.start()
        await server.set("Double", 77.0)
        took = await wait_until(lambda: any(s.value == 77.0 for s in sink.samples), timeout_s=10)
        assert took < 10
        assert adapter.connected and adapter.stats.monitored_items == 4
        ours = [r for r in caplog.records if r.name == "adapters.opcua.client"]
        assert sum("no connection" in r.getMessage() for r in ours) == 1
        assert sum("recovered" in r.getMessage() for r in ours) == 1
        assert not [r for r in caplog.records if r.exc_info], "no traceback while the server was away"
        # Writes work on the new session.
        assert await adapter.write_setpoints({"Int16": 5.0}) == {"Int16": True}
    finally:
        await adapter.stop()


async def test_link_reset_recovers_through_asyncua_reconnect(server: OpcUaTestServer) -> None:
    """A dropped TCP link: asyncua's auto_reconnect re-activates the session and our subscription lives on."""
    sink = ListSink()
    async with BlackholeProxy(server.port) as proxy:
        endpoint = f"opc.tcp://127.0.0.1:{proxy.port}/symtwin"
        cfg = config(endpoint, typed_tags(server), watchdog_period_s=0.2, reconnect_hang_s=30.0)
        adapter = OpcUaAdapter(cfg, sink)
        await adapter.start()
        try:
            await wait_until(lambda: len(sink.samples) >= 4)
            proxy.reset()
            await wait_until(lambda: not adapter.connected, timeout_s=5)
            await wait_until(lambda: adapter.connected, timeout_s=10)
            await server.set("Double", 55.0)
            await wait_until(lambda: any(s.value == 55.0 for s in sink.samples), timeout_s=5)
            assert adapter.stats.fresh_clients == 0  # asyncua's own reconnect did it
            assert adapter.stats.resubscriptions == 0  # the server still had the session's subscription
        finally:
            await adapter.stop()


async def test_restart_within_asyncua_reconnect_resubscribes(server: OpcUaTestServer) -> None:
    """The server comes back without our session: asyncua reconnects, the adapter re-creates the items."""
    sink = ListSink()
    cfg = config(server.endpoint, typed_tags(server), watchdog_period_s=0.2, reconnect_hang_s=30.0)
    adapter = OpcUaAdapter(cfg, sink)
    await adapter.start()
    try:
        await wait_until(lambda: len(sink.samples) >= 4)
        await server.restart()
        await server.set("Double", 66.0)
        await wait_until(lambda: any(s.value == 66.0 for s in sink.samples), timeout_s=15)
        assert adapter.stats.fresh_clients == 0
        assert adapter.stats.resubscriptions == 1
        assert adapter.stats.monitored_items == 4
    finally:
        await adapter.stop()


@pytest.mark.parametrize(
    "outage_s",
    [3.0, pytest.param(120.0, marks=pytest.mark.slow, id="120s")],  # the reliability issue's 120 s case
)
async def test_blackholed_link_bounded_calls_and_recovery(
    server: OpcUaTestServer, caplog: pytest.LogCaptureFixture, outage_s: float, request: pytest.FixtureRequest
) -> None:
    if outage_s > 10 and "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("120 s outage: run with -m slow")
    caplog.set_level(logging.WARNING)
    sink = ListSink()
    async with BlackholeProxy(server.port) as proxy:
        endpoint = f"opc.tcp://127.0.0.1:{proxy.port}/symtwin"
        cfg = config(endpoint, typed_tags(server), watchdog_period_s=0.2, reconnect_hang_s=1.0)
        adapter = OpcUaAdapter(cfg, sink)
        await adapter.start()
        try:
            await wait_until(lambda: len(sink.samples) >= 4)
            proxy.blackhole()
            t0 = time.monotonic()
            with pytest.raises(ConnectionLost):
                await adapter.write_setpoints({"Double": 3.0})
            assert time.monotonic() - t0 < FAST.request_s + 0.5  # bounded by the request timeout
            await wait_until(lambda: not adapter.connected, timeout_s=5)
            await asyncio.sleep(outage_s)  # fresh-client attempts hang against the hole and time out
            proxy.restore()
            await server.set("Double", 88.0)
            took = await wait_until(lambda: any(s.value == 88.0 for s in sink.samples), timeout_s=12)
            assert took <= 10.0
            assert adapter.stats.fresh_clients >= 1
            assert not [r for r in caplog.records if r.exc_info]
        finally:
            await adapter.stop()


async def test_stale_tag_is_reread(server: OpcUaTestServer) -> None:
    sink = ListSink()
    tag = OpcUaTag("Double", server.node_id("Double"), DataType.DOUBLE, deadband=100.0, max_age_s=0.3)
    adapter = OpcUaAdapter(config(server.endpoint, [tag], watchdog_period_s=0.1), sink)
    await adapter.start()
    try:
        await server.set("Double", 2.0)  # inside the deadband: no notification, only the re-read sees it
        await wait_until(lambda: any(s.value == 2.0 for s in sink.samples), timeout_s=3)
        assert adapter.stats.stale_rereads >= 1
        assert math.isfinite(sink.samples[-1].timestamp)
    finally:
        await adapter.stop()


async def test_unreachable_server_at_start_keeps_trying(server: OpcUaTestServer) -> None:
    proxy = BlackholeProxy(server.port)  # not started yet: nobody listens on its port
    endpoint = f"opc.tcp://127.0.0.1:{proxy.port}/symtwin"
    sink = ListSink()
    tags = [OpcUaTag("Double", server.node_id("Double"), DataType.DOUBLE)]
    adapter = OpcUaAdapter(config(endpoint, tags, watchdog_period_s=0.2, reconnect_hang_s=0.5), sink)
    try:
        await adapter.start()  # returns although the server is away
        assert not adapter.connected
        with pytest.raises(ConnectionLost):
            await adapter.read()
        await proxy.start()  # the server "comes up"
        await wait_until(lambda: len(sink.samples) >= 1, timeout_s=8)
        assert adapter.connected
    finally:
        await adapter.stop()
        await proxy.stop()
