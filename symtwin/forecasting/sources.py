"""Forecast providers: an MQTT topic, a CSV file re-read when it changes, the built-in model, a profile.

Each provider has a ``name`` (recorded per horizon step) and ``forecast(now, times_s)``; validation and
fallback are not done here but once, in :mod:`symtwin.forecasting.horizon`.

MQTT payloads are JSON (UTF-8), one of:

- ``[issued_at, v1, v2, …, vN]``: the issue time [s, epoch UTC] followed by the values at
  ``issued_at + k·step_s`` for k = 1 … N (``step_s`` from the provider's settings);
- ``{"issued_at": T, "values": [...], "start": T0, "step_s": S}``: values at ``T0 + k·S`` for k = 0 …;
  ``start`` defaults to ``issued_at + step_s``, ``step_s`` to the provider's;
- ``{"issued_at": T, "times": [...], "values": [...]}`` or ``{"issued_at": T, "points": [[t, v], ...]}``.

Times are numbers [s since the Unix epoch] or ISO 8601 strings with an offset; ``null`` values stand
for missing ones (validation drops them). Values are multiplied by ``scale`` to get SI.

Sparkplug B payloads (decoded with ``adapters.mqtt.sparkplug``): the payload ``timestamp`` [ms] is the
issue time; every metric named ``metric`` is one point, its own ``timestamp`` [ms] the time the value
applies at (Sparkplug allows one name several times in a payload); a null metric is a missing value.
Metrics must carry their names (aliases need the node's birth, which a forecast publisher may not send).
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import enum
import io
import json
import logging
import math
import os
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adapters.base import DeadLetter
from symtwin.forecasting.horizon import FloatArray, Forecast
from symtwin.forecasting.model import Forecaster, History, HorizonTooLong
from twin.spec import Profile

if TYPE_CHECKING:
    from adapters.mqtt import MqttConfig

log = logging.getLogger(__name__)


class ForecastDecodeError(ValueError):
    """A payload or file that is not a forecast in any accepted shape."""


def parse_time(value: Any) -> float:
    """A timestamp as a number [s, epoch UTC] or an ISO 8601 string with a UTC offset → seconds."""
    if isinstance(value, bool):
        raise ForecastDecodeError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ForecastDecodeError(f"not a time: {value!r}") from exc
        if parsed.tzinfo is None:
            raise ForecastDecodeError(f"time {value!r} has no UTC offset; write e.g. 2026-01-05T06:00:00Z")
        return parsed.timestamp()
    raise ForecastDecodeError(f"not a time: {value!r}")


def _number(v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ForecastDecodeError(f"not a number: {v!r}")
    return float(v)


def decode_json_forecast(payload: bytes, source: str, step_s: float, scale: float = 1.0) -> Forecast:
    """Decode one JSON forecast payload (shapes in the module docstring)."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ForecastDecodeError(f"not JSON: {exc}") from exc
    if isinstance(doc, list):
        if len(doc) < 2:
            raise ForecastDecodeError("an array forecast is [issued_at, v1, …, vN] with at least one value")
        issued = parse_time(doc[0])
        values = [_number(v) for v in doc[1:]]
        times = [issued + step_s * (k + 1) for k in range(len(values))]
    elif isinstance(doc, dict):
        if "issued_at" not in doc:
            raise ForecastDecodeError("an object forecast needs 'issued_at'")
        issued = parse_time(doc["issued_at"])
        if "points" in doc:
            pts = doc["points"]
            if not isinstance(pts, list) or not all(isinstance(p, list) and len(p) == 2 for p in pts):
                raise ForecastDecodeError("'points' must be a list of [time, value] pairs")
            times = [parse_time(p[0]) for p in pts]
            values = [_number(p[1]) for p in pts]
        elif "values" in doc:
            if not isinstance(doc["values"], list):
                raise ForecastDecodeError("'values' must be a list")
            values = [_number(v) for v in doc["values"]]
            if "times" in doc:
                if not isinstance(doc["times"], list):
                    raise ForecastDecodeError("'times' must be a list")
                times = [parse_time(t) for t in doc["times"]]
            else:
                step = _number(doc.get("step_s", step_s))
                if not step > 0:
                    raise ForecastDecodeError("'step_s' must be positive")
                start = parse_time(doc["start"]) if "start" in doc else issued + step
                times = [start + step * k for k in range(len(values))]
        else:
            raise ForecastDecodeError(
                "an object forecast needs 'values' (with 'times' or 'start') or 'points'"
            )
    else:
        raise ForecastDecodeError("a forecast is a JSON array or object")
    # A length mismatch is not decided here: validation rejects it and counts it.
    return Forecast(source, issued, np.asarray(times, dtype=float), np.asarray(values, dtype=float) * scale)


class PayloadEncoding(enum.StrEnum):
    JSON = "json"
    SPARKPLUG = "sparkplug"


def decode_sparkplug_forecast(payload: bytes, source: str, metric: str, scale: float = 1.0) -> Forecast:
    """Decode a Sparkplug B forecast payload (convention in the module docstring)."""
    from adapters.mqtt.sparkplug import SparkplugDecodeError, decode_payload

    try:
        p = decode_payload(payload)
    except SparkplugDecodeError as exc:
        raise ForecastDecodeError(f"not a Sparkplug B payload: {exc}") from exc
    if p.timestamp is None:
        raise ForecastDecodeError("a Sparkplug forecast needs the payload timestamp (the issue time)")
    times: list[float] = []
    values: list[float] = []
    for m in p.metrics:
        if m.name != metric:
            continue
        if m.timestamp is None:
            raise ForecastDecodeError(
                f"metric {metric!r} without a timestamp (the time its value applies at)"
            )
        times.append(m.timestamp / 1000.0)
        values.append(math.nan if m.is_null or m.value is None else _number(m.value))
    if not values:
        raise ForecastDecodeError(f"no metric named {metric!r} in the payload")
    return Forecast(source, p.timestamp / 1000.0, np.asarray(times), np.asarray(values) * scale)


@dataclass
class MqttForecastListener:
    """Holds the newest forecast received on an MQTT topic; transport-agnostic.

    encoding: JSON or Sparkplug B (named in the config, never guessed from the payload); metric: the
    Sparkplug metric name carrying the forecast points.

    The MQTT client calls :meth:`on_payload` from its network thread; that only appends to a queue
    (a slow callback would stall keep-alive). Decoding happens in :meth:`forecast`, on the caller's
    thread. A payload that does not decode becomes a :class:`DeadLetter`; a forecast issued before the
    one held is ignored (counted as ``stale_arrival``).
    """

    topic: str
    step_s: float = 3600.0
    scale: float = 1.0
    encoding: PayloadEncoding = PayloadEncoding.JSON
    metric: str = "forecast"
    clock: Callable[[], float] = time.time
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    _inbox: collections.deque[tuple[bytes, float]] = field(default_factory=collections.deque)
    _dead: collections.deque[DeadLetter] = field(default_factory=lambda: collections.deque(maxlen=100))
    _latest: Forecast | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return f"mqtt:{self.topic}"

    def on_payload(self, payload: bytes, received_at: float | None = None) -> None:
        self._inbox.append((bytes(payload), self.clock() if received_at is None else received_at))

    def _drain(self) -> None:
        with self._lock:
            while self._inbox:
                payload, received = self._inbox.popleft()
                self.counts["received"] += 1
                try:
                    if self.encoding is PayloadEncoding.SPARKPLUG:
                        fc = decode_sparkplug_forecast(payload, self.name, self.metric, self.scale)
                    else:
                        fc = decode_json_forecast(payload, self.name, self.step_s, self.scale)
                except ForecastDecodeError as exc:
                    self.counts["malformed"] += 1
                    self._dead.append(DeadLetter(self.name, received, str(exc), payload))
                    log.warning("forecast on %s set aside: %s", self.topic, exc)
                    continue
                if self._latest is not None and fc.issued_at < self._latest.issued_at:
                    self.counts["stale_arrival"] += 1
                    continue
                self._latest = fc

    def forecast(self, now: float, times_s: FloatArray) -> Forecast | None:
        self._drain()
        return self._latest

    def dead_letters(self) -> Iterable[DeadLetter]:
        self._drain()
        return tuple(self._dead)


class PahoForecastSubscriber:
    """A paho-mqtt client that feeds :class:`MqttForecastListener`s (one per topic).

    Connects with the broker config's login and TLS (``adapters.mqtt.client.paho_client``). Subscribes in
    ``on_connect`` so subscriptions come back after a reconnect; a refused login is logged once per
    reason (the feed falls back meanwhile, and paho keeps retrying).
    """

    def __init__(self, config: MqttConfig, listeners: Iterable[MqttForecastListener]) -> None:
        from adapters.mqtt.client import paho_client

        self._listeners = {lst.topic: lst for lst in listeners}
        self._client = paho_client(config, max_queued=100)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._config = config
        self._refused: str | None = None
        self.subscribed = threading.Event()
        self._client.on_subscribe = lambda *_a: self.subscribed.set()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            if str(reason_code) != self._refused:
                log.error("forecast subscriber: the broker refused the connection: %s", reason_code)
            self._refused = str(reason_code)
            return
        self._refused = None
        for topic in self._listeners:
            client.subscribe(topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        listener = self._listeners.get(msg.topic)
        if listener is not None:
            listener.on_payload(msg.payload)

    def start(self) -> None:
        cfg = self._config
        self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class CsvForecastSource:
    """A forecast kept in a CSV file, re-read whenever its modification time or size changes.

    Columns (header row, names case-insensitive): ``time`` and ``value``, optionally ``issued_at``
    (the newest one in the file is the forecast's issue time; without the column, the file's
    modification time is). Times are epoch seconds or ISO 8601 with an offset; empty cells are missing
    values. If a new version of the file does not parse, the previous forecast is kept (it expires by
    its own issue time) and ``malformed`` is counted.
    """

    path: Path
    scale: float = 1.0
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    _stamp: tuple[int, int] | None = None
    _latest: Forecast | None = None

    @property
    def name(self) -> str:
        return f"csv:{self.path.name}"

    def forecast(self, now: float, times_s: FloatArray) -> Forecast | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._latest
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._latest = self._read(self.path.read_text(encoding="utf-8"), st.st_mtime)
                self.counts["reloaded"] += 1
            except ForecastDecodeError as exc:
                self.counts["malformed"] += 1
                log.warning("forecast file %s not read: %s", self.path, exc)
        return self._latest

    def _read(self, text: str, mtime: float) -> Forecast:
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None:
            raise ForecastDecodeError("empty file")
        cols = {c.strip().lower(): c for c in reader.fieldnames}
        if "time" not in cols or "value" not in cols:
            raise ForecastDecodeError(f"needs columns 'time' and 'value', has {reader.fieldnames}")
        times: list[float] = []
        values: list[float] = []
        issued: list[float] = []
        for line, row in enumerate(reader, start=2):
            try:
                times.append(parse_time(row[cols["time"]].strip()))
                cell = (row[cols["value"]] or "").strip()
                values.append(float(cell) * self.scale if cell else math.nan)
                if "issued_at" in cols and (row[cols["issued_at"]] or "").strip():
                    issued.append(parse_time(row[cols["issued_at"]].strip()))
            except (ForecastDecodeError, ValueError, AttributeError) as exc:
                raise ForecastDecodeError(f"{self.path}:{line}: {exc}") from exc
        return Forecast(self.name, max(issued) if issued else mtime, np.asarray(times), np.asarray(values))


@dataclass
class ProfileForecastSource:
    """The config profile as a forecast (the last resort): always answers, issued now.

    run_start_s: epoch time [s] of the profile's t = 0; scale: factor to SI.
    """

    profile: Profile
    run_start_s: float
    scale: float = 1.0

    @property
    def name(self) -> str:
        return f"profile:{self.profile.name}"

    def forecast(self, now: float, times_s: FloatArray) -> Forecast | None:
        values = self.profile.at(np.asarray(times_s, dtype=float) - self.run_start_s) * self.scale
        return Forecast(self.name, now, np.asarray(times_s, dtype=float), np.asarray(values, dtype=float))


@dataclass
class ModelForecastSource:
    """The built-in forecaster as a provider, issued at call time from the history it is handed.

    history: returns recent measurements on the model's step (load [W], outdoor temperature [K]).
    weather: returns the outdoor temperature forecast [K] for given epoch times, or None to hold the
        last measurement.
    A horizon longer than the model was trained for is covered as far as the model reaches. The
    forecast starts with the last measured value, so horizon steps before the first model step are
    interpolated from it rather than left to the next source.
    """

    forecaster: Forecaster
    history: Callable[[], History]
    weather: Callable[[FloatArray], FloatArray | None] = lambda _t: None

    @property
    def name(self) -> str:
        return "model"

    def forecast(self, now: float, times_s: FloatArray) -> Forecast | None:
        hist = self.history()
        step = self.forecaster.step_s
        i0 = int(np.searchsorted(hist.times_s, now, side="right")) - 1
        if i0 < 0:
            return None
        t0 = float(hist.times_s[i0])
        wanted = max(1, math.ceil((float(np.max(times_s)) - t0) / step))
        n = min(wanted, len(self.forecaster.steps))
        if n < 1:
            raise HorizonTooLong("the model is not fitted for any step")
        target = np.asarray(t0 + step * np.arange(1, n + 1), dtype=np.float64)
        values = self.forecaster.predict(hist, now, n, self.weather(target))
        # the measured value at the issue time anchors the steps before the first forecast step
        return Forecast(
            self.name, t0, np.concatenate([[t0], target]), np.concatenate([[hist.load_w[i0]], values])
        )


RELATIVE_TIME_LIMIT_S = 1e8


def read_history_csv(
    path: Path,
    load_column: str,
    temperature_column: str,
    *,
    time_column: str = "Time",
    start_s: float | None = None,
    load_scale: float = 1.0,
    temperature_offset_k: float = 273.15,
    weekday_column: str | None = "Day",
    timezone: str = "UTC",
) -> History:
    """Read a measured history (load, outdoor temperature) from a CSV file into a :class:`History`.

    time_column: ISO 8601 times, epoch seconds, or seconds since ``start_s`` [s, epoch] — numbers below
        1e8 (about three years) are taken as relative.
    load_scale: factor to W; temperature_offset_k: added to get K (273.15 for °C columns).
    weekday_column: a day-of-week column (1 = Monday … 7 = Sunday) to check the times against; when
        the first row's weekday disagrees with the one computed from the times (local time in ``timezone``), the start is moved
        back to the nearest day with the file's weekday and a warning is logged (holiday dates are then
        shifted by the same number of days). None skips the check.
    Empty cells are missing values (NaN); samples are put on the file's regular step.
    """
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        names = reader.fieldnames or []
        for col in (time_column, load_column, temperature_column):
            if col not in names:
                raise ForecastDecodeError(f"{path}: no column {col!r} (columns: {', '.join(names)})")
        times: list[float] = []
        load: list[float] = []
        temp: list[float] = []
        first_weekday: int | None = None
        for line, row in enumerate(reader, start=2):
            try:
                times.append(parse_time(row[time_column].strip()))
                load.append(float(row[load_column]) * load_scale if row[load_column].strip() else math.nan)
                temp.append(
                    float(row[temperature_column]) + temperature_offset_k
                    if row[temperature_column].strip()
                    else math.nan
                )
                if first_weekday is None and weekday_column and weekday_column in names:
                    first_weekday = int(float(row[weekday_column]))
            except (ValueError, ForecastDecodeError) as exc:
                raise ForecastDecodeError(f"{path}:{line}: {exc}") from exc
    if len(times) < 2:
        raise ForecastDecodeError(f"{path}: fewer than two rows")
    t = np.asarray(times)
    relative = bool(np.nanmax(np.abs(t)) < RELATIVE_TIME_LIMIT_S)
    if relative:
        if start_s is None:
            raise ForecastDecodeError(f"{path}: times are relative (seconds since a start); give the start")
        t = t + start_s
    if first_weekday is not None and relative and start_s is not None:
        computed = dt.datetime.fromtimestamp(t[0], zoneinfo.ZoneInfo(timezone)).isoweekday()
        shift_days = (computed - first_weekday) % 7
        if shift_days:
            log.warning(
                "%s: row 1 is weekday %d but the start makes it %d; moving the start back %d day(s) so "
                "day-of-week features are right (holiday dates move with it)",
                path,
                first_weekday,
                computed,
                shift_days,
            )
            t = t - shift_days * 86400.0
    step = float(np.median(np.diff(np.sort(t))))
    return History.regular(t, load, temp, step)


def read_history_store(
    path: Path,
    load_tag: str,
    temperature_tag: str,
    *,
    step_s: float = 3600.0,
    start_s: float | None = None,
    end_s: float | None = None,
) -> History:
    """Read a measured history from the service's local history store (SQLite, ``adapters/store``).

    load_tag / temperature_tag: tag ids whose stored values are SI (W and K). Samples are averaged per
    ``step_s`` [s] bucket; buckets without a sample are NaN (the forecaster skips them).
    """
    from adapters.store.history import HistoryParams, LocalHistory

    if not path.exists():
        raise ForecastDecodeError(f"{path}: no such history store")
    store = LocalHistory(HistoryParams(path, retention_s=float("inf")))
    try:
        known = set(store.tags())
        for tag in (load_tag, temperature_tag):
            if tag not in known:
                raise ForecastDecodeError(
                    f"{path}: no tag {tag!r} in the store (tags: {', '.join(sorted(known))})"
                )
        lo = -math.inf if start_s is None else start_s
        hi = math.inf if end_s is None else end_s
        series = {}
        for tag in (load_tag, temperature_tag):
            samples = [s for s in store.query(tag, lo, hi, max_points=10_000_000) if math.isfinite(s.value)]
            if not samples:
                raise ForecastDecodeError(f"{path}: tag {tag!r} has no finite values in the range")
            t = np.array([s.timestamp for s in samples])
            v = np.array([s.value for s in samples])
            bucket = np.floor(t / step_s) * step_s
            keys, inverse = np.unique(bucket, return_inverse=True)
            series[tag] = (keys, np.bincount(inverse, weights=v) / np.bincount(inverse))
    finally:
        store.close()
    t_load, load = series[load_tag]
    t_temp, temp = series[temperature_tag]
    times = np.union1d(t_load, t_temp)
    # Same buckets on both series: a bucket one of them lacks stays NaN (never bridged across a gap).
    load_on = np.full(times.shape, np.nan)
    temp_on = np.full(times.shape, np.nan)
    load_on[np.searchsorted(times, t_load)] = load
    temp_on[np.searchsorted(times, t_temp)] = temp
    return History.regular(times, load_on, temp_on, step_s)
