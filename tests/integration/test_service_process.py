"""The assembled service (`symtwin sim`) as a child process: /metrics, /healthz, SIGTERM, no lost sample.

Real components only: the virtual plant's asyncua server and the OPC UA adapter on loopback, the SQLite
history and dead-letter stores, the aiohttp live view. The process is signalled like systemd would.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
from pathlib import Path

from tests.support.service_process import ServiceProcess

SIM = [
    "sim",
    "configs/demo.yaml",
    "--speed",
    "60",
    "--controller",
    "baseline",
    "--port",
    "0",
    "--no-progress",
]

# Prometheus text exposition format 0.0.4: comments, or `name{labels} value`.
_SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
    r"(-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$"
)


def parse_prometheus(text: str) -> dict[str, float]:
    """Every sample line → value; fails on any line that is not valid exposition format."""
    out: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        assert _SAMPLE.match(line), f"not exposition format: {line!r}"
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
        base = re.sub(r"(_bucket|_sum|_count)$", "", key.split("{")[0])
        assert key.split("{")[0] in types or base in types, f"sample without # TYPE: {line!r}"
    return out


def history_rows(state: Path) -> int:
    with sqlite3.connect(state / "history.sqlite") as c:
        (n,) = c.execute("SELECT COUNT(*) FROM samples").fetchone()
    return int(n)


def test_metrics_in_prometheus_format_and_healthz(tmp_path: Path) -> None:
    with ServiceProcess(SIM, tmp_path) as svc:
        svc.wait_for(
            lambda: (
                (svc.metric("symtwin_solves_total") or 0) >= 0
                and "solve_seconds_count" in svc.get("/metrics")[1]
            ),
            30,
            "a first solve",
        )
        status, text = svc.get("/metrics")
        assert status == 200
        m = parse_prometheus(text)
        names = {k.split("{")[0] for k in m}
        for wanted in (
            "symtwin_cycle_seconds_bucket",  # cycle time
            "symtwin_solve_seconds_count",  # solve time, by status
            "symtwin_solve_status",
            "symtwin_stale_tags",
            "symtwin_outbox_depth",
            "symtwin_samples_dropped",
            "symtwin_store_dropped",
            "symtwin_dead_letters",
            "symtwin_fallback_engaged",
            "symtwin_samples_delivered",
        ):
            assert wanted in names, wanted
        assert m['symtwin_cycle_seconds_bucket{le="+Inf"}'] == m["symtwin_cycle_seconds_count"] > 0
        assert any(k.startswith('symtwin_solve_seconds_count{status="') for k in m)
        assert m["symtwin_stale_tags"] == 0 and m["symtwin_samples_dropped"] == 0
        assert m["symtwin_samples_delivered"] > 0
        status, body = svc.get("/healthz")
        health = json.loads(body)
        assert status == 200 and health["ok"] is True and health["opcua"] is True and health["cycles"] > 0
        assert svc.signal(signal.SIGINT) == 0  # Ctrl-C is an orderly stop too


def test_sigterm_loses_no_sample_and_steps_towards_the_safe_state(tmp_path: Path) -> None:
    with ServiceProcess(SIM, tmp_path) as svc:
        svc.wait_for(lambda: (svc.metric("symtwin_samples_delivered") or 0) >= 300, 30, "300 samples")
        assert svc.signal(signal.SIGTERM) == 0
        cycles, received, stored, set_aside = svc.stopped_counts()
        err = "".join(svc.lines)
    assert cycles > 0 and received >= 300
    assert "Traceback" not in err
    # in auto, one last rate-limited step towards the configured safe values, written before the adapter closed
    assert "shutdown: last step towards the safe setpoints {'factory.use_sp': " in err
    # every sample the adapter delivered to the service went to history and is on disk after exit
    assert stored + set_aside == received
    assert history_rows(tmp_path) == stored
