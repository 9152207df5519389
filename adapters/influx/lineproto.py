"""InfluxDB line protocol for the historian schema (see README "Historian schema").

Samples become ``symtwin_sample,<labels>,tag=<id> value=<float>,quality=<int>i <ns>``; anything else
(estimates, setpoints, KPIs) is a :class:`Point` with its own measurement. Timestamps are written with
microsecond resolution in a nanosecond-precision field, so the same sample always gives the same line
(a re-sent line overwrites itself in InfluxDB instead of adding a point).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from adapters.base import Quality, Sample

SAMPLE_MEASUREMENT = "symtwin_sample"

_MEAS_ESC = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESC = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})


class LineError(ValueError):
    """A record cannot be written as line protocol (non-finite field, bad name, no fields)."""


@dataclass(frozen=True, slots=True)
class Point:
    """A generic historian record: one measurement, its tags (labels), numeric fields and a time.

    timestamp: [s since the Unix epoch, UTC].
    fields: numbers only (bool, int, float); victoria-metrics does not store strings.
    """

    measurement: str
    fields: Mapping[str, float | int | bool]
    timestamp: float
    tags: Mapping[str, str] = field(default_factory=dict)


def ts_ns(timestamp_s: float) -> int:
    """Seconds → integer nanoseconds, rounded to whole microseconds (stable under float noise)."""
    return round(timestamp_s * 1_000_000) * 1000


def _check_name(name: str, what: str) -> None:
    if not name or "\n" in name or "\r" in name or name.endswith("\\"):
        raise LineError(f"invalid {what} {name!r}")


def escape_tags(tags: Mapping[str, str]) -> str:
    """``,k=v,k2=v2`` sorted by key (InfluxDB's preferred order); empty values are left out."""
    out = []
    for k in sorted(tags):
        v = str(tags[k])
        if not v:
            continue
        _check_name(k, "tag key")
        _check_name(v, "tag value")
        out.append(f",{k.translate(_KEY_ESC)}={v.translate(_KEY_ESC)}")
    return "".join(out)


def format_field(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    f = float(value)
    if not math.isfinite(f):
        raise LineError(f"non-finite field value {f}")
    return repr(f)


def point_line(point: Point) -> str:
    _check_name(point.measurement, "measurement")
    if not point.fields:
        raise LineError("a point needs at least one field")
    fields = []
    for k in sorted(point.fields):
        _check_name(k, "field key")
        fields.append(f"{k.translate(_KEY_ESC)}={format_field(point.fields[k])}")
    t = float(point.timestamp)
    if not (0.0 <= t < (2**63 - 1) / 1e9):
        raise LineError(f"timestamp out of range {t}")
    return f"{point.measurement.translate(_MEAS_ESC)}{escape_tags(point.tags)} {','.join(fields)} {ts_ns(t)}"


_MAX_TS = (2**63 - 1) / 1e9
_QUALITY_STR: dict[object, str] = {q: str(int(q)) for q in Quality}


def _within(bounds: Mapping[str, tuple[float, float]], tag: str, value: float) -> bool:
    lim = bounds.get(tag)
    return lim is None or lim[0] <= value <= lim[1]


class BucketLabels(Mapping[str, Mapping[str, str]]):
    """Per-tag labels plus ``db=<bucket>`` for every tag, also tags not listed (estimates, aggregates).

    victoria-metrics ignores the ``bucket`` of ``/api/v2/write`` (only ``db`` of ``/write`` becomes a label),
    so points written to different buckets would merge into one series; the ``db`` tag keeps them apart
    there and is the label :mod:`adapters.influx.reader` selects on. InfluxDB stores it as one more tag.
    """

    def __init__(self, labels: Mapping[str, Mapping[str, str]] | None, bucket: str) -> None:
        self._labels = labels or {}
        self._db = {"db": bucket}

    def __getitem__(self, tag: str) -> Mapping[str, str]:
        return {**self._labels.get(tag, {}), **self._db}

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)

    def __bool__(self) -> bool:  # never empty: every tag gets ``db``
        return True


class SampleEncoder:
    """Turns samples into lines, caching the per-tag prefix (measurement + labels) for speed.

    labels: extra tags per tag id, e.g. ``{"hx1.t_out": {"unit": "hx1", "party": "powerco"}}``.
    """

    def __init__(
        self,
        measurement: str = SAMPLE_MEASUREMENT,
        labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        _check_name(measurement, "measurement")
        self._meas = measurement.translate(_MEAS_ESC)
        self._labels = labels or {}
        self._prefix: dict[str, str] = {}

    def prefix(self, tag: str) -> str:
        p = self._prefix.get(tag)
        if p is None:
            p = f"{self._meas}{escape_tags({**self._labels.get(tag, {}), 'tag': tag})} "
            self._prefix[tag] = p
        return p

    def encode_many(
        self, items: Sequence[object], bounds: Mapping[str, tuple[float, float]] | None = None
    ) -> tuple[list[str], list[object]]:
        """Lines for the plainly valid samples, in order, and the items that need the careful path.

        The fast path accepts a :class:`Sample` of a tag seen before with a float value that is finite
        and within ``bounds``, a timestamp in range and a known quality; everything else (Points, first
        sight of a tag, ints, NaN, ...) is handed back for ``adapters.store.checks.check_sample``.
        About 3× cheaper per sample than check + ``line``.
        """
        lines: list[str] = []
        slow: list[object] = []
        prefixes = self._prefix
        qstr = _QUALITY_STR
        for item in items:
            if type(item) is Sample:
                v = item.value
                ts = item.timestamp
                p = prefixes.get(item.tag)
                q = qstr.get(item.quality)
                if (
                    p is not None
                    and q is not None
                    and type(v) is float
                    and v - v == 0.0  # finite: inf - inf and nan - nan are nan
                    and 0.0 <= ts < _MAX_TS
                    and (bounds is None or _within(bounds, item.tag, v))
                ):
                    lines.append(f"{p}value={v!r},quality={q}i {round(ts * 1_000_000) * 1000}")
                    continue
            slow.append(item)
        return lines, slow

    def line(self, s: Sample) -> str:
        """The sample as one line; the caller has validated it (see adapters.store.checks)."""
        p = self._prefix.get(s.tag) or self.prefix(s.tag)
        return (
            f"{p}value={float(s.value)!r},quality={int(s.quality)}i {round(s.timestamp * 1_000_000) * 1000}"
        )
