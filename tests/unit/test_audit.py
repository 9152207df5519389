from __future__ import annotations

import json

import pytest

from symtwin.governance.audit import GENESIS, AuditError, AuditLog, ShareAuditor, record_hash, verify


def _log(tmp_path, n=5):
    path = tmp_path / "audit.jsonl"
    clock = iter(float(k) for k in range(1000))
    log = AuditLog(path, clock=lambda: next(clock))
    hashes = [
        log.append(
            recipient=f"p{k % 2}",
            channel="mqtt",
            tags={"a.t": "raw", "b.t": "aggregated 15min"},
            start=100.0 * k,
            end=100.0 * k + 99,
        )
        for k in range(n)
    ]
    return path, hashes


def _lines(path):
    return path.read_text().splitlines()


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def test_chain_is_valid_and_hashes_are_reproducible(tmp_path):
    path, hashes = _log(tmp_path)
    result = verify(path)
    assert result.ok and result.records == 5 and result.head == hashes[-1]
    recs = [json.loads(line) for line in _lines(path)]
    assert recs[0]["prev_hash"] == GENESIS
    assert all(r["hash"] == record_hash(r["prev_hash"], r) for r in recs)
    assert recs[3]["tags"] == {"a.t": "raw", "b.t": "aggregated 15min"} and recs[3]["start"] == 300.0
    assert verify(path, expected_head=hashes[-1]).ok
    assert verify(tmp_path / "missing.jsonl").ok  # an empty log is a valid log


def test_edit_is_detected(tmp_path):
    path, _ = _log(tmp_path)
    lines = _lines(path)
    lines[2] = lines[2].replace('"p0"', '"p1"')
    _write(path, lines)
    r = verify(path)
    assert not r.ok and r.kind == "edit" and r.line == 3


def test_edit_with_recomputed_hash_is_detected(tmp_path):
    path, _ = _log(tmp_path)
    lines = _lines(path)
    rec = json.loads(lines[1])
    rec["tags"] = {"a.t": "none"}
    rec["hash"] = record_hash(rec["prev_hash"], rec)
    lines[1] = json.dumps(rec)
    _write(path, lines)
    r = verify(path)
    assert not r.ok and r.kind == "edit" and r.line == 2


def test_deletion_in_the_middle_is_detected(tmp_path):
    path, _ = _log(tmp_path)
    lines = _lines(path)
    del lines[2]
    _write(path, lines)
    r = verify(path)
    assert not r.ok and r.kind == "deletion" and r.line == 3 and "1 record" in r.reason


def test_deletion_of_the_tail_is_detected_by_the_head(tmp_path):
    path, hashes = _log(tmp_path)
    _write(path, _lines(path)[:-2])
    r = verify(path)
    assert not r.ok and r.kind == "truncation" and "2 record" in r.reason
    # even with the head file gone, a head published elsewhere catches it
    path.with_name(path.name + ".head").unlink()
    assert verify(path).ok
    assert verify(path, expected_head=hashes[-1]).kind == "truncation"


def test_reordering_is_detected(tmp_path):
    path, _ = _log(tmp_path)
    lines = _lines(path)
    lines[1], lines[3] = lines[3], lines[1]
    _write(path, lines)
    r = verify(path)
    assert not r.ok and r.kind == "reordering" and r.line == 2


def test_adjacent_swap_and_duplicate_are_reordering(tmp_path):
    path, _ = _log(tmp_path)
    lines = _lines(path)
    _write(path, [lines[0], lines[2], lines[1], lines[3], lines[4]])
    assert verify(path).kind == "reordering"
    _write(path, [*lines[:3], lines[2], *lines[3:]])
    r = verify(path)
    assert r.kind == "reordering" and r.line == 4


def test_garbage_line_is_malformed_and_blocks_appending(tmp_path):
    path, _ = _log(tmp_path, n=2)
    with path.open("a") as f:
        f.write("not json\n")
    assert verify(path).kind == "malformed"
    with pytest.raises(AuditError):
        AuditLog(path).append(recipient="x", channel="c", tags={}, start=0, end=1)


def test_appending_continues_an_existing_chain(tmp_path):
    path, _ = _log(tmp_path, n=2)
    AuditLog(path).append(
        recipient="p9",
        channel="report",
        tags={"a.t": "raw"},
        start=None,
        end=None,
        owner="a",
        note="settlement 2026-11",
    )
    r = verify(path)
    assert r.ok and r.records == 3


def test_share_auditor_coalesces_a_stream(tmp_path):
    path = tmp_path / "a.jsonl"
    aud = ShareAuditor(AuditLog(path), period_s=60.0)
    for k in range(120):  # two minutes at 1 Hz, same grants
        aud.shared("pharma", "live", {"a.t": "raw"}, [float(k)], now=float(k))
    aud.shared(
        "pharma", "live", {"a.t": "raw", "b.t": "aggregated 15min"}, [120.0], now=120.0
    )  # grants changed
    aud.flush()
    recs = [json.loads(line) for line in _lines(path)]
    assert [(r["start"], r["end"]) for r in recs] == [(0.0, 59.0), (60.0, 119.0), (120.0, 120.0)]
    assert verify(path).ok


def test_enforcement_outputs_are_recorded_as_shares(tmp_path):
    from adapters.base import Sample
    from symtwin.governance.mosquitto import Republisher
    from symtwin.governance.policy import (
        Party,
        Resolution,
        SharingRule,
        StreamFilter,
        TagGroup,
        TagInfo,
        build_policy,
    )

    policy = build_policy(
        [Party("powerco"), Party("pharma"), Party("utility")],
        [TagInfo("pc.flow", "powerco"), TagInfo("pc.load", "powerco"), TagInfo("ph.use", "pharma")],
        [TagGroup("x", ("pc.flow",)), TagGroup("ops", ("pc.load",))],
        [
            SharingRule("x", "pharma", Resolution.raw()),
            SharingRule("ops", "pharma", Resolution.aggregated(900)),
            SharingRule("x", "utility", Resolution.aggregated(3600)),
        ],
    )
    path = tmp_path / "audit.jsonl"
    auditor = ShareAuditor(AuditLog(path), period_s=3600.0)
    live = StreamFilter(policy, "pharma", recorder=auditor, channel="live")
    rep = Republisher(policy, "powerco", recorder=auditor)
    for k in range(1200):
        batch = [
            Sample("pc.flow", float(k), 1.0),
            Sample("pc.load", float(k), 2.0),
            Sample("ph.use", float(k), 3.0),
        ]
        live.push(batch)
        rep.push(batch)
    live.flush(3600.0)
    rep.flush(3600.0)
    auditor.flush()
    recs = [json.loads(line) for line in _lines(path)]
    got = {(r["recipient"], r["channel"]): r for r in recs}
    assert set(got) == {
        ("pharma", "live"),
        ("pharma", "mqtt"),
        ("utility", "mqtt"),
    }  # one record each, coalesced
    assert got[("pharma", "live")]["tags"] == {"pc.flow": "raw", "pc.load": "aggregated 15min"}
    assert (
        got[("pharma", "live")]["start"] == 0.0 and got[("pharma", "live")]["end"] == 1800.0
    )  # last 15-min aggregate
    assert got[("utility", "mqtt")]["tags"] == {"pc.flow": "aggregated 1h"}
    assert got[("utility", "mqtt")]["start"] == 3600.0  # the hourly aggregate, stamped at its end
    assert verify(path).ok
