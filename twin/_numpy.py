"""Vectorised numpy versions of the large kernels (heat exchanger, pipe, tank): the numpy baseline.

``numpy_rhs(park)`` is the park's right-hand side in plain numpy: the generated park source with the
plain ``ops`` back end, where the three kernels that loop over cells, segments and layers are replaced by
the array formulations below (same equations; a test holds them to the compiled kernels). It is what a
careful numpy user would write, and the speed baseline (b) of ``benchmarks/twin_speed.py``.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from twin.units import dh_pipe, storage_tank
from twin.units._ops import CP_WATER, K_WATER, PLAIN, RHO_WATER

if TYPE_CHECKING:
    from twin.park import Park

Vec = Any


def heat_exchanger(
    x: Vec,
    xo: int,
    p: Vec,
    po: int,
    t_hot_in: float,
    m_hot: float,
    t_cold_in: float,
    m_cold: float,
    dx: Vec,
    y: Vec,
    yo: int,
) -> tuple[float, float]:
    """``twin.units.heat_exchanger.heat_exchanger`` over arrays."""
    n = int(p[po + 1])
    mh = max(m_hot, 0.0) * CP_WATER
    mc = max(m_cold, 0.0) * CP_WATER
    cap_h = RHO_WATER * p[po + 2] / n * CP_WATER
    cap_c = RHO_WATER * p[po + 3] / n * CP_WATER
    cap_w = p[po + 4] / n
    if cap_w <= 0.0:
        cap_w = 1e-3 * min(cap_h, cap_c)
    g = 2.0 * x[xo] * p[po] / n
    blk = x[xo + 1 : xo + 1 + 3 * n]
    th, tw, tc = blk[0::3], blk[1::3], blk[2::3]
    th_up = np.concatenate(([t_hot_in], th[:-1]))
    tc_up = np.concatenate((tc[1:], [t_cold_in]))
    qh = g * (th - tw)
    qc = g * (tw - tc)
    d = dx[xo + 1 : xo + 1 + 3 * n]
    d[0::3] = (mh * (th_up - th) - qh) / cap_h
    d[1::3] = (qh - qc) / cap_w
    d[2::3] = (mc * (tc_up - tc) + qc) / cap_c
    dx[xo] = 0.0
    q = float(qc.sum())
    y[yo] = th[-1]
    y[yo + 1] = tc[0]
    y[yo + 2] = q
    return float(tc[0]), q


def pipe(
    x: Vec, xo: int, p: Vec, po: int, t_in: float, m_dot: float, t_ground: float, dx: Vec, y: Vec, yo: int
) -> tuple[float, float]:
    """``twin.units.dh_pipe.dh_pipe`` over arrays."""
    s = int(p[po + 5])
    seg = p[po] / s
    cap = RHO_WATER * math.pi * 0.25 * p[po + 1] * p[po + 1] * seg * CP_WATER
    cap_w = p[po + 3] * seg
    if cap_w <= 0.0:
        cap_w = 1e-3 * cap
    g = p[po + 4] * seg
    u = p[po + 2] * seg
    mc = max(m_dot, 0.0) * CP_WATER
    t = x[xo : xo + s]
    w = x[xo + s : xo + 2 * s]
    t_up = np.concatenate(([t_in], t[:-1]))
    q_w = g * (t - w)
    q_g = u * (w - t_ground)
    dx[xo : xo + s] = (mc * (t_up - t) - q_w) / cap
    dx[xo + s : xo + 2 * s] = (q_w - q_g) / cap_w
    loss = float(q_g.sum())
    y[yo] = t[-1]
    y[yo + 1] = loss
    y[yo + 2] = m_dot
    return float(t[-1]), loss


def tank(
    x: Vec,
    xo: int,
    p: Vec,
    po: int,
    m_charge: float,
    t_top_in: float,
    m_discharge: float,
    t_bottom_in: float,
    t_amb: float,
    dx: Vec,
    y: Vec,
    yo: int,
) -> tuple[float, float]:
    """``twin.units.storage_tank.storage_tank`` over arrays."""
    n = int(p[po + 2])
    cap = RHO_WATER * p[po] / n * CP_WATER
    k = K_WATER * (p[po] / p[po + 1]) / (p[po + 1] / n)
    ua = p[po + 3] / n
    mix = cap / p[po + 8]
    fc = m_charge * CP_WATER
    fd = m_discharge * CP_WATER
    t = x[xo : xo + n]
    q = ua * (t_amb - t)
    gain = float(q.sum())
    step = t[:-1] - t[1:]  # upper minus lower
    inv = np.maximum(-step, 0.0)  # lower warmer than upper
    q[0] += fc * (t_top_in - t[0])
    q[1:] += (fc + k) * step - mix * inv
    q[:-1] += (fd + k) * (-step) + mix * inv
    q[-1] += fd * (t_bottom_in - t[-1])
    dx[xo : xo + n] = q / cap
    heat = fc * (t_top_in - t[-1]) - fd * (t[0] - t_bottom_in)
    y[yo] = t[0]
    y[yo + 1] = t[-1]
    y[yo + 2] = float(np.mean((t - p[po + 6]) / (p[po + 5] - p[po + 6])))
    y[yo + 3] = heat
    return heat, gain


def numpy_rhs(park: Park) -> Callable[..., None]:
    """The park's right-hand side in plain numpy: ``f(t, x, u, p, dx, y, b)``."""
    from twin.units._backend import retarget

    plain = retarget(park._module._rhs, PLAIN)
    glb = dict(plain.__globals__)
    glb["heat_exchanger"] = types.SimpleNamespace(heat_exchanger=heat_exchanger)
    glb["dh_pipe"] = types.SimpleNamespace(
        dh_pipe=pipe, **{k: v for k, v in vars(glb["dh_pipe"]).items() if k != "dh_pipe"}
    )
    glb["storage_tank"] = types.SimpleNamespace(storage_tank=tank, flows=retarget(storage_tank.flows, PLAIN))
    assert dh_pipe is not None  # the compiled modules stay the reference
    return types.FunctionType(plain.__code__, glb, plain.__name__)
