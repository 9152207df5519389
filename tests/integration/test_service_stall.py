"""Nothing in logging, history or the web layer can stall the control cycle.

`symtwin sim` runs as a child process; then, all at once: its stderr pipe is full and nobody reads it (a
stuck log consumer), its SQLite history file is locked by another writer (a stuck disk), idle connections
hold the web server, and failed logins make the service log. The cycle counter on /metrics must go on at
the clock's pace, /metrics must keep answering, and after the stalls end every delivered sample is stored.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.support.service_process import ServiceProcess

SPEED, CYCLE_S = 60.0, 5.0  # configs/demo.yaml: a 5 s cycle; 12 cycles per wall second at 60x
SIM = ["sim", "configs/demo.yaml", "--speed", str(SPEED), "--controller", "baseline", "--port", "0"]


def cycles(svc: ServiceProcess) -> float:
    t0 = time.monotonic()
    value = svc.metric("symtwin_cycles")
    assert time.monotonic() - t0 < 1.0, "/metrics took longer than 1 s"
    assert value is not None
    return value


def failed_login(url: str) -> None:
    body = urllib.parse.urlencode({"user": "factory-operator", "password": "wrong"}).encode()
    with contextlib.suppress(OSError):
        urllib.request.urlopen(urllib.request.Request(url + "/login", data=body), timeout=5).close()


def test_stuck_log_output_locked_history_and_idle_web_clients_do_not_stall_the_cycle(tmp_path: Path) -> None:
    with ServiceProcess(SIM, tmp_path) as svc:
        svc.wait_for(lambda: cycles(svc) >= 5, 30, "a few cycles")
        filled = svc.stall_stderr()
        assert filled >= 4096
        lock = sqlite3.connect(tmp_path / "history.sqlite", timeout=0, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        host, port = svc.url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(20)]
        for s in idle:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
        try:
            c0, t0 = cycles(svc), time.monotonic()
            for _ in range(5):
                failed_login(svc.url)  # logged by the web layer, in the loop
            time.sleep(4.0)
            c1, t1 = cycles(svc), time.monotonic()
            expected = (t1 - t0) * SPEED / CYCLE_S
            assert c1 - c0 >= 0.7 * expected, (c1 - c0, expected)
        finally:
            for s in idle:
                s.close()
            lock.rollback()
            lock.close()
            svc.reading.set()
        time.sleep(1.0)  # the history writer's next flush
        assert svc.signal(signal.SIGTERM) == 0
        _, received, stored, set_aside = svc.stopped_counts()
    assert stored + set_aside == received
