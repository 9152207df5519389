"""Forecasts at run time: the site's ``forecasts:`` chains in front of the config profiles.

:class:`ForecastFeed` is what the service calls before every solve, ``feed(now, times) -> {series:
values}``, with the contract of :class:`symtwin.runtime.wiring.ProfileForecasts` (series ``<unit>.<input>``
and ``price.<name>``, values in SI on ``times``). Every series named in ``forecasts:`` is assembled by a
:class:`~symtwin.forecasting.horizon.HorizonAssembler` from its chain, in this order:

1. MQTT topic (``mqtt:``), fed by a paho subscriber the feed starts and stops;
2. CSV file re-read when it changes (``csv:``);
3. the built-in model (``model:``), when the caller hands a history source;
4. the config profile (``profile:``, else the profile or constant the series uses already): always answers.

Every other series comes from the profiles unchanged. An expired or missing forecast falls back to the
next source and leaves an alarm (:meth:`ForecastFeed.alarms`); the source of every step of the last
horizon is kept (:meth:`ForecastFeed.sources`). A broker that is down at start or goes away is no error:
paho keeps reconnecting, and until a forecast arrives (or after it expires) the next source is used.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from symtwin.forecasting.horizon import (
    FloatArray,
    Forecast,
    ForecastProvider,
    HorizonAssembler,
    HorizonIncomplete,
    ValidationRules,
)
from symtwin.forecasting.model import Forecaster, History
from symtwin.forecasting.sources import (
    CsvForecastSource,
    ModelForecastSource,
    MqttForecastListener,
    PahoForecastSubscriber,
    PayloadEncoding,
)
from symtwin.units import UNITS
from twin.spec import Profile

if TYPE_CHECKING:
    from adapters.mqtt import MqttConfig
    from symtwin.config import LoadedSite
    from symtwin.config.site import ForecastSpec
    from symtwin.runtime.wiring import ProfileForecasts

log = logging.getLogger(__name__)

HistoryFn = Callable[[str], History | None]


def forecast_mqtt_config(site: LoadedSite, credentials_dir: str | Path | None = None) -> MqttConfig | None:
    """The broker for ``mqtt:`` forecast sources: ``adapters.mqtt`` with its login and TLS, under its own
    client id ``<client_id>-forecasts`` (a second session next to the adapter's); None without a broker."""
    cfg = site.config.adapters.mqtt
    if cfg is None:
        return None
    from symtwin.runtime.mqtt_wiring import mqtt_config

    return mqtt_config(site, credentials_dir=credentials_dir, client_id=f"{cfg.client_id}-forecasts")


@dataclass(frozen=True)
class FeedAlarm:
    """A forecast problem of the last assembly: ``kind`` is expired, rejected, unavailable or fallback."""

    series: str
    source: str
    kind: str
    message: str
    at: float

    @property
    def key(self) -> str:
        return f"forecast:{self.series}:{self.source}:{self.kind}"


@dataclass(frozen=True)
class _ToSi:
    """A provider whose values are in an engineering unit (MW, degC, EUR/MWh): converted to SI here."""

    inner: ForecastProvider
    factor: float
    offset: float

    @property
    def name(self) -> str:
        return self.inner.name

    def forecast(self, now: float, times_s: FloatArray) -> Forecast | None:
        fc = self.inner.forecast(now, times_s)
        if fc is None or (self.factor == 1.0 and self.offset == 0.0):
            return fc
        values = np.asarray(fc.values, dtype=float) * self.factor + self.offset
        return Forecast(fc.source, fc.issued_at, fc.times_s, values)


@dataclass(frozen=True)
class _LastResort:
    """The series as the config gives it (a profile, or a constant price), issued now: always answers."""

    source: str
    profile: Profile | None
    constant: float
    t0: float

    @property
    def name(self) -> str:
        return self.source

    def forecast(self, now: float, times_s: FloatArray) -> Forecast | None:
        t = np.asarray(times_s, dtype=float)
        if self.profile is not None:
            values = np.asarray(self.profile.at(t - self.t0), dtype=float)
        else:
            values = np.full(t.shape, self.constant)
        return Forecast(self.source, now, t, values)


@dataclass
class _Chain:
    spec_id: str
    assembler: HorizonAssembler


@dataclass
class ForecastFeed:
    """``feed(now, times) -> {series: values [SI]}`` for the service, with sources and alarms for the view.

    Build with :meth:`from_site`. ``overrides`` multiplies series (a price spike in a simulation
    scenario), as on ``ProfileForecasts``.
    """

    base: ProfileForecasts
    chains: dict[str, _Chain]
    listeners: dict[str, MqttForecastListener]  # by series
    mqtt: MqttConfig | None = None
    overrides: dict[str, float] = field(default_factory=dict)
    _sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _alarms: tuple[FeedAlarm, ...] = ()
    _subscriber: PahoForecastSubscriber | None = None

    @classmethod
    def from_site(
        cls,
        site: LoadedSite,
        t0_epoch: float,
        mqtt: MqttConfig | None = None,
        *,
        history: HistoryFn | None = None,
    ) -> ForecastFeed:
        """The feed for ``site``; profile time 0 is ``t0_epoch`` [s, epoch UTC].

        mqtt: the broker for ``mqtt:`` sources (None: they stay unavailable and fall back).
        history: series → recent measured history on the model's step, in the series' SI unit (the
            unit the model was trained in); without it ``model:`` sources are left out of the chain.
        """
        from symtwin.runtime.wiring import ProfileForecasts

        base = ProfileForecasts(site, t0_epoch)
        chains: dict[str, _Chain] = {}
        listeners: dict[str, MqttForecastListener] = {}
        for spec in site.forecasts.values():
            chain = _chain(site, spec, base, t0_epoch, history, listeners)
            chains[spec.series] = _Chain(spec.id, HorizonAssembler(chain))
        return cls(base, chains, listeners, mqtt)

    # ------------------------------------------------------------------ the service's call

    def __call__(self, now: float, times: Sequence[float]) -> Mapping[str, Sequence[float]]:
        out = dict(self.base(now, times))
        sources = {name: (_base_source(self.base, name),) * len(times) for name in out}
        alarms: list[FeedAlarm] = []
        for series, chain in self.chains.items():
            try:
                h = chain.assembler.assemble(now, times)
            except HorizonIncomplete as exc:  # only if the last resort failed: keep the profile values
                log.error("forecast %s: %s; using the profile", series, exc)
                alarms.append(FeedAlarm(series, "chain", "incomplete", str(exc), now))
                continue
            out[series] = h.values.tolist()
            sources[series] = h.sources
            alarms.extend(FeedAlarm(series, a.source, a.kind.value, a.message, a.at) for a in h.alarms)
        for name, k in self.overrides.items():
            if name in out:
                out[name] = [v * k for v in out[name]]
        self._sources, self._alarms = sources, tuple(alarms)
        return out

    # ------------------------------------------------------------------ for the live view and /metrics

    def sources(self) -> dict[str, tuple[str, ...]]:
        """Per series, the source of each step of the last horizon (``mqtt:<topic>``, ``csv:<file>``,
        ``model``, ``profile:<id>``, ``config:<series>`` for a constant)."""
        return dict(self._sources)

    def alarms(self) -> tuple[FeedAlarm, ...]:
        """Problems of the last assembly: expired or rejected forecasts, missing sources, fallbacks."""
        return self._alarms

    def counters(self) -> dict[str, int]:
        """``<series>|<source>:<rule>`` → count since start (validation rules that fired), plus
        ``<series>|mqtt:<topic>:received|malformed|stale_arrival`` from the listeners."""
        out: Counter[str] = Counter()
        for series, chain in self.chains.items():
            for key, k in chain.assembler.counters.items():
                out[f"{series}|{key}"] += k
        for series, lst in self.listeners.items():
            for key, k in lst.counts.items():
                out[f"{series}|{lst.name}:{key}"] += k
        return dict(out)

    def export(self, metrics: object) -> None:
        """Set gauges on a ``symtwin.runtime.metrics.Metrics``: steps per source and alarms per series."""
        share: Counter[tuple[str, str]] = Counter()
        for series, srcs in self._sources.items():
            if series in self.chains:
                for s in srcs:
                    share[(series, s)] += 1
        set_ = metrics.set  # type: ignore[attr-defined]
        for (series, source), k in share.items():
            set_(
                "forecast_steps",
                "horizon steps of the last plan taken from each forecast source",
                float(k),
                {"series": series, "source": source},
            )
        for series in self.chains:
            n = sum(a.series == series and a.kind != "fallback" for a in self._alarms)
            set_(
                "forecast_alarms",
                "forecast sources expired, rejected or missing at the last plan",
                float(n),
                {"series": series},
            )

    # ------------------------------------------------------------------ MQTT subscriber

    def start(self) -> None:
        """Start the MQTT subscriber (if there are MQTT sources and a broker); returns at once."""
        if self._subscriber is not None or not self.listeners:
            return
        if self.mqtt is None:
            log.warning(
                "forecasts on MQTT (%s) but no broker given; they fall back to the next source",
                ", ".join(lst.topic for lst in self.listeners.values()),
            )
            return
        self._subscriber = PahoForecastSubscriber(self.mqtt, self.listeners.values())
        self._subscriber.start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        """True once the broker acknowledged the subscription (for tests and start-up logs)."""
        return self._subscriber is not None and self._subscriber.subscribed.wait(timeout_s)

    def stop(self) -> None:
        if self._subscriber is not None:
            self._subscriber.stop()
            self._subscriber = None


def _base_source(base: ProfileForecasts, series: str) -> str:
    s = base.series.get(series)
    return f"profile:{s.name}" if isinstance(s, Profile) else f"config:{series}"


def _conversion(unit: str) -> tuple[float, float]:
    d = UNITS[unit]
    return d.factor, d.offset


def _chain(
    site: LoadedSite,
    spec: ForecastSpec,
    base: ProfileForecasts,
    t0: float,
    history: HistoryFn | None,
    listeners: dict[str, MqttForecastListener],
) -> list[tuple[ForecastProvider, ValidationRules]]:
    bounds = spec.bounds_si or (-math.inf, math.inf)
    chain: list[tuple[ForecastProvider, ValidationRules]] = []
    if spec.mqtt is not None:
        m = spec.mqtt
        lst = MqttForecastListener(
            m.topic, step_s=m.step_s, encoding=PayloadEncoding(m.encoding), metric=m.metric
        )
        listeners[spec.series] = lst
        chain.append(
            (
                _ToSi(lst, *_conversion(m.unit)),
                ValidationRules(
                    max_age_s=m.max_age_s, max_gap_s=spec.max_gap_s, bounds=bounds, expected_points=m.points
                ),
            )
        )
    if spec.csv is not None:
        c = spec.csv
        chain.append(
            (
                _ToSi(CsvForecastSource(Path(c.path)), *_conversion(c.unit)),
                ValidationRules(max_age_s=c.max_age_s, max_gap_s=spec.max_gap_s, bounds=bounds),
            )
        )
    if spec.model is not None:
        if history is None:
            log.info(
                "forecast %s: no history source given, so the model %s is not used", spec.id, spec.model.path
            )
        else:
            chain.append(
                (
                    _model_source(site, spec, t0, history),
                    ValidationRules(max_age_s=spec.model.max_age_s, max_gap_s=spec.max_gap_s, bounds=bounds),
                )
            )
    if spec.profile is not None:
        last = _LastResort(f"profile:{spec.profile}", site.profiles[spec.profile], math.nan, t0)
    else:  # a constant price: what the controller had without forecasts
        value = base.series[spec.series]
        last = _LastResort(f"config:{spec.series}", None, float(value), t0)  # type: ignore[arg-type]
    chain.append((last, ValidationRules()))
    return chain


def _model_source(site: LoadedSite, spec: ForecastSpec, t0: float, history: HistoryFn) -> ModelForecastSource:
    assert spec.model is not None
    forecaster = Forecaster.from_json(spec.model.path.read_text(encoding="utf-8"))
    temperature = site.profiles.get(spec.model.temperature_profile or "")

    def weather(times: FloatArray) -> FloatArray | None:
        return None if temperature is None else np.asarray(temperature.at(times - t0), dtype=np.float64)

    def recent() -> History:
        h = history(spec.series)
        if h is None:
            raise LookupError(f"no history of {spec.series} yet")
        return h

    return ModelForecastSource(forecaster, recent, weather)
