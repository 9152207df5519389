"""Sharing policy: who may see which tag, at which resolution, and the one filter every output uses.

A park's parties own tags. For each *group* of tags and each *recipient* party the site config says
``raw``, ``aggregated`` over an interval (mean, min and max per interval) or ``none``. The owner of a
tag always sees it raw; a tag that no rule grants to a recipient is withheld from it (default deny).

Every output (MQTT republication, per-party InfluxDB buckets, the live view and its API, reports)
goes through :meth:`SharingPolicy.filter_for` (batches of history) or :class:`StreamFilter`
(live streams, stateful so that an aggregate is released only once its interval has closed).
Aggregation happens here, inside the owner's service, before anything leaves it.

Aggregated outputs are named ``<tag>:<stat>_<interval>``, for example ``steam.flow:mean_15min``.
Intervals are aligned to the Unix epoch (a 15 min bin starts at :00, :15, :30, :45 UTC) and an
aggregate carries the *end* of its interval as timestamp, so it is never dated before the data it
summarises.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from adapters.base import Quality, Sample

__all__ = [
    "AGG_STATS",
    "Party",
    "PolicyError",
    "PolicyIssue",
    "Resolution",
    "ResolutionKind",
    "ShareRecorder",
    "SharingPolicy",
    "SharingRule",
    "StreamFilter",
    "TagGroup",
    "TagInfo",
    "aggregate_series",
    "aggregated_name",
    "build_policy",
    "format_interval",
    "parse_interval",
    "parse_resolution",
    "split_output_name",
    "validate_policy",
]

AGG_STATS: tuple[str, ...] = ("mean", "min", "max")


class ResolutionKind(enum.Enum):
    RAW = "raw"
    AGGREGATED = "aggregated"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Resolution:
    """How a recipient sees a tag. ``interval_s`` [s] is set only for ``AGGREGATED``."""

    kind: ResolutionKind
    interval_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind is ResolutionKind.AGGREGATED:
            if self.interval_s is None or not math.isfinite(self.interval_s) or self.interval_s <= 0:
                raise ValueError(f"an aggregated resolution needs an interval > 0 s, got {self.interval_s!r}")
        elif self.interval_s is not None:
            raise ValueError(f"{self.kind.value} takes no interval")

    @classmethod
    def raw(cls) -> Resolution:
        return cls(ResolutionKind.RAW)

    @classmethod
    def none(cls) -> Resolution:
        return cls(ResolutionKind.NONE)

    @classmethod
    def aggregated(cls, interval_s: float) -> Resolution:
        return cls(ResolutionKind.AGGREGATED, float(interval_s))

    @property
    def label(self) -> str:
        """``raw``, ``none`` or ``aggregated 15min`` (for logs, audit records and reports)."""
        if self.kind is ResolutionKind.AGGREGATED:
            assert self.interval_s is not None
            return f"aggregated {format_interval(self.interval_s)}"
        return self.kind.value

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True, slots=True)
class Party:
    id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class TagInfo:
    """What the policy needs to know about a tag: its id and the party that owns it."""

    id: str
    owner: str
    quantity: str = ""
    unit: str = ""


@dataclass(frozen=True, slots=True)
class TagGroup:
    id: str
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SharingRule:
    """``group``'s tags are shown to ``recipient`` at ``resolution``."""

    group: str
    recipient: str
    resolution: Resolution


class PolicyIssue(NamedTuple):
    """A problem found by :func:`validate_policy`; ``path`` is a config location like pydantic's ``loc``."""

    path: tuple[str | int, ...]
    message: str


class PolicyError(ValueError):
    """The sharing policy is invalid; ``issues`` says where and why."""

    def __init__(self, issues: Sequence[PolicyIssue]) -> None:
        self.issues = tuple(issues)
        lines = [f"{'.'.join(str(p) for p in i.path)}: {i.message}" for i in self.issues]
        super().__init__("invalid sharing policy:\n  " + "\n  ".join(lines))


# --------------------------------------------------------------------------- parsing helpers

_UNIT_S = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_INTERVAL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)?\s*$")


def parse_interval(text: str | float | int) -> float:
    """``"15 min"``, ``"1h"``, ``"30 s"``, ``"1 day"`` or a number of seconds → seconds [s]."""
    if isinstance(text, bool):
        raise ValueError(f"not an interval: {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        m = _INTERVAL_RE.match(text)
        if m is None or (m.group(2) is not None and m.group(2).lower() not in _UNIT_S):
            raise ValueError(f"not an interval: {text!r} (write e.g. '15 min', '1 h', '30 s')")
        seconds = float(m.group(1)) * _UNIT_S[(m.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"an interval must be > 0 s, got {text!r}")
    return seconds


def format_interval(interval_s: float) -> str:
    """Seconds → the compact label used in output names: 900 → ``15min``, 3600 → ``1h``, 45 → ``45s``."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if interval_s >= size and interval_s % size == 0:
            return f"{int(interval_s // size)}{unit}"
    if interval_s == int(interval_s):
        return f"{int(interval_s)}s"
    return f"{interval_s:g}s"


def parse_resolution(value: object) -> Resolution:
    """Config form → :class:`Resolution`: ``"raw"``, ``"none"`` or ``{"aggregated": "15 min"}``."""
    if isinstance(value, Resolution):
        return value
    if value == "raw":
        return Resolution.raw()
    if value == "none":
        return Resolution.none()
    if isinstance(value, Mapping) and set(value) == {"aggregated"}:
        return Resolution.aggregated(parse_interval(value["aggregated"]))
    raise ValueError(f"resolution must be 'raw', 'none' or {{aggregated: '<interval>'}}, got {value!r}")


def aggregated_name(tag: str, stat: str, interval_s: float) -> str:
    """Output name of an aggregate: ``aggregated_name("a.t", "mean", 900) == "a.t:mean_15min"``."""
    return f"{tag}:{stat}_{format_interval(interval_s)}"


def split_output_name(name: str) -> tuple[str, str | None, str | None]:
    """Inverse of :func:`aggregated_name`: → (tag, stat, interval label); raw names give (tag, None, None)."""
    tag, sep, rest = name.rpartition(":")
    if sep and "_" in rest:
        stat, _, label = rest.partition("_")
        if stat in AGG_STATS:
            return tag, stat, label
    return name, None, None


# --------------------------------------------------------------------------- validation


def validate_policy(
    parties: Sequence[Party],
    tags: Sequence[TagInfo],
    groups: Sequence[TagGroup],
    rules: Sequence[SharingRule],
) -> list[PolicyIssue]:
    """Every problem in a sharing policy, each with the config path it belongs to.

    Paths follow the site config: ``("sharing", "groups", i, "tags", j)``,
    ``("sharing", "rules", k, "recipient")`` and so on, so the caller can attach file and line.
    Contradictions: the same tag reaching the same recipient at two different resolutions (through
    two groups or two rules), and a rule that gives an owner less than raw on its own tags.
    """
    issues: list[PolicyIssue] = []
    party_ids = {p.id for p in parties}
    tag_owner: dict[str, str] = {}
    for i, tag in enumerate(tags):
        if tag.owner not in party_ids:
            issues.append(PolicyIssue(("tags", i, "owner"), f"tag {tag.id!r}: unknown party {tag.owner!r}"))
        tag_owner[tag.id] = tag.owner

    group_index: dict[str, int] = {}
    for gi, group in enumerate(groups):
        if group.id in group_index:
            issues.append(
                PolicyIssue(
                    ("sharing", "groups", gi, "id"),
                    f"group id {group.id!r} already used by sharing.groups[{group_index[group.id]}]",
                )
            )
            continue
        group_index[group.id] = gi
        if not group.tags:
            issues.append(PolicyIssue(("sharing", "groups", gi, "tags"), f"group {group.id!r} has no tags"))
        for ti, tag_id in enumerate(group.tags):
            if tag_id not in tag_owner:
                issues.append(
                    PolicyIssue(
                        ("sharing", "groups", gi, "tags", ti), f"unknown tag {tag_id!r} in group {group.id!r}"
                    )
                )

    # (tag, recipient) -> (resolution, rule index) of the first rule that set it
    granted: dict[tuple[str, str], tuple[Resolution, int]] = {}
    for ri, rule in enumerate(rules):
        ok = True
        if rule.group not in group_index:
            issues.append(PolicyIssue(("sharing", "rules", ri, "group"), f"unknown group {rule.group!r}"))
            ok = False
        if rule.recipient not in party_ids:
            issues.append(
                PolicyIssue(("sharing", "rules", ri, "recipient"), f"unknown party {rule.recipient!r}")
            )
            ok = False
        if not ok:
            continue
        group = groups[group_index[rule.group]]
        for tag_id in group.tags:
            owner = tag_owner.get(tag_id)
            if owner is None:
                continue  # reported above
            if owner == rule.recipient:
                if rule.resolution.kind is not ResolutionKind.RAW:
                    issues.append(
                        PolicyIssue(
                            ("sharing", "rules", ri, "resolution"),
                            f"{rule.recipient!r} owns tag {tag_id!r} and always sees it raw; "
                            f"this rule says {rule.resolution.label} (drop the owner from the rule)",
                        )
                    )
                continue
            key = (tag_id, rule.recipient)
            previous = granted.get(key)
            if previous is None:
                granted[key] = (rule.resolution, ri)
            elif previous[0] != rule.resolution:
                issues.append(
                    PolicyIssue(
                        ("sharing", "rules", ri, "resolution"),
                        f"tag {tag_id!r} for {rule.recipient!r}: {rule.resolution.label} here but "
                        f"{previous[0].label} in sharing.rules[{previous[1]}] (group "
                        f"{rules[previous[1]].group!r}); a tag may reach a party at one resolution only",
                    )
                )
    return issues


def build_policy(
    parties: Sequence[Party],
    tags: Sequence[TagInfo],
    groups: Sequence[TagGroup],
    rules: Sequence[SharingRule],
) -> SharingPolicy:
    """Validate and build a :class:`SharingPolicy`; raises :class:`PolicyError` listing every issue."""
    issues = validate_policy(parties, tags, groups, rules)
    if issues:
        raise PolicyError(issues)
    return SharingPolicy(tuple(parties), tuple(tags), tuple(groups), tuple(rules))


# --------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class _View:
    """One recipient's precomputed view: tag → resolution for every tag it may see."""

    raw: frozenset[str]
    aggregated: Mapping[str, float]  # tag -> interval [s]


@dataclass(frozen=True)
class SharingPolicy:
    """A validated policy; build it with :func:`build_policy`."""

    parties: tuple[Party, ...]
    tags: tuple[TagInfo, ...]
    groups: tuple[TagGroup, ...]
    rules: tuple[SharingRule, ...]
    _views: dict[str, _View] = field(init=False, repr=False, compare=False)
    _owner: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = {t.id: t.owner for t in self.tags}
        groups = {g.id: g for g in self.groups}
        raw: dict[str, set[str]] = {p.id: {t.id for t in self.tags if t.owner == p.id} for p in self.parties}
        agg: dict[str, dict[str, float]] = {p.id: {} for p in self.parties}
        for rule in self.rules:
            for tag_id in groups[rule.group].tags:
                if owner[tag_id] == rule.recipient:
                    continue
                if rule.resolution.kind is ResolutionKind.RAW:
                    raw[rule.recipient].add(tag_id)
                elif rule.resolution.kind is ResolutionKind.AGGREGATED:
                    assert rule.resolution.interval_s is not None
                    agg[rule.recipient][tag_id] = rule.resolution.interval_s
        views = {p: _View(frozenset(raw[p]), dict(agg[p])) for p in raw}
        object.__setattr__(self, "_views", views)
        object.__setattr__(self, "_owner", owner)

    @property
    def party_ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.parties)

    def owner_of(self, tag: str) -> str:
        try:
            return self._owner[tag]
        except KeyError:
            raise KeyError(f"unknown tag {tag!r}") from None

    def _view(self, recipient: str) -> _View:
        try:
            return self._views[recipient]
        except KeyError:
            raise KeyError(f"unknown party {recipient!r}") from None

    def resolution(self, tag: str, recipient: str) -> Resolution:
        """How ``recipient`` may see ``tag``; unknown tags and tags no rule grants are ``none``."""
        view = self._view(recipient)
        if tag in view.raw:
            return Resolution.raw()
        interval = view.aggregated.get(tag)
        if interval is not None:
            return Resolution.aggregated(interval)
        return Resolution.none()

    def grants(self, recipient: str) -> dict[str, Resolution]:
        """Every tag ``recipient`` may see (its own included) with its resolution."""
        view = self._view(recipient)
        out = {t: Resolution.raw() for t in sorted(view.raw)}
        out.update({t: Resolution.aggregated(i) for t, i in sorted(view.aggregated.items())})
        return out

    def shared_by(self, owner: str) -> dict[str, dict[str, Resolution]]:
        """What ``owner`` shares with each other party: recipient → tag → resolution (none omitted)."""
        out: dict[str, dict[str, Resolution]] = {}
        for recipient in self.party_ids:
            if recipient == owner:
                continue
            shared = {t: r for t, r in self.grants(recipient).items() if self._owner[t] == owner}
            if shared:
                out[recipient] = shared
        return out

    def visible_names(self, recipient: str) -> frozenset[str]:
        """Every output name ``recipient`` may receive (raw tag ids and ``<tag>:<stat>_<interval>``)."""
        view = self._view(recipient)
        names = set(view.raw)
        for tag, interval in view.aggregated.items():
            names.update(aggregated_name(tag, s, interval) for s in AGG_STATS)
        return frozenset(names)

    # ------------------------------------------------------------------- enforcement (batch)

    def filter_for(
        self, recipient: str, samples: Iterable[Sample], *, until: float | None = None
    ) -> list[Sample]:
        """What ``recipient`` may receive of ``samples``: the one enforcement point for batches.

        Raw grants pass unchanged; withheld tags are dropped; aggregated grants become mean, min and
        max per epoch-aligned interval over the usable (good, finite) samples, stamped with the
        interval's end. With ``until`` [s], intervals ending after it are held back (not complete yet).
        Output order: raw samples in input order, then aggregates by tag and time.
        """
        view = self._view(recipient)
        out: list[Sample] = []
        pending: dict[str, tuple[list[float], list[float]]] = {}
        for s in samples:
            if s.tag in view.raw:
                out.append(s)
            elif s.tag in view.aggregated and s.quality is Quality.GOOD:
                ts, vs = pending.setdefault(s.tag, ([], []))
                ts.append(s.timestamp)
                vs.append(s.value)
        for tag in sorted(pending):
            ts, vs = pending[tag]
            interval = view.aggregated[tag]
            ends, stats = aggregate_series(np.asarray(ts, dtype=float), np.asarray(vs, dtype=float), interval)
            if until is not None:
                keep = ends <= until
                ends, stats = ends[keep], {k: v[keep] for k, v in stats.items()}
            names = {s: aggregated_name(tag, s, interval) for s in AGG_STATS}
            for k in range(ends.size):
                t_end = float(ends[k])
                out.extend(Sample(names[st], t_end, float(stats[st][k])) for st in AGG_STATS)
        return out


def aggregate_series(
    timestamps_s: np.ndarray, values: np.ndarray, interval_s: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Mean, min and max of ``values`` per epoch-aligned interval (vectorised).

    timestamps_s: sample times [s since epoch]; values: sample values (any unit); non-finite
    values are ignored. Returns (interval end times [s], {"mean"|"min"|"max": array}) for every
    interval holding at least one finite value, in time order.
    """
    finite = np.isfinite(values) & np.isfinite(timestamps_s)
    t, v = timestamps_s[finite], values[finite]
    if t.size == 0:
        empty = np.empty(0)
        return empty, {s: empty for s in AGG_STATS}
    bins = np.floor(t / interval_s).astype(np.int64)
    order = np.argsort(bins, kind="stable")
    bins, v = bins[order], v[order]
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    counts = np.diff(np.r_[starts, bins.size])
    stats = {
        "mean": np.add.reduceat(v, starts) / counts,
        "min": np.minimum.reduceat(v, starts),
        "max": np.maximum.reduceat(v, starts),
    }
    return (bins[starts] + 1).astype(float) * interval_s, stats


# --------------------------------------------------------------------------- enforcement (stream)


class ShareRecorder(Protocol):
    """Where shares are recorded (:class:`symtwin.governance.audit.ShareAuditor`)."""

    def shared(
        self, recipient: str, channel: str, tags: Mapping[str, str], times: Iterable[float], now: float
    ) -> None: ...


class StreamFilter:
    """Live enforcement for one recipient: raw grants pass at once, aggregates when their interval closes.

    Feed every sample with :meth:`push`; call :meth:`flush` with the clock's time so that an
    interval with no later sample is still released. Running sums only, so memory is one bin per
    aggregated tag whatever the rate. With a ``recorder``, every output carrying another party's
    data is recorded as a share on ``channel`` (the recorder coalesces them).
    """

    def __init__(
        self,
        policy: SharingPolicy,
        recipient: str,
        *,
        recorder: ShareRecorder | None = None,
        channel: str = "live",
    ) -> None:
        view = policy._view(recipient)
        self.recipient = recipient
        self._setup(view.raw, view.aggregated)
        self._recorder = recorder
        self._channel = channel
        self._foreign = {
            t: r.label for t, r in policy.grants(recipient).items() if policy.owner_of(t) != recipient
        }

    @classmethod
    def from_grants(cls, raw: Iterable[str], aggregated: Mapping[str, float]) -> StreamFilter:
        """A filter for an explicit grant set (tag ids passed raw; tag → interval [s] aggregated)."""
        self = cls.__new__(cls)
        self.recipient = ""
        self._setup(frozenset(raw), aggregated)
        self._recorder = None
        self._channel = ""
        self._foreign = {}
        return self

    def _record(self, out: list[Sample]) -> list[Sample]:
        if self._recorder is not None and out:
            times = [s.timestamp for s in out if split_output_name(s.tag)[0] in self._foreign]
            if times:
                self._recorder.shared(self.recipient, self._channel, self._foreign, times, max(times))
        return out

    def _setup(self, raw: frozenset[str], aggregated: Mapping[str, float]) -> None:
        self._raw = raw
        self._interval = dict(aggregated)
        self._names = {
            t: tuple(aggregated_name(t, s, i) for s in AGG_STATS) for t, i in self._interval.items()
        }
        # tag -> [bin index, count, sum, min, max]
        self._acc: dict[str, list[float]] = {}
        self._released: dict[str, int] = {}  # tag -> last bin index released

    def push(self, samples: Iterable[Sample]) -> list[Sample]:
        """Samples ``recipient`` may receive now, given new input ``samples`` (in time order per tag)."""
        out: list[Sample] = []
        raw, interval, acc = self._raw, self._interval, self._acc
        for s in samples:
            tag = s.tag
            if tag in raw:
                out.append(s)
                continue
            step = interval.get(tag)
            if step is None or s.quality is not Quality.GOOD or not math.isfinite(s.value):
                continue
            b = math.floor(s.timestamp / step)
            a = acc.get(tag)
            if a is None:
                if b <= self._released.get(tag, b - 1):
                    continue  # late for an interval already released

                acc[tag] = [b, 1.0, s.value, s.value, s.value]
                continue
            if b > a[0]:
                self._emit(tag, a, out)
                acc[tag] = [b, 1.0, s.value, s.value, s.value]
            elif b == a[0]:
                a[1] += 1.0
                a[2] += s.value
                if s.value < a[3]:
                    a[3] = s.value
                if s.value > a[4]:
                    a[4] = s.value
            # a sample from an interval already released is late: dropping it keeps released
            # aggregates final (a recipient never sees one interval twice)
        return self._record(out)

    def flush(self, now: float) -> list[Sample]:
        """Release every aggregate whose interval ended at or before ``now`` [s]."""
        out: list[Sample] = []
        for tag in list(self._acc):
            a = self._acc[tag]
            if (a[0] + 1) * self._interval[tag] <= now:
                self._emit(tag, a, out)
                del self._acc[tag]
        return self._record(out)

    def _emit(self, tag: str, a: list[float], out: list[Sample]) -> None:
        self._released[tag] = int(a[0])
        t_end = (a[0] + 1) * self._interval[tag]
        n_mean, n_min, n_max = self._names[tag]
        out.append(Sample(n_mean, t_end, a[2] / a[1]))
        out.append(Sample(n_min, t_end, a[3]))
        out.append(Sample(n_max, t_end, a[4]))
