"""Read the historian's samples back from the store: InfluxDB 2.x/3.x through Flux, or victoria-metrics
through its export API (it accepts the InfluxDB v2 write API but does not speak Flux).

The schema is the one :mod:`adapters.influx.lineproto` writes: measurement ``symtwin_sample``, tag ``tag``
(the tag id), fields ``value`` [SI] and ``quality`` (0 good, 1 uncertain, 2 bad).

- **Flux** (:func:`flux_query`): ``from(bucket)`` → ``range`` → filter on measurement, tag and the two
  fields → ``pivot`` so each row carries value and quality. Sent with influxdb-client's query API.
  Tested here only by unit tests of the query text: no InfluxDB 2 server runs in this project's tests.
- **victoria-metrics** (:func:`export_selector`): series ``<measurement>_<field>``, tags become labels and
  the bucket of the write becomes the label ``db``. ``POST /api/v1/export`` returns JSON lines with
  millisecond timestamps; value and quality are joined on the timestamp. Tested against a real server.

``api="auto"`` asks ``GET /health`` once: InfluxDB answers JSON with ``"name": "influxdb"``,
victoria-metrics a plain ``OK``.

:meth:`InfluxReader.query` has the signature and the down-sampling of
:meth:`adapters.store.history.LocalHistory.query`, so callers take either.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.base import AdapterError, Quality, Sample
from adapters.influx.lineproto import SAMPLE_MEASUREMENT

log = logging.getLogger(__name__)

__all__ = [
    "InfluxReader",
    "QueryApi",
    "ReaderError",
    "ReaderParams",
    "detect_api",
    "downsample",
    "export_selector",
    "flux_query",
]


class ReaderError(AdapterError):
    """The store could not be read (unreachable, refused the query, answered something unexpected)."""


class QueryApi(enum.StrEnum):
    AUTO = "auto"
    FLUX = "flux"
    VICTORIA_METRICS = "victoria-metrics"


@dataclass(frozen=True, slots=True)
class ReaderParams:
    """url, org, bucket, token as for the writer (:class:`adapters.influx.InfluxParams`); api: how to query;
    timeout_s: per request [s]."""

    url: str
    org: str
    bucket: str
    token: str = ""
    api: QueryApi = QueryApi.AUTO
    measurement: str = SAMPLE_MEASUREMENT
    timeout_s: float = 30.0


def _flux_string(text: str) -> str:
    """A Flux string literal: backslash, double quote and ``${`` (interpolation) escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def _rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def flux_query(bucket: str, measurement: str, tag: str, start: float, end: float) -> str:
    """Flux for the samples of ``tag`` with ``start <= time < end`` [s since the epoch], one row per time
    with columns ``_time``, ``value`` and ``quality``, oldest first."""
    return "\n".join(
        [
            f"from(bucket: {_flux_string(bucket)})",
            f"  |> range(start: {_rfc3339(start)}, stop: {_rfc3339(end)})",
            f"  |> filter(fn: (r) => r._measurement == {_flux_string(measurement)} and r.tag == {_flux_string(tag)})",
            '  |> filter(fn: (r) => r._field == "value" or r._field == "quality")',
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
            "  |> group()",
            '  |> sort(columns: ["_time"])',
        ]
    )


def _label_value(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def export_selector(bucket: str, measurement: str, tag: str) -> str:
    """The victoria-metrics series selector for the value and quality series of ``tag`` in ``bucket``."""
    name = f"{measurement}_(value|quality)"
    return f"{{__name__=~{_label_value(name)},tag={_label_value(tag)},db={_label_value(bucket)}}}"


def downsample(samples: Sequence[Sample], start: float, end: float, max_points: int) -> list[Sample]:
    """At most ``max_points`` samples: beyond it, ``max_points`` equal buckets over [start, end), each
    non-empty one giving its mean time, mean value and worst quality (as the local history store)."""
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    if len(samples) <= max_points:
        return list(samples)
    width = (end - start) / max_points
    groups: dict[int, list[Sample]] = {}
    for s in samples:
        groups.setdefault(min(int((s.timestamp - start) / width), max_points - 1), []).append(s)
    out = []
    for k in sorted(groups):
        g = groups[k]
        out.append(
            Sample(
                g[0].tag,
                sum(s.timestamp for s in g) / len(g),
                sum(s.value for s in g) / len(g),
                Quality(max(int(s.quality) for s in g)),
            )
        )
    return out


def _quality(q: float | None) -> Quality:
    if q is None or not math.isfinite(q):
        return Quality.GOOD
    try:
        return Quality(round(q))
    except ValueError:
        return Quality.BAD


def detect_api(url: str, timeout_s: float = 5.0) -> QueryApi:
    """Which query API the store at ``url`` speaks, from its ``/health`` answer."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s) as r:
            body = r.read(4096).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        raise ReaderError(f"cannot reach the store at {url}: {exc}") from None
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and str(doc.get("name", "")).lower() == "influxdb":
        return QueryApi.FLUX
    if body.strip().upper() == "OK":
        return QueryApi.VICTORIA_METRICS
    raise ReaderError(
        f"the store at {url} is neither InfluxDB nor victoria-metrics (/health answered {body[:80]!r}); "
        "set adapters.influx.query_api"
    )


class InfluxReader:
    """Samples of one tag over a time range from the configured store (see the module docstring)."""

    def __init__(self, params: ReaderParams) -> None:
        self.params = params
        self.api = params.api if params.api is not QueryApi.AUTO else detect_api(params.url, params.timeout_s)
        self._client: Any = None

    def query(self, tag: str, start: float, end: float, max_points: int = 1000) -> list[Sample]:
        """Samples of ``tag`` with ``start <= timestamp < end`` [s], oldest first, at most ``max_points``."""
        if end <= start:
            return []
        rows = self._flux(tag, start, end) if self.api is QueryApi.FLUX else self._export(tag, start, end)
        rows = [s for s in rows if start <= s.timestamp < end]
        rows.sort(key=lambda s: s.timestamp)
        return downsample(rows, start, end, max_points)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- victoria-metrics

    def _export(self, tag: str, start: float, end: float) -> list[Sample]:
        p = self.params
        data = urllib.parse.urlencode(
            {
                "match[]": export_selector(p.bucket, p.measurement, tag),
                "start": f"{start:.3f}",
                "end": f"{end:.3f}",
            }
        ).encode()
        url = f"{p.url.rstrip('/')}/api/v1/export"
        try:
            with urllib.request.urlopen(url, data=data, timeout=p.timeout_s) as r:
                lines = r.read().decode().splitlines()
        except urllib.error.HTTPError as exc:
            raise ReaderError(
                f"victoria-metrics refused the export ({exc.code}): {exc.read()[:200]!r}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ReaderError(f"cannot reach victoria-metrics at {p.url}: {exc}") from None
        values: dict[int, float] = {}
        quality: dict[int, float] = {}
        for line in lines:
            if not line.strip():
                continue
            doc = json.loads(line)
            name = doc["metric"]["__name__"]
            target = values if name.endswith("_value") else quality
            for ts, v in zip(doc["timestamps"], doc["values"], strict=True):
                target[int(ts)] = float(v) if v is not None else math.nan
        return [Sample(tag, ms / 1000.0, v, _quality(quality.get(ms))) for ms, v in values.items()]

    # -- InfluxDB (Flux)

    def _flux(self, tag: str, start: float, end: float) -> list[Sample]:
        from influxdb_client import InfluxDBClient

        p = self.params
        if self._client is None:
            self._client = InfluxDBClient(
                url=p.url, token=p.token or "unused", org=p.org, timeout=int(p.timeout_s * 1000)
            )
        try:
            tables = self._client.query_api().query(
                flux_query(p.bucket, p.measurement, tag, start, end), org=p.org
            )
        except Exception as exc:  # ApiException, urllib3 errors: the store could not answer
            raise ReaderError(f"InfluxDB query failed: {exc}") from None
        return list(_records(tag, (r.values for t in tables for r in t.records)))


def _records(tag: str, rows: Iterable[dict[str, object]]) -> Iterable[Sample]:
    """Samples from pivoted Flux rows (``_time``, ``value``, ``quality``)."""
    for v in rows:
        t = v.get("_time")
        value = v.get("value")
        if not isinstance(t, dt.datetime) or not isinstance(value, int | float):
            continue
        q = v.get("quality")
        yield Sample(
            tag, t.timestamp(), float(value), _quality(float(q) if isinstance(q, int | float) else None)
        )
