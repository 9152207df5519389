"""Forecast inputs: JSON payloads, the MQTT listener's bookkeeping, a CSV file re-read on change,
profiles and the model as providers, and reading a measured history."""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path

import numpy as np
import pytest

from symtwin.forecasting.horizon import HorizonAssembler, ValidationRules
from symtwin.forecasting.model import Forecaster, ForecasterParams, History
from symtwin.forecasting.sources import (
    CsvForecastSource,
    ForecastDecodeError,
    ModelForecastSource,
    MqttForecastListener,
    ProfileForecastSource,
    decode_json_forecast,
    read_history_csv,
)
from twin.spec import Profile

T0 = 1_767_600_000.0  # 2026-01-05 08:00 UTC
H = 3600.0


def test_array_payload_is_issued_at_then_values() -> None:
    fc = decode_json_forecast(b"[1767600000, 1.5, 2.0, null]", "mqtt:x", H, scale=1e6)
    assert fc.issued_at == T0
    np.testing.assert_array_equal(fc.times_s, T0 + H * np.array([1, 2, 3]))
    assert fc.values[0] == 1.5e6 and fc.values[1] == 2.0e6 and math.isnan(fc.values[2])


def test_object_payloads_with_start_times_or_points() -> None:
    a = decode_json_forecast(
        b'{"issued_at": "2026-01-05T08:00:00Z", "start": "2026-01-05T09:00:00+00:00", "step_s": 900, '
        b'"values": [1, 2]}',
        "m",
        H,
    )
    assert a.issued_at == T0 and list(a.times_s) == [T0 + H, T0 + H + 900]
    b = decode_json_forecast(
        b'{"issued_at": 1767600000, "times": [1767603600, 1767607200], "values": [3, 4]}', "m", H
    )
    assert list(b.values) == [3.0, 4.0]
    c = decode_json_forecast(
        b'{"issued_at": 1767600000, "points": [[1767603600, 5], [1767607200, 6]]}', "m", H
    )
    assert list(c.times_s) == [T0 + H, T0 + 2 * H]
    d = decode_json_forecast(b'{"issued_at": 1767600000, "values": [1, 2]}', "m", H)
    assert list(d.times_s) == [T0 + H, T0 + 2 * H]  # start defaults to one step after the issue time


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[1767600000]",
        b'{"values": [1, 2]}',
        b'{"issued_at": 1767600000}',
        b'{"issued_at": "yesterday", "values": [1]}',
        b'{"issued_at": "2026-01-05T08:00:00", "values": [1]}',  # no UTC offset
        b'{"issued_at": 1767600000, "values": ["a"]}',
        b'{"issued_at": 1767600000, "points": [[1, 2, 3]]}',
        b'{"issued_at": 1767600000, "values": [1], "step_s": 0}',
        b'"just a string"',
    ],
)
def test_malformed_payloads_raise_a_decode_error(payload: bytes) -> None:
    with pytest.raises(ForecastDecodeError):
        decode_json_forecast(payload, "m", H)


def test_listener_sets_malformed_messages_aside_and_ignores_older_issues() -> None:
    lst = MqttForecastListener("forecast/demand", step_s=H, clock=lambda: T0)
    lst.on_payload(b"[1767600000, 1, 2]")
    lst.on_payload(b"garbage")
    lst.on_payload(b"[1767596400, 9, 9]")  # issued an hour earlier, arriving later
    fc = lst.forecast(T0, np.array([T0 + H]))
    assert fc is not None and list(fc.values) == [1.0, 2.0]
    dead = list(lst.dead_letters())
    assert len(dead) == 1 and dead[0].payload == b"garbage" and "not JSON" in dead[0].reason
    assert lst.counts["malformed"] == 1 and lst.counts["stale_arrival"] == 1 and lst.counts["received"] == 3


def write_csv(path: Path, rows: list[tuple[float, str]], mtime: float, issued: float | None = None) -> None:
    head = "time,value" + (",issued_at" if issued is not None else "")
    lines = [f"{t:.0f},{v}" + (f",{issued:.0f}" if issued is not None else "") for t, v in rows]
    path.write_text("\n".join([head, *lines]) + "\n")
    os.utime(path, (mtime, mtime))


def test_csv_source_rereads_the_file_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "demand.csv"
    src = CsvForecastSource(path, scale=1e6)
    assert src.forecast(T0, np.array([T0])) is None  # no file yet
    write_csv(path, [(T0 + H, "1.0"), (T0 + 2 * H, "")], mtime=T0 - 100)
    first = src.forecast(T0, np.array([T0]))
    assert first is not None and first.issued_at == T0 - 100  # no issued_at column: the file's mtime
    assert first.values[0] == 1.0e6 and math.isnan(first.values[1])
    assert src.forecast(T0, np.array([T0])) is first and src.counts["reloaded"] == 1  # unchanged: not re-read
    write_csv(path, [(T0 + H, "3.0"), (T0 + 2 * H, "4.0")], mtime=T0 - 10, issued=T0 - 50)
    second = src.forecast(T0, np.array([T0]))
    assert second is not None and second.issued_at == T0 - 50 and list(second.values) == [3.0e6, 4.0e6]
    path.write_text("time,value\n2026-01-05T09:00:00Z,notanumber\n")
    os.utime(path, (T0, T0))
    assert src.forecast(T0, np.array([T0])) is second  # a broken file keeps the last good forecast
    assert src.counts["malformed"] == 1


def test_profile_source_is_the_always_available_last_resort() -> None:
    prof = Profile("demand", np.array([0.0, 86400.0]), np.array([1.0, 2.0]), period=86400.0)
    src = ProfileForecastSource(prof, run_start_s=T0, scale=1e6)
    fc = src.forecast(T0, np.array([T0, T0 + 43200.0]))
    assert fc is not None and fc.issued_at == T0 and list(fc.values) == [1.0e6, 1.5e6]


def test_the_model_as_a_provider_fills_a_finer_mpc_grid_from_the_last_measurement() -> None:
    rng = np.random.default_rng(1)
    n = 40 * 24
    t = T0 - H * n + H * np.arange(1, n + 1)  # last sample at T0
    hours = (np.arange(n) + 8) % 24
    temp = 270.0 + 4 * np.sin(2 * np.pi * np.arange(n) / 200) + rng.normal(0, 0.3, n)
    load = 1e6 + 0.2e6 * (290.15 - temp) * (1 + 0.2 * ((hours > 6) & (hours < 18)))
    hist = History(np.asarray(t, dtype=np.float64), load, temp)
    f = Forecaster(ForecasterParams(max_steps=4)).fit(hist)
    src = ModelForecastSource(f, lambda: hist)
    grid = T0 + 900.0 * np.arange(1, 25)  # 6 h at 15 min: longer than the model's 4 h
    prof = ProfileForecastSource(Profile("d", np.array([0.0]), np.array([7e6])), run_start_s=T0)
    asm = HorizonAssembler([(src, ValidationRules(max_age_s=2 * H)), (prof, ValidationRules())])
    h = asm.assemble(T0 + 120.0, grid)
    assert h.sources[:16] == ("model",) * 16 and h.sources[16:] == ("profile:d",) * 8
    assert abs(h.values[0] - (0.75 * load[-1] + 0.25 * f.predict(hist, T0, 1)[0])) < 1.0


def test_history_csv_with_relative_times_is_aligned_to_its_weekday_column(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hist.csv"
    rows = ["Time,Day,Hour,Toa,qload"] + [
        f"{k * 3600},7,{k % 24},{-2 + k * 0.01},{1e6 + k}" for k in range(48)
    ]
    rows[5] = "14400,7,4,,"  # a missing row's values
    path.write_text("\n".join(rows) + "\n")
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()  # a Thursday; the file says Sunday
    hist = read_history_csv(path, "qload", "Toa", start_s=start)
    assert dt.datetime.fromtimestamp(hist.times_s[0], dt.UTC).isoweekday() == 7
    assert "moving the start back 4 day(s)" in caplog.text
    assert hist.step_s == 3600.0 and len(hist.times_s) == 48
    assert math.isnan(hist.load_w[4]) and math.isnan(hist.t_out_k[4])
    assert hist.t_out_k[0] == pytest.approx(271.15)
    with pytest.raises(ForecastDecodeError, match="no column 'nope'"):
        read_history_csv(path, "nope", "Toa", start_s=start)


def sparkplug_forecast(issued_ms: int | None, points: list[tuple[int | None, float | None]]) -> bytes:
    from adapters.mqtt.sparkplug import DataType, Metric, Payload, encode_payload

    metrics = [Metric(name="forecast", timestamp=t, datatype=DataType.DOUBLE, value=v) for t, v in points]
    metrics.append(Metric(name="other", timestamp=issued_ms, datatype=DataType.DOUBLE, value=99.0))
    return encode_payload(Payload(timestamp=issued_ms, metrics=metrics, seq=0))


def test_sparkplug_payload_carries_issue_time_and_timestamped_points() -> None:
    from symtwin.forecasting.sources import PayloadEncoding, decode_sparkplug_forecast

    ms = int(T0 * 1000)
    raw = sparkplug_forecast(ms, [(ms + 3_600_000, 1.5), (ms + 7_200_000, None)])
    fc = decode_sparkplug_forecast(raw, "mqtt:sp", "forecast", scale=1e6)
    assert fc.issued_at == T0 and list(fc.times_s) == [T0 + H, T0 + 2 * H]
    assert fc.values[0] == 1.5e6 and math.isnan(fc.values[1])
    lst = MqttForecastListener("spBv1.0/park/DDATA/utility/forecaster", encoding=PayloadEncoding.SPARKPLUG)
    lst.on_payload(raw)
    lst.on_payload(sparkplug_forecast(None, [(ms, 1.0)]))  # no issue time
    lst.on_payload(b"[1767600000, 1, 2]")  # JSON on a Sparkplug topic
    got = lst.forecast(T0, np.array([T0]))
    assert got is not None and got.issued_at == T0
    assert lst.counts["malformed"] == 2
    with pytest.raises(ForecastDecodeError, match="without a timestamp"):
        decode_sparkplug_forecast(sparkplug_forecast(ms, [(None, 1.0)]), "m", "forecast")
    with pytest.raises(ForecastDecodeError, match="no metric named"):
        decode_sparkplug_forecast(raw, "m", "nope")
