"""DH pipe kernel: transport delay rho A L / m_dot, steady loss against the analytic exponential, wall node."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from twin.units import dh_pipe

NAMES = dh_pipe.PARAMS


def _p(**kw: float) -> tuple[np.ndarray, dict[str, float]]:
    d = {
        "length": 1000.0,
        "inner_diameter": 0.2,
        "loss_coefficient": 0.3,
        "wall_heat_capacity": 2e4,
        "wall_conductance": 500.0,
        "segments": 50.0,
        "ground_temperature": 281.15,
    }
    d.update(kw)
    return np.array([d[k] for k in NAMES]), d


def _steady_outlet(d: dict[str, float], p: np.ndarray, t_in: float, m: float) -> float:
    s = int(d["segments"])
    nx = 2 * s
    y = np.empty(3)

    def f(x: np.ndarray) -> np.ndarray:
        dx = np.empty(nx)
        dh_pipe.dh_pipe(x, 0, p, 0, t_in, m, d["ground_temperature"], dx, y, 0)
        return dx

    x = np.full(nx, 350.0)
    f0 = f(x)
    jac = np.empty((nx, nx))
    for j in range(nx):
        xp = x.copy()
        xp[j] += 1.0
        jac[:, j] = f(xp) - f0
    x -= np.linalg.solve(jac, f0)
    return float(x[s - 1])


@pytest.mark.parametrize("segments", [100, 400])
def test_steady_loss_matches_analytic_exponential(segments: int) -> None:
    # a long, poorly insulated pipe so that the exponent is about 0.3 and the check has teeth
    p, d = _p(length=20000.0, loss_coefficient=1.0, wall_conductance=50.0, segments=float(segments))
    m, t_in = 15.0, 363.15
    exact = dh_pipe.steady_outlet(d, t_in, m, d["ground_temperature"])
    drop_exact = t_in - exact
    assert 10.0 < drop_exact < 40.0
    got = _steady_outlet(d, p, t_in, m)
    # upwind FV: (1 + a/S)^-S against exp(-a); relative error of the drop ~ a / (2 S)
    assert abs((t_in - got) - drop_exact) / drop_exact < 0.6 / segments


def test_outlet_front_is_delayed_by_the_transport_time() -> None:
    # no wall exchange: the outlet's mean arrival time of an inlet step is rho A L / m exactly
    p, d = _p(wall_conductance=0.0, loss_coefficient=0.0, segments=80.0)
    m = 20.0
    tau = dh_pipe.transport_delay(d, m)
    assert tau == pytest.approx(978.0 * math.pi * 0.01 * 1000.0 / 20.0)
    s = int(d["segments"])
    y = np.empty(3)

    def f(_t: float, x: np.ndarray) -> np.ndarray:
        dx = np.empty(2 * s)
        dh_pipe.dh_pipe(x, 0, p, 0, 1.0, m, 0.0, dx, y, 0)
        return dx

    # The model is linear, dx/dt = A x + b; without wall exchange the water states form their own block,
    # so the response is exact: x(t) = x_ss + expm(A t) (x0 - x_ss).
    b = f(0.0, np.zeros(2 * s))[:s]
    a = np.column_stack([f(0.0, np.eye(2 * s)[j])[:s] - b for j in range(s)])
    x_ss = -np.linalg.solve(a, b)
    t = np.linspace(0.0, 4.0 * tau, 4001)
    step = expm(a * (t[1] - t[0]))
    out = np.empty(t.size)
    dev = -x_ss
    for k in range(t.size):
        out[k] = x_ss[s - 1] + dev[s - 1]
        dev = step @ dev
    mean_delay = float(np.sum(1.0 - out[:-1]) * (t[1] - t[0]))
    assert mean_delay == pytest.approx(tau, rel=0.01)
    # and the front crosses half height near tau (the FV chain smears it by about tau / sqrt(S))
    t_half = float(np.interp(0.5, out, t))
    assert abs(t_half - tau) < 0.1 * tau


def test_wall_node_smears_the_front() -> None:
    # FIELD note: without the wall's heat capacity the front is far too steep; with it the rise is slower
    def rise_time(wall_c: float) -> float:
        p, d = _p(wall_heat_capacity=wall_c, segments=60.0)
        s = int(d["segments"])
        y = np.empty(3)

        def f(_t: float, x: np.ndarray) -> np.ndarray:
            dx = np.empty(2 * s)
            dh_pipe.dh_pipe(x, 0, p, 0, 1.0, 20.0, 0.0, dx, y, 0)
            return dx

        f0 = f(0.0, np.zeros(2 * s))
        jac = np.column_stack([f(0.0, np.eye(2 * s)[j]) - f0 for j in range(2 * s)])
        t = np.linspace(0.0, 6000.0, 3001)
        out = solve_ivp(
            f, (0.0, t[-1]), np.zeros(2 * s), method="BDF", t_eval=t, rtol=1e-7, atol=1e-9, jac=jac
        ).y[s - 1]
        return float(np.interp(0.8, out, t) - np.interp(0.2, out, t))

    assert rise_time(8e4) > 1.2 * rise_time(2e3)


def test_energy_balance_of_the_kernel() -> None:
    p, d = _p(segments=30.0)
    rng = np.random.default_rng(5)
    x = 330.0 + 30.0 * rng.random(60)
    dx = np.empty(60)
    y = np.empty(3)
    m, t_in, tg = 12.0, 360.0, 281.15
    t_out, loss = dh_pipe.dh_pipe(x, 0, p, 0, t_in, m, tg, dx, y, 0)
    w = np.array(dh_pipe.energy_weights(d))
    cp = dh_pipe.ops.CP_WATER
    assert float(w @ dx) == pytest.approx(m * cp * (t_in - t_out) - loss, rel=1e-12)
