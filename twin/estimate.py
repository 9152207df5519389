"""Online state and parameter estimation on the park model: a reduced-rank square-root extended Kalman filter.

The mean is the full nonlinear twin: every update advances all states with the park's own SDIRK2 step
(``twin.integrate.Sdirk2``) at the current parameter estimate, then corrects them with the measurements.
The covariance is kept in square-root form P = S S^T with S an N x q matrix (N = states + estimated
parameters, q ~ 40 columns): the reduced-rank square-root filter of Verlaan and Heemink (1997). A dense
530 x 530 covariance (the reference park) costs two 530^3 products per update -- 100+ ms on a loaded
2-core machine -- while only a few directions carry real uncertainty (parameters, fouling, tank layers,
loads, whole-profile offsets); q columns cost q sparse solves and O(N q^2).

Augmented state z = [x, r]: x the park states (the heat-exchanger ``fouling`` state, UA as a fraction of
the clean UA, is one of them), r the relative multipliers of the estimated parameters (p = p_nominal r,
e.g. ``transmission.loss_coefficient``). Fouling and r are random walks with a small process noise.

Time update over h (split into pieces of at most ``cov_step_s``), linearised consistently with an
implicit (L-stable) step of the stiff model -- x+ = x + h f(x+, p) -- at the propagated mean x+, so that

    dx+ = M^-1 (dx + h F_r dr),    M = I - h df/dx(x+),    F_r = df/dr(x+) (finite differences)

(an explicit I + h J would blow up for cells with 0.02 s time constants). M is factored once per update
(SuperLU). Process noise is added as extra columns (random walks of fouling/r, loads, tank layers and a
common-mode offset per distributed profile), then S is truncated back to q columns by an eigen
decomposition of S^T S (keeps the q leading directions of P).

Measurement update (batch, square-root form): Z = H S by directional finite differences of the outputs
along the columns of S (no full H is ever formed), R = diag(noise^2),

    P+ = S (I + Z^T R^-1 Z)^-1 S^T,   K = S (I + Z^T R^-1 Z)^-1 Z^T R^-1.

Gating: each measurement's normalised innovation nu_i^2 / (Z Z^T + R)_ii against the chi-square(1)
quantile ``gate`` (default 10.83, p = 0.001); rejected ones are counted per key and left out. A tag whose
value repeats exactly ``freeze_repeats`` times (a noisy sensor never does) is skipped as frozen; a tag
rejected ``readmit_after`` times in a row is readmitted with its variance inflated to the gate, so a real
unmodelled change cannot lock the filter out for ever.

References: M. Verlaan, A. W. Heemink, Stoch. Hydrol. Hydraul. 11 (1997) 349 (RRSQRT); D. Simon,
Optimal State Estimation (2006), ch. 7 (square-root filtering), ch. 13 (EKF); Y. Bar-Shalom et al.,
Estimation with Applications to Tracking and Navigation (2001), 5.4 (NIS consistency test).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from twin.park import Park

log = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]

CHI2_1_P001 = 10.828  # chi-square(1 dof) quantile at p = 0.001: the default gate


_POOL: Any = None


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """Run BLAS/LAPACK single-threaded inside an update. The matrices here are small (N x 40, 80 x 80):
    OpenBLAS's threads only spin, and on a loaded 2-core machine an update took ~100 ms with them against
    ~3 ms without (measured on the reference park). threadpoolctl limits it for the block only (~16 us)."""
    global _POOL
    if _POOL is None:
        try:
            from threadpoolctl import ThreadpoolController

            _POOL = ThreadpoolController()
        except ImportError:  # optional at run time: then the process's own BLAS setting applies
            _POOL = False
    if _POOL is False:
        return contextlib.nullcontext()
    return _POOL.limit(limits=1, user_api="blas")  # type: ignore[no-any-return]


def _eigh(a: Array) -> tuple[Array, Array]:
    """Symmetric eigen decomposition of a small matrix. scipy's LAPACK, not numpy's: numpy's threaded
    OpenBLAS takes ~9 ms for a 60 x 60 eigh on a loaded 2-core machine where scipy takes ~0.7 ms."""
    import scipy.linalg

    lam, v = scipy.linalg.eigh(a, check_finite=False)
    return np.asarray(lam, dtype=float), np.asarray(v, dtype=float)


class EstimatorError(ValueError):
    """The estimator cannot be built as asked (unknown measurement or parameter name)."""


@dataclass(frozen=True)
class EstimatorParams:
    """Plain settings of :class:`Estimator` (the app maps its site config to these).

    noise: measured key (``<unit>.<quantity>``, an output or a state of the park) -> measurement noise
        standard deviation [SI unit of the quantity]; keys not listed are never used.
    params: park parameter names estimated as random walks (relative multiplier, starting at 1).
    param_std0: initial standard deviation of each relative parameter and of each fouling state [-].
    param_walk: random-walk standard deviation of relative parameters and fouling [1/sqrt(s)].
    temperature_std0: initial standard deviation of tank layers and profile offsets [K].
    temperature_walk: random-walk standard deviation of temperatures [K/sqrt(s)].
    exchanger_std0: initial standard deviation of a heat exchanger's profile offset [K].
    load_std0, load_walk: the same for load states (fractions) [-], [1/sqrt(s)].
    rank: columns kept in the square root of the covariance.
    cov_step_s: longest linearised covariance step [s].
    gate: chi-square(1) threshold on each measurement's normalised innovation.
    freeze_repeats: identical consecutive values after which a tag is treated as frozen (0: off).
    readmit_after: consecutive rejections after which a tag is readmitted with inflated variance (0: never).
    max_param_step: largest move of fouling or a parameter in one update, in its prior standard deviations.
    min_noise: floor on measurement noise as a fraction of |value| (guards noise 0 in a config) [-].
    """

    noise: Mapping[str, float]
    params: tuple[str, ...] = ()
    param_std0: float = 0.3
    param_walk: float = 3e-5
    temperature_std0: float = 2.0
    temperature_walk: float = 2e-3
    load_std0: float = 0.05
    load_walk: float = 1e-4
    rank: int = 40
    cov_step_s: float = 60.0
    gate: float = CHI2_1_P001
    freeze_repeats: int = 6
    readmit_after: int = 90
    min_noise: float = 1e-4
    param_bounds: tuple[float, float] = (0.05, 5.0)
    exchanger_std0: float = 0.2
    max_param_step: float = 1.0


@dataclass
class StepReport:
    """What one update did: measurements used, rejected (gate), skipped (missing, frozen, not finite),
    and the joint normalised innovation squared of the accepted ones (chi-square with ``dof`` dof)."""

    t: float
    accepted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    nis: float = 0.0
    dof: int = 0
    damped: bool = False  # the update was cut to max_param_step (R inflated)


@dataclass
class TagCounters:
    accepted: int = 0
    rejected: int = 0
    frozen: int = 0
    consecutive_rejected: int = 0
    last_value: float = math.nan
    repeats: int = 0


class Estimator:
    """Reduced-rank square-root EKF over a :class:`twin.park.Park` (see the module docstring).

    ``x0``: initial state estimate (default: the park settled on its inputs at t = 0).
    ``step(t, u, dt, measured)`` advances by ``dt`` [s] with inputs ``u`` held and corrects with
    ``measured`` (key -> value [SI]); ``mean``, ``std``, ``params`` and ``output_std`` read the estimate.
    """

    def __init__(self, park: Park, settings: EstimatorParams, x0: npt.ArrayLike | None = None) -> None:
        from twin.integrate import Sdirk2

        self.park = park
        self.settings = settings
        self.n = park.n_states
        names = park.state_names
        self._state_index = {nm: i for i, nm in enumerate(names)}
        self._output_index = {nm: i for i, nm in enumerate(park.output_names)}
        unknown = [k for k in settings.params if k not in park.param_names]
        if unknown:
            raise EstimatorError(f"unknown parameters {unknown}; the park's are {park.param_names}")
        self.param_names = list(settings.params)
        self._p_idx = np.array([park.param_names.index(k) for k in self.param_names], dtype=np.int64)
        self.m = len(self.param_names)
        self.N = self.n + self.m
        self.p_nominal = park.params.copy()
        bad = [k for k in settings.noise if k not in self._state_index and k not in self._output_index]
        if bad:
            raise EstimatorError(f"measured keys {bad} are neither outputs nor states of the park")
        self.keys = [k for k in settings.noise]
        # selector into y_all = [outputs, states]
        self._sel = np.array(
            [
                self._output_index[k] if k in self._output_index else park.n_outputs + self._state_index[k]
                for k in self.keys
            ],
            dtype=np.int64,
        )
        self.noise = np.array([max(float(settings.noise[k]), 0.0) for k in self.keys])
        self.counters = {k: TagCounters() for k in self.keys}
        self.fouling_index = [i for i, nm in enumerate(names) if nm.endswith(".fouling")]
        self.x = (
            park.settle(park.input_schedule()(0.0)) if x0 is None else np.array(x0, dtype=float, copy=True)
        )
        self.r = np.ones(self.m)
        self._slow_index = np.array([*self.fouling_index, *range(self.n, self.N)], dtype=np.int64)
        self._solver = Sdirk2(park)
        self._modes, self._walk = self._noise_modes()
        self.S = self._initial_sqrt()
        self._eye = None
        self.last: StepReport | None = None
        self.t = 0.0

    # ------------------------------------------------------------------------------ structure
    def _noise_modes(self) -> tuple[Array, Array]:
        """Columns (N x k) of unit directions that carry uncertainty, with their initial std and walk."""
        st = self.settings
        cols: list[tuple[Array, float, float]] = []
        groups: dict[str, list[int]] = {}
        for i, sig in enumerate(self.park.state_signals):
            base, bracket, _ = sig.name.partition("[")
            if bracket:
                groups.setdefault(base, []).append(i)
                continue
            e = np.zeros(self.N)
            e[i] = 1.0
            if sig.name.endswith(".fouling"):
                cols.append((e, st.param_std0, st.param_walk))
            elif sig.unit == "1":
                cols.append((e, st.load_std0, st.load_walk))
            elif sig.unit == "K":
                cols.append((e, st.temperature_std0, st.temperature_walk))
            else:  # masses, energies: relative to the value
                scale = max(abs(float(self.x[i])), 1.0)
                cols.append((e, 1e-2 * scale, 1e-5 * scale))
        for base, idx in groups.items():
            unit = self.park.state_signals[idx[0]].unit
            if unit != "K":
                continue
            if "layer" in base:  # tank layers mix slowly: each is its own direction
                for i in idx:
                    e = np.zeros(self.N)
                    e[i] = 1.0
                    cols.append((e, st.temperature_std0, st.temperature_walk))
            elif self._model_of(base) == "heat_exchanger":
                # cells with time constants of seconds: an offset of their own profile is short-lived, its
                # uncertainty mostly follows from fouling and the inlets (through the time update). A wide
                # mode would soak up the innovation of an input step that the fouling explains, and hand it
                # back as a wrong fouling when it relaxes.
                e = np.zeros(self.N)
                e[idx] = 1.0
                cols.append((e, st.exchanger_std0, st.temperature_walk))
            else:  # slow transport profiles (pipes): a common-mode offset of the whole profile
                e = np.zeros(self.N)
                e[idx] = 1.0
                cols.append((e, st.temperature_std0, st.temperature_walk))
        for j in range(self.m):
            e = np.zeros(self.N)
            e[self.n + j] = 1.0
            cols.append((e, st.param_std0, st.param_walk))
        modes = np.column_stack([c[0] for c in cols]) if cols else np.zeros((self.N, 0))
        self._std0 = np.array([c[1] for c in cols])
        return modes, np.array([c[2] for c in cols])

    def _model_of(self, state_base: str) -> str:
        unit = state_base.split(".", 1)[0]
        try:
            return str(self.park.spec.unit(unit).model)
        except KeyError:
            return ""

    def _initial_sqrt(self) -> Array:
        return self._truncate(self._modes * self._std0)

    def _truncate(self, s: Array) -> Array:
        """Keep the ``rank`` leading directions of S S^T (eigen decomposition of the small S^T S)."""
        q = self.settings.rank
        if s.shape[1] <= q:
            return np.asfortranarray(s)
        lam, v = _eigh(s.T @ s)
        keep = np.argsort(lam)[::-1][:q]
        return np.asfortranarray(s @ v[:, keep])

    # ------------------------------------------------------------------------------ helpers
    def p_full(self, r: Array | None = None) -> Array:
        """The park parameter vector at relative multipliers ``r`` (default: the estimate)."""
        p = self.p_nominal.copy()
        if self.m:
            p[self._p_idx] = self.p_nominal[self._p_idx] * (self.r if r is None else r)
        return p

    @property
    def params(self) -> dict[str, float]:
        """Estimated parameter values [SI], by park parameter name."""
        return {
            k: float(self.p_nominal[i] * r)
            for k, i, r in zip(self.param_names, self._p_idx, self.r, strict=True)
        }

    @property
    def param_std(self) -> dict[str, float]:
        sd = np.sqrt(np.einsum("ij,ij->i", self.S[self.n :], self.S[self.n :]))
        return {
            k: float(self.p_nominal[i] * s) for k, i, s in zip(self.param_names, self._p_idx, sd, strict=True)
        }

    @property
    def std(self) -> Array:
        """Standard deviation of each state [state unit]."""
        return np.sqrt(np.einsum("ij,ij->i", self.S[: self.n], self.S[: self.n]))

    def _y_all(self, x: Array, u: Array, p: Array) -> Array:
        return np.concatenate([self.park.outputs(x, u, p), x])

    def _directional(
        self, u: Array, rows: npt.NDArray[np.int64] | None, eps: float = 1e-3
    ) -> tuple[Array, Array]:
        """y_all (or the rows ``rows``) and its derivative along each column of S: Z = dy/dz S."""
        p0 = self.p_full()
        y0 = self._y_all(self.x, u, p0)
        q = self.S.shape[1]
        sel = slice(None) if rows is None else rows
        z = np.empty((y0[sel].shape[0], q))
        for j in range(q):
            col = self.S[:, j]
            xj = self.x + eps * col[: self.n]
            pj = self.p_full(self.r + eps * col[self.n :]) if self.m else p0
            z[:, j] = (self._y_all(xj, u, pj)[sel] - y0[sel]) / eps
        return y0[sel], z

    def output_std(self, u: npt.ArrayLike) -> dict[str, tuple[float, float]]:
        """Every output and state, ``name -> (value, std)`` [SI], at inputs ``u``."""
        ua = np.asarray(u, dtype=float)
        with _one_blas_thread():
            y, z = self._directional(ua, None)
        sd = np.sqrt(np.einsum("ij,ij->i", z, z))
        names = self.park.output_names + self.park.state_names
        return {nm: (float(v), float(s)) for nm, v, s in zip(names, y, sd, strict=True)}

    # ------------------------------------------------------------------------------ time update
    def predict(self, u: npt.ArrayLike, dt: float) -> None:
        """Advance mean and square root by ``dt`` [s] with inputs ``u`` held."""
        if dt <= 0:
            return
        with _one_blas_thread():
            self._predict(np.asarray(u, dtype=float), dt)

    def _predict(self, u: Array, dt: float) -> None:
        import scipy.sparse as sp
        from scipy.sparse.linalg import splu

        p = self.p_full()
        k = max(1, math.ceil(dt / self.settings.cov_step_s - 1e-9))
        h = dt / k
        # mean: the full nonlinear step at the current parameter estimate
        self._solver.p = p
        self.x = self._solver.advance(self.x, 0.0, float(dt), lambda _t, left=False: u, 30.0, ())
        # covariance: linearised at the END of the step, as the implicit step x+ = x + h f(x+) is. At the
        # start of a step that changes a flow, an exchanger may still be pinched (df/dfouling = 0 there).
        jac = self.park.jacobian_sparse(0.0, self.x, u, p)
        if self._eye is None:
            self._eye = sp.identity(self.n, format="csc")
        lu = splu((self._eye - h * jac).tocsc(), options={"Equil": False})
        fr = np.empty((self.n, self.m))
        if self.m:
            f0 = self.park.rhs(0.0, self.x, u, p)
            for j in range(self.m):
                d = 1e-4
                rj = self.r.copy()
                rj[j] += d
                fr[:, j] = (self.park.rhs(0.0, self.x, u, self.p_full(rj)) - f0) / d
        s = self.S
        sx = np.array(s[: self.n], order="F")
        sr = s[self.n :]
        for _ in range(k):
            rhs = sx + h * (fr @ sr) if self.m else sx
            sx = lu.solve(np.asfortranarray(rhs))
        walk = self._modes * (self._walk * math.sqrt(dt))
        self.S = self._truncate(np.hstack([np.vstack([sx, sr]), walk]))

    # ------------------------------------------------------------------------------ measurement update
    def correct(self, u: npt.ArrayLike, measured: Mapping[str, float], t: float = math.nan) -> StepReport:
        """Correct the estimate with ``measured`` (key -> value [SI]); returns what was used."""
        with _one_blas_thread():
            return self._correct(np.asarray(u, dtype=float), measured, t)

    def _correct(self, u: Array, measured: Mapping[str, float], t: float) -> StepReport:
        st = self.settings
        rep = StepReport(t=t)
        ua = np.asarray(u, dtype=float)
        use: list[int] = []
        values: list[float] = []
        for i, key in enumerate(self.keys):
            v = measured.get(key)
            c = self.counters[key]
            if v is None or not math.isfinite(v):
                rep.skipped.append(key)
                continue
            v = float(v)
            if v == c.last_value:
                c.repeats += 1
            else:
                c.repeats, c.last_value = 0, v
            if st.freeze_repeats and c.repeats >= st.freeze_repeats and self.noise[i] > 0:
                c.frozen += 1
                rep.skipped.append(key)
                continue
            use.append(i)
            values.append(v)
        if not use:
            self.last = rep
            return rep
        idx = np.array(use, dtype=np.int64)
        y0, z = self._directional(ua, self._sel[idx])
        nu = np.asarray(values) - y0
        rvar = np.maximum(self.noise[idx], st.min_noise * np.maximum(np.abs(y0), 1.0)) ** 2
        s_diag = np.einsum("ij,ij->i", z, z) + rvar
        nis_i = nu**2 / s_diag
        ok = np.ones(len(idx), dtype=bool)
        for j, i in enumerate(idx):
            c = self.counters[self.keys[i]]
            if nis_i[j] > st.gate:
                if st.readmit_after and c.consecutive_rejected >= st.readmit_after:
                    # readmit, with its variance inflated so that its normalised innovation is the gate
                    rvar[j] = max(rvar[j], nu[j] ** 2 / st.gate - (s_diag[j] - rvar[j]))
                    c.consecutive_rejected = 0
                    log.info("estimator: %s readmitted after repeated rejection", self.keys[i])
                else:
                    ok[j] = False
                    c.rejected += 1
                    c.consecutive_rejected += 1
                    rep.rejected.append(self.keys[i])
                    continue
            c.consecutive_rejected = 0
            c.accepted += 1
            rep.accepted.append(self.keys[i])
        if ok.any():
            za, nua, ra = z[ok], nu[ok], rvar[ok]
            sy = za @ za.T + np.diag(ra)
            rep.nis = float(nua @ np.linalg.solve(sy, nua))
            rep.dof = int(ok.sum())
            slow = self._slow_index
            prior_sd = np.sqrt(np.einsum("ij,ij->i", self.S[slow], self.S[slow]))
            for _ in range(4):
                w = za.T @ (za / ra[:, None])
                lam, vec = _eigh(w)
                lam = np.maximum(lam, 0.0)
                # (I + W)^-1 = V diag(1/(1+lam)) V^T; square root V diag(1/sqrt(1+lam)) V^T
                inv = (vec / (1.0 + lam)) @ vec.T
                dz = self.S @ (inv @ (za.T @ (nua / ra)))
                # Damped update: a linearisation taken where an exchanger is pinched can ask fouling or a
                # parameter to jump many sigmas in one update. Such a step is cut to ``max_param_step``
                # prior sigmas by inflating R (a valid, more cautious Kalman update); relinearised next time.
                moved = float(np.max(np.abs(dz[slow]) / np.maximum(prior_sd, 1e-12))) if slow.size else 0.0
                if moved <= st.max_param_step:
                    break
                ra = ra * (moved / st.max_param_step) ** 2
                rep.damped = True
            self.x = self.x + dz[: self.n]
            self.r = self.r + dz[self.n :]
            self.S = np.asfortranarray(self.S @ ((vec / np.sqrt(1.0 + lam)) @ vec.T))
            self._clip()
        self.last = rep
        return rep

    def _clip(self) -> None:
        lo, hi = self.settings.param_bounds
        if self.m:
            self.r = np.clip(self.r, lo, hi)
        for i in self.fouling_index:
            self.x[i] = min(max(self.x[i], lo), 2.0)

    def step(self, t: float, u: npt.ArrayLike, dt: float, measured: Mapping[str, float]) -> StepReport:
        """Predict over ``dt`` [s] then correct with ``measured`` at the end time ``t`` [s]."""
        self.predict(u, dt)
        self.t = t
        return self.correct(u, measured, t)

    def rejected_counts(self) -> dict[str, int]:
        return {k: c.rejected for k, c in self.counters.items()}

    def frozen_counts(self) -> dict[str, int]:
        return {k: c.frozen for k, c in self.counters.items()}

    def fouling(self) -> dict[str, tuple[float, float]]:
        """Per heat exchanger: UA as a fraction of its clean UA, with its standard deviation [-]."""
        sd = self.std
        return {
            self.park.state_names[i].split(".")[0]: (float(self.x[i]), float(sd[i]))
            for i in self.fouling_index
        }


def run_filter(
    est: Estimator,
    times: Sequence[float],
    u_of: Callable[[float], Array],
    measured_at: Callable[[int], Mapping[str, float]],
    on_step: Callable[[int, StepReport], Any] | None = None,
) -> list[StepReport]:
    """Run ``est`` over sample times ``times`` [s]: inputs ``u_of(t)`` held over each interval (taken at
    its start), measurements ``measured_at(k)`` at ``times[k]``. The first time only corrects."""
    reports = [est.correct(u_of(times[0]), measured_at(0), times[0])]
    if on_step is not None:
        on_step(0, reports[0])
    for k in range(1, len(times)):
        rep = est.step(times[k], u_of(times[k - 1]), times[k] - times[k - 1], measured_at(k))
        reports.append(rep)
        if on_step is not None:
            on_step(k, rep)
    return reports
