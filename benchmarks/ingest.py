"""Ingest throughput: MQTT (mosquitto, QoS 1, JSON messages of 10 samples) → durable outbox → victoria-metrics.

Parts (``--part``; figures are merged into ``benchmarks/results/ingest.json`` so parts can run separately):
- ``mqtt``: the real path. A publisher in a separate process (both are Python; one GIL would measure the
  publisher) sends N QoS 1 messages as fast as mosquitto takes them; ``MqttAdapter`` decodes them on
  paho's thread and writes to ``InfluxHistorian``; the clock stops when the store has acknowledged every
  sample, and every sample is then counted back through victoria-metrics' export API (zero loss).
  Baseline in the same run: the same MQTT path with a sink doing one SYNCHRONOUS influxdb-client write
  per message (what a naive integration does) → ``vs_naive``.
- ``outbox``: the outbox → store leg alone (samples written in-process as fast as possible).
- ``drain``: the store is stopped, the outbox fills, the store comes back: how fast the backlog drains
  (the reliability issue asks for ≥ 5× the ingest rate).
- ``history``: the embedded SQLite history store (the historian without InfluxDB): write rate and a
  downsampled trend query.
- ``opcua``: runs ``benchmarks/opcua_ingest.py`` (OPC UA adapter) and merges its figures as ``opcua_*``;
  not part of ``all`` (minutes, its own node-opcua server).
Further parts register in ``PARTS``: a function ``(Bench) -> dict`` of figures.

cpu_pct is this process's CPU time over wall time [% of one core] while the part ran (victoria-metrics,
mosquitto and the publisher are separate processes and not included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_result  # noqa: E402

from adapters.base import Sample, Sink  # noqa: E402
from adapters.influx import InfluxHistorian, InfluxParams, OutboxParams  # noqa: E402
from adapters.store import DeadLetterStore  # noqa: E402
from tests.support.servers import (  # noqa: E402
    Mosquitto,
    VictoriaMetrics,
    running_mosquitto,
    running_victoria_metrics,
)

TAGS_PER_MESSAGE = 10


@dataclass
class Bench:
    """What every part gets: a scratch directory and running servers."""

    workdir: Path
    vm: VictoriaMetrics
    broker: Mosquitto
    n_messages: int


class CpuMeter:
    def __enter__(self) -> CpuMeter:
        self.t0, self.c0 = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu_s = _cpu() - self.c0
        self.pct = 100.0 * self.cpu_s / self.wall


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


class FirstWrite:
    """Pass-through sink that notes when the first sample arrived (the throughput clock starts there)."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.t_first: float | None = None
        self.n = 0

    def write(self, samples: Sequence[Sample]) -> None:
        if self.t_first is None:
            self.t_first = time.perf_counter()
        self.n += len(samples)
        self.inner.write(samples)


class NaiveSink:
    """Baseline: one SYNCHRONOUS influxdb-client write per message, no buffering, no durability."""

    def __init__(self, url: str, measurement: str) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.client = InfluxDBClient(url=url, token="unused", org="park")
        self.api = self.client.write_api(write_options=SYNCHRONOUS)
        self.measurement = measurement
        self.written = 0

    def write(self, samples: Sequence[Sample]) -> None:
        lines = [
            f"{self.measurement},tag={s.tag} value={float(s.value)!r},quality={int(s.quality)}i "
            f"{round(s.timestamp * 1e6) * 1000}"
            for s in samples
        ]
        self.api.write(bucket="park", record=lines)
        self.written += len(samples)

    def close(self) -> None:
        self.client.close()


def wait_count(vm: VictoriaMetrics, series: str, expected: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    n = 0
    while time.monotonic() < deadline:
        n = vm.count_points(series)
        if n >= expected:
            time.sleep(1.0)
            return vm.count_points(series)
        time.sleep(0.5)
    return n


def start_publisher(bench: Bench, n_messages: int, t0_s: float) -> Callable[[float], None]:
    """Publish the bench JSON messages at QoS 1 in another process; returns ``join(timeout_s)``.

    mosquitto_pub (C, ~25,000 QoS 1 messages/s here) when installed, so the publisher is not what is
    measured; else the Python publisher from adapters.mqtt.bench_helpers (~2,400 messages/s here).
    """
    from adapters.mqtt.bench_helpers import json_messages, publish_in_process

    if shutil.which("mosquitto_pub"):
        data = b"".join(p + b"\n" for _, p in json_messages("bench/json", n_messages, TAGS_PER_MESSAGE, t0_s))
        proc = subprocess.Popen(
            [
                "mosquitto_pub",
                "-h",
                bench.broker.host,
                "-p",
                str(bench.broker.port),
                "-t",
                "bench/json",
                "-q",
                "1",
                "-l",
                "-M",
                "1000",
                "-V",
                "mqttv5",
                "-i",
                f"bench-pub-{t0_s:.0f}",
            ],
            stdin=subprocess.PIPE,
        )
        threading.Thread(target=proc.communicate, args=(data,), daemon=True).start()

        def join(timeout_s: float) -> None:
            if proc.wait(timeout_s) != 0:
                raise RuntimeError(f"mosquitto_pub exited with {proc.returncode}")

        return join
    child = publish_in_process(
        bench.broker.host, bench.broker.port, "json", n_messages, TAGS_PER_MESSAGE, t0_s
    )
    return lambda timeout_s: child.join(timeout_s)


def mqtt_run(
    bench: Bench, sink: Sink, n_messages: int, done: Callable[[], bool], *, client_id: str, t0_s: float
) -> tuple[float, float, float]:
    """Publish ``n_messages`` from another process through mosquitto into ``sink`` via MqttAdapter.

    Returns (seconds from the first sample received until ``done()``, cpu_pct of this process, its CPU
    seconds).
    """
    from adapters.mqtt.bench_helpers import json_bindings
    from adapters.mqtt.client import MqttAdapter
    from adapters.mqtt.config import MqttConfig
    from adapters.mqtt.router import MqttRouter

    timed = FirstWrite(sink)
    router = MqttRouter(json_topics=json_bindings("bench/json", TAGS_PER_MESSAGE), dedupe_window=0)
    cfg = MqttConfig(host=bench.broker.host, port=bench.broker.port, client_id=client_id, clean_start=True)
    adapter = MqttAdapter(cfg, router, timed)

    async def run() -> tuple[float, float, float]:
        await adapter.start()
        try:
            with CpuMeter() as cpu:
                join = start_publisher(bench, n_messages, t0_s)
                deadline = time.monotonic() + 600
                while not done():
                    if time.monotonic() > deadline:
                        raise TimeoutError("not every sample arrived within 600 s")
                    await asyncio.sleep(0.005)
                t_end = time.perf_counter()
            await asyncio.to_thread(join, 60)
        finally:
            await adapter.stop()
        assert timed.t_first is not None
        return t_end - timed.t_first, cpu.pct, cpu.cpu_s

    return asyncio.run(run())


def part_mqtt(bench: Bench) -> dict[str, Any]:
    n_msg = bench.n_messages
    n = n_msg * TAGS_PER_MESSAGE
    t0_s = time.time() - 3600
    dl = DeadLetterStore(bench.workdir / "dead.sqlite")
    hist = InfluxHistorian(
        InfluxParams(bench.vm.url, "park", "park"),
        OutboxParams(bench.workdir / "outbox-mqtt.sqlite"),
        dl,
        measurement="bench_outbox",
    )
    secs, cpu, cpu_s = mqtt_run(
        bench, hist, n_msg, lambda: hist.metrics().sent >= n, client_id="bench-outbox", t0_s=t0_s
    )
    m = hist.metrics()
    hist.close()
    dl.close()
    stored = wait_count(bench.vm, '{__name__="bench_outbox_value"}', n)

    # Naive baseline on the same broker and store; fewer messages (it is an order of magnitude slower).
    n_naive_msg = max(2000, n_msg // 20)
    naive = NaiveSink(bench.vm.url, "bench_naive")
    n_naive = n_naive_msg * TAGS_PER_MESSAGE
    naive_s, naive_cpu, _ = mqtt_run(
        bench, naive, n_naive_msg, lambda: naive.written >= n_naive, client_id="bench-naive", t0_s=t0_s - 7200
    )
    naive.close()

    # Same run, same broker: the MQTT leg alone into a sink that only counts (the ceiling of the leg).
    class Counting:
        n = 0

        def write(self, samples: Sequence[Sample]) -> None:
            self.n += len(samples)

    null = Counting()
    null_s, _, null_cpu_s = mqtt_run(
        bench, null, n_msg, lambda: null.n >= n, client_id="bench-null", t0_s=t0_s
    )
    naive_stored = wait_count(bench.vm, '{__name__="bench_naive_value"}', n_naive)
    rate, naive_rate = n / secs, n_naive / naive_s
    return {
        "mqtt_samples_per_s": rate,
        "mqtt_samples": n,
        "mqtt_messages": n_msg,
        "samples_per_message": TAGS_PER_MESSAGE,
        "mqtt_samples_stored": stored,
        "mqtt_lost": n - stored,
        "mqtt_dropped": m.dropped,
        "mqtt_dead_lettered": m.dead_lettered,
        "mqtt_write_requests": m.requests,
        "cpu_pct": cpu,
        "naive_samples_per_s": naive_rate,
        "naive_samples": n_naive,
        "naive_samples_stored": naive_stored,
        "naive_cpu_pct": naive_cpu,
        "vs_naive": rate / naive_rate,
        "mqtt_counting_sink_samples_per_s": n / null_s,
        # CPU per sample is steadier than rates on a loaded machine: the historian's share is the difference.
        "cpu_us_per_sample": 1e6 * cpu_s / n,
        # The historian's own threads (writer: validation, encoding, SQLite; sender: gzip, HTTP).
        "historian_threads_cpu_us_per_sample": 1e6 * m.cpu_s / n,
        "counting_sink_cpu_us_per_sample": 1e6 * null_cpu_s / n,
    }


def feed(sink: Sink, messages: Iterable[list[Sample]]) -> None:
    for msg in messages:
        sink.write(msg)


def bench_messages(n_messages: int, t0_s: float) -> Iterable[list[Sample]]:
    """The same samples the MQTT publisher sends: tag bench_<i>, time t0 + k ms, value k."""
    for k in range(n_messages):
        ts = t0_s + k * 1e-3
        yield [Sample(f"bench_{i}", ts, float(k)) for i in range(TAGS_PER_MESSAGE)]


def part_outbox(bench: Bench) -> dict[str, Any]:
    """The outbox → store leg alone: samples written in-process as fast as possible, until acknowledged."""
    n_msg = bench.n_messages
    n = n_msg * TAGS_PER_MESSAGE
    messages = list(bench_messages(n_msg, time.time() - 2 * 3600))
    dl = DeadLetterStore(bench.workdir / "dead-outbox.sqlite")
    hist = InfluxHistorian(
        InfluxParams(bench.vm.url, "park", "park"),
        OutboxParams(bench.workdir / "outbox-only.sqlite"),
        dl,
        measurement="bench_outbox_only",
    )
    with CpuMeter() as cpu:
        t = time.perf_counter()
        feed(hist, messages)
        write_s = time.perf_counter() - t
        ok = hist.wait_sent(300)
        total_s = time.perf_counter() - t
    threads_cpu_s = hist.metrics().cpu_s
    hist.close()
    dl.close()
    stored = wait_count(bench.vm, '{__name__="bench_outbox_only_value"}', n)
    return {
        "outbox_samples_per_s": n / total_s if ok else 0.0,
        "outbox_write_call_us": 1e6 * write_s / n_msg,
        "outbox_samples_stored": stored,
        "outbox_cpu_pct": cpu.pct,
        "outbox_threads_cpu_us_per_sample": 1e6 * threads_cpu_s / n,
    }


def part_drain(bench: Bench) -> dict[str, Any]:
    n_msg = bench.n_messages
    n = n_msg * TAGS_PER_MESSAGE
    dl = DeadLetterStore(bench.workdir / "dead-drain.sqlite")
    bench.vm.stop()
    hist = InfluxHistorian(
        InfluxParams(bench.vm.url, "park", "park"),
        OutboxParams(bench.workdir / "outbox-drain.sqlite"),
        dl,
        measurement="bench_drain",
    )
    t = time.perf_counter()
    feed(hist, bench_messages(n_msg, time.time() - 3 * 3600))
    hist.flush(120)
    fill_s = time.perf_counter() - t
    assert hist.metrics().depth == n
    bench.vm.start()
    t = time.perf_counter()
    with CpuMeter() as cpu:
        ok = hist.wait_sent(300)
        drain_s = time.perf_counter() - t
    hist.close()
    dl.close()
    stored = wait_count(bench.vm, '{__name__="bench_drain_value"}', n)
    return {
        "outbox_fill_samples_per_s": n / fill_s,
        "drain_samples_per_s": n / drain_s if ok else 0.0,
        "drain_samples": n,
        "drain_samples_stored": stored,
        "drain_cpu_pct": cpu.pct,
    }


def part_history(bench: Bench) -> dict[str, Any]:
    """The embedded history store (default historian without InfluxDB): write until queryable, then
    a downsampled one-tag query over the whole range."""
    from adapters.store.history import HistoryParams, LocalHistory

    n_msg = bench.n_messages
    n = n_msg * TAGS_PER_MESSAGE
    t0 = time.time() - 3600
    messages = list(bench_messages(n_msg, t0))
    hist = LocalHistory(HistoryParams(bench.workdir / "history.sqlite"))
    with CpuMeter() as cpu:
        t = time.perf_counter()
        feed(hist, messages)
        hist.flush(300)
        write_s = time.perf_counter() - t
    t = time.perf_counter()
    trend = hist.query("bench_0", t0, t0 + n_msg * 1e-3 + 1, max_points=500)
    query_s = time.perf_counter() - t
    stored = hist.stats().stored
    hist.close()
    return {
        "history_samples_per_s": n / write_s,
        "history_samples_stored": stored,
        "history_cpu_pct": cpu.pct,
        "history_query_ms": 1e3 * query_s,
        "history_query_points": len(trend),
        "history_query_samples_scanned": n_msg,
    }


def part_opcua(bench: Bench) -> dict[str, Any]:
    """The OPC UA figures: runs ``benchmarks/opcua_ingest.py`` (the OPC UA adapter's own benchmark, its
    own servers) and merges its results, each key prefixed ``opcua_`` unless it already is."""
    script = REPO / "benchmarks" / "opcua_ingest.py"
    if not script.exists():
        return {"opcua_missing": "benchmarks/opcua_ingest.py not present"}
    subprocess.run([sys.executable, str(script)], cwd=REPO, check=True)
    got = json.loads((RESULTS / "opcua_ingest.json").read_text())
    return {
        (k if k.startswith("opcua_") else f"opcua_{k}"): v
        for k, v in got.items()
        if k not in ("benchmark", "when", "machine", "note")
    }


PARTS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "mqtt": part_mqtt,
    "outbox": part_outbox,
    "drain": part_drain,
    "history": part_history,
    "opcua": part_opcua,
}
ALL = ("mqtt", "outbox", "drain", "history")  # opcua runs minutes with its own servers: ask for it


def merged(figures: dict[str, Any]) -> dict[str, Any]:
    """Earlier figures from ``ingest.json`` (other parts) updated with this run's."""
    path = RESULTS / "ingest.json"
    old: dict[str, Any] = {}
    if path.exists():
        old = {
            k: v for k, v in json.loads(path.read_text()).items() if k not in ("benchmark", "when", "machine")
        }
    return {**old, **figures}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=[*PARTS, "all"], default="all")
    ap.add_argument("--messages", type=int, default=30_000, help="MQTT messages of 10 samples per run")
    args = ap.parse_args(argv)
    parts = list(ALL) if args.part == "all" else [args.part]
    figures: dict[str, Any] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="symtwin-ingest-")))
        (work / "vm").mkdir()
        (work / "mq").mkdir()
        vm = stack.enter_context(running_victoria_metrics(work / "vm"))
        broker = stack.enter_context(
            running_mosquitto(work / "mq", "max_inflight_messages 1000\nmax_queued_messages 0\n")
        )
        bench = Bench(work, vm, broker, args.messages)
        for name in parts:
            figures.update(PARTS[name](bench))
    if "mqtt_samples_per_s" in figures and "drain_samples_per_s" in figures:
        figures["drain_vs_ingest"] = figures["drain_samples_per_s"] / figures["mqtt_samples_per_s"]
    figures["note"] = "measured on a shared 2-core machine under load from other work"
    write_result("ingest", merged(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
