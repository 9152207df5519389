"""Bad forecast input is rejected or repaired by a stated rule, counted, and never reaches the MPC as is."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symtwin.forecasting.horizon import (
    AlarmKind,
    Forecast,
    ForecastHorizon,
    HorizonAssembler,
    HorizonIncomplete,
    ValidationRules,
)
from symtwin.forecasting.horizon import FloatArray as Arr

NOW = 1_767_600_000.0  # 2026-01-05 08:00 UTC
STEP = 3600.0
GRID = np.asarray(NOW + STEP * np.arange(1, 13), dtype=np.float64)  # the MPC's 12-step horizon
PROFILE_VALUE = 5.0e6


@dataclass
class Fixed:
    """A provider that returns one given forecast (or None)."""

    name: str
    fc: Forecast | None

    def forecast(self, now: float, times_s: Arr) -> Forecast | None:
        return self.fc


@dataclass
class Flat:
    """The last resort: a flat profile covering any horizon."""

    name: str = "profile:demand"

    def forecast(self, now: float, times_s: Arr) -> Forecast | None:
        return Forecast(self.name, now, np.asarray(times_s), np.full(len(times_s), PROFILE_VALUE))


RULES = ValidationRules(max_age_s=2 * 3600.0, max_gap_s=3 * 3600.0, bounds=(0.0, 50e6))


def mqtt(values: list[float], *, issued: float = NOW - 60.0, times: list[float] | None = None) -> Forecast:
    t = np.asarray(times if times is not None else [NOW + STEP * (k + 1) for k in range(len(values))])
    return Forecast("mqtt:forecast/demand", issued, t, np.asarray(values, dtype=float))


def assemble(fc: Forecast | None, rules: ValidationRules = RULES) -> tuple[HorizonAssembler, ForecastHorizon]:
    asm = HorizonAssembler([(Fixed("mqtt:forecast/demand", fc), rules), (Flat(), ValidationRules())])
    return asm, asm.assemble(NOW, GRID)


def good_values() -> list[float]:
    return [1.0e6 + 1e5 * k for k in range(12)]


def test_a_good_forecast_is_used_as_is_for_every_step() -> None:
    asm, h = assemble(mqtt(good_values()))
    np.testing.assert_allclose(h.values, good_values())
    assert set(h.sources) == {"mqtt:forecast/demand"}
    assert h.alarms == () and asm.counters == {}


def test_an_expired_forecast_falls_back_to_the_next_source_and_raises_an_alarm() -> None:
    asm, h = assemble(mqtt(good_values(), issued=NOW - 3 * 3600.0))
    assert set(h.sources) == {"profile:demand"}
    np.testing.assert_allclose(h.values, PROFILE_VALUE)
    assert [a.kind for a in h.alarms if a.source.startswith("mqtt")] == [AlarmKind.EXPIRED]
    assert asm.counters["mqtt:forecast/demand:expired"] == 1


def test_nan_values_are_dropped_and_short_gaps_interpolated() -> None:
    values = good_values()
    values[4] = math.nan
    values[5] = math.inf
    asm, h = assemble(mqtt(values))
    assert np.all(np.isfinite(h.values))
    # steps 4 and 5 lie between valid points 3 h apart (≤ max_gap): linear between steps 3 and 6
    np.testing.assert_allclose(h.values[4:6], [1.4e6, 1.5e6])
    assert set(h.sources) == {"mqtt:forecast/demand"}
    assert asm.counters["mqtt:forecast/demand:not_finite"] == 2
    assert asm.counters["mqtt:forecast/demand:gap_interpolated"] == 2


def test_a_long_gap_is_filled_from_the_next_source_not_bridged() -> None:
    values = good_values()
    for k in range(3, 8):
        values[k] = math.nan
    asm, h = assemble(mqtt(values))
    assert h.sources[3:8] == ("profile:demand",) * 5
    np.testing.assert_allclose(h.values[3:8], PROFILE_VALUE)
    assert h.sources[:3] == ("mqtt:forecast/demand",) * 3 and h.sources[8:] == ("mqtt:forecast/demand",) * 4
    assert asm.counters["mqtt:forecast/demand:gap_uncovered"] == 5
    assert any(a.kind is AlarmKind.FALLBACK for a in h.alarms)


def test_a_forecast_too_short_covers_its_part_and_the_rest_comes_from_the_next_source() -> None:
    rules = ValidationRules(max_age_s=7200.0, bounds=(0.0, 50e6), expected_points=12)
    asm, h = assemble(mqtt(good_values()[:8]), rules)
    assert h.sources[:8] == ("mqtt:forecast/demand",) * 8
    assert h.sources[8:] == ("profile:demand",) * 4
    assert asm.counters["mqtt:forecast/demand:wrong_length"] == 1


def test_a_forecast_too_long_is_cut_to_the_expected_length() -> None:
    rules = ValidationRules(max_age_s=7200.0, bounds=(0.0, 50e6), expected_points=6)
    asm, h = assemble(mqtt(good_values()), rules)
    assert h.sources[:6] == ("mqtt:forecast/demand",) * 6 and h.sources[6:] == ("profile:demand",) * 6
    assert asm.counters["mqtt:forecast/demand:wrong_length"] == 1


def test_times_and_values_of_different_lengths_are_rejected() -> None:
    fc = Forecast("mqtt:forecast/demand", NOW - 60, GRID[:5], np.ones(6))
    asm, h = assemble(fc)
    assert set(h.sources) == {"profile:demand"}
    assert asm.counters["mqtt:forecast/demand:length_mismatch"] == 1
    assert any(a.kind is AlarmKind.REJECTED for a in h.alarms)


def test_out_of_order_timestamps_are_sorted_with_their_values() -> None:
    order = [3, 0, 11, 5, 1, 2, 4, 6, 7, 8, 10, 9]
    asm, h = assemble(mqtt([good_values()[i] for i in order], times=[float(GRID[i]) for i in order]))
    np.testing.assert_allclose(h.values, good_values())
    assert asm.counters["mqtt:forecast/demand:reordered"] == 1


def test_duplicate_timestamps_are_rejected() -> None:
    times = [float(t) for t in GRID]
    times[4] = times[3]
    asm, h = assemble(mqtt(good_values(), times=times))
    assert set(h.sources) == {"profile:demand"}
    assert asm.counters["mqtt:forecast/demand:duplicate_times"] == 1


def test_values_outside_bounds_are_dropped() -> None:
    values = good_values()
    values[2] = -5.0e6
    values[9] = 1e12
    asm, h = assemble(mqtt(values))
    assert np.all((h.values >= 0) & (h.values <= 50e6))
    assert asm.counters["mqtt:forecast/demand:out_of_bounds"] == 2


def test_a_forecast_issued_in_the_future_is_rejected() -> None:
    asm, h = assemble(mqtt(good_values(), issued=NOW + 3600.0))
    assert set(h.sources) == {"profile:demand"}
    assert asm.counters["mqtt:forecast/demand:issued_in_future"] == 1


def test_a_provider_that_raises_does_not_stop_assembly() -> None:
    class Broken:
        name = "model"

        def forecast(self, now: float, times_s: Arr) -> Forecast | None:
            raise RuntimeError("history store unreachable")

    asm = HorizonAssembler([(Broken(), RULES), (Flat(), ValidationRules())])
    h = asm.assemble(NOW, GRID)
    assert set(h.sources) == {"profile:demand"}
    assert asm.counters["model:provider_error"] == 1
    assert h.alarms[0].kind is AlarmKind.UNAVAILABLE


def test_no_last_resort_means_an_error_not_a_horizon_with_holes() -> None:
    asm = HorizonAssembler([(Fixed("mqtt:x", mqtt(good_values()[:4])), RULES)])
    with pytest.raises(HorizonIncomplete):
        asm.assemble(NOW, GRID)


def test_a_failing_source_is_logged_once_and_its_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    provider = Fixed("mqtt:forecast/demand", mqtt(good_values(), issued=NOW - 5 * 3600.0))
    asm = HorizonAssembler([(provider, RULES), (Flat(), ValidationRules())])
    with caplog.at_level(logging.INFO, logger="symtwin.forecasting.horizon"):
        for _ in range(3):
            asm.assemble(NOW, GRID)
        provider.fc = mqtt(good_values())
        asm.assemble(NOW, GRID)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("expired" in m for m in messages) == 1
    assert sum("recovered" in m for m in messages) == 1
    assert asm.counters["mqtt:forecast/demand:expired"] == 3


values_st = st.lists(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 5e7)), min_size=0, max_size=20
)


@settings(max_examples=60, deadline=None)
@given(
    values=values_st,
    shuffle=st.randoms(use_true_random=False),
    age=st.floats(-7200, 20000),
    dup=st.booleans(),
)
def test_whatever_arrives_the_mpc_gets_finite_in_bounds_values_for_every_step(
    values: list[float], shuffle: object, age: float, dup: bool
) -> None:
    times = [NOW - age + STEP * (k + 1) for k in range(len(values))]
    shuffle.shuffle(times)  # type: ignore[attr-defined]
    if dup and len(times) > 1:
        times[1] = times[0]
    fc = Forecast("mqtt:forecast/demand", NOW - age, np.asarray(times), np.asarray(values, dtype=float))
    asm = HorizonAssembler([(Fixed("mqtt:forecast/demand", fc), RULES), (Flat(), ValidationRules())])
    h = asm.assemble(NOW, GRID)
    assert h.values.shape == GRID.shape
    assert np.all(np.isfinite(h.values)) and np.all((h.values >= 0) & (h.values <= 50e6))
    assert set(h.sources) <= {"mqtt:forecast/demand", "profile:demand"}
    if age > RULES.max_age_s or age < -RULES.future_tolerance_s:
        assert set(h.sources) == {"profile:demand"}
