"""Hash-chained audit log of every share: who received which tags, at which resolution, for which time.

One JSON object per line::

    {"seq": 0, "at": 1795700000.0, "recipient": "pharma", "channel": "mqtt", "tags": [...],
     "resolution": {...}, "start": ..., "end": ..., "prev_hash": "000…", "hash": "9f2…"}

``hash = sha256(prev_hash + canonical_json(record without "hash"))`` where canonical JSON has sorted
keys, no spaces and ASCII only; the first record's ``prev_hash`` is 64 zeros. ``seq`` counts from 0.
An edit breaks that line's hash; a deletion or a reordering breaks the chain and the sequence, and
:func:`verify` says which. Deleting the *last* lines leaves a valid shorter chain: the head file
``<log>.head`` (seq and hash of the last record, rewritten on each append) catches that, and for
protection against someone who can edit both, publish the head hash elsewhere and pass it as
``expected_head``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "GENESIS",
    "AuditError",
    "AuditLog",
    "ShareAuditor",
    "VerifyResult",
    "record_hash",
    "verify",
]

GENESIS = "0" * 64


class AuditError(RuntimeError):
    """The audit log cannot be appended to (it is already broken, or unreadable)."""


def _canonical(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def record_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """sha256 hex of ``prev_hash`` followed by the canonical JSON of ``record`` (its "hash" key excluded)."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256((prev_hash + _canonical(body)).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int  # records read
    line: int | None = None  # first broken line, 1-based
    kind: str | None = None  # "edit", "deletion", "reordering", "truncation", "malformed"
    reason: str = ""
    head: str = GENESIS  # hash of the last good record

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.records} records, head {self.head}"
        where = f"line {self.line}: " if self.line is not None else ""
        return f"BROKEN ({self.kind}) {where}{self.reason}"


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def verify(path: Path, expected_head: str | None = None) -> VerifyResult:
    """Check the chain in ``path``; the first problem found is reported with its line and kind."""
    prev_hash = GENESIS
    expected_seq = 0
    seen: dict[str, int] = {}  # hash -> line, to tell a reordering from a deletion
    records = 0
    lines = path.read_text(encoding="ascii").splitlines() if path.exists() else []
    parsed: list[dict[str, Any] | None] = []
    for text in lines:
        try:
            obj = json.loads(text)
            parsed.append(obj if isinstance(obj, dict) else None)
        except json.JSONDecodeError:
            parsed.append(None)
    all_seqs = {rec.get("seq") for rec in parsed if rec is not None}
    for i, rec in enumerate(parsed, start=1):
        if rec is None or not isinstance(rec.get("hash"), str) or not isinstance(rec.get("seq"), int):
            return VerifyResult(False, records, i, "malformed", "not a JSON audit record", prev_hash)
        seq = rec["seq"]
        if record_hash(str(rec.get("prev_hash")), rec) != rec["hash"]:
            return VerifyResult(
                False,
                records,
                i,
                "edit",
                f"record seq {seq} was changed (its hash does not match)",
                prev_hash,
            )
        if rec.get("prev_hash") != prev_hash or seq != expected_seq:
            if seq == expected_seq:
                return VerifyResult(
                    False,
                    records,
                    max(i - 1, 1),
                    "edit",
                    f"record seq {max(seq - 1, 0)} was changed and re-hashed (seq {seq} does not chain to it)",
                    prev_hash,
                )
            if seq < expected_seq or rec.get("prev_hash") in seen or expected_seq in all_seqs:
                return VerifyResult(
                    False,
                    records,
                    i,
                    "reordering",
                    f"expected seq {expected_seq} here, found seq {seq} (records are out of order)",
                    prev_hash,
                )
            return VerifyResult(
                False,
                records,
                i,
                "deletion",
                f"expected seq {expected_seq}, found seq {seq}: {seq - expected_seq} record(s) before this line are missing",
                prev_hash,
            )
        seen[rec["hash"]] = i
        prev_hash = rec["hash"]
        expected_seq = seq + 1
        records += 1

    head_file = _head_path(path)
    if head_file.exists():
        try:
            head = json.loads(head_file.read_text())
            head_seq, head_hash = int(head["seq"]), str(head["hash"])
        except (ValueError, KeyError, TypeError):
            return VerifyResult(
                False, records, None, "malformed", f"{head_file.name} is unreadable", prev_hash
            )
        if head_seq >= expected_seq:
            return VerifyResult(
                False,
                records,
                None,
                "truncation",
                f"the head file records seq {head_seq} but the log ends at seq {expected_seq - 1}: "
                f"{head_seq - expected_seq + 1} record(s) at the end were deleted",
                prev_hash,
            )
        if head_seq == expected_seq - 1 and head_hash != prev_hash:
            return VerifyResult(
                False, records, None, "edit", "the last record differs from the head file", prev_hash
            )
    if expected_head is not None and expected_head != prev_hash:
        return VerifyResult(
            False,
            records,
            None,
            "truncation",
            f"the log's head {prev_hash} is not the expected {expected_head}",
            prev_hash,
        )
    return VerifyResult(True, records, head=prev_hash)


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


class AuditLog:
    """Append-only writer of the hash-chained log; safe across processes (an exclusive lock per append)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)

    def _tail(self) -> tuple[int, str]:
        """(next seq, last hash) from the file's last line."""
        with self.path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return 0, GENESIS
            f.seek(max(0, size - 65536))
            last = f.read().splitlines()[-1]
        try:
            rec = json.loads(last)
            return int(rec["seq"]) + 1, str(rec["hash"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(
                f"{self.path}: last line is not an audit record; run `symtwin audit verify`"
            ) from exc

    def append(
        self,
        *,
        recipient: str,
        channel: str,
        tags: Mapping[str, str],
        start: float | None,
        end: float | None,
        owner: str | None = None,
        note: str = "",
    ) -> str:
        """Record one share; ``tags`` maps tag id → resolution label (``raw``, ``aggregated 15min``). Returns its hash."""
        with self.path.open("a+", encoding="ascii") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                seq, prev_hash = self._tail()
                record: dict[str, Any] = {
                    "seq": seq,
                    "at": self._clock(),
                    "recipient": recipient,
                    "channel": channel,
                    "tags": {k: tags[k] for k in sorted(tags)},
                    "start": _finite_or_none(start),
                    "end": _finite_or_none(end),
                    "prev_hash": prev_hash,
                }
                if owner is not None:
                    record["owner"] = owner
                if note:
                    record["note"] = note
                record["hash"] = record_hash(prev_hash, record)
                f.write(_canonical(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
                head = _head_path(self.path)
                tmp = head.with_name(head.name + ".tmp")
                tmp.write_text(json.dumps({"seq": seq, "hash": record["hash"]}) + "\n")
                os.replace(tmp, head)
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return str(record["hash"])


class ShareAuditor:
    """Coalesces a stream of shares into audit records: one per recipient and channel per period.

    The live view may push to a recipient every second; one record per push would drown the log.
    A record is written when the set of tags/resolutions changes, or when ``period_s`` has passed,
    covering the time range of all samples shared since the last record.
    """

    def __init__(self, log: AuditLog, period_s: float = 3600.0) -> None:
        self._log = log
        self._period_s = period_s
        # (recipient, channel) -> [tags, first data time, last data time, opened at]
        self._open: dict[tuple[str, str], tuple[dict[str, str], float, float, float]] = {}

    def shared(
        self, recipient: str, channel: str, tags: Mapping[str, str], times: Iterable[float], now: float
    ) -> None:
        ts = [t for t in times if math.isfinite(t)]
        if not ts:
            return
        key = (recipient, channel)
        lo, hi = min(ts), max(ts)
        current = self._open.get(key)
        if current is not None and (current[0] != dict(tags) or now - current[3] >= self._period_s):
            self._write(key)
            current = None
        if current is None:
            self._open[key] = (dict(tags), lo, hi, now)
        else:
            self._open[key] = (current[0], min(current[1], lo), max(current[2], hi), current[3])

    def flush(self) -> None:
        for key in list(self._open):
            self._write(key)

    def _write(self, key: tuple[str, str]) -> None:
        tags, lo, hi, _ = self._open.pop(key)
        self._log.append(recipient=key[0], channel=key[1], tags=tags, start=lo, end=hi)
