"""The MPC's per-interval affine map (``mpc_model.linear_step``): the numbers passed to the NLP reproduce the
RK4 discretisation exactly for any state, input and parameters, and a model that is not affine is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controllers import mpc_model as mm
from controllers.mpc import problem_from_site
from symtwin.config import load_site

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["demo.yaml", "kalundborg.yaml"])
def model(request: pytest.FixtureRequest) -> tuple[mm.MpcProblemSpec, mm.SxModel, mm.LinearStep]:
    spec = problem_from_site(load_site(ROOT / "configs" / request.param), horizon_steps=8)
    lay = mm.layout(spec)
    sx = mm.build_sx(spec, lay, mm.Hold.STEP)
    lin = mm.linear_step(sx, spec.step_s, mm.rk4_substeps(spec), mm.ramped_indices(spec, lay))
    return spec, sx, lin


def test_affine_map_matches_the_rk4_step_for_random_points(
    model: tuple[mm.MpcProblemSpec, mm.SxModel, mm.LinearStep],
) -> None:
    import casadi as ca

    spec, sx, lin = model
    lay = mm.layout(spec)
    nxt = mm.discretise(sx, spec.step_s, mm.rk4_substeps(spec), mm.ramped_indices(spec, lay))
    rk4 = ca.Function("rk4", [sx.x, sx.u, sx.p], [nxt])
    rng = np.random.default_rng(7)
    nx, nu, npar = sx.x.shape[0], sx.u.shape[0], sx.p.shape[0]
    params = rng.uniform(0.1, 2.0, size=(5, npar))
    values = lin.values(params)
    assert values.shape == (5, lin.n_values)
    for k in range(5):
        x = rng.uniform(-50.0, 100.0, nx)
        u = rng.uniform(-5.0, 5.0, nu)
        want = np.asarray(rk4(x, u, params[k])).ravel()
        got = _apply(lin, x, u, values[k])
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9 * np.max(np.abs(want)))


def _apply(lin: mm.LinearStep, x: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    import casadi as ca

    xs, us, vs = ca.SX.sym("x", lin.nx), ca.SX.sym("u", lin.nu), ca.SX.sym("v", lin.n_values)
    f = ca.Function("apply", [xs, us, vs], [lin.apply(xs, us, vs)])
    return np.asarray(f(x, u, v)).ravel()


def test_a_model_that_multiplies_two_decisions_is_refused() -> None:
    import casadi as ca

    x, u, p = ca.SX.sym("x", 2), ca.SX.sym("u", 1), ca.SX.sym("p", 1)
    rhs = ca.vertcat(-x[0] * u[0], p[0] * x[1])  # bilinear in a state and an input
    bad = mm.SxModel(x, u, p, rhs, ca.SX(1, 1), ca.SX(0, 1), ca.SX(0, 1), ())
    with pytest.raises(mm.ModelError, match="affine"):
        mm.linear_step(bad, 10.0, 2)
