"""The virtual plant's OPC UA server alone, in its own process (for tests that kill the service).

    python -m tests.support.plant_process CONFIG PORT [--settle SECONDS]

Serves the site's tags and its heartbeat node (``controller.heartbeat``) on ``127.0.0.1:PORT`` with the
path of ``adapters.opcua.endpoint``, on the real clock; prints ``READY <endpoint>`` on stdout once it
serves and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from sim.plant import PlantParams, VirtualPlant
from sim.server import plant_server_for
from symtwin.config import load_site
from symtwin.runtime.clock import RealClock


async def main(config: str, port: int, settle_s: float, step_s: float) -> None:
    site = load_site(config)
    clock = RealClock()
    plant = VirtualPlant.from_site(site, start=clock.now(), params=PlantParams(settle_s=settle_s, seed=1))
    server = plant_server_for(site, plant, clock=clock, port=port, step_s=step_s)
    await server.start()
    print(f"READY {server.endpoint}", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    with contextlib.suppress(Exception):
        await server.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("port", type=int)
    p.add_argument("--settle", type=float, default=1800.0)
    p.add_argument("--step", type=float, default=0.5)
    a = p.parse_args()
    asyncio.run(main(a.config, a.port, a.settle, a.step))
    sys.exit(0)
