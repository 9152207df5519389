"""Items 2 and 3: the historian outbox in front of the InfluxDB-v2-API store (victoria-metrics).

Item 2: the store is stopped for longer than influxdb-client's own retry budget while samples keep coming;
afterwards every sample is in the store exactly once and the backlog drained at ≥ 5× the ingest rate.
CI: 30 s outage at 1,000 samples/s; slow: 10 min at 5,000 samples/s.

Item 3: a process writing to the historian and the local history receives SIGTERM with a partial batch in
memory (flush intervals of 60 s) while the store is down; it shuts down like ``symtwin run`` does. Every
sample it wrote is in the local history, and the outbox it left behind delivers every one of them to the
store once the store is back.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from adapters.base import Sample
from adapters.influx import InfluxHistorian, InfluxParams, OutboxParams, SenderParams
from adapters.store import DeadLetterStore
from tests.support.reliability import REPO, record
from tests.support.servers import VictoriaMetrics

PER_MESSAGE = 10


def stored_points(vm: VictoriaMetrics, series: str, window_s: float) -> int:
    urllib.request.urlopen(f"{vm.url}/internal/force_flush", timeout=10).read()
    q = f"sum(count_over_time({series}[{int(window_s) + 60}s]))"
    data = urllib.parse.urlencode({"query": q, "time": f"{time.time():.3f}"}).encode()
    with urllib.request.urlopen(f"{vm.url}/api/v1/query", data=data, timeout=60) as r:
        result = json.loads(r.read())["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


@pytest.mark.parametrize(
    ("outage_s", "rate"),
    [(30.0, 1000), pytest.param(600.0, 5000, marks=pytest.mark.slow, id="full-600s")],
)
def test_store_outage_loses_nothing_and_drains_fast(
    victoria_metrics: VictoriaMetrics, tmp_path: Path, outage_s: float, rate: int
) -> None:
    variant = "full" if outage_s >= 600 else "ci"
    started = time.monotonic()
    dl = DeadLetterStore(tmp_path / "dead.sqlite")
    hist = InfluxHistorian(
        InfluxParams(victoria_metrics.url, "park", "park"),
        OutboxParams(tmp_path / "outbox.sqlite", max_bytes=8 << 30),
        dl,
        sender=SenderParams(backoff_max_s=2.0),
        measurement="rel2",
    )
    stop = threading.Event()
    written = [0]
    period = PER_MESSAGE / rate
    t0 = time.time() - 3600

    def produce() -> None:
        next_t = time.monotonic()
        k = 0
        while not stop.is_set():
            hist.write([Sample(f"tag{j}", t0 + k * period, float(k)) for j in range(PER_MESSAGE)])
            written[0] += PER_MESSAGE
            k += 1
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    time.sleep(3)
    victoria_metrics.stop()
    time.sleep(outage_s)
    hist.flush()
    backlog = hist.metrics().depth
    victoria_metrics.start()
    t_up = time.monotonic()
    while hist.metrics().depth > 5000 and time.monotonic() - t_up < outage_s:
        time.sleep(0.05)
    drain_s = time.monotonic() - t_up
    time.sleep(2)
    stop.set()
    producer.join()
    sent_ok = hist.wait_sent(60)
    m = hist.metrics()
    hist.close()
    dl.close()
    in_store = stored_points(victoria_metrics, "rel2_value", time.time() - t0)
    drain_rate = backlog / drain_s + rate  # ingest continued while the backlog drained
    figure = {
        "outage_s": outage_s,
        "ingest_samples_s": rate,
        "written": written[0],
        "in_store": in_store,
        "lost": written[0] - in_store,
        "dropped": m.dropped,
        "dead_lettered": m.dead_lettered,
        "backlog_at_restore": backlog,
        "drain_s": round(drain_s, 2),
        "drain_samples_s": round(drain_rate),
        "drain_over_ingest": round(drain_rate / rate, 1),
        "retries": m.retries,
    }
    ok = (
        sent_ok
        and in_store == written[0]
        and (m.dropped, m.dead_lettered) == (0, 0)
        and drain_rate >= 5 * rate
        and backlog >= 0.9 * rate * outage_s
    )
    record(
        2,
        "InfluxDB-API store outage longer than the client's retry budget",
        figure,
        ok,
        variant,
        time.monotonic() - started,
    )
    assert sent_ok
    assert (m.dropped, m.dead_lettered) == (0, 0)
    assert in_store == written[0]
    assert backlog >= 0.9 * rate * outage_s, "the outage did not build the expected backlog"
    assert drain_rate >= 5 * rate


def _history_values(path: Path) -> list[float]:
    con = sqlite3.connect(path)
    try:
        return [float(r[0]) for r in con.execute("SELECT value FROM samples")]
    finally:
        con.close()


def test_sigterm_with_partial_batch_persists_everything(
    victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    started = time.monotonic()
    state = tmp_path / "state"
    state.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    victoria_metrics.stop()  # the store is away: the outbox must hold everything on disk
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.reliability",
            "sigterm-child",
            "--state",
            str(state),
            "--url",
            victoria_metrics.url,
            "--drain-s",
            "1.0",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(2.0)
    t_sig = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    exit_s = time.monotonic() - t_sig
    report = json.loads(out.strip().splitlines()[-1])
    n = int(report["written"])
    local = _history_values(state / "history.sqlite")
    # The next start replays the outbox the killed process left behind.
    victoria_metrics.start()
    dl = DeadLetterStore(tmp_path / "dead2.sqlite")
    hist = InfluxHistorian(
        InfluxParams(victoria_metrics.url, "park", "park"),
        OutboxParams(state / "outbox.sqlite"),
        dl,
        measurement="sigterm",
    )
    replayed_ok = hist.wait_sent(60)
    hist.close()
    dl.close()
    in_store = stored_points(victoria_metrics, "sigterm_value", time.time() - float(report["t0"]))
    figure = {
        "written_before_sigterm": n,
        "in_memory_at_sigterm": report["buffered_at_sigterm"],
        "local_history_rows": len(local),
        "local_history_missing": len(set(range(n)) - {int(v) for v in local}),
        "store_points_after_replay": in_store,
        "exit_code": proc.returncode,
        "exit_after_sigterm_s": round(exit_s, 2),
    }
    ok = (
        proc.returncode == 0
        and len(local) == n
        and figure["local_history_missing"] == 0
        and replayed_ok
        and in_store == n
        and report["buffered_at_sigterm"] > 0
    )
    record(3, "SIGTERM with a partial batch buffered", figure, ok, "ci", time.monotonic() - started)
    assert proc.returncode == 0, err[-2000:]
    assert report["buffered_at_sigterm"] > 0, "no partial batch was in memory at SIGTERM"
    assert len(local) == n and figure["local_history_missing"] == 0
    assert replayed_ok and in_store == n
