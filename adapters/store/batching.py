"""Hand items from any thread to one background thread that persists them in batches.

Callers (an asyncio loop, a paho network thread) only append to an in-memory list under a lock, so
``put_many`` costs microseconds and never touches the disk or the network. A background thread takes the
whole list every ``flush_interval_s`` (or as soon as ``flush_items`` are waiting) and hands it to
``persist``. ``flush()`` waits until everything put before the call is persisted; ``close()`` persists
everything and stops the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from adapters.base import AdapterError

log = logging.getLogger(__name__)

T = TypeVar("T")


class WriterClosed(AdapterError):
    """Items were offered after ``close()``."""


class BufferedWriter(Generic[T]):
    """A lock-protected list drained by one thread into ``persist(items)``.

    persist: called on the writer thread with the items in arrival order; it must handle bad items itself
        (an exception means "storage failed, keep the items and retry").
    flush_interval_s: longest time an item waits in memory before persist [s].
    flush_items: persist at once when this many items wait.
    max_pending: back-pressure bound; ``put_many`` waits up to ``block_timeout_s`` for room, then the
        new items are refused and reported to ``on_overflow(n)`` (so a stuck disk never hangs a caller).
    """

    def __init__(
        self,
        persist: Callable[[list[T]], None],
        *,
        name: str,
        flush_interval_s: float = 0.05,
        flush_items: int = 5000,
        max_pending: int = 1_000_000,
        block_timeout_s: float = 1.0,
        on_overflow: Callable[[int], None] | None = None,
        retry_delay_s: float = 0.5,
    ) -> None:
        self._persist = persist
        self._interval = flush_interval_s
        self._flush_items = flush_items
        self._max_pending = max_pending
        self._block_timeout = block_timeout_s
        self._on_overflow = on_overflow
        self._retry_delay = retry_delay_s
        self._cond = threading.Condition(threading.Lock())
        self._buf: list[T] = []
        self._put = 0  # items accepted so far
        self._done = 0  # items handed to persist successfully (or given up at close)
        self._flush_wanted = 0
        self._closing = False
        self._failing = False
        self.cpu_s = 0.0  # CPU time the writer thread has used [s] (for metrics)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Items accepted but not yet persisted."""
        with self._cond:
            return self._put - self._done

    def put_many(self, items: Sequence[T]) -> None:
        if not items:
            return
        n = len(items)
        with self._cond:
            if self._closing:
                raise WriterClosed("writer is closed")
            overflow = False
            if self._put - self._done + n > self._max_pending:
                deadline = time.monotonic() + self._block_timeout
                self._cond.notify_all()
                while self._put - self._done + n > self._max_pending and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                overflow = self._put - self._done + n > self._max_pending
            if not overflow:
                was_empty = not self._buf
                self._buf.extend(items)
                self._put += n
                if was_empty or len(self._buf) >= self._flush_items:
                    self._cond.notify_all()
        if overflow and self._on_overflow is not None:
            self._on_overflow(n)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every item accepted before this call is persisted; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            target = self._put
            self._flush_wanted = max(self._flush_wanted, target)
            self._cond.notify_all()
            while self._done < target and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return self._done >= target

    def close(self, timeout_s: float | None = None) -> bool:
        """Persist everything accepted, then stop the thread; False if it did not finish in time."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _take(self) -> list[T] | None:
        """Wait for a batch that is due; None when closed and empty."""
        with self._cond:
            while not self._buf:
                if self._closing:
                    return None
                self._cond.wait()
            due = time.monotonic() + self._interval
            while (
                len(self._buf) < self._flush_items
                and self._flush_wanted <= self._done
                and not self._closing
                and (left := due - time.monotonic()) > 0
            ):
                self._cond.wait(left)
            items, self._buf = self._buf, []
            return items

    def _run(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            while True:
                try:
                    self._persist(items)
                except Exception:
                    # Storage failed (disk full, locked file): keep the items and try again; at close we
                    # keep trying until the caller's join timeout gives up on us.
                    if not self._failing:
                        log.exception("persisting %d items failed; will retry", len(items))
                        self._failing = True
                    time.sleep(self._retry_delay)
                    continue
                if self._failing:
                    log.warning("persisting works again")
                    self._failing = False
                break
            self.cpu_s = time.thread_time()
            with self._cond:
                self._done += len(items)
                self._cond.notify_all()
