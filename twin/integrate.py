"""Integrators for the park: a fixed-step, L-stable SDIRK2 with sparse Newton, and a Radau reference.

The park is stiff when cells are small (a heat-exchanger cell of 10 kg passed by 500 kg/s has a time
constant of 0.02 s) while the interesting dynamics are minutes to hours, so the scheme must be
L-stable and implicit. We use the two-stage, second-order, stiffly accurate SDIRK of Alexander (1977),
gamma = 1 - 1/sqrt(2):

    X1 = x_n + h g f(t + g h, X1)
    X2 = x_n + h (1 - g) k1 + h g f(t + h, X2),   x_n+1 = x_n + h ((1 - g) k1 + g k2),   k_i = f(X_i)

Stages are solved by (modified) Newton with M = I - h g J; J comes from colored finite differences over
the compiled right-hand side (pattern probed once, ``probe_pattern``), M is factored by SuperLU and
reused while Newton converges quickly. Because x_n+1 is built from the k_i and every energy term of f
is linear in the states, the park's energy and mass balances close to rounding error; the boundary
terms are integrated with the same weights. Steps end exactly on output times and input breakpoints
(profile sample times), so jumps in the inputs fall on step boundaries.

Reference: R. Alexander, SIAM J. Numer. Anal. 14 (1977) 1006; E. Hairer, G. Wanner, Solving ODEs II,
IV.6 (SDIRK) and IV.8 (Newton with frozen Jacobian).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from twin.park import Park

Array = npt.NDArray[np.float64]
GAMMA = 1.0 - 1.0 / math.sqrt(2.0)


class IntegrationError(RuntimeError):
    """The integrator could not complete a step (Newton failed even with tiny steps)."""


def probe_pattern(park: Park, seed: int = 1) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
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
    points = [(park.x0, park.u_default), (park.x0 * (1 + 1e-3 * rng.standard_normal(n)), u_plus),
              (park.x0 * (1 + 1e-3 * rng.standard_normal(n)), u_minus)]
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
        rows = indices[indptr[j]:indptr[j + 1]]
        used = set()
        for r in rows:
            for c in csr.indices[csr.indptr[r]:csr.indptr[r + 1]]:
                if color[c] >= 0:
                    used.add(int(color[c]))
        k = 0
        while k in used:
            k += 1
        color[j] = k
    return indptr, indices, color, int(color.max()) + 1


class Sdirk2:
    """Fixed-step SDIRK2 for one park (see module doc). ``advance`` integrates between two times."""

    def __init__(self, park: Park, rtol: float = 1e-8, atol: float = 1e-8, max_newton: int = 10) -> None:
        import scipy.sparse as sp
        from scipy.sparse.linalg import splu

        self.park = park
        self._sp = sp
        self._splu = splu
        self._rhs = park._module.rhs
        self.p = park.params
        self.n = park.n_states
        self._dx = np.empty(self.n)
        self._y = np.empty(park.n_outputs)
        self._b = np.empty(4)
        self.rtol, self.atol, self.max_newton = rtol, atol, max_newton
        self._jac: Any = None
        self._lu: dict[float, Any] = {}
        self._jac_fresh = False
        self.energy_in = 0.0
        self.energy_gross = 0.0
        self.mass_in = 0.0
        self.mass_gross = 0.0
        self.steps = 0
        self.jac_evals = 0
        self.rhs_evals = 0
        self._eye = sp.identity(self.n, format="csc")

    # --------------------------------------------------------------------------------------- linear algebra
    def _refresh_jacobian(self, t: float, x: Array, u: Array) -> None:
        self._jac = self.park.jacobian_sparse(t, x, u, self.p)
        self._lu.clear()
        self._jac_fresh = True
        self.jac_evals += 1

    def _factor(self, hg: float) -> Any:
        key = round(hg, 9)
        lu = self._lu.get(key)
        if lu is None:
            lu = self._splu((self._eye - hg * self._jac).tocsc())
            self._lu[key] = lu
        return lu

    def _f(self, t: float, x: Array, u: Array) -> tuple[Array, Array]:
        self._rhs(t, x, u, self.p, self._dx, self._y, self._b)
        self.rhs_evals += 1
        return self._dx.copy(), self._b.copy()

    def _stage(self, t: float, base: Array, hg: float, u: Array, guess: Array) -> tuple[Array, Array, int] | None:
        """Solve X = base + hg f(t, X); returns (k = f(X), balance terms at X, iterations) or None."""
        lu = self._factor(hg)
        X = guess.copy()
        prev = math.inf
        for it in range(1, self.max_newton + 1):
            f, b = self._f(t, X, u)
            if not np.all(np.isfinite(f)):
                return None
            d = lu.solve(X - base - hg * f)
            nrm = float(np.max(np.abs(d) / (self.atol + self.rtol * np.abs(X))))
            if nrm <= 1.0:
                return f, b, it
            if it > 1 and nrm > 0.9 * prev:
                return None
            prev = nrm
            X = X - d
        return None

    def _step(self, t: float, x: Array, h: float, u_of: Callable[[float], Array]) -> Array | None:
        hg = h * GAMMA
        u1 = u_of(t + hg)
        if self._jac is None:
            self._refresh_jacobian(t, x, u1)
        for attempt in range(2):
            s1 = self._stage(t + hg, x, hg, u1, x)
            s2 = None
            if s1 is not None:
                k1 = s1[0]
                base2 = x + h * (1.0 - GAMMA) * k1
                s2 = self._stage(t + h, base2, hg, u_of(t + h), base2 + hg * k1)
            if s1 is not None and s2 is not None:
                k1, b1, it1 = s1
                k2, b2, it2 = s2
                w1, w2 = h * (1.0 - GAMMA), h * GAMMA
                self.energy_in += w1 * b1[0] + w2 * b2[0]
                self.energy_gross += w1 * b1[1] + w2 * b2[1]
                self.mass_in += w1 * b1[2] + w2 * b2[2]
                self.mass_gross += w1 * b1[3] + w2 * b2[3]
                self.steps += 1
                if max(it1, it2) > 4:
                    self._jac = None  # slow convergence: a fresh Jacobian next step
                self._jac_fresh = False
                return x + w1 * k1 + w2 * k2
            if attempt == 0 and not self._jac_fresh:
                self._refresh_jacobian(t, x, u1)
            else:
                break
        return None

    def _advance_interval(self, x: Array, t0: float, t1: float, u_of: Callable[[float], Array], h_max: float,
                          depth: int = 0) -> Array:
        n = max(1, math.ceil((t1 - t0) / h_max - 1e-9))
        h = (t1 - t0) / n
        for i in range(n):
            t = t0 + i * h
            nxt = self._step(t, x, h, u_of)
            if nxt is None:
                if depth > 12:
                    raise IntegrationError(f"Newton failed at t = {t:.6g} s even with step {h:.3g} s")
                nxt = self._advance_interval(x, t, t + h, u_of, h / 2, depth + 1)
            x = nxt
        return x

    def advance(self, x: Array, t0: float, t1: float, u_of: Callable[[float], Array], h_max: float,
                breaks: Sequence[float] | Array) -> Array:
        """State at ``t1`` from ``x`` at ``t0``; steps of at most ``h_max`` [s] ending on ``breaks``."""
        bs = [float(b) for b in breaks if t0 < b < t1] if len(breaks) else []
        edges = [t0, *bs, t1]
        for a, z in zip(edges[:-1], edges[1:], strict=True):
            if z - a > 1e-9:
                x = self._advance_interval(x, a, z, u_of, h_max)
        return x


def reference_simulate(park: Park, t_end: float, u_of: Callable[[float], Array], dt_out: float, x0: Array,
                       breaks: Sequence[float] | Array = (), rtol: float = 1e-9, atol: float = 1e-9,
                       rhs: Callable[[float, Array, Array], Array] | None = None) -> Array:
    """States at ``0, dt_out, ..., t_end`` by scipy's Radau (tight tolerances, sparse Jacobian),
    restarted at every output time and input breakpoint. The accuracy yardstick for ``Sdirk2``."""
    from scipy.integrate import solve_ivp

    f = rhs or (lambda t, x, u: park.rhs(t, x, u))
    n_out = int(math.floor(t_end / dt_out + 1e-9)) + 1
    ts = dt_out * np.arange(n_out)
    edges = np.unique(np.concatenate([ts, np.asarray(breaks, dtype=float)]))
    edges = edges[(edges >= 0) & (edges <= ts[-1])]
    out = np.empty((n_out, park.n_states))
    out[0] = x0
    x = np.asarray(x0, dtype=float).copy()
    k = 1
    for a, z in zip(edges[:-1], edges[1:], strict=True):
        sol = solve_ivp(lambda t, y: f(t, y, u_of(t)), (a, z), x, method="Radau", rtol=rtol, atol=atol,
                        jac=lambda t, y: park.jacobian_sparse(t, y, u_of(t)))
        if not sol.success:
            raise IntegrationError(f"reference Radau failed on [{a}, {z}]: {sol.message}")
        x = sol.y[:, -1]
        while k < n_out and abs(ts[k] - z) < 1e-9:
            out[k] = x
            k += 1
    return out
