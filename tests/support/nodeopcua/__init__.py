"""Start the node-opcua test peer (``server.js``) on a free loopback port.

``ensure_installed()`` runs ``install.sh`` once (npm ci) when node_modules is missing and returns why it
cannot be used (for a skip reason) or None.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import free_port

HERE = Path(__file__).resolve().parent
_install_lock = threading.Lock()
_install_result: list[str | None] = []


def ensure_installed() -> str | None:
    """None when node + node_modules are usable; otherwise the reason they are not."""
    with _install_lock:
        if _install_result:
            return _install_result[0]
        reason: str | None = None
        if shutil.which("node") is None:
            reason = "node is not installed"
        elif not (HERE / "node_modules" / "node-opcua-server").is_dir():
            try:
                proc = subprocess.run(
                    ["sh", str(HERE / "install.sh")], capture_output=True, text=True, timeout=300, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                reason = f"npm install of node-opcua failed: {exc}"
            else:
                if proc.returncode != 0:
                    reason = f"npm install of node-opcua failed: {proc.stderr.strip()[-500:]}"
        _install_result.append(reason)
        return reason


@dataclass
class NodeOpcUaServer:
    """A running node-opcua server; ``restart()`` brings it back on the same port."""

    pki_dir: Path
    port: int = field(default_factory=free_port)
    options: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/UA/symtwin"

    @staticmethod
    def node_id(name: str) -> str:
        return f"ns=1;s={name}"

    def start(self, timeout_s: float = 60.0) -> None:
        opts = {"port": self.port, "pkiDir": str(self.pki_dir), **self.options}
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.pki_dir.parent / f"node-opcua-{self.port}.log"
        # Output goes to a file: a pipe nobody reads would fill up and stall the server.
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(
                ["node", str(HERE / "server.js"), json.dumps(opts)],
                cwd=HERE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NODE_NO_WARNINGS": "1"},
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if f"READY {self.port}" in log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"node-opcua test server did not start on port {self.port}: {log_path.read_text()[-1500:]}"
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.stop()

    def restart(self) -> None:
        self.stop()
        self.start()
