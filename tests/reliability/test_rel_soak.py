"""Item 11: soak — the reference park (configs/kalundborg.yaml) against the virtual plant, with a fault every
simulated hour, in process and as fast as the CPU allows: the real ``Service`` on a ``ManualClock`` with
the rule-based baseline controller, the plant's samples into ``Service.write`` and the setpoints into the
plant (the wiring of ``sim.scenario.run_scenario``, without its per-cycle recorder, whose lists grow by
design and would be counted as the service's memory).

Sampled 40 times over the run: RSS (``/proc/self/status`` VmRSS) and open file descriptors
(``/proc/self/fd``). Figures: memory growth after warm-up [%/simulated day] as the least-squares slope of
RSS over simulated time (relative to RSS after warm-up), fd count spread, missed cycles (cycles due minus
cycles run, plus the service's overrun counter) and the longest cycle's wall time against the 60 s cycle.
CI: 48 simulated hours (the first 34 are warm-up); slow: 7 simulated days (a few minutes of wall time here).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from controllers.supervisor import Mode
from sim.faults import FaultSchedule
from sim.plant import PlantPhysicsError, VirtualPlant
from sim.scenario import CountingSink, DirectLink, Scenario, SettledPort, load_scenario, make_controller
from symtwin.runtime.clock import ManualClock
from symtwin.runtime.service import Service, ServiceParams
from symtwin.runtime.twin_tracker import site_epoch
from symtwin.runtime.wiring import ProfileForecasts
from tests.support.reliability import REPO, record

# One fault per hour, in turn; each lasts 20 minutes.
FAULTS = [
    "{fault: sensor_freeze, tag: utility.dh.supply_t}",
    "{fault: sensor_nan, tag: utility.town.heat_flow}",
    "{fault: comms_loss}",
    "{fault: actuator_stuck, tag: powerco.chp.heat_split_sp}",
    "{fault: supplier_trip, unit: chp}",
    "{fault: price_spike, series: price.electricity, factor: 4}",
    "{fault: demand_step, unit: town, factor: 1.2}",
    "{fault: sensor_drift, tag: powerco.header.pressure, rate_per_h: 0.2}",
]


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _scenario(tmp_path: Path, hours: int) -> Path:
    events = "\n".join(
        f"  - {{at: {h} h, duration: 20 min, {FAULTS[h % len(FAULTS)][1:]}" for h in range(1, hours)
    )
    text = f"""name: reliability soak ({hours} h)
config: {REPO / "configs" / "kalundborg.yaml"}
start_offset: 160 d
warmup: 1 h
duration: {hours} h
cycle: 60 s
plant_step: 30 s
controller: baseline
freeze_window: 3
plant: {{noise: true, actuator_lag: 30 s, seed: 11}}
events:
{events}
"""
    path = tmp_path / "soak.yaml"
    path.write_text(text)
    return path


async def _soak(scenario: Scenario, n_samples: int = 40) -> dict[str, object]:
    site = scenario.site
    origin = site_epoch(site.config.site.start, 0.0)
    t0 = origin + scenario.start_offset_s
    faults = FaultSchedule(
        type(f)(f.kind, t0 + f.start, f.duration, f.tag, f.unit, f.series, f.factor, f.rate_si_per_s)
        for f in scenario.faults
    )
    t_start = t0 - scenario.warmup_s
    plant = VirtualPlant.from_site(site, start=t_start, origin=origin, params=scenario.plant, faults=faults)
    clock = ManualClock(t_start)
    sink = CountingSink()
    controller = SettledPort(make_controller(scenario.controller, site, scenario.control_period_s))
    profiles = ProfileForecasts(site, origin)

    def forecasts(now: float, times: list[float]) -> object:
        profiles.overrides = plant.forecast_overrides(now)
        return profiles(now, times)

    service = Service(
        site,
        clock=clock,
        params=ServiceParams(
            cycle_s=scenario.cycle_s,
            control_period_s=scenario.control_period_s,
            step_s=scenario.control_period_s,
            freeze_window=scenario.freeze_window,
        ),
        controller=controller,
        writer=DirectLink(plant),
        history=sink,
        forecasts=forecasts,  # type: ignore[arg-type]
        mode=Mode(scenario.mode),
    )
    produced = 0

    def deliver() -> None:
        nonlocal produced
        if not plant.comms_down():
            samples = plant.measurements() + plant.readbacks()
            produced += len(samples)
            service.write(samples)

    n_cycles = round((scenario.warmup_s + scenario.duration_s) / scenario.cycle_s)
    sub = max(1, round(scenario.cycle_s / scenario.plant_step_s))
    every = max(1, n_cycles // n_samples)
    samples: list[tuple[float, int, int]] = []
    aborted = ""
    max_cycle_wall = 0.0
    wall0 = time.perf_counter()
    deliver()
    for c in range(n_cycles):
        w = time.perf_counter()
        await service.cycle()
        await controller.settle()
        max_cycle_wall = max(max_cycle_wall, time.perf_counter() - w)
        try:
            for _ in range(sub):
                plant.advance_to(clock.now() + scenario.plant_step_s)
                clock.advance(scenario.plant_step_s)
                deliver()
        except PlantPhysicsError as exc:
            aborted = str(exc)
            break
        if (c + 1) % every == 0:
            samples.append(((clock.now() - t_start) / 3600, _rss_kib(), _fds()))
    wall = time.perf_counter() - wall0
    await service.shutdown()
    controller.close()
    return {
        "samples": samples,
        "cycles_due": n_cycles,
        "cycles": service.counters.cycles,
        "overruns": service.counters.overruns,
        "aborted": aborted,
        "max_cycle_wall_s": max_cycle_wall,
        "produced": produced,
        "stored": sink.count,
        "dropped": int(service.latest.dropped),
        "wall_s": wall,
    }


@pytest.mark.parametrize("hours", [48, pytest.param(7 * 24, marks=pytest.mark.slow, id="full-7d")])
def test_soak_memory_fds_cycles(tmp_path: Path, hours: int) -> None:
    variant = "full" if hours >= 7 * 24 else "ci"
    started = time.monotonic()
    scenario = load_scenario(_scenario(tmp_path, hours))
    total_h = (scenario.warmup_s + scenario.duration_s) / 3600
    # Warm-up: caches and allocator pools settled, and the service's bounded per-setpoint history (the
    # live view's plan-versus-actual, 2,000 cycles = 33 h at a 60 s cycle) full.
    warm_h = max(scenario.warmup_s / 3600 + 1.0, 2000 * scenario.cycle_s / 3600 + 1.0, 0.25 * total_h)
    run = asyncio.run(_soak(scenario))
    samples: list[tuple[float, int, int]] = run["samples"]  # type: ignore[assignment]
    after = [s for s in samples if s[0] >= warm_h]
    h = np.array([s[0] for s in after])
    rss = np.array([s[1] for s in after], dtype=float)
    slope_kib_per_h = float(np.polyfit(h, rss, 1)[0]) if len(after) >= 3 else math.nan
    growth_pct_day = 100.0 * slope_kib_per_h * 24.0 / rss[0]
    fds = [s[2] for s in after]
    missed = int(run["cycles_due"]) - int(run["cycles"]) + int(run["overruns"])  # type: ignore[call-overload]
    figure = {
        "simulated_h": total_h,
        "faults_injected": len(scenario.faults),
        "cycles_due": run["cycles_due"],
        "cycles_run": run["cycles"],
        "overruns": run["overruns"],
        "missed_cycles": missed,
        "max_cycle_wall_s": round(float(run["max_cycle_wall_s"]), 4),  # type: ignore[arg-type]
        "cycle_s": scenario.cycle_s,
        "aborted": run["aborted"] or None,
        "samples_produced": run["produced"],
        "samples_stored": run["stored"],
        "samples_dropped": run["dropped"],
        "warmup_h": warm_h,
        "rss_after_warmup_mib": round(rss[0] / 1024, 1),
        "rss_end_mib": round(rss[-1] / 1024, 1),
        "memory_growth_pct_per_sim_day": round(growth_pct_day, 3),
        "fd_min_max_after_warmup": [min(fds), max(fds)],
        "rss_samples": len(after),
        "wall_s": round(float(run["wall_s"]), 1),  # type: ignore[arg-type]
    }
    ok = (
        missed == 0
        and not run["aborted"]
        and growth_pct_day < 1.0
        and max(fds) - min(fds) <= 2
        and run["dropped"] == 0
        and run["produced"] == run["stored"]
    )
    record(
        11,
        "soak: reference park, a fault every simulated hour",
        figure,
        ok,
        variant,
        time.monotonic() - started,
    )
    assert not run["aborted"], run["aborted"]
    assert missed == 0
    assert run["dropped"] == 0 and run["produced"] == run["stored"]
    assert growth_pct_day < 1.0
    assert max(fds) - min(fds) <= 2
