"""Adaptive SDIRK3 / SDIRK2 (twin.integrate): error control converges with rtol, third order pays, input
jumps land on step ends, balances close with adaptive steps, park.step is a function of its arguments, the
compiled LU refactor."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.unit.park_fixtures import small_park
from twin import Park
from twin.integrate import GAMMA, Sdirk2, reference_simulate


@pytest.fixture(scope="module")
def park() -> Park:
    return Park.from_spec(small_park())


@pytest.fixture(scope="module")
def start(park: Park) -> np.ndarray:
    return park.settle(park.u_default, 4 * 3600.0)


def _jumps(park: Park) -> dict[str, Any]:
    """Setpoints that jump at times off the output grid (step profiles)."""
    from twin.spec import Profile

    t = np.array([0.0, 437.5, 1234.5])
    return {
        "boiler.load_setpoint": Profile("b", t, np.array([0.5, 0.8, 0.4]), interpolation="step"),
        "tank.charge_setpoint": Profile("c", t, np.array([0.0, 8.0, -6.0]), interpolation="step"),
    }


def _rel_error(park: Park, x: np.ndarray, ref: np.ndarray) -> float:
    """Max over states of max_t |x - ref| / max_t |ref|."""
    scale = np.maximum(np.max(np.abs(ref), axis=0), 1e-9)
    return float(np.max(np.max(np.abs(x - ref), axis=0) / scale))


@pytest.fixture(scope="module")
def reference(park: Park, start: np.ndarray) -> np.ndarray:
    sched = park.input_schedule(_jumps(park))
    return reference_simulate(park, 1300.0, sched, 100.0, start, sched.breakpoints(0.0, 1300.0))


def test_error_shrinks_with_rtol_roughly_in_proportion(
    park: Park, start: np.ndarray, reference: np.ndarray
) -> None:
    errors, steps = [], []
    for rtol in (1e-3, 1e-4, 1e-6):
        res = park.simulate(1300.0, _jumps(park), dt_out=100.0, x0=start, rtol=rtol)
        errors.append(_rel_error(park, res.x, reference))
        steps.append(res.steps)
    # SDIRK3 with a second-order estimate: the global error goes about like rtol. (Where the header's
    # relief valve closes inside a step the RMS norm lets that one state take sqrt(n) rtol.)
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3 * errors[0]
    assert steps[0] < steps[1] < steps[2]
    assert errors[2] < 1e-6


def test_third_order_takes_fewer_steps_for_more_accuracy(
    park: Park, start: np.ndarray, reference: np.ndarray
) -> None:
    sched = park.input_schedule(_jumps(park))
    brk = sched.breakpoints(0.0, 1300.0)
    out = {}
    for order in (2, 3):
        solver = Sdirk2(park, rtol=1e-6, order=order)
        x = start.copy()
        xs = [x.copy()]
        for k in range(13):  # the reference's output grid, 100 s
            x = solver.advance(x, 100.0 * k, 100.0 * (k + 1), sched, 300.0, brk)
            xs.append(x.copy())
        out[order] = (_rel_error(park, np.array(xs), reference), solver.steps)
    (err2, steps2), (err3, steps3) = out[2], out[3]
    assert steps3 < 0.5 * steps2
    assert err3 < err2
    with pytest.raises(ValueError, match="order"):
        Sdirk2(park, rtol=1e-6, order=4)


def test_input_jumps_land_on_step_ends(park: Park, start: np.ndarray, reference: np.ndarray) -> None:
    sched = park.input_schedule(_jumps(park))
    assert {437.5, 1234.5} <= set(sched.breakpoints(0.0, 3000.0))
    solver = Sdirk2(park, rtol=1e-6)
    x = start.copy()
    # integrate right up to the jump, then across it: the state at the jump is the left limit
    x_at = solver.advance(x, 0.0, 1234.5, sched, 300.0, sched.breakpoints(0.0, 1234.5))
    x_end = solver.advance(x_at, 1234.5, 1300.0, sched, 300.0, ())
    res = park.simulate(1300.0, sched, dt_out=1300.0, x0=start, rtol=1e-6)
    # one run with the jump inside an interval equals the run split at the jump: it was a step end
    np.testing.assert_allclose(res.x[-1], x_end, rtol=1e-6)
    # and a jump smeared over a step would leave a first-order error, far above this
    ref12 = reference[12]  # t = 1200 s, between the jumps
    res_grid = park.simulate(1200.0, sched, dt_out=100.0, x0=start, rtol=1e-6)
    assert _rel_error(park, res_grid.x[-1:], ref12[None, :]) < 1e-6


def test_balances_close_with_adaptive_steps(park: Park, start: np.ndarray) -> None:
    for rtol in (1e-2, 1e-5):
        res = park.simulate(3 * 3600.0, _jumps(park), dt_out=600.0, x0=start, rtol=rtol)
        assert res.energy_error < 1e-12
        assert res.mass_error < 1e-12
    assert res.rejected >= 0


def test_step_depends_on_its_arguments_only(park: Park, start: np.ndarray) -> None:
    u = park.u_default.copy()
    a = park.step(start, u, 60.0)
    park.step(a, u * 1.1, 7.0)  # a different history in between
    b = park.step(start, u, 60.0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(park.step(start, u, 0.0), start)


def test_compiled_refactorization_matches_superlu(park: Park, start: np.ndarray) -> None:
    solver = Sdirk2(park)
    solver._start(0.0, start, park.u_default, 10.0)
    jp, ji, color, ncolor = solver._pattern
    f0 = park.rhs(0.0, start, park.u_default)
    park._module.jac(0.0, start, park.u_default, park.params, f0, color, ncolor, jp, ji, solver._jx)
    solver._analyse(10.0)
    assert solver._lu is not None
    lp, li, lx, up, ui, ux, pr, pc, ipc = solver._lu
    n = park.n_states
    ok = park._module.refactor(
        25.0 * GAMMA, jp, ji, solver._jx, pr, ipc, lp, li, lx, up, ui, ux, np.empty(n), np.empty(n, np.int64)
    )
    assert ok
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    mat = sp.identity(n) - 25.0 * GAMMA * sp.csc_matrix((solver._jx, ji, jp), shape=(n, n))
    b = np.random.default_rng(3).standard_normal(n)
    out = np.empty(n)
    park._module.lu_solve(b, lp, li, lx, up, ui, ux, pr, pc, np.empty(n), out)
    np.testing.assert_allclose(out, splu(mat.tocsc()).solve(b), rtol=1e-8, atol=1e-12)
