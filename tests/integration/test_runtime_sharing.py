"""The running service republishes shared data to the park broker exactly as the sharing policy grants.

mosquitto runs from the config `symtwin governance` generates from the example site's policy (password
file + ACL); the service's history fan-out feeds the Publisher; each party's client subscribed to
``park/#`` receives raw grants raw, aggregated grants only as closed-interval aggregates, withheld tags
never; every share is in a hash-chained audit log that `symtwin audit verify` accepts.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import queue
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from adapters.base import Sample
from symtwin.config import LoadedSite, load_site
from symtwin.governance.from_site import policy_from_site
from symtwin.governance.mosquitto import password_env_var, write_broker_config
from symtwin.runtime.app import FanOut
from symtwin.runtime.clock import ManualClock
from symtwin.runtime.service import Service
from symtwin.runtime.sharing import AUDIT_FILE, Publisher, PublisherParams, publisher_from_site
from symtwin.runtime.wiring import service_params
from tests.support.servers import Mosquitto, free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "examples" / "mqtt_site.yaml"
T0 = 1_800_000_000.0  # a whole hour (and quarter hour) since the epoch
STEP = 60.0
N = 80  # samples per tag: 0 .. 79 min; the clock ends at 80 min
ENV = {password_env_var("factory"): "pw-factory", password_env_var("utility"): "pw-utility"}


class Party:
    """A party's own client, logged in as the party and subscribed to everything under ``park/``."""

    def __init__(self, port: int, party: str) -> None:
        self.messages: queue.Queue[tuple[str, dict[str, float]]] = queue.Queue()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5,
            client_id=f"{party}-viewer",
            reconnect_on_failure=False,
        )
        self.c.username_pw_set(party, ENV[password_env_var(party)])
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, json.loads(m.payload)))
        ready: queue.Queue[object] = queue.Queue()
        self.c.on_connect = lambda c, u, f, rc, p: ready.put(rc)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: ready.put(rcs)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert not ready.get(timeout=5).is_failure  # type: ignore[attr-defined]
        self.c.subscribe("park/#", qos=1)
        ready.get(timeout=5)

    def collect(self, expected: int, timeout_s: float = 10.0) -> list[tuple[str, dict[str, float]]]:
        """Everything received: at least ``expected`` messages, then whatever else arrives within 0.5 s."""
        out = []
        end = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < end:
            with contextlib.suppress(queue.Empty):
                out.append(self.messages.get(timeout=0.1))
        while True:
            try:
                out.append(self.messages.get(timeout=0.5))
            except queue.Empty:
                return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture(scope="module")
def site() -> LoadedSite:
    return load_site(EXAMPLE)


@pytest.fixture
def park_broker(tmp_path: Path, site: LoadedSite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mosquitto]:
    """mosquitto from the files generated from the site's policy (password file, ACL, no anonymous)."""
    for k, v in ENV.items():
        monkeypatch.setenv(
            k, v
        )  # adapters.mqtt.password of the example is {env: SYMTWIN_MQTT_PASSWORD_UTILITY}
    port = free_port()
    files = write_broker_config(
        policy_from_site(site), tmp_path / "broker", port=port, environ=ENV, run_as_user=getpass.getuser()
    )
    server = Mosquitto(tmp_path, port, files.conf.read_text())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _series(tag: str, k: int) -> float:
    """A value per tag and minute [SI] that makes every interval's mean, min and max distinct."""
    base = {
        "factory.heat": 2.0e6,
        "factory.mass_flow": 10.0,
        "utility.hx.t_out": 340.0,
        "utility.storage.top_t": 350.0,
        "utility.town.heat": 5.0e6,
    }[tag]
    return base + (k % 7) * (1.0 + 0.01 * k) * (1e4 if base > 1e5 else 1.0)


async def test_parties_receive_exactly_what_the_policy_grants_and_the_audit_verifies(
    site: LoadedSite, park_broker: Mosquitto, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    policy = policy_from_site(site)
    state = tmp_path / "state"
    publisher = publisher_from_site(
        site,
        policy,
        state,
        clock=clock.now,
        environ=ENV,
        port=park_broker.port,
        params=PublisherParams(flush_every_s=0.02, flush_lag_s=5.0),
    )
    assert isinstance(publisher, Publisher)
    assert set(publisher.owners) == {"factory", "utility"}
    service = Service(site, clock=clock, params=service_params(site), history=FanOut([publisher]))
    factory, utility = Party(park_broker.port, "factory"), Party(park_broker.port, "utility")
    measured = [
        "factory.heat",
        "factory.mass_flow",
        "utility.hx.t_out",
        "utility.storage.top_t",
        "utility.town.heat",
    ]
    try:
        publisher.start()
        assert publisher.stats()["connected"] == 2
        for k in range(N):
            # as the adapters deliver: SI samples into Service.write, which hands them to the history fan-out
            service.write([Sample(tag, clock.now(), _series(tag, k)) for tag in measured])
            await service.cycle()
            clock.advance(STEP)
        assert clock.now() == T0 + N * STEP
        time.sleep(0.2)  # a few flushes on the final clock
        assert publisher.drain(10.0)

        # what should leave: factory.heat raw (80); hx.t_out per closed 15 min interval (0-75 min: 5, the
        # interval 75-90 min is still open); town.heat per closed hour (1); mean, min and max of each.
        hx_ends = [T0 + 900.0 * i for i in range(1, 6)]
        expected = Counter({"park/factory/raw/factory.heat": N})
        for stat in ("mean", "min", "max"):
            expected[f"park/utility/agg/15min/utility.hx.t_out/{stat}"] = len(hx_ends)
            expected[f"park/utility/agg/1h/utility.town.heat/{stat}"] = 1
        total = sum(expected.values())
        # each party also reads its own namespace, so both see the same set here; what matters is that
        # nothing else was published at all (the ACL would hide it from one of them, not from both)
        for party in (factory, utility):
            got = party.collect(total)
            assert Counter(t for t, _ in got) == expected
        stats = publisher.stats()
        assert stats["dropped_buffer"] == 0 and stats["dropped_client"] == 0
        assert stats["published"] == total

        # the values: raw in SI with its timestamp; aggregates over closed intervals, stamped with their end
        raw = [m for t, m in got if "/raw/" in t]
        assert [m["ts"] for m in raw] == [T0 + STEP * k for k in range(N)]
        assert [m["value"] for m in raw] == pytest.approx([_series("factory.heat", k) for k in range(N)])
        assert all(m["unit"] == "W" for m in raw)
        for stat, fn in (("mean", np.mean), ("min", np.min), ("max", np.max)):
            agg = sorted((m["ts"], m["value"]) for t, m in got if t.endswith(f"utility.hx.t_out/{stat}"))
            assert [ts for ts, _ in agg] == hx_ends
            for i, (_, value) in enumerate(agg):
                window = [_series("utility.hx.t_out", k) for k in range(15 * i, 15 * i + 15)]
                assert value == pytest.approx(float(fn(window)))
            ((ts, value),) = [
                (m["ts"], m["value"]) for t, m in got if t.endswith(f"utility.town.heat/{stat}")
            ]
            assert ts == T0 + 3600.0
            assert value == pytest.approx(float(fn([_series("utility.town.heat", k) for k in range(60)])))
    finally:
        publisher.stop()
        factory.close()
        utility.close()

    # the audit: one record per recipient (this run is shorter than the coalescing period), chain intact
    log = state / AUDIT_FILE
    done = subprocess.run(
        [sys.executable, "-m", "symtwin", "audit", "verify", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {r["recipient"] for r in records} == {"utility", "factory"}
    assert all(r["channel"] == "mqtt" for r in records)
    to_utility = [r for r in records if r["recipient"] == "utility"]
    to_factory = [r for r in records if r["recipient"] == "factory"]
    assert all(r["tags"] == {"factory.heat": "raw"} for r in to_utility)
    assert all(
        r["tags"] == {"utility.hx.t_out": "aggregated 15min", "utility.town.heat": "aggregated 1h"}
        for r in to_factory
    )
    # coalesced per hour of data: 79 min of raw data are one or two records (as the worker batched them),
    # together covering every share
    assert 1 <= len(to_utility) <= 2
    assert (to_utility[0]["start"], to_utility[-1]["end"]) == (T0, T0 + (N - 1) * STEP)
    assert (to_factory[0]["start"], to_factory[-1]["end"]) == (T0 + 900.0, T0 + 4500.0)


async def test_wrong_broker_password_is_refused_and_nothing_blocks(
    site: LoadedSite, park_broker: Mosquitto, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    env = dict(ENV) | {password_env_var("factory"): "wrong"}
    publisher = publisher_from_site(
        site,
        policy_from_site(site),
        tmp_path / "state",
        clock=clock.now,
        environ=env,
        port=park_broker.port,
        owners=["factory"],
        params=PublisherParams(max_buffered=100, max_inflight=10, audit_flush_every_s=0.1),
    )
    assert publisher is not None and publisher.owners == ("factory",)
    try:
        t0 = time.monotonic()
        publisher.start(connect_timeout_s=1.0)
        assert publisher.stats()["connected"] == 0
        # the control loop's hand-off returns at once even with no broker session; overflow is counted
        t1 = time.monotonic()
        for k in range(500):
            publisher.write([Sample("factory.heat", T0 + k, 1.0), Sample("utility.town.heat", T0 + k, 1.0)])
        assert time.monotonic() - t1 < 0.5
        assert time.monotonic() - t0 < 5.0
        time.sleep(0.3)
        stats = publisher.stats()
        assert stats["accepted"] + stats["dropped_buffer"] == 500  # utility's tags are not this publisher's
        assert stats["dropped_client"] > 0  # paho's queue (10) is full while refused
        # shares are on disk without an orderly stop (a crash loses at most audit_flush_every_s of them)
        audit = tmp_path / "state" / AUDIT_FILE
        records = [json.loads(line) for line in audit.read_text().splitlines()]
        assert records and {r["recipient"] for r in records} == {"utility"}
        assert records[0]["start"] == T0
    finally:
        publisher.stop(timeout_s=1.0)


def test_missing_party_password_is_a_clear_error(
    site: LoadedSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYMTWIN_MQTT_PASSWORD_UTILITY", "x")
    from symtwin.runtime.sharing import SharingError

    with pytest.raises(SharingError, match="SYMTWIN_MQTT_PASSWORD_FACTORY"):
        publisher_from_site(site, policy_from_site(site), tmp_path, environ={})
    # utility's own login is adapters.mqtt's, so it needs nothing more
    only_utility = publisher_from_site(site, policy_from_site(site), tmp_path, environ={}, owners=["utility"])
    assert only_utility is not None and only_utility.owners == ("utility",)
