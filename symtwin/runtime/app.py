"""Assemble and run the service: `symtwin run` (the real site) and `symtwin sim` (virtual plant on loopback).

Everything is built here from the validated site config, in one place; components receive plain
parameters. Shutdown (SIGTERM/SIGINT, or the end of a simulated duration) is orderly: the loop stops,
safe setpoints are written when in auto, adapters close, history and outbox are flushed to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.base import Sample, Sink
from controllers.types import ControlResult
from symtwin.config import LoadedSite
from symtwin.runtime.clock import Clock, RealClock, ScaledClock
from symtwin.runtime.service import ControllerPort, Service, SolveRequest
from symtwin.runtime.twin_tracker import ParkTracker, site_epoch
from symtwin.runtime.wiring import HEARTBEAT_TAG, opcua_config, service_params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    simulate: bool  # True: virtual plant on loopback + service; False: the real site
    host: str = "127.0.0.1"
    port: int = 8080  # live view and /metrics; 0 picks a free port
    speed: float = 1.0  # simulated seconds per wall second (sim only)
    duration_s: float | None = None  # stop after this much clock time (None: until a signal)
    start_offset_s: float = 0.0  # where in the profile year the simulation starts [s] (sim only)
    state_dir: Path = Path("var")
    controller: str | None = None  # "mpc" | "baseline" | "none"; None: from the config
    opcua_port: int = 0  # virtual plant's OPC UA port (0: a free one)
    progress: bool = True
    credentials_dir: Path | None = None
    estimate: bool = True  # EKF twin (False: open-loop twin)


class FanOut:
    """One Sink in front of several (local history, InfluxDB outbox); one failing sink never stops another."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def write(self, samples: Sequence[Sample]) -> None:
        for s in self.sinks:
            try:
                s.write(samples)
            except Exception:
                log.exception("history sink %s refused a batch", type(s).__name__)


class InlinePort:
    """A fast controller (the rule-based baseline) run in the loop's thread pool with a deadline."""

    def __init__(self, controller: Any) -> None:
        self.controller = controller

    async def solve(self, request: SolveRequest, deadline_s: float) -> ControlResult:
        import numpy as np

        forecasts = {k: np.asarray(v, dtype=float) for k, v in request.forecasts.items()}
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, self.controller.step, dict(request.state), forecasts, request.now)
        return await asyncio.wait_for(fut, deadline_s)

    def reset_warm_start(self) -> None:
        self.controller.reset_warm_start()


def build_controller(site: LoadedSite, kind: str, step_s: float) -> ControllerPort | None:
    if kind == "none":
        return None
    if kind == "mpc":
        try:
            from controllers.mpc import MpcPort
        except ImportError:
            log.warning("the MPC is not available in this build; running the rule-based baseline instead")
        else:
            port: ControllerPort = MpcPort.from_site(site)  # solves in a killable worker process
            return port
    from controllers.baseline import from_site

    return InlinePort(from_site(site, step_s=step_s))


class OffLoopOutput:
    """Log records and progress lines leave the event loop through a bounded queue; a thread writes them.

    Logging is synchronous: a stalled consumer (a full stderr pipe, a stuck journal) would block whoever
    logs, and the supervisor logs from inside the control cycle. Here only the writer thread waits; when
    the queue is full, records are dropped and counted (``dropped``), never waited for.
    """

    def __init__(self, max_queue: int = 10_000) -> None:
        self.queue: queue.Queue[logging.LogRecord | str | None] = queue.Queue(max_queue)
        self.dropped = 0
        self._handlers: list[logging.Handler] = []
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._installed: logging.Handler | None = None

    def install(self) -> None:
        root = logging.getLogger()
        self._handlers = list(root.handlers)
        for h in self._handlers:
            root.removeHandler(h)
        self._installed = _DroppingQueueHandler(self)
        root.addHandler(self._installed)
        self._thread.start()

    def uninstall(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (waiting at most ``timeout_s``) and give the handlers back."""
        root = logging.getLogger()
        if self._installed is not None:
            root.removeHandler(self._installed)
            self._installed = None
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)
        for h in self._handlers:
            root.addHandler(h)

    def put(self, item: logging.LogRecord | str) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            try:
                if isinstance(item, str):
                    sys.stderr.write(item)
                    sys.stderr.flush()
                    continue
                for h in self._handlers:
                    if item.levelno >= h.level:
                        h.handle(item)
            except Exception:  # an output error must not end the writer
                continue


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    def __init__(self, out: OffLoopOutput) -> None:
        super().__init__(out.queue)  # type: ignore[arg-type]
        self.out = out

    def enqueue(self, record: logging.LogRecord) -> None:
        self.out.put(record)


class Progress:
    """One status line on stderr, refreshed at most every ``every_s`` wall seconds (written off the loop)."""

    def __init__(self, service: Service, start: float, duration_s: float | None, every_s: float = 2.0,
                 output: OffLoopOutput | None = None) -> None:
        self.service, self.start, self.duration, self.every = service, start, duration_s, every_s
        self._last = 0.0
        self.tty = sys.stderr.isatty()
        self.output = output

    def __call__(self, *_: object) -> None:
        wall = time.monotonic()
        if wall - self._last < self.every:
            return
        self._last = wall
        snap = self.service.snapshot()
        done = snap.time - self.start
        pct = f" {100 * done / self.duration:5.1f}%" if self.duration else ""
        line = (f"[sim {done / 3600:7.2f} h{pct}] mode {snap.mode}, solve {snap.solve_status}, "
                f"fallback {snap.fallback}, alarms {len(snap.alarms)}, cycles {snap.cycle}")
        text = ("\r" + line) if self.tty else line + "\n"
        if self.output is not None:
            self.output.put(text)
        else:
            print(text, end="", file=sys.stderr, flush=True)


class StoreGauges:
    """Outbox depth and store drops on /metrics, read by a daemon thread every ``every_s`` [s].

    The stores' stats take their locks, which their writer threads hold during an SQLite commit; reading
    them here keeps that wait off the event loop that runs the control cycle.
    """

    def __init__(self, metrics: Any, history: Any, influx: Any | None, every_s: float = 1.0) -> None:
        self.metrics, self.history, self.influx, self.every_s = metrics, history, influx, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-gauges", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def update(self) -> None:
        h = self.history.stats()
        depth, dropped = h.buffered, h.dropped
        if self.influx is not None:
            m = self.influx.metrics()
            depth += m.depth + m.buffered
            dropped += m.dropped
        self.metrics.set("outbox_depth", "samples accepted but not yet durable in the history store or "
                         "acknowledged by InfluxDB", depth)
        self.metrics.set("store_dropped", "samples the history store or InfluxDB outbox dropped (full)", dropped)
        self.metrics.set("history_stored", "samples stored in the local history since start", h.stored)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.update()
            except Exception:
                log.exception("reading store statistics failed")


async def serve(site: LoadedSite, opts: RunOptions) -> int:
    """Run until a signal or the end of ``duration_s``; returns the exit code."""
    from adapters.opcua.client import OpcUaAdapter
    from adapters.store.deadletter import DeadLetterStore
    from adapters.store.history import HistoryParams, LocalHistory
    from symtwin.governance.from_site import policy_from_site
    from symtwin.runtime.mqtt_wiring import RoutingWriter, mqtt_wiring, opcua_tag_ids
    from symtwin.runtime.sharing import publisher_from_site
    from symtwin.units import parse_duration
    from symtwin.web.app import bound_port, create_app, start_web
    from twin.park import Park

    params = service_params(site)
    has_opcua = opts.simulate or site.config.controller.heartbeat is not None or any(
        t.binding.opcua is not None for t in site.tags.values())
    t0 = site_epoch(site.config.site.start, time.time())
    plant = server = None

    state = opts.state_dir
    state.mkdir(parents=True, exist_ok=True)
    dead = DeadLetterStore(state / "dead-letters.sqlite")
    # Retention runs on the service's clock: on the wall clock a simulation (profile year 2021, or faster than
    # real time) would see its own samples as older than the retention and prune them within a minute.
    clock: Clock = ScaledClock(start=t0 + opts.start_offset_s, speed=opts.speed) if opts.simulate else RealClock()
    history = LocalHistory(
        HistoryParams(state / "history.sqlite", retention_s=parse_duration(site.config.adapters.history.retention)),
        dead_letters=dead,
        clock=clock.now,
    )
    sinks: list[Sink] = [history]
    influx = None
    buckets: Any = None  # (writer, historians): each party's InfluxDB buckets, through the sharing policy
    if site.config.adapters.influx is not None and not opts.simulate:
        influx = _influx_historian(site, state, dead, opts)
        sinks.append(influx)
        buckets = _party_buckets(site, state, dead, opts, clock.now)
        if buckets is not None:
            sinks.append(buckets[0])
    publisher = None  # shared data to park/<owner>/..., enforced by the sharing policy, audited
    if site.config.adapters.mqtt is not None and not opts.simulate:
        publisher = publisher_from_site(site, policy_from_site(site), state, clock=clock.now,
                                        credentials_dir=opts.credentials_dir)
        if publisher is not None:
            sinks.append(publisher)

    if opts.simulate:
        from sim.plant import VirtualPlant
        from sim.server import PlantServer

        plant = VirtualPlant.from_site(site, start=clock.now(), origin=t0)
        hb = site.config.controller.heartbeat
        server = PlantServer(plant, clock=clock, port=opts.opcua_port or _free_port(), step_s=min(params.cycle_s, 5.0),
                             extra_nodes=[(hb.node_id, hb.data_type)] if hb else ())
        await server.start()
        ua_cfg = opcua_config(site, endpoint=server.endpoint, insecure=True, time_scale=opts.speed)
        log.warning("simulation-only mode: virtual plant at %s (security None on loopback), speed %gx",
                    server.endpoint, opts.speed)
    elif has_opcua:
        ua_cfg = opcua_config(site, credentials_dir=opts.credentials_dir)

    kind = opts.controller or site.config.controller.kind
    controller = build_controller(site, kind, params.step_s)
    from symtwin.forecasting.runtime import ForecastFeed, forecast_mqtt_config

    # Configured forecasts (MQTT, CSV, built-in model) in front of the profiles, which always cover the horizon.
    broker = forecast_mqtt_config(site, opts.credentials_dir) if site.config.forecasts else None
    forecasts = ForecastFeed.from_site(site, t0, broker)
    forecasts.start()
    if plant is not None:
        sim_plant = plant
        base_call = forecasts.__call__

        def with_faults(now: float, times: Sequence[float]) -> dict[str, Sequence[float]]:
            forecasts.overrides = {f"price.{k}" if not k.startswith("price.") else k: v
                                   for k, v in sim_plant.forecast_overrides(now).items()}
            return dict(base_call(now, times))

        forecast_fn: Any = with_faults
    else:
        forecast_fn = forecasts
    exchanges = {}
    for e in site.config.exchanges:
        conn = site.connection_by_id[e.connection]
        medium = next(c.medium for c in site.park_spec().connections
                      if f"{c.source}.{c.source_port}" == conn.source)
        exchanges[e.id] = (conn.source.split(".")[0], conn.target.split(".")[0], medium)
    # The twin follows the plant through the estimator (EKF: unmeasured states, fouling, with uncertainty);
    # the open-loop tracker stays available for sites with too few measurements to estimate anything.
    from symtwin.runtime.estimator_tracker import EstimatorTracker

    park = Park.from_config(site)
    twin: Any = (EstimatorTracker.from_site(site, park, t0, exchanges) if opts.estimate
                 else ParkTracker(park, t0, exchanges))
    service = Service(
        site, clock=clock, params=params, controller=controller, writer=None, history=FanOut(sinks), twin=twin,
        forecasts=forecast_fn, dead_letter_count=lambda: len(dead),
        # "unavailable" repeats until a first forecast arrives; expired and rejected ones need a look.
        alarm_sources=[lambda: [(a.key, "warning", a.message) for a in forecasts.alarms()
                                if a.kind in ("expired", "rejected")]],
    )
    # Each setpoint goes to the adapter that binds it: OPC UA (typed write + read-back) or MQTT (QoS 1 command).
    adapter = OpcUaAdapter(ua_cfg, service, clock=clock.now, on_dead_letter=dead.add) if has_opcua else None
    mqtt = mqtt_wiring(site, credentials_dir=opts.credentials_dir)  # None when no tag is bound to MQTT
    mqtt_adapter = mqtt.adapter(service, dead_letter=dead.add, clock=clock.now) if mqtt is not None else None
    routes: list[Any] = []
    if adapter is not None:
        routes.append((adapter, opcua_tag_ids(site, params.heartbeat_tag)))
    if mqtt is not None and mqtt_adapter is not None:
        routes.append((mqtt_adapter, mqtt.setpoint_tags))
    service.writer = RoutingWriter(routes)
    started = False

    def health() -> tuple[bool, dict[str, Any]]:
        snap = service.snapshot()
        ua_ok = adapter is None or adapter.connected
        mq_ok = mqtt_adapter is None or mqtt_adapter.connected
        ok = ua_ok and mq_ok and started and snap.cycle > 0
        return ok, {"opcua": ua_ok, "mqtt": mq_ok, "cycles": snap.cycle, "mode": snap.mode,
                    "fallback": snap.fallback}

    web_config, passwords = _sim_users(site) if opts.simulate and not site.config.web.users else (None, {})
    app = create_app(site, service, service, service.metrics, history, health=health, clock=time.time,
                     web_config=web_config)
    runner = await start_web(app, opts.host, opts.port)
    port = bound_port(runner)
    print(f"symtwin: live view on http://{opts.host}:{port}/  (/metrics, /healthz)", file=sys.stderr, flush=True)
    if passwords:
        print("symtwin: simulation logins (one operator per party; passwords change every run):", file=sys.stderr)
        for name, password in sorted(passwords.items()):
            print(f"    {name:<24} {password}", file=sys.stderr)
        sys.stderr.flush()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, service.stop)
    output = OffLoopOutput()
    output.install()
    if opts.progress:
        service.on_snapshot(Progress(service, clock.now(), opts.duration_s, output=output))
    service.on_snapshot(lambda _snap: forecasts.export(service.metrics))
    gauges = StoreGauges(service.metrics, history, influx)
    gauges.update()
    gauges.start()
    code = 0
    try:
        if publisher is not None:
            publisher.start()
        if adapter is not None:
            await adapter.start()
        if mqtt_adapter is not None:
            await mqtt_adapter.start()
        await _first_values(service, timeout_s=20.0)
        started = True
        until = clock.now() + opts.duration_s if opts.duration_s else None
        await service.run(until=until)
    finally:
        log.info("shutting down: adapters, web, history")
        if adapter is not None:
            with contextlib.suppress(Exception):
                await adapter.stop()
        if mqtt_adapter is not None:
            with contextlib.suppress(Exception):
                await mqtt_adapter.stop()
        if publisher is not None:
            publisher.stop()  # publishes what is buffered, then writes the open audit records
        with contextlib.suppress(Exception):
            await runner.cleanup()
        if server is not None:
            with contextlib.suppress(Exception):
                await server.close()
        gauges.stop()
        forecasts.stop()
        close = getattr(controller, "close", None)
        if close is not None:  # the MPC's worker process
            with contextlib.suppress(Exception):
                close()
        if buckets is not None:
            buckets[0].stop()  # hands on what is buffered, then the historians drain
            for h in buckets[1]:
                h.close()
        if influx is not None:
            influx.close()
        history.close()
        dead.close()
        output.uninstall()
        if output.dropped:
            log.warning("%d log records were dropped while the log output was stalled", output.dropped)
        if opts.progress and sys.stderr.isatty():
            print(file=sys.stderr)
        stats = history.stats()
        print(f"symtwin: stopped after {service.counters.cycles} cycles; {service.counters.samples_in} samples "
              f"received, {stats.stored} stored and {stats.invalid} set aside; history in {state}", file=sys.stderr)
    return code


def _sim_users(site: LoadedSite) -> tuple[Any, dict[str, str]]:
    """Simulation-only mode on embedded defaults: one operator per party with a fresh random password.

    Only the hashes are kept by the web layer; the passwords are printed once on the terminal (like a
    notebook server's token), never written to disk.
    """
    import secrets

    from symtwin.web.app import WebConfig
    from symtwin.web.auth import User, hash_password

    users, passwords = {}, {}
    for party in site.config.parties:
        name = f"{party.id}-operator"
        passwords[name] = secrets.token_urlsafe(9)
        users[name] = User(name, party.id, "operator", hash_password(passwords[name]))
    return WebConfig(users), passwords


async def _first_values(service: Service, timeout_s: float) -> None:
    """Wait (wall time) until every measurement tag has a value, so the first cycle is not a false alarm."""
    wanted = set(service.measurement_tags)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        service.latest.drain()
        missing = wanted - set(service.latest.table)
        if not missing:
            return
        await asyncio.sleep(0.05)
    log.warning("no value yet from %d measurement tags after %.0f s: %s", len(missing), timeout_s,
                ", ".join(sorted(missing)[:10]))


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _influx_historian(site: LoadedSite, state: Path, dead: Any, opts: RunOptions) -> Any:
    """InfluxDB v2 historian behind a durable SQLite outbox (nothing is lost while the store is away)."""
    from adapters.influx import InfluxHistorian, InfluxParams, OutboxParams, SenderParams
    from adapters.influx.lineproto import BucketLabels
    from symtwin.secrets import resolve
    from symtwin.units import parse_quantity

    cfg = site.config.adapters.influx
    assert cfg is not None
    token = resolve(cfg.token, "InfluxDB token", opts.credentials_dir) or ""
    bounds = {t.id: t.bounds_si for t in site.tags.values() if t.bounds_si is not None}
    labels = {t.id: {"unit": t.unit, "party": t.owner} for t in site.tags.values()}
    return InfluxHistorian(
        InfluxParams(url=cfg.url, org=cfg.org, bucket=cfg.bucket, token=token),
        OutboxParams(path=site.path.parent / site.config.adapters.outbox.path,
                     max_bytes=int(parse_quantity(site.config.adapters.outbox.max_bytes, "B"))),
        dead,
        sender=SenderParams(batch_lines=cfg.batch_lines),
        labels=BucketLabels(labels, cfg.bucket),  # db=<bucket>: keeps buckets apart in victoria-metrics
        bounds=bounds,
    )


def _party_buckets(site: LoadedSite, state: Path, dead: Any, opts: RunOptions,
                   clock: Callable[[], float]) -> tuple[Any, list[Any]] | None:
    """With ``adapters.influx.buckets: per-party``: each party's buckets written through the policy."""
    from symtwin.governance.from_site import policy_from_site
    from symtwin.runtime.sharing import bucket_writer_from_site
    from symtwin.secrets import resolve

    cfg = site.config.adapters.influx
    if cfg is None or cfg.buckets != "per-party":
        return None
    token = resolve(cfg.token, "InfluxDB token", opts.credentials_dir) or ""
    writer, historians = bucket_writer_from_site(site, policy_from_site(site), state, dead, token=token, clock=clock)
    writer.start()
    return writer, historians


__all__ = ["HEARTBEAT_TAG", "RunOptions", "serve"]
