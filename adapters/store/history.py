"""Embedded history store: the default historian when no InfluxDB is configured.

A :class:`adapters.base.Sink` backed by SQLite (WAL): ``write`` appends to memory (any thread, µs), a
writer thread inserts every ``flush_interval_s``. Reads serve the live view's trends and calibration:
``query(tag, start, end, max_points)`` returns raw samples, or, when there are more than ``max_points``,
equal-width time buckets (mean time, mean value, worst quality). Samples older than ``retention_s``
(by the injected clock) are deleted by the writer thread.

Schema: ``tags(id, name)`` and ``samples(tag_id, ts, value, quality)`` keyed by (tag_id, ts): a second
sample of a tag at the same timestamp replaces the first (like InfluxDB), so re-delivery is harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.base import Quality, Sample
from adapters.store.batching import BufferedWriter
from adapters.store.checks import check_sample, dead_letter
from adapters.store.deadletter import DeadLetterStore, offer, open_sqlite

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS samples (
    tag_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    value REAL NOT NULL,
    quality INTEGER NOT NULL,
    PRIMARY KEY (tag_id, ts)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class HistoryParams:
    """path: SQLite file; retention_s: keep samples this long [s]; flush_interval_s: memory → disk [s]."""

    path: Path | str
    retention_s: float = 7 * 86400.0
    flush_interval_s: float = 0.2
    prune_interval_s: float = 60.0
    max_pending: int = 1_000_000


@dataclass(frozen=True, slots=True)
class HistoryStats:
    stored: int  # samples inserted since start
    buffered: int  # in memory, not yet in SQLite
    invalid: int  # refused (dead-lettered) since start
    dropped: int  # refused because the memory buffer stayed full (disk stuck)
    pruned: int  # deleted by retention since start


class LocalHistory:
    """Recent history of every tag in one SQLite file; thread-safe Sink with range queries."""

    def __init__(
        self,
        params: HistoryParams,
        *,
        dead_letters: DeadLetterStore | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.params = params
        self._dead = dead_letters
        self._bounds = bounds
        self._clock = clock
        self._lock = threading.Lock()
        if str(params.path) != ":memory:":
            Path(params.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = open_sqlite(params.path)
        self._conn.executescript(_SCHEMA)
        self._tag_ids: dict[str, int] = dict(self._conn.execute("SELECT name, id FROM tags").fetchall())
        self._stored = self._invalid = self._dropped = self._pruned = 0
        self._next_prune = 0.0
        self._closed = False
        self._writer: BufferedWriter[Sample] = BufferedWriter(
            self._persist,
            name="history-writer",
            flush_interval_s=params.flush_interval_s,
            max_pending=params.max_pending,
            on_overflow=self._count_overflow,
        )

    # ---- Sink -----------------------------------------------------------------------------------

    def write(self, samples: Sequence[Sample]) -> None:
        """Queue samples; validated and stored on the writer thread."""
        self._writer.put_many(samples)

    def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Wait until everything written so far is queryable."""
        return self._writer.flush(timeout_s)

    def close(self) -> None:
        """Store everything buffered and close the file."""
        if self._closed:
            return
        self._writer.close()
        with self._lock:
            self._closed = True
            self._conn.close()

    # ---- reads ----------------------------------------------------------------------------------

    def tags(self) -> list[str]:
        with self._lock:
            return sorted(self._tag_ids)

    def latest(self, tag: str) -> Sample | None:
        with self._lock:
            tid = self._tag_ids.get(tag)
            if tid is None:
                return None
            row = self._conn.execute(
                "SELECT ts, value, quality FROM samples WHERE tag_id = ? ORDER BY ts DESC LIMIT 1", (tid,)
            ).fetchone()
        return None if row is None else Sample(tag, row[0], row[1], Quality(row[2]))

    def query(self, tag: str, start: float, end: float, max_points: int = 1000) -> list[Sample]:
        """Samples of ``tag`` with ``start <= timestamp < end`` [s], oldest first, at most ``max_points``.

        Beyond ``max_points`` the range is cut into ``max_points`` equal buckets; each non-empty bucket
        gives one sample: mean timestamp, mean value, worst quality.
        """
        if max_points < 1:
            raise ValueError("max_points must be at least 1")
        with self._lock:
            tid = self._tag_ids.get(tag)
            if tid is None or end <= start:
                return []
            c = self._conn
            (n,) = c.execute(
                "SELECT COUNT(*) FROM samples WHERE tag_id = ? AND ts >= ? AND ts < ?", (tid, start, end)
            ).fetchone()
            if n <= max_points:
                rows = c.execute(
                    "SELECT ts, value, quality FROM samples WHERE tag_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
                    (tid, start, end),
                ).fetchall()
            else:
                width = (end - start) / max_points
                rows = c.execute(
                    "SELECT AVG(ts), AVG(value), MAX(quality) FROM samples"
                    " WHERE tag_id = ? AND ts >= ? AND ts < ?"
                    " GROUP BY MIN(CAST((ts - ?) / ? AS INTEGER), ?) ORDER BY 1",
                    (tid, start, end, start, width, max_points - 1),
                ).fetchall()
        return [Sample(tag, ts, v, Quality(q)) for ts, v, q in rows]

    def stats(self) -> HistoryStats:
        with self._lock:
            return HistoryStats(
                self._stored, self._writer.pending, self._invalid, self._dropped, self._pruned
            )

    def prune(self, now: float | None = None) -> int:
        """Delete samples older than the retention; returns how many (also run by the writer thread)."""
        cutoff = (self._clock() if now is None else now) - self.params.retention_s
        deleted = 0
        with self._lock:
            for tid in self._tag_ids.values():
                deleted += self._conn.execute(
                    "DELETE FROM samples WHERE tag_id = ? AND ts < ?", (tid, cutoff)
                ).rowcount
            self._pruned += deleted
        return deleted

    # ---- writer thread --------------------------------------------------------------------------

    def _count_overflow(self, n: int) -> None:
        log.error("history memory buffer full for 1 s (disk stuck?): %d samples dropped", n)
        with self._lock:
            self._dropped += n

    def _persist(self, items: list[Sample]) -> None:
        rows: list[tuple[str, float, float, int]] = []
        bad = []
        now = self._clock()
        for s in items:
            reason = check_sample(s, self._bounds)
            if reason is None:
                rows.append((s.tag, float(s.timestamp), float(s.value), int(s.quality)))
            else:
                bad.append(dead_letter("history", now, reason, s))
        offer(self._dead, bad)
        with self._lock:
            self._invalid += len(bad)
            c = self._conn
            c.execute("BEGIN")
            try:
                ids = self._tag_ids
                for tag, *_ in rows:
                    if tag not in ids:
                        ids[tag] = int(c.execute("INSERT INTO tags (name) VALUES (?)", (tag,)).lastrowid or 0)
                c.executemany(
                    "INSERT OR REPLACE INTO samples (tag_id, ts, value, quality) VALUES (?, ?, ?, ?)",
                    [(ids[tag], ts, v, q) for tag, ts, v, q in rows],
                )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                # Tag ids inserted in the rolled-back transaction do not exist: reload the mapping.
                self._tag_ids = dict(c.execute("SELECT name, id FROM tags").fetchall())
                raise
            self._stored += len(rows)
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + self.params.prune_interval_s
            self.prune()
