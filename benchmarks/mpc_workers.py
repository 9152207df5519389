"""MPC worker processes: the "zygote" start method (build once, fork the worker and its spare) against
the "forkserver" one (each worker builds its own controller), side by side on the same requests.

The reference park's MPC (``MpcPort``'s factory) runs in two ``DeadlineRunner``s at once. Requests come
from a closed loop on the twin (``controllers.evaluate.closed_loop``, solved through the zygote runner),
then both runners solve every request again, interleaved, from the same warm-start history:

* ``*_median_solve_s`` / ``*_p95_solve_s``: round trip through the runner (pipe, solve, checks) [s];
  ``max_setpoint_diff``: largest difference between the two runners' setpoints (same solver, same data);
* ``*_pss_mb``: proportional set size of all the runner's processes (pages shared copy-on-write count
  once in the sum); ``*_processes``: how many;
* ``*_first_ready_s``: start to first worker ready (build); ``*_replacement_ready_s``: start to ready of
  the spare launched after a worker was killed (a fork of the built template, or a full rebuild).

Run: .venv/bin/python benchmarks/mpc_workers.py [--hours 3]
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._common import park_loop, write_result  # noqa: E402


def pss_mb(pid: int) -> float:
    m = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M)
    return int(m.group(1)) / 1024 if m else float("nan")


def descendants(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(x) for x in path.read_text().split()] if path.exists() else []
    return kids + [d for k in kids for d in descendants(k)]


def kill_twice(runner: Any, request: Any) -> float:
    """Kill the active worker twice (a solve with a 1 ms deadline); the second replacement was launched
    after the first kill: its start-to-ready time [s]."""
    for _ in range(2):
        runner.solve(request, 1e-3)
        runner.solve(request, 600.0)
    return float(runner.worker_start_times[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/kalundborg.yaml")
    ap.add_argument("--hours", type=float, default=3.0, help="closed-loop hours that make the requests")
    ap.add_argument("--start", default="150d")
    args = ap.parse_args()

    from controllers.deadline import DeadlineRunner
    from controllers.mpc import Variant, _make_controller
    from controllers.types import ControlRequest, ControlResult, FloatArray

    loop = park_loop(args.config, args.start)
    spec = loop.spec

    factory = functools.partial(_make_controller, spec, Variant.FAST.value, 3)
    # the two set-ups as MpcPort has them now (zygote) and had them before (forkserver)
    zygote = DeadlineRunner(
        factory,
        start_method="zygote",
        block_imports=("asyncua",),
        stub_imports=("matplotlib", "scipy.signal"),
    )
    forkserver = DeadlineRunner(factory, preload=("casadi", "do_mpc", "controllers.mpc"))
    try:
        zygote.start(600.0)
        forkserver.start(600.0)
        warm = loop.warm_up()
        requests: list[ControlRequest] = []

        def recorded(
            state: Mapping[str, float], forecasts: Mapping[str, FloatArray], now: float
        ) -> ControlResult:
            requests.append(ControlRequest(dict(state), {k: v.copy() for k, v in forecasts.items()}, now))
            return zygote.solve(requests[-1], 600.0)

        loop.run(recorded, args.hours, warm)
        zygote.reset_warm_start()
        tz, tf, diffs, same = [], [], [], 0
        for r in requests:
            a = zygote.solve(r, 600.0)
            b = forkserver.solve(r, 600.0)
            tz.append(a.solve_time_s)
            tf.append(b.solve_time_s)
            same += a.status is b.status
            if a.usable and b.usable:
                diffs.append(max(abs(a.setpoints[k] - b.setpoints[k]) for k in a.setpoints))
        me = os.getpid()
        assert zygote._zygote is not None  # started above
        z_pids = [zygote._zygote.proc.pid, *descendants(zygote._zygote.proc.pid)]
        f_pids = [p for p in descendants(me) if p not in z_pids]
        z_pss, f_pss = sum(pss_mb(p) for p in z_pids), sum(pss_mb(p) for p in f_pids)
        z_first, f_first = zygote.worker_start_times[0], forkserver.worker_start_times[0]
        z_replace = kill_twice(zygote, requests[0])
        f_replace = kill_twice(forkserver, requests[0])
    finally:
        zygote.close()
        forkserver.close()
    write_result(
        "mpc_workers",
        {
            "config": args.config,
            "requests": len(requests),
            "zygote_median_solve_s": float(np.median(tz)),
            "zygote_p95_solve_s": float(np.percentile(tz, 95)),
            "forkserver_median_solve_s": float(np.median(tf)),
            "forkserver_p95_solve_s": float(np.percentile(tf, 95)),
            "median_solve_zygote_over_forkserver": float(np.median(tz) / np.median(tf)),
            "same_status": f"{same}/{len(requests)}",
            "max_setpoint_diff": float(max(diffs, default=float("nan"))),
            "zygote_pss_mb": round(z_pss, 1),
            "zygote_processes": len(z_pids),
            "forkserver_pss_mb": round(f_pss, 1),
            "forkserver_processes": len(f_pids),
            "pss_forkserver_over_zygote": f_pss / z_pss,
            "zygote_first_ready_s": z_first,
            "forkserver_first_ready_s": f_first,
            "zygote_replacement_ready_s": z_replace,
            "forkserver_replacement_ready_s": f_replace,
            "note": f"both runners at once on a shared 2-core machine under load (loadavg {os.getloadavg()[0]:.1f})",
        },
    )


if __name__ == "__main__":
    main()
