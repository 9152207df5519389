"""The embedded history store and the dead-letter store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from adapters.base import DeadLetter, Quality, Sample
from adapters.store import DeadLetterStore
from adapters.store.history import HistoryParams, LocalHistory

T0 = 1_767_225_600.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_range_query_returns_raw_samples_in_order(tmp_path: Path) -> None:
    h = LocalHistory(HistoryParams(tmp_path / "h.sqlite", flush_interval_s=0.01), clock=Clock(T0 + 100))
    h.write([Sample("b", T0 + i, float(i)) for i in range(50)])
    h.write([Sample("a", T0 + i, -float(i), Quality.UNCERTAIN) for i in range(49, -1, -1)])
    h.flush()
    got = h.query("a", T0 + 10, T0 + 20)
    assert [s.timestamp for s in got] == [T0 + i for i in range(10, 20)]
    assert got[0] == Sample("a", T0 + 10, -10.0, Quality.UNCERTAIN)
    assert h.tags() == ["a", "b"]
    assert h.latest("b") == Sample("b", T0 + 49, 49.0)
    assert h.query("missing", T0, T0 + 10) == [] and h.latest("missing") is None
    h.close()


def test_downsampling_gives_bucket_means_and_worst_quality(tmp_path: Path) -> None:
    h = LocalHistory(HistoryParams(tmp_path / "h.sqlite"), clock=Clock(T0 + 1000))
    data = [Sample("t", T0 + i, float(i), Quality.BAD if i == 7 else Quality.GOOD) for i in range(1000)]
    h.write(data)
    h.flush()
    got = h.query("t", T0, T0 + 1000, max_points=100)
    assert len(got) == 100
    assert got[0].timestamp == pytest.approx(T0 + 4.5) and got[0].value == pytest.approx(4.5)
    assert got[0].quality is Quality.BAD and got[1].quality is Quality.GOOD
    assert got[-1].value == pytest.approx(994.5)
    h.close()


def test_same_tag_and_time_is_stored_once(tmp_path: Path) -> None:
    h = LocalHistory(HistoryParams(tmp_path / "h.sqlite"), clock=Clock(T0))
    h.write([Sample("t", T0, 1.0)])
    h.write([Sample("t", T0, 2.0)])
    h.flush()
    assert h.query("t", T0 - 1, T0 + 1) == [Sample("t", T0, 2.0)]
    h.close()


def test_retention_deletes_old_samples(tmp_path: Path) -> None:
    clock = Clock(T0)
    h = LocalHistory(HistoryParams(tmp_path / "h.sqlite", retention_s=3600.0), clock=clock)
    h.write([Sample("t", T0 - 7200 + 60 * i, float(i)) for i in range(120)])
    h.flush()  # the writer prunes on its first flush
    assert h.stats().pruned == 60
    assert h.query("t", 0, T0 + 1)[0].timestamp == T0 - 3600
    clock.t += 600
    assert h.prune() == 10 and h.stats().pruned == 70
    h.close()


def test_history_survives_restart(tmp_path: Path) -> None:
    p = HistoryParams(tmp_path / "h.sqlite", flush_interval_s=30.0)
    h = LocalHistory(p, clock=Clock(T0))
    h.write([Sample("t", T0 + i, float(i)) for i in range(10)])
    h.close()
    h = LocalHistory(p, clock=Clock(T0))
    h.write([Sample("u", T0, 1.0)])
    h.flush()
    assert len(h.query("t", T0, T0 + 10)) == 10 and h.tags() == ["t", "u"]
    h.close()


def test_bad_samples_go_to_dead_letters(tmp_path: Path) -> None:
    dl = DeadLetterStore(tmp_path / "d.sqlite", flush_interval_s=0.01)
    h = LocalHistory(
        HistoryParams(tmp_path / "h.sqlite"), dead_letters=dl, bounds={"t": (0, 10)}, clock=Clock(T0)
    )
    h.write([Sample("t", T0, float("nan")), Sample("t", T0 + 1, 11.0), Sample("t", T0 + 2, 5.0)])
    h.flush()
    assert h.stats().invalid == 2 and len(h.query("t", T0, T0 + 10)) == 1
    assert dl.counts() == {"non-finite value": 1, "value out of range": 1}
    assert all(d.source == "history" for d in dl.recent())
    h.close()
    dl.close()


def test_dead_letter_store_is_bounded_but_counts_everything(tmp_path: Path) -> None:
    dl = DeadLetterStore(tmp_path / "d.sqlite", max_rows=50, flush_interval_s=0.01)

    def refuse(k: int) -> None:
        for i in range(100):
            dl.add(DeadLetter(f"mqtt{k}", T0 + i, f"bad json: line {i}", b"{"))

    writers = [threading.Thread(target=refuse, args=(k,)) for k in range(3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    dl.add_many([DeadLetter("opcua", T0, "bad status: BadNodeIdUnknown", b"ns=2;s=x")])
    assert len(dl) == 50
    assert dl.counts() == {"bad json": 300, "bad status": 1}
    assert dl.counts_by_source()["mqtt1"] == {"bad json": 100}
    assert dl.recent(1)[0].source == "opcua"
    dl.close()
    dl = DeadLetterStore(tmp_path / "d.sqlite", max_rows=50)
    assert dl.total() == 301 and len(dl) == 50  # counts persist across restarts
    dl.close()
