"""Republication of shared data to the park broker, enforced by the sharing policy, and its audit trail.

The service's history fan-out hands every sample to :class:`Publisher.write` (any thread, never
blocks: a bounded buffer, overflow dropped and counted). A worker thread runs each sample through the
governance :class:`~symtwin.governance.mosquitto.Republisher` of the tag's owner — the one enforcement
layer: raw grants to ``park/<owner>/raw/<tag>``, aggregated grants as closed-interval mean/min/max to
``park/<owner>/agg/<interval>/<tag>/<stat>``, withheld tags nowhere — and publishes at QoS 1. Each owner
logs in as itself (the broker ACL generated from the same policy lets a party write only under
``park/<party>/``). Every share is recorded by a :class:`~symtwin.governance.audit.ShareAuditor` in a
hash-chained :class:`~symtwin.governance.audit.AuditLog` (``symtwin audit verify``).

Payload: ``{"value": <SI>, "ts": <s since the epoch>, "unit": "<SI unit>", "quality": <0..>}`` (value null
when not finite), so a recipient can bind it with the default JSON pointers ``/value`` and ``/ts``.

A share is recorded when the policy releases it to the broker client, so a message later lost to a full
client queue is still in the log: the audit may overstate what left, never understate it (except for
the records still coalescing in memory when the process dies: at most ``audit_flush_every_s`` of them).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from adapters.base import Sample
from adapters.mqtt import MqttConfig
from adapters.mqtt.client import paho_client
from symtwin.config import LoadedSite
from symtwin.governance.audit import AuditLog, ShareAuditor
from symtwin.governance.mosquitto import Republisher, password_env_var
from symtwin.governance.policy import SharingPolicy, StreamFilter
from symtwin.runtime.mqtt_wiring import mqtt_config

log = logging.getLogger(__name__)

__all__ = [
    "AUDIT_FILE",
    "BucketWriter",
    "Publisher",
    "PublisherParams",
    "SharingError",
    "bucket_writer_from_site",
    "publisher_from_site",
]

AUDIT_FILE = "share-audit.jsonl"


class SharingError(ValueError):
    """The publisher cannot be set up (no broker section, a party's broker password missing)."""


@dataclass(frozen=True)
class PublisherParams:
    """max_buffered: samples held between the service and the worker; beyond it new samples are dropped.
    max_inflight: QoS 1 messages each owner's client may hold unacknowledged (paho's queue); beyond it
        a message is dropped and counted.
    flush_every_s: wall period of the worker's wake-up: aggregates whose interval closed are released
        (on the service clock) even when no later sample arrives.
    flush_lag_s: an interval is closed this long [s of service clock] after its end, so samples that
        arrive a little late (network, adapter hand-off) still count in it.
    audit_period_s: one audit record per recipient and period (or when the grants change).
    audit_flush_every_s: wall period after which the open audit records are written anyway: the
        auditor coalesces in memory, so this bounds what a crash (kill -9, power loss) can leave
        unrecorded.
    """

    max_buffered: int = 100_000
    max_inflight: int = 10_000
    flush_every_s: float = 1.0
    flush_lag_s: float = 5.0
    audit_period_s: float = 3600.0
    audit_flush_every_s: float = 300.0


class _OwnerClient:
    """One owner's paho client (logs in as the owner) and its Republisher."""

    def __init__(self, owner: str, config: MqttConfig, republisher: Republisher, max_inflight: int) -> None:
        self.owner = owner
        self.config = config
        self.republisher = republisher
        self.connected = threading.Event()
        self.refused: str | None = None
        self.stopping = False
        c = paho_client(config, max_inflight)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        self.client = c
        self.last: paho.MQTTMessageInfo | None = None

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            if self.refused is None:
                log.error("park broker refused %s's publisher: %s", self.owner, rc)
            self.refused = str(rc)
            return
        self.refused = None
        self.connected.set()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if self.connected.is_set() and not self.stopping:
            log.warning("park broker connection of %s's publisher lost: %s", self.owner, rc)
        self.connected.clear()

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry_s
        self.client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def stop(self) -> None:
        self.stopping = True
        self.client.disconnect()
        self.client.loop_stop()


def _payload(s: Sample, unit: str) -> bytes:
    value = s.value if math.isfinite(s.value) else None
    return json.dumps({"value": value, "ts": s.timestamp, "unit": unit, "quality": int(s.quality)}).encode()


class _ShareWorker:
    """What the broker publisher and the bucket writer share: a ``Sink`` whose ``write`` (any thread) only
    appends to a bounded buffer (overflow dropped and counted), and one worker thread that hands each batch
    to ``_process``, releases closed intervals with ``_flush(now)`` every ``flush_every_s`` (wall) on the
    service clock less ``flush_lag_s``, and writes open audit records every ``audit_flush_every_s``."""

    def __init__(
        self,
        owners: set[str],
        owner_of: Mapping[str, str],
        *,
        clock: Callable[[], float],
        auditor: ShareAuditor | None,
        params: PublisherParams,
        name: str,
    ) -> None:
        self.params = params
        self._clock = clock
        self._auditor = auditor
        self._owner_of = dict(owner_of)
        self._owners = owners
        self._buf: deque[Sample] = deque()
        self._cv = threading.Condition()
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.counts: dict[str, int] = {"accepted": 0, "dropped_buffer": 0}

    # ------------------------------------------------------------ Sink (any thread, never blocks)

    def write(self, samples: Sequence[Sample]) -> None:
        owned = [s for s in samples if self._owner_of.get(s.tag) in self._owners]
        if not owned:
            return
        with self._cv:
            room = self.params.max_buffered - len(self._buf)
            if room < len(owned):
                self.counts["dropped_buffer"] += len(owned) - max(room, 0)
                owned = owned[: max(room, 0)]
            self._buf.extend(owned)
            self.counts["accepted"] += len(owned)
            self._cv.notify()

    # ------------------------------------------------------------ lifecycle

    def _wait_idle(self, end: float, claim: bool = False) -> bool:
        """Wait (until monotonic ``end``) for the buffer to empty and the worker to finish its batch; with
        ``claim`` also mark the worker busy under the same lock, so the caller may use the filters until it
        clears ``_busy`` (the worker takes no batch meanwhile)."""
        with self._cv:
            self._cv.notify()
            while (self._buf or self._busy) and time.monotonic() < end:
                self._cv.wait(0.05)
            idle = not (self._buf or self._busy)
            if idle and claim:
                self._busy = True
            return idle

    def _stop_worker(self, timeout_s: float) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # ------------------------------------------------------------ worker

    def _run(self) -> None:
        next_flush = time.monotonic()
        next_audit = next_flush + self.params.audit_flush_every_s
        while True:
            with self._cv:
                wake = min(next_flush, next_audit) if self._auditor is not None else next_flush
                while not self._buf and not self._stop and time.monotonic() < wake:
                    self._cv.wait(max(0.0, wake - time.monotonic()))
                if self._stop:
                    return
                due = time.monotonic() >= next_flush
                # Read the clock before taking the buffer: a sample written before this time is in the
                # batch, so closing an interval never overtakes data already handed to us.
                now = self._clock() - self.params.flush_lag_s if due else 0.0
                batch = list(self._buf)
                self._buf.clear()
                self._busy = True
            try:
                self._process(batch)
                if due:
                    next_flush = time.monotonic() + self.params.flush_every_s
                    self._flush(now)
                if self._auditor is not None and time.monotonic() >= next_audit:
                    next_audit = time.monotonic() + self.params.audit_flush_every_s
                    self._auditor.flush()
            except Exception:  # the worker must outlive a bad sample, a failing store or an audit-disk error
                log.exception("%s: a batch of %d samples failed", self._thread.name, len(batch))
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _process(self, batch: list[Sample]) -> None:
        raise NotImplementedError

    def _flush(self, now: float) -> None:
        raise NotImplementedError


class Publisher(_ShareWorker):
    """A ``Sink`` for the service's history fan-out that republishes what the policy grants.

    owners: parties whose tags this service republishes (each with its own broker login).
    clock: the service clock [s since the epoch]; aggregates close on it.
    auditor: records every share (flushed on :meth:`stop`).
    """

    def __init__(
        self,
        policy: SharingPolicy,
        connections: Mapping[str, MqttConfig],
        *,
        clock: Callable[[], float] = time.time,
        auditor: ShareAuditor | None = None,
        units: Mapping[str, str] | None = None,
        params: PublisherParams = PublisherParams(),
    ) -> None:
        owner_of = {t.id: t.owner for t in policy.tags}
        self._units = dict(units or {t.id: t.unit for t in policy.tags})
        self._clients: dict[str, _OwnerClient] = {}
        for owner, cfg in connections.items():
            rep = Republisher(policy, owner, recorder=auditor)
            if not rep.topics():
                log.info("%s shares no tag with another party; nothing to republish for it", owner)
                continue
            self._clients[owner] = _OwnerClient(owner, cfg, rep, params.max_inflight)
        super().__init__(
            set(self._clients), owner_of, clock=clock, auditor=auditor, params=params, name="share-publisher"
        )
        self.counts.update({"published": 0, "dropped_client": 0})

    @property
    def owners(self) -> tuple[str, ...]:
        return tuple(self._clients)

    def topics(self) -> frozenset[str]:
        """Every topic this publisher may publish on."""
        return frozenset().union(*(c.republisher.topics() for c in self._clients.values()))

    # ------------------------------------------------------------ lifecycle

    def start(self, connect_timeout_s: float = 10.0) -> None:
        """Connect every owner's client (waits up to ``connect_timeout_s`` for each, then goes on: paho
        keeps retrying and QoS 1 messages queue meanwhile) and start the worker."""
        for c in self._clients.values():
            c.start()
        deadline = time.monotonic() + connect_timeout_s
        for c in self._clients.values():
            if not c.connected.wait(max(0.0, deadline - time.monotonic())):
                log.warning(
                    "%s's publisher is not connected to the park broker yet (%s); messages queue",
                    c.owner,
                    c.refused or "no answer",
                )
        self._thread.start()

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every buffered sample is published and acknowledged (tests, shutdown)."""
        end = time.monotonic() + timeout_s
        if not self._wait_idle(end):
            return False
        for c in self._clients.values():
            info = c.last
            if info is not None:
                try:
                    info.wait_for_publish(max(0.0, end - time.monotonic()))
                except (RuntimeError, ValueError):
                    return False
                if not info.is_published():
                    return False
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish what is buffered (best effort within ``timeout_s``), close the clients, flush the audit."""
        self.drain(timeout_s)
        self._stop_worker(timeout_s)
        for c in self._clients.values():
            c.stop()
        if self._auditor is not None:
            self._auditor.flush()

    def stats(self) -> dict[str, int]:
        with self._cv:
            out = dict(self.counts)
            out["buffered"] = len(self._buf)
        out["connected"] = sum(c.connected.is_set() for c in self._clients.values())
        return out

    # ------------------------------------------------------------ worker

    def _process(self, batch: list[Sample]) -> None:
        by_owner: dict[str, list[Sample]] = {}
        for s in batch:
            by_owner.setdefault(self._owner_of[s.tag], []).append(s)
        for owner, samples in by_owner.items():
            c = self._clients[owner]
            self._send(c, c.republisher.push(samples))

    def _flush(self, now: float) -> None:
        for c in self._clients.values():
            self._send(c, c.republisher.flush(now))

    def _send(self, c: _OwnerClient, out: Iterable[tuple[str, Sample]]) -> None:
        for topic, s in out:
            tag = s.tag.partition(":")[0]
            info = c.client.publish(topic, _payload(s, self._units.get(tag, "")), qos=1)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                # NO_CONN: paho keeps QoS 1 messages queued and sends them on reconnect
                c.last = info
                self.counts["published"] += 1
            else:
                self.counts["dropped_client"] += 1
                if self.counts["dropped_client"] == 1 or self.counts["dropped_client"] % 1000 == 0:
                    log.warning(
                        "park broker client of %s dropped a message (%s); %d dropped so far",
                        c.owner,
                        info.rc,
                        self.counts["dropped_client"],
                    )


def publisher_from_site(
    site: LoadedSite,
    policy: SharingPolicy,
    state_dir: Path,
    *,
    owners: Iterable[str] | None = None,
    clock: Callable[[], float] = time.time,
    credentials_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    host: str | None = None,
    port: int | None = None,
    params: PublisherParams = PublisherParams(),
) -> Publisher | None:
    """The publisher for ``owners`` (default: every party owning a tag of this site) on the broker of
    ``adapters.mqtt``; None when no owner shares anything. The audit log is ``<state_dir>/share-audit.jsonl``.

    Each owner logs in as its party id; its password is ``adapters.mqtt.password`` when
    ``adapters.mqtt.username`` is that party, else ``SYMTWIN_MQTT_PASSWORD_<PARTY>`` from ``environ``
    (the variables `symtwin governance mosquitto` reads when it writes the broker's password file).
    """
    env = os.environ if environ is None else environ
    wanted = sorted(set(owners) if owners is not None else {t.owner for t in site.tags.values()})
    sharing = [o for o in wanted if policy.shared_by(o)]
    if not sharing:
        return None
    base = mqtt_config(site, credentials_dir=credentials_dir, host=host, port=port)
    connections: dict[str, MqttConfig] = {}
    missing = []
    for owner in sharing:
        if base.username == owner:
            password = base.password
        else:
            password = env.get(password_env_var(owner))
            if password is None:
                missing.append(password_env_var(owner))
        connections[owner] = MqttConfig(
            host=base.host,
            port=base.port,
            client_id=f"{base.client_id}-share-{owner}",
            username=owner,
            password=password,
            tls_ca=base.tls_ca,
            tls_cert=base.tls_cert,
            tls_key=base.tls_key,
            keepalive_s=base.keepalive_s,
        )
    if missing:
        raise SharingError(
            "the park broker password of each sharing party is needed to republish its data; "
            f"set {', '.join(missing)} (as for `symtwin governance mosquitto`)"
        )
    auditor = ShareAuditor(AuditLog(state_dir / AUDIT_FILE, clock=clock), params.audit_period_s)
    units = {t.id: t.si_unit for t in site.tags.values()}
    return Publisher(policy, connections, clock=clock, auditor=auditor, units=units, params=params)


class BucketWriter(_ShareWorker):
    """A ``Sink`` that writes each party's InfluxDB buckets through the same enforcement layer.

    Buckets as in ``symtwin governance influx`` (:mod:`symtwin.governance.influx`): ``<prefix>-<party>``
    gets the party's own tags raw; ``<prefix>-<owner>-to-<recipient>`` gets what the policy grants
    ``recipient`` of ``owner``'s tags (raw, or only the closed-interval mean/min/max named
    ``<tag>:<stat>_<interval>``), nothing of a tag withheld. Aggregation happens here, in the owner's
    service, before anything is handed to a store.

    sinks: bucket name → a historian (``write(samples)`` that never blocks, e.g.
    :class:`adapters.influx.InfluxHistorian` with its own outbox). ``write`` only appends to a bounded
    buffer; a worker thread filters and hands the outputs on, and releases intervals on the service
    ``clock`` every ``flush_every_s`` (wall) with ``flush_lag_s`` of grace for late samples.
    """

    def __init__(
        self,
        policy: SharingPolicy,
        sinks: Mapping[str, Any],
        *,
        prefix: str = "symtwin",
        owners: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
        auditor: ShareAuditor | None = None,
        params: PublisherParams = PublisherParams(),
    ) -> None:
        from symtwin.governance.influx import private_bucket, share_bucket

        owner_of = {t.id: t.owner for t in policy.tags}
        wanted = set(owners) if owners is not None else set(owner_of.values())
        self._private: dict[str, Any] = {}
        self._shares: dict[str, list[tuple[StreamFilter, Any]]] = {}
        for owner in sorted(wanted):
            name = private_bucket(owner, prefix)
            if name not in sinks:
                raise SharingError(f"no historian for bucket {name!r}")
            self._private[owner] = sinks[name]
            for recipient in sorted(policy.shared_by(owner)):
                name = share_bucket(owner, recipient, prefix)
                if name not in sinks:
                    raise SharingError(f"no historian for bucket {name!r}")
                f = StreamFilter(policy, recipient, recorder=auditor, channel="influx")
                self._shares.setdefault(owner, []).append((f, sinks[name]))
        super().__init__(
            set(self._private), owner_of, clock=clock, auditor=auditor, params=params, name="party-buckets"
        )
        self.counts["written"] = 0

    def start(self) -> None:
        self._thread.start()

    def drain(self, timeout_s: float = 10.0, release_until: float | None = None) -> bool:
        """Wait until every buffered sample is handed to its historians; with ``release_until`` [s of
        service clock] also release every interval that ends by then (tests, shutdown)."""
        if not self._wait_idle(time.monotonic() + timeout_s, claim=release_until is not None):
            return False
        if release_until is not None:
            try:
                self._flush(release_until)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        self.drain(timeout_s)
        self._stop_worker(timeout_s)
        if self._auditor is not None:
            self._auditor.flush()

    def _process(self, batch: list[Sample]) -> None:
        by_owner: dict[str, list[Sample]] = {}
        for s in batch:
            by_owner.setdefault(self._owner_of[s.tag], []).append(s)
        for owner, samples in by_owner.items():
            self._private[owner].write(samples)
            self.counts["written"] += len(samples)
            for f, sink in self._shares.get(owner, ()):
                out = f.push(samples)
                if out:
                    sink.write(out)
                    self.counts["written"] += len(out)

    def _flush(self, now: float) -> None:
        for shares in self._shares.values():
            for f, sink in shares:
                out = f.flush(now)
                if out:
                    sink.write(out)
                    self.counts["written"] += len(out)


def party_buckets(
    policy: SharingPolicy, prefix: str = "symtwin", owners: Iterable[str] | None = None
) -> list[str]:
    """The buckets a service writes for ``owners`` (default: every party owning a tag): private and shares."""
    from symtwin.governance.influx import private_bucket, share_bucket

    wanted = sorted(set(owners) if owners is not None else {t.owner for t in policy.tags})
    out = []
    for owner in wanted:
        out.append(private_bucket(owner, prefix))
        out.extend(share_bucket(owner, r, prefix) for r in sorted(policy.shared_by(owner)))
    return out


def bucket_writer_from_site(
    site: LoadedSite,
    policy: SharingPolicy,
    state_dir: Path,
    dead: Any,
    *,
    token: str = "",
    clock: Callable[[], float] = time.time,
    url: str | None = None,
    params: PublisherParams = PublisherParams(),
) -> tuple[BucketWriter, list[Any]]:
    """The per-party bucket writer on ``adapters.influx`` (prefix ``bucket_prefix``) and its historians,
    one per bucket, each with its own outbox ``<state_dir>/outbox-<bucket>.sqlite`` (started; close them
    after :meth:`BucketWriter.stop`)."""
    from adapters.influx import InfluxHistorian, InfluxParams, OutboxParams, SenderParams
    from adapters.influx.lineproto import BucketLabels
    from symtwin.units import parse_quantity

    cfg = site.config.adapters.influx
    if cfg is None:
        raise SharingError("per-party buckets need an adapters.influx section")
    max_bytes = int(parse_quantity(site.config.adapters.outbox.max_bytes, "B"))
    labels = {t.id: {"unit": t.unit, "party": t.owner} for t in site.tags.values()}
    sinks: dict[str, Any] = {}
    for name in party_buckets(policy, cfg.bucket_prefix):
        sinks[name] = InfluxHistorian(
            InfluxParams(url=url or cfg.url, org=cfg.org, bucket=name, token=token),
            OutboxParams(path=state_dir / f"outbox-{name}.sqlite", max_bytes=max_bytes),
            dead,
            sender=SenderParams(batch_lines=cfg.batch_lines),
            labels=BucketLabels(labels, name),
        )
    auditor = ShareAuditor(AuditLog(state_dir / AUDIT_FILE, clock=clock), params.audit_period_s)
    writer = BucketWriter(
        policy, sinks, prefix=cfg.bucket_prefix, clock=clock, auditor=auditor, params=params
    )
    return writer, list(sinks.values())
