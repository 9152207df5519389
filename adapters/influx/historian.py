"""InfluxDB historian: the durable outbox plus one sender thread that drains it to ``/api/v2/write``.

Responses decide what happens to a batch (rows stay in SQLite until then):
- 2xx: rows deleted.
- no answer, 408, 429, 5xx: kept; wait Retry-After if the store sent one (capped), else capped
  exponential back-off; then the same batch again (order is kept).
- 401, 403, 404: kept and retried with back-off: a wrong token or a missing bucket is a configuration
  fault of the whole store, not of the data; dead-lettering would throw away everything.
- any other 4xx (400 bad line, 413 too large, 422 outside retention): the batch is bisected until the
  refused lines are isolated; they go to the dead-letter store with the store's reason, the rest is
  written.
"""

from __future__ import annotations

import enum
import gzip
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

from adapters.base import DeadLetter, Sample
from adapters.influx.lineproto import SAMPLE_MEASUREMENT, Point, SampleEncoder
from adapters.influx.outbox import Batch, Outbox, OutboxParams
from adapters.influx.transport import InfluxClientTransport, InfluxParams, WriteResponse, WriteTransport
from adapters.store.checks import REASON_REFUSED_BY_STORE
from adapters.store.deadletter import DeadLetterStore, offer

log = logging.getLogger(__name__)


class Verdict(enum.Enum):
    OK = "ok"
    RETRY = "retry"  # transient: the store is down or busy
    HOLD = "hold"  # the store refuses us as a client (auth, bucket): keep data, retry slowly
    REFUSED = "refused"  # the data is refused: isolate and dead-letter it


def verdict(status: int) -> Verdict:
    if 200 <= status < 300:
        return Verdict.OK
    if status == 0 or status in (408, 429) or status >= 500:
        return Verdict.RETRY
    if status in (401, 403, 404):
        return Verdict.HOLD
    return Verdict.REFUSED


@dataclass(frozen=True, slots=True)
class SenderParams:
    """How the sender batches and backs off.

    batch_lines: lines per request (InfluxDB recommends ~5,000).
    gzip_level: 1 is ~4× cheaper than 9 for ~10 % more bytes.
    backoff_initial_s / backoff_max_s: capped exponential back-off without Retry-After [s].
    retry_after_max_s: longest Retry-After we honour [s]; a longer one is capped to it.
    """

    batch_lines: int = 5000
    gzip_level: int = 1
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 300.0
    idle_poll_s: float = 0.5


@dataclass(frozen=True, slots=True)
class HistorianMetrics:
    """Counters for the runtime's /metrics (records = samples or points)."""

    depth: int  # records in the SQLite outbox, not yet acknowledged by the store
    bytes: int  # their line-protocol bytes
    buffered: int  # records in memory, not yet in SQLite
    sent: int  # records acknowledged by the store since start
    dropped: int  # records dropped by the outbox byte bound (oldest first) or memory back-pressure
    dead_lettered: int  # records refused: invalid input + refused by the store
    requests: int  # write requests made
    retries: int  # write requests that failed and will be retried
    state: str  # "ok" | "retry" | "hold"
    last_error: str | None
    retry_in_s: float  # time until the next attempt while backing off, else 0
    cpu_s: float  # CPU time used by the writer and sender threads since start [s]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class InfluxHistorian:
    """A :class:`adapters.base.Sink` for samples (and ``write_points`` for other records).

    ``write`` appends to memory and returns (µs); the writer thread persists to SQLite within
    ``outbox.flush_interval_s``; the sender thread posts to the store. ``close()`` persists everything
    and drains for up to ``drain_timeout_s``; what is left is replayed by the next start.

    labels: extra InfluxDB tags per tag id (e.g. unit, party) for the ``symtwin_sample`` measurement.
    bounds: optional plausible value range per tag id; values outside are dead-lettered.
    transport: defaults to influxdb-client's write service for ``influx``.
    """

    def __init__(
        self,
        influx: InfluxParams,
        outbox: OutboxParams,
        dead_letters: DeadLetterStore,
        *,
        sender: SenderParams | None = None,
        labels: Mapping[str, Mapping[str, str]] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        measurement: str = SAMPLE_MEASUREMENT,
        transport: WriteTransport | None = None,
        clock: Callable[[], float] = time.time,
        start: bool = True,
    ) -> None:
        self._sp = sender or SenderParams()
        self.dead_letters = dead_letters
        self._clock = clock
        self._transport = transport if transport is not None else InfluxClientTransport(influx)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drain_deadline = float("inf")
        self._lock = threading.Lock()
        self._sent = self._requests = self._retries = self._refused = 0
        self._state = Verdict.OK
        self._last_error: str | None = None
        self._retry_at = 0.0
        self._sender_cpu_s = 0.0
        self.outbox = Outbox(
            outbox,
            encoder=SampleEncoder(measurement, labels),
            dead_letters=dead_letters,
            bounds=bounds,
            source="historian",
            clock=clock,
            on_data=self._wake.set,
        )
        self._thread = threading.Thread(target=self._run, name="historian-sender", daemon=True)
        self._closed = False
        if start:
            self.start()

    # ---- public API -------------------------------------------------------------------------------

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def write(self, samples: Sequence[Sample]) -> None:
        """Sink protocol: queue samples; thread-safe, never blocks on the network."""
        self.outbox.write(samples)

    def write_points(self, points: Sequence[Point]) -> None:
        """Queue estimates, setpoints, KPIs ... each under its own measurement."""
        self.outbox.write_points(points)

    def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Wait until everything written is persisted in the outbox (not necessarily sent)."""
        return self.outbox.flush(timeout_s)

    def wait_sent(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything written so far has been acknowledged by the store (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        if not self.outbox.flush(timeout_s):
            return False
        self._wake.set()
        while time.monotonic() < deadline:
            if self.outbox.stats().depth == 0:
                return True
            time.sleep(0.01)
        return self.outbox.stats().depth == 0

    def close(self, drain_timeout_s: float = 5.0) -> None:
        """Persist every buffered record, try to deliver for up to ``drain_timeout_s``, stop.

        Call it from any thread (from asyncio: ``await asyncio.to_thread(hist.close)``), but not inside a
        ``signal.signal`` handler, which may interrupt ``write`` holding the buffer lock (README, SIGTERM).
        Records not delivered stay in the SQLite outbox and are sent first by the next run.
        """
        if self._closed:
            return
        self._closed = True
        self.outbox.close_writer()
        self._drain_deadline = time.monotonic() + drain_timeout_s
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self.outbox.close()
        self._transport.close()
        depth = self.outbox.stats().depth
        if depth:
            log.warning("historian closed with %d records still in the outbox (sent on next start)", depth)

    def metrics(self) -> HistorianMetrics:
        ob = self.outbox.stats()
        with self._lock:
            retry_in = max(0.0, self._retry_at - time.monotonic()) if self._state is not Verdict.OK else 0.0
            return HistorianMetrics(
                depth=ob.depth,
                bytes=ob.bytes,
                buffered=ob.buffered,
                sent=self._sent,
                dropped=ob.dropped,
                dead_lettered=ob.invalid + self._refused,
                requests=self._requests,
                retries=self._retries,
                state=self._state.value,
                last_error=self._last_error,
                retry_in_s=retry_in,
                cpu_s=ob.writer_cpu_s + self._sender_cpu_s,
            )

    # ---- sender thread ----------------------------------------------------------------------------

    def _stopping_now(self) -> bool:
        return self._stop.is_set() and time.monotonic() >= self._drain_deadline

    def _sleep(self, seconds: float) -> None:
        """Interruptible wait that never outlasts the drain deadline at close."""
        end = min(time.monotonic() + seconds, self._drain_deadline)
        while not self._stopping_now():
            left = end - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.1))

    def _post(self, body: bytes) -> WriteResponse:
        with self._lock:
            self._requests += 1
        try:
            return self._transport.post(gzip.compress(body, compresslevel=self._sp.gzip_level))
        except Exception as e:  # a transport must not kill the sender; treat it as "no answer"
            return WriteResponse(0, f"{type(e).__name__}: {e}"[:500])

    def _run(self) -> None:
        failures = 0
        while not self._stopping_now():
            try:
                failures = self._step(failures)
                self._sender_cpu_s = time.thread_time()
            except Exception as e:
                # SQLite trouble (disk full, I/O error): the rows are still where they were; retry later.
                failures += 1
                log.exception("historian sender step failed; retrying")
                with self._lock:
                    self._state = Verdict.RETRY
                    self._last_error = f"{type(e).__name__}: {e}"[:500]
                    self._retry_at = time.monotonic() + self._sp.backoff_max_s
                self._sleep(self._sp.backoff_max_s)
            if failures < 0:
                return

    def _step(self, failures: int) -> int:
        """Send one batch; returns the new count of consecutive failures (-1: closing and empty)."""
        batch = self.outbox.peek(self._sp.batch_lines)
        if batch is None:
            if self._stop.is_set():
                return -1  # closing, writer already persisted everything, queue empty
            self._wake.wait(self._sp.idle_poll_s)
            self._wake.clear()
            return failures
        resp = self._post(batch.body)
        v = verdict(resp.status)
        if v is Verdict.REFUSED:
            v, resp = self._isolate_refused(batch, resp)
        elif v is Verdict.OK:
            self.outbox.ack(batch)
            with self._lock:
                self._sent += batch.lines
        else:
            self.outbox.release()
        if v is Verdict.OK:
            if failures:
                log.info("historian store accepts writes again after %d failed attempts", failures)
            failures = 0
            with self._lock:
                self._state = Verdict.OK
            return 0
        failures += 1
        delay = self._backoff(failures, resp)
        with self._lock:
            self._retries += 1
            self._state = v
            self._last_error = f"HTTP {resp.status}: {resp.message}" if resp.status else resp.message
            self._retry_at = time.monotonic() + delay
        if failures == 1:
            log.warning("historian write failed (%s); retrying, data kept in outbox", self._last_error)
        self._sleep(delay)
        return failures

    def _backoff(self, failures: int, resp: WriteResponse) -> float:
        sp = self._sp
        if resp.retry_after_s is not None:
            return min(resp.retry_after_s, sp.retry_after_max_s)
        base = min(sp.backoff_max_s, sp.backoff_initial_s * 2 ** min(failures - 1, 30))
        return base * random.uniform(0.75, 1.0)  # jitter so several edge PCs don't retry in step

    def _isolate_refused(self, batch: Batch, first: WriteResponse) -> tuple[Verdict, WriteResponse]:
        """Bisect a refused batch: deliver the good lines, dead-letter the refused ones.

        Stops at the first transient failure and keeps the undelivered lines at the queue head.
        """
        todo: deque[tuple[list[bytes], WriteResponse | None]] = deque([(batch.body.split(b"\n"), first)])
        sent = 0
        dead: list[DeadLetter] = []
        result: tuple[Verdict, WriteResponse] = (Verdict.OK, WriteResponse(204))
        while todo:
            lines, known = todo.popleft()
            resp = known if known is not None else self._post(b"\n".join(lines))
            v = verdict(resp.status)
            if v is Verdict.OK:
                sent += len(lines)
            elif v is Verdict.REFUSED:
                if len(lines) == 1:
                    reason = f"{REASON_REFUSED_BY_STORE}: HTTP {resp.status} {resp.message}".strip()
                    dead.append(DeadLetter("historian", self._clock(), reason, lines[0]))
                else:
                    mid = len(lines) // 2
                    todo.appendleft((lines[mid:], None))
                    todo.appendleft((lines[:mid], None))
            else:
                todo.appendleft((lines, resp))
                result = (v, resp)
                break
        if dead:
            offer(self.dead_letters, dead)
            log.warning("store refused %d lines (%s); dead-lettered", len(dead), dead[0].reason)
        with self._lock:
            self._sent += sent
            self._refused += len(dead)
        if result[0] is Verdict.OK:
            self.outbox.ack(batch)
        else:
            remaining = [line for lines, _ in todo for line in lines]
            self.outbox.replace_head(batch, remaining)
        return result
