"""The MQTT adapter: paho-mqtt 2.x (callback API 2, MQTT v5) → router → sink; setpoints out as QoS 1.

Threading: paho's network thread calls ``on_message``; it decodes and writes straight to the sink (the
historian outbox, whose ``write`` is fast and thread-safe). Measured here: a 10-tag JSON message decodes in
~15 µs, so the network thread is never held long. Writing before returning also means paho sends the
PUBACK only after the samples are in the outbox: a crash between the two makes the broker redeliver
(at-least-once, de-duplicated by (tag, timestamp)) instead of losing them.
Nothing raised by a payload, the sink or the dead-letter store escapes the callback.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from adapters.base import AdapterError, ConnectionLost, DeadLetter, Sink
from adapters.mqtt.config import MqttConfig, SetpointBinding
from adapters.mqtt.router import MqttRouter

log = logging.getLogger(__name__)

DeadLetterSink = Callable[[DeadLetter], None]


def paho_client(cfg: MqttConfig, max_queued: int) -> paho.Client:
    """A paho MQTT v5 client for ``cfg``: its client id, login, TLS (server certificate verified against
    ``tls_ca``; client certificate when given) and reconnect back-off, with at most ``max_queued`` outgoing
    messages held. Every symtwin client of a broker (adapter, sharing publisher, forecast subscriber) is
    made here, so none of them connects with less security than the config asks for."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=paho.MQTTv5)
    if cfg.username is not None:
        c.username_pw_set(cfg.username, cfg.password)
    if cfg.tls_ca is not None:
        c.tls_set(
            ca_certs=str(cfg.tls_ca),
            certfile=str(cfg.tls_cert) if cfg.tls_cert else None,
            keyfile=str(cfg.tls_key) if cfg.tls_key else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    c.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
    c.max_queued_messages_set(max_queued)
    return c


class ConnectRefused(AdapterError):
    """The broker refused the connection (bad credentials, not authorised, TLS failure)."""


class SubscribeRefused(AdapterError):
    """The broker refused one or more subscriptions (ACL)."""


class MqttAdapter:
    """One MQTT connection: a :class:`~adapters.base.Source` of samples and a ``SetpointWriter``.

    sink: where samples go (thread-safe ``write``; called from paho's network thread).
    dead_letter: called with each refused input (from paho's thread); the adapter also keeps the last
        ``config.dead_letters_kept`` for :meth:`dead_letters`.
    setpoints: tag → where to write it.
    clock: wall clock [s since the epoch] for receive times and command timestamps.
    """

    def __init__(
        self,
        config: MqttConfig,
        router: MqttRouter,
        sink: Sink,
        *,
        dead_letter: DeadLetterSink | None = None,
        setpoints: Mapping[str, SetpointBinding] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = config
        self._router = router
        self._sink = sink
        self._dead_letter = dead_letter
        self._setpoints = dict(setpoints or {})
        self._clock = clock
        self._recent: collections.deque[DeadLetter] = collections.deque(maxlen=config.dead_letters_kept)
        self._lock = threading.Lock()  # guards _cmd_seq and the connection-state fields below
        self._cmd_seq = 0
        self._connected = False
        self._lost_at: float | None = None
        self._reconnects = 0
        self._refusal: str | None = None
        self._stopping = False
        self._connect_failing = False
        self._ready: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = self._make_client()

    # ------------------------------------------------------------ setup

    def _make_client(self) -> paho.Client:
        c = paho_client(self._cfg, self._cfg.max_queued_commands)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        return c

    async def start(self) -> None:
        """Connect, subscribe and return once the subscriptions are acknowledged.

        Raises ConnectRefused (credentials, authorisation), SubscribeRefused, or ConnectionLost when the
        broker is not reachable within ``connect_timeout_s``. After a successful start, losses are handled
        by paho's reconnect loop and show up in :meth:`stats` and the log.
        """
        cfg = self._cfg
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = cfg.session_expiry_s
        self._client.connect_async(
            cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=cfg.clean_start, properties=props
        )
        self._client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), cfg.connect_timeout_s)
        except TimeoutError:
            await self._shutdown()
            raise ConnectionLost(
                f"MQTT broker {cfg.host}:{cfg.port} did not accept a connection within {cfg.connect_timeout_s} s"
            ) from None
        except AdapterError:
            await self._shutdown()
            raise

    async def stop(self) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._stopping = True
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        with self._lock:
            self._connected = False

    def _resolve(self, exc: AdapterError | None) -> None:
        # Runs on the event loop thread.
        if self._ready is not None and not self._ready.done():
            if exc is None:
                self._ready.set_result(None)
            else:
                self._ready.set_exception(exc)

    def _signal(self, exc: AdapterError | None) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._resolve, exc)

    # ------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        if reason_code.is_failure:
            with self._lock:
                first = self._refusal is None
                self._refusal = str(reason_code)
            if first:
                log.error(
                    "MQTT broker %s:%s refused the connection: %s",
                    self._cfg.host,
                    self._cfg.port,
                    reason_code,
                )
            self._signal(
                ConnectRefused(f"MQTT broker {self._cfg.host}:{self._cfg.port} refused: {reason_code}")
            )
            return
        with self._lock:
            self._connected = True
            self._connect_failing = False
            self._refusal = None
            lost_at = self._lost_at
            self._lost_at = None
            if lost_at is not None:
                self._reconnects += 1
        if lost_at is not None:
            log.info(
                "MQTT connection to %s:%s restored after %.1f s (session present: %s)",
                self._cfg.host,
                self._cfg.port,
                time.monotonic() - lost_at,
                flags.session_present,
            )
        # Subscribe on every connect: a broker that lost our session (restart without persistence) has
        # forgotten the subscriptions. no_local keeps our own commands (e.g. NCMD rebirth) from echoing back.
        subs = self._router.subscriptions()
        if subs:
            client.subscribe([(t, SubscribeOptions(qos=1, noLocal=True)) for t in subs])
        if not subs or flags.session_present:
            # With a session present the broker still holds our subscriptions; its SUBACK may queue
            # behind a large backlog of messages kept for us, so do not make start() wait for it.
            self._signal(None)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        # TCP or TLS failure before any CONNACK (broker down, certificate not trusted): paho retries.
        with self._lock:
            first = not self._connect_failing
            self._connect_failing = True
        if first:
            log.warning(
                "MQTT broker %s:%s unreachable or TLS handshake failed; retrying every %s s at most",
                self._cfg.host,
                self._cfg.port,
                self._cfg.reconnect_max_s,
            )

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode], properties: Any
    ) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("MQTT broker refused subscriptions: %s", ", ".join(failed))
            self._signal(SubscribeRefused(f"subscriptions refused: {', '.join(failed)}"))
        else:
            self._signal(None)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        with self._lock:
            was = self._connected
            self._connected = False
            if was:
                self._lost_at = time.monotonic()
        if was and not self._stopping:
            log.warning("MQTT connection to %s:%s lost: %s", self._cfg.host, self._cfg.port, reason_code)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)
        received_at = self._clock()
        payload = msg.payload if isinstance(msg.payload, bytes) else bytes(msg.payload)
        try:
            routed = self._router.handle(topic, payload, received_at)
        except Exception as exc:  # a decoder bug must not kill paho's thread; keep the input for analysis
            log.exception("MQTT router failed on topic %s", topic)
            self._router.count("internal_error")
            self._keep(
                DeadLetter("mqtt:" + topic, received_at, f"internal_error: {exc!r}"[:300], payload[:4096])
            )
            return
        if routed.samples:
            try:
                self._sink.write(routed.samples)
            except Exception as exc:
                log.exception("sink refused %d samples from %s", len(routed.samples), topic)
                self._router.count("sink_error")
                self._keep(
                    DeadLetter("mqtt:" + topic, received_at, f"sink_error: {exc!r}"[:300], payload[:4096])
                )
        for dl in routed.dead_letters:
            self._keep(dl)
        for cmd_topic, payload in routed.commands:
            client.publish(cmd_topic, payload, qos=1)

    def _keep(self, dl: DeadLetter) -> None:
        with self._lock:
            self._recent.append(dl)
        if self._dead_letter is not None:
            try:
                self._dead_letter(dl)
            except Exception:
                log.exception("dead-letter store refused an entry from %s", dl.source)
                self._router.count("dead_letter_error")

    # ------------------------------------------------------------ Source / status

    def dead_letters(self) -> Iterable[DeadLetter]:
        """The most recent dead letters (all of them went to the ``dead_letter`` callable)."""
        with self._lock:
            return list(self._recent)

    @property
    def connected(self) -> bool:
        return self._connected

    def stats(self) -> dict[str, int]:
        """Counters: messages, samples, duplicates, reconnects, rebirth requests and each refusal reason."""
        out = self._router.snapshot()
        out["reconnects"] = self._reconnects
        out["connected"] = int(self._connected)
        return out

    # ------------------------------------------------------------ SetpointWriter

    async def write_setpoints(self, values: dict[str, float]) -> dict[str, bool]:
        """Publish each setpoint as a QoS 1 JSON command ``{"value", "ts", "seq"}``; True once PUBACKed.

        Refused without sending (False): unknown tags, non-finite values, values outside the binding's
        bounds, and everything while disconnected (a command queued now could arrive long after it was
        meant; the message expiry also stops the broker from delivering it late).
        """
        results: dict[str, bool] = {}
        pending: list[tuple[str, paho.MQTTMessageInfo]] = []
        timeout = self._cfg.command_timeout_s
        now = self._clock()
        for tag, si in values.items():
            target = self._setpoints.get(tag)
            if target is None:
                log.error("setpoint %s has no MQTT binding; not written", tag)
                results[tag] = False
                continue
            if not isinstance(si, int | float) or not math.isfinite(si) or not target.binding.in_bounds(si):
                log.error("setpoint %s = %r is non-finite or outside its bounds; not written", tag, si)
                results[tag] = False
                continue
            if not self._connected:
                results[tag] = False
                continue
            raw = target.binding.from_si(float(si))
            with self._lock:
                self._cmd_seq += 1
                seq = self._cmd_seq
            body = json.dumps({"value": raw, "ts": now, "seq": seq}).encode()
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = max(1, math.ceil(timeout))
            info = self._client.publish(target.topic, body, qos=1, properties=props)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                results[tag] = False
                continue
            pending.append((tag, info))
        if pending:
            results.update(await asyncio.to_thread(_wait_all, pending, time.monotonic() + timeout))
        return results


def _wait_all(pending: list[tuple[str, paho.MQTTMessageInfo]], deadline: float) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for tag, info in pending:
        try:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            out[tag] = info.is_published()
        except (RuntimeError, ValueError):
            out[tag] = False
    return out
