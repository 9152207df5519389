"""The small interfaces every adapter speaks, and the one record they exchange.

Adapters turn protocol traffic into :class:`Sample` values and hand them on; they never decide what a
failure means for the service (that is the runtime coordinator's job), they raise typed errors.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Quality(enum.IntEnum):
    """Quality of a value, stored as a number (InfluxDB-API stores keep numeric fields only)."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one tag.

    tag: tag id from the site config.
    timestamp: source time [s since the Unix epoch, UTC].
    value: value in SI units (converted at the adapter edge).
    quality: the source's judgement of the value.
    """

    tag: str
    timestamp: float
    value: float
    quality: Quality = Quality.GOOD

    def is_usable(self) -> bool:
        return self.quality is Quality.GOOD and math.isfinite(self.value)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input that was set aside: where it came from, what it was and why it was refused."""

    source: str
    received_at: float
    reason: str
    payload: bytes


class AdapterError(Exception):
    """Base of all adapter errors; the runtime decides whether to retry, degrade or stop."""


class ConnectionLost(AdapterError):
    """The peer is unreachable; values from it go stale."""


class WriteRefused(AdapterError):
    """The peer refused or did not confirm a setpoint write."""


@runtime_checkable
class Sink(Protocol):
    """Somewhere samples go (the historian outbox, a test list)."""

    def write(self, samples: Sequence[Sample]) -> None: ...


@runtime_checkable
class SetpointWriter(Protocol):
    """Writes final setpoints back to the plant and confirms them."""

    async def write_setpoints(self, values: dict[str, float]) -> dict[str, bool]: ...


@runtime_checkable
class Source(Protocol):
    """Something that produces samples (OPC UA subscription, MQTT subscription, virtual plant)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def dead_letters(self) -> Iterable[DeadLetter]: ...
