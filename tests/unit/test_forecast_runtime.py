"""ForecastFeed: the site's forecasts: chains in front of the profiles, with the source of every step."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from symtwin.config import ConfigError, LoadedSite, load_site
from symtwin.forecasting.model import Forecaster, ForecasterParams, History
from symtwin.forecasting.runtime import ForecastFeed, forecast_mqtt_config
from symtwin.runtime.wiring import ProfileForecasts

T0 = 1_627_768_800.0  # 2021-08-01T00:00:00+02:00, demo.yaml's site.start
NOW = T0 + 10 * 86400.0
STEP = 900.0
TIMES = [NOW + k * STEP for k in range(8)]
TOPIC = "park/forecast/town_demand"
GAS_TOPIC = "park/forecast/gas_price"

FORECASTS = f"""
forecasts:
  - id: town_demand
    series: town.demand
    unit: "%"
    bounds: [0, 120]
    mqtt: {{topic: {TOPIC}, max_age: 1 h, step: 15 min}}
    csv: {{path: forecasts/town_demand.csv, unit: "1", max_age: 6 h}}
  - id: gas
    series: price.natural_gas
    unit: EUR/MWh
    bounds: ["0 EUR/MWh", 500]
    mqtt: {{topic: {GAS_TOPIC}, max_age: 2 h}}
"""


def _site(tmp_path: Path, repo_root: Path, extra: str = FORECASTS) -> LoadedSite:
    (tmp_path / "profiles").symlink_to(repo_root / "configs" / "profiles")
    (tmp_path / "forecasts").mkdir()
    path = tmp_path / "site.yaml"
    path.write_text((repo_root / "configs" / "demo.yaml").read_text() + extra)
    return load_site(path)


def _publish(feed: ForecastFeed, series: str, doc: object) -> None:
    feed.listeners[series].on_payload(json.dumps(doc).encode())


def test_without_forecasts_section_the_feed_is_the_profiles(repo_root: Path) -> None:
    site = load_site(repo_root / "configs" / "demo.yaml")
    feed = ForecastFeed.from_site(site, T0)
    assert feed(NOW, TIMES) == ProfileForecasts(site, T0)(NOW, TIMES)
    sources = feed.sources()
    assert sources["town.demand"] == ("profile:town_demand",) * len(TIMES)
    assert sources["price.natural_gas"] == ("config:price.natural_gas",) * len(TIMES)
    assert feed.alarms() == ()
    feed.start()  # no MQTT sources: nothing to start
    feed.stop()


def test_mqtt_forecast_replaces_the_profile_in_si(tmp_path: Path, repo_root: Path) -> None:
    site = _site(tmp_path, repo_root)
    feed = ForecastFeed.from_site(site, T0)
    profile = ProfileForecasts(site, T0)(NOW, TIMES)
    # [issued_at, v1 ... vN]: values in % at issued_at + k·15 min
    _publish(feed, "town.demand", [NOW - STEP, *[50.0 + k for k in range(10)]])
    _publish(
        feed,
        "price.natural_gas",
        {"issued_at": NOW - 60, "start": NOW, "step_s": 3600, "values": [90, 90, 120]},
    )
    out = feed(NOW, TIMES)
    np.testing.assert_allclose(out["town.demand"], [0.50 + 0.01 * k for k in range(8)], rtol=1e-12)
    assert feed.sources()["town.demand"] == (f"mqtt:{TOPIC}",) * len(TIMES)
    gas = np.asarray(out["price.natural_gas"])
    np.testing.assert_allclose(gas[0], 90 / 3.6e9, rtol=1e-12)  # EUR/MWh → EUR/J
    np.testing.assert_allclose(gas[6], (90 + 30 * 2 / 4) / 3.6e9, rtol=1e-12)  # interpolated at 1.5 h
    assert out["factory_heat.available"] == profile["factory_heat.available"]  # not configured: unchanged
    assert out["price.co2"] == profile["price.co2"]
    assert not [a for a in feed.alarms() if a.kind != "unavailable"]


def test_expired_forecast_falls_back_to_csv_then_profile_with_alarm(
    tmp_path: Path, repo_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = _site(tmp_path, repo_root)
    feed = ForecastFeed.from_site(site, T0)
    profile = ProfileForecasts(site, T0)(NOW, TIMES)
    _publish(feed, "town.demand", [NOW - 2 * 3600, *[60.0] * 20])  # max_age 1 h: expired
    with caplog.at_level(logging.WARNING):
        out = feed(NOW, TIMES)
    assert out["town.demand"] == profile["town.demand"]
    assert feed.sources()["town.demand"] == ("profile:town_demand",) * len(TIMES)
    kinds = {(a.series, a.source, a.kind) for a in feed.alarms()}
    assert ("town.demand", f"mqtt:{TOPIC}", "expired") in kinds
    assert ("town.demand", "profile:town_demand", "fallback") in kinds
    assert "expired" in caplog.text

    # a CSV forecast (fractions, issue time from the file) covers the first half of the horizon
    csv = tmp_path / "forecasts" / "town_demand.csv"
    csv.write_text("time,value,issued_at\n" + "".join(f"{NOW + k * STEP},0.4,{NOW - 60}\n" for k in range(4)))
    out = feed(NOW, TIMES)
    assert out["town.demand"][:4] == [0.4] * 4
    assert out["town.demand"][4:] == profile["town.demand"][4:]
    assert feed.sources()["town.demand"] == ("csv:town_demand.csv",) * 4 + ("profile:town_demand",) * 4

    # the file changes: re-read at the next call
    csv.write_text(f"time,value,issued_at\n{NOW},0.3,{NOW}\n{NOW + 7 * STEP},0.3,{NOW}\n")
    os.utime(csv, (NOW, NOW + 1))
    assert feed(NOW, TIMES)["town.demand"] == pytest.approx([0.3] * 8)
    assert feed.counters()[f"town.demand|mqtt:{TOPIC}:expired"] == 3


def test_values_out_of_bounds_are_dropped_and_the_gap_filled(tmp_path: Path, repo_root: Path) -> None:
    site = _site(tmp_path, repo_root)
    feed = ForecastFeed.from_site(site, T0)
    profile = ProfileForecasts(site, T0)(NOW, TIMES)
    values = [50.0] * 8
    values[3] = 500.0  # outside [0, 120] %: dropped, interpolated from its neighbours
    values[7] = float("nan")
    _publish(
        feed,
        "town.demand",
        {"issued_at": NOW, "times": TIMES, "values": [None if v != v else v for v in values]},
    )
    out = feed(NOW, TIMES)
    assert out["town.demand"][:7] == pytest.approx([0.5] * 7)
    assert out["town.demand"][7] == profile["town.demand"][7]  # end of the forecast span: next source
    counters = feed.counters()
    assert counters[f"town.demand|mqtt:{TOPIC}:out_of_bounds"] == 1
    assert counters[f"town.demand|mqtt:{TOPIC}:not_finite"] == 1
    assert counters[f"town.demand|mqtt:{TOPIC}:received"] == 1


def test_overrides_multiply_forecast_series_too(tmp_path: Path, repo_root: Path) -> None:
    site = _site(tmp_path, repo_root)
    feed = ForecastFeed.from_site(site, T0)
    _publish(
        feed, "price.natural_gas", {"issued_at": NOW, "start": NOW, "step_s": STEP, "values": [36.0] * 8}
    )
    feed.overrides = {"price.natural_gas": 3.0}
    assert feed(NOW, TIMES)["price.natural_gas"] == pytest.approx([3 * 36 / 3.6e9] * 8)


def test_profile_given_for_a_series_is_its_last_resort(tmp_path: Path, repo_root: Path) -> None:
    extra = "\nforecasts:\n  - {id: avail, series: factory_heat.available, profile: town_demand}\n"
    site = _site(tmp_path, repo_root, extra)
    feed = ForecastFeed.from_site(site, T0)
    out = feed(NOW, TIMES)
    assert out["factory_heat.available"] == ProfileForecasts(site, T0)(NOW, TIMES)["town.demand"]
    assert feed.sources()["factory_heat.available"] == ("profile:town_demand",) * len(TIMES)


def test_metrics_export_counts_steps_per_source(tmp_path: Path, repo_root: Path) -> None:
    from symtwin.runtime.metrics import Metrics

    site = _site(tmp_path, repo_root)
    feed = ForecastFeed.from_site(site, T0)
    _publish(feed, "town.demand", {"issued_at": NOW, "start": NOW, "step_s": STEP, "values": [50.0] * 4})
    feed(NOW, TIMES)
    m = Metrics()
    feed.export(m)
    assert m.value("forecast_steps", {"series": "town.demand", "source": f"mqtt:{TOPIC}"}) == 4
    assert m.value("forecast_steps", {"series": "town.demand", "source": "profile:town_demand"}) == 4
    assert m.value("forecast_alarms", {"series": "price.natural_gas"}) == 1  # nothing received yet


def test_forecast_broker_carries_the_adapters_login_and_tls(
    tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FC_TEST_MQTT_PASSWORD", "s3cret")
    mqtt = (
        "adapters:\n  mqtt:\n    {host: broker.park, port: 8883, client_id: edge, username: plant,\n"
        "     password: {env: FC_TEST_MQTT_PASSWORD}, tls: {ca: pki/ca.pem}}\n"
    )
    cfg = forecast_mqtt_config(_site(tmp_path, repo_root, FORECASTS + mqtt))
    assert cfg is not None
    assert (cfg.host, cfg.port, cfg.client_id) == ("broker.park", 8883, "edge-forecasts")
    assert (cfg.username, cfg.password) == ("plant", "s3cret")
    assert cfg.tls_ca == tmp_path / "pki" / "ca.pem"  # relative to the config file


def test_forecast_broker_from_site_and_absent_broker(tmp_path: Path, repo_root: Path) -> None:
    site = _site(
        tmp_path, repo_root, FORECASTS + "adapters:\n  mqtt: {host: 127.0.0.1, port: 1, client_id: edge}\n"
    )
    params = forecast_mqtt_config(site)
    assert params is not None
    assert (params.host, params.port, params.client_id) == ("127.0.0.1", 1, "edge-forecasts")
    assert params.username is None and params.tls_ca is None
    feed = ForecastFeed.from_site(site, T0, params)
    feed.start()  # nothing listens on port 1: paho keeps retrying in its thread, forecasts fall back
    try:
        assert feed(NOW, TIMES)["town.demand"] == ProfileForecasts(site, T0)(NOW, TIMES)["town.demand"]
    finally:
        feed.stop()


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("{id: x, series: town.demnd}", "unknown series 'town.demnd'"),
        ("{id: x, series: price.natural_gas, unit: MW}", "'MW' does not measure this series [EUR/J]"),
        ("{id: x, series: town.demand, profile: nope}", "unknown profile 'nope'"),
        ("{id: x, series: town.demand, mqtt: {topic: 'a/+/b'}}", "has a wildcard"),
        ("{id: x, series: town.demand, model: {file: none.json}}", "model file not found"),
        ("{id: x, series: town.demand, bounds: [1, 0]}", "empty or reversed"),
        (
            "{id: x, series: town.demand, csv: {path: f.csv, max_age: 0 s}}",
            "must be a positive, finite duration",
        ),
    ],
)
def test_config_checks(tmp_path: Path, repo_root: Path, entry: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _site(tmp_path, repo_root, f"\nforecasts:\n  - {entry}\n")
    assert fragment in str(exc.value)
    assert "forecasts[0]" in str(exc.value)


def test_sparkplug_forecast_on_its_topic(tmp_path: Path, repo_root: Path) -> None:
    from adapters.mqtt.sparkplug import DataType, Metric, Payload, encode_payload

    extra = FORECASTS.replace(
        f"{{topic: {GAS_TOPIC}, max_age: 2 h}}", f"{{topic: {GAS_TOPIC}, encoding: sparkplug}}"
    )
    site = _site(tmp_path, repo_root, extra)
    feed = ForecastFeed.from_site(site, T0)
    metrics = [
        Metric(name="forecast", timestamp=int((NOW + k * STEP) * 1000), datatype=DataType.DOUBLE, value=45.0)
        for k in range(8)
    ]
    feed.listeners["price.natural_gas"].on_payload(encode_payload(Payload(int(NOW * 1000), metrics)))
    assert feed(NOW, TIMES)["price.natural_gas"] == pytest.approx([45 / 3.6e9] * 8)
    assert feed.sources()["price.natural_gas"] == (f"mqtt:{GAS_TOPIC}",) * 8


def _history(end: float, steps: int) -> History:
    t = end - STEP * np.arange(steps, dtype=np.float64)[::-1]
    day = 2 * np.pi * (t % 86400.0) / 86400.0
    t_out = 275.0 + 3.0 * np.sin(day)
    load = 0.5 - 0.01 * (t_out - 275.0) + 0.05 * np.sin(day - 1.0)
    return History(t.astype(np.float64), load.astype(np.float64), t_out.astype(np.float64))


def test_model_source_between_mqtt_and_profile(tmp_path: Path, repo_root: Path) -> None:
    model = Forecaster(ForecasterParams(max_steps=8)).fit(_history(NOW - 86400.0, 9 * 96))
    extra = (
        "\nforecasts:\n  - id: town_demand\n    series: town.demand\n    bounds: [0, 1.2]\n"
        f"    mqtt: {{topic: {TOPIC}}}\n"
        "    model: {file: model.json, max_age: 2 h, temperature: outdoor_temperature}\n"
    )
    (tmp_path / "model.json").write_text(model.to_json())
    site = _site(tmp_path, repo_root, extra)

    without = ForecastFeed.from_site(site, T0)  # no history source: the model is left out
    assert without(NOW, TIMES)["town.demand"] == ProfileForecasts(site, T0)(NOW, TIMES)["town.demand"]

    feed = ForecastFeed.from_site(site, T0, history=lambda series: _history(NOW, 8 * 96))
    out = np.asarray(feed(NOW, TIMES)["town.demand"])
    assert feed.sources()["town.demand"] == ("model",) * 8
    assert np.all((out > 0.3) & (out < 0.7))
    assert ("town.demand", "model", "fallback") in {(a.series, a.source, a.kind) for a in feed.alarms()}
