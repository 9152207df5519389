"""Park assembly: one state vector and one compiled right-hand side from a :class:`twin.spec.ParkSpec`.

Network physics (decisions documented in ``twin/README.md``):

* Steam side: every steam network (units joined by steam connections) has exactly one
  ``steam_header``. Producers (``chp_boiler``, ``gas_boiler`` with medium 1) push steam at their
  IF97 enthalpy into the header; ``steam_consumer`` units draw through their valve law at the header
  pressure; the header integrates mass M and internal energy U.
* District-heating side: every hot-water network (units joined by hot-water / waste-heat connections
  around a ``heat_demand``) is a supply-line energy balance. The demand node sets the flow m from its
  demand and the supply temperature arriving at it (the pipe outlet, a state). The return water at
  T_return (minus what discharges the tank) plus the tank's charge return from its bottom layer forms
  the plant flow; it passes the cold sides of the network's heat exchangers in series, then takes up
  the lumped heat of the other producers (CHP heat, hot-water boilers, heat pumps, surplus heat fed
  straight in) and the tank's discharge, giving the supply temperature; the tank's charge flow is
  taken from it at that temperature and the rest enters the pipe (if any) to the demand node.
  Heat-exchanger hot sides are fed by the ``surplus_heat`` stream connected to them.

Energy (water: cp (T - 273.15); steam: U) and steam mass are linear in the states, and the boundary
terms (producer heat, steam in/out, return and supply water, losses) are computed alongside the
derivatives, so the balances close to rounding error with the integrator in ``twin.integrate``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from twin import _codegen
from twin.catalog import UNIT_MODELS
from twin.spec import ParkSpec, Profile, UnitSpec
from twin.units import (
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
from twin.units._ops import T_REF

log = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]

_PARAMS: dict[str, tuple[str, ...]] = {
    "chp_boiler": boiler.CHP_PARAMS,
    "gas_boiler": boiler.GAS_PARAMS,
    "heat_pump": heat_pump.PARAMS,
    "surplus_heat": surplus_heat.PARAMS,
    "heat_exchanger": heat_exchanger.PARAMS,
    "storage_tank": storage_tank.PARAMS,
    "dh_pipe": dh_pipe.PARAMS,
    "heat_demand": heat_demand.PARAMS,
    "steam_header": steam_header.PARAMS,
    "steam_consumer": steam_consumer.PARAMS,
}
_OUTPUTS: dict[str, tuple[str, ...]] = {
    "chp_boiler": boiler.CHP_OUTPUTS,
    "gas_boiler": boiler.GAS_OUTPUTS,
    "heat_pump": heat_pump.OUTPUTS,
    "surplus_heat": surplus_heat.OUTPUTS,
    "heat_exchanger": heat_exchanger.OUTPUTS,
    "storage_tank": storage_tank.OUTPUTS,
    "dh_pipe": dh_pipe.OUTPUTS,
    "heat_demand": heat_demand.OUTPUTS,
    "steam_header": steam_header.OUTPUTS,
    "steam_consumer": steam_consumer.OUTPUTS,
}
_HOT_PRODUCERS = {"chp_boiler", "gas_boiler", "heat_pump", "surplus_heat"}


class ParkBuildError(ValueError):
    """The park's units or connections cannot be assembled; the message names the unit and the fix."""


@dataclass(frozen=True)
class Signal:
    """A named state, input or output: ``"<unit>.<quantity>"`` or ``"<unit>.<quantity>[i]"``."""

    name: str
    unit: str


@dataclass
class _Unit:
    spec: UnitSpec
    params: dict[str, float]
    xo: int = 0
    nx: int = 0
    po: int = 0
    yo: int = 0
    inputs: dict[str, int] = field(default_factory=dict)


@dataclass
class SimResult:
    """Result of :meth:`Park.simulate`: times [s], states x [n_t, n_x], outputs y [n_t, n_y], inputs u,
    and the energy/mass balance check."""

    t: Array
    x: Array
    y: Array
    u: Array
    state_names: list[str]
    output_names: list[str]
    input_names: list[str]
    energy_error: float  # |E_end - E_0 - integral of boundary terms| / integral of |terms|
    mass_error: float
    steps: int
    rejected: int = 0  # steps the error test (or Newton) turned down

    def column(self, name: str) -> Array:
        """One named state, output or input over time."""
        for names, data in (
            (self.output_names, self.y),
            (self.state_names, self.x),
            (self.input_names, self.u),
        ):
            if name in names:
                return data[:, names.index(name)]
        raise KeyError(name)


InputValue = float | Profile | tuple[npt.ArrayLike, npt.ArrayLike] | Callable[[float], float]


class Park:
    """An assembled park: named states, inputs, outputs and parameters, one compiled right-hand side.

    Build with :meth:`from_spec` (or :meth:`from_config` for an object with ``park_spec()``).
    ``rhs(t, x, u, p)`` and ``jacobian(x, u, p)`` give f and df/dx for estimators; ``simulate`` and
    ``step`` integrate with the L-stable SDIRK schemes of ``twin.integrate`` (adaptive third order with a
    tolerance, fixed-step second order without).
    """

    def __init__(self, spec: ParkSpec, units: list[_Unit], body: list[str], extra: dict[str, Any]) -> None:
        self.spec = spec
        self._units = units
        self.state_signals: list[Signal] = extra["states"]
        self.input_signals: list[Signal] = extra["inputs"]
        self.output_signals: list[Signal] = extra["outputs"]
        self.param_names: list[str] = extra["param_names"]
        self.params: Array = np.asarray(extra["p"], dtype=float)
        self.x0: Array = np.asarray(extra["x0"], dtype=float)
        self.u_default: Array = np.asarray(extra["u0"], dtype=float)
        self.input_profiles: dict[str, Profile] = extra["profiles"]
        self._e_weight: Array = np.asarray(extra["e_weight"], dtype=float)
        self._e_offset: Array = np.asarray(extra["e_offset"], dtype=float)
        self._m_weight: Array = np.asarray(extra["m_weight"], dtype=float)
        self._body = body
        self.n_states = len(self.state_signals)
        self.n_outputs = len(self.output_signals)
        self.n_inputs = len(self.input_signals)
        self._module = _codegen.build_module(spec.name, self.n_states, self.n_outputs, body)
        self._pattern: (
            tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], int] | None
        ) = None

    # ----------------------------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, site: Any) -> Park:
        """Build from an application config object exposing ``park_spec() -> ParkSpec``."""
        return cls.from_spec(site.park_spec())

    @classmethod
    def from_spec(cls, spec: ParkSpec) -> Park:
        return _Builder(spec).build()

    # ----------------------------------------------------------------------------------------- names
    @property
    def state_names(self) -> list[str]:
        return [s.name for s in self.state_signals]

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.input_signals]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.output_signals]

    def index(self, name: str) -> int:
        """Index of a named state (or input, or output: whichever list holds it; states first)."""
        for names in (self.state_names, self.input_names, self.output_names):
            if name in names:
                return names.index(name)
        raise KeyError(name)

    # ----------------------------------------------------------------------------------- evaluation
    def _p(self, p: npt.ArrayLike | None) -> Array:
        return self.params if p is None else np.asarray(p, dtype=float)

    def rhs(self, t: float, x: npt.ArrayLike, u: npt.ArrayLike, p: npt.ArrayLike | None = None) -> Array:
        """dx/dt [state unit / s] at state ``x``, inputs ``u`` and parameters ``p`` (default the park's)."""
        dx = np.empty(self.n_states)
        y = np.empty(self.n_outputs)
        b = np.empty(4)
        self._module.rhs(
            float(t), np.asarray(x, dtype=float), np.asarray(u, dtype=float), self._p(p), dx, y, b
        )
        return dx

    def outputs(self, x: npt.ArrayLike, u: npt.ArrayLike, p: npt.ArrayLike | None = None) -> Array:
        """Named outputs (``output_names``) at state ``x`` and inputs ``u``."""
        dx = np.empty(self.n_states)
        y = np.empty(self.n_outputs)
        b = np.empty(4)
        self._module.rhs(0.0, np.asarray(x, dtype=float), np.asarray(u, dtype=float), self._p(p), dx, y, b)
        return y

    def balance_terms(self, x: npt.ArrayLike, u: npt.ArrayLike) -> Array:
        """[net energy in W, gross energy W, net steam mass in kg/s, gross mass kg/s] across the boundary."""
        dx = np.empty(self.n_states)
        y = np.empty(self.n_outputs)
        b = np.empty(4)
        self._module.rhs(0.0, np.asarray(x, dtype=float), np.asarray(u, dtype=float), self.params, dx, y, b)
        return b

    def stored_energy(self, x: npt.ArrayLike) -> float:
        """Energy stored in the park [J] relative to water at 273.15 K (steam: U)."""
        return float(self._e_weight @ (np.asarray(x, dtype=float) - self._e_offset))

    def stored_mass(self, x: npt.ArrayLike) -> float:
        """Steam mass held in headers [kg] (water volumes are constant)."""
        return float(self._m_weight @ np.asarray(x, dtype=float))

    def sparsity(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
        """Jacobian pattern as CSC (indptr, indices) plus a column coloring (color per column, count)."""
        if self._pattern is None:
            self._pattern = self._cached_pattern()
        return self._pattern

    def cache_file(self, kind: str) -> Path:
        """A file beside the generated module for data derived from this park (its source, x0, default
        inputs and parameters), e.g. the Jacobian pattern or the LU pivot order."""
        import hashlib

        key = hashlib.sha256(
            b"".join(np.ascontiguousarray(a).tobytes() for a in (self.x0, self.u_default, self.params))
        ).hexdigest()[:16]
        return Path(self._module.__file__ or "").with_suffix(f".{kind}-{key}.npz")

    def _cached_pattern(
        self,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
        """The probed pattern, kept beside the generated module (keyed by its source, x0, inputs and
        parameters): probing costs ~1,600 rhs calls, a noticeable part of a second process's start."""
        from twin.integrate import probe_pattern

        path = self.cache_file("pattern")
        try:
            with np.load(path) as z:
                return z["indptr"], z["indices"], z["color"], int(z["ncolor"])
        except (OSError, KeyError, ValueError):
            pass
        pattern = probe_pattern(self)
        try:
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, indptr=pattern[0], indices=pattern[1], color=pattern[2], ncolor=pattern[3])
            os.replace(tmp, path)
        except OSError as exc:  # a read-only cache only costs the probing next time
            log.debug("pattern cache not written: %s", exc)
        return pattern

    def jacobian_sparse(
        self, t: float, x: npt.ArrayLike, u: npt.ArrayLike, p: npt.ArrayLike | None = None
    ) -> Any:
        """df/dx as a scipy CSC matrix (colored finite differences over the compiled rhs)."""
        import scipy.sparse as sp

        indptr, indices, color, ncolor = self.sparsity()
        xa = np.asarray(x, dtype=float)
        ua = np.asarray(u, dtype=float)
        pa = self._p(p)
        f0 = self.rhs(t, xa, ua, pa)
        data = np.empty(indices.shape[0])
        self._module.jac(float(t), xa, ua, pa, f0, color, ncolor, indptr, indices, data)
        return sp.csc_matrix((data, indices, indptr), shape=(self.n_states, self.n_states))

    def jacobian(
        self, x: npt.ArrayLike, u: npt.ArrayLike, p: npt.ArrayLike | None = None, t: float = 0.0
    ) -> Array:
        """df/dx as a dense array (for estimators)."""
        return np.asarray(self.jacobian_sparse(t, x, u, p).toarray())

    def jacobian_params(
        self,
        x: npt.ArrayLike,
        u: npt.ArrayLike,
        names: list[str],
        p: npt.ArrayLike | None = None,
        t: float = 0.0,
    ) -> Array:
        """df/dp [n_states x len(names)] for the named parameters (central differences), e.g.
        ``["refinery_hx.ua", "dh_main.loss_coefficient"]``; structural parameters are not allowed."""
        pa = self._p(p).copy()
        cols = []
        for name in names:
            local = name.split(".", 1)[-1]
            if local in ("cells", "segments", "nodes", "medium") or local.startswith("_"):
                raise ValueError(f"{name}: structural or derived parameters have no derivative")
            i = self.param_names.index(name)
            h = 1e-6 * max(abs(pa[i]), 1e-6)
            hi, lo = pa.copy(), pa.copy()
            hi[i] += h
            lo[i] -= h
            cols.append((self.rhs(t, x, u, hi) - self.rhs(t, x, u, lo)) / (2 * h))
        return np.column_stack(cols) if cols else np.empty((self.n_states, 0))

    def plain_rhs(self) -> Callable[..., None]:
        """The same right-hand side as plain Python (never compiled): ``f(t, x, u, p, dx, y, b)``."""
        from twin.units._backend import retarget
        from twin.units._ops import PLAIN

        return retarget(self._module._rhs, PLAIN)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------------------------- inputs
    def input_schedule(self, inputs: Mapping[str, InputValue] | None = None) -> InputSchedule:
        """Inputs over time: defaults, then the spec's profiles, then ``inputs`` (by input name)."""
        sched = InputSchedule(self.input_names, self.u_default)
        for name, prof in self.input_profiles.items():
            sched.set(name, prof)
        for name, value in (inputs or {}).items():
            if name not in sched.names:
                raise KeyError(f"unknown input {name!r}; inputs are: {', '.join(self.input_names)}")
            sched.set(name, value)
        return sched

    # ---------------------------------------------------------------------------------- integration
    def simulate(
        self,
        t_end: float,
        inputs: Mapping[str, InputValue] | InputSchedule | None = None,
        dt_out: float = 60.0,
        x0: npt.ArrayLike | None = None,
        t0: float = 0.0,
        h_max: float = 300.0,
        progress: Callable[[float], None] | None = None,
        rtol: float | None = None,
    ) -> SimResult:
        """Integrate from ``t0`` to ``t_end`` [s]; sample states, outputs and inputs every ``dt_out`` [s].

        ``inputs`` maps input names to a constant, a :class:`Profile`, ``(times, values)`` or a callable
        of t; unnamed inputs follow the spec's profiles or their defaults. Steps are sized by the local
        error estimate (``rtol``, default ``twin.integrate.DEFAULT_RTOL``), at most ``h_max`` [s], and end
        on output times and input breakpoints. ``progress(fraction)`` is called as output samples are done.
        """
        from twin.integrate import DEFAULT_RTOL, Sdirk2

        sched = inputs if isinstance(inputs, InputSchedule) else self.input_schedule(inputs)
        x = self.x0.copy() if x0 is None else np.array(x0, dtype=float)
        n_out = math.floor((t_end - t0) / dt_out + 1e-9) + 1
        ts = t0 + dt_out * np.arange(n_out)
        edges = np.unique(np.concatenate([ts, sched.breakpoints(t0, ts[-1])]))
        u_right = sched.table(edges)
        u_left = sched.table(edges, left=True)
        out_at = np.searchsorted(edges, ts)
        rows = -np.ones(edges.shape[0], dtype=np.int64)
        rows[out_at] = np.arange(n_out)
        xs = np.empty((n_out, self.n_states))
        ys = np.empty((n_out, self.n_outputs))
        us = u_right[out_at]
        solver = Sdirk2(self, rtol=DEFAULT_RTOL if rtol is None else float(rtol))
        e0 = self.stored_energy(x)
        m0 = self.stored_mass(x)
        xs[0], ys[0] = x, self.outputs(x, us[0])
        # without a progress callback the whole run is one compiled call; with one, ~100 chunks
        chunk = edges.shape[0] if progress is None else max(1, n_out // 100)
        k = 0
        while k < n_out - 1:
            k1 = min(k + chunk, n_out - 1)
            sl = slice(int(out_at[k]), int(out_at[k1]) + 1)
            solver.run(x, edges[sl], u_right[sl], u_left[sl], h_max, rows[sl], xs, ys)
            k = k1
            if progress is not None:
                progress(k / (n_out - 1))
        e_err = abs(self.stored_energy(x) - e0 - solver.energy_in) / max(solver.energy_gross, 1e-30)
        m_err = abs(self.stored_mass(x) - m0 - solver.mass_in) / max(solver.mass_gross, 1e-30)
        return SimResult(
            np.asarray(ts, dtype=float),
            xs,
            ys,
            us,
            self.state_names,
            self.output_names,
            self.input_names,
            e_err,
            m_err,
            solver.steps,
            solver.rejected,
        )

    def settle(
        self, u: npt.ArrayLike | None = None, duration: float = 6 * 3600.0, x0: npt.ArrayLike | None = None
    ) -> Array:
        """State after ``duration`` [s] with inputs ``u`` held (default: the defaults): a consistent start."""
        ua = self.u_default if u is None else np.asarray(u, dtype=float)
        return self.step(self.x0 if x0 is None else x0, ua, duration, h_max=600.0)

    def step(
        self, x: npt.ArrayLike, u: npt.ArrayLike, dt: float, h_max: float = 300.0, rtol: float | None = None
    ) -> Array:
        """Advance state ``x`` by ``dt`` [s] with inputs ``u`` held constant (for the live service).

        Adaptive steps (local error ``rtol``, default ``twin.integrate.DEFAULT_RTOL``). The solver is kept
        between calls (no set-up, no SuperLU), but each call starts with a fresh Jacobian and step size, so
        the result depends on the arguments only."""
        from twin.integrate import DEFAULT_RTOL, Sdirk2

        tol = DEFAULT_RTOL if rtol is None else float(rtol)
        solver = getattr(self, "_step_solver", None)
        if solver is None or solver.rtol != tol:
            solver = Sdirk2(self, rtol=tol)
            self._step_solver = solver
        xa = np.array(x, dtype=float)
        if dt <= 0.0:
            return xa
        ua = np.asarray(u, dtype=float)
        table = np.vstack([ua, ua])
        solver.run(xa, np.array([0.0, float(dt)]), table, table, h_max, fresh=True)
        return xa


def _at(prof: Profile, left: bool = False) -> Callable[[float], float]:
    def value(t: float) -> float:
        return float(prof.at(t - 1e-6 * max(1.0, abs(t)) if left else t))

    return value


class InputSchedule:
    """Input vector as a function of time from constants, profiles, arrays or callables."""

    def __init__(self, names: list[str], defaults: Array) -> None:
        self.names = list(names)
        self._const = np.array(defaults, dtype=float)
        self._var: dict[int, Callable[[float], float]] = {}
        self._left: dict[int, Callable[[float], float]] = {}
        self._profiles: dict[int, Profile] = {}
        self._breaks: list[Array] = []

    def set(self, name: str, value: InputValue) -> None:
        i = self.names.index(name)
        self._var.pop(i, None)
        self._left.pop(i, None)
        self._profiles.pop(i, None)
        if isinstance(value, tuple):
            value = Profile(name, np.asarray(value[0], dtype=float), np.asarray(value[1], dtype=float))
        if isinstance(value, Profile):
            prof = value
            self._profiles[i] = prof
            self._var[i] = _at(prof)
            if prof.interpolation == "step":
                self._left[i] = _at(prof, left=True)
            self._breaks.append(np.asarray(prof.times, dtype=float))
        elif callable(value):
            self._var[i] = value
        else:
            self._const[i] = float(value)

    def __call__(self, t: float, left: bool = False) -> Array:
        """Inputs at ``t`` [s]; ``left=True``: the limit from the left (before a step profile jumps)."""
        u = self._const.copy()
        for i, f in self._var.items():
            u[i] = f(t)
        if left:
            for i, f in self._left.items():
                u[i] = f(t)
        return u

    def table(self, times: Array, left: bool = False) -> Array:
        """Inputs at each of ``times`` [s] as rows (vectorised over profiles)."""
        out = np.tile(self._const, (times.shape[0], 1))
        for i, f in self._var.items():
            prof = self._profiles.get(i)
            if prof is not None:
                tt = (
                    times - 1e-6 * np.maximum(1.0, np.abs(times))
                    if left and prof.interpolation == "step"
                    else times
                )
                out[:, i] = prof.at(tt)
            else:
                out[:, i] = [f(float(t)) for t in times]
        return out

    def breakpoints(self, t0: float, t1: float) -> Array:
        """Times in (t0, t1) where an input may have a kink or a jump (profile sample times)."""
        if not self._breaks:
            return np.empty(0)
        allb = np.unique(np.concatenate(self._breaks))
        return allb[(allb > t0) & (allb < t1)]


# ======================================================================================= the builder
class _Builder:
    def __init__(self, spec: ParkSpec) -> None:
        self.spec = spec
        self.units: dict[str, _Unit] = {}
        for us in spec.units:
            model = UNIT_MODELS.get(us.model)
            if model is None or us.model not in _PARAMS:
                raise ParkBuildError(
                    f"unit {us.name!r}: unknown model {us.model!r}; known: {', '.join(_PARAMS)}"
                )
            params = {p.name: float(p.default) for p in model.params if p.default is not None}
            params.update({k: float(v) for k, v in us.params.items()})
            missing = [p.name for p in model.params if p.name not in params]
            if missing:
                raise ParkBuildError(f"unit {us.name!r} ({us.model}): missing parameters {missing}")
            self.units[us.name] = _Unit(us, params)
        self.states: list[Signal] = []
        self.x0: list[float] = []
        self.e_weight: list[float] = []
        self.e_offset: list[float] = []
        self.m_weight: list[float] = []
        self.inputs: list[Signal] = []
        self.u0: list[float] = []
        self.outputs: list[Signal] = []
        self.p: list[float] = []
        self.param_names: list[str] = []
        self.profiles: dict[str, Profile] = {}
        self.body: list[str] = []

    # -- helpers ------------------------------------------------------------------------------------
    def model(self, name: str) -> str:
        return self.units[name].spec.model

    def of_model(self, *models: str) -> list[str]:
        return [n for n, u in self.units.items() if u.spec.model in models]

    def add_state(
        self, unit: str, qty: str, unit_of: str, x0: float, ew: float = 0.0, eo: float = 0.0, mw: float = 0.0
    ) -> None:
        self.states.append(Signal(f"{unit}.{qty}", unit_of))
        self.x0.append(x0)
        self.e_weight.append(ew)
        self.e_offset.append(eo)
        self.m_weight.append(mw)

    def add_input(self, unit: str, qty: str, default: float) -> str:
        u = self.units[unit]
        q = UNIT_MODELS[u.spec.model].quantity(qty)
        assert q is not None, (unit, qty)
        name = f"{unit}.{qty}"
        u.inputs[qty] = len(self.inputs)
        self.inputs.append(Signal(name, q.unit))
        self.u0.append(default)
        prof_name = u.spec.profiles.get(qty)
        if prof_name is not None:
            prof = self.spec.profiles.get(prof_name)
            if prof is None:
                raise ParkBuildError(f"unit {unit!r}: profile {prof_name!r} for {qty!r} is not defined")
            self.profiles[name] = prof
        return f"u[{u.inputs[qty]}]"

    def neighbours(self, unit: str, port: str | None = None) -> list[tuple[str, str, str]]:
        """(other unit, other port, own port) for connections touching ``unit`` (optionally one port)."""
        out = []
        for c in self.spec.connections:
            if c.source == unit and (port is None or c.source_port == port):
                out.append((c.target, c.target_port, c.source_port))
            if c.target == unit and (port is None or c.target_port == port):
                out.append((c.source, c.source_port, c.target_port))
        return out

    # -- build ---------------------------------------------------------------------------------------
    def build(self) -> Park:
        for c in self.spec.connections:
            for end in (c.source, c.target):
                if end not in self.units:
                    raise ParkBuildError(
                        f"connection {c.source}.{c.source_port} -> {c.target}.{c.target_port}: "
                        f"unknown unit {end!r}"
                    )
        self._layout()
        self._producers()
        self._steam_networks()
        self._dh_networks()
        self._balance_check()
        extra = dict(
            states=self.states,
            inputs=self.inputs,
            outputs=self.outputs,
            param_names=self.param_names,
            p=self.p,
            x0=self.x0,
            u0=self.u0,
            profiles=self.profiles,
            e_weight=self.e_weight,
            e_offset=self.e_offset,
            m_weight=self.m_weight,
        )
        units = list(self.units.values())
        return Park(self.spec, units, self.body, extra)

    def _layout(self) -> None:
        """Parameters (with derived ones), states, outputs, in the order of the spec's units."""
        for name, u in self.units.items():
            model = u.spec.model
            prm = u.params
            if model == "chp_boiler":
                prm.update(boiler.steam_enthalpies(prm, prm["steam_pressure"], prm["steam_temperature"]))
            elif model == "gas_boiler":
                prm.update(boiler.steam_enthalpies(prm, prm["steam_pressure"], None))
            elif model == "steam_consumer":
                from twin.if97 import load_plain_kernels

                if97 = load_plain_kernels()

                prm["_h_condensate"] = float(if97.h_pt(2e5, min(prm["condensate_temperature"], 393.0)))
            elif model == "steam_header":
                prm["_vent_coefficient"] = 0.0  # set once the producers are known
            u.po = len(self.p)
            for pn in _PARAMS[model]:
                self.param_names.append(f"{name}.{pn}")
                self.p.append(float(prm[pn]))
            u.yo = len(self.outputs)
            cat = UNIT_MODELS[model]
            for on in _OUTPUTS[model]:
                q = cat.quantity(on)
                assert q is not None, (model, on)
                self.outputs.append(Signal(f"{name}.{on}", q.unit))
            u.xo = len(self.states)
            self._states_of(name, u)
            u.nx = len(self.states) - u.xo

    def _states_of(self, name: str, u: _Unit) -> None:
        model, prm = u.spec.model, u.params
        if model in ("chp_boiler", "gas_boiler", "heat_pump"):
            self.add_state(name, "load", "1", 0.5)
        elif model == "steam_header":
            m0, u0 = steam_header.initial(prm)
            self.add_state(name, "mass", "kg", m0, mw=1.0)
            self.add_state(name, "internal_energy", "J", u0, ew=1.0)
        elif model == "heat_exchanger":
            ew = heat_exchanger.energy_weights(prm)
            self.add_state(name, "fouling", "1", 1.0)
            t_hot, t_cold = self._hx_guess(name)
            for k in range(int(prm["cells"])):
                f = (k + 0.5) / int(prm["cells"])
                th = t_hot + (t_cold - t_hot) * 0.5 * f
                tc = t_cold + (t_hot - t_cold) * 0.5 * (1 - f)
                self.add_state(name, f"hot_temperature[{k}]", "K", th, ew[1 + 3 * k], T_REF)
                self.add_state(name, f"wall_temperature[{k}]", "K", 0.5 * (th + tc), ew[2 + 3 * k], T_REF)
                self.add_state(name, f"cold_temperature[{k}]", "K", tc, ew[3 + 3 * k], T_REF)
        elif model == "storage_tank":
            ew = storage_tank.energy_weights(prm)
            n = int(prm["nodes"])
            for i in range(n):
                t = prm["max_temperature"] + (prm["min_temperature"] - prm["max_temperature"]) * i / max(
                    n - 1, 1
                )
                self.add_state(name, f"layer_temperature[{i}]", "K", t, ew[i], T_REF)
        elif model == "dh_pipe":
            ew = dh_pipe.energy_weights(prm)
            s = int(prm["segments"])
            t0 = self._pipe_guess(name)
            for k in range(s):
                self.add_state(name, f"water_temperature[{k}]", "K", t0, ew[k], T_REF)
            for k in range(s):
                self.add_state(name, f"wall_temperature[{k}]", "K", t0, ew[s + k], T_REF)

    def _hx_guess(self, name: str) -> tuple[float, float]:
        hot = [n for n, _p, own in self.neighbours(name, "hot_in") if self.model(n) == "surplus_heat"]
        t_hot = self.units[hot[0]].params["temperature"] if hot else 363.15
        return t_hot, 318.15

    def _pipe_guess(self, name: str) -> float:
        for n, _p, _own in self.neighbours(name, "hot_out"):
            if self.model(n) == "heat_demand":
                d = self.units[n].params
                return 0.5 * (d["min_supply_temperature"] + d["max_supply_temperature"])
        return 353.15

    # -- producers: boilers, heat pumps, surplus heat --------------------------------------------------
    def _producers(self) -> None:
        b = self.body
        for name in self.of_model("chp_boiler", "gas_boiler", "heat_pump", "surplus_heat"):
            u = self.units[name]
            model, prm = u.spec.model, u.params
            b.append(f"# {name} ({model})")
            if model == "chp_boiler":
                lsp = self.add_input(name, "load_setpoint", 0.5)
                split = 0.0 if prm["heat_capacity"] <= 0 else 0.2
                ssp = self.add_input(name, "heat_split_setpoint", split)
                b.append(
                    f"ms_{u.xo}, hs_{u.xo}, q_{u.xo} = boiler.chp(x, {u.xo}, p, {u.po}, {lsp}, {ssp}, dx, y, {u.yo})"
                )
            elif model == "gas_boiler":
                lsp = self.add_input(name, "load_setpoint", 0.5)
                b.append(
                    f"ms_{u.xo}, hs_{u.xo}, q_{u.xo} = boiler.gas(x, {u.xo}, p, {u.po}, {lsp}, dx, y, {u.yo})"
                )
            elif model == "heat_pump":
                lsp = self.add_input(name, "load_setpoint", 0.5)
                tsrc = self.add_input(name, "source_temperature", prm["source_temperature"])
                b.append(
                    f"q_{u.xo} = heat_pump.heat_pump(x, {u.xo}, p, {u.po}, {lsp}, {tsrc}, dx, y, {u.yo})"
                )
            else:
                avail = self.add_input(name, "available", 1.0)
                use = self.add_input(name, "use_setpoint", 1.0)
                b.append(
                    f"qs_{u.po}, mss_{u.po} = surplus_heat.surplus_heat(p, {u.po}, {avail}, {use}, y, {u.yo})"
                )

    # -- steam -------------------------------------------------------------------------------------------
    def _component(self, start: str, media: set[str]) -> set[str]:
        seen = {start}
        todo = [start]
        while todo:
            cur = todo.pop()
            for c in self.spec.connections:
                if c.medium not in media:
                    continue
                for a, z in ((c.source, c.target), (c.target, c.source)):
                    if a == cur and z not in seen:
                        seen.add(z)
                        todo.append(z)
        return seen

    def _steam_networks(self) -> None:
        b = self.body
        claimed: set[str] = set()
        for hname in self.of_model("steam_header"):
            h = self.units[hname]
            found = self._component(hname, {"steam"})
            comp = [n for n in self.units if n in found]  # spec order: the generated source is deterministic
            others = [n for n in comp if n != hname and self.model(n) == "steam_header"]
            if others:
                raise ParkBuildError(
                    f"steam headers {hname!r} and {others[0]!r} are connected directly; "
                    "one steam network has one header"
                )
            producers = [
                n
                for n in comp
                if self.model(n) == "chp_boiler"
                or (self.model(n) == "gas_boiler" and self.units[n].params["medium"] >= 0.5)
            ]
            consumers = [n for n in comp if self.model(n) == "steam_consumer"]
            claimed.update(consumers)
            cap = sum(
                self.units[n].params.get("steam_capacity", 0.0)
                for n in producers
                if self.model(n) == "chp_boiler"
            )
            for n in producers:
                if self.model(n) == "gas_boiler":
                    prm = self.units[n].params
                    cap += prm["capacity"] / (prm["_h_steam"] - prm["_h_feed"])
            vent = max(cap, 1.0) / 0.5e5
            h.params["_vent_coefficient"] = vent
            self.p[h.po + _PARAMS["steam_header"].index("_vent_coefficient")] = vent
            b.append(f"# steam network of {hname}")
            b.append(f"pr_{h.xo}, tp_{h.xo}, hh_{h.xo} = steam_header.state(x, {h.xo}, p, {h.po})")
            min_ = " + ".join(f"ms_{self.units[n].xo}" for n in producers) or "0.0"
            hin = " + ".join(f"ms_{self.units[n].xo} * hs_{self.units[n].xo}" for n in producers) or "0.0"
            b.append(f"min_{h.xo} = {min_}")
            b.append(f"hin_{h.xo} = {hin}")
            b.append(f"mout_{h.xo} = 0.0")
            pnom = f"p[{h.po + 1}]"
            for cn in consumers:
                c = self.units[cn]
                dem = self.add_input(cn, "demand", 0.5)
                b.append(
                    f"mout_{h.xo} += steam_consumer.steam_consumer(p, {c.po}, {dem}, pr_{h.xo}, hh_{h.xo}, "
                    f"{pnom}, y, {c.yo})"
                )
            b.append(
                f"vent_{h.xo} = steam_header.steam_header(x, {h.xo}, p, {h.po}, pr_{h.xo}, tp_{h.xo}, hh_{h.xo}, "
                f"min_{h.xo}, hin_{h.xo}, mout_{h.xo}, dx, y, {h.yo})"
            )
            b.append(f"hl_{h.xo} = p[{h.po + 4}] * (tp_{h.xo} - p[{h.po + 5}])")
            b.append(f"e_net += hin_{h.xo} - (mout_{h.xo} + vent_{h.xo}) * hh_{h.xo} - hl_{h.xo}")
            b.append(
                f"e_gross += abs(hin_{h.xo}) + abs((mout_{h.xo} + vent_{h.xo}) * hh_{h.xo}) + abs(hl_{h.xo})"
            )
            b.append(f"m_net += min_{h.xo} - mout_{h.xo} - vent_{h.xo}")
            b.append(f"m_gross += abs(min_{h.xo}) + abs(mout_{h.xo}) + abs(vent_{h.xo})")
        for cn in self.of_model("steam_consumer"):
            if cn not in claimed:
                raise ParkBuildError(
                    f"steam consumer {cn!r} is not connected to a steam header; "
                    "connect <header>.steam_out -> "
                    f"{cn}.steam_in"
                )

    # -- district heating ---------------------------------------------------------------------------------
    def _dh_networks(self) -> None:
        b = self.body
        claimed: set[str] = set()
        for dname in self.of_model("heat_demand"):
            d = self.units[dname]
            # Heat exchangers join with their cold side only; their hot side belongs to the surplus stream.
            found = self._dh_component(dname)
            comp = [n for n in self.units if n in found]  # spec order: the generated source is deterministic
            members = {m: self.model(m) for m in comp}
            pipes = [m for m, k in members.items() if k == "dh_pipe"]
            tanks = [m for m, k in members.items() if k == "storage_tank"]
            hxs = [m for m, k in members.items() if k == "heat_exchanger"]
            demands = [m for m, k in members.items() if k == "heat_demand"]
            if len(demands) > 1 or len(pipes) > 1 or len(tanks) > 1:
                raise ParkBuildError(
                    f"district-heating network of {dname!r} has {len(demands)} demand nodes, {len(pipes)} pipes and "
                    f"{len(tanks)} tanks; this twin supports one of each per network (split it into networks)"
                )
            hx_fed = {s for s in (self._hx_hot_source(h) for h in hxs) if s is not None}
            producers = [
                m
                for m, k in members.items()
                if k in _HOT_PRODUCERS
                and m not in hx_fed
                and not (k == "gas_boiler" and self.units[m].params["medium"] >= 0.5)
            ]
            claimed.update(comp)
            tag = d.po
            b.append(f"# district-heating network of {dname}")
            tret = self.add_input(dname, "return_temperature", d.params["return_temperature"])
            dem = self.add_input(dname, "demand", 0.5)
            b.append(f"tr_{tag} = {tret}")
            b.append(f"tin_{tag} = 0.5 * (p[{d.po + 1}] + p[{d.po + 2}])")
            b.append(f"mdh_{tag}, qd_{tag} = heat_demand.flow(p, {d.po}, {dem}, tin_{tag}, tr_{tag})")
            if tanks:
                tu = self.units[tanks[0]]
                n = int(tu.params["nodes"])
                csp = self.add_input(tanks[0], "charge_setpoint", 0.0)
                tamb = self.add_input(tanks[0], "ambient_temperature", tu.params["ambient_temperature"])
                b.append(f"mmin_{tag} = heat_demand.min_flow(p, {d.po}, tr_{tag})")
                b.append(f"mc_{tag}, md_{tag} = storage_tank.flows(p, {tu.po}, {csp}, mdh_{tag}, mmin_{tag})")
                b.append(f"ttop_{tag} = x[{tu.xo}]")
                b.append(f"tbot_{tag} = x[{tu.xo + n - 1}]")
            else:
                b.append(f"mc_{tag} = 0.0")
                b.append(f"md_{tag} = 0.0")
                b.append(f"ttop_{tag} = tr_{tag}")
                b.append(f"tbot_{tag} = tr_{tag}")
            b.append(f"mp_{tag} = mdh_{tag} - md_{tag} + mc_{tag}")
            b.append(f"tc_{tag} = ((mdh_{tag} - md_{tag}) * tr_{tag} + mc_{tag} * tbot_{tag}) / mp_{tag}")
            for hname in hxs:
                self._hx_call(hname, f"tc_{tag}", f"mp_{tag}")
            qp = " + ".join(self._dh_heat(m) for m in producers) or "0.0"
            b.append(f"qp_{tag} = {qp}")
            b.append(
                f"tsup_{tag} = (mp_{tag} * tc_{tag} + qp_{tag} / CP + md_{tag} * ttop_{tag}) / (mp_{tag} + md_{tag})"
            )
            b.append(f"e_net += qp_{tag}")
            b.append(f"e_gross += abs(qp_{tag})")
            if tanks:
                tu = self.units[tanks[0]]
                b.append(
                    f"qt_{tag}, gt_{tag} = storage_tank.storage_tank(x, {tu.xo}, p, {tu.po}, mc_{tag}, tsup_{tag}, "
                    f"md_{tag}, tr_{tag}, {tamb}, dx, y, {tu.yo})"
                )
                b.append(f"e_net += gt_{tag}")
                b.append(f"e_gross += abs(gt_{tag})")
            if pipes:
                pu = self.units[pipes[0]]
                tg = self.add_input(pipes[0], "ground_temperature", pu.params["ground_temperature"])
                b.append(
                    f"tout_{tag}, lp_{tag} = dh_pipe.dh_pipe(x, {pu.xo}, p, {pu.po}, tsup_{tag}, mdh_{tag}, {tg}, "
                    f"dx, y, {pu.yo})"
                )
                b.append(f"e_net -= lp_{tag}")
                b.append(f"e_gross += abs(lp_{tag})")
            else:
                b.append(f"tout_{tag} = tsup_{tag}")
            b.append(f"heat_demand.heat_demand(qd_{tag}, mdh_{tag}, tout_{tag}, tr_{tag}, y, {d.yo})")
            b.append(f"e_net += mdh_{tag} * CP * (tr_{tag} - tout_{tag})")
            b.append(
                f"e_gross += abs(mdh_{tag} * CP * (tr_{tag} - TREF)) + abs(mdh_{tag} * CP * (tout_{tag} - TREF))"
            )
        # Exchangers whose cold side is in no network run on their own inputs.
        for hname in self.of_model("heat_exchanger"):
            if hname in claimed:
                continue
            hu = self.units[hname]
            tci = self.add_input(hname, "cold_inlet_temperature", 318.15)
            mci = self.add_input(hname, "cold_mass_flow", hu.params["cold_flow"])
            tag = hu.po
            self.body.append(f"tc_{tag} = {tci}")
            self._hx_call(hname, f"tc_{tag}", mci, standalone=True)
        for name in self.of_model("dh_pipe", "storage_tank"):
            if name not in claimed:
                raise ParkBuildError(
                    f"{self.model(name)} {name!r} is in no district-heating network; connect it on the "
                    "way from the heat sources to a heat_demand unit"
                )

    def _dh_component(self, dname: str) -> set[str]:
        """Units of the hot-water network around demand node ``dname``; heat exchangers take part through
        their cold side, and their hot side's feeder stays outside."""
        seen = {dname}
        todo = [dname]
        while todo:
            cur = todo.pop()
            for c in self.spec.connections:
                if c.medium not in ("hot_water", "waste_heat"):
                    continue
                for a, ap, z, zp in (
                    (c.source, c.source_port, c.target, c.target_port),
                    (c.target, c.target_port, c.source, c.source_port),
                ):
                    if a != cur or z in seen:
                        continue
                    if self.model(a) == "heat_exchanger" and ap in ("hot_in", "hot_out"):
                        continue
                    if self.model(z) == "heat_exchanger" and zp in ("hot_in", "hot_out"):
                        continue
                    if self.model(a) == "heat_pump" and ap == "source_in":
                        continue
                    if self.model(z) == "heat_pump" and zp == "source_in":
                        continue
                    seen.add(z)
                    todo.append(z)
        return seen

    def _hx_hot_source(self, hname: str) -> str | None:
        for n, _p, _own in self.neighbours(hname, "hot_in"):
            if self.model(n) == "surplus_heat":
                return n
        return None

    def _hx_call(self, hname: str, t_cold: str, m_cold: str, standalone: bool = False) -> None:
        b = self.body
        hu = self.units[hname]
        src = self._hx_hot_source(hname)
        if src is not None:
            su = self.units[src]
            thi, mhi = f"p[{su.po + 1}]", f"mss_{su.po}"
        else:
            thi = self.add_input(hname, "hot_inlet_temperature", 363.15)
            mhi = self.add_input(hname, "hot_mass_flow", hu.params["hot_flow"])
        tag = hu.po
        b.append(f"thi_{tag} = {thi}")
        b.append(f"mhi_{tag} = ops.fmax({mhi}, 0.0)")
        b.append(f"mci_{tag} = ops.fmax({m_cold}, 0.0)")
        b.append(f"tci_{tag} = {t_cold}")
        b.append(
            f"{t_cold}, qx_{tag} = heat_exchanger.heat_exchanger(x, {hu.xo}, p, {hu.po}, thi_{tag}, mhi_{tag}, "
            f"tci_{tag}, mci_{tag}, dx, y, {hu.yo})"
            if not standalone
            else f"tco_{tag}, qx_{tag} = heat_exchanger.heat_exchanger(x, {hu.xo}, p, {hu.po}, thi_{tag}, mhi_{tag}, "
            f"tci_{tag}, mci_{tag}, dx, y, {hu.yo})"
        )
        ho = f"y[{hu.yo}]"
        b.append(f"e_net += mhi_{tag} * CP * (thi_{tag} - {ho})")
        b.append(f"e_gross += mhi_{tag} * CP * (abs(thi_{tag} - TREF) + abs({ho} - TREF))")
        if standalone:
            b.append(f"e_net += mci_{tag} * CP * (tci_{tag} - tco_{tag})")
            b.append(f"e_gross += mci_{tag} * CP * (abs(tci_{tag} - TREF) + abs(tco_{tag} - TREF))")

    def _dh_heat(self, name: str) -> str:
        u = self.units[name]
        model = u.spec.model
        if model == "surplus_heat":
            return f"qs_{u.po}"
        return f"q_{u.xo}"

    def _balance_check(self) -> None:
        if not self.states:
            raise ParkBuildError("the park has no dynamic units (boilers, header, exchanger, tank, pipe)")
