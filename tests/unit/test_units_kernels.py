"""Every unit kernel, run through the plain-Python path and the numba path by one test class.

The plain path is the kernel's own source with the plain ``ops`` back end (never compiled); both paths must
give the same derivatives and outputs, and each satisfies the physics checks below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from twin.units import (
    _ops,
    boiler,
    dh_pipe,
    heat_demand,
    heat_exchanger,
    heat_pump,
    steam_consumer,
    steam_header,
    storage_tank,
    surplus_heat,
)
from twin.units._backend import retarget

RNG = np.random.default_rng(11)


def _tank_p() -> np.ndarray:
    # volume, height, nodes, loss, ambient, t_max, t_min, max_flow, tau_mix
    return np.array([500.0, 12.0, 8.0, 1000.0, 283.15, 368.15, 318.15, 20.0, 100.0])


def _header_p() -> np.ndarray:
    # volume, p_nom, p_max, p_min, heat_loss, ambient, vent coefficient
    return np.array([20.0, 10e5, 12e5, 8e5, 100.0, 283.15, 1e-4])


# (kernel, argument builder) pairs; the builder returns fresh argument lists (outputs zeroed)
def _cases() -> dict[str, tuple[Any, Callable[[], list[Any]]]]:
    hx_p = np.array([1e5, 10.0, 0.5, 0.5, 1e5, 2.0, 3.0])
    pipe_p = np.array([1000.0, 0.2, 0.3, 2e4, 500.0, 12.0, 281.15])
    x_hx = np.concatenate([[0.95], 300 + 60 * RNG.random(30)])
    x_pipe = 330 + 30 * RNG.random(24)
    x_tank = 320 + 40 * RNG.random(8)  # includes inversions
    m0, u0 = steam_header.initial({"nominal_pressure": 10e5, "volume": 20.0})
    chp_p = np.array(
        [54.0, 60e6, 200e6, 0.125, 10e5, 453.15, 378.15, 0.3, 600.0, 3e-4, 0.9, 0.0, 2.78e6, 4.4e5]
    )
    gas_p = np.array([20e6, 1.0, 10e5, 363.15, 378.15, 0.3, 120.0, 1e-2, 0.92, 0.0, 2.78e6, 4.4e5])
    hp_p = np.array([10e6, 0.5, 297.15, 10.0, 353.15, 0.2, 300.0, 1e-3])
    return {
        "heat_exchanger": (
            heat_exchanger.heat_exchanger,
            lambda: [x_hx, 0, hx_p, 0, 360.0, 2.0, 300.0, 3.0, np.zeros(31), np.zeros(3), 0],
        ),
        "dh_pipe": (
            dh_pipe.dh_pipe,
            lambda: [x_pipe, 0, pipe_p, 0, 360.0, 12.0, 281.15, np.zeros(24), np.zeros(3), 0],
        ),
        "storage_tank": (
            storage_tank.storage_tank,
            lambda: [x_tank, 0, _tank_p(), 0, 5.0, 365.0, 2.0, 318.0, 283.15, np.zeros(8), np.zeros(4), 0],
        ),
        "steam_header": (
            steam_header.steam_header,
            lambda: [
                np.array([m0, u0 * 1.01]),
                0,
                _header_p(),
                0,
                10.5e5,
                460.0,
                2.8e6,
                4.0,
                4.0 * 2.79e6,
                3.5,
                np.zeros(2),
                np.zeros(4),
                0,
            ],
        ),
        "steam_header.state": (steam_header.state, lambda: [np.array([m0, u0 * 1.01]), 0, _header_p(), 0]),
        "chp": (boiler.chp, lambda: [np.array([0.6]), 0, chp_p, 0, 0.9, 0.3, np.zeros(1), np.zeros(4), 0]),
        "gas": (boiler.gas, lambda: [np.array([0.2]), 0, gas_p, 0, 0.1, np.zeros(1), np.zeros(3), 0]),
        "heat_pump": (
            heat_pump.heat_pump,
            lambda: [np.array([0.5]), 0, hp_p, 0, 0.7, 297.15, np.zeros(1), np.zeros(3), 0],
        ),
        "surplus_heat": (
            surplus_heat.surplus_heat,
            lambda: [np.array([5e6, 368.15, 313.15]), 0, 0.8, 0.9, np.zeros(2), 0],
        ),
        "steam_consumer": (
            steam_consumer.steam_consumer,
            lambda: [np.array([8.0, 0.8, 363.15, 3.8e5]), 0, 0.7, 9.5e5, 2.8e6, 10e5, np.zeros(3), 0],
        ),
        "heat_demand.flow": (
            heat_demand.flow,
            lambda: [np.array([12e6, 345.15, 360.15, 318.15, 0.02]), 0, 0.6, 352.0, 318.15],
        ),
        "heat_demand": (heat_demand.heat_demand, lambda: [6e6, 40.0, 350.0, 318.15, np.zeros(5), 0]),
    }


CASES = _cases()


@pytest.fixture(params=["plain", "numba"])
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(kernel: Any, args: list[Any], path: str) -> tuple[Any, list[Any]]:
    fn = retarget(kernel, _ops.PLAIN) if path == "plain" else kernel
    result = fn(*args)
    return result, args


class TestKernelPaths:
    """One class, two paths: the same cases through the plain and the compiled kernel."""

    @pytest.mark.parametrize("name", sorted(CASES))
    def test_same_results_on_both_paths(self, name: str, path: str) -> None:
        kernel, build = CASES[name]
        ref_result, ref_args = run(kernel, build(), "numba" if path == "plain" else "plain")
        result, args = run(kernel, build(), path)
        np.testing.assert_allclose(
            np.asarray(result, dtype=float), np.asarray(ref_result, dtype=float), rtol=1e-12
        )
        for a, b in zip(args, ref_args, strict=True):
            if isinstance(a, np.ndarray):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)

    def test_plain_path_is_not_compiled(self, path: str) -> None:
        fn = (
            retarget(heat_exchanger.heat_exchanger, _ops.PLAIN)
            if path == "plain"
            else heat_exchanger.heat_exchanger
        )
        assert hasattr(fn, "py_func") == (path == "numba" and _ops.COMPILED)

    def test_tank_conserves_energy_and_mixes_inversions(self, path: str) -> None:
        _k, build = CASES["storage_tank"]
        args = build()
        (heat, gain), args = run(storage_tank.storage_tank, args, path)
        dx = args[9]
        w = np.array(storage_tank.energy_weights({"nodes": 8, "volume": 500.0}))
        assert float(w @ dx) == pytest.approx(heat + gain, rel=1e-10)
        # a warm layer under a cold one: without flows the mixing moves heat upwards, fast
        x = np.array([330.0, 360.0] + [330.0] * 6)
        dx = np.zeros(8)
        run(
            storage_tank.storage_tank,
            [x, 0, _tank_p(), 0, 0.0, 0.0, 0.0, 0.0, 283.15, dx, np.zeros(4), 0],
            path,
        )
        assert dx[0] > 0.1 and dx[1] < -0.1

    def test_boiler_lag_slew_limit_and_minimum_load(self, path: str) -> None:
        lr = retarget(boiler.load_rate, _ops.PLAIN) if path == "plain" else boiler.load_rate
        assert lr(0.5, 0.6, 0.3, 100.0, 1.0) == pytest.approx(0.1 / 100.0)  # first-order lag
        assert lr(0.5, 1.0, 0.3, 10.0, 1e-3) == pytest.approx(1e-3)  # slew limited
        assert lr(0.5, 0.2, 0.3, 100.0, 1.0) == pytest.approx((0.3 - 0.5) / 100.0)  # held at min load
        assert lr(0.5, 0.1, 0.3, 100.0, 1.0) == pytest.approx(-0.5 / 100.0)  # off below half min load

    def test_heat_pump_cop_is_carnot_fraction(self, path: str) -> None:
        cop = retarget(heat_pump.cop, _ops.PLAIN) if path == "plain" else heat_pump.cop
        assert cop(0.5, 353.15, 287.15) == pytest.approx(0.5 * 353.15 / 66.0)
        _k, build = CASES["heat_pump"]
        heat, args = run(heat_pump.heat_pump, build(), path)
        y = args[7]
        assert heat == pytest.approx(5e6)
        assert y[1] == pytest.approx(heat / y[2])

    def test_header_pressure_from_if97(self, path: str) -> None:
        from twin import steam

        p0, t0 = 10e5, 460.0
        rho, u = float(steam.rho_pt(p0, t0)), float(steam.u_pt(p0, t0))
        state = retarget(steam_header.state, _ops.PLAIN) if path == "plain" else steam_header.state
        pres, temp, h = state(np.array([rho * 20.0, rho * 20.0 * u]), 0, _header_p(), 0)
        assert pres == pytest.approx(p0, rel=1e-7)
        assert temp == pytest.approx(t0, rel=1e-7)
        assert h == pytest.approx(float(steam.h_pt(p0, t0)), rel=1e-7)

    def test_consumer_valve_law(self, path: str) -> None:
        fn = (
            retarget(steam_consumer.steam_consumer, _ops.PLAIN)
            if path == "plain"
            else steam_consumer.steam_consumer
        )
        y = np.zeros(3)
        p = np.array([8.0, 0.8, 363.15, 3.8e5])
        assert fn(p, 0, 0.5, 10e5, 2.8e6, 10e5, y, 0) == pytest.approx(4.0)
        assert fn(p, 0, 0.5, 5.5e5, 2.8e6, 10e5, y, 0) == pytest.approx(4.0 * np.sqrt(0.5))
        assert y[2] == pytest.approx(0.8 * y[0])
