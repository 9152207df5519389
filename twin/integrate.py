"""Integrators for the park: L-stable SDIRK3 (adaptive) and SDIRK2 with sparse Newton, and a Radau reference.

The park is stiff when cells are small (a heat-exchanger cell of 10 kg passed by 500 kg/s has a time
constant of 0.02 s) while the interesting dynamics are minutes to hours, so the scheme must be
L-stable and implicit. Fixed steps (``rtol=None``) use the two-stage, second-order, stiffly accurate
SDIRK of Alexander (1977), gamma = 1 - 1/sqrt(2):

    X1 = x_n + h g f(t + g h, X1)
    X2 = x_n + h (1 - g) k1 + h g f(t + h, X2),   x_n+1 = x_n + h ((1 - g) k1 + g k2),   k_i = f(X_i)

Adaptive steps (``rtol`` given) use the three-stage, third-order, L-stable and stiffly accurate SDIRK of
the same paper, g3 = 0.4358665 (root of g^3 - 3 g^2 + 3/2 g - 1/6), c = (g3, (1 + g3) / 2, 1),
b1 = -(6 g3^2 - 16 g3 + 1) / 4, b2 = (6 g3^2 - 20 g3 + 5) / 4, b3 = g3 (the last row of A is b, so
x_n+1 = X3). At the accuracy the park's outputs need (town supply temperature to about a millikelvin) the
third order takes about a third of SDIRK2's steps for 1.5 times the work per step.

Step-size control: an embedded solution of one order less (SDIRK2: x_n + h k1; SDIRK3: the second-order
weights on stages 1 and 2, b^1 = 1 - b^2, b^2 = (1/2 - g3) / (c2 - g3)) gives the local error estimate
h sum (b_i - b^_i) k_i, filtered by (I - h g J)^-1 (Hairer & Wanner IV.8) so that damped stiff components
do not shrink the step; weighted RMS norm with w_i = atol + rtol |x_i|, accepted when <= 1; PI controller
(Gustafsson 1991). Steps end exactly on output times and input breakpoints (the rest of an interval is
split into equal steps); where the inputs jump the step restarts at the size learnt at the last jump.

Stages are solved by modified Newton with M = I - h g J, started from an explicit predictor plus one
Newton correction on the linearisation about a point where f is known. J comes from colored finite
differences over the compiled right-hand side (pattern probed once, ``probe_pattern``, cached on disk).
SuperLU factors M once; later factors (new h or J) reuse its pivot order and fill pattern and are computed
compiled (``refactor`` in the generated module), falling back to SuperLU if a pivot is unsuitable. Because
x_n+1 is built from the k_i and every energy term of f is linear in the states, the park's energy and mass
balances close to rounding error for any step sequence; the boundary terms are integrated with the same
weights.

Reference: R. Alexander, SIAM J. Numer. Anal. 14 (1977) 1006; E. Hairer, G. Wanner, Solving ODEs II,
IV.6 (SDIRK), IV.8 (Newton with frozen Jacobian, error estimate); K. Gustafsson, ACM TOMS 17 (1991) 533
(PI step-size control).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from twin.park import Park

Array = npt.NDArray[np.float64]
log = logging.getLogger(__name__)
GAMMA = 1.0 - 1.0 / math.sqrt(2.0)
GAMMA3 = 0.43586652150845899942  # SDIRK3: root of g^3 - 3 g^2 + 3/2 g - 1/6 = 0 in (1/6, 1/2)
DEFAULT_RTOL = 3e-5  # local error tolerance of Park.simulate / Park.step (twin_speed: outputs within 1e-3)
NEWTON_TOL = 0.1  # Newton stops when the weighted correction is this fraction of the error tolerance
FACTOR_TOL = 0.05  # a factor of I - h' g J serves steps h with |h / h' - 1| <= this
H_FIRST = 1.0  # first step of a fresh solver [s]
FIXED_NEWTON_RTOL = 1e-6  # Newton weights of fixed steps (Sdirk2 without rtol)


class IntegrationError(RuntimeError):
    """The integrator could not complete a step (Newton failed even with tiny steps)."""


def probe_pattern(
    park: Park, seed: int = 1
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
    """Jacobian sparsity (CSC indptr, indices) by finite differences at a few states and inputs, plus a
    greedy column coloring so that columns of one color share no row."""
    n = park.n_states
    rng = np.random.default_rng(seed)
    mask = np.eye(n, dtype=bool)
    names = park.input_names
    u_plus = park.u_default.copy()
    u_minus = park.u_default.copy()
    for i, nm in enumerate(names):
        if nm.endswith("charge_setpoint"):
            u_plus[i], u_minus[i] = 1e3, -1e3
        if nm.endswith(("load_setpoint", "demand", "available", "use_setpoint")):
            u_plus[i], u_minus[i] = 0.8, 0.6
    points = [
        (park.x0, park.u_default),
        (park.x0 * (1 + 1e-3 * rng.standard_normal(n)), u_plus),
        (park.x0 * (1 + 1e-3 * rng.standard_normal(n)), u_minus),
    ]
    for x, u in points:
        f0 = park.rhs(0.0, x, u)
        for j in range(n):
            xp = x.copy()
            h = 1e-6 * max(abs(x[j]), 1.0)
            xp[j] += h
            mask[:, j] |= park.rhs(0.0, xp, u) != f0
    import scipy.sparse as sp

    csc = sp.csc_matrix(mask)
    csc.sort_indices()
    indptr = csc.indptr.astype(np.int64)
    indices = csc.indices.astype(np.int64)
    csr = csc.tocsr()
    color = -np.ones(n, dtype=np.int64)
    for j in range(n):
        rows = indices[indptr[j] : indptr[j + 1]]
        used = set()
        for r in rows:
            for c in csr.indices[csr.indptr[r] : csr.indptr[r + 1]]:
                if color[c] >= 0:
                    used.add(int(color[c]))
        k = 0
        while k in used:
            k += 1
        color[j] = k
    return indptr, indices, color, int(color.max()) + 1


class Sdirk2:
    """SDIRK solver for one park (see module doc). The steps, the error test and the step-size control run
    compiled, in the park's generated module; they return here only if SuperLU must pivot afresh.

    With ``rtol`` [-] the steps are adaptive, by SDIRK3 (``order=3``, default) or SDIRK2 (``order=2``):
    ``rtol`` and ``atol`` [state units] weight the local error estimate (weighted RMS norm,
    w_i = atol + rtol |x_i|), a step is accepted when the norm is <= 1.
    Without (``rtol=None``) the steps are fixed, ``h_max`` or the interval split into equal parts, with
    Newton converged to ``FIXED_NEWTON_RTOL``: results are then smooth in the parameters, which finite-
    difference sensitivities (calibration) need. ``max_newton`` caps the Newton iterations per stage.
    """

    def __init__(
        self,
        park: Park,
        rtol: float | None = None,
        atol: float | None = None,
        max_newton: int = 8,
        newton_tol: float = NEWTON_TOL,
        order: int = 3,
    ) -> None:
        if order not in (2, 3):
            raise ValueError(f"order must be 2 or 3, not {order!r}")
        self.park = park
        self.adaptive = rtol is not None
        # SDIRK3 only for adaptive steps: fixed steps (calibration) keep SDIRK2
        self.order = 3 if self.adaptive and order == 3 else 2
        self.gamma = GAMMA3 if self.order == 3 else GAMMA
        self._drive = park._module.drive3 if self.order == 3 else park._module.drive
        self.p = park.params
        self.n = park.n_states
        self.rtol = float(FIXED_NEWTON_RTOL if rtol is None else rtol)
        self.atol = float(self.rtol if atol is None else atol)
        self.max_newton = int(max_newton)
        self.newton_tol = float(newton_tol)
        self._pattern: tuple[Any, ...] = ()
        self._jx = np.empty(0)  # Jacobian values in the park's sparsity pattern (CSC)
        self._lu: tuple[Any, ...] | None = None  # L, U (CSC), perm_r, perm_c, inverse perm_c
        self._hf = -1.0  # h of the current factor [s]
        self._kp = np.zeros(park.n_states)  # slope at the end of the last step: the predictor
        self.analyses = 0
        # integrated [net energy J, gross energy J, net mass kg, gross mass kg]
        self.acc = np.zeros(4)
        self.steps = 0
        self.rejected = 0
        self.newton_iterations = 0
        self.jac_evals = 0
        self.factorizations = 0
        self._h = math.nan  # step proposal carried from one call to the next [s]
        self._h_jump = 0.0  # first step after a jump of the inputs, learnt from the last jump [s]
        self._u_last: Array | None = None

    @property
    def energy_in(self) -> float:
        return float(self.acc[0])

    @property
    def energy_gross(self) -> float:
        return float(self.acc[1])

    @property
    def mass_in(self) -> float:
        return float(self.acc[2])

    @property
    def mass_gross(self) -> float:
        return float(self.acc[3])

    def _start(self, t: float, x: Array, u: Array, h: float) -> bool:
        """LU pivot order and pattern: from the park's cache if an earlier process left one (the Jacobian
        and the factor values are then computed in the compiled stepper, which falls back to SuperLU if the
        pivots do not suit; returns False), else from SuperLU at a Jacobian computed here (and cached;
        returns True)."""
        self._pattern = self.park.sparsity()
        jp, ji, color, ncolor = self._pattern
        self._jx = np.zeros(ji.shape[0])
        self._hf = -1.0  # no factor values yet
        path = self.park.cache_file("lu")
        try:
            with np.load(path) as z:
                lp, li, up, ui, pr, pc = (z[k] for k in ("lp", "li", "up", "ui", "perm_r", "perm_c"))
            if pr.shape[0] == self.n:
                self._lu = (
                    lp,
                    li,
                    np.zeros(li.shape[0]),
                    up,
                    ui,
                    np.zeros(ui.shape[0]),
                    pr,
                    pc,
                    np.argsort(pc),
                )
                return False
        except (OSError, KeyError, ValueError):
            pass
        f0 = np.empty(self.n)
        self.park._module.rhs(float(t), x, u, self.p, f0, np.empty(self.park.n_outputs), np.empty(4))
        self.park._module.jac(float(t), x, u, self.p, f0, color, ncolor, jp, ji, self._jx)
        self.jac_evals += 1
        self._analyse(h)
        assert self._lu is not None
        lp, li, _lx, up, ui, _ux, pr, pc, _ipc = self._lu
        try:
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, lp=lp, li=li, up=up, ui=ui, perm_r=pr, perm_c=pc)
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("LU pattern cache not written: %s", exc)
        return True

    def _analyse(self, h: float) -> None:
        """SuperLU of I - h g J with the Jacobian in ``self._jx``: pivot order and fill pattern that the
        compiled refactorization reuses for other h and later Jacobians."""
        import scipy.sparse as sp
        from scipy.sparse.linalg import splu

        jp, ji, _color, _nc = self._pattern
        data = -(h * self.gamma) * self._jx
        cols = np.repeat(np.arange(self.n), np.diff(jp))
        data[ji == cols] += 1.0
        # every entry of the pattern stays structural (an entry that is zero now need not be later)
        data[data == 0.0] = 1e-13 * np.max(np.abs(data))
        lu = splu(sp.csc_matrix((data, ji, jp), shape=(self.n, self.n)), options={"Equil": False})
        low = lu.L.tocsc()
        up = lu.U.tocsc()
        low.sort_indices()
        up.sort_indices()
        perm_c = lu.perm_c.astype(np.int64)
        # the compiled solve wants L with a unit diagonal and U with 1 / u_jj on its diagonal
        ldata = low.data / np.repeat(low.data[low.indptr[:-1]], np.diff(low.indptr))
        udata = up.data.copy()
        udata[up.indptr[1:] - 1] = 1.0 / udata[up.indptr[1:] - 1]
        self._lu = (
            low.indptr.astype(np.int64),
            low.indices.astype(np.int64),
            ldata,
            up.indptr.astype(np.int64),
            up.indices.astype(np.int64),
            udata,
            lu.perm_r.astype(np.int64),
            perm_c,
            np.argsort(perm_c).astype(np.int64),
        )
        self._hf = h
        self.analyses += 1

    def run(
        self,
        x: Array,
        edges: Array,
        u_right: Array,
        u_left: Array,
        h_max: float,
        rows: npt.NDArray[np.int64] | None = None,
        xs: Array | None = None,
        ys: Array | None = None,
        fresh: bool = False,
    ) -> None:
        """Advance ``x`` in place from ``edges[0]`` to ``edges[-1]`` [s], steps ending on every edge; inputs
        linear from ``u_right[j]`` to ``u_left[j + 1]`` on [edges[j], edges[j + 1]] (equal rows: held).
        Where ``rows[e] >= 0`` the state and the outputs (inputs ``u_right[e]``) go to ``xs``, ``ys``.
        ``fresh``: forget the step size and Jacobian of earlier calls, so that the result depends on the
        arguments only (not on what the solver did before)."""
        if fresh:
            self._h, self._h_jump, self._u_last = math.nan, 0.0, None
        ne = edges.shape[0]
        if rows is None or xs is None or ys is None:
            rows = -np.ones(ne, dtype=np.int64)
            xs = np.empty((0, self.n))
            ys = np.empty((0, self.park.n_outputs))
        h0 = self._h if self._h == self._h else min(h_max, H_FIRST)
        if not self.adaptive:
            h0 = h_max
        jump = self._u_last is None or not np.array_equal(self._u_last, u_left[0])
        jump = jump or not np.array_equal(u_left[0], u_right[0])
        if jump and self._h_jump > 0.0:
            h0 = min(h0, self._h_jump)
        ist = np.zeros(11, dtype=np.int64)
        ist[8] = int(jump)
        if self._lu is None:
            if self._start(edges[0], x, u_right[0], h0):
                ist[1] = 1  # fresh Jacobian
            else:
                ist[2] = 1  # the stepper computes the Jacobian, then the factor
        elif fresh:
            ist[2] = 1  # a Jacobian at the start, then its factor
        st = np.array([edges[0], h0, self._hf, h0, 0.0, self._h_jump])
        jp, ji, color, ncolor = self._pattern
        while True:
            assert self._lu is not None
            args = (
                x, edges, u_right, u_left, rows, xs, ys, self.p, jp, ji, self._jx, color, ncolor, *self._lu,
                self.gamma, st, ist, self._kp, self.acc, self.rtol, self.atol, self.newton_tol, self.max_newton,
                float(h_max), FACTOR_TOL,
            )  # fmt: skip
            status = self._drive(*args) if self.order == 3 else self._drive(*args, self.adaptive)
            if status == 0:
                break
            if status == 3:
                raise IntegrationError(f"Newton failed at t = {st[0]:.6g} s even with step {st[3]:.3g} s")
            self._analyse(float(st[3]))  # the Jacobian changed its pattern of pivots: SuperLU afresh
            st[2] = self._hf
        self._hf = float(st[2])
        self.steps += int(ist[3])
        self.rejected += int(ist[4])
        self.newton_iterations += int(ist[5])
        self.jac_evals += int(ist[9])
        self.factorizations += int(ist[10])
        self._h = float(st[1])
        self._h_jump = float(st[5])
        self._u_last = u_left[-1].copy()

    def advance(
        self,
        x: Array,
        t0: float,
        t1: float,
        u_of: Callable[..., Array],
        h_max: float,
        breaks: Sequence[float] | Array,
    ) -> Array:
        """State at ``t1`` from ``x`` at ``t0``; steps of at most ``h_max`` [s] that end on ``breaks``.
        ``u_of(t, left=False)`` gives the inputs; ``left=True`` the left limit (before a jump)."""
        x = np.array(x, dtype=float)
        bs = [float(b) for b in breaks if t0 < b < t1] if len(breaks) else []
        edges = np.array([t0, *bs, t1], dtype=float)
        edges = edges[np.concatenate([[True], np.diff(edges) > 1e-9])]
        if edges.shape[0] < 2:
            return x
        u_right = np.array([np.asarray(u_of(float(t)), dtype=float) for t in edges])
        u_left = np.array([np.asarray(u_of(float(t), left=True), dtype=float) for t in edges])
        self.run(x, edges, u_right, u_left, h_max)
        return x


def reference_simulate(
    park: Park,
    t_end: float,
    u_of: Callable[..., Array],
    dt_out: float,
    x0: Array,
    breaks: Sequence[float] | Array = (),
    rtol: float = 1e-9,
    atol: float = 1e-9,
    rhs: Callable[[float, Array, Array], Array] | None = None,
) -> Array:
    """States at ``0, dt_out, ..., t_end`` by scipy's Radau (tight tolerances, sparse Jacobian),
    restarted at every output time and input breakpoint. The accuracy yardstick for ``Sdirk2``."""
    from scipy.integrate import solve_ivp

    f = rhs or (lambda t, x, u: park.rhs(t, x, u))
    n_out = math.floor(t_end / dt_out + 1e-9) + 1
    ts = dt_out * np.arange(n_out)
    edges = np.unique(np.concatenate([ts, np.asarray(breaks, dtype=float)]))
    edges = edges[(edges >= 0) & (edges <= ts[-1])]
    out = np.empty((n_out, park.n_states))
    out[0] = x0
    x = np.asarray(x0, dtype=float).copy()
    k = 1
    for a, z in itertools.pairwise(edges):
        # inputs inside [a, z]; at z itself the limit from the left (a step profile jumps there)
        def u_in(t: float, z: float = z) -> Array:
            return u_of(t, left=True) if t >= z else u_of(t)

        sol = solve_ivp(
            lambda t, y: f(t, y, u_in(t)),
            (a, z),
            x,
            method="Radau",
            rtol=rtol,
            atol=atol,
            jac=lambda t, y: park.jacobian_sparse(t, y, u_in(t)),
        )
        if not sol.success:
            raise IntegrationError(f"reference Radau failed on [{a}, {z}]: {sol.message}")
        x = sol.y[:, -1]
        while k < n_out and abs(ts[k] - z) < 1e-9:
            out[k] = x
            k += 1
    return out
