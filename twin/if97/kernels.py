"""Scalar IAPWS-IF97 kernels (regions 1, 2, 4, B23, backward T(p, h)) in SI units, numba-compiled.

Every function here takes and returns plain floats in SI units (Pa, K, J/kg, m3/kg, J/(kg K)) and
can be called from Python or from inside other ``@njit`` code. Kernels never raise for a state
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

# Region codes returned by the selectors.
OUTSIDE = 0
REGION_1 = 1
REGION_2 = 2
REGION_3 = 3  # inside IF97 but not implemented here
REGION_4 = 4  # two-phase (only from (p, h) or (rho, u))
REGION_5 = 5  # inside IF97 but not implemented here


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
    """gamma and its derivatives (g, g_pi, g_pipi, g_tau, g_tautau, g_pitau) of region 1."""
    pi = p / P_STAR_1
    tau = T_STAR_1 / T
    x = 7.1 - pi
    y = tau - 1.222
    g = 0.0
    gp = 0.0
    gpp = 0.0
    gt = 0.0
    gtt = 0.0
    gpt = 0.0
    ii = _R1_I
    jj = _R1_J
    nn = _R1_N
    for k in range(nn.shape[0]):
        i = ii[k]
        j = jj[k]
        term = nn[k] * x**i * y**j
        g += term
        # d/dpi of x**i is -i x**(i-1); d/dtau of y**j is j y**(j-1).
        gp -= i * term / x
        gpp += i * (i - 1) * term / (x * x)
        gt += j * term / y
        gtt += j * (j - 1) * term / (y * y)
        gpt -= i * j * term / (x * y)
    return g, gp, gpp, gt, gtt, gpt


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
    """gamma = gamma0 + gamma_r and its derivatives (g, g_pi, g_pipi, g_tau, g_tautau, g_pitau)."""
    pi = p / P_STAR_2
    tau = T_STAR_2 / T
    # Ideal-gas part, eq. (16): g0 = ln(pi) + sum n0 tau**J0.
    g = math.log(pi)
    gp = 1.0 / pi
    gpp = -1.0 / (pi * pi)
    gt = 0.0
    gtt = 0.0
    for k in range(REGION2_IDEAL_N.shape[0]):
        j = REGION2_IDEAL_J[k]
        term = REGION2_IDEAL_N[k] * tau**j
        g += term
        gt += j * term / tau
        gtt += j * (j - 1) * term / (tau * tau)
    # Residual part, eq. (17): gr = sum n pi**I (tau - 0.5)**J.
    gpt = 0.0
    y = tau - 0.5
    ii = _R2_I
    jj = _R2_J
    nn = _R2_N
    for k in range(nn.shape[0]):
        i = ii[k]
        j = jj[k]
        term = nn[k] * pi**i * y**j
        g += term
        gp += i * term / pi
        gpp += i * (i - 1) * term / (pi * pi)
        gt += j * term / y
        gtt += j * (j - 1) * term / (y * y)
        gpt += i * j * term / (pi * y)
    return g, gp, gpp, gt, gtt, gpt


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
    pi = p * 1.0e-6
    eta1 = h / 2500.0e3 + 1.0
    theta = 0.0
    for k in range(_B1_N.shape[0]):
        theta += _B1_N[k] * pi ** _B1_I[k] * eta1 ** _B1_J[k]
    return theta


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
    pi = p * 1.0e-6
    eta = h / 2000.0e3
    theta = 0.0
    if p <= 4.0e6:
        y = eta - 2.1
        for k in range(_B2A_N.shape[0]):
            theta += _B2A_N[k] * pi ** _B2A_I[k] * y ** _B2A_J[k]
    elif p <= p_2bc(h):
        x = pi - 2.0
        y = eta - 2.6
        for k in range(_B2B_N.shape[0]):
            theta += _B2B_N[k] * x ** _B2B_I[k] * y ** _B2B_J[k]
    else:
        x = pi + 25.0
        y = eta - 1.8
        for k in range(_B2C_N.shape[0]):
            theta += _B2C_N[k] * x ** _B2C_I[k] * y ** _B2C_J[k]
    return theta


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
    if h < _r1_h(p, T_MIN):
        return OUTSIDE
    if h > _r2_h(p, T_MAX_R2):
        return REGION_5 if p <= P_MAX_R5 else OUTSIDE
    if p <= P_SAT_623:
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
    The backward equations agree with the forward ones to within 25 mK (region 1) and 10 mK
    (region 2), release section 5.2.1 and 6.3.1; they are not iterated to the forward equations.
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
    return ps, _r1_v(ps, T), _r1_u(ps, T), _r2_v(ps, T), _r2_u(ps, T)


@_jit
def _t_dew_from_v(v: float) -> float:
    """Saturation temperature [K] whose saturated-vapour volume equals v [m3/kg]; NaN if outside.

    ln v'' is close to linear in 1/T, so the Illinois variant of regula falsi in (1/T, ln v'') converges
    in a few steps and is bracketed, hence safe.
    """
    a = 1.0 / RHOU_T_HI  # small 1/T, small v''
    b = 1.0 / RHOU_T_LO
    lnv = math.log(v)
    fa = math.log(_r2_v(p_sat(RHOU_T_HI), RHOU_T_HI)) - lnv
    fb = math.log(_r2_v(p_sat(RHOU_T_LO), RHOU_T_LO)) - lnv
    if fa > 0.0 or fb < 0.0:
        return NAN
    side = 0
    c = a
    for _ in range(100):
        c = (a * fb - b * fa) / (fb - fa)
        tc = 1.0 / c
        fc = math.log(_r2_v(p_sat(tc), tc)) - lnv
        if abs(fc) < 1e-14 or abs(b - a) < 1e-15 * c:
            break
        if fc * fb > 0.0:
            b = c
            fb = fc
            if side == -1:
                fa *= 0.5
            side = -1
        else:
            a = c
            fa = fc
            if side == 1:
                fb *= 0.5
            side = 1
    return 1.0 / c


@_jit
def _mix_residual(T: float, v: float, u: float) -> float:
    _, vl, ul, vg, ug = _sat_vu(T)
    return ul + (v - vl) / (vg - vl) * (ug - ul) - u


@_jit
def _t_mix(v: float, u: float, t_lo: float, t_hi: float) -> float:
    """Saturation temperature [K] of the two-phase state (v, u) within [t_lo, t_hi]; NaN if not bracketed."""
    a = t_lo
    b = t_hi
    fa = _mix_residual(a, v, u)
    fb = _mix_residual(b, v, u)
    tol = 1e-12 * abs(u) + 1e-9
    if fb <= 0.0 and fb > -1e3 * tol:
        return b  # saturated vapour: u equals u'' at the dew point within rounding
    if fa > 0.0 or fb < 0.0:
        return NAN
    side = 0
    c = a
    for _ in range(200):
        c = (a * fb - b * fa) / (fb - fa)
        fc = _mix_residual(c, v, u)
        if abs(fc) <= tol or abs(b - a) < 1e-13 * c:
            break
        if fc * fb > 0.0:
            b = c
            fb = fc
            if side == -1:
                fa *= 0.5
            side = -1
        else:
            a = c
            fa = fc
            if side == 1:
                fb *= 0.5
            side = 1
    return c


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
