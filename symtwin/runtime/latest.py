"""The latest value of every tag, fed from any thread, read by the control cycle.

Adapters call :meth:`LatestValues.write` from their own threads or tasks (it only appends to a deque,
which is atomic in CPython); the cycle calls :meth:`drain` once per cycle and sees a consistent table.
A sample older than the one held is a late duplicate or a replay and does not replace it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from adapters.base import Sample


class LatestValues:
    def __init__(self, max_pending: int = 1_000_000) -> None:
        self._pending: deque[Sample] = deque()
        self._max_pending = max_pending
        self._latest: dict[str, Sample] = {}
        self.received = 0
        self.dropped = 0  # pending overflow: the cycle fell far behind (counted, never blocks a source)
        self.out_of_order = 0

    def write(self, samples: Sequence[Sample]) -> None:
        """Sink protocol: queue samples for the next cycle. Never blocks."""
        room = self._max_pending - len(self._pending)
        if room < len(samples):
            self.dropped += len(samples) - max(room, 0)
            samples = samples[: max(room, 0)]
        self._pending.extend(samples)

    def drain(self) -> list[Sample]:
        """Move pending samples into the table; return those that were new (for history and estimation)."""
        fresh: list[Sample] = []
        pop = self._pending.popleft
        for _ in range(len(self._pending)):
            s = pop()
            self.received += 1
            held = self._latest.get(s.tag)
            if held is not None and s.timestamp < held.timestamp:
                self.out_of_order += 1
                continue
            self._latest[s.tag] = s
            fresh.append(s)
        return fresh

    @property
    def table(self) -> Mapping[str, Sample]:
        return MappingProxyType(self._latest)

    def get(self, tag: str) -> Sample | None:
        return self._latest.get(tag)
