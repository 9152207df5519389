"""What one party may see of a snapshot: the single place the live view applies the sharing policy.

Every API response and every pushed frame for a user is built by :meth:`PartyView.frame` (or
:meth:`PartyView.meta`) for that user's party, so the page and the API cannot disagree about what is
shared. Rules, on top of the tag policy (:mod:`symtwin.governance.policy`):

- tags granted ``raw`` carry value, twin estimate ± std, status, override and timestamp; tags granted
  ``aggregated`` carry only the last *closed* interval's mean/min/max (computed here by a
  :class:`StreamFilter` per party, seeded from the history store); all other tags are absent.
- an exchange's live flow is shown to its supplier and its receiver; other parties see the link
  (the park layout is in the shared site config) without a value.
- unmeasured unit states go only to the unit's owner; a setpoint's plan only to parties that see the
  setpoint raw; an alarm naming tags only to parties that see all of them raw (alarms naming no tag,
  such as a solver fallback, concern the whole park and go to everyone).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.base import Quality, Sample
from symtwin.governance.policy import (
    AGG_STATS,
    ResolutionKind,
    SharingPolicy,
    StreamFilter,
    split_output_name,
)
from symtwin.runtime.state import Alarm, Snapshot, TagStatus
from symtwin.units import UNITS

__all__ = ["ExchangeInfo", "HistoryReader", "PartyView", "SiteInfo", "UnitInfo", "to_eng"]


class HistoryReader(Protocol):
    """What the live view reads from the history store (:class:`adapters.store.history.LocalHistory`)."""

    def query(self, tag: str, start: float, end: float, max_points: int = 1000) -> list[Sample]: ...


@dataclass(frozen=True, slots=True)
class UnitInfo:
    id: str
    owner: str
    model: str


@dataclass(frozen=True, slots=True)
class ExchangeInfo:
    id: str
    supplier: str
    receiver: str
    source_unit: str
    target_unit: str
    medium: str


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """The static park layout the page draws (from the site config; shared by all parties)."""

    name: str
    parties: tuple[tuple[str, str], ...]  # (id, display name)
    units: tuple[UnitInfo, ...]
    exchanges: tuple[ExchangeInfo, ...]

    @classmethod
    def from_site(cls, site: Any) -> SiteInfo:
        """From a :class:`symtwin.config.LoadedSite`."""
        from twin.catalog import UNIT_MODELS

        cfg = site.config
        units = tuple(UnitInfo(u.id, u.owner, u.model) for u in cfg.units)
        exchanges = []
        for ex in cfg.exchanges:
            conn = site.connection_by_id[ex.connection]
            su, sp = conn.source.split(".")
            tu, _ = conn.target.split(".")
            port = UNIT_MODELS[site.unit_by_id[su].model].port(sp)
            medium = str(port.medium) if port is not None else "hot_water"
            supplier, receiver = site.exchange_parties(ex)
            exchanges.append(ExchangeInfo(ex.id, supplier, receiver, su, tu, medium))
        return cls(site.name, tuple((p.id, p.name or p.id) for p in cfg.parties), units, tuple(exchanges))


def _conv(eng_unit: str) -> tuple[float, float]:
    d = UNITS.get(eng_unit)
    return (1.0, 0.0) if d is None else (d.factor, d.offset)


def to_eng(value_si: float | None, eng_unit: str) -> float | None:
    """SI → engineering unit for display; None and non-finite values become None (JSON null)."""
    if value_si is None or not math.isfinite(value_si):
        return None
    f, o = _conv(eng_unit)
    return (value_si - o) / f


def _num(x: float | None, digits: int = 6) -> float | None:
    """A display value with fewer bytes per frame (more than display precision); non-finite → None."""
    if x is None or not math.isfinite(x):
        return None
    if abs(x) >= 0.1:
        return round(x, 4)  # the common case, and 10x cheaper than formatting
    return float(f"{x:.{digits}g}")


class PartyView:
    """One party's filtered view of the live snapshots; feed every snapshot with :meth:`update`."""

    def __init__(self, party: str, policy: SharingPolicy, site: SiteInfo) -> None:
        self.party = party
        self.policy = policy
        self.site = site
        self.grants = policy.grants(party)
        self.raw = frozenset(t for t, r in self.grants.items() if r.kind is ResolutionKind.RAW)
        self.agg_interval = {
            t: float(r.interval_s)
            for t, r in self.grants.items()
            if r.kind is ResolutionKind.AGGREGATED and r.interval_s
        }
        self._filter = StreamFilter.from_grants((), self.agg_interval)
        # other parties' tags this party receives, with their resolution label (for the share audit)
        self.foreign = {t: r.label for t, r in self.grants.items() if policy.owner_of(t) != party}
        self._last_fed: dict[str, float] = {}
        self.aggregates: dict[
            str, tuple[float, float, float, float]
        ] = {}  # tag -> (end, mean, min, max) [SI]
        self.own_units = frozenset(u.id for u in site.units if u.owner == party)
        self._meta: dict[str, Any] | None = None
        self._meta_key: tuple[str, ...] = ()
        self.meta_version = 0
        # (snapshot, frame, serialised event): replaced as one tuple so that a reader on another thread
        # never pairs a frame with the wrong snapshot
        self._cache: tuple[Snapshot | None, dict[str, Any], bytes] = (None, {}, b"")
        self._alarm_ok: dict[tuple[str, str, tuple[str, ...]], bool] = {}

    # ----------------------------------------------------------------- aggregates

    def seed(self, history: HistoryReader, now: float) -> None:
        """Fill aggregates from history: the last closed interval and the open one so far (blocking I/O)."""
        for tag, step in self.agg_interval.items():
            start = (math.floor(now / step) - 1) * step
            samples = history.query(tag, start, now, max_points=10_000_000)
            self._absorb(self._filter.push(samples))
            if samples:
                self._last_fed[tag] = samples[-1].timestamp
        self._absorb(self._filter.flush(now))

    def _absorb(self, out: Sequence[Sample]) -> None:
        parts: dict[tuple[str, float], dict[str, float]] = {}
        for s in out:
            tag, stat, _ = split_output_name(s.tag)
            if stat is not None:
                parts.setdefault((tag, s.timestamp), {})[stat] = s.value
        for (tag, end), stats in parts.items():
            if all(k in stats for k in AGG_STATS):
                prev = self.aggregates.get(tag)
                if prev is None or end >= prev[0]:
                    self.aggregates[tag] = (end, stats["mean"], stats["min"], stats["max"])

    def update(self, snap: Snapshot) -> None:
        """Feed the aggregated tags' new values (each sample once) and release closed intervals."""
        if self.agg_interval:
            new = []
            for tag in self.agg_interval:
                tv = snap.tags.get(tag)
                if tv is None or tv.value is None or tv.timestamp is None or tv.status is not TagStatus.OK:
                    continue
                if tv.timestamp > self._last_fed.get(tag, -math.inf):
                    self._last_fed[tag] = tv.timestamp
                    new.append(Sample(tag, tv.timestamp, tv.value, Quality.GOOD))
            self._absorb(self._filter.push(new))
            self._absorb(self._filter.flush(snap.time))

    # ----------------------------------------------------------------- meta

    def visible(self, tag: str) -> bool:
        return tag in self.raw or tag in self.agg_interval

    def meta(self, snap: Snapshot) -> dict[str, Any]:
        """Static description of what this party sees: units, exchanges, and its visible tags."""
        key = tuple(t for t in snap.tags if self.visible(t))
        if self._meta is None or key != self._meta_key:
            tags: dict[str, Any] = {}
            for t in key:
                tv = snap.tags[t]
                interval = self.agg_interval.get(t)
                tags[t] = {
                    "owner": tv.owner,
                    "unit": tv.unit,
                    "quantity": tv.quantity,
                    "direction": tv.direction,
                    "eng_unit": tv.eng_unit,
                    "resolution": "raw" if interval is None else "aggregated",
                    "interval_s": interval,
                    "own": tv.owner == self.party,
                }
            self._meta = {
                "site": self.site.name,
                "party": self.party,
                "parties": [{"id": p, "name": n} for p, n in self.site.parties],
                "units": [{"id": u.id, "owner": u.owner, "model": u.model} for u in self.site.units],
                "exchanges": [
                    {
                        "id": e.id,
                        "supplier": e.supplier,
                        "receiver": e.receiver,
                        "source_unit": e.source_unit,
                        "target_unit": e.target_unit,
                        "medium": e.medium,
                        "shared": self.party in (e.supplier, e.receiver),
                    }
                    for e in self.site.exchanges
                ],
                "tags": tags,
            }
            self._meta_key = key
            self.meta_version += 1
        return self._meta

    # ----------------------------------------------------------------- frames

    def frame(self, snap: Snapshot) -> dict[str, Any]:
        """The filtered snapshot for this party (cached per snapshot). Values in engineering units."""
        cached = self._cache
        if snap is cached[0]:
            return cached[1]
        self.meta(snap)
        tags: dict[str, list[Any]] = {}
        agg: dict[str, list[Any]] = {}
        raw = self.raw
        for tid, tv in snap.tags.items():
            if tid in raw:
                f, o = _conv(tv.eng_unit)
                est = None if tv.estimate is None else (tv.estimate - o) / f
                std = None if tv.estimate_std is None else tv.estimate_std / abs(f)
                ovr = None if tv.override is None else (tv.override - o) / f
                value = (
                    tv.value_eng
                    if tv.value_eng is not None
                    else (None if tv.value is None else (tv.value - o) / f)
                )
                tags[tid] = [_num(value), _num(est), _num(std, 3), str(tv.status), _num(ovr), tv.timestamp]
            elif tid in self.agg_interval:
                a = self.aggregates.get(tid)
                if a is not None:
                    f, o = _conv(tv.eng_unit)
                    agg[tid] = [a[0], _num((a[1] - o) / f), _num((a[2] - o) / f), _num((a[3] - o) / f)]
        flows = []
        for fl in snap.flows:
            shared = self.party in (fl.supplier, fl.receiver)
            flows.append(
                [
                    fl.exchange,
                    _num(fl.heat_w / 1e6, 4) if shared else None,
                    _num(fl.mass_kg_s * 3.6, 4) if shared and fl.mass_kg_s is not None else None,
                ]
            )
        states = {
            u: {k: _num(v) for k, v in s.items()} for u, s in snap.unit_states.items() if u in self.own_units
        }
        plans: dict[str, Any] = {}
        for tid, pv in snap.plans.items():
            ptv = snap.tags.get(tid)
            if tid not in raw or ptv is None:
                continue
            f, o = _conv(ptv.eng_unit)
            plans[tid] = {
                "times": list(pv.times),
                "planned": [_num((v - o) / f) for v in pv.planned],
                "actual_times": list(pv.actual_times),
                "actual": [_num((v - o) / f) for v in pv.actual],
            }
        alarms = [
            {
                "key": a.key,
                "severity": a.severity,
                "message": a.message,
                "since": a.since,
                "tags": list(a.tags),
            }
            for a in snap.alarms
            if self._alarm_visible(a, snap)
        ]
        frame = {
            "t": snap.time,
            "wall": snap.wall_time,
            "cycle": snap.cycle,
            "mode": snap.mode,
            "solve": {"status": snap.solve_status, "time_s": snap.solve_time_s, "at": snap.solve_at},
            "fallback": snap.fallback,
            "dead_letters": snap.dead_letters,
            "meta_version": self.meta_version,
            "tags": tags,
            "agg": agg,
            "flows": flows,
            "states": states,
            "plans": plans,
            "alarms": alarms,
        }
        self._cache = (snap, frame, b"")
        return frame

    def _alarm_visible(self, alarm: Alarm, snap: Snapshot) -> bool:
        """Shown only if every tag it names (in ``tags``, its key or its message) is raw for this party."""
        key = (alarm.key, alarm.message, alarm.tags)
        ok = self._alarm_ok.get(key)
        if ok is None:
            ok = all(t in self.raw for t in alarm.tags) and not any(
                t in alarm.key or t in alarm.message for t in snap.tags if t not in self.raw
            )
            if len(self._alarm_ok) > 10_000:
                self._alarm_ok.clear()
            self._alarm_ok[key] = ok
        return ok

    def frame_event(self, snap: Snapshot) -> bytes:
        """The frame as one server-sent event (serialised once per snapshot, shared by all clients)."""
        frame = self.frame(snap)
        cached = self._cache
        if cached[0] is snap and cached[2]:
            return cached[2]
        body = json.dumps(frame, separators=(",", ":"), allow_nan=False)
        # "sent" is spliced in so the page can measure push delay without re-serialising per client
        data = f'event: frame\ndata: {{"sent":{time.time():.6f},{body[1:]}\n\n'.encode()
        self._cache = (snap, frame, data)
        return data

    def unit(self, snap: Snapshot, unit_id: str) -> dict[str, Any] | None:
        """A unit's panel: its visible tags (as in the frame), states (owner only) and plans."""
        info = next((u for u in self.site.units if u.id == unit_id), None)
        if info is None:
            return None
        frame = self.frame(snap)
        meta = self.meta(snap)
        tag_ids = [t for t, m in meta["tags"].items() if m["unit"] == unit_id]
        return {
            "id": info.id,
            "owner": info.owner,
            "model": info.model,
            "tags": {t: meta["tags"][t] for t in tag_ids},
            "values": {t: frame["tags"][t] for t in tag_ids if t in frame["tags"]},
            "agg": {t: frame["agg"][t] for t in tag_ids if t in frame["agg"]},
            "states": frame["states"].get(unit_id, {}),
            "plans": {t: p for t, p in frame["plans"].items() if t in tag_ids},
        }


def trend(
    party_view: PartyView, history: HistoryReader, tag: str, eng_unit: str, now: float, hours: float
) -> dict[str, Any] | None:
    """A tag's history as this party may see it (blocking: run it in a thread). None if not visible."""
    start = now - hours * 3600.0
    f, o = _conv(eng_unit)
    if tag in party_view.raw:
        pts = history.query(tag, start, now, max_points=600)
        return {
            "tag": tag,
            "resolution": "raw",
            "points": [[s.timestamp, _num((s.value - o) / f)] for s in pts if s.quality is Quality.GOOD],
        }
    if tag in party_view.agg_interval:
        samples = history.query(tag, start, now, max_points=10_000_000)
        out = party_view.policy.filter_for(party_view.party, samples, until=now)
        rows: dict[float, dict[str, float]] = {}
        for s in out:
            t, stat, _ = split_output_name(s.tag)
            if t == tag and stat is not None:
                rows.setdefault(s.timestamp, {})[stat] = s.value
        return {
            "tag": tag,
            "resolution": "aggregated",
            "interval_s": party_view.agg_interval[tag],
            "points": [
                [end, *(_num((r[k] - o) / f) for k in AGG_STATS)]
                for end, r in sorted(rows.items())
                if all(k in r for k in AGG_STATS)
            ],
        }
    return None


def snapshot_tags_of(snap: Snapshot) -> Mapping[str, str]:
    """tag id → eng unit (helper for the trend endpoint)."""
    return {t: tv.eng_unit for t, tv in snap.tags.items()}
