"""Counter-flow heat exchanger kernel: steady state against the epsilon-NTU relation (Incropera eq. 11.30)."""

from __future__ import annotations

import numpy as np
import pytest

from twin.units import heat_exchanger as hxm

UA = 1e5  # [W/K]
T_HOT, T_COLD = 360.0, 300.0  # inlets [K]


def _params(n: int) -> np.ndarray:
    # ua, cells, hot_volume, cold_volume, wall_heat_capacity, hot_flow, cold_flow
    return np.array([UA, float(n), 0.5, 0.5, 1e5, 1.0, 1.0])


def steady_effectiveness(n: int, ntu: float, cr: float) -> float:
    """Effectiveness of the FV model at steady state (solves the linear system f(x) = 0 exactly)."""
    cp = hxm.ops.CP_WATER
    c_min = UA / ntu
    m_hot = c_min / cp  # hot side is C_min
    m_cold = c_min / cr / cp if cr > 0 else 1e6 * c_min / cp
    p = _params(n)
    nx = 1 + 3 * n
    x = np.full(nx, 330.0)
    x[0] = 1.0
    y = np.empty(3)

    def f(xx: np.ndarray) -> np.ndarray:
        dx = np.empty(nx)
        hxm.heat_exchanger(xx, 0, p, 0, T_HOT, m_hot, T_COLD, m_cold, dx, y, 0)
        return dx[1:]

    f0 = f(x)
    jac = np.empty((nx - 1, nx - 1))
    for j in range(1, nx):
        xp = x.copy()
        xp[j] += 1.0
        jac[:, j - 1] = f(xp) - f0  # the model is linear in the temperatures
    x[1:] -= np.linalg.solve(jac, f0)
    assert np.max(np.abs(f(x))) < 1e-6 * np.max(np.abs(f0))
    t_hot_out = x[1 + 3 * (n - 1)]
    return (T_HOT - t_hot_out) / (T_HOT - T_COLD)


@pytest.mark.parametrize("ntu", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("cr", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_steady_state_matches_epsilon_ntu_within_1_percent_at_100_cells(ntu: float, cr: float) -> None:
    exact = hxm.effectiveness(ntu, cr)
    eps = steady_effectiveness(100, ntu, cr)
    assert abs(eps - exact) / exact < 0.01


@pytest.mark.parametrize(("ntu", "cr"), [(2.0, 0.5), (3.0, 1.0), (1.0, 0.0)])
def test_error_shrinks_as_cells_increase(ntu: float, cr: float) -> None:
    exact = hxm.effectiveness(ntu, cr)
    errors = [abs(steady_effectiveness(n, ntu, cr) - exact) for n in (10, 30, 100)]
    assert errors[0] > errors[1] > errors[2]
    # upwind FV is first order: ten times the cells, roughly a tenth of the error
    assert errors[2] < errors[0] / 5


def test_published_coarse_grid_value() -> None:
    # FIELD check: N = 10 gives about 0.735 against the exact 0.775 at NTU 2, Cr 0.5.
    assert hxm.effectiveness(2.0, 0.5) == pytest.approx(0.7746, abs=1e-4)
    assert steady_effectiveness(10, 2.0, 0.5) == pytest.approx(0.735, abs=0.005)


def test_balanced_exchanger_is_handled_exactly() -> None:
    # Cr = 1 uses NTU / (1 + NTU); the general formula is 0/0 there, and must approach it continuously.
    assert hxm.effectiveness(2.0, 1.0) == pytest.approx(2.0 / 3.0, rel=1e-15)
    assert hxm.effectiveness(2.0, 1.0 - 1e-7) == pytest.approx(2.0 / 3.0, rel=1e-6)
    assert np.isfinite(steady_effectiveness(50, 2.0, 1.0))


def test_energy_balance_of_the_kernel() -> None:
    n = 20
    p = _params(n)
    rng = np.random.default_rng(3)
    x = np.concatenate([[0.9], 300.0 + 60.0 * rng.random(3 * n)])
    dx = np.empty_like(x)
    y = np.empty(3)
    m_h, m_c = 2.0, 3.0
    hxm.heat_exchanger(x, 0, p, 0, T_HOT, m_h, T_COLD, m_c, dx, y, 0)
    w = np.array(
        hxm.energy_weights({"cells": n, "hot_volume": 0.5, "cold_volume": 0.5, "wall_heat_capacity": 1e5})
    )
    stored = float(w @ dx)
    cp = hxm.ops.CP_WATER
    flows = m_h * cp * (T_HOT - y[0]) + m_c * cp * (T_COLD - y[1])
    assert stored == pytest.approx(flows, rel=1e-12)
