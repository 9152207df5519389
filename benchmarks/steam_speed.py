"""Speed of the IF97 kernels (twin.steam): compile time and per-call cost inside @njit.

Prints its figures and writes benchmarks/results/steam_speed.json. Measured in one process run:
- cold compile: a subprocess with an empty NUMBA_CACHE_DIR imports twin.steam and calls h_pt once
  (the first-call compile of h_pt and what it calls), then all public functions once;
- warm start: the same in a second subprocess that finds the cache;
- per-call ns of kernels.h_pt / u_pt / t_ph / pt_from_rho_u inside an @njit loop over random states;
- baselines side by side: the same h_pt through the plain-Python kernels, and iapws.IAPWS97.

Run: .venv/bin/python benchmarks/steam_speed.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twin import steam  # noqa: E402
from twin.steam import kernels  # noqa: E402

_CHILD = """
import time
t0 = time.perf_counter()
from twin import steam
t1 = time.perf_counter()
steam.kernels.h_pt(1.0e6, 500.0)
t2 = time.perf_counter()
steam.h_pt(1.0e6, 500.0); steam.v_pt(1.0e6, 500.0); steam.u_pt(1.0e6, 500.0); steam.s_pt(1.0e6, 500.0)
steam.cp_pt(1.0e6, 500.0); steam.t_ph(1.0e6, 2.8e6); steam.p_sat(400.0); steam.t_sat(1.0e6)
steam.pt_from_rho_u(5.0, 2.0e6)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def _child(cache_dir: str) -> tuple[float, float, float]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    a, b, c = (float(x) for x in out.stdout.split())
    return a, b, c


@njit(cache=True)
def _loop_h(p: np.ndarray, T: np.ndarray) -> float:
    acc = 0.0
    for i in range(p.shape[0]):
        acc += kernels.h_pt(p[i], T[i])
    return acc


@njit(cache=True)
def _loop_u(p: np.ndarray, T: np.ndarray) -> float:
    acc = 0.0
    for i in range(p.shape[0]):
        acc += kernels.u_pt(p[i], T[i])
    return acc


@njit(cache=True)
def _loop_t_ph(p: np.ndarray, h: np.ndarray) -> float:
    acc = 0.0
    for i in range(p.shape[0]):
        acc += kernels.t_ph(p[i], h[i])
    return acc


@njit(cache=True)
def _loop_rho_u(rho: np.ndarray, u: np.ndarray) -> float:
    acc = 0.0
    for i in range(rho.shape[0]):
        p, T, x = kernels.pt_from_rho_u(rho[i], u[i])
        acc += p + T + x
    return acc


def _ns_per_call(
    fn: Callable[[np.ndarray, np.ndarray], float], a: np.ndarray, b: np.ndarray, repeat: int = 5
) -> float:
    fn(a[:10], b[:10])  # compile / load outside the timing
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(a, b)
        best = min(best, time.perf_counter() - t0)
    return best / a.shape[0] * 1e9


def main() -> None:
    rng = np.random.default_rng(1)
    n = 200_000
    # Header-like states: 1-20 bar, 300-700 K (regions 1 and 2 mixed).
    p = rng.uniform(1e5, 20e5, n)
    T = rng.uniform(300.0, 700.0, n)
    h = steam.h_pt(p, T)
    # (rho, u) of steam states at 1-20 bar: half two-phase (x 0.5-1), half superheated by 0-150 K.
    ps = rng.uniform(1e5, 20e5, 20_000)
    ts = steam.t_sat(ps)
    half = ps.size // 2
    x = rng.uniform(0.5, 1.0, half)
    v = np.array([kernels._r1_v(a, b) for a, b in zip(ps[:half], ts[:half], strict=True)])
    vg = np.array([kernels._r2_v(a, b) for a, b in zip(ps[:half], ts[:half], strict=True)])
    ul = np.array([kernels._r1_u(a, b) for a, b in zip(ps[:half], ts[:half], strict=True)])
    ug = np.array([kernels._r2_u(a, b) for a, b in zip(ps[:half], ts[:half], strict=True)])
    t_sh = ts[half:] + rng.uniform(1.0, 150.0, ps.size - half)
    rho = np.concatenate([1.0 / (v + x * (vg - v)), steam.rho_pt(ps[half:], t_sh)])
    u = np.concatenate([ul + x * (ug - ul), steam.u_pt(ps[half:], t_sh)])

    with tempfile.TemporaryDirectory() as cache:
        cold = _child(cache)
        warm = _child(cache)

    ns_h = _ns_per_call(_loop_h, p, T)
    ns_u = _ns_per_call(_loop_u, p, T)
    ns_tph = _ns_per_call(_loop_t_ph, p, h)
    ns_rhou = _ns_per_call(_loop_rho_u, rho, u)

    plain = steam.plain_tables().kernels
    m = 2000
    t0 = time.perf_counter()
    for i in range(m):
        plain.h_pt(float(p[i]), float(T[i]))
    ns_plain = (time.perf_counter() - t0) / m * 1e9

    from iapws import IAPWS97

    m_ref = 500
    t0 = time.perf_counter()
    for i in range(m_ref):
        IAPWS97(P=float(p[i]) * 1e-6, T=float(T[i])).h  # noqa: B018
    ns_iapws = (time.perf_counter() - t0) / m_ref * 1e9

    t0 = time.perf_counter()
    steam.h_pt(p, T)
    ns_vector = (time.perf_counter() - t0) / n * 1e9

    result = {
        "note": "taken on a shared 2-core machine under load from other engineers; ratios are more stable than absolutes",
        "cold_import_s": cold[0],
        "cold_first_call_h_pt_compile_s": cold[1],
        "cold_compile_rest_of_public_api_s": cold[2],
        "warm_import_s": warm[0],
        "warm_first_call_h_pt_s": warm[1],
        "warm_rest_of_public_api_s": warm[2],
        "ns_per_call_njit": {"h_pt": ns_h, "u_pt": ns_u, "t_ph": ns_tph, "pt_from_rho_u": ns_rhou},
        "ns_per_point_python_vectorised_h_pt_200k": ns_vector,
        "ns_per_call_plain_python_h_pt": ns_plain,
        "ns_per_call_iapws_IAPWS97": ns_iapws,
        "ratio_plain_over_njit_h_pt": ns_plain / ns_h,
        "ratio_iapws_over_njit_h_pt": ns_iapws / ns_h,
    }
    for key, value in result.items():
        print(f"{key}: {value if isinstance(value, str) else json.dumps(value)}")
    out = ROOT / "benchmarks" / "results" / "steam_speed.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
