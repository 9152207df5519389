"""Redelivered QoS 1 messages are dropped by source time, not by a small count of recent messages."""

from __future__ import annotations

from adapters.base import Sample
from adapters.mqtt.router import _Dedupe


def test_a_replay_of_a_whole_second_at_high_rate_is_dropped() -> None:
    d = _Dedupe(window=65536, window_s=300.0)
    first = [Sample("t", 1000.0 + k / 500.0, float(k)) for k in range(2000)]  # 4 s at 500 Hz
    kept, dropped = d.fresh(first)
    assert len(kept) == 2000 and dropped == 0
    replay = first[-600:]  # a broker killed with SIGKILL replays its last ~second and more
    kept, dropped = d.fresh(replay)
    assert kept == [] and dropped == 600


def test_memory_stays_bounded_by_time_and_count() -> None:
    d = _Dedupe(window=100, window_s=10.0)
    d.fresh([Sample("t", float(k), 0.0) for k in range(1000)])
    assert len(d._seen["t"]) <= 11  # only the last 10 s of source time
    d2 = _Dedupe(window=100, window_s=1e9)
    d2.fresh([Sample("t", float(k), 0.0) for k in range(1000)])
    assert len(d2._seen["t"]) == 100  # and never more than the cap
