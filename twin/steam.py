"""IAPWS-IF97 steam and water properties in SI units, for Python callers and for numba code.

Implemented: region 1 (compressed liquid), region 2 (superheated vapour), region 4 (saturation line),
the region 2/3 boundary B23, and the backward equations T(p, h) of regions 1 and 2 (2a, 2b, 2c).
Regions 3 and 5 are not implemented: states there raise ``SteamRangeError`` from Python.
Reference: IAPWS R7-97(2012), Revised Release on the IAPWS Industrial Formulation 1997 for the
Thermodynamic Properties of Water and Steam.

Units everywhere: p [Pa], T [K], h, u [J/kg], s, cp, cv [J/(kg K)], v [m3/kg], rho [kg/m3], w [m/s].

Python API (this module): every function accepts scalars or array-likes (numpy broadcasting) and
returns a Python float for scalar input, otherwise a float64 array of the broadcast shape. Input
outside the implemented ranges raises ``SteamRangeError`` (a ``ValueError``) naming the limit.

    h_pt v_pt u_pt s_pt cp_pt cv_pt w_pt rho_pt    properties from (p, T), regions 1 and 2
    region_pt region_ph                             IF97 region code (1, 2, 3, 4, 5; 0 outside)
    p_sat t_sat                                     saturation line, region 4
    p_b23 t_b23                                     region 2/3 boundary
    t_ph                                            backward T(p, h), regions 1, 2 and two-phase
    pt_from_rho_u  pt_x_from_rho_u                  (p, T[, x]) from density and internal energy

numba API: ``twin.steam.kernels`` is the module of scalar ``@njit`` kernels with the same names
(``kernels.h_pt(p, T)``, ``kernels.t_ph(p, h)``, ``kernels.pt_from_rho_u(rho, u) -> (p, T, x)``, ...).
Call them from your own ``@njit`` code; they return NaN (region functions: a code other than 1/2/4)
instead of raising.

Switch: set ``SYMTWIN_DISABLE_NUMBA=1`` before import to run everything as plain Python;
``plain_tables()`` returns the same API over never-compiled kernels within a compiled process.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol, overload

import numpy as np
import numpy.typing as npt

from twin.if97 import kernels, load_plain_kernels

FloatOrArray = float | npt.NDArray[np.float64]


# Call signatures of the module-level functions: a float for scalar input, an array otherwise.
class PTFunction(Protocol):
    @overload
    def __call__(self, p: float, T: float) -> float: ...
    @overload
    def __call__(self, p: npt.ArrayLike, T: npt.ArrayLike) -> Any: ...


class PHFunction(Protocol):
    @overload
    def __call__(self, p: float, h: float) -> float: ...
    @overload
    def __call__(self, p: npt.ArrayLike, h: npt.ArrayLike) -> Any: ...


class TFunction(Protocol):
    @overload
    def __call__(self, T: float) -> float: ...
    @overload
    def __call__(self, T: npt.ArrayLike) -> Any: ...


class PFunction(Protocol):
    @overload
    def __call__(self, p: float) -> float: ...
    @overload
    def __call__(self, p: npt.ArrayLike) -> Any: ...


class RhoUFunction(Protocol):
    @overload
    def __call__(self, rho: float, u: float) -> tuple[float, float]: ...
    @overload
    def __call__(self, rho: npt.ArrayLike, u: npt.ArrayLike) -> tuple[Any, Any]: ...


class RhoUXFunction(Protocol):
    @overload
    def __call__(self, rho: float, u: float) -> tuple[float, float, float]: ...
    @overload
    def __call__(self, rho: npt.ArrayLike, u: npt.ArrayLike) -> tuple[Any, Any, Any]: ...


__all__ = [
    "FloatOrArray",
    "PFunction",
    "PHFunction",
    "PTFunction",
    "RhoUFunction",
    "RhoUXFunction",
    "SteamRangeError",
    "SteamTables",
    "TFunction",
    "cp_pt",
    "cv_pt",
    "h_pt",
    "kernels",
    "p_b23",
    "p_sat",
    "plain_tables",
    "pt_from_rho_u",
    "pt_x_from_rho_u",
    "region_ph",
    "region_pt",
    "rho_pt",
    "s_pt",
    "t_b23",
    "t_ph",
    "t_sat",
    "u_pt",
    "v_pt",
    "w_pt",
]

k = kernels  # short alias for the limits below


class SteamRangeError(ValueError):
    """A state is outside the IF97 regions this module implements; the message names the limit."""


def _mpa(p: float) -> str:
    return f"{p * 1e-6:.6g} MPa"


def _kelvin(T: float) -> str:
    return f"{T:.6g} K"


def _kj(h: float) -> str:
    return f"{h * 1e-3:.6g} kJ/kg"


def _pt_message(p: float, T: float, region: int) -> str:
    """Why (p, T) is not in region 1 or 2."""
    if np.isnan(p) or np.isnan(T):
        return f"p and T must be numbers, got p = {p} Pa, T = {T} K"
    if p <= 0.0:
        return f"p = {p:.6g} Pa must be positive"
    if T < k.T_MIN:
        return f"T = {_kelvin(T)} is below the IF97 lower limit of {_kelvin(k.T_MIN)}"
    if region == k.REGION_3:
        return (
            f"p = {_mpa(p)}, T = {_kelvin(T)} lies in IF97 region 3 (p above the B23 boundary "
            f"p_b23(T) = {_mpa(k.p_b23(T))}), which is not implemented"
        )
    if region == k.REGION_5:
        return (
            f"T = {_kelvin(T)} is above the IF97 region 2 limit of {_kelvin(k.T_MAX_R2)}; region 5 "
            f"({_kelvin(k.T_MAX_R2)} to {_kelvin(k.T_MAX_R5)}, p <= {_mpa(k.P_MAX_R5)}) is not implemented"
        )
    if p > k.P_MAX and T <= k.T_MAX_R2:
        name = "region 1" if T <= k.T_MAX_R1 else "region 2"
        return f"p = {_mpa(p)} is above the IF97 {name} limit of {_mpa(k.P_MAX)}"
    if T > k.T_MAX_R5:
        return f"T = {_kelvin(T)} is above the IF97 upper limit of {_kelvin(k.T_MAX_R5)}"
    return (
        f"p = {_mpa(p)}, T = {_kelvin(T)} is outside IF97: above {_kelvin(k.T_MAX_R2)} the limit is "
        f"{_mpa(k.P_MAX_R5)} (region 5, not implemented)"
    )


def _ph_message(kern: ModuleType, p: float, h: float, region: int) -> str:
    """Why (p, h) is not in region 1, 2 or 4."""
    if np.isnan(p) or np.isnan(h):
        return f"p and h must be numbers, got p = {p} Pa, h = {h} J/kg"
    if p <= 0.0:
        return f"p = {p:.6g} Pa must be positive"
    if p > k.P_MAX:
        return f"p = {_mpa(p)} is above the IF97 limit of {_mpa(k.P_MAX)} for regions 1 and 2"
    if region == k.REGION_3:
        return (
            f"p = {_mpa(p)}, h = {_kj(h)} lies in IF97 region 3 (between h(p, 623.15 K) = "
            f"{_kj(kern._r1_h(p, k.T_MAX_R1))} and h(p, T_b23(p)) = {_kj(kern._r2_h(p, kern.t_b23(p)))}), "
            "which is not implemented"
        )
    h_max = kern._r2_h(p, k.T_MAX_R2)
    if h > h_max:
        return (
            f"h = {_kj(h)} is above h(p, {_kelvin(k.T_MAX_R2)}) = {_kj(h_max)}, the IF97 region 2 limit "
            f"at p = {_mpa(p)}; region 5 is not implemented"
        )
    h_min = kern._r2_h(p, k.T_MIN) if p < k.P_SAT_TMIN else kern._r1_h(p, k.T_MIN)
    return (
        f"h = {_kj(h)} is below h(p, {_kelvin(k.T_MIN)}) = {_kj(h_min)}, the IF97 lower limit "
        f"at p = {_mpa(p)}"
    )


def _prepare(*args: npt.ArrayLike) -> tuple[list[npt.NDArray[np.float64]], tuple[int, ...], bool]:
    """Broadcast the inputs to one shape; return them flat and contiguous, the shape, and scalar-ness."""
    arrays = [np.asarray(a, dtype=np.float64) for a in args]
    scalar = all(a.ndim == 0 for a in arrays)
    shaped = np.broadcast_arrays(*arrays)
    shape = shaped[0].shape
    flat = [np.ascontiguousarray(a.reshape(-1)) for a in shaped]
    return flat, shape, scalar


def _where(shape: tuple[int, ...], flat_index: int, scalar: bool) -> str:
    if scalar:
        return ""
    index = tuple(int(i) for i in np.unravel_index(flat_index, shape))
    return f"at index {index}: "


def _finish(out: npt.NDArray[Any], shape: tuple[int, ...], scalar: bool) -> Any:
    if scalar:
        return out[0].item()
    return out.reshape(shape)


class SteamTables:
    """The vectorised, range-checked Python API over one kernels module (compiled or plain).

    Module-level functions of ``twin.steam`` use the default instance; ``plain_tables()`` gives one
    over the never-compiled kernels (used by the tests to compare both paths).
    """

    def __init__(self, kern: ModuleType) -> None:
        self.kernels = kern

    # -- checks -------------------------------------------------------------------------------
    def _check_pt(
        self, p: npt.NDArray[np.float64], T: npt.NDArray[np.float64], shape: tuple[int, ...], scalar: bool
    ) -> None:
        region = np.empty(p.shape[0], dtype=np.int64)
        self.kernels.region_pt_array(p, T, region)
        bad = np.flatnonzero((region != k.REGION_1) & (region != k.REGION_2))
        if bad.size:
            i = int(bad[0])
            raise SteamRangeError(
                _where(shape, i, scalar) + _pt_message(float(p[i]), float(T[i]), int(region[i]))
            )

    def _pt_property(self, name: str, p: npt.ArrayLike, T: npt.ArrayLike) -> Any:
        (pa, ta), shape, scalar = _prepare(p, T)
        self._check_pt(pa, ta, shape, scalar)
        out = np.empty(pa.shape[0])
        getattr(self.kernels, name + "_array")(pa, ta, out)
        return _finish(out, shape, scalar)

    def _check_interval(
        self,
        x: npt.NDArray[np.float64],
        lo: float,
        hi: float,
        what: Callable[[float], str],
        shape: tuple[int, ...],
        scalar: bool,
    ) -> None:
        bad = np.flatnonzero(~((x >= lo) & (x <= hi)))
        if bad.size:
            i = int(bad[0])
            raise SteamRangeError(_where(shape, i, scalar) + what(float(x[i])))

    # -- properties from (p, T) ---------------------------------------------------------------
    def region_pt(self, p: npt.ArrayLike, T: npt.ArrayLike) -> Any:
        """IF97 region code of (p [Pa], T [K]): 1, 2, 3, 5 (3 and 5 not implemented) or 0 outside IF97."""
        (pa, ta), shape, scalar = _prepare(p, T)
        out = np.empty(pa.shape[0], dtype=np.int64)
        self.kernels.region_pt_array(pa, ta, out)
        return _finish(out, shape, scalar)

    def h_pt(self, p: npt.ArrayLike, T: npt.ArrayLike) -> Any:
        """Specific enthalpy [J/kg] at pressure p [Pa] and temperature T [K] (regions 1, 2)."""
        return self._pt_property("h_pt", p, T)

    def v_pt(self, p: npt.ArrayLike, T: npt.ArrayLike) -> Any:
        """Specific volume [m3/kg] at p [Pa], T [K] (regions 1, 2)."""
        return self._pt_property("v_pt", p, T)

    def rho_pt(self, p: npt.ArrayLike, T: npt.ArrayLike) -> Any:
        """Density [kg/m3] at p [Pa], T [K] (regions 1, 2)."""
        return 1.0 / self._pt_property("v_pt", p, T)

    def u_pt(self, p: npt.ArrayLike, T: npt.ArrayLike) -> Any:
        """Specific internal energy [J/kg] at p [Pa], T [K] (regions 1, 2)."""
        return self._pt_property("u_pt", p, T)

    def s_pt(self, p: npt.ArrayLike, T: npt.ArrayLike) -> Any:
        """Specific entropy [J/(kg K)] at p [Pa], T [K] (regions 1, 2)."""
        return self._pt_property("s_pt", p, T)

    def cp_pt(self, p: npt.ArrayLike, T: npt.ArrayLike) -> Any:
        """Specific isobaric heat capacity [J/(kg K)] at p [Pa], T [K] (regions 1, 2)."""
        return self._pt_property("cp_pt", p, T)

    def cv_pt(self, p: npt.ArrayLike, T: npt.ArrayLike) -> Any:
        """Specific isochoric heat capacity [J/(kg K)] at p [Pa], T [K] (regions 1, 2)."""
        return self._pt_property("cv_pt", p, T)

    def w_pt(self, p: npt.ArrayLike, T: npt.ArrayLike) -> Any:
        """Speed of sound [m/s] at p [Pa], T [K] (regions 1, 2)."""
        return self._pt_property("w_pt", p, T)

    # -- saturation line and B23 --------------------------------------------------------------
    def p_sat(self, T: npt.ArrayLike) -> Any:
        """Saturation pressure [Pa] at T [K], eq. (30); valid 273.15 K <= T <= 647.096 K."""
        (ta,), shape, scalar = _prepare(T)
        self._check_interval(
            ta, k.T_MIN, k.T_CRIT,
            lambda t: f"T = {_kelvin(t)} is outside the IF97 saturation range {_kelvin(k.T_MIN)} to {_kelvin(k.T_CRIT)}",
            shape, scalar,
        )  # fmt: skip
        out = np.empty(ta.shape[0])
        self.kernels.p_sat_array(ta, out)
        return _finish(out, shape, scalar)

    def t_sat(self, p: npt.ArrayLike) -> Any:
        """Saturation temperature [K] at p [Pa], eq. (31); valid 611.213 Pa <= p <= 22.064 MPa."""
        (pa,), shape, scalar = _prepare(p)
        self._check_interval(
            pa, k.P_SAT_TMIN * (1.0 - 1e-9), k.P_CRIT,
            lambda x: f"p = {x:.6g} Pa is outside the IF97 saturation range {k.P_SAT_TMIN:.6g} Pa to {_mpa(k.P_CRIT)}",
            shape, scalar,
        )  # fmt: skip
        out = np.empty(pa.shape[0])
        self.kernels.t_sat_array(pa, out)
        return _finish(out, shape, scalar)

    def p_b23(self, T: npt.ArrayLike) -> Any:
        """Pressure [Pa] of the region 2/3 boundary at T [K], eq. (5); valid 623.15 K <= T <= 863.15 K."""
        (ta,), shape, scalar = _prepare(T)
        self._check_interval(
            ta, k.T_MAX_R1, k.T_B23_MAX,
            lambda t: f"T = {_kelvin(t)} is outside the B23 range {_kelvin(k.T_MAX_R1)} to {_kelvin(k.T_B23_MAX)}",
            shape, scalar,
        )  # fmt: skip
        return _finish(np.array([self.kernels.p_b23(float(t)) for t in ta]), shape, scalar)

    def t_b23(self, p: npt.ArrayLike) -> Any:
        """Temperature [K] of the region 2/3 boundary at p [Pa], eq. (6); valid 16.529 MPa <= p <= 100 MPa."""
        (pa,), shape, scalar = _prepare(p)
        self._check_interval(
            pa, k.P_SAT_623 * (1.0 - 1e-9), k.P_MAX,
            lambda x: f"p = {_mpa(x)} is outside the B23 range {_mpa(k.P_SAT_623)} to {_mpa(k.P_MAX)}",
            shape, scalar,
        )  # fmt: skip
        return _finish(np.array([self.kernels.t_b23(float(x)) for x in pa]), shape, scalar)

    # -- backward T(p, h) ---------------------------------------------------------------------
    def region_ph(self, p: npt.ArrayLike, h: npt.ArrayLike) -> Any:
        """IF97 region code of (p [Pa], h [J/kg]): 1, 2, 4 (two-phase), 3, 5 (not implemented), 0 outside."""
        (pa, ha), shape, scalar = _prepare(p, h)
        out = np.empty(pa.shape[0], dtype=np.int64)
        self.kernels.region_ph_array(pa, ha, out)
        return _finish(out, shape, scalar)

    def t_ph(self, p: npt.ArrayLike, h: npt.ArrayLike) -> Any:
        """Temperature [K] from p [Pa] and h [J/kg] by the IF97 backward equations (regions 1, 2; T_sat(p)
        in the two-phase region). Agrees with the forward equations within 25 mK (region 1, 2c), 10 mK (2a, 2b).
        """
        (pa, ha), shape, scalar = _prepare(p, h)
        region = np.empty(pa.shape[0], dtype=np.int64)
        self.kernels.region_ph_array(pa, ha, region)
        bad = np.flatnonzero((region != k.REGION_1) & (region != k.REGION_2) & (region != k.REGION_4))
        if bad.size:
            i = int(bad[0])
            msg = _ph_message(self.kernels, float(pa[i]), float(ha[i]), int(region[i]))
            raise SteamRangeError(_where(shape, i, scalar) + msg)
        out = np.empty(pa.shape[0])
        self.kernels.t_ph_array(pa, ha, out)
        return _finish(out, shape, scalar)

    # -- (rho, u) -> (p, T, x) ----------------------------------------------------------------
    def pt_x_from_rho_u(self, rho: npt.ArrayLike, u: npt.ArrayLike) -> tuple[Any, Any, Any]:
        """Pressure [Pa], temperature [K] and vapour fraction x [-] from density rho [kg/m3] and specific
        internal energy u [J/kg]; x = 1 for superheated vapour.

        Validity: two-phase states with saturation temperature 273.16-623.15 K (p 0.61 kPa-16.5 MPa)
        and superheated region 2 states with p <= 16.5 MPa, T <= 1073.15 K. Compressed liquid and
        region 3 states raise ``SteamRangeError``. Built for the steam header (1-20 bar).
        """
        (ra, ua), shape, scalar = _prepare(rho, u)
        p = np.empty(ra.shape[0])
        T = np.empty(ra.shape[0])
        x = np.empty(ra.shape[0])
        self.kernels.pt_from_rho_u_array(ra, ua, p, T, x)
        bad = np.flatnonzero(np.isnan(p))
        if bad.size:
            i = int(bad[0])
            raise SteamRangeError(
                _where(shape, i, scalar)
                + f"rho = {ra[i]:.6g} kg/m3, u = {_kj(float(ua[i]))} is outside the validity of pt_from_rho_u: "
                "two-phase with T_sat 273.16-623.15 K or superheated region 2 vapour with p <= 16.5 MPa "
                "and T <= 1073.15 K (compressed liquid and region 3 are not covered)"
            )
        return _finish(p, shape, scalar), _finish(T, shape, scalar), _finish(x, shape, scalar)

    def pt_from_rho_u(self, rho: npt.ArrayLike, u: npt.ArrayLike) -> tuple[Any, Any]:
        """Pressure [Pa] and temperature [K] from density rho [kg/m3] and specific internal energy u [J/kg];
        see ``pt_x_from_rho_u`` for the method and validity range."""
        p, T, _ = self.pt_x_from_rho_u(rho, u)
        return p, T


_DEFAULT = SteamTables(kernels)
_PLAIN: SteamTables | None = None


def plain_tables() -> SteamTables:
    """The same API over never-compiled (plain Python) kernels; slow, for tests and debugging."""
    global _PLAIN
    if _PLAIN is None:
        _PLAIN = SteamTables(load_plain_kernels())
    return _PLAIN


region_pt: Callable[[npt.ArrayLike, npt.ArrayLike], Any] = _DEFAULT.region_pt
region_ph: Callable[[npt.ArrayLike, npt.ArrayLike], Any] = _DEFAULT.region_ph
h_pt: PTFunction = _DEFAULT.h_pt
v_pt: PTFunction = _DEFAULT.v_pt
rho_pt: PTFunction = _DEFAULT.rho_pt
u_pt: PTFunction = _DEFAULT.u_pt
s_pt: PTFunction = _DEFAULT.s_pt
cp_pt: PTFunction = _DEFAULT.cp_pt
cv_pt: PTFunction = _DEFAULT.cv_pt
w_pt: PTFunction = _DEFAULT.w_pt
p_sat: TFunction = _DEFAULT.p_sat
t_sat: PFunction = _DEFAULT.t_sat
p_b23: TFunction = _DEFAULT.p_b23
t_b23: PFunction = _DEFAULT.t_b23
t_ph: PHFunction = _DEFAULT.t_ph
pt_from_rho_u: RhoUFunction = _DEFAULT.pt_from_rho_u
pt_x_from_rho_u: RhoUXFunction = _DEFAULT.pt_x_from_rho_u
