"""OPC UA source and setpoint writer over asyncua.

What it does, and why it is built this way:

* Subscriptions are driven through asyncua's service layer (``uaclient.create_subscription`` /
  ``create_monitored_items``), not ``Client.create_subscription``: asyncua re-creates its own
  subscriptions after a reconnect in ONE CreateMonitoredItems call, which a server with a small
  MaxMonitoredItemsPerCall refuses (node-opcua answers BadTooManyOperations). Owning the items lets
  every create, read and write go out in chunks within the server's operation limits.
* The publish callback never blocks: it turns each notification into a :class:`Sample` (source
  timestamp and status code kept) and ``put_nowait``s it into a bounded queue; a drain task hands
  batches to the sink. Overflow is counted, not waited for.
* A node that is missing or of the wrong type is refused on its own (dead letter with the reason,
  counted); the session and every other tag carry on.
* Reconnect is layered: asyncua's ``auto_reconnect`` handles short blips; the adapter's watchdog
  probes ServerStatus/State every period (bounded by a timeout), re-checks the subscription after a
  recovery (re-creating it, chunked, when the server forgot it), re-reads tags that went stale, and
  when asyncua has not recovered within ``reconnect_hang_s`` throws the client away and builds a
  fresh one (opcua-asyncio#1660). One log line on loss, one on recovery; asyncua's own loggers are
  quietened while the link is down so they do not print a traceback per second.
* Every await on the network is wrapped in ``asyncio.wait_for`` with a configured timeout.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import json
import logging
import math
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.crypto import uacrypto

from adapters.base import ConnectionLost, DeadLetter, Quality, Sample, Sink
from adapters.opcua.certs import ensure_certificate
from adapters.opcua.config import DataType, Direction, OpcUaConfig, OpcUaTag, SecurityPolicy
from adapters.opcua.security import (
    MODES,
    POLICY_CLASSES,
    SecurityRefused,
    check_client_certificate,
    check_server_certificate,
    first_certificate,
    select_endpoint,
)
from adapters.opcua.values import (
    ValueRefused,
    as_number,
    chunks,
    data_type_of_node_id,
    effective_limit,
    quality_of,
    readback_matches,
    to_variant,
)
from adapters.tagmap import Refusal

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Server operation limits (OPC 10000-5 §6.3.11, ServerCapabilities/OperationLimits).
MAX_NODES_PER_READ = ua.NodeId.from_string("i=11705")
MAX_NODES_PER_WRITE = ua.NodeId.from_string("i=11707")
MAX_MONITORED_ITEMS_PER_CALL = ua.NodeId.from_string("i=11714")
SERVER_STATE = ua.NodeId.from_string("i=2259")

# Answers that a retry will not change: a person must fix credentials or trust.
_REFUSALS = frozenset(
    {
        ua.StatusCodes.BadUserAccessDenied,
        ua.StatusCodes.BadIdentityTokenRejected,
        ua.StatusCodes.BadIdentityTokenInvalid,
        ua.StatusCodes.BadCertificateUntrusted,
        ua.StatusCodes.BadCertificateInvalid,
        ua.StatusCodes.BadCertificateUriInvalid,
        ua.StatusCodes.BadCertificateRevoked,
        ua.StatusCodes.BadSecurityChecksFailed,
        ua.StatusCodes.BadSecurityPolicyRejected,
    }
)

# Transport-level failures: the link is the problem, not one node.
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    ConnectionError,
    ua.UaError,
)


class _QuietAsyncua:
    """Raises the ``asyncua`` logger to CRITICAL while any adapter's link is down (ref-counted).

    While a server is unreachable asyncua's publish loop logs an exception with traceback every
    second and its reconnect loop a warning per attempt; the adapter reports the outage itself.
    """

    _count = 0
    _saved_level = logging.NOTSET

    @classmethod
    def enter(cls) -> None:
        logger = logging.getLogger("asyncua")
        if cls._count == 0:
            cls._saved_level = logger.level
            logger.setLevel(logging.CRITICAL)
        cls._count += 1

    @classmethod
    def leave(cls) -> None:
        if cls._count == 0:
            return
        cls._count -= 1
        if cls._count == 0:
            logging.getLogger("asyncua").setLevel(cls._saved_level)


class _DropTransportTracebacks(logging.Filter):
    """Drops asyncua records that carry a transport-loss exception: the adapter reports the outage once.

    Needed besides :class:`_QuietAsyncua` because asyncua's publish loop can log its traceback a moment
    before the loss is signalled to the adapter.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionError | OSError | asyncio.TimeoutError)


_TRANSPORT_FILTER = _DropTransportTracebacks()
_NOISY_LOGGERS = (
    "asyncua.client.ua_session.UaSession",
    "asyncua.client.ua_session",
    "asyncua.client.client",
    "asyncua.client.ua_client.UaClient",
    "asyncua.client.ua_client.UASocketProtocol",
    "asyncua.common.subscription",
)


def _install_transport_filter() -> None:
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if _TRANSPORT_FILTER not in logger.filters:
            logger.addFilter(_TRANSPORT_FILTER)


@dataclass
class OpcUaStats:
    """Counters a metrics endpoint or a test can read; they only ever grow (except the gauges)."""

    notifications: int = 0
    samples_out: int = 0
    queue_overflow: int = 0
    sink_errors: int = 0
    dead_letters: int = 0
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)
    connection_losses: int = 0
    recoveries: int = 0
    fresh_clients: int = 0
    resubscriptions: int = 0
    stale_rereads: int = 0
    writes_ok: int = 0
    writes_failed: int = 0
    # gauges
    connected: bool = False
    monitored_items: int = 0


class OpcUaAdapter:
    """Source (subscriptions → samples → sink) and SetpointWriter (typed write + read-back) for one server.

    sink: where samples go (``Sink.write`` must not block for long; the historian outbox is meant).
    clock: wall clock [s since epoch] for dead-letter times and samples without a source timestamp.
    on_dead_letter: called for each refused input (wire the shared dead-letter store here).
    """

    def __init__(
        self,
        config: OpcUaConfig,
        sink: Sink,
        *,
        clock: Callable[[], float] = time.time,
        on_dead_letter: Callable[[DeadLetter], None] | None = None,
    ) -> None:
        self.cfg = config
        self._sink = sink
        self._clock = clock
        self._on_dead_letter = on_dead_letter
        self._tags: list[OpcUaTag] = list(config.tags)
        self._index: dict[str, int] = {t.tag: i for i, t in enumerate(self._tags)}
        self._node_ids: list[ua.NodeId | None] = [None] * len(self._tags)
        self._types: dict[int, DataType] = {}  # verified node data types, by tag index
        self._refused: dict[int, str] = {}  # tag index → last reason it was refused
        self._last_seen: list[float] = [0.0] * len(self._tags)  # monotonic time of the last value
        self._dead: collections.deque[DeadLetter] = collections.deque(maxlen=config.dead_letter_capacity)
        self.stats = OpcUaStats()
        self._client: Client | None = None
        self._sub_id: int | None = None
        self._sub_lost = False
        self._last_publish = 0.0
        self._limits = {"read": config.max_items_per_call, "write": config.max_items_per_call}
        self._limits["items"] = config.max_items_per_call
        self._queue: asyncio.Queue[Sample] | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._watchdog_task: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self._quiet = False
        self._last_refusal = ""
        self._failed_probes = 0
        self._publishers: list[asyncio.Task[None]] = []
        self._running = False
        self._op_lock = asyncio.Lock()  # one (re)subscription / client swap at a time
        for i, t in enumerate(self._tags):
            try:
                self._node_ids[i] = ua.NodeId.from_string(t.node_id)
            except (ValueError, ua.UaError) as exc:
                self._refuse(i, "bad_node_id", f"node id {t.node_id!r} cannot be parsed: {exc}")

    # ------------------------------------------------------------------ public API

    async def start(self) -> None:
        """Prepare security, connect and subscribe; if the server is unreachable, keep trying in the background.

        Raises :class:`SecurityRefused` / config errors at once: those need a person, not a retry.
        """
        if self._running:
            return
        self._prepare_local_security()
        _install_transport_filter()
        self._running = True
        self._queue = asyncio.Queue(self.cfg.queue_size)
        self._drain_task = asyncio.create_task(self._drain(), name=f"opcua-drain-{self.cfg.name}")
        try:
            async with self._op_lock:
                await self._open_session()
        except SecurityRefused:
            await self.stop()
            raise
        except _NETWORK_ERRORS as exc:
            self._mark_down(exc)
        except BaseException:
            await self.stop()
            raise
        self._watchdog_task = asyncio.create_task(self._watchdog(), name=f"opcua-watchdog-{self.cfg.name}")

    async def stop(self) -> None:
        self._running = False
        # Tearing down answers the cancelled Publish requests with noise (BadNoSubscription, futures
        # already done); none of it is news.
        if not self._quiet:
            self._quiet = True
            _QuietAsyncua.enter()
        for task in (self._watchdog_task,):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._watchdog_task = None
        await self._stop_publishers()
        client, self._client = self._client, None
        if client is not None:
            if self._sub_id is not None:
                await self._bounded(client.uaclient.delete_subscriptions([self._sub_id]), quiet=True)
            await self._discard(client)
        self._sub_id = None
        if self._drain_task is not None:
            self._flush_queue()
            self._drain_task.cancel()
            await asyncio.gather(self._drain_task, return_exceptions=True)
            self._drain_task = None
        if self._quiet:
            self._quiet = False
            _QuietAsyncua.leave()
        self.stats.connected = False

    def dead_letters(self) -> Iterable[DeadLetter]:
        return list(self._dead)

    @property
    def connected(self) -> bool:
        return self.stats.connected

    def monitored_tags(self) -> list[str]:
        """Tags currently subscribed (refused ones are not)."""
        return [t.tag for i, t in enumerate(self._tags) if i in self._types and i not in self._refused]

    def stale_tags(self, now: float | None = None) -> list[str]:
        """Tags with a max_age_s that have had no value for longer than that."""
        now = time.monotonic() if now is None else now
        return [
            t.tag
            for i, t in enumerate(self._tags)
            if t.max_age_s is not None and i not in self._refused and now - self._last_seen[i] > t.max_age_s
        ]

    async def read(self, tags: Sequence[str] | None = None) -> list[Sample]:
        """Read current values (chunked by MaxNodesPerRead). Unknown/refused tags are skipped."""
        client = self._require_client()
        if tags is None:
            wanted = list(range(len(self._tags)))
        else:
            unknown = [t for t in tags if t not in self._index]
            if unknown:
                log.warning("OPC UA %s: read of unknown tags %s skipped", self.cfg.name, unknown)
            wanted = [self._index[t] for t in tags if t in self._index]
        wanted = [i for i in wanted if i not in self._refused and self._node_ids[i] is not None]
        try:
            values = await self._read_values(client, wanted)
        except _NETWORK_ERRORS as exc:
            raise ConnectionLost(f"OPC UA {self.cfg.name}: read failed: {exc!r}") from exc
        out: list[Sample] = []
        for i, dv in zip(wanted, values, strict=True):
            sample = self._sample_from(i, dv)
            if sample is not None:
                out.append(sample)
        return out

    async def write_setpoints(self, values: dict[str, float]) -> dict[str, bool]:
        """Write SI setpoints as the node's exact type, without timestamps, then read back to confirm.

        Returns tag → confirmed. A value that cannot be represented (range, NaN) or a tag that is not a
        verified setpoint is False and logged; a lost connection raises :class:`ConnectionLost`.
        """
        client = self._require_client()
        result: dict[str, bool] = {}
        todo: list[tuple[str, int, ua.Variant]] = []
        for tag, value in values.items():
            i = self._index.get(tag)
            if i is None or self._tags[i].direction is not Direction.SETPOINT:
                log.warning(
                    "OPC UA %s: %r is not a setpoint tag of this connection; not written", self.cfg.name, tag
                )
                result[tag] = False
                continue
            dt = self._types.get(i)
            if dt is None or i in self._refused:
                log.warning(
                    "OPC UA %s: setpoint %r has no verified node (%s)",
                    self.cfg.name,
                    tag,
                    self._refused.get(i),
                )
                result[tag] = False
                continue
            try:
                variant = to_variant(self._tags[i].from_si(value), dt)
            except ValueRefused as exc:
                log.warning("OPC UA %s: setpoint %r=%r refused: %s", self.cfg.name, tag, value, exc)
                result[tag] = False
                continue
            todo.append((tag, i, variant))
        written: list[tuple[str, int, ua.Variant]] = []
        try:
            for part in chunks(todo, self._limits["write"]):
                params = ua.WriteParameters()
                params.NodesToWrite = [
                    # No timestamps: several servers refuse a written SourceTimestamp (BadWriteNotSupported).
                    ua.WriteValue(
                        NodeId=self._node_ids[i], AttributeId=ua.AttributeIds.Value, Value=ua.DataValue(v)
                    )
                    for _, i, v in part
                ]
                statuses = await self._bounded(client.uaclient.write(params))
                for (tag, i, v), status in zip(part, statuses, strict=True):
                    if status.is_good():
                        written.append((tag, i, v))
                    else:
                        log.warning(
                            "OPC UA %s: write of %r refused by server: %s", self.cfg.name, tag, status.name
                        )
                        result[tag] = False
            back = await self._read_values(client, [i for _, i, _ in written])
        except _NETWORK_ERRORS as exc:
            raise ConnectionLost(f"OPC UA {self.cfg.name}: setpoint write failed: {exc!r}") from exc
        for (tag, i, v), dv in zip(written, back, strict=True):
            got = dv.Value.Value if dv.Value is not None else None
            ok = _good(dv) and readback_matches(v, got, self._types[i], self._tags[i].write_tolerance)
            if not ok:
                log.warning("OPC UA %s: read-back of %r gave %r, wrote %r", self.cfg.name, tag, got, v.Value)
            result[tag] = ok
        ok_n = sum(1 for v in result.values() if v)
        self.stats.writes_ok += ok_n
        self.stats.writes_failed += len(result) - ok_n
        return result

    # ------------------------------------------------------------------ connection

    def _prepare_local_security(self) -> None:
        sec = self.cfg.security
        if sec.policy is SecurityPolicy.NONE:
            log.warning(
                "OPC UA %s: security policy None is configured for %s: traffic is neither signed nor encrypted",
                self.cfg.name,
                self.cfg.endpoint,
            )
            return
        assert sec.cert_path is not None and sec.key_path is not None
        hosts = list(dict.fromkeys([sec.hostname, socket.gethostname()]))
        if ensure_certificate(sec.cert_path, sec.key_path, sec.application_uri, hosts):
            log.info(
                "OPC UA %s: generated client certificate %s for %s",
                self.cfg.name,
                sec.cert_path,
                sec.application_uri,
            )
        check_client_certificate(sec)

    def _new_client(self) -> Client:
        t = self.cfg.timeouts
        client = Client(
            self.cfg.endpoint,
            timeout=t.request_s,
            # asyncua probes ServerState with this as its timeout; at 1 s a busy server (10k items) is
            # declared lost and its session torn down. Our own watchdog does the fast detection.
            watchdog_intervall=max(self.cfg.watchdog_period_s, t.request_s),
            auto_reconnect=True,
            reconnect_max_delay=self.cfg.reconnect_max_delay_s,
            reconnect_request_timeout=t.request_s,
        )
        client.name = f"symtwin {self.cfg.name}"
        client.description = client.name
        client.application_uri = self.cfg.security.application_uri
        client.session_timeout = int(self.cfg.session_timeout_s * 1000)
        client.connection_lost_callback = self._on_connection_lost
        sec = self.cfg.security
        if sec.username is not None and sec.password is not None:
            client.set_user(sec.username)
            client.set_password(sec.password)
        return client

    async def _secure(self, client: Client) -> None:
        sec = self.cfg.security
        # GetEndpoints runs on an unsecured channel (allowed by OPC 10000-4 §5.4.4); the certificate it
        # returns is checked against the trust list before any session or credentials go out.
        endpoints = await asyncio.wait_for(
            client.connect_and_get_server_endpoints(), self.cfg.timeouts.connect_s
        )
        endpoint = select_endpoint(endpoints, sec.policy, sec.mode)
        if sec.policy is SecurityPolicy.NONE:
            return
        assert sec.cert_path is not None and sec.key_path is not None and sec.trust_dir is not None
        server_der = first_certificate(endpoint.ServerCertificate or b"")
        await check_server_certificate(server_der, sec.trust_dir)
        await client.set_security(
            POLICY_CLASSES[sec.policy],
            str(sec.cert_path),
            str(sec.key_path),
            server_certificate=uacrypto.CertProperties(server_der, extension="der"),
            mode=MODES[sec.mode],
        )

    async def _open_session(self) -> None:
        """Build a client, connect, subscribe. On failure nothing is left behind."""
        client = self._new_client()
        try:
            await self._secure(client)
            await asyncio.wait_for(client.connect(), self.cfg.timeouts.connect_s)
            await self._subscribe(client)
        except ua.UaStatusCodeError as exc:
            await self._discard(client)
            if exc.code in _REFUSALS:
                raise SecurityRefused(
                    f"OPC UA {self.cfg.name}: {self.cfg.endpoint} refused the session: "
                    f"{ua.StatusCode(exc.code).name} (check username/password and that the server trusts "
                    f"the client certificate {self.cfg.security.cert_path})"
                ) from exc
            raise
        except BaseException:
            await self._discard(client)
            raise
        self._client = client
        self.stats.connected = True
        # asyncua runs one publish loop; the rest of the requests in flight are ours.
        self._publishers = [
            asyncio.create_task(self._publish_worker(client), name=f"opcua-publish-{self.cfg.name}")
            for _ in range(self.cfg.publish_requests - 1)
        ]

    async def _publish_worker(self, client: Client) -> None:
        """Keep one more Publish request in flight; answers go to the same callback as asyncua's loop."""
        acks: list[ua.SubscriptionAcknowledgement] = []
        while self._running and self._client is client:
            if self._sub_id is None or client.state is not UaClientState.CONNECTED:
                await asyncio.sleep(0.2)
                continue
            try:
                response = await client.uaclient.session.publish(acks)
            except asyncio.CancelledError:
                raise
            except Exception:  # BadNoSubscription, BadTimeout, lost transport: the watchdog handles those
                acks = []
                await asyncio.sleep(0.5)
                continue
            result = response.Parameters
            acks = []
            if result.NotificationMessage.NotificationData:
                acks.append(
                    ua.SubscriptionAcknowledgement(
                        SubscriptionId=result.SubscriptionId,
                        SequenceNumber=result.NotificationMessage.SequenceNumber,
                    )
                )
            self._on_publish(result)

    async def _stop_publishers(self) -> None:
        tasks, self._publishers = self._publishers, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _discard(self, client: Client) -> None:
        """Close a client without ever waiting longer than the disconnect timeout."""
        if self._client is client or self._client is None:
            await self._stop_publishers()
        client.uaclient.request_disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), self.cfg.timeouts.disconnect_s)
        with contextlib.suppress(Exception):  # already closed
            client.disconnect_socket()

    def _on_connection_lost(self, exc: Exception) -> Any:
        async def note() -> None:
            self._mark_down(exc)

        return note()

    def _mark_down(self, reason: object) -> None:
        self.stats.connected = False
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        self.stats.connection_losses += 1
        log.warning(
            "OPC UA %s: no connection to %s (%s); its values go stale until it recovers",
            self.cfg.name,
            self.cfg.endpoint,
            _short(reason),
        )
        if not self._quiet:
            self._quiet = True
            _QuietAsyncua.enter()

    def _mark_up(self) -> None:
        self.stats.connected = True
        if self._down_since is None:
            return
        down_for = time.monotonic() - self._down_since
        self._down_since = None
        self.stats.recoveries += 1
        log.warning(
            "OPC UA %s: connection to %s recovered after %.1f s", self.cfg.name, self.cfg.endpoint, down_for
        )
        if self._quiet:
            self._quiet = False
            _QuietAsyncua.leave()

    def _require_client(self) -> Client:
        client = self._client
        if client is None or not self.stats.connected or client.state is not UaClientState.CONNECTED:
            raise ConnectionLost(f"OPC UA {self.cfg.name}: not connected to {self.cfg.endpoint}")
        return client

    async def _bounded(self, aw: Any, *, quiet: bool = False, timeout: float | None = None) -> Any:
        """Await one network call with the request timeout; ``quiet`` swallows failures (cleanup paths)."""
        try:
            return await asyncio.wait_for(aw, self.cfg.timeouts.request_s if timeout is None else timeout)
        except _NETWORK_ERRORS:
            if quiet:
                return None
            raise

    # ------------------------------------------------------------------ subscription

    async def _read_limits(self, client: Client) -> None:
        # One node per call: a server with MaxNodesPerRead = 1 must still answer.
        for key, node in (
            ("read", MAX_NODES_PER_READ),
            ("write", MAX_NODES_PER_WRITE),
            ("items", MAX_MONITORED_ITEMS_PER_CALL),
        ):
            dvs = await self._bounded(client.uaclient.read_attributes([node], ua.AttributeIds.Value))
            value = dvs[0].Value.Value if dvs and _good(dvs[0]) and dvs[0].Value is not None else None
            self._limits[key] = effective_limit(
                int(value) if isinstance(value, int) else None, self.cfg.max_items_per_call
            )

    async def _read_attribute(
        self, client: Client, idx: list[int], attr: ua.AttributeIds
    ) -> list[ua.DataValue]:
        out: list[ua.DataValue] = []
        for part in chunks(idx, self._limits["read"]):
            ids = [n for n in (self._node_ids[i] for i in part) if n is not None]
            out.extend(await self._bounded(client.uaclient.read_attributes(ids, attr)))
        return out

    async def _read_values(self, client: Client, idx: list[int]) -> list[ua.DataValue]:
        return await self._read_attribute(client, idx, ua.AttributeIds.Value)

    async def _verify_types(self, client: Client) -> list[int]:
        """Read every node's DataType; refuse missing and mistyped nodes. Returns the tag indices to monitor."""
        candidates = [i for i, n in enumerate(self._node_ids) if n is not None]
        dvs = await self._read_attribute(client, candidates, ua.AttributeIds.DataType)
        ok: list[int] = []
        for i, dv in zip(candidates, dvs, strict=True):
            tag = self._tags[i]
            status = dv.StatusCode or ua.StatusCode()
            if not status.is_good():
                self._refuse(i, "node_missing", f"node {tag.node_id} cannot be read: {status.name}")
                continue
            actual_id = dv.Value.Value if dv.Value is not None else None
            actual = data_type_of_node_id(actual_id) if isinstance(actual_id, ua.NodeId) else None
            if actual is not tag.data_type:
                shown = actual.name.title() if actual is not None else str(actual_id)
                self._refuse(
                    i,
                    "wrong_type",
                    f"node {tag.node_id} is {shown}, the config says {tag.data_type.name.title()}",
                )
                continue
            self._types[i] = actual
            self._refused.pop(i, None)
            ok.append(i)
        return ok

    async def _subscribe(self, client: Client) -> None:
        """Limits → types → one subscription → monitored items in chunks. Per-item failures are refused."""
        await self._read_limits(client)
        wanted = await self._verify_types(client)
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = self.cfg.publishing_interval_s * 1000.0
        keepalive = max(1, math.ceil(self.cfg.keepalive_s / self.cfg.publishing_interval_s))
        params.RequestedMaxKeepAliveCount = keepalive
        params.RequestedLifetimeCount = keepalive * 10
        params.MaxNotificationsPerPublish = 0  # no cap: 10,000 items at 1 Hz must fit
        params.PublishingEnabled = True
        params.Priority = 0
        result = await self._bounded(client.uaclient.create_subscription(params, self._on_publish))
        self._sub_id = result.SubscriptionId
        self._sub_lost = False
        self._last_publish = time.monotonic()
        created = await self._create_items(client, self._sub_id, wanted)
        self.stats.monitored_items = created
        now = time.monotonic()
        for i in wanted:
            self._last_seen[i] = max(self._last_seen[i], now)  # staleness counts from the subscription

    def _item_request(self, i: int) -> ua.MonitoredItemCreateRequest:
        tag = self._tags[i]
        mp = ua.MonitoringParameters()
        mp.ClientHandle = i + 1  # stable across re-subscriptions: handle → tag needs no rebuild
        mp.SamplingInterval = tag.sampling_interval_s * 1000.0
        mp.QueueSize = 1
        mp.DiscardOldest = True
        if tag.deadband > 0:
            mp.Filter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=ua.DeadbandType.Absolute,
                DeadbandValue=tag.deadband,
            )
        req = ua.MonitoredItemCreateRequest()
        req.ItemToMonitor = ua.ReadValueId(NodeId=self._node_ids[i], AttributeId=ua.AttributeIds.Value)
        req.MonitoringMode = ua.MonitoringMode.Reporting
        req.RequestedParameters = mp
        return req

    async def _create_items(self, client: Client, sub_id: int, wanted: list[int]) -> int:
        created = 0
        size = self._limits["items"]
        pending = list(wanted)
        while pending:
            part, rest = pending[:size], pending[size:]
            params = ua.CreateMonitoredItemsParameters()
            params.SubscriptionId = sub_id
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            params.ItemsToCreate = [self._item_request(i) for i in part]
            try:
                results = await self._bounded(client.uaclient.create_monitored_items(params))
            except ua.UaStatusCodeError as exc:
                # A server that enforces a lower limit than it advertises: halve and retry.
                if exc.code == ua.StatusCodes.BadTooManyOperations and size > 1:
                    size = max(1, size // 2)
                    self._limits["items"] = size
                    continue
                raise
            for i, res in zip(part, results, strict=True):
                if res.StatusCode.is_good():
                    created += 1
                else:
                    self._types.pop(i, None)
                    self._refuse(
                        i,
                        "item_refused",
                        f"monitored item for {self._tags[i].node_id} refused: {res.StatusCode.name}",
                    )
            pending = rest
        return created

    async def _resubscribe(self, client: Client) -> None:
        old = self._sub_id
        self._sub_id = None
        if old is not None:
            client.uaclient.session._subscription_callbacks.pop(old, None)
            await self._bounded(client.uaclient.delete_subscriptions([old]), quiet=True)
        await self._subscribe(client)
        self.stats.resubscriptions += 1

    async def _subscription_alive(self, client: Client) -> bool:
        if self._sub_id is None or self._sub_lost:
            return False
        params = ua.SetPublishingModeParameters()
        params.PublishingEnabled = True
        params.SubscriptionIds = [self._sub_id]
        try:
            statuses = await self._bounded(client.uaclient.set_publishing_mode(params))
        except ua.UaStatusCodeError:
            return False
        if not statuses or not statuses[0].is_good():
            return False
        client.uaclient.ensure_publish_loop()
        return True

    # ------------------------------------------------------------------ data path

    def _on_publish(self, result: ua.PublishResult) -> None:
        """Publish-loop callback: convert and enqueue, never await."""
        if result.SubscriptionId != self._sub_id:
            return  # a late answer for a subscription we already replaced
        self._last_publish = time.monotonic()
        for notif in result.NotificationMessage.NotificationData or ():
            if isinstance(notif, ua.DataChangeNotification):
                for item in notif.MonitoredItems:
                    i = item.ClientHandle - 1
                    if 0 <= i < len(self._tags):
                        self.stats.notifications += 1
                        sample = self._sample_from(i, item.Value)
                        if sample is not None:
                            self._enqueue(sample)
            elif isinstance(notif, ua.StatusChangeNotification):
                # The server ended the subscription (e.g. BadTimeout); the watchdog re-creates it.
                self._sub_lost = True

    def _sample_from(self, i: int, dv: ua.DataValue) -> Sample | None:
        tag = self._tags[i]
        self._last_seen[i] = time.monotonic()
        ts_dt = dv.SourceTimestamp or dv.ServerTimestamp
        ts = _epoch_s(ts_dt) if ts_dt is not None else self._clock()
        quality = quality_of(dv.StatusCode)
        raw = dv.Value.Value if dv.Value is not None else None
        if raw is None:
            if quality is Quality.GOOD:
                self._dead_letter(
                    i, "no_value", f"node {tag.node_id} sent a Good status without a value", raw
                )
                return None
            return Sample(tag.tag, ts, math.nan, quality)
        number = as_number(raw)
        if number is None:
            self._dead_letter(
                i, "wrong_type", f"node {tag.node_id} sent {type(raw).__name__}, not a number", raw
            )
            return None
        if tag.binding is not None:
            got = tag.binding.sample(number, ts, quality)
            if isinstance(got, Refusal):
                self._dead_letter(i, got.value, f"node {tag.node_id} sent {raw!r}", raw)
                return None
            return got
        return Sample(tag.tag, ts, tag.to_si(number), quality)

    def _enqueue(self, sample: Sample) -> None:
        assert self._queue is not None
        try:
            self._queue.put_nowait(sample)
        except asyncio.QueueFull:
            self.stats.queue_overflow += 1

    async def _drain(self) -> None:
        assert self._queue is not None
        queue = self._queue
        failing = False
        while True:
            batch = [await queue.get()]
            while len(batch) < self.cfg.sink_batch and not queue.empty():
                batch.append(queue.get_nowait())
            failing = self._write_sink(batch, failing)

    def _write_sink(self, batch: list[Sample], failing: bool) -> bool:
        try:
            self._sink.write(batch)
        except Exception:
            self.stats.sink_errors += 1
            if not failing:
                log.exception(
                    "OPC UA %s: the sink refused %d samples; they are dropped", self.cfg.name, len(batch)
                )
            return True
        self.stats.samples_out += len(batch)
        if failing:
            log.warning("OPC UA %s: the sink accepts samples again", self.cfg.name)
        return False

    def _flush_queue(self) -> None:
        if self._queue is None:
            return
        batch: list[Sample] = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if batch:
            self._write_sink(batch, False)

    def _refuse(self, i: int, code: str, reason: str) -> None:
        """Set a node aside. Each refusal is counted; a dead letter is kept when the reason is new."""
        full = f"{code}: {reason}"
        previous = self._refused.get(i)
        self._refused[i] = full
        self._types.pop(i, None)
        if previous != full:
            self._dead_letter(i, code, reason, None)
            log.warning("OPC UA %s: tag %r set aside: %s", self.cfg.name, self._tags[i].tag, reason)
        else:
            self.stats.dead_letters_by_reason[code] = self.stats.dead_letters_by_reason.get(code, 0) + 1
            self.stats.dead_letters += 1

    def _dead_letter(self, i: int, code: str, reason: str, value: object) -> None:
        tag = self._tags[i]
        payload = json.dumps({"tag": tag.tag, "node_id": tag.node_id, "value": repr(value)}).encode()
        letter = DeadLetter(
            source=f"opcua:{self.cfg.name}",
            received_at=self._clock(),
            reason=f"{code}: {reason}",
            payload=payload,
        )
        self._dead.append(letter)
        self.stats.dead_letters += 1
        self.stats.dead_letters_by_reason[code] = self.stats.dead_letters_by_reason.get(code, 0) + 1
        if self._on_dead_letter is not None:
            try:
                self._on_dead_letter(letter)
            except Exception:
                log.exception("OPC UA %s: dead-letter store failed", self.cfg.name)

    # ------------------------------------------------------------------ watchdog

    async def _watchdog(self) -> None:
        while self._running:
            await asyncio.sleep(self.cfg.watchdog_period_s)
            try:
                async with self._op_lock:
                    await self._watchdog_tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watchdog must outlive anything a tick meets
                self._mark_down(exc)

    async def _probe(self, client: Client) -> bool:
        if client.state is not UaClientState.CONNECTED:
            return False
        try:
            dvs = await self._bounded(
                client.uaclient.read_attributes([SERVER_STATE], ua.AttributeIds.Value),
                timeout=self.cfg.timeouts.probe_s,
            )
        except _NETWORK_ERRORS:
            return False
        return (
            bool(dvs)
            and _good(dvs[0])
            and dvs[0].Value is not None
            and dvs[0].Value.Value == ua.ServerState.Running
        )

    async def _watchdog_tick(self) -> None:
        client = self._client
        now = time.monotonic()
        if client is None:
            await self._fresh_client()
            return
        if not await self._probe(client):
            self._failed_probes += 1
            # One slow answer from a busy server is not an outage; two in a row, or a dead transport, is.
            if (
                self._failed_probes < 2
                and client.state is UaClientState.CONNECTED
                and self._down_since is None
            ):
                return
            self._mark_down("server status probe failed")
            assert self._down_since is not None
            if now - self._down_since >= self.cfg.reconnect_hang_s:
                await self._fresh_client()
            return
        self._failed_probes = 0
        if (
            self._down_since is not None
            or self._sub_lost
            or now - self._last_publish > self._publish_deadline()
        ):
            # Recovered by asyncua's reconnect, or the subscription went quiet: does the server still have it?
            if not await self._subscription_alive(client):
                await self._resubscribe(client)
            self._mark_up()
            return
        await self._reread_stale(client, now)

    def _publish_deadline(self) -> float:
        # Keep-alives arrive at least every keepalive_s; allow two missed ones plus a request round trip.
        return 2 * self.cfg.keepalive_s + self.cfg.publishing_interval_s + self.cfg.timeouts.request_s

    async def _fresh_client(self) -> None:
        old, self._client = self._client, None
        self._sub_id = None
        if old is not None:
            await self._discard(old)
        try:
            await self._open_session()
        except SecurityRefused as exc:
            self._mark_down(exc)
            if str(exc) != self._last_refusal:  # once per distinct refusal, not once per retry
                self._last_refusal = str(exc)
                log.error("OPC UA %s: %s", self.cfg.name, exc)
            return
        except _NETWORK_ERRORS as exc:
            self._mark_down(exc)
            return
        self.stats.fresh_clients += 1
        self._mark_up()

    async def _reread_stale(self, client: Client, now: float) -> None:
        """Tags past their max age are read directly: either the value is confirmed or it shows as bad."""
        stale = [
            i
            for i, t in enumerate(self._tags)
            if t.max_age_s is not None and i in self._types and now - self._last_seen[i] > t.max_age_s
        ]
        if not stale:
            return
        self.stats.stale_rereads += len(stale)
        values = await self._read_values(client, stale)
        for i, dv in zip(stale, values, strict=True):
            sample = self._sample_from(i, dv)
            if sample is not None:
                self._enqueue(sample)


def _epoch_s(t: datetime.datetime) -> float:
    """OPC UA DateTime is UTC; a naive datetime must not be read as local time."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return t.timestamp()


def _good(dv: ua.DataValue) -> bool:
    return dv.StatusCode is None or dv.StatusCode.is_good()


def _short(reason: object) -> str:
    text = repr(reason) if isinstance(reason, BaseException) else str(reason)
    return text if len(text) <= 200 else text[:197] + "..."
