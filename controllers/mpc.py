"""Economic MPC over the park: do-mpc on CasADi, built once from a frozen :class:`MpcProblemSpec`.

``MpcController(spec).step(state, forecasts, now) -> ControlResult`` with an explicit status; the plan
covers the horizon, ``objective_terms`` the cost terms over the horizon [EUR] and ``slack`` the soft
constraints relaxed (unmet heat [MWh], unmet steam [t], supply-band violation [K h], per contract the
energy short of its minimum or beyond its maximum over the horizon [MWh], with its penalty in
``objective_terms``). The prediction model and its assumptions are in :mod:`controllers.mpc_model`.

Two set-ups of the same model and objective (``Variant``):

* ``FAST`` (used in operation): do-mpc's discrete-time model whose step is the exact affine map
  x+ = A x + B u + c of the RK4-discretised reduced model (no collocation points). A, B and c are computed
  numerically per solve from the forecasts (:class:`controllers.mpc_model.LinearStep`) and passed as
  time-varying parameters, so the NLP holds one matrix-vector product per interval instead of the RK4
  substeps. IPOPT is told the problem is a QP (constant Jacobians and Hessian) and factorises with MUMPS
  in QAMD order; printing off; warm start from the *shifted* previous solution with
  ``warm_start_init_point`` and a small initial barrier, and the solve driven through do-mpc's
  ``opt_p_num``/``solve()`` instead of ``make_step`` (which sleeps without an initial guess, keeps
  history that grows without bound, and overwrites the warm start when IPOPT fails).
* ``DEFAULT`` (the benchmark's reference): the continuous model with do-mpc's defaults (orthogonal
  collocation, Radau degree 2), default IPOPT options (output suppressed), ``make_step`` and do-mpc's
  own warm start (previous solution, unshifted).

Offset-free correction: the supply-temperature error of the previous prediction is integrated into a
heat-balance bias (``q_bias``, a parameter of the model), so a steady plant-model mismatch (exchanger
recovery, storage temperatures) does not leave the town short.

Time-varying parameters (forecasts, prices) go in per horizon step from the forecast arrays at every
step (the tvp function returns the template filled for this step, never a value copied from t0:
do-mpc#541). IPOPT's status is read from ``solver_stats`` and mapped to :class:`SolveStatus`; a failed
solve restores the last good warm start and its iterate is never returned; after
``max_failures`` consecutive failures the controller reports itself degraded and resets its warm start.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from controllers import mpc_model as mm
from controllers.types import ControlRequest, ControlResult, FloatArray, SolveStatus

log = logging.getLogger(__name__)

COST_SCALE = 1000.0  # [EUR] per objective unit: IPOPT sees costs of order one
# Steam: the header is self-regulating within seconds (the consumers' valves draw about 2.4 kg/s more per bar),
# so the pressure read at a solve is the instantaneous steam imbalance, including the CHP's lag inside the
# interval. 1.5e-5 corrected most of an offset in one solve but, with that lag, locked the CHP into a
# period-2 limit cycle (header 8.3 <-> 11.7 bar, 15 MWh unmet steam over three February days); 0.5e-5
# keeps the header within 9.9-10.4 bar there (0.9 MWh unmet).
STEAM_BIAS_GAIN = 0.5e-5  # [kg/s per Pa] per solve
STEAM_BIAS_LIMIT = 10.0  # [kg/s]
# Held above nominal as the baseline does: the consumers' valves are sized for the nominal pressure.
HEADER_MARGIN_PA = 0.1e5  # [Pa]
BIAS_GAIN = 0.3  # [-] per solve (0.1 was tried: a week on the reference park ended with 5x the unmet demand)


class Variant(enum.StrEnum):
    FAST = "fast"
    DEFAULT = "default"


# IPOPT return statuses (casadi stats["return_status"]) -> SolveStatus
_OPTIMAL = {"Solve_Succeeded"}
_SUBOPTIMAL = {"Solved_To_Acceptable_Level", "Feasible_Point_Found"}
_INFEASIBLE = {"Infeasible_Problem_Detected", "Restoration_Failed"}
_TIMEOUT = {"Maximum_WallTime_Exceeded", "Maximum_CpuTime_Exceeded"}


def map_status(return_status: str, constraint_violation: float, tol: float = 1e-4) -> SolveStatus:
    """SolveStatus from IPOPT's return status; an iteration limit at a feasible point is suboptimal."""
    if return_status in _OPTIMAL:
        return SolveStatus.OPTIMAL
    if return_status in _SUBOPTIMAL:
        return SolveStatus.SUBOPTIMAL
    if return_status in _INFEASIBLE:
        return SolveStatus.INFEASIBLE
    if return_status in _TIMEOUT:
        return SolveStatus.TIMEOUT
    if return_status == "Maximum_Iterations_Exceeded" and constraint_violation <= tol:
        return SolveStatus.SUBOPTIMAL
    return SolveStatus.ERROR


def _import_do_mpc() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # do-mpc warns about numpy and optional extras at import
        import do_mpc

    return do_mpc


class MpcController:
    """The economic MPC; ``step(state, forecasts, now) -> ControlResult``.

    state: twin estimates by ``<unit>.<quantity>`` [SI]; the current setpoints by their park input key
        (``chp.load_setpoint``) [SI] (the ports copy them there from the service's ``current``).
    forecasts: series by name (``town.demand``, ``price.natural_gas`` ...) [SI] on the plan grid
        ``now + k * step_s``; shorter series are held at their last value, missing ones take defaults.
    """

    def __init__(
        self, spec: mm.MpcProblemSpec, variant: Variant = Variant.FAST, max_failures: int = 3
    ) -> None:
        self.spec = spec
        self.variant = Variant(variant)
        self.max_failures = max_failures
        self.layout = mm.layout(spec)
        self.consecutive_failures = 0
        self.degraded = False
        self.last_stats: dict[str, Any] = {}
        # predicted states (n+1 x nx), inputs (n x nu) and parameters of the last good solve [scaled]
        self.last_prediction: tuple[FloatArray, FloatArray, FloatArray] | None = None
        self.q_bias_w = 0.0  # [W] heat the reduced model misses, estimated from its supply-temperature error
        self.steam_bias_kg_s = 0.0  # [kg/s] steam the reduced model misses, from the header pressure error
        self._last_now: float | None = None
        self._build()

    # -- construction ---------------------------------------------------------------------------------

    def _build(self) -> None:
        # IPOPT's MUMPS calls the OpenBLAS bundled with casadi, loaded with the solver plugin below. Its
        # threads spin on a KKT system this small (a 4-hour closed loop spent 24 of 58 s in the kernel) and
        # take the core the control loop runs on: one thread, unless the user set it.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        import casadi as ca

        # do-mpc calls numpy functions on CasADi values; keep casadi's legacy behaviour, silently
        # (process-wide casadi option; it only silences casadi 3.7's notice, results are unchanged).
        with contextlib.suppress(AttributeError):
            ca.GlobalOptions.setNumpyMode(-1)
        do_mpc = _import_do_mpc()
        spec, lay = self.spec, self.layout
        discrete = self.variant is Variant.FAST
        sx = mm.build_sx(spec, lay, mm.Hold.STEP if discrete else mm.Hold.RAMP)
        self._sx = sx
        model = do_mpc.model.Model("discrete" if discrete else "continuous", "SX")
        xs = model.set_variable("_x", "x", shape=(len(lay.states), 1))
        us = model.set_variable("_u", "u", shape=(len(lay.inputs), 1))
        ws = model.set_variable("_tvp", "w", shape=(len(lay.params), 1))
        terms = ca.Function("terms", [sx.x, sx.u, sx.p], [sx.cost, sx.g])
        self._lin: mm.LinearStep | None = None
        self._lin_values: FloatArray = np.zeros((0, 0))  # this solve's maps, one row per interval
        if discrete:
            # The model is affine in (x, u) for given parameters: each interval's x+ = A x + B u + c is
            # computed numerically per solve and passed as parameters, instead of RK4 substeps inlined 96
            # times into the NLP (reference park: build 22 -> 6 s, the process after build 0.98 -> 0.34 GB;
            # the same plans to the solver tolerance).
            lin = mm.linear_step(sx, spec.step_s, mm.rk4_substeps(spec), mm.ramped_indices(spec, lay))
            self._lin = lin
            ls = model.set_variable("_tvp", "lin", shape=(lin.n_values, 1))
            f_x = lin.apply(xs, us, ls)
        else:
            f_x = ca.Function("rhs", [sx.x, sx.u, sx.p], [sx.rhs])(xs, us, ws)
        model.set_rhs("x", f_x)
        model.setup()
        # do-mpc replaces the symbols at setup(): objective and constraints use the model's own
        xs, us, ws = model.x["x"], model.u["u"], model.tvp["w"]
        f_cost, f_g = terms(xs, us, ws)
        self._terms_fn = ca.Function("terms", [sx.x, sx.u, sx.p], [sx.cost])
        self._out_fn = ca.Function("outs", [sx.x, sx.u, sx.p], [sx.outputs])
        self._g_fn = ca.Function("g", [sx.x, sx.u, sx.p], [sx.g])

        mpc = do_mpc.controller.MPC(model)
        mpc.settings.n_horizon = spec.n_horizon
        mpc.settings.t_step = spec.step_s
        mpc.settings.n_robust = 0
        mpc.settings.store_full_solution = False
        if discrete:
            mpc.settings.store_lagr_multiplier = False
            mpc.settings.store_solver_stats = []
            mpc.settings.nlpsol_opts = {
                "expand": False,
                "print_time": 0,
                "ipopt.print_level": 0,
                "ipopt.sb": "yes",
                "ipopt.linear_solver": "mumps",
                # MUMPS's automatic choice of fill-reducing order costs 3x per factorisation on this
                # block-banded KKT system against QAMD (measured: 60 -> 20 ms per iteration)
                "ipopt.mumps_pivot_order": 6,
                "ipopt.hessian_constant": "yes",
                "ipopt.jac_c_constant": "yes",
                "ipopt.jac_d_constant": "yes",
                "ipopt.mu_strategy": "adaptive",
                "ipopt.tol": spec.tolerance,
                "ipopt.max_iter": 300,
                "ipopt.max_wall_time": spec.max_solve_s,
            }
        else:
            mpc.settings.supress_ipopt_output()
        # lterm is per interval [objective units]; collocation evaluates it at the interval start
        stage = ca.sum1(f_cost) * spec.step_s / COST_SCALE
        e_terms = 0
        for st in spec.storage:
            e_terms = e_terms + xs[lay.x_index(f"{st.name}.energy")] * ws[lay.p_index("storage_value")]
        mpc.set_rterm(u=0.0)  # moves are penalised as setpoint rates in lterm
        mpc.set_objective(lterm=stage, mterm=-e_terms / COST_SCALE if spec.storage else ca.DM(0))
        mpc.bounds["lower", "_x", "x"] = np.array(lay.x_lb)
        mpc.bounds["upper", "_x", "x"] = np.array(lay.x_ub)
        mpc.bounds["lower", "_u", "u"] = np.array(lay.u_lb)
        mpc.bounds["upper", "_u", "u"] = np.array(lay.u_ub)
        if spec.held_contracts():
            # contract sums are bounded at the horizon end only (do-mpc leaves the last state free otherwise)
            mpc.terminal_bounds["lower", "x"] = np.array(lay.x_terminal_lb)
            mpc.terminal_bounds["upper", "x"] = np.array(lay.x_terminal_ub)
        if f_g.shape[0] > 0:
            mpc.set_nl_cons("g", f_g, ub=np.zeros((f_g.shape[0], 1)))
        self._tvp = mpc.get_tvp_template()
        self._params: FloatArray = np.zeros((spec.n_horizon + 1, len(lay.params)))
        tvp_idx = np.concatenate(
            [np.asarray(self._tvp.f["_tvp", k, "w"]).ravel() for k in range(spec.n_horizon + 1)]
        )

        def tvp_fun(t_now: float) -> Any:
            # every horizon step gets its own row of the forecast (not t0's value repeated: do-mpc#541)
            vec = np.zeros(self._tvp.shape[0])
            vec[tvp_idx] = self._params.ravel()
            self._tvp.master = _dm(vec)
            return self._tvp

        mpc.set_tvp_fun(tvp_fun)
        mpc.setup()
        self._mpc = mpc
        if discrete:
            # warm solves: start from the shifted solution and its multipliers, small initial barrier
            warm = dict(mpc.settings.nlpsol_opts)
            warm.update(
                {
                    "ipopt.warm_start_init_point": "yes",
                    "ipopt.mu_init": 1e-4,
                    "ipopt.warm_start_bound_push": 1e-6,
                    "ipopt.warm_start_mult_bound_push": 1e-6,
                }
            )
            self._cold_solver = mpc.S
            self._warm_solver = ca.nlpsol("S_warm", "ipopt", mpc.nlp, warm)
            self._p_tvp_idx = np.concatenate(
                [np.asarray(mpc.opt_p.f["_tvp", k, "w"]).ravel() for k in range(spec.n_horizon + 1)]
            )
            self._p_x0_idx = np.asarray(mpc.opt_p.f["_x0"]).ravel()
            self._p_lin_idx = np.concatenate(
                [np.asarray(mpc.opt_p.f["_tvp", k, "lin"]).ravel() for k in range(spec.n_horizon + 1)]
            )
        self._sum_idx = [lay.x_index(f"contract.{c.key}.delivered") for c in spec.held_contracts()]
        self._x_idx = [np.asarray(mpc.opt_x.f["_x", k, 0, -1]).ravel() for k in range(spec.n_horizon + 1)]
        self._u_idx = [np.asarray(mpc.opt_x.f["_u", k, 0]).ravel() for k in range(spec.n_horizon)]
        self._n_opt_x = int(mpc.opt_x.shape[0])
        self._good: tuple[Any, Any, Any] | None = None
        self._first = True

    def _update_bias(self, x0: FloatArray, now: float) -> None:
        """Offset-free correction: the supply temperature the last solve predicted for now against the one
        measured, turned into a heat rate (error x the town's flow x cp) and integrated with gain
        ``BIAS_GAIN``, bounded to 15 % of the design load. Zero without a DH network or a prediction."""
        spec, lay = self.spec, self.layout
        prev = self.last_prediction
        if spec.dh is None or prev is None or self._last_now is None:
            return
        k = round((now - self._last_now) / spec.step_s)
        if k < 1 or k >= prev[0].shape[0]:
            return
        i = lay.x_index("dh.supply_temperature")
        err = float(x0[i] - prev[0][k, i])  # [K], measured - predicted
        g = float(prev[2][k - 1, lay.p_index("g_town")]) * mm.MW  # [W/K]
        limit = 0.15 * spec.dh.design_load_w
        self.q_bias_w = float(np.clip(self.q_bias_w + BIAS_GAIN * err * g, -limit, limit))

    def _update_steam_bias(self, state: Mapping[str, float]) -> None:
        """Offset-free correction of the steam balance, which the model takes as instantaneous: each solve
        adds ``STEAM_BIAS_GAIN`` x (nominal + ``HEADER_MARGIN_PA`` - measured) header pressure to the steam the plan must make
        (an integral controller on the pressure, as a boiler master has), bounded by ``STEAM_BIAS_LIMIT``.
        A producer that makes a few per cent less steam than modelled otherwise leaves the header below
        its nominal pressure and the consumers short for as long as the mismatch lasts."""
        for header, nominal in self.spec.headers:
            p = state.get(f"{header}.pressure")
            if p is None or not math.isfinite(p):
                continue  # no measurement: hold the correction
            step = STEAM_BIAS_GAIN * (nominal + HEADER_MARGIN_PA - float(p))
            self.steam_bias_kg_s = float(
                np.clip(self.steam_bias_kg_s + step, -STEAM_BIAS_LIMIT, STEAM_BIAS_LIMIT)
            )

    @classmethod
    def from_site(
        cls, site: Any, variant: Variant = Variant.FAST, *, horizon_steps: int | None = None
    ) -> MpcController:
        """The MPC of a loaded site (``symtwin.config.LoadedSite``), through :func:`problem_from_site`."""
        return from_site(site, variant, horizon_steps=horizon_steps)

    @property
    def has_warm_start(self) -> bool:
        """True while a previous good solution seeds the next solve."""
        return self._good is not None

    @property
    def n_nlp_vars(self) -> int:
        return self._n_opt_x

    @property
    def n_model_values(self) -> int:
        """Numbers per interval that carry the discretised model into the NLP (A, B non-zeros and c)."""
        return 0 if self._lin is None else self._lin.n_values

    # -- warm start -----------------------------------------------------------------------------------

    def reset_warm_start(self) -> None:
        """Forget the previous solution: the next solve starts from x0 held over the horizon."""
        self._good = None
        self._first = True
        self._mpc.flags["initial_run"] = False
        self.last_prediction = None
        self._last_now = None
        self.q_bias_w = 0.0
        self.steam_bias_kg_s = 0.0

    def _initial_guess(self, x0: FloatArray) -> None:
        mpc = self._mpc
        mpc.x0 = x0
        mpc.u0 = np.zeros(len(self.layout.inputs))
        mpc.set_initial_guess()

    def _shift(self, prev: tuple[Any, Any, Any], x0: FloatArray) -> None:
        """Warm start from the previous solution moved one interval on (the last interval repeated)."""
        vec, lam_x, lam_g = (np.array(v, dtype=float).ravel() for v in prev)
        new = vec.copy()
        n = self.spec.n_horizon
        for k in range(n + 1):
            src = self._x_idx[min(k + 1, n)]
            new[self._x_idx[k]] = vec[src]
        if self._sum_idx:
            # contract sums restart at 0: less the first interval's delivery, the last one's repeated
            col = np.asarray(self._sum_idx)
            first = vec[self._x_idx[1][col]]
            last = vec[self._x_idx[n][col]] - vec[self._x_idx[n - 1][col]]
            for k in range(n + 1):
                new[self._x_idx[k][col]] -= first
            new[self._x_idx[n][col]] += last
        for k in range(n):
            new[self._u_idx[k]] = vec[self._u_idx[min(k + 1, n - 1)]]
        new[self._x_idx[0]] = x0
        mpc = self._mpc
        mpc.opt_x_num.master = _dm(new)
        mpc.lam_x_num = _dm(lam_x)
        mpc.lam_g_num = _dm(lam_g)

    # -- step -----------------------------------------------------------------------------------------

    def step(
        self, state: Mapping[str, float], forecasts: Mapping[str, FloatArray], now: float
    ) -> ControlResult:
        t0 = time.perf_counter()
        try:
            result = self._step(state, forecasts, now, t0)
        except Exception as exc:  # a bug or a CasADi error is a failed step, with nothing to write
            log.exception("MPC step failed")
            result = ControlResult.failure(
                SolveStatus.ERROR, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0
            )
        if result.usable:
            self.consecutive_failures = 0
            self.degraded = False
        else:
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.max_failures:
                if not self.degraded:
                    log.warning(
                        "MPC degraded after %d consecutive failures; warm start reset",
                        self.consecutive_failures,
                    )
                self.degraded = True
                self.reset_warm_start()
        return result

    def _step(
        self, state: Mapping[str, float], forecasts: Mapping[str, FloatArray], now: float, t0: float
    ) -> ControlResult:
        spec, lay, mpc = self.spec, self.layout, self._mpc
        n = spec.n_horizon
        x0 = mm.initial_state(spec, lay, state, {})
        self._update_bias(x0, now)
        self._update_steam_bias(state)
        self._params = mm.parameters(spec, lay, forecasts, n + 1, self.q_bias_w, self.steam_bias_kg_s)
        if not np.all(np.isfinite(self._params)) or not np.all(np.isfinite(x0)):
            return ControlResult.failure(
                SolveStatus.ERROR, "non-finite state or forecast", time.perf_counter() - t0
            )
        if self._lin is not None:
            self._lin_values = self._lin.values(self._params)
        if self.variant is Variant.FAST:
            if self._good is None:
                self._initial_guess(x0)
                mpc.flags["initial_run"] = False
                mpc.S = self._cold_solver
            else:
                self._shift(self._good, x0)
                mpc.S = self._warm_solver
            pvec = np.zeros(mpc.opt_p.shape[0])  # the model has no _p and _u_prev is unused (no rterm)
            pvec[self._p_tvp_idx] = self._params.ravel()
            pvec[self._p_lin_idx] = self._lin_values.ravel()
            pvec[self._p_x0_idx] = x0
            mpc.opt_p_num.master = _dm(pvec)
            mpc.solve()
            mpc.flags["initial_run"] = True
        else:
            if self._first:
                self._initial_guess(x0)
                self._first = False
            mpc.make_step(x0)
        stats = mpc.solver_stats
        self.last_stats = {
            k: stats.get(k) for k in ("return_status", "iter_count", "t_wall_total", "success")
        }
        sol = (
            np.array(mpc.opt_x_num.cat, dtype=float).ravel()
            * np.array(mpc.opt_x_scaling.cat, dtype=float).ravel()
        )
        xk = np.stack([sol[i] for i in self._x_idx])  # (n+1, nx)
        uk = np.stack([sol[i] for i in self._u_idx])  # (n, nu)
        gk = np.array(self._g_fn.map(n)(xk[:-1].T, uk.T, self._params[:n].T)).T
        viol = float(np.max(gk, initial=0.0))
        status = map_status(str(stats.get("return_status", "")), viol)
        elapsed = time.perf_counter() - t0
        if not status.usable or not (np.all(np.isfinite(xk)) and np.all(np.isfinite(uk))):
            if self._good is not None and self.variant is Variant.FAST:
                self._shift(self._good, x0)  # never keep the failed iterate as the next warm start
            msg = f"IPOPT {stats.get('return_status')} after {stats.get('iter_count')} iterations"
            return ControlResult.failure(status if not status.usable else SolveStatus.ERROR, msg, elapsed)
        self.last_prediction = (xk, uk, self._params[: n + 1].copy())
        self._last_now = now
        self._good = (
            np.array(mpc.opt_x_num.cat, dtype=float),
            np.array(mpc.lam_x_num, dtype=float),
            np.array(mpc.lam_g_num, dtype=float),
        )
        return self._result(xk, uk, now, status, stats, elapsed)

    def _result(
        self,
        xk: FloatArray,
        uk: FloatArray,
        now: float,
        status: SolveStatus,
        stats: Mapping[str, Any],
        elapsed: float,
    ) -> ControlResult:
        spec, lay = self.spec, self.layout
        n = spec.n_horizon
        dt = spec.step_s
        times = now + dt * np.arange(n)
        plan: dict[str, FloatArray] = {}
        for r in spec.ramped():
            if r.tag is None:
                continue
            values = xk[1:, lay.x_index(r.key)] * r.scale
            lu = next((u for u in spec.loads if u.setpoint.key == r.key), None)
            if lu is not None:  # minimum stable load, as the twin applies it to a setpoint
                values = np.where(values < 0.5 * lu.min_load, 0.0, np.maximum(values, lu.min_load))
            plan[r.tag] = np.clip(values, r.lo, r.hi)
        for lu in spec.loads:
            if lu.kind == mm.LoadKind.CHP and lu.split_tag is not None:
                load = 0.5 * (
                    xk[:-1, lay.x_index(f"{lu.name}.load")] + xk[1:, lay.x_index(f"{lu.name}.load")]
                )
                useful = np.maximum(load * lu.useful_w_per_load / mm.MW, 1e-6)
                plan[lu.split_tag] = np.clip(uk[:, lay.u_index(f"{lu.name}.dh_heat")] / useful, 0.0, 1.0)
        terms_rate = np.array(
            self._terms_fn.map(n)(xk[:-1].T, uk.T, self._params[:n].T)
        )  # (terms, n) [EUR/s]
        totals = terms_rate.sum(axis=1) * dt
        objective = {f"{name}_eur": float(v) for name, v in zip(lay.terms, totals, strict=True)}
        objective["total_eur"] = float(totals.sum())
        objective["first_step_eur"] = float(terms_rate[:, 0].sum() * dt)
        slack: dict[str, float] = {}
        if "unmet_heat" in lay.inputs:
            slack["unmet_heat_mwh"] = float(uk[:, lay.u_index("unmet_heat")].sum() * dt / mm.HOUR)
            band = uk[:, lay.u_index("band_low")] + uk[:, lay.u_index("band_high")]
            slack["band_kh"] = float(band.sum() * dt / mm.HOUR)
        if "unmet_steam" in lay.inputs:
            slack["unmet_steam_t"] = float(uk[:, lay.u_index("unmet_steam")].sum() * dt / 1000.0)
        if spec.contracts:
            self._contract_result(xk, uk, objective, slack)
        return ControlResult(
            status=status,
            setpoints={tag: float(v[0]) for tag, v in plan.items()},
            plan=plan,
            plan_times=times,
            objective_terms=objective,
            slack=slack,
            solve_time_s=elapsed,
            message=f"IPOPT {stats.get('return_status')} in {stats.get('iter_count')} iterations"
            + (" (degraded)" if self.degraded else ""),
        )

    def _contract_result(
        self, xk: FloatArray, uk: FloatArray, objective: dict[str, float], slack: dict[str, float]
    ) -> None:
        """Per contract: the planned delivery over the horizon ``contract.<key>.delivered_mwh``, the energy
        short of its minimum / beyond its maximum ``contract.<key>.short_mwh`` / ``.excess_mwh`` (slack)
        and their penalty ``contract.<key>_eur`` (objective). A delivery the plan cannot change (a
        forecast) is not in the NLP: its shortfall and penalty are computed here from the forecast and
        added to ``contract_eur`` and ``total_eur``."""
        spec, lay = self.spec, self.layout
        n, dt = spec.n_horizon, spec.step_s / mm.HOUR
        outs = np.array(self._out_fn.map(n)(xk[:-1].T, uk.T, self._params[:n].T))
        extra = 0.0
        for c in spec.contracts:
            delivered = (
                float(outs[self._sx.output_names.index(f"contract.{c.key}.delivery")].sum()) * dt / mm.MW
            )
            need = c.min_mw * spec.horizon_h
            cap = math.inf if c.max_mw is None else c.max_mw * spec.horizon_h
            if c.decided:
                short = (
                    float(uk[:, lay.u_index(f"contract.{c.key}.short")].sum()) * dt if c.min_mw > 0 else 0.0
                )
                excess = (
                    float(uk[:, lay.u_index(f"contract.{c.key}.excess")].sum()) * dt
                    if c.max_mw is not None
                    else 0.0
                )
            else:
                short, excess = max(need - delivered, 0.0), max(delivered - cap, 0.0)
                extra += (short + excess) * c.penalty
            slack[f"contract.{c.key}.delivered_mwh"] = delivered
            if c.min_mw > 0:
                slack[f"contract.{c.key}.short_mwh"] = short
            if c.max_mw is not None:
                slack[f"contract.{c.key}.excess_mwh"] = excess
            objective[f"contract.{c.key}_eur"] = (short + excess) * c.penalty
        objective["contract_eur"] += extra
        objective["total_eur"] += extra

    def predict(
        self, x0: FloatArray, uk: FloatArray, forecasts: Mapping[str, FloatArray]
    ) -> tuple[FloatArray, dict[str, FloatArray]]:
        """Open-loop prediction of the reduced model (same discretisation as FAST) for inputs ``uk``
        (n x n_inputs, scaled): states (n+1 x nx) and named outputs (n values each) [SI]."""
        import casadi as ca

        n = uk.shape[0]
        params = mm.parameters(self.spec, self.layout, forecasts, n)
        sx = mm.build_sx(self.spec, self.layout, mm.Hold.STEP)
        nxt = mm.discretise(
            sx, self.spec.step_s, mm.rk4_substeps(self.spec), mm.ramped_indices(self.spec, self.layout)
        )
        f = ca.Function("F", [sx.x, sx.u, sx.p], [nxt])
        xs = [np.asarray(x0, dtype=float)]
        for k in range(n):
            xs.append(np.array(f(xs[-1], uk[k], params[k])).ravel())
        xk = np.stack(xs)
        out_fn = ca.Function("outs", [sx.x, sx.u, sx.p], [sx.outputs])
        outs = np.array(out_fn.map(n)(xk[:-1].T, uk.T, params.T))
        return xk, {name: outs[i] for i, name in enumerate(sx.output_names)}


def _dm(values: FloatArray) -> Any:
    import casadi as ca

    return ca.DM(np.asarray(values, dtype=float).reshape(-1, 1))


# ----------------------------------------------------------------------------------------------- site


def problem_from_site(site: Any, *, horizon_steps: int | None = None) -> mm.MpcProblemSpec:
    """The one place a loaded site (``symtwin.config.LoadedSite``) becomes the MPC's frozen problem:
    park spec, setpoint tags (bounds, rate limits), fuels, step, horizon and penalties from the config."""
    from symtwin.units import parse_duration, parse_quantity

    c = site.config.controller
    step = parse_duration(c.step)
    n = horizon_steps if horizon_steps is not None else max(1, round(parse_duration(c.horizon) / step))
    tags = {
        t.key: t for t in site.tags.values() if str(getattr(t.direction, "value", t.direction)) == "setpoint"
    }
    fuels = {u.id: u.fuel for u in site.units if getattr(u, "fuel", None)}
    return mm.problem_from_spec(
        site.park_spec(),
        setpoint_tags=tags,
        fuels=fuels,
        step_s=step,
        n_horizon=n,
        unmet_penalty_eur_j=parse_quantity(c.unmet_demand_penalty, "EUR/J"),
        move_penalty=c.move_penalty,
        max_solve_s=0.8 * parse_duration(c.period) * float(getattr(c, "deadline_fraction", 0.8)),
        exchanges=exchange_terms(site),
    )


def exchange_terms(site: Any) -> list[mm.ExchangeTerms]:
    """The site's contracted exchanges as plain terms for the MPC: connection ends and the contract's
    delivery bounds. A contract without a penalty rate of its own is priced, as the settlement values a
    take-or-pay shortfall, at its contract price when that is fixed, else at
    ``mm.DEFAULT_CONTRACT_PENALTY_EUR_MWH``."""
    contracts = {c.id: c for c in getattr(site.config, "contracts", ())}
    out = []
    for e in getattr(site.config, "exchanges", ()):
        c = contracts[e.contract]
        conn = site.connection_by_id[e.connection]
        src, src_port = conn.source.split(".", 1)
        tgt, tgt_port = conn.target.split(".", 1)
        if "penalty_eur_per_mwh" in c.model_fields_set:
            penalty: float | None = float(c.penalty_eur_per_mwh)
        else:
            penalty = getattr(c.price, "eur_per_mwh", None) if c.price.rule == "fixed" else None
        out.append(
            mm.ExchangeTerms(
                e.id,
                c.id,
                src,
                src_port,
                tgt,
                tgt_port,
                float(c.min_delivery_mwh),
                None if c.max_delivery_mwh is None else float(c.max_delivery_mwh),
                float(c.take_or_pay_fraction),
                penalty,
                str(c.settlement_period),
            )
        )
    return out


def from_site(
    site: Any, variant: Variant = Variant.FAST, *, horizon_steps: int | None = None
) -> MpcController:
    c = site.config.controller
    return MpcController(
        problem_from_site(site, horizon_steps=horizon_steps),
        variant,
        int(getattr(c, "max_consecutive_failures", 3)),
    )


# ----------------------------------------------------------------------------------------------- ports


def _step_inputs(request: Any, keys: Mapping[str, str]) -> tuple[dict[str, float], dict[str, FloatArray]]:
    """state with measured tags and current setpoints also under their park keys; forecasts as arrays."""
    state = {k: float(v) for k, v in request.state.items()}
    for tag, key in keys.items():
        if tag in state and key not in state:
            state[key] = state[tag]
    for tag, value in request.current.items():
        park_key = keys.get(tag)
        if park_key is not None:
            state[park_key] = float(value)  # the setpoint written last is where the ramp starts
    forecasts = {k: np.asarray(v, dtype=float) for k, v in request.forecasts.items()}
    return state, forecasts


def _make_controller(spec: mm.MpcProblemSpec, variant: str, max_failures: int) -> MpcController:
    return MpcController(spec, Variant(variant), max_failures)


class MpcPort:
    """The MPC as the service runs it (``symtwin.runtime.service.ControllerPort``): each solve goes to a
    killable worker process (``controllers.deadline.DeadlineRunner``) that holds the controller and its
    warm start; a late solve is a TIMEOUT with nothing to write.

    keys: setpoint/measurement tag id -> ``<unit>.<quantity>`` (``TagSpec.key``).
    """

    def __init__(
        self, spec: mm.MpcProblemSpec, keys: Mapping[str, str], *, max_failures: int = 3, start: bool = True
    ) -> None:
        from controllers.deadline import DeadlineRunner

        self.spec = spec
        self.keys = dict(keys)
        factory = functools.partial(_make_controller, spec, Variant.FAST.value, max_failures)
        # Built once in a template process that forks the worker and its spare (they share the built
        # NLP copy-on-write). do-mpc imports asyncua when installed, and matplotlib and scipy.signal
        # always: the MPC uses none of them (together about 95 MB of the template's imports).
        self.runner = DeadlineRunner(
            factory,
            start_method="zygote",
            block_imports=("asyncua",),
            stub_imports=("matplotlib", "scipy.signal"),
        )
        if start:
            self.runner.start(timeout_s=120.0)

    @classmethod
    def from_site(cls, site: Any, **kw: Any) -> MpcPort:
        keys = {t.id: t.key for t in site.tags.values()}
        return cls(problem_from_site(site), keys, **kw)

    async def solve(self, request: Any, deadline_s: float) -> ControlResult:
        state, forecasts = _step_inputs(request, self.keys)
        return await self.runner.solve_async(ControlRequest(state, forecasts, float(request.now)), deadline_s)

    def reset_warm_start(self) -> None:
        self.runner.reset_warm_start()

    def close(self) -> None:
        self.runner.close()


class BaselinePort:
    """The rule-based baseline behind the same port, run inline (it takes microseconds)."""

    def __init__(self, controller: Any, keys: Mapping[str, str]) -> None:
        self.controller = controller
        self.keys = dict(keys)

    @classmethod
    def from_site(cls, site: Any) -> BaselinePort:
        from controllers import baseline
        from symtwin.units import parse_duration

        keys = {t.id: t.key for t in site.tags.values()}
        return cls(baseline.from_site(site, step_s=parse_duration(site.config.controller.step)), keys)

    async def solve(self, request: Any, deadline_s: float) -> ControlResult:
        state, forecasts = _step_inputs(request, self.keys)
        await asyncio.sleep(0)
        return self.controller.step(state, forecasts, float(request.now))  # type: ignore[no-any-return]

    def reset_warm_start(self) -> None:
        self.controller.reset_warm_start()
