"""Real servers for the integration tier: mosquitto and victoria-metrics on free loopback ports.

Each server runs from its Debian binary with a temporary data directory and is stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


def find_binary(name: str, *extra: str) -> str:
    for candidate in (shutil.which(name), *extra):
        if candidate and Path(candidate).exists():
            return candidate
    raise FileNotFoundError(f"{name} is not installed; run the README test command (it installs it)")


@dataclass
class Mosquitto:
    """A running mosquitto broker; ``restart()`` brings it back on the same port (for outage tests)."""

    workdir: Path
    port: int
    extra_config: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        if not self.extra_config or "listener" not in self.extra_config:
            body = f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{self.extra_config}"
        else:
            body = self.extra_config
        # As root, mosquitto drops to user "mosquitto", which cannot read pytest's private temp folders.
        user = "user root\n" if os.geteuid() == 0 and "\nuser " not in f"\n{body}" else ""
        conf.write_text(f"persistence false\nlog_dest file {self.workdir / 'mosquitto.log'}\n{user}{body}\n")
        binary = find_binary("mosquitto", "/usr/sbin/mosquitto")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            log = (self.workdir / "mosquitto.log").read_text() if (self.workdir / "mosquitto.log").exists() else ""
            raise RuntimeError(f"mosquitto did not start: {log[-2000:]}") from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def running_mosquitto(workdir: Path, extra_config: str = "", port: int | None = None) -> Iterator[Mosquitto]:
    broker = Mosquitto(workdir, port or free_port(), extra_config)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class VictoriaMetrics:
    """A running victoria-metrics speaking the InfluxDB v2 write API at ``url``."""

    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = find_binary("victoria-metrics", "/usr/bin/victoria-metrics")
        self.proc = subprocess.Popen(
            [
                binary,
                f"-storageDataPath={self.workdir / 'data'}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("victoria-metrics did not become healthy within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def export(self, match: str) -> list[dict[str, object]]:
        """All points of the series matching a PromQL selector, as victoria-metrics' JSON lines."""
        import json
        import urllib.parse

        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=5).read()
        data = urllib.parse.urlencode({"match[]": match}).encode()
        with urllib.request.urlopen(f"{self.url}/api/v1/export", data=data, timeout=10) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]

    def count_points(self, match: str) -> int:
        total = 0
        for series in self.export(match):
            values = series["values"]
            assert isinstance(values, list)
            total += len(values)
        return total


@contextmanager
def running_victoria_metrics(workdir: Path) -> Iterator[VictoriaMetrics]:
    store = VictoriaMetrics(workdir, free_port())
    store.start()
    try:
        yield store
    finally:
        store.stop()
