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

import itertools
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
    """Fixed-step SDIRK2 for one park (see module doc); the steps run compiled, in the park's generated
    module, and return here only to refresh the Jacobian or shorten a step."""

    def __init__(self, park: Park, rtol: float = 1e-6, atol: float = 1e-6, max_newton: int = 10) -> None:
        import scipy.sparse as sp
        from scipy.sparse.linalg import splu

        self.park = park
        self._splu = splu
        self._advance = park._module.advance
        self.p = park.params
        self.n = park.n_states
        self.rtol, self.atol, self.max_newton = rtol, atol, max_newton
        self._jac: Any = None
        self._lu: dict[float, tuple[Any, ...]] = {}
        self._jac_fresh = False
        # integrated [net energy J, gross energy J, net mass kg, gross mass kg], Newton iterations
        self.acc = np.zeros(5)
        self.steps = 0
        self.jac_evals = 0
        self._eye = sp.identity(self.n, format="csc")

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

    def _refresh_jacobian(self, t: float, x: Array, u: Array) -> None:
        self._jac = self.park.jacobian_sparse(t, x, u, self.p)
        self._lu.clear()
        self._jac_fresh = True
        self.jac_evals += 1

    def _factor(self, hg: float) -> tuple[Any, ...]:
        key = round(hg, 9)
        fac = self._lu.get(key)
        if fac is None:
            lu = self._splu((self._eye - hg * self._jac).tocsc(), options={"Equil": False})
            low = lu.L.tocsc()
            up = lu.U.tocsc()
            low.sort_indices()
            up.sort_indices()
            fac = (
                low.indptr.astype(np.int64),
                low.indices.astype(np.int64),
                low.data.copy(),
                up.indptr.astype(np.int64),
                up.indices.astype(np.int64),
                up.data.copy(),
                lu.perm_r.astype(np.int64),
                lu.perm_c.astype(np.int64),
            )
            self._lu[key] = fac
        return fac

    def _interval(
        self, x: Array, a: float, z: float, ua: Array, ub: Array, h_max: float, depth: int = 0
    ) -> None:
        """Advance x in place over [a, z] (no input breakpoint inside) with inputs linear from ua to ub."""
        n = max(1, math.ceil((z - a) / h_max - 1e-9))
        h = (z - a) / n
        done = 0
        while done < n:
            t = a + done * h
            if self._jac is None:
                self._refresh_jacobian(t, x, ua + (ub - ua) * ((t - a) / (z - a)))
            fac = self._factor(h * GAMMA)
            status, k = self._advance(
                x,
                t,
                h,
                n - done,
                a,
                z,
                ua,
                ub,
                self.p,
                *fac,
                GAMMA,
                self.acc,
                self.rtol,
                self.atol,
                self.max_newton,
            )
            done += k
            self.steps += k
            if k > 0:
                self._jac_fresh = False
            if status == 2:
                self._jac = None
            elif status == 1:
                if not self._jac_fresh:
                    self._jac = None
                    continue
                # a fresh Jacobian did not help: halve the failing step (it starts after the k done)
                ts = a + done * h
                if depth > 12:
                    raise IntegrationError(f"Newton failed at t = {ts:.6g} s even with step {h:.3g} s")
                w0, w1 = (ts - a) / (z - a), (ts + h - a) / (z - a)
                self._interval(x, ts, ts + h, ua + (ub - ua) * w0, ua + (ub - ua) * w1, h / 2, depth + 1)
                done += 1

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
        edges = [t0, *bs, t1]
        for a, z in itertools.pairwise(edges):
            if z - a > 1e-9:
                self._interval(
                    x,
                    a,
                    z,
                    np.asarray(u_of(a), dtype=float),
                    np.asarray(u_of(z, left=True), dtype=float),
                    h_max,
                )
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
