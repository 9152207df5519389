"""Park assembly: names, balances over a simulated day, accuracy against a tight Radau reference, paths."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.unit.park_fixtures import small_park
from twin import Park
from twin.integrate import reference_simulate
from twin.park import ParkBuildError
from twin.spec import ConnectionSpec, UnitSpec


@pytest.fixture(scope="module")
def park() -> Park:
    return Park.from_spec(small_park())


def test_named_states_inputs_outputs(park: Park) -> None:
    assert park.n_states == 1 + 2 + (1 + 3 * 6) + 1 + 4 + 2 * 8
    assert "hx.cold_temperature[0]" in park.state_names
    assert "tank.layer_temperature[3]" in park.state_names
    assert "header.mass" in park.state_names and "header.internal_energy" in park.state_names
    for name in (
        "boiler.load_setpoint",
        "tank.charge_setpoint",
        "surplus.use_setpoint",
        "town.demand",
        "plant.demand",
        "surplus.available",
        "pipe.ground_temperature",
    ):
        assert name in park.input_names
    for name in ("header.pressure", "town.unmet", "hx.heat_flow", "pipe.outlet_temperature", "hp.cop"):
        assert name in park.output_names
    assert {s.unit for s in park.output_signals if s.name == "header.pressure"} == {"Pa"}
    assert len(park.param_names) == park.params.shape[0]
    # profiles from the spec drive the profile inputs
    assert set(park.input_profiles) == {"plant.demand", "surplus.available", "town.demand"}


def test_from_config_uses_park_spec(park: Park) -> None:
    class Site:
        def park_spec(self):  # type: ignore[no-untyped-def]
            return small_park()

    assert Park.from_config(Site()).state_names == park.state_names


def test_energy_and_mass_balances_close_over_a_day(park: Park) -> None:
    res = park.simulate(
        86400.0,
        dt_out=300.0,
        inputs={"tank.charge_setpoint": (np.array([0.0, 43200.0, 86400.0]), np.array([10.0, -10.0, 5.0]))},
    )
    assert res.energy_error < 1e-6
    assert res.mass_error < 1e-6
    assert np.all(np.isfinite(res.x))
    p = res.column("header.pressure")
    assert p.min() > 1e5 and p.max() < 20e5


def test_accuracy_against_tight_radau_reference(park: Park) -> None:
    sched = park.input_schedule()
    x0 = park.settle(sched(0.0), 4 * 3600.0)
    t_end, dt = 2 * 3600.0, 120.0
    res = park.simulate(t_end, sched, dt_out=dt, x0=x0)
    ref = reference_simulate(park, t_end, sched, dt, x0, sched.breakpoints(0.0, t_end))
    yref = np.array([park.outputs(ref[k], sched(res.t[k])) for k in range(res.t.size)])
    scale = np.maximum(np.max(np.abs(yref), axis=0), 1e-9)
    units = [s.unit for s in park.output_signals]
    for j, unit in enumerate(units):  # floor: 1e-3 of the largest output of the same unit
        scale[j] = max(scale[j], 1e-3 * max(scale[i] for i, u in enumerate(units) if u == unit))
    rel = np.max(np.abs(res.y - yref), axis=0) / scale
    assert rel.max() < 1e-3, park.output_names[int(np.argmax(rel))]


def test_step_matches_simulate_with_constant_inputs(park: Park) -> None:
    u = park.u_default
    x1 = park.step(park.x0, u, 600.0)
    res = park.simulate(600.0, {n: float(v) for n, v in zip(park.input_names, u, strict=True)}, dt_out=600.0)
    # step() keeps its solver (and step size) between calls, simulate() starts afresh: the step sequences
    # differ, so the two agree within the integration tolerance, not to rounding
    np.testing.assert_allclose(x1, res.x[-1], rtol=2e-5)


def test_plain_and_compiled_park_rhs_agree(park: Park) -> None:
    f = park.plain_rhs()
    x = park.x0 * (1 + 1e-3 * np.random.default_rng(2).standard_normal(park.n_states))
    u = park.u_default
    dx, y, b = np.empty(park.n_states), np.empty(park.n_outputs), np.empty(4)
    f(0.0, x, u, park.params, dx, y, b)
    np.testing.assert_allclose(dx, park.rhs(0.0, x, u), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(y, park.outputs(x, u), rtol=1e-9)


def test_jacobian_matches_finite_differences(park: Park) -> None:
    x, u = park.x0, park.u_default
    jac = park.jacobian(x, u)
    j = park.index("hx.cold_temperature[2]")
    h = 1e-4
    xp = x.copy()
    xp[j] += h
    col = (park.rhs(0.0, xp, u) - park.rhs(0.0, x, u)) / h
    np.testing.assert_allclose(jac[:, j], col, rtol=1e-3, atol=1e-6)


def test_parameters_are_named_and_change_the_model(park: Park) -> None:
    i = park.param_names.index("hx.ua")
    p = park.params.copy()
    p[i] *= 2.0
    x, u = park.x0, park.u_default
    assert not np.allclose(park.rhs(0.0, x, u, p), park.rhs(0.0, x, u))


def test_errors_name_the_unit() -> None:
    spec = small_park()
    bad = replace(spec, units=(*spec.units, UnitSpec("x", "no_such_model", "a", {})))
    with pytest.raises(ParkBuildError, match="no_such_model"):
        Park.from_spec(bad)
    lonely = replace(
        spec, units=(*spec.units, UnitSpec("lonely", "steam_consumer", "a", {"design_flow": 1.0}))
    )
    with pytest.raises(ParkBuildError, match="lonely"):
        Park.from_spec(lonely)
    dangling = replace(
        spec,
        connections=(*spec.connections, ConnectionSpec("ghost", "heat_out", "pipe", "hot_in", "hot_water")),
    )
    with pytest.raises(ParkBuildError, match="ghost"):
        Park.from_spec(dangling)


def test_failed_newton_shortens_the_step_and_keeps_the_result(park: Park) -> None:
    from twin.integrate import Sdirk2

    sched = park.input_schedule()
    ref = Sdirk2(park)
    x_ref = ref.advance(park.x0, 0.0, 600.0, sched, 30.0, ())
    tight = Sdirk2(park, max_newton=1)  # Newton must converge at once: steps get halved
    x = tight.advance(park.x0, 0.0, 600.0, sched, 30.0, ())
    assert tight.steps > ref.steps
    np.testing.assert_allclose(x, x_ref, rtol=2e-4)
    assert (
        abs(park.stored_energy(x) - park.stored_energy(park.x0) - tight.energy_in) < 1e-9 * tight.energy_gross
    )


def test_numpy_path_matches_compiled(park: Park) -> None:
    from twin._numpy import numpy_rhs

    f = numpy_rhs(park)
    x = park.x0 * (1 + 1e-3 * np.random.default_rng(4).standard_normal(park.n_states))
    u = park.u_default.copy()
    for charge in (15.0, -15.0):
        u[park.input_names.index("tank.charge_setpoint")] = charge
        dx, y, b = np.empty(park.n_states), np.empty(park.n_outputs), np.empty(4)
        f(0.0, x, u, park.params, dx, y, b)
        np.testing.assert_allclose(dx, park.rhs(0.0, x, u), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(y, park.outputs(x, u), rtol=1e-9)


def test_parameter_jacobian(park: Park) -> None:
    x, u = park.x0, park.u_default
    jp = park.jacobian_params(x, u, ["hx.ua", "pipe.loss_coefficient"])
    assert jp.shape == (park.n_states, 2)
    # UA moves heat only inside the exchanger; the pipe loss only inside the pipe
    hx_rows = [i for i, n in enumerate(park.state_names) if n.startswith("hx.")]
    pipe_rows = [i for i, n in enumerate(park.state_names) if n.startswith("pipe.")]
    assert np.any(jp[hx_rows, 0] != 0) and np.all(jp[pipe_rows, 0] == 0)
    assert np.any(jp[pipe_rows, 1] != 0) and np.all(jp[hx_rows, 1] == 0)
    with pytest.raises(ValueError, match="structural"):
        park.jacobian_params(x, u, ["hx.cells"])
