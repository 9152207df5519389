"""The MPC behind the service's ControllerPort: solves in a killable worker; a late solve is a timeout
with nothing to write; the baseline answers through the same port shape."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from controllers.mpc import BaselinePort, MpcPort, problem_from_site
from controllers.types import SolveStatus
from symtwin.config import load_site
from symtwin.runtime.service import SolveRequest

N = 8
T0 = 150 * 86400.0


def request(site: object) -> SolveRequest:
    from symtwin.runtime.wiring import ProfileForecasts

    times = [T0 + 900.0 * k for k in range(N)]
    fc = ProfileForecasts(site, 0.0)(T0, times)  # type: ignore[arg-type]
    state = {"utility.storage.top_t": 350.0, "pipe.outlet_temperature": 352.0, "boiler.load": 0.2}
    current = {"utility.boiler.load_sp": 0.2, "factory.use_sp": 1.0, "utility.storage.charge_sp": 0.0}
    return SolveRequest(T0, state, fc, times, current)


@pytest.fixture(scope="module")
def site() -> object:
    return load_site(Path(__file__).resolve().parents[2] / "configs/demo.yaml")


async def test_mpc_port_solves_in_a_worker_and_times_out_cleanly(site: object) -> None:
    spec = dataclasses.replace(problem_from_site(site, horizon_steps=N), max_solve_s=5.0)
    keys = {t.id: t.key for t in site.tags.values()}  # type: ignore[attr-defined]
    port = MpcPort(spec, keys)
    try:
        r = await port.solve(request(site), deadline_s=60.0)
        assert r.status is SolveStatus.OPTIMAL, r.message
        assert set(r.setpoints) == {"utility.boiler.load_sp", "factory.use_sp", "utility.storage.charge_sp"}
        assert np.all(np.diff(r.plan_times) == 900.0)
        late = await port.solve(request(site), deadline_s=1e-4)
        assert late.status is SolveStatus.TIMEOUT
        assert not late.setpoints and not late.plan
        # the worker holds only what the MPC needs: none of the service's OPC UA, web or twin stack
        modules = set(port.runner.worker_modules(timeout_s=30.0))
        assert {"casadi", "do_mpc"} <= modules
        assert not modules & {"asyncua", "aiohttp", "numba", "llvmlite", "paho", "symtwin", "matplotlib"}
    finally:
        port.close()


async def test_baseline_port_has_the_same_shape(site: object) -> None:
    port = BaselinePort.from_site(site)
    r = await port.solve(request(site), deadline_s=1.0)
    assert r.usable
    assert {"utility.boiler.load_sp", "utility.storage.charge_sp"} <= set(r.setpoints)
    port.reset_warm_start()
