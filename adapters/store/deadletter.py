"""Dead-letter store: inputs that were refused, kept in SQLite with where they came from and why.

Any thread may call :meth:`DeadLetterStore.add` / :meth:`add_many`; rows are written by a background
thread (see :mod:`adapters.store.batching`), so a flood of bad input never stalls a protocol callback.
The store keeps at most ``max_rows`` letters (oldest deleted first) but counts every letter ever
refused, per source and reason, across restarts.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from adapters.base import DeadLetter
from adapters.store.batching import BufferedWriter

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    received_at REAL NOT NULL,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter_counts (
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (source, reason)
) WITHOUT ROWID;
"""


def offer(store: DeadLetterStore | None, letters: Sequence[DeadLetter]) -> None:
    """Hand letters to ``store`` if there is one; a closed or failing store is logged, never raised:
    a refused record must not stop the pipeline that refused it."""
    if store is None or not letters:
        return
    try:
        store.add_many(letters)
    except Exception:
        log.exception(
            "dead-letter store refused %d letters (%s); they are only counted",
            len(letters),
            letters[0].reason,
        )


def reason_key(reason: str) -> str:
    """The stable part of a reason ("value out of range: 150 not in [0, 100]" → "value out of range")."""
    return reason.split(": ", 1)[0]


def open_sqlite(path: str | Path) -> sqlite3.Connection:
    """A connection shared by threads under the caller's lock; WAL so readers never block the writer."""
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives a process crash; only an OS crash/power cut may lose the
    # last commits (the FULL alternative costs an fsync per commit).
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class DeadLetterStore:
    """Refused inputs with their reason; bounded by ``max_rows``; counts per (source, reason key).

    path: SQLite file (":memory:" works for tests).
    """

    def __init__(self, path: str | Path, *, max_rows: int = 100_000, flush_interval_s: float = 0.2) -> None:
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._conn = open_sqlite(path)
        self._conn.executescript(_SCHEMA)
        self._counts: Counter[tuple[str, str]] = Counter()
        for source, reason, n in self._conn.execute("SELECT source, reason, n FROM dead_letter_counts"):
            self._counts[(source, reason)] = n
        self._writer: BufferedWriter[DeadLetter] = BufferedWriter(
            self._persist, name="dead-letters", flush_interval_s=flush_interval_s, max_pending=100_000
        )
        self._closed = False

    def add(self, letter: DeadLetter) -> None:
        self.add_many((letter,))

    def add_many(self, letters: Sequence[DeadLetter]) -> None:
        """Queue letters for storage (thread-safe, never blocks on the disk); counted at once."""
        if not letters:
            return
        with self._lock:
            for letter in letters:
                self._counts[(letter.source, reason_key(letter.reason))] += 1
        self._writer.put_many(letters)

    def counts(self) -> dict[str, int]:
        """Letters ever refused per reason key (all sources)."""
        out: Counter[str] = Counter()
        with self._lock:
            for (_, reason), n in self._counts.items():
                out[reason] += n
        return dict(out)

    def counts_by_source(self) -> dict[str, dict[str, int]]:
        """Letters ever refused per source, then per reason key."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for (source, reason), n in self._counts.items():
                out.setdefault(source, {})[reason] = n
        return out

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def recent(self, limit: int = 100, source: str | None = None) -> list[DeadLetter]:
        """The newest stored letters, newest first (waits for queued letters to be written)."""
        self._writer.flush(5.0)
        sql = "SELECT source, received_at, reason, payload FROM dead_letters"
        args: tuple[object, ...] = ()
        if source is not None:
            sql += " WHERE source = ?"
            args = (source,)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*args, limit)).fetchall()
        return [DeadLetter(s, t, r, bytes(p)) for s, t, r, p in rows]

    def __len__(self) -> int:
        """Letters currently kept (at most ``max_rows``)."""
        self._writer.flush(5.0)
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])

    def flush(self, timeout_s: float | None = 5.0) -> bool:
        return self._writer.flush(timeout_s)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with self._lock:
            self._conn.close()

    def _persist(self, letters: list[DeadLetter]) -> None:
        per_key: Counter[tuple[str, str]] = Counter((d.source, reason_key(d.reason)) for d in letters)
        with self._lock:
            c = self._conn
            c.execute("BEGIN")
            try:
                c.executemany(
                    "INSERT INTO dead_letters (source, received_at, reason, payload) VALUES (?, ?, ?, ?)",
                    [(d.source, d.received_at, d.reason, bytes(d.payload)) for d in letters],
                )
                c.executemany(
                    "INSERT INTO dead_letter_counts (source, reason, n) VALUES (?, ?, ?) "
                    "ON CONFLICT (source, reason) DO UPDATE SET n = n + excluded.n",
                    [(s, r, n) for (s, r), n in per_key.items()],
                )
                # Keep the newest max_rows: ids are increasing, so everything below the cut goes.
                c.execute(
                    "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?",
                    (self._max_rows,),
                )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
