"""Closed loop over real OPC UA on loopback: sensor→setpoint latency, cycle jitter, 24 h commissioning, RSS.

Figures (benchmarks/results/closed_loop.json):

* ``sensor_to_setpoint_p50_ms`` / ``_p99_ms``: the fallback path, no solve. The virtual plant's server puts a
  Bad-quality value (BadSensorFailure) on a measurement node, source-stamped with the wall clock; the OPC UA
  adapter delivers it, the next cycle judges the inputs bad and the supervisor writes the safe value, which
  lands on the plant's setpoint node (the server's PostWrite, stamped with the wall clock). Real clock
  (speed 1), ``cycle`` 0.1 s, a 50 ms OPC UA publishing interval, setpoint rate limits lifted so the safe
  value lands in one write. Side by side: the same with the adapter's default publishing interval for a
  real-time site (0.5 s), reported as ``..._default_publishing_*`` and as a ratio.
* ``cycle_jitter_p99_ms``: lateness of each cycle start against its schedule (t0 + k·cycle) in that run.
* ``commission_24h_wall_s``: wall time of ``symtwin commission configs/kalundborg.yaml --scenario
  configs/scenarios/kalundborg_winter_day.yaml`` (24 h + 2 h warm-up, cycle 60 s) with ``--controller mpc``
  (a solve every 15 min); the baseline controller side by side (``commission_24h_baseline_wall_s``).
* Memory of ``symtwin sim configs/kalundborg.yaml --controller mpc --speed 60`` after a warm-up (a few
  solves done): ``service_rss_mb`` is the main process's VmRSS (the issue's figure);
  ``service_total_pss_mb`` is every process of the service summed as PSS (proportional set size: a page
  shared by n processes counts 1/n in each, so the sum is the memory the service really holds; summed
  RSS would count the MPC template's pages once per worker). ``memory_processes`` lists each process
  with its role (service, MPC template, MPC worker/spare, multiprocessing helpers), RSS, PSS and private
  memory; ``mpc_processes_pss_mb`` is the sum over all but the main process. A second reading
  ``--growth`` seconds later gives ``service_rss_growth_mb_per_min`` and
  ``service_total_pss_growth_mb_per_min`` (per wall minute = per simulated hour at speed 60).

Run: .venv/bin/python benchmarks/closed_loop.py [--trials N] [--only latency,commission,memory]
With ``--only``, the parts not run keep their figures from the existing JSON (each part records when).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._common import RESULTS, write_result  # noqa: E402

CYCLE_S = 0.1
FAST_PUBLISH_S = 0.05
SENSOR = "utility.town.heat"
SETPOINT = "utility.boiler.load_sp"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def fast_demo_site(tmp: Path) -> Path:
    """configs/demo.yaml with a 0.1 s cycle, the baseline controller and rate limits lifted."""
    doc = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    for p in doc["profiles"]:
        if "csv" in p:
            p["csv"]["path"] = str(REPO / "configs" / p["csv"]["path"])
    for t in doc["tags"]:
        if t["direction"] == "setpoint":
            lo, hi = t["bounds"]
            unit = t["eng_unit"]
            t["rate_limit"] = f"{100 * (hi - lo)} {unit}/s" if unit == "kg/s" else "1000000 %/min"
    doc["controller"].update(kind="baseline", cycle=f"{CYCLE_S} s", period="2 s")
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(what)
        await asyncio.sleep(0.005)


async def latency_run(site_path: Path, trials: int, publishing_s: float | None) -> dict[str, Any]:
    from asyncua import ua

    from adapters.opcua.client import OpcUaAdapter
    from adapters.opcua.testing import free_port, quiet_server_logs
    from controllers.supervisor import Mode
    from sim.plant import PlantParams, VirtualPlant
    from sim.scenario import make_controller
    from sim.server import plant_server_for
    from symtwin.config import load_site
    from symtwin.runtime.clock import RealClock
    from symtwin.runtime.service import Service
    from symtwin.runtime.state import Snapshot
    from symtwin.runtime.wiring import ProfileForecasts, opcua_config, service_params

    quiet_server_logs()
    site = load_site(site_path)
    clock = RealClock()
    params = service_params(site)
    plant = VirtualPlant.from_site(site, start=clock.now(), params=PlantParams(settle_s=1800.0, seed=3))
    server = plant_server_for(site, plant, clock=clock, port=free_port(), step_s=1.0)
    await server.start()
    landed: list[tuple[float, dict[str, float]]] = []
    apply = plant.apply

    def timed_apply(setpoints: Any) -> dict[str, bool]:  # PostWrite on the server: the write has landed
        landed.append((time.time(), dict(setpoints)))
        return apply(setpoints)

    plant.apply = timed_apply  # type: ignore[method-assign]
    service = Service(
        site,
        clock=clock,
        params=params,
        controller=make_controller("baseline", site, params.control_period_s),
        forecasts=ProfileForecasts(site, plant.origin),
        mode=Mode.AUTO,
    )
    cfg = opcua_config(site, endpoint=server.endpoint, insecure=True)
    if publishing_s is not None:
        cfg = dataclasses.replace(cfg, publishing_interval_s=publishing_s)
    delivered: list[tuple[float, Any]] = []

    class Tap:  # records when a bad sample reaches the service (the adapter's sink), then hands it on
        def write(self, samples: Any) -> None:
            for smp in samples:
                if smp.tag == SENSOR and int(smp.quality) != 0:
                    delivered.append((time.time(), smp))
            service.write(samples)

    adapter = OpcUaAdapter(cfg, Tap(), clock=clock.now)
    service.writer = adapter
    starts: list[float] = []
    last: list[Snapshot] = []

    def on_snapshot(s: Snapshot) -> None:
        starts.append(s.time)
        last[:] = [s]

    service.on_snapshot(on_snapshot)
    await adapter.start()
    task = asyncio.create_task(service.run())
    safe = site.tags[SETPOINT].safe_value_si
    sensor_node = ua.NodeId.from_string(site.tags[SENSOR].binding.opcua.node_id)  # type: ignore[union-attr]
    latencies: list[float] = []
    deliveries: list[float] = []
    lost = 0  # bad values that never reached the service (replaced on the node before a publish)
    try:
        for trial in range(trials):
            # normal operation, the plan keeps the boiler off its safe value
            await wait_for(
                lambda: (
                    bool(last)
                    and last[0].fallback == "none"
                    and last[0].tags[SETPOINT].value not in (None, safe)
                ),
                30,
                "normal operation",
            )
            # Right after a plant publish (it restores a good value every 1 s; with a monitored-item queue of
            # one, a newer value within the same publishing interval replaces the bad one), at a spread of
            # phases against the service's cycle.
            p0 = server.published

            def published(p0: int = p0) -> bool:
                return server.published > p0

            await wait_for(published, 5, "a plant publish")
            await asyncio.sleep(0.05 + CYCLE_S * (trial % 7) / 7)
            n0 = len(landed)
            # a failing sensor: its last value with BadSensorFailure (a NaN would be refused as non-finite)
            bad_value = site.tags[SENSOR].from_si(service.latest.table[SENSOR].value)
            t_sensor = time.time()
            stamp = ua.DateTime.fromtimestamp(t_sensor, dt.UTC)
            dv = ua.DataValue(
                ua.Variant(float(bad_value), ua.VariantType.Double),
                StatusCode=ua.StatusCode(ua.UInt32(ua.StatusCodes.BadSensorFailure)),
                SourceTimestamp=stamp,
                ServerTimestamp=stamp,
            )
            assert server._server is not None
            await server._server.write_attribute_value(sensor_node, dv)

            def safe_landed(n0: int = n0) -> bool:
                return any(abs(sp.get(SETPOINT, -1.0) - float(safe or 0.0)) < 1e-6 for _, sp in landed[n0:])

            try:
                await wait_for(safe_landed, 3, "the safe value on the plant")
            except TimeoutError:
                lost += 1
                continue
            t_land = next(
                t for t, sp in landed[n0:] if abs(sp.get(SETPOINT, -1.0) - float(safe or 0.0)) < 1e-6
            )
            latencies.append(t_land - t_sensor)
            if delivered and delivered[-1][0] >= t_sensor:
                deliveries.append(delivered[-1][0] - t_sensor)
            # the plant's next publish (1 s) restores a good value; the controller takes over again
    finally:
        service.stop()
        await asyncio.wait_for(task, 10)
        await adapter.stop()
        await server.close()
    t0 = starts[0]
    lateness = [1000 * (t - (t0 + round((t - t0) / CYCLE_S) * CYCLE_S)) for t in starts[1:]]
    ms = [1000 * x for x in latencies]
    dms = [1000 * x for x in deliveries] or [float("nan")]
    return {
        "delivery_p50": pct(dms, 50),
        "delivery_p99": pct(dms, 99),
        "p50": pct(ms, 50),
        "p99": pct(ms, 99),
        "max": max(ms),
        "n": len(ms),
        "lost": lost,
        "jitter_p99": pct([abs(x) for x in lateness], 99),
        "cycles": len(starts),
        "overruns": service.counters.overruns,
    }


def timed(cmd: list[str]) -> tuple[float, str]:
    """Wall time of the whole command (start-up and report included) and its verdict line."""
    t0 = time.monotonic()
    done = subprocess.run(
        cmd, cwd=REPO, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wall = time.monotonic() - t0
    if done.returncode not in (0, 1):  # 1: ran, a criterion failed; anything else: did not run
        raise RuntimeError(f"{cmd} exited {done.returncode}:\n{done.stdout[-2000:]}")
    verdict = next(
        (ln.strip() for ln in reversed(done.stdout.splitlines()) if ln.startswith(("PASS", "FAIL"))), ""
    )
    fails = [ln.strip() for ln in done.stdout.splitlines() if ln.strip().startswith("FAIL ")]
    return wall, "; ".join([verdict, *fails])


def commission(controller: str, out: Path) -> tuple[float, str]:
    return timed(
        [
            sys.executable,
            "-m",
            "symtwin",
            "commission",
            "configs/kalundborg.yaml",
            "--scenario",
            "configs/scenarios/kalundborg_winter_day.yaml",
            "--controller",
            controller,
            "--quiet",
            "--out",
            str(out / controller),
        ]
    )


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def rollup_mb(pid: int, field: str) -> float:
    """A field of /proc/PID/smaps_rollup [MB]."""
    m = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M)
    return int(m.group(1)) / 1024 if m else float("nan")


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages split between the processes sharing them (sums correctly)."""
    return rollup_mb(pid, "Pss")


def role(pid: int, service_pid: int) -> str:
    """What a process of the service is, from its command line and parent."""
    cmd = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    if pid == service_pid:
        return "service (main process)"
    if "controllers.worker_entry" in cmd:
        return "MPC template (builds once, forks workers)" if parent == service_pid else "MPC worker or spare"
    if "resource_tracker" in cmd:
        return "multiprocessing resource tracker"
    if "forkserver" in cmd:
        return "multiprocessing fork server" if parent == service_pid else "MPC worker or spare (forkserver)"
    return cmd[:80]


def growth(
    proc: subprocess.Popen[bytes], rss0: float, total_pss0: float, window_s: float
) -> dict[str, float]:
    """Main-process RSS and total PSS ``window_s`` [s] after the first reading, and their growth [MB/min]."""
    if window_s <= 0:
        return {}
    time.sleep(window_s)
    if proc.poll() is not None:
        raise RuntimeError(f"symtwin sim exited early ({proc.returncode})")
    pids = [proc.pid, *descendants(proc.pid)]
    rss1, pss1 = rss_mb(proc.pid), sum(pss_mb(pid) for pid in pids)
    return {
        "service_rss_mb_later": round(rss1, 1),
        "service_total_pss_mb_later": round(pss1, 1),
        "growth_window_s": window_s,
        "service_rss_growth_mb_per_min": round((rss1 - rss0) * 60.0 / window_s, 2),
        "service_total_pss_growth_mb_per_min": round((pss1 - total_pss0) * 60.0 / window_s, 2),
    }


def git_state() -> str:
    """The commit measured, and whether the code differed from it (other engineers' uncommitted edits)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(
        [
            "git",
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            "controllers",
            "twin",
            "symtwin",
            "sim",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    state = head.stdout.strip() or "unknown"
    return state + (" + uncommitted edits" if dirty.stdout.strip() else "")


def descendants(pid: int) -> list[int]:
    """Child processes, recursively (the MPC worker is a child of the multiprocessing fork server)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(x) for x in path.read_text().split()] if path.exists() else []
    return kids + [d for k in kids for d in descendants(k)]


def service_rss(tmp: Path, warmup_s: float, growth_s: float) -> dict[str, Any]:
    """Memory of `symtwin sim` on the reference park with the MPC after ``warmup_s`` [MB].

    The main process's VmRSS and PSS; every process of the service (the MPC's template, worker and
    spare of controllers.deadline, any multiprocessing helper) with its role; the total PSS. A second
    reading ``growth_s`` later gives the growth rate (a figure after a minute says little if it grows)."""
    cmd = [
        sys.executable,
        "-m",
        "symtwin",
        "sim",
        "configs/kalundborg.yaml",
        "--controller",
        "mpc",
        "--speed",
        "60",
        "--port",
        "0",
        "--no-progress",
        "--state-dir",
        str(tmp / "rss"),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(warmup_s)
        if proc.poll() is not None:
            raise RuntimeError(f"symtwin sim exited early ({proc.returncode})")
        kids = descendants(proc.pid)
        pids = [proc.pid, *kids]
        rss = [rss_mb(pid) for pid in pids]
        pss = [pss_mb(pid) for pid in pids]
        private = [rollup_mb(pid, "Private_Clean") + rollup_mb(pid, "Private_Dirty") for pid in pids]
        table = [
            {
                "role": role(pid, proc.pid),
                "rss_mb": round(r, 1),
                "pss_mb": round(q, 1),
                "private_mb": round(v, 1),
            }
            for pid, r, q, v in zip(pids, rss, pss, private, strict=True)
        ]
        return {
            "service_rss_mb": round(rss[0], 1),
            "service_pss_mb": round(pss[0], 1),
            "service_total_pss_mb": round(sum(pss), 1),
            "service_processes": len(pids),
            "mpc_processes": len(kids),
            "mpc_processes_pss_mb": round(sum(pss[1:]), 1),
            "mpc_largest_process_rss_mb": round(max(rss[1:], default=0.0), 1),
            "memory_processes": table,
            **growth(proc, rss[0], sum(pss), growth_s),
        }
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


PARTS = ("latency", "commission", "memory")


def previous_figures() -> dict[str, Any]:
    """The figures of the last run (without the header write_result adds)."""
    path = RESULTS / "closed_loop.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    return {k: v for k, v in old.items() if k not in ("benchmark", "when", "machine", "targets_met")}


def load_note() -> str:
    return f"taken on a shared 2-core machine under load (loadavg {os.getloadavg()[0]:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--warmup", type=float, default=60.0, help="wall seconds before the memory reading")
    ap.add_argument("--growth", type=float, default=60.0, help="wall seconds to a second memory reading")
    ap.add_argument(
        "--only",
        default=",".join(PARTS),
        help="comma-separated parts to run (latency, commission, memory); the others keep their last figures",
    )
    ap.add_argument("--skip-commission", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    a = ap.parse_args()
    parts = {x.strip() for x in a.only.split(",") if x.strip()}
    if unknown := parts - set(PARTS):
        ap.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    if a.skip_commission:
        parts.discard("commission")
    if a.skip_rss:
        parts.discard("memory")
    logging.basicConfig(level=logging.ERROR)
    for name in ("controllers.supervisor", "symtwin.runtime.service", "asyncua", "adapters.opcua.client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    figures: dict[str, Any] = previous_figures() if parts != set(PARTS) else {}
    if "memory" in parts:  # drop the memory figures of older versions of this script
        for key in [k for k in figures if k.startswith(("service_", "mpc_", "memory_"))]:
            figures.pop(key, None)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "latency" in parts:
            site = fast_demo_site(tmp)
            fast = asyncio.run(latency_run(site, a.trials, FAST_PUBLISH_S))
            default = asyncio.run(latency_run(site, max(10, a.trials // 2), None))
            figures.update(
                sensor_to_setpoint_p50_ms=fast["p50"],
                sensor_to_setpoint_p99_ms=fast["p99"],
                sensor_to_setpoint_max_ms=fast["max"],
                sensor_to_setpoint_trials=fast["n"],
                bad_values_not_delivered=fast["lost"] + default["lost"],
                sensor_to_service_p50_ms=fast["delivery_p50"],
                sensor_to_service_p99_ms=fast["delivery_p99"],
                cycle_jitter_p99_ms=fast["jitter_p99"],
                latency_setup=f"demo park, real clock, cycle {CYCLE_S} s, OPC UA publishing {FAST_PUBLISH_S} s, "
                "Bad-quality sensor value -> safe setpoint on the plant node (fallback path, no solve)",
                cycles_in_latency_run=fast["cycles"],
                cycle_overruns=fast["overruns"],
                sensor_to_setpoint_default_publishing_p50_ms=default["p50"],
                sensor_to_setpoint_default_publishing_p99_ms=default["p99"],
                default_publishing_over_fast_p99=default["p99"] / fast["p99"],
                note=load_note(),
            )
        if "commission" in parts:
            mpc, mpc_verdict = commission("mpc", tmp)
            base, base_verdict = commission("baseline", tmp)
            loop = re.search(r"24 h in ([0-9.]+) s wall", mpc_verdict)
            figures.update(
                commission_24h_wall_s=mpc,
                commission_24h_loop_wall_s=float(loop.group(1)) if loop else None,
                commission_24h_controller="mpc (solve every 15 min)",
                commission_24h_verdict=mpc_verdict,
                commission_24h_baseline_wall_s=base,
                commission_24h_baseline_verdict=base_verdict,
                commission_mpc_over_baseline=mpc / base,
                note=load_note(),
            )
        if "memory" in parts:
            figures.update(service_rss(tmp, a.warmup, a.growth))
            figures.update(
                rss_setup=f"symtwin sim configs/kalundborg.yaml --controller mpc --speed 60, after {a.warmup:g} s "
                f"wall (1 simulated hour per wall minute), again {a.growth:g} s later; code at {git_state()}",
                memory_when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                memory_note=load_note(),
            )
    figures["targets_met"] = {
        "p99_lt_200ms": figures.get("sensor_to_setpoint_p99_ms", float("inf")) < 200,
        "commission_lt_300s": figures.get("commission_24h_wall_s", float("inf")) < 300,
        "service_rss_lt_600mb": figures.get("service_rss_mb", float("inf")) < 600,
        "service_total_pss_lt_600mb": figures.get("service_total_pss_mb", float("inf")) < 600,
    }
    write_result("closed_loop", figures)


if __name__ == "__main__":
    main()
