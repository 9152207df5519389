"""`symtwin sim` / `symtwin run` as a child process, for tests that signal or kill the service.

    with ServiceProcess(["sim", "configs/demo.yaml", "--speed", "60"], state_dir) as svc:
        svc.url, svc.logins          # live-view URL and the generated operator logins from stderr
        svc.get("/metrics")
        svc.terminate()              # SIGTERM, wait for exit

stderr is read by a thread (the child never blocks on a full pipe) and kept in ``lines``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]
_URL = re.compile(r"live view on (http://\S+?)/\s")
_LOGIN = re.compile(r"^\s{4}(\S+)\s+(\S+)\s*$")
_STOPPED = re.compile(r"stopped after (\d+) cycles; (\d+) samples received, (\d+) stored and (\d+) set aside")


class ServiceProcess:
    def __init__(self, args: Sequence[str], state_dir: Path, *, ready_timeout_s: float = 60.0) -> None:
        self.args = [sys.executable, "-m", "symtwin", *args, "--state-dir", str(state_dir)]
        self.state_dir = state_dir
        self.ready_timeout_s = ready_timeout_s
        self.lines: list[str] = []
        self.url = ""
        self.logins: dict[str, str] = {}
        self.proc: subprocess.Popen[str] | None = None
        self.reading = threading.Event()  # cleared: stderr is left unread (a stalled log consumer)
        self.reading.set()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> ServiceProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for(lambda: bool(self.url), self.ready_timeout_s, "the live-view URL on stderr")
        self.wait_for(self.healthy, self.ready_timeout_s, "/healthz to answer ok")
        return self

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        in_logins = False
        for line in self.proc.stderr:
            self.reading.wait()
            self.lines.append(line)
            m = _URL.search(line)
            if m:
                self.url = m.group(1)
            if "simulation logins" in line:
                in_logins = True
                continue
            m2 = _LOGIN.match(line) if in_logins else None
            if m2:
                self.logins[m2.group(1)] = m2.group(2)
            else:
                in_logins = False

    def wait_for(self, cond: object, timeout_s: float, what: str) -> float:
        assert callable(cond)
        t0 = time.monotonic()
        while not cond():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"the service exited ({self.proc.returncode}) waiting for {what}:\n"
                    + "".join(self.lines[-30:])
                )
            if time.monotonic() - t0 > timeout_s:
                raise AssertionError(
                    f"timed out after {timeout_s} s waiting for {what}:\n" + "".join(self.lines[-30:])
                )
            time.sleep(0.05)
        return time.monotonic() - t0

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout_s) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()

    def healthy(self) -> bool:
        if not self.url:
            return False
        try:
            return self.get("/healthz")[0] == 200
        except OSError:
            return False

    def metric(self, name: str) -> float | None:
        """The value of an unlabelled metric from /metrics (None when absent)."""
        _, text = self.get("/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def stall_stderr(self) -> int:
        """Stop reading the child's stderr and fill the pipe, so its next write to stderr blocks.

        Returns the bytes written into the pipe (through /proc/<pid>/fd/2, the same pipe)."""
        assert self.proc is not None
        self.reading.clear()
        time.sleep(0.2)  # the reader is parked on its next line
        fd = os.open(f"/proc/{self.proc.pid}/fd/2", os.O_WRONLY | os.O_NONBLOCK)
        written = 0
        try:
            while True:
                try:
                    written += os.write(fd, b"#" * 4095 + b"\n")
                except BlockingIOError:
                    return written
        finally:
            os.close(fd)

    def signal(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout_s)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def stopped_counts(self) -> tuple[int, int, int, int]:
        """(cycles, samples received, stored, set aside) from the exit line."""
        for line in reversed(self.lines):
            m = _STOPPED.search(line)
            if m:
                return int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4))
        raise AssertionError("no exit line on stderr:\n" + "".join(self.lines[-30:]))
