"""Durable outbox: every record is appended to a local SQLite (WAL) queue before it is sent, and
removed only after the store acknowledged it.

Layout: one row per chunk of up to ``chunk_lines`` line-protocol lines (``id`` increasing = arrival
order), so appending 50,000 samples/s costs a few inserts per second, not 50,000. The sender takes whole
chunks from the head (:meth:`Outbox.peek`), and deletes them after a 2xx (:meth:`Outbox.ack`).

Bound: the sum of line bytes is kept under ``max_bytes``; when a new chunk would exceed it the OLDEST
chunks (excluding the one being sent) are deleted and counted in ``dropped``. Oldest, because after a
long outage the recent past is what operators and the controller look at; this is also Telegraf's
choice for its output buffer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.base import DeadLetter, Sample
from adapters.influx.lineproto import LineError, Point, SampleEncoder, point_line
from adapters.store.batching import BufferedWriter
from adapters.store.checks import check_sample, dead_letter
from adapters.store.deadletter import DeadLetterStore, offer, open_sqlite

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    n INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OutboxParams:
    """Where and how much to buffer.

    path: SQLite file of the outbox (created; reopened after a restart, pending rows are replayed).
    max_bytes: bound on queued line-protocol bytes [B]; oldest chunks are dropped beyond it.
    flush_interval_s: longest time a record waits in memory before it is in SQLite [s].
    chunk_lines: lines per SQLite row (and per in-memory batch).
    max_pending: records allowed in memory before ``write`` applies back-pressure (≤ 1 s, then drops).
    """

    path: Path | str
    max_bytes: int = 1 << 30
    flush_interval_s: float = 0.05
    chunk_lines: int = 5000
    max_pending: int = 1_000_000


@dataclass(frozen=True, slots=True)
class Batch:
    """Chunks taken from the head of the outbox for one write request."""

    ids: tuple[int, ...]
    lines: int
    nbytes: int
    body: bytes  # newline-separated line protocol


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int  # records in SQLite not yet acknowledged
    bytes: int  # their line-protocol bytes
    buffered: int  # records in memory, not yet in SQLite
    accepted: int  # records persisted to SQLite since start
    dropped: int  # records dropped by the byte bound or memory back-pressure
    invalid: int  # records refused before queuing (dead-lettered)
    writer_cpu_s: float  # CPU time used by the writer thread (validation, encoding, SQLite) [s]


class Outbox:
    """The SQLite queue plus its in-memory front. Thread-safe; ``write`` never blocks on the network.

    dead_letters: where refused records go (NaN/inf, bad timestamps, out of ``bounds``); None = count only.
    on_data: called (on the writer thread) after new rows were committed, e.g. to wake a sender.
    """

    def __init__(
        self,
        params: OutboxParams,
        *,
        encoder: SampleEncoder | None = None,
        dead_letters: DeadLetterStore | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        source: str = "historian",
        clock: Callable[[], float] = time.time,
        on_data: Callable[[], None] | None = None,
    ) -> None:
        self.params = params
        self._encoder = encoder or SampleEncoder()
        self._dead = dead_letters
        self._bounds = bounds
        self._source = source
        self._clock = clock
        self._on_data = on_data
        self._lock = threading.Lock()
        Path(params.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = open_sqlite(params.path)
        self._conn.executescript(_SCHEMA)
        n, b = self._conn.execute(
            "SELECT COALESCE(SUM(n), 0), COALESCE(SUM(nbytes), 0) FROM outbox"
        ).fetchone()
        self._depth, self._bytes = int(n), int(b)
        if self._depth:
            log.info("outbox %s: replaying %d records left from the previous run", params.path, self._depth)
        self._inflight_max = 0  # rows with id <= this are being sent; the byte bound never drops them
        self._accepted = 0
        self._dropped = 0
        self._invalid = 0
        self._next_drop_log = 0.0
        self._closed = False
        self._writer: BufferedWriter[Sample | Point] = BufferedWriter(
            self._persist,
            name="outbox-writer",
            flush_interval_s=params.flush_interval_s,
            flush_items=params.chunk_lines,
            max_pending=params.max_pending,
            on_overflow=self._count_overflow,
        )

    # ---- producer side (any thread) -------------------------------------------------------------

    def write(self, samples: Sequence[Sample]) -> None:
        """Queue samples (Sink protocol); validated and persisted on the writer thread."""
        self._writer.put_many(samples)

    def write_points(self, points: Sequence[Point]) -> None:
        """Queue generic records (estimates, setpoints, KPIs) under their own measurement."""
        self._writer.put_many(points)

    def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Wait until everything written so far is in SQLite (not necessarily sent)."""
        return self._writer.flush(timeout_s)

    def close_writer(self, timeout_s: float | None = 30.0) -> bool:
        """Persist everything in memory and refuse further writes; the queue stays readable."""
        return self._writer.close(timeout_s)

    def close(self) -> None:
        """Persist everything in memory and close the file; unsent rows are replayed by the next run."""
        if self._closed:
            return
        self.close_writer()
        with self._lock:
            self._closed = True
            self._conn.close()

    # ---- consumer side (the sender thread) ------------------------------------------------------

    def peek(self, max_lines: int) -> Batch | None:
        """The oldest chunks, up to ``max_lines`` lines (at least one chunk), or None if empty."""
        with self._lock:
            if self._closed:
                return None
            # Sizes first, bodies only for the rows taken: a body holds up to chunk_lines lines.
            rows = self._conn.execute("SELECT id, n, nbytes FROM outbox ORDER BY id LIMIT 64").fetchall()
            ids: list[int] = []
            lines = nbytes = 0
            for rid, n, nb in rows:
                if ids and lines + n > max_lines:
                    break
                ids.append(rid)
                lines += n
                nbytes += nb
            if not ids:
                return None
            bodies = [
                body
                for (body,) in self._conn.execute(
                    "SELECT body FROM outbox WHERE id >= ? AND id <= ? ORDER BY id", (ids[0], ids[-1])
                )
            ]
            self._inflight_max = ids[-1]
            return Batch(tuple(ids), lines, nbytes, b"\n".join(bodies))

    def ack(self, batch: Batch) -> None:
        """The store accepted (or we dead-lettered) every line of ``batch``: delete its rows."""
        with self._lock:
            self._conn.execute("DELETE FROM outbox WHERE id <= ?", (batch.ids[-1],))
            self._depth -= batch.lines
            self._bytes -= batch.nbytes
            self._inflight_max = 0

    def replace_head(self, batch: Batch, remaining: Sequence[bytes]) -> None:
        """Part of ``batch`` was delivered: keep only ``remaining`` lines, at the head of the queue."""
        body = b"\n".join(remaining)
        with self._lock:
            c = self._conn
            c.execute("BEGIN")
            c.execute("DELETE FROM outbox WHERE id > ? AND id <= ?", (batch.ids[0], batch.ids[-1]))
            c.execute(
                "UPDATE outbox SET n = ?, nbytes = ?, body = ? WHERE id = ?",
                (len(remaining), len(body), body, batch.ids[0]),
            )
            c.execute("COMMIT")
            self._depth += len(remaining) - batch.lines
            self._bytes += len(body) - batch.nbytes
            self._inflight_max = 0

    def release(self) -> None:
        """The batch handed out by ``peek`` stays queued (send failed); the bound may drop it again."""
        with self._lock:
            self._inflight_max = 0

    def stats(self) -> OutboxStats:
        with self._lock:
            return OutboxStats(
                depth=self._depth,
                bytes=self._bytes,
                buffered=self._writer.pending,
                accepted=self._accepted,
                dropped=self._dropped,
                invalid=self._invalid,
                writer_cpu_s=self._writer.cpu_s,
            )

    # ---- writer thread --------------------------------------------------------------------------

    def _count_overflow(self, n: int) -> None:
        log.error("outbox memory buffer full for 1 s (disk stuck?): %d records dropped", n)
        with self._lock:
            self._dropped += n

    def _encode(self, items: list[Sample | Point]) -> tuple[list[str], list[DeadLetter]]:
        lines, slow = self._encoder.encode_many(items, self._bounds)
        if not slow:
            return lines, []
        # Something needed the careful path: redo this batch item by item to keep arrival order.
        lines = []
        bad: list[DeadLetter] = []
        line = self._encoder.line
        now = self._clock()
        for item in items:
            try:
                if isinstance(item, Point):
                    lines.append(point_line(item))
                    continue
                reason = check_sample(item, self._bounds)
                if reason is None:
                    lines.append(line(item))
                else:
                    bad.append(dead_letter(self._source, now, reason, item))
            except (LineError, TypeError, ValueError, AttributeError) as e:
                bad.append(dead_letter(self._source, now, f"invalid record: {e}", item))
        return lines, bad

    def _persist(self, items: list[Sample | Point]) -> None:
        lines, bad = self._encode(items)
        offer(self._dead, bad)
        step = self.params.chunk_lines
        chunks = []
        for i in range(0, len(lines), step):
            part = lines[i : i + step]
            body = "\n".join(part).encode()
            chunks.append((len(part), len(body), body))
        with self._lock:
            self._invalid += len(bad)
            if not chunks:
                return
            c = self._conn
            c.execute("BEGIN")
            try:
                c.executemany("INSERT INTO outbox (n, nbytes, body) VALUES (?, ?, ?)", chunks)
                added_n = sum(ch[0] for ch in chunks)
                added_b = sum(ch[1] for ch in chunks)
                dropped_n, dropped_b = self._enforce_bound(self._bytes + added_b)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            self._depth += added_n - dropped_n
            self._bytes += added_b - dropped_b
            self._accepted += added_n
            self._dropped += dropped_n
        if dropped_n:
            log.warning(
                "outbox over %d bytes: dropped the %d oldest records", self.params.max_bytes, dropped_n
            )
        if self._on_data is not None:
            self._on_data()

    def _enforce_bound(self, total_bytes: int) -> tuple[int, int]:
        """Delete the oldest chunks (not in flight) until ``total_bytes`` fits; in the open transaction."""
        limit = self.params.max_bytes
        if total_bytes <= limit:
            return 0, 0
        dropped_n = dropped_b = 0
        last = self._inflight_max
        while total_bytes - dropped_b > limit:
            rows = self._conn.execute(
                "SELECT id, n, nbytes FROM outbox WHERE id > ? ORDER BY id LIMIT 256", (last,)
            ).fetchall()
            if not rows:
                break
            for rid, n, nb in rows:
                if total_bytes - dropped_b <= limit:
                    break
                last = rid
                dropped_n += n
                dropped_b += nb
            self._conn.execute("DELETE FROM outbox WHERE id > ? AND id <= ?", (self._inflight_max, last))
        return dropped_n, dropped_b
