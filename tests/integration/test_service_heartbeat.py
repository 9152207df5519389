"""`symtwin run` against a virtual plant in another process: the heartbeat the PLC watches, and the safe
state after SIGTERM, both read from the plant's nodes with an independent OPC UA client.

The plant runs in its own process (tests/support/plant_process.py) so it keeps serving after the service
is killed; the service is the production command with a site config pointing at it.
"""

from __future__ import annotations

import ast
import asyncio
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from asyncua import Client

from adapters.opcua.testing import free_port
from symtwin.config import load_site
from tests.support.service_process import ROOT, ServiceProcess

HEARTBEAT = "ns=2;s=symtwin.heartbeat"
CYCLE_S = 0.5  # the service's cycle in these tests [s]
SETPOINTS = {  # node → safe value in the config's engineering unit
    "ns=2;s=factory.use_sp": 50.0,
    "ns=2;s=utility.storage.charge_sp": 0.0,
    "ns=2;s=utility.boiler.load_sp": 50.0,
}


def site_for_plant(tmp: Path, endpoint: str) -> Path:
    """configs/demo.yaml pointed at ``endpoint`` (security None on loopback), 0.5 s cycle, baseline."""
    doc = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    for p in doc["profiles"]:
        if "csv" in p:
            p["csv"]["path"] = str(ROOT / "configs" / p["csv"]["path"])
    doc["controller"].update(kind="baseline", cycle=f"{CYCLE_S} s", period="5 s")
    doc.setdefault("adapters", {})["opcua"] = {
        "endpoint": endpoint,
        "security_policy": "None",
        "security_mode": "None",
        "allow_insecure": True,
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.plant_process", str(ROOT / "configs" / "demo.yaml"), str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY "), line
        yield line.split()[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


async def read_nodes(endpoint: str, nodes: list[str]) -> list[object]:
    async with Client(endpoint, timeout=5) as c:
        return [await c.get_node(n).read_value() for n in nodes]


def heartbeats(endpoint: str, every_s: float, n: int) -> list[int]:
    out = []
    for _ in range(n):
        value = asyncio.run(read_nodes(endpoint, [HEARTBEAT]))[0]
        assert isinstance(value, int), value  # Int32 on the wire
        out.append(value)
        time.sleep(every_s)
    return out


def test_heartbeat_counts_while_the_service_runs_and_stops_when_it_is_killed(
    plant: str, tmp_path: Path
) -> None:
    site = site_for_plant(tmp_path, plant)
    with ServiceProcess(["run", str(site), "--port", "0"], tmp_path / "state") as svc:
        svc.wait_for(lambda: (svc.metric("symtwin_cycles") or 0) >= 4, 30, "a few cycles")
        running = heartbeats(plant, 0.6, 4)
        assert len(set(running)) == 4 and running == sorted(running), running  # counting up every cycle
        assert svc.signal(signal.SIGKILL) == -signal.SIGKILL
    time.sleep(1.0)  # a notification in flight may land
    after = heartbeats(plant, 0.6, 4)
    assert len(set(after)) == 1, after  # frozen: the PLC's cue to take over
    assert after[0] >= running[-1]


def test_sigterm_leaves_the_last_step_towards_the_safe_values_on_the_plant(
    plant: str, tmp_path: Path
) -> None:
    """On SIGTERM the service takes one last rate-limited step towards each configured safe value (it never
    jumps), writes it, and stops; the plant's setpoint nodes hold exactly that step."""
    site_path = site_for_plant(tmp_path, plant)
    site = load_site(site_path)
    tags = {t.binding.opcua.node_id: t for t in site.tags.values() if t.binding.opcua is not None}
    with ServiceProcess(["run", str(site_path), "--port", "0"], tmp_path / "state") as svc:
        svc.wait_for(lambda: (svc.metric("symtwin_cycles") or 0) >= 6, 30, "a few cycles")
        before = asyncio.run(read_nodes(plant, list(SETPOINTS)))
        assert svc.signal(signal.SIGTERM) == 0
        logged = last_step(svc.lines)
    values = asyncio.run(read_nodes(plant, list(SETPOINTS)))
    assert all(isinstance(v, float) for v in values)  # Float nodes keep their type
    for node, value, previous in zip(SETPOINTS, values, before, strict=True):
        tag = tags[node]
        assert isinstance(value, float) and isinstance(previous, float) and tag.rate_limit_si_per_s
        assert tag.id in logged, tag.id
        assert value == pytest.approx(tag.from_si(logged[tag.id]), abs=1e-4)  # what the service wrote last
        safe, step = SETPOINTS[node], tag.from_si(tag.rate_limit_si_per_s * CYCLE_S) - tag.from_si(0.0)
        # between where it was (a few cycles before the stop) and the safe value, within a step or two
        lo, hi = min(previous, safe) - 3 * step, max(previous, safe) + 3 * step
        assert lo <= value <= hi, (tag.id, previous, value, safe)


def last_step(lines: list[str]) -> dict[str, float]:
    """The values [SI] of the service's log line 'shutdown: last step towards the safe setpoints {...}'."""
    for line in lines:
        m = re.search(r"shutdown: last step towards the safe setpoints (\{.*\})", line)
        if m:
            return {k: float(v) for k, v in ast.literal_eval(m.group(1)).items()}
    raise AssertionError("no shutdown line on stderr:\n" + "".join(lines[-20:]))
