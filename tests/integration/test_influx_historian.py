"""The historian against real HTTP servers: victoria-metrics (InfluxDB v2 write API) and, for the
status codes victoria-metrics never sends, a tiny http.server on loopback."""

from __future__ import annotations

import gzip
import http.server
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from adapters.base import Sample
from adapters.influx import InfluxHistorian, InfluxParams, Outbox, OutboxParams, SenderParams
from adapters.store import DeadLetterStore
from tests.support.servers import VictoriaMetrics, free_port

REPO = Path(__file__).resolve().parents[2]
SERIES = '{__name__="symtwin_sample_value"}'
FAST = SenderParams(backoff_initial_s=0.05, backoff_max_s=0.5, idle_poll_s=0.05)


def make_samples(n: int, t0: float, tags: int = 10, first: int = 0) -> list[list[Sample]]:
    """n samples as messages of ``tags`` samples each (one timestamp per message), values first, first+1 ..."""
    return [
        [Sample(f"tag{j}", t0 + i * 0.01, float(first + i * tags + j)) for j in range(tags)]
        for i in range(n // tags)
    ]


def wait_count(vm: VictoriaMetrics, expected: int, timeout_s: float = 15.0) -> int:
    deadline = time.monotonic() + timeout_s
    n = -1
    while time.monotonic() < deadline:
        n = vm.count_points(SERIES)
        if n >= expected:
            time.sleep(0.5)  # would a duplicate still show up?
            return vm.count_points(SERIES)
        time.sleep(0.2)
    return n


def open_historian(tmp: Path, url: str, **outbox: object) -> tuple[InfluxHistorian, DeadLetterStore]:
    dl = DeadLetterStore(tmp / "dead.sqlite", flush_interval_s=0.02)
    params = OutboxParams(tmp / "outbox.sqlite", **outbox)  # type: ignore[arg-type]
    return InfluxHistorian(InfluxParams(url, "park", "park", token="t"), params, dl, sender=FAST), dl


def test_every_point_arrives_exactly_once_after_the_store_was_down(
    victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    t0 = time.time() - 600
    h, dl = open_historian(tmp_path, victoria_metrics.url)
    before, during = make_samples(20_000, t0), make_samples(30_000, t0 + 300, first=20_000)
    for msg in before:
        h.write(msg)
    assert h.wait_sent(20)
    victoria_metrics.stop()
    for msg in during:
        h.write(msg)
    assert h.flush()
    time.sleep(0.5)
    m = h.metrics()
    assert m.depth == 30_000 and m.state == "retry" and m.retries >= 1 and m.last_error
    victoria_metrics.start()
    assert h.wait_sent(30)
    assert wait_count(victoria_metrics, 50_000) == 50_000
    values = sorted(v for s in victoria_metrics.export(SERIES) for v in s["values"])  # type: ignore[attr-defined]
    assert values == [float(i) for i in range(50_000)]
    m = h.metrics()
    assert (m.sent, m.dropped, m.dead_lettered, m.state) == (50_000, 0, 0, "ok")
    h.close()
    dl.close()


class ScriptedHandler(http.server.BaseHTTPRequestHandler):
    """POST /api/v2/write: answers from ``server.answer(lines) -> (status, headers, body)``."""

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        status, headers, body = self.server.answer(raw.split(b"\n"))  # type: ignore[attr-defined]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def scripted_store(answer: Callable[[list[bytes]], tuple[int, dict[str, str], bytes]]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), ScriptedHandler)
    server.answer = answer  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_503_with_retry_after_is_honoured(tmp_path: Path) -> None:
    calls: list[tuple[float, int]] = []
    got: list[bytes] = []

    def answer(lines: list[bytes]) -> tuple[int, dict[str, str], bytes]:
        calls.append((time.monotonic(), len(lines)))
        if len(calls) == 1:
            return 503, {"Retry-After": "1"}, b'{"code":"unavailable","message":"busy"}'
        got.extend(lines)
        return 204, {}, b""

    with scripted_store(answer) as url:
        h, dl = open_historian(tmp_path, url)
        for msg in make_samples(100, time.time()):
            h.write(msg)
        time.sleep(0.3)
        m = h.metrics()
        assert m.state == "retry" and "503" in (m.last_error or "") and 0.3 < m.retry_in_s <= 1.0
        assert h.wait_sent(5)
        h.close()
        dl.close()
    assert len(calls) == 2 and calls[1][0] - calls[0][0] >= 0.99
    assert len(got) == 100


def test_a_400_puts_the_refused_lines_in_the_dead_letter_store(tmp_path: Path) -> None:
    got: list[bytes] = []

    def answer(lines: list[bytes]) -> tuple[int, dict[str, str], bytes]:
        bad = [line for line in lines if b"tag=tag3 " in line and b"value=13.0" in line]
        if bad:
            msg = b'{"code":"invalid","message":"unable to parse \'' + bad[0][:40] + b"'\"}"
            return 400, {"Content-Type": "application/json"}, msg
        got.extend(lines)
        return 204, {}, b""

    with scripted_store(answer) as url:
        h, dl = open_historian(tmp_path, url)
        for msg in make_samples(1000, time.time()):
            h.write(msg)
        assert h.wait_sent(10)
        h.close()
    assert len(got) == 999
    letters = dl.recent(10)
    assert len(letters) == 1 and letters[0].source == "historian"
    assert (
        letters[0].reason.startswith("refused by store: HTTP 400") and "unable to parse" in letters[0].reason
    )
    assert b"tag=tag3 value=13.0" in letters[0].payload
    assert dl.counts() == {"refused by store": 1}
    dl.close()


CHILD = textwrap.dedent(
    """
    import asyncio, signal, sys, time
    from adapters.base import Sample
    from adapters.influx import InfluxHistorian, InfluxParams, OutboxParams, SenderParams
    from adapters.store import DeadLetterStore

    url, outbox, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        dl = DeadLetterStore(outbox + ".dead")
        # A long flush interval and a chunk larger than n: everything sits in memory until SIGTERM.
        h = InfluxHistorian(
            InfluxParams(url, "park", "park"),
            OutboxParams(outbox, flush_interval_s=3600.0, chunk_lines=5000),
            dl,
            sender=SenderParams(backoff_initial_s=0.05, backoff_max_s=0.2),
        )
        t0 = time.time() - 60
        for i in range(n // 10):
            h.write([Sample(f"tag{j}", t0 + i * 0.01, float(i * 10 + j)) for j in range(10)])
        print(h.metrics().buffered, flush=True)
        await stop.wait()
        await asyncio.to_thread(h.close, 2.0)
        dl.close()

    asyncio.run(main())
    """
)


def run_child_until_sigterm(url: str, outbox: Path, n: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(outbox), str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip() == str(n).encode(), child.stderr.read() if child.stderr else b""
    child.send_signal(signal.SIGTERM)
    _out, err = child.communicate(timeout=20)
    assert child.returncode == 0, err.decode()


def test_sigterm_with_a_partial_batch_buffered_delivers_every_sample(
    victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    run_child_until_sigterm(victoria_metrics.url, tmp_path / "outbox.sqlite", 2500)
    assert wait_count(victoria_metrics, 2500) == 2500
    ob = Outbox(OutboxParams(tmp_path / "outbox.sqlite"))
    assert ob.stats().depth == 0
    ob.close()


def test_sigterm_while_the_store_is_down_keeps_every_sample_in_the_outbox(
    victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    victoria_metrics.stop()
    run_child_until_sigterm(victoria_metrics.url, tmp_path / "outbox.sqlite", 2500)
    ob = Outbox(OutboxParams(tmp_path / "outbox.sqlite"))
    assert ob.stats().depth == 2500
    ob.close()
    # The next run replays them.
    victoria_metrics.start()
    h, dl = open_historian(tmp_path, victoria_metrics.url)
    assert h.wait_sent(10)
    h.close()
    dl.close()
    assert wait_count(victoria_metrics, 2500) == 2500
