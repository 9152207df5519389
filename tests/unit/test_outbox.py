"""The durable outbox and the historian's sender: order, durability, bounds, retries, dead letters.

The store is replaced by a scripted transport passed to the constructor (unit tier); the real store is
exercised in tests/integration/test_influx_historian.py.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import Quality, Sample
from adapters.influx import (
    InfluxHistorian,
    InfluxParams,
    LineError,
    Outbox,
    OutboxParams,
    Point,
    SampleEncoder,
    SenderParams,
    Verdict,
    WriteResponse,
    parse_retry_after,
    point_line,
    verdict,
)
from adapters.store import DeadLetterStore

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FAST = SenderParams(backoff_initial_s=0.01, backoff_max_s=0.05, idle_poll_s=0.05)


class ScriptedStore:
    """A transport that answers from a script (then 204) and records every delivered line."""

    def __init__(
        self, script: list[WriteResponse] | None = None, refuse: Callable[[bytes], bool] | None = None
    ):
        self.script = list(script or [])
        self.refuse = refuse
        self.lines: list[bytes] = []
        self.calls: list[float] = []
        self.lock = threading.Lock()

    def post(self, gzipped_body: bytes) -> WriteResponse:
        body = gzip.decompress(gzipped_body)
        lines = body.split(b"\n")
        with self.lock:
            self.calls.append(time.monotonic())
            if self.script:
                return self.script.pop(0)
            if self.refuse is not None and any(self.refuse(line) for line in lines):
                return WriteResponse(400, "unable to parse line")
            self.lines.extend(lines)
        return WriteResponse(204)

    def close(self) -> None:
        pass


def samples(n: int, tag: str = "hx1.t_out", start: int = 0) -> list[Sample]:
    return [Sample(tag, T0 + (start + i) * 0.001, 300.0 + i) for i in range(n)]


def historian(
    tmp_path: Path, store: ScriptedStore, sender: SenderParams = FAST, **outbox: object
) -> tuple[InfluxHistorian, DeadLetterStore]:
    dl = DeadLetterStore(tmp_path / "dead.sqlite", flush_interval_s=0.01)
    params = OutboxParams(tmp_path / "outbox.sqlite", flush_interval_s=0.01, **outbox)  # type: ignore[arg-type]
    h = InfluxHistorian(InfluxParams("http://unused", "o", "b"), params, dl, sender=sender, transport=store)
    return h, dl


# ---- line protocol --------------------------------------------------------------------------------


def test_sample_line_follows_the_historian_schema() -> None:
    enc = SampleEncoder(labels={"hx 1,a": {"unit": "hx1", "party": "power co"}})
    line = enc.line(Sample("hx 1,a", 1_700_000_000.123456, 353.15, Quality.UNCERTAIN))
    assert line == (
        "symtwin_sample,party=power\\ co,tag=hx\\ 1\\,a,unit=hx1 value=353.15,quality=1i 1700000000123456000"
    )


def test_timestamps_round_to_microseconds_so_a_resent_sample_gives_the_same_line() -> None:
    enc = SampleEncoder()
    a = enc.line(Sample("t", 1_700_000_000.1 + 1e-10, 1.0))
    b = enc.line(Sample("t", 1_700_000_000.1, 1.0))
    assert a == b and a.endswith(" 1700000000100000000")


def test_point_line_writes_numeric_fields_sorted() -> None:
    p = Point("symtwin_setpoint", {"value": 2.5, "accepted": True, "seq": 7}, 1.5, {"tag": "hp.power"})
    assert point_line(p) == "symtwin_setpoint,tag=hp.power accepted=true,seq=7i,value=2.5 1500000000"
    with pytest.raises(LineError):
        point_line(Point("m", {"value": float("inf")}, 1.0))
    with pytest.raises(LineError):
        point_line(Point("m", {}, 1.0))


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)


def test_verdicts() -> None:
    assert verdict(204) is Verdict.OK
    assert [verdict(s) for s in (0, 408, 429, 500, 503)] == [Verdict.RETRY] * 5
    assert [verdict(s) for s in (401, 403, 404)] == [Verdict.HOLD] * 3
    assert [verdict(s) for s in (400, 413, 422)] == [Verdict.REFUSED] * 3


# ---- outbox ---------------------------------------------------------------------------------------


def test_records_survive_a_restart_and_come_back_in_order(tmp_path: Path) -> None:
    params = OutboxParams(tmp_path / "o.sqlite", flush_interval_s=10.0, chunk_lines=100)
    ob = Outbox(params)
    for i in range(25):
        ob.write(samples(10, start=10 * i))
    ob.close()  # the flush interval never elapsed: close must persist the memory buffer
    ob = Outbox(params)
    assert ob.stats().depth == 250
    lines: list[bytes] = []
    while (b := ob.peek(120)) is not None:
        assert b.lines <= 120
        lines += b.body.split(b"\n")
        ob.ack(b)
    assert [int(line.rsplit(b" ", 1)[1]) for line in lines] == sorted(
        int(line.rsplit(b" ", 1)[1]) for line in lines
    )
    assert len(lines) == 250 and ob.stats().depth == 0 and ob.stats().bytes == 0
    ob.close()


def test_byte_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    line_bytes = len(SampleEncoder().line(samples(1)[0]))
    ob = Outbox(OutboxParams(tmp_path / "o.sqlite", max_bytes=10 * (10 * line_bytes + 9) + 5, chunk_lines=10))
    for i in range(30):
        ob.write(samples(10, start=10 * i))
        ob.flush()
    st = ob.stats()
    assert st.dropped == 200 and st.depth == 100 and st.bytes <= ob.params.max_bytes
    b = ob.peek(10)
    assert b is not None and b.body.startswith(SampleEncoder().line(samples(1, start=200)[0]).encode())
    ob.close()


def test_bad_input_is_dead_lettered_with_its_reason_and_never_crashes(tmp_path: Path) -> None:
    dl = DeadLetterStore(tmp_path / "dead.sqlite", flush_interval_s=0.01)
    ob = Outbox(OutboxParams(tmp_path / "o.sqlite"), dead_letters=dl, bounds={"p": (0.0, 2e6)})
    bad: list[object] = [
        Sample("p", T0, float("nan")),
        Sample("p", T0, float("-inf")),
        Sample("p", T0, 5e6),
        Sample("p", -1.0, 1.0),
        Sample("p", 1e12, 1.0),
        Sample("", T0, 1.0),
        Sample("p\nx", T0, 1.0),
        Sample("p", T0, 1.0, 7),  # type: ignore[arg-type]
        "not a sample",
        Point("m", {"v": float("nan")}, T0),
    ]
    ob.write([*bad, Sample("p", T0, 1.0)])  # type: ignore[list-item]
    ob.flush()
    dl.flush()
    assert ob.stats().depth == 1 and ob.stats().invalid == len(bad)
    assert dl.counts() == {
        "non-finite value": 2,
        "value out of range": 1,
        "timestamp out of range": 2,
        "invalid tag id": 2,
        "invalid quality": 1,
        "not a sample": 1,
        "invalid record": 1,
    }
    assert b'"value": NaN' in dl.recent(10)[-1].payload
    ob.close()
    dl.close()


def test_write_is_thread_safe(tmp_path: Path) -> None:
    ob = Outbox(OutboxParams(tmp_path / "o.sqlite", chunk_lines=500))

    def produce(k: int) -> None:
        for i in range(200):
            ob.write(samples(10, f"t{k}", 10 * i))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ob.flush()
    assert ob.stats().depth == 8000 and ob.stats().accepted == 8000
    ob.close()


# ---- historian sender -----------------------------------------------------------------------------


def test_transient_failures_keep_the_batch_and_deliver_it_once_in_order(tmp_path: Path) -> None:
    store = ScriptedStore([WriteResponse(0, "connection refused"), WriteResponse(503), WriteResponse(500)])
    h, dl = historian(tmp_path, store)
    for i in range(30):
        h.write(samples(10, start=10 * i))
    assert h.wait_sent(5)
    m = h.metrics()
    assert m.sent == 300 and m.retries == 3 and m.dropped == 0 and m.state == "ok"
    ts = [int(line.rsplit(b" ", 1)[1]) for line in store.lines]
    assert ts == sorted(ts) and len(set(ts)) == 300
    h.close()
    dl.close()


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    store = ScriptedStore([WriteResponse(429, "slow down", retry_after_s=0.4)])
    h, dl = historian(tmp_path, store)
    h.write(samples(5))
    assert h.wait_sent(5)
    assert len(store.calls) == 2 and store.calls[1] - store.calls[0] >= 0.39
    h.close()
    dl.close()


def test_refused_lines_are_isolated_and_dead_lettered_the_rest_is_written(tmp_path: Path) -> None:
    store = ScriptedStore(refuse=lambda line: b"tag=poison" in line)
    h, dl = historian(tmp_path, store)
    batch = samples(100)
    batch[37] = Sample("poison", T0, 1.0)
    batch[80] = Sample("poison", T0 + 1, 2.0)
    h.write(batch)
    assert h.wait_sent(5)
    assert len(store.lines) == 98 and not any(b"poison" in line for line in store.lines)
    m = h.metrics()
    assert m.sent == 98 and m.dead_lettered == 2 and m.depth == 0
    dl.flush()
    letters = dl.recent(10)
    assert dl.counts() == {"refused by store": 2}
    assert all(d.payload.startswith(b"symtwin_sample,tag=poison") for d in letters)
    assert "HTTP 400 unable to parse line" in letters[0].reason
    h.close()
    dl.close()


def test_a_store_that_refuses_the_client_keeps_the_data(tmp_path: Path) -> None:
    store = ScriptedStore([WriteResponse(401, "unauthorized")] * 3)
    h, dl = historian(tmp_path, store)
    h.write(samples(10))
    assert h.wait_sent(5)
    assert h.metrics().dead_lettered == 0 and len(store.lines) == 10
    h.close()
    dl.close()


def test_close_persists_the_partial_batch_when_the_store_is_down(tmp_path: Path) -> None:
    store = ScriptedStore([WriteResponse(0, "refused")] * 10_000)
    dl = DeadLetterStore(tmp_path / "dead.sqlite")
    params = OutboxParams(tmp_path / "outbox.sqlite", flush_interval_s=60.0)
    h = InfluxHistorian(InfluxParams("http://x", "o", "b"), params, dl, sender=FAST, transport=store)
    for i in range(7):
        h.write(samples(10, start=10 * i))
    t = time.monotonic()
    h.close(drain_timeout_s=0.2)
    assert time.monotonic() - t < 2.0
    m = h.metrics()
    assert m.depth == 70 and m.buffered == 0 and m.state == "retry" and "refused" in (m.last_error or "")
    dl.close()
    # The next run replays them first.
    store2 = ScriptedStore()
    dl2 = DeadLetterStore(tmp_path / "dead.sqlite")
    h2 = InfluxHistorian(InfluxParams("http://x", "o", "b"), params, dl2, sender=FAST, transport=store2)
    h2.write(samples(1, start=1000))
    assert h2.wait_sent(5)
    assert len(store2.lines) == 71 and store2.lines[-1].endswith(b"1767225601000000000")
    h2.close()
    dl2.close()


def test_write_never_waits_for_a_hanging_store(tmp_path: Path) -> None:
    release = threading.Event()

    class Hanging(ScriptedStore):
        def post(self, gzipped_body: bytes) -> WriteResponse:
            release.wait(5)
            return super().post(gzipped_body)

    store = Hanging()
    h, dl = historian(tmp_path, store)
    t = time.perf_counter()
    for i in range(1000):
        h.write(samples(10, start=10 * i))
    assert time.perf_counter() - t < 0.5
    release.set()
    assert h.wait_sent(5) and len(store.lines) == 10_000
    h.close()
    dl.close()


def test_points_go_under_their_own_measurement(tmp_path: Path) -> None:
    store = ScriptedStore()
    h, dl = historian(tmp_path, store)
    h.write_points([Point("symtwin_kpi", {"value": 0.8}, T0, {"kpi": "surplus_share"})])
    assert h.wait_sent(5)
    assert store.lines == [b"symtwin_kpi,kpi=surplus_share value=0.8 1767225600000000000"]
    h.close()
    dl.close()


def test_a_transport_that_raises_does_not_stop_the_sender(tmp_path: Path) -> None:
    class Flaky(ScriptedStore):
        def post(self, gzipped_body: bytes) -> WriteResponse:
            if not self.calls:
                self.calls.append(time.monotonic())
                raise RuntimeError("socket exploded")
            return super().post(gzipped_body)

    store = Flaky()
    h, dl = historian(tmp_path, store)
    h.write(samples(10))
    assert h.wait_sent(5) and len(store.lines) == 10
    assert h.metrics().retries == 1
    h.close()
    dl.close()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    script=st.lists(st.sampled_from([0, 408, 429, 500, 503, 401]), max_size=4),
    sizes=st.lists(st.integers(1, 700), min_size=1, max_size=5),
)
def test_any_sequence_of_transient_failures_delivers_each_record_once_in_order(
    tmp_path_factory: pytest.TempPathFactory, script: list[int], sizes: list[int]
) -> None:
    store = ScriptedStore([WriteResponse(s) for s in script])
    quick = SenderParams(backoff_initial_s=0.001, backoff_max_s=0.004, idle_poll_s=0.01)
    h, dl = historian(tmp_path_factory.mktemp("prop"), store, quick)
    start = 0
    for n in sizes:
        h.write(samples(n, start=start))
        start += n
    assert h.wait_sent(10)
    ts = [int(line.rsplit(b" ", 1)[1]) for line in store.lines]
    assert ts == [round((T0 + i * 0.001) * 1_000_000) * 1000 for i in range(start)]
    m = h.metrics()
    assert (m.sent, m.retries, m.dropped, m.dead_lettered) == (start, len(script), 0, 0)
    h.close()
    dl.close()


def test_a_closed_dead_letter_store_does_not_stall_the_outbox(tmp_path: Path) -> None:
    dl = DeadLetterStore(tmp_path / "dead.sqlite")
    dl.close()
    ob = Outbox(OutboxParams(tmp_path / "o.sqlite"), dead_letters=dl)
    ob.write([Sample("t", T0, float("nan")), Sample("t", T0, 1.0)])
    assert ob.flush(2.0)
    assert ob.stats().depth == 1 and ob.stats().invalid == 1
    ob.close()


def test_metrics_report_the_cpu_of_the_historian_threads(tmp_path: Path) -> None:
    store = ScriptedStore()
    h, dl = historian(tmp_path, store)
    for i in range(200):
        h.write(samples(10, start=10 * i))
    assert h.wait_sent(5)
    m = h.metrics()
    assert 0.0 < m.cpu_s < 5.0 and set(m.as_dict()) >= {"depth", "sent", "dropped", "dead_lettered", "cpu_s"}
    h.close()
    dl.close()
