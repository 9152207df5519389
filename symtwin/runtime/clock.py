"""Injected clocks: the same loop runs in real time at a plant and faster than real time in simulation."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Current time [s since the Unix epoch]."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Return once ``now() >= t``."""
        ...


class RealClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, t: float) -> None:
        delay = t - time.time()
        if delay > 0:
            await asyncio.sleep(delay)


class ScaledClock:
    """Simulated time running ``speed`` times faster than the wall clock from ``start`` [s since epoch].

    speed = 60 runs an hour of plant time in a minute. Everything that reads time during a simulation reads
    this clock, so timestamps, staleness and control periods stay consistent at any speed.
    """

    def __init__(self, start: float, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self.speed = speed
        self._wall0 = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._wall0) * self.speed

    async def sleep_until(self, t: float) -> None:
        delay = (t - self.now()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """Time that moves only when told (tests, and commissioning runs as fast as the CPU allows)."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt

    async def sleep_until(self, t: float) -> None:
        if t > self.t:
            self.t = t
        await asyncio.sleep(0)
