"""Speed of one estimator update on the reference park (configs/kalundborg.yaml, 527 states) at a 10 s step.

A "plant" (the twin with UA -20 % and loss coefficients +30 %) runs alongside and gives every measurement
tag of the config with its noise (2 % of samples missing); the estimator (``twin.estimate.Estimator``:
reduced-rank square-root EKF, rank 40, full nonlinear twin for the mean, the exchanger's fouling state and
the tank and pipe loss coefficients estimated) predicts 10 s and corrects at each update. Timed: the
estimator's ``step`` only (predict + correct), wall clock.

Baselines, same process, same plant data:
  open_loop   the twin's own ``Park.step`` over 10 s (what ParkTracker pays): the floor.
  dense_ekf   a full-covariance EKF with the same implicit linearisation (P = Phi P Phi^T + Q with
              Phi = (I - h J)^-1 dense, H by finite differences over all states), timed over fewer steps,
              single-threaded BLAS like the estimator.

Figures: n_states, rank, update_ms_median, update_ms_p99 (target: median < 20 ms), open_loop_ms_median,
dense_ekf_ms_median and the ratio dense/reduced. Taken on a shared 2-core machine (under load).

Usage: .venv/bin/python benchmarks/estimator_speed.py [--updates 720] [--dense-updates 20]
Writes benchmarks/results/estimator_speed.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import write_result  # noqa: E402

DT = 10.0


def _dense_ekf_ms(
    park: object,
    x: np.ndarray,
    u: np.ndarray,
    sel: np.ndarray,
    noise: np.ndarray,
    meas: list[np.ndarray],
    steps: int,
) -> list[float]:
    """A plain full-covariance EKF over the states (no parameters), for the cost comparison."""
    n = park.n_states  # type: ignore[attr-defined]
    p_cov = np.eye(n)
    q = np.eye(n) * 1e-4
    r = np.diag(noise**2)
    eye = np.eye(n)
    out = []
    for k in range(steps):
        t0 = time.perf_counter()
        jac = park.jacobian(x, u)  # type: ignore[attr-defined]
        phi = np.linalg.solve(eye - DT * jac, eye)
        x = park.step(x, u, DT)  # type: ignore[attr-defined]
        p_cov = phi @ p_cov @ phi.T + q
        y0 = np.concatenate([park.outputs(x, u), x])[sel]  # type: ignore[attr-defined]
        h = np.empty((sel.size, n))
        for j in range(n):
            xp = x.copy()
            d = 1e-6 * max(abs(x[j]), 1.0)
            xp[j] += d
            h[:, j] = (np.concatenate([park.outputs(xp, u), xp])[sel] - y0) / d  # type: ignore[attr-defined]
        s = h @ p_cov @ h.T + r
        gain = np.linalg.solve(s, h @ p_cov).T
        x = x + gain @ (meas[k] - y0)
        p_cov = p_cov - gain @ s @ gain.T
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=720, help="timed estimator updates (10 s each)")
    ap.add_argument("--dense-updates", type=int, default=20, help="timed updates of the dense baseline")
    args = ap.parse_args()

    from symtwin.config import load_site
    from twin.estimate import Estimator, EstimatorParams
    from twin.integrate import Sdirk2
    from twin.park import Park

    site = load_site(ROOT / "configs" / "kalundborg.yaml")
    park = Park.from_config(site)
    noise: dict[str, float] = {}
    for tag in site.tags.values():
        if tag.direction.value == "measurement":
            noise[tag.key] = min(noise.get(tag.key, np.inf), tag.noise_si)
    loss = [n for n in park.param_names if n.endswith(".loss_coefficient") and not n.startswith("steam")]
    p_plant = park.params.copy()
    for n in park.param_names:
        if n.endswith(".ua"):
            p_plant[park.param_names.index(n)] *= 0.8
    for n in loss:
        p_plant[park.param_names.index(n)] *= 1.3
    sched = park.input_schedule()
    plant = Sdirk2(park)
    plant.p = p_plant
    u0 = sched(0.0)
    xp = plant.advance(park.x0.copy(), 0.0, 6 * 3600.0, lambda _t, left=False: u0, 60.0, ())
    est = Estimator(park, EstimatorParams(noise=noise, params=tuple(loss)), x0=park.settle(u0))
    rng = np.random.default_rng(0)
    sd = est.noise
    upd, open_loop, meas_log = [], [], []
    x_ol = est.x.copy()
    for k in range(1, args.updates + 1):
        t = k * DT
        u = sched(t - DT)
        xp = plant.advance(xp, t - DT, t, lambda _t, left=False, u=u: u, 30.0, ())
        y = np.concatenate([park.outputs(xp, u, p_plant), xp])[est._sel]
        y_noisy = y + sd * rng.standard_normal(y.size)
        meas_log.append(y_noisy)
        meas = {key: float(v) for key, v in zip(est.keys, y_noisy, strict=True) if rng.random() >= 0.02}
        t0 = time.perf_counter()
        est.step(t, u, DT, meas)
        upd.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        x_ol = park.step(x_ol, u, DT)
        open_loop.append((time.perf_counter() - t0) * 1e3)
    from twin.estimate import _one_blas_thread

    with _one_blas_thread():  # same BLAS conditions as the estimator (threads only spin under load)
        dense = _dense_ekf_ms(park, park.settle(u0), u0, est._sel, sd, meas_log, args.dense_updates)
    med = float(np.median(upd))
    dense_med = float(np.median(dense[1:]))
    fouling = est.fouling()
    write_result(
        "estimator_speed",
        {
            "config": "configs/kalundborg.yaml",
            "n_states": park.n_states,
            "n_params_estimated": est.m,
            "n_measured_keys": len(est.keys),
            "rank": est.settings.rank,
            "step_s": DT,
            "updates": args.updates,
            "update_ms_median": med,
            "update_ms_p99": float(np.percentile(upd, 99)),
            "update_ms_max": float(np.max(upd)),
            "target_median_ms": 20.0,
            "open_loop_ms_median": float(np.median(open_loop)),
            "dense_ekf_ms_median": dense_med,
            "dense_over_reduced": dense_med / med,
            "gate_rejections": int(sum(est.rejected_counts().values())),
            "fouling_end": {hx: {"ratio": v, "std": s} for hx, (v, s) in fouling.items()},
            "note": "shared 2-core machine under load from other jobs; wall-clock figures",
        },
    )


if __name__ == "__main__":
    main()
