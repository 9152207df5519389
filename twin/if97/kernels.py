"""Scalar IAPWS-IF97 kernels (regions 1, 2, 4, B23, backward T(p, h)) in SI units, numba-compiled.

Every function here takes and returns plain floats in SI units (Pa, K, J/kg, m3/kg, J/(kg K)) and
can be called from Python or from inside other ``@njit`` code. Public kernels (no leading underscore):

    h_pt v_pt u_pt s_pt cp_pt cv_pt w_pt rho_pt (p, T) -> float     regions 1 and 2, NaN elsewhere
    region_pt(p, T) -> int, region_ph(p, h) -> int                   0 outside, 1-5 IF97 region
    p_sat(T), t_sat(p), p_b23(T), t_b23(p), h_2bc(p), p_2bc(h)        boundaries
    t_ph(p, h) -> float                                              backward, regions 1, 2 and 4
    pt_from_rho_u(rho, u) -> (p, T, x)                               two-phase or superheated
    *_array(a, b, out)                                               loops used by twin.steam Kernels never raise for a state
outside their validity: they return NaN (properties) or region code 0/3/5 (region selectors), and the
Python wrappers in ``twin.steam`` turn that into a ``SteamRangeError`` with a readable message.

Compilation switch: the kernels are compiled with ``numba.njit(cache=True)`` unless the environment
variable ``SYMTWIN_DISABLE_NUMBA=1`` is set at import time. A second, never-compiled copy of this
module can be loaded at any time with ``twin.if97.load_plain_kernels()`` (it is imported under the
name ``PLAIN_MODULE_NAME``), so the compiled and the plain path can be compared in one process.

Reference: IAPWS R7-97(2012), Revised Release on the IAPWS Industrial Formulation 1997 for the
Thermodynamic Properties of Water and Steam. Equation and table numbers below refer to it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from twin.if97._coefficients import (
    B2BC,
    B23,
    BACK1_TPH,
    BACK2A_TPH,
    BACK2B_TPH,
    BACK2C_TPH,
    REGION1,
    REGION2_IDEAL_J,
    REGION2_IDEAL_N,
    REGION2_RES,
    REGION4,
    R,
)

PLAIN_MODULE_NAME = "twin.if97._kernels_plain"

# Plain module-level arrays (numba freezes global arrays into the compiled code as constants).
_R1_I, _R1_J, _R1_N = REGION1
_R2_I, _R2_J, _R2_N = REGION2_RES
_B1_I, _B1_J, _B1_N = BACK1_TPH
_B2A_I, _B2A_J, _B2A_N = BACK2A_TPH
_B2B_I, _B2B_J, _B2B_N = BACK2B_TPH
_B2C_I, _B2C_J, _B2C_N = BACK2C_TPH
# Float copies of the exponents (the derivative factors i, i(i-1), ... are then plain float products).
_R1_IF = _R1_I.astype(np.float64)
_R1_JF = _R1_J.astype(np.float64)
_R2_IF = _R2_I.astype(np.float64)
_R2_JF = _R2_J.astype(np.float64)


def _span(e: npt.NDArray[np.int64]) -> tuple[int, int]:
    """Exponent range of a table widened to include 0 (what ``_powers`` needs)."""
    return min(int(e.min()), 0), max(int(e.max()), 0)


# Exponent ranges, frozen as compile-time constants.
_R1_I_LO, _R1_I_HI = _span(_R1_I)
_R1_J_LO, _R1_J_HI = _span(_R1_J)
_R2_I_LO, _R2_I_HI = _span(_R2_I)
_R2_J_LO, _R2_J_HI = _span(_R2_J)
_B1_I_LO, _B1_I_HI = _span(_B1_I)
_B1_J_LO, _B1_J_HI = _span(_B1_J)
_B2A_I_LO, _B2A_I_HI = _span(_B2A_I)
_B2A_J_LO, _B2A_J_HI = _span(_B2A_J)
_B2B_I_LO, _B2B_I_HI = _span(_B2B_I)
_B2B_J_LO, _B2B_J_HI = _span(_B2B_J)
_B2C_I_LO, _B2C_I_HI = _span(_B2C_I)
_B2C_J_LO, _B2C_J_HI = _span(_B2C_J)

F = TypeVar("F", bound=Callable[..., Any])


def numba_requested() -> bool:
    """True unless ``SYMTWIN_DISABLE_NUMBA`` is set to a true value ("1", "true", "yes")."""
    return os.environ.get("SYMTWIN_DISABLE_NUMBA", "").strip().lower() not in {"1", "true", "yes"}


COMPILED: bool = numba_requested() and __name__ != PLAIN_MODULE_NAME

if COMPILED:
    import numba

    def _jit(fn: F) -> F:
        # error_model="numpy": a stray division by zero yields inf/NaN instead of raising inside
        # compiled code, which matches the "kernels return NaN" contract.
        return numba.njit(cache=True, error_model="numpy")(fn)  # type: ignore[return-value]

else:

    def _jit(fn: F) -> F:
        return fn


# ---------------------------------------------------------------------------------------------
# Limits [Pa], [K]
# ---------------------------------------------------------------------------------------------
T_MIN = 273.15  # lower temperature limit of regions 1 and 2
T_MAX_R1 = 623.15  # upper temperature limit of region 1 (region 3 beyond)
T_MAX_R2 = 1073.15  # upper temperature limit of region 2 (region 5 beyond, not implemented)
T_MAX_R5 = 2273.15  # upper temperature limit of IF97 (region 5)
T_B23_MAX = 863.15  # B23 temperature at 100 MPa
P_MAX = 100.0e6  # upper pressure limit of regions 1, 2, 3
P_MAX_R5 = 50.0e6  # upper pressure limit of region 5
P_SAT_TMIN = 611.212677  # p_sat(273.15 K), eq. (30) [Pa]
P_SAT_623 = 16.529164253e6  # p_sat(623.15 K) = p_B23(623.15 K), eq. (30) [Pa]
T_CRIT = 647.096
P_CRIT = 22.064e6
NAN = math.nan

# Enthalpy bounds [J/kg] that let region_ph skip Gibbs evaluations (values from the equations above,
# rounded outward; tests/unit/test_steam.py checks them): h1(p, 273.15 K) <= 95.386 kJ/kg for all
# p <= 100 MPa (largest at 100 MPa); h2(p, 1073.15 K) >= 3715.18 kJ/kg (smallest at 100 MPa); the
# saturated-vapour enthalpy h''(p) <= 2803.29 kJ/kg (largest near 3.08 MPa).
H1_TMIN_MAX = 95.387e3
H2_TMAX_MIN = 3715.18e3
H_SAT_VAPOUR_MAX = 2803.30e3

# Region codes returned by the selectors.
OUTSIDE = 0
REGION_1 = 1
REGION_2 = 2
REGION_3 = 3  # inside IF97 but not implemented here
REGION_4 = 4  # two-phase (only from (p, h) or (rho, u))
REGION_5 = 5  # inside IF97 but not implemented here


# ---------------------------------------------------------------------------------------------
# Polynomial sums: all powers of a base by repeated multiplication (about 3x faster than one
# integer power per term, and as accurate: the error of x**k grows by ~k ulp either way).
# ---------------------------------------------------------------------------------------------
@_jit
def _powers(x: float, lo: int, hi: int) -> Any:
    """Array a with a[k - lo] = x**k for lo <= k <= hi (lo <= 0 <= hi)."""
    out = np.empty(hi - lo + 1)
    out[-lo] = 1.0
    for k in range(1, hi + 1):
        out[k - lo] = out[k - 1 - lo] * x
    if lo < 0:
        xi = 1.0 / x
        for k in range(1, -lo + 1):
            out[-k - lo] = out[-k + 1 - lo] * xi
    return out


@_jit
def _poly2(
    x: float, y: float, ii: Any, jj: Any, nn: Any, i_lo: int, i_hi: int, j_lo: int, j_hi: int
) -> float:
    """sum_k nn[k] * x**ii[k] * y**jj[k] (the form of every backward equation)."""
    xp = _powers(x, i_lo, i_hi)
    yp = _powers(y, j_lo, j_hi)
    total = 0.0
    for k in range(nn.shape[0]):
        total += nn[k] * xp[ii[k] - i_lo] * yp[jj[k] - j_lo]
    return total


# ---------------------------------------------------------------------------------------------
# Region 4: saturation line, eqs. (30) and (31). Valid 273.15 K <= T <= 647.096 K.
# ---------------------------------------------------------------------------------------------
@_jit
def p_sat(T: float) -> float:
    """Saturation pressure [Pa] at temperature T [K], eq. (30); NaN outside 273.15-647.096 K."""
    if not (T_MIN <= T <= T_CRIT):
        return NAN
    n = REGION4
    theta = T + n[9] / (T - n[10])
    a = theta * theta + n[1] * theta + n[2]
    b = n[3] * theta * theta + n[4] * theta + n[5]
    c = n[6] * theta * theta + n[7] * theta + n[8]
    x = 2.0 * c / (-b + math.sqrt(b * b - 4.0 * a * c))
    return 1.0e6 * x * x * x * x


@_jit
def t_sat(p: float) -> float:
    """Saturation temperature [K] at pressure p [Pa], eq. (31); NaN outside 611.213 Pa-22.064 MPa."""
    if not (P_SAT_TMIN * (1.0 - 1e-9) <= p <= P_CRIT):
        return NAN
    n = REGION4
    beta = math.sqrt(math.sqrt(p * 1.0e-6))
    e = beta * beta + n[3] * beta + n[6]
    f = n[1] * beta * beta + n[4] * beta + n[7]
    g = n[2] * beta * beta + n[5] * beta + n[8]
    d = 2.0 * g / (-f - math.sqrt(f * f - 4.0 * e * g))
    return 0.5 * (n[10] + d - math.sqrt((n[10] + d) * (n[10] + d) - 4.0 * (n[9] + n[10] * d)))


# ---------------------------------------------------------------------------------------------
# Boundary between regions 2 and 3 (B23), eqs. (5) and (6). Valid 623.15-863.15 K.
# ---------------------------------------------------------------------------------------------
@_jit
def p_b23(T: float) -> float:
    """Pressure [Pa] on the region 2/3 boundary at temperature T [K], eq. (5)."""
    return 1.0e6 * (B23[1] + B23[2] * T + B23[3] * T * T)


@_jit
def t_b23(p: float) -> float:
    """Temperature [K] on the region 2/3 boundary at pressure p [Pa], eq. (6); NaN below n5 MPa."""
    arg = (p * 1.0e-6 - B23[5]) / B23[3]
    if arg < 0.0:
        return NAN
    return B23[4] + math.sqrt(arg)


# ---------------------------------------------------------------------------------------------
# Region 1: Gibbs free energy, eq. (7), Table 2; properties from Table 3.
# ---------------------------------------------------------------------------------------------
P_STAR_1 = 16.53e6
T_STAR_1 = 1386.0


@_jit
def _gamma1(p: float, T: float) -> tuple[float, float, float, float, float, float]:
    """gamma and its derivatives (g, g_pi, g_pipi, g_tau, g_tautau, g_pitau) of region 1, eq. (7)."""
    x = 7.1 - p / P_STAR_1
    y = T_STAR_1 / T - 1.222
    xp = _powers(x, _R1_I_LO, _R1_I_HI)
    yp = _powers(y, _R1_J_LO, _R1_J_HI)
    g = 0.0
    gp = 0.0
    gpp = 0.0
    gt = 0.0
    gtt = 0.0
    gpt = 0.0
    for k in range(_R1_N.shape[0]):
        i = _R1_IF[k]
        j = _R1_JF[k]
        term = _R1_N[k] * xp[_R1_I[k] - _R1_I_LO] * yp[_R1_J[k] - _R1_J_LO]
        g += term
        # d/dpi (7.1 - pi)**i = -i (7.1 - pi)**(i-1); the 1/x and 1/y factors are applied once below.
        gp -= i * term
        gpp += i * (i - 1.0) * term
        gt += j * term
        gtt += j * (j - 1.0) * term
        gpt -= i * j * term
    xi = 1.0 / x
    yi = 1.0 / y
    return g, gp * xi, gpp * xi * xi, gt * yi, gtt * yi * yi, gpt * xi * yi


@_jit
def _r1_v(p: float, T: float) -> float:
    pi = p / P_STAR_1
    _, gp, _, _, _, _ = _gamma1(p, T)
    return pi * gp * R * T / p


@_jit
def _r1_h(p: float, T: float) -> float:
    tau = T_STAR_1 / T
    _, _, _, gt, _, _ = _gamma1(p, T)
    return R * T * tau * gt


@_jit
def _r1_u(p: float, T: float) -> float:
    pi = p / P_STAR_1
    tau = T_STAR_1 / T
    _, gp, _, gt, _, _ = _gamma1(p, T)
    return R * T * (tau * gt - pi * gp)


@_jit
def _r1_s(p: float, T: float) -> float:
    tau = T_STAR_1 / T
    g, _, _, gt, _, _ = _gamma1(p, T)
    return R * (tau * gt - g)


@_jit
def _r1_cp(p: float, T: float) -> float:
    tau = T_STAR_1 / T
    _, _, _, _, gtt, _ = _gamma1(p, T)
    return -R * tau * tau * gtt


@_jit
def _r1_cv(p: float, T: float) -> float:
    tau = T_STAR_1 / T
    _, gp, gpp, _, gtt, gpt = _gamma1(p, T)
    a = gp - tau * gpt
    return R * (-tau * tau * gtt + a * a / gpp)


@_jit
def _r1_w(p: float, T: float) -> float:
    tau = T_STAR_1 / T
    _, gp, gpp, _, gtt, gpt = _gamma1(p, T)
    a = gp - tau * gpt
    return math.sqrt(R * T * gp * gp / (a * a / (tau * tau * gtt) - gpp))


# ---------------------------------------------------------------------------------------------
# Region 2: Gibbs free energy, eqs. (15)-(17), Tables 10 and 11; properties from Table 12.
# ---------------------------------------------------------------------------------------------
P_STAR_2 = 1.0e6
T_STAR_2 = 540.0


@_jit
def _gamma2(p: float, T: float) -> tuple[float, float, float, float, float, float]:
    """gamma = gamma0 + gamma_r and its derivatives (g, g_pi, g_pipi, g_tau, g_tautau, g_pitau) of
    region 2, eqs. (15)-(17)."""
    pi = p / P_STAR_2
    tau = T_STAR_2 / T
    # Ideal-gas part, eq. (16): g0 = ln(pi) + sum n0 tau**J0.
    g0 = math.log(pi)
    g0t = 0.0
    g0tt = 0.0
    for k in range(REGION2_IDEAL_N.shape[0]):
        j = REGION2_IDEAL_J[k]
        term = REGION2_IDEAL_N[k] * tau**j
        g0 += term
        g0t += j * term
        g0tt += j * (j - 1) * term
    # Residual part, eq. (17): gr = sum n pi**I (tau - 0.5)**J.
    y = tau - 0.5
    xp = _powers(pi, _R2_I_LO, _R2_I_HI)
    yp = _powers(y, _R2_J_LO, _R2_J_HI)
    g = 0.0
    gp = 0.0
    gpp = 0.0
    gt = 0.0
    gtt = 0.0
    gpt = 0.0
    for k in range(_R2_N.shape[0]):
        i = _R2_IF[k]
        j = _R2_JF[k]
        term = _R2_N[k] * xp[_R2_I[k] - _R2_I_LO] * yp[_R2_J[k] - _R2_J_LO]
        g += term
        gp += i * term
        gpp += i * (i - 1.0) * term
        gt += j * term
        gtt += j * (j - 1.0) * term
        gpt += i * j * term
    xi = 1.0 / pi
    yi = 1.0 / y
    ti = 1.0 / tau
    return (
        g0 + g,
        xi + gp * xi,
        -xi * xi + gpp * xi * xi,
        g0t * ti + gt * yi,
        g0tt * ti * ti + gtt * yi * yi,
        gpt * xi * yi,
    )


@_jit
def _r2_v(p: float, T: float) -> float:
    pi = p / P_STAR_2
    _, gp, _, _, _, _ = _gamma2(p, T)
    return pi * gp * R * T / p


@_jit
def _r2_h(p: float, T: float) -> float:
    tau = T_STAR_2 / T
    _, _, _, gt, _, _ = _gamma2(p, T)
    return R * T * tau * gt


@_jit
def _r2_u(p: float, T: float) -> float:
    pi = p / P_STAR_2
    tau = T_STAR_2 / T
    _, gp, _, gt, _, _ = _gamma2(p, T)
    return R * T * (tau * gt - pi * gp)


@_jit
def _r2_s(p: float, T: float) -> float:
    tau = T_STAR_2 / T
    g, _, _, gt, _, _ = _gamma2(p, T)
    return R * (tau * gt - g)


@_jit
def _r2_cp(p: float, T: float) -> float:
    tau = T_STAR_2 / T
    _, _, _, _, gtt, _ = _gamma2(p, T)
    return -R * tau * tau * gtt


@_jit
def _r2_cv(p: float, T: float) -> float:
    tau = T_STAR_2 / T
    _, gp, gpp, _, gtt, gpt = _gamma2(p, T)
    # Table 12 writes cv with the residual derivatives; with the full gamma (gp = 1/pi + gr_pi ...)
    # the same expression is cv = R (-tau^2 g_tautau + (g_pi - tau g_pitau)^2 / g_pipi).
    a = gp - tau * gpt
    return R * (-tau * tau * gtt + a * a / gpp)


@_jit
def _r2_w(p: float, T: float) -> float:
    tau = T_STAR_2 / T
    _, gp, gpp, _, gtt, gpt = _gamma2(p, T)
    a = gp - tau * gpt
    return math.sqrt(R * T * gp * gp / (a * a / (tau * tau * gtt) - gpp))


# ---------------------------------------------------------------------------------------------
# Region selection from (p, T)
# ---------------------------------------------------------------------------------------------
@_jit
def region_pt(p: float, T: float) -> int:
    """IF97 region of the state (p [Pa], T [K]): 1, 2, 3 or 5 (the last two not implemented), 0 outside.

    On the saturation line (p == p_sat(T)) the state is taken as saturated liquid, region 1.
    """
    if not (p > 0.0 and T >= T_MIN):  # also catches NaN
        return OUTSIDE
    if T <= T_MAX_R1:
        if p > P_MAX:
            return OUTSIDE
        if p >= p_sat(T):
            return REGION_1
        return REGION_2
    if T <= T_MAX_R2:
        if p > P_MAX:
            return OUTSIDE
        if T <= T_B23_MAX and p > p_b23(T):
            return REGION_3
        return REGION_2
    if T <= T_MAX_R5 and p <= P_MAX_R5:
        return REGION_5
    return OUTSIDE


@_jit
def v_pt(p: float, T: float) -> float:
    """Specific volume [m3/kg] at p [Pa], T [K]; NaN outside regions 1 and 2."""
    r = region_pt(p, T)
    if r == REGION_1:
        return _r1_v(p, T)
    if r == REGION_2:
        return _r2_v(p, T)
    return NAN


@_jit
def h_pt(p: float, T: float) -> float:
    """Specific enthalpy [J/kg] at p [Pa], T [K]; NaN outside regions 1 and 2."""
    r = region_pt(p, T)
    if r == REGION_1:
        return _r1_h(p, T)
    if r == REGION_2:
        return _r2_h(p, T)
    return NAN


@_jit
def u_pt(p: float, T: float) -> float:
    """Specific internal energy [J/kg] at p [Pa], T [K]; NaN outside regions 1 and 2."""
    r = region_pt(p, T)
    if r == REGION_1:
        return _r1_u(p, T)
    if r == REGION_2:
        return _r2_u(p, T)
    return NAN


@_jit
def s_pt(p: float, T: float) -> float:
    """Specific entropy [J/(kg K)] at p [Pa], T [K]; NaN outside regions 1 and 2."""
    r = region_pt(p, T)
    if r == REGION_1:
        return _r1_s(p, T)
    if r == REGION_2:
        return _r2_s(p, T)
    return NAN


@_jit
def cp_pt(p: float, T: float) -> float:
    """Specific isobaric heat capacity [J/(kg K)] at p [Pa], T [K]; NaN outside regions 1 and 2."""
    r = region_pt(p, T)
    if r == REGION_1:
        return _r1_cp(p, T)
    if r == REGION_2:
        return _r2_cp(p, T)
    return NAN


@_jit
def cv_pt(p: float, T: float) -> float:
    """Specific isochoric heat capacity [J/(kg K)] at p [Pa], T [K]; NaN outside regions 1 and 2."""
    r = region_pt(p, T)
    if r == REGION_1:
        return _r1_cv(p, T)
    if r == REGION_2:
        return _r2_cv(p, T)
    return NAN


@_jit
def w_pt(p: float, T: float) -> float:
    """Speed of sound [m/s] at p [Pa], T [K]; NaN outside regions 1 and 2."""
    r = region_pt(p, T)
    if r == REGION_1:
        return _r1_w(p, T)
    if r == REGION_2:
        return _r2_w(p, T)
    return NAN


@_jit
def rho_pt(p: float, T: float) -> float:
    """Density [kg/m3] at p [Pa], T [K]; NaN outside regions 1 and 2."""
    return 1.0 / v_pt(p, T)


# ---------------------------------------------------------------------------------------------
# Backward equations T(p, h): region 1 eq. (11); region 2a/2b/2c eqs. (22)-(24); B2bc eq. (20)/(21)
# ---------------------------------------------------------------------------------------------
@_jit
def _t1_ph(p: float, h: float) -> float:
    """Backward T(p, h) of region 1, eq. (11): theta = sum n pi**I (eta + 1)**J, eta = h / 2500 kJ/kg."""
    return _poly2(p * 1.0e-6, h / 2500.0e3 + 1.0, _B1_I, _B1_J, _B1_N, _B1_I_LO, _B1_I_HI, _B1_J_LO, _B1_J_HI)


@_jit
def h_2bc(p: float) -> float:
    """Enthalpy [J/kg] on the boundary between regions 2b and 2c at pressure p [Pa], eq. (21)."""
    return 1.0e3 * (B2BC[4] + math.sqrt((p * 1.0e-6 - B2BC[5]) / B2BC[3]))


@_jit
def p_2bc(h: float) -> float:
    """Pressure [Pa] on the boundary between regions 2b and 2c at enthalpy h [J/kg], eq. (20)."""
    eta = h * 1.0e-3
    return 1.0e6 * (B2BC[1] + B2BC[2] * eta + B2BC[3] * eta * eta)


@_jit
def _t2_ph(p: float, h: float) -> float:
    """Backward T(p, h) of region 2, eqs. (22)-(24), eta = h / 2000 kJ/kg; subregion 2a up to 4 MPa,
    then 2b for h >= h_2bc(p) (equivalently p <= p_2bc(h)) and 2c below."""
    pi = p * 1.0e-6
    eta = h / 2000.0e3
    if p <= 4.0e6:
        return _poly2(pi, eta - 2.1, _B2A_I, _B2A_J, _B2A_N, _B2A_I_LO, _B2A_I_HI, _B2A_J_LO, _B2A_J_HI)
    if p <= p_2bc(h):
        return _poly2(pi - 2.0, eta - 2.6, _B2B_I, _B2B_J, _B2B_N, _B2B_I_LO, _B2B_I_HI, _B2B_J_LO, _B2B_J_HI)
    return _poly2(pi + 25.0, eta - 1.8, _B2C_I, _B2C_J, _B2C_N, _B2C_I_LO, _B2C_I_HI, _B2C_J_LO, _B2C_J_HI)


@_jit
def region_ph(p: float, h: float) -> int:
    """IF97 region of the state (p [Pa], h [J/kg]): 1, 2, 4 (two-phase), 3 or 5 (not implemented), 0 outside."""
    if not (0.0 < p <= P_MAX) or h != h:
        return OUTSIDE
    if p < P_SAT_TMIN:
        # Below the triple-point pressure only vapour (region 2) exists.
        if _r2_h(p, T_MIN) <= h <= _r2_h(p, T_MAX_R2):
            return REGION_2
        if h > _r2_h(p, T_MAX_R2) and p <= P_MAX_R5:
            return REGION_5
        return OUTSIDE
    # The outer limits h(p, 273.15 K) and h(p, 1073.15 K) cost a Gibbs evaluation each; skip them
    # when h is clearly inside (H1_TMIN_MAX, H2_TMAX_MIN bound them over 0 < p <= 100 MPa).
    if h < H1_TMIN_MAX and h < _r1_h(p, T_MIN):
        return OUTSIDE
    if h > H2_TMAX_MIN and h > _r2_h(p, T_MAX_R2):
        return REGION_5 if p <= P_MAX_R5 else OUTSIDE
    if p <= P_SAT_623:
        if h > H_SAT_VAPOUR_MAX:
            return REGION_2  # above the highest saturated-vapour enthalpy: no need for T_sat(p)
        ts = t_sat(p)
        if h <= _r1_h(p, ts):
            return REGION_1
        if h >= _r2_h(p, ts):
            return REGION_2
        return REGION_4
    if h <= _r1_h(p, T_MAX_R1):
        return REGION_1
    if h >= _r2_h(p, t_b23(p)):
        return REGION_2
    return REGION_3


@_jit
def t_ph(p: float, h: float) -> float:
    """Temperature [K] from pressure p [Pa] and specific enthalpy h [J/kg] by the backward equations.

    Region 1: eq. (11); region 2: eqs. (22)-(24) with the 2a/2b split at 4 MPa and the 2b/2c split
    at B2bc, eq. (20); two-phase (region 4): T_sat(p). NaN in regions 3 and 5 and outside IF97.
    The backward equations agree with the forward ones to within 25 mK (region 1 and 2c) and 10 mK
    (2a, 2b), release sections 5.2.1 and 6.3.1 (below 611 Pa, 2a reaches ~17 mK near 300 K); they
    are not iterated to the forward equations.
    """
    r = region_ph(p, h)
    if r == REGION_1:
        return _t1_ph(p, h)
    if r == REGION_2:
        return _t2_ph(p, h)
    if r == REGION_4:
        return t_sat(p)
    return NAN


# ---------------------------------------------------------------------------------------------
# (rho, u) -> (p, T, x): the steam header's equation of state
# ---------------------------------------------------------------------------------------------
# Validity of pt_from_rho_u: saturation temperatures T_LO..T_HI (p_sat ~ 0.61 kPa ... 16.5 MPa)
# for two-phase states; superheated states in region 2 (up to 1073.15 K and below B23/16.5 MPa).
RHOU_T_LO = 273.16
RHOU_T_HI = 623.15
_CV_GUESS = 1500.0  # rough cv of steam [J/(kg K)], only for the Newton start
_X_TOL = 1e-9  # vapour fractions within this of [0, 1] are rounding errors of a saturated state


@_jit
def _sat_vu(T: float) -> tuple[float, float, float, float, float]:
    """(p_sat, v', u', v'', u'') on the saturation line at temperature T [K] (T <= 623.15 K)."""
    ps = p_sat(T)
    _, gp1, _, gt1, _, _ = _gamma1(ps, T)
    _, gp2, _, gt2, _, _ = _gamma2(ps, T)
    pi1 = ps / P_STAR_1
    pi2 = ps / P_STAR_2
    v1 = pi1 * gp1 * R * T / ps
    u1 = R * T * (T_STAR_1 / T * gt1 - pi1 * gp1)
    v2 = pi2 * gp2 * R * T / ps
    u2 = R * T * (T_STAR_2 / T * gt2 - pi2 * gp2)
    return ps, v1, u1, v2, u2


@_jit
def _vu_derivs(
    gp: float, gpp: float, gt: float, gtt: float, gpt: float, p: float, T: float, p_star: float, t_star: float
) -> tuple[float, float, float, float, float, float]:
    """v, u and their partial derivatives (dv/dp, dv/dT, du/dp, du/dT) from the Gibbs derivatives of
    region 1 or 2 (pi = p/p_star, tau = t_star/T); Tables 3 and 12 differentiated by p and T."""
    pi = p / p_star
    tau = t_star / T
    v = R * T * gp / p_star
    u = R * t_star * gt - R * T * pi * gp
    dv_dp = R * T * gpp / (p_star * p_star)
    dv_dT = R * (gp - tau * gpt) / p_star
    du_dp = R * (t_star * gpt - T * (gp + pi * gpp)) / p_star
    du_dT = -R * tau * tau * gtt - R * pi * (gp - tau * gpt)
    return v, u, dv_dp, dv_dT, du_dp, du_dT


@_jit
def _sat_derivs(T: float) -> tuple[float, float, float, float, float, float, float, float, float]:
    """(p_sat, v', u', v'', u'' and their total T-derivatives along the saturation line) at T [K]."""
    ps = p_sat(T)
    # dp_sat/dT by a central difference: its O(d^2) error (~1e-9 relative) only slows Newton.
    d = 1.0e-3
    dps = (p_sat(T + d) - p_sat(T - d)) / (2.0 * d)
    _, gp, gpp, gt, gtt, gpt = _gamma1(ps, T)
    v1, u1, v1p, v1t, u1p, u1t = _vu_derivs(gp, gpp, gt, gtt, gpt, ps, T, P_STAR_1, T_STAR_1)
    _, gp, gpp, gt, gtt, gpt = _gamma2(ps, T)
    v2, u2, v2p, v2t, u2p, u2t = _vu_derivs(gp, gpp, gt, gtt, gpt, ps, T, P_STAR_2, T_STAR_2)
    return ps, v1, u1, v2, u2, v1p * dps + v1t, u1p * dps + u1t, v2p * dps + v2t, u2p * dps + u2t


# ln v''(T) at the two ends of the range, only used for the first guess of _t_dew_from_v.
_LNV_G_LO = math.log(206.1)  # v''(273.16 K) ~ 206.0 m3/kg
_LNV_G_HI = math.log(0.008803)  # v''(623.15 K) ~ 0.00880 m3/kg


@_jit
def _t_dew_from_v(v: float) -> float:
    """Saturation temperature [K] whose saturated-vapour volume equals v [m3/kg]; NaN if outside
    RHOU_T_LO..RHOU_T_HI.

    Newton on ln v''(T) = ln v in the variable s = 1/T, where ln v'' is nearly linear (Clausius-Clapeyron
    with an ideal gas), started from that straight line; iterates are kept inside the range.
    """
    lnv = math.log(v)
    s_lo = 1.0 / RHOU_T_HI
    s_hi = 1.0 / RHOU_T_LO
    s = s_lo + (lnv - _LNV_G_HI) * (s_hi - s_lo) / (_LNV_G_LO - _LNV_G_HI)
    s = min(max(s, s_lo), s_hi)
    for _ in range(50):
        T = 1.0 / s
        ps = p_sat(T)
        d = 1.0e-3
        dps = (p_sat(T + d) - p_sat(T - d)) / (2.0 * d)
        _, gp, gpp, gt, gtt, gpt = _gamma2(ps, T)
        vg, _, vp, vt, _, _ = _vu_derivs(gp, gpp, gt, gtt, gpt, ps, T, P_STAR_2, T_STAR_2)
        g = math.log(vg) - lnv
        dg_ds = (vp * dps + vt) / vg * (-T * T)
        step = -g / dg_ds
        s_new = min(max(s + step, s_lo), s_hi)
        if s_new == s:
            # Pinned at an end of the range: v'' cannot reach v inside it.
            return NAN if abs(g) > 1e-12 else T
        if abs(s_new - s) < 1e-14 * s:
            return 1.0 / s_new
        s = s_new
    return NAN


@_jit
def _t_mix(v: float, u: float, t_lo: float, t_hi: float) -> float:
    """Saturation temperature [K] of the two-phase state (v, u) within [t_lo, t_hi]; NaN if none.

    f(T) = u' + x (u'' - u') - u with x = (v - v')/(v'' - v') rises with T along the isochore; safeguarded
    Newton from t_hi (bisection whenever a step would leave the bracket).
    """
    tol = 1e-12 * abs(u) + 1e-9
    a = t_lo
    b = t_hi
    T = t_hi
    f_lo_checked = False
    for it in range(100):
        _, vl, ul, vg, ug, dvl, dul, dvg, dug = _sat_derivs(T)
        dv = vg - vl
        x = (v - vl) / dv
        f = ul + x * (ug - ul) - u
        if abs(f) <= tol:
            return T
        dx = (-dvl * dv - (v - vl) * (dvg - dvl)) / (dv * dv)
        df = dul + dx * (ug - ul) + x * (dug - dul)
        if f > 0.0:
            b = T
        else:
            a = T
            if it == 0:
                # Below the mixture energy even at the top of the bracket: saturated vapour within
                # rounding, or no two-phase solution.
                return T if f > -1e3 * tol else NAN
        T_new = T - f / df if df > 0.0 else 0.5 * (a + b)
        if not (a < T_new < b):
            if not f_lo_checked and a == t_lo:
                # The root may lie below t_lo (compressed liquid or too cold): check once.
                _, vl, ul, vg, ug, _, _, _, _ = _sat_derivs(t_lo)
                if ul + (v - vl) / (vg - vl) * (ug - ul) - u > 0.0:
                    return NAN
                f_lo_checked = True
            T_new = 0.5 * (a + b)
        if abs(T_new - T) < 1e-13 * T:
            return T_new
        T = T_new
    return NAN


@_jit
def _pt_region2_from_vu(v: float, u: float, p0: float, T0: float) -> tuple[float, float]:
    """Newton on region 2 for (p, T) with v(p, T) = v and u(p, T) = u, from the start (p0, T0).

    The Jacobian is analytic from the Gibbs derivatives (Table 12 quantities differentiated by p and T).
    Steps are limited (|dT| <= 100 K, |dp| <= p/2) so the iterate stays in region 2. NaN if no convergence.
    """
    p = p0
    T = T0
    for _ in range(60):
        pi = p / P_STAR_2
        tau = T_STAR_2 / T
        _, gp, gpp, gt, gtt, gpt = _gamma2(p, T)
        v_c = R * T * gp / P_STAR_2
        u_c = R * T * (tau * gt - pi * gp)
        dv_dp = R * T * gpp / (P_STAR_2 * P_STAR_2)
        dv_dT = R * (gp - tau * gpt) / P_STAR_2
        du_dp = R * (T_STAR_2 * gpt - T * (gp + pi * gpp)) / P_STAR_2
        du_dT = -R * tau * tau * gtt - R * pi * (gp - tau * gpt)
        r1 = v_c - v
        r2 = u_c - u
        det = dv_dp * du_dT - dv_dT * du_dp
        dp = -(du_dT * r1 - dv_dT * r2) / det
        dT = -(-du_dp * r1 + dv_dp * r2) / det
        if dT > 100.0:
            dT = 100.0
        elif dT < -100.0:
            dT = -100.0
        if dp > 0.5 * p:
            dp = 0.5 * p
        elif dp < -0.5 * p:
            dp = -0.5 * p
        p += dp
        T += dT
        if T < T_MIN:
            T = T_MIN
        elif T > T_MAX_R2:
            T = T_MAX_R2
        if abs(dT) < 1e-11 * T and abs(dp) < 1e-11 * p:
            return p, T
    return NAN, NAN


@_jit
def pt_from_rho_u(rho: float, u: float) -> tuple[float, float, float]:
    """Pressure [Pa], temperature [K] and vapour mass fraction x [-] from density rho [kg/m3] and
    specific internal energy u [J/kg], for two-phase (IF97 region 4) and superheated (region 2) water.

    Two-phase: the saturation temperature T_s solves u'(T_s) + x (u''(T_s) - u'(T_s)) = u with
    x = (v - v'(T_s)) / (v''(T_s) - v'(T_s)), v = 1/rho, saturated states from regions 1 and 2 at
    p_sat(T_s); then p = p_sat(T_s). Superheated (u above u'' on the isochore's dew point): Newton on
    region 2 for v(p, T) = v and u(p, T) = u; x = 1.

    Validity: saturation temperatures 273.16-623.15 K (p_sat 0.61 kPa-16.5 MPa) for two-phase states,
    and region 2 states with p <= 16.5 MPa (below B23) and T <= 1073.15 K for superheated ones.
    Compressed liquid (x < 0), region 3 and anything else returns (NaN, NaN, NaN).
    """
    if not (rho > 0.0) or u != u:
        return NAN, NAN, NAN
    v = 1.0 / rho
    t_dew = _t_dew_from_v(v)
    if t_dew == t_dew:
        ps, _, _, _, ug = _sat_vu(t_dew)
        if u > ug:
            T0 = t_dew + (u - ug) / _CV_GUESS
            if T0 > T_MAX_R2:
                T0 = T_MAX_R2
            p0 = ps * T0 / t_dew
            p, T = _pt_region2_from_vu(v, u, p0, T0)
        else:
            ts = _t_mix(v, u, RHOU_T_LO, t_dew)
            if ts != ts:
                return NAN, NAN, NAN
            ps, vl, _, vg, _ = _sat_vu(ts)
            x = (v - vl) / (vg - vl)
            if x < -_X_TOL:
                return NAN, NAN, NAN
            return ps, ts, min(max(x, 0.0), 1.0)
    elif v > _r2_v(p_sat(RHOU_T_LO), RHOU_T_LO):
        # Less dense than saturated vapour at the triple point: vapour only; ideal-gas start.
        ug_lo = _r2_u(p_sat(RHOU_T_LO), RHOU_T_LO)
        T0 = RHOU_T_LO + (u - ug_lo) / _CV_GUESS
        if T0 < RHOU_T_LO:
            return NAN, NAN, NAN
        if T0 > T_MAX_R2:
            T0 = T_MAX_R2
        p, T = _pt_region2_from_vu(v, u, R * T0 / v, T0)
    else:
        # Denser than saturated vapour at 623.15 K: two-phase with T_s <= 623.15 K, or outside.
        ts = _t_mix(v, u, RHOU_T_LO, RHOU_T_HI)
        if ts != ts:
            return NAN, NAN, NAN
        ps, vl, _, vg, _ = _sat_vu(ts)
        x = (v - vl) / (vg - vl)
        if x < -_X_TOL or x > 1.0 + _X_TOL:
            return NAN, NAN, NAN
        return ps, ts, min(max(x, 0.0), 1.0)
    # Accept the Newton result only in region 2 (a saturated-vapour start may land a rounding error
    # on the liquid side of the saturation line, hence the relative allowance).
    if not (T_MIN <= T <= T_MAX_R2 and 0.0 < p <= P_SAT_623):
        return NAN, NAN, NAN
    if T <= T_MAX_R1 and p > p_sat(T) * (1.0 + 1e-9):
        return NAN, NAN, NAN
    return p, T, 1.0


# ---------------------------------------------------------------------------------------------
# Array loops used by the vectorised Python API (inputs: 1-D contiguous float64 of equal length)
# ---------------------------------------------------------------------------------------------
@_jit
def region_pt_array(p: Any, T: Any, out: Any) -> None:
    for k in range(out.shape[0]):
        out[k] = region_pt(p[k], T[k])


@_jit
def region_ph_array(p: Any, h: Any, out: Any) -> None:
    for k in range(out.shape[0]):
        out[k] = region_ph(p[k], h[k])


@_jit
def v_pt_array(p: Any, T: Any, out: Any) -> None:
    for k in range(out.shape[0]):
        out[k] = v_pt(p[k], T[k])


@_jit
def h_pt_array(p: Any, T: Any, out: Any) -> None:
    for k in range(out.shape[0]):
        out[k] = h_pt(p[k], T[k])


@_jit
def u_pt_array(p: Any, T: Any, out: Any) -> None:
    for k in range(out.shape[0]):
        out[k] = u_pt(p[k], T[k])


@_jit
def s_pt_array(p: Any, T: Any, out: Any) -> None:
    for k in range(out.shape[0]):
        out[k] = s_pt(p[k], T[k])


@_jit
def cp_pt_array(p: Any, T: Any, out: Any) -> None:
    for k in range(out.shape[0]):
        out[k] = cp_pt(p[k], T[k])


@_jit
def cv_pt_array(p: Any, T: Any, out: Any) -> None:
    for k in range(out.shape[0]):
        out[k] = cv_pt(p[k], T[k])


@_jit
def w_pt_array(p: Any, T: Any, out: Any) -> None:
    for k in range(out.shape[0]):
        out[k] = w_pt(p[k], T[k])


@_jit
def t_ph_array(p: Any, h: Any, out: Any) -> None:
    for k in range(out.shape[0]):
        out[k] = t_ph(p[k], h[k])


@_jit
def p_sat_array(T: Any, out: Any) -> None:
    for k in range(out.shape[0]):
        out[k] = p_sat(T[k])


@_jit
def t_sat_array(p: Any, out: Any) -> None:
    for k in range(out.shape[0]):
        out[k] = t_sat(p[k])


@_jit
def pt_from_rho_u_array(rho: Any, u: Any, p_out: Any, T_out: Any, x_out: Any) -> None:
    for k in range(p_out.shape[0]):
        p, T, x = pt_from_rho_u(rho[k], u[k])
        p_out[k] = p
        T_out[k] = T
        x_out[k] = x
