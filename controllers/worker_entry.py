"""The template process of :class:`controllers.deadline.DeadlineRunner`'s "zygote" start method.

Run as ``python -m controllers.worker_entry FD`` by the runner, never by hand. It builds the
controller once, then forks every worker from itself, so the workers share the built controller
(imports, CasADi expression graphs, solver set-up) copy-on-write instead of each building and holding
its own: the memory of a worker and its hot spare is about that of one, and a killed worker is
replaced by a fork in milliseconds instead of a rebuild.

It imports only the runner's loop, the modules the runner asks for (``preload``) and whatever the
factory's unpickling needs. Two lists keep libraries' unused extras out:

* ``block``: packages made unimportable (``find_spec`` says absent): do-mpc imports asyncua when it
  is installed, which the MPC never uses;
* ``stub``: packages replaced by stand-ins that import fine but fail when used (:class:`StubModule`):
  do-mpc imports its plotting (matplotlib) and linear-model (scipy.signal) helpers at import time;
  the MPC uses neither, and they cost about 75 MB.

Protocol on FD (a Unix stream socket from the runner, multiprocessing framing):

1. ``(sys_path, block, stub, preload, nice)``, then the pickled factory; the controller is built; the template
   answers ``("ready", build_s)`` or ``("failed", message)``.
2. ``"fork"`` followed by one file descriptor sent with SCM_RIGHTS (the worker's end of its pipe): the
   template forks a worker that serves that pipe (``controllers.deadline.serve``); after a failed
   build it answers the worker pipe with the failure instead and stops.
3. ``None`` or end of file: the template exits (workers stop on their own pipe's end).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import importlib.abc
import importlib.machinery
import os
import signal
import socket
import sys
import time
import types
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, NoReturn

FORK = "fork"


class _Unavailable:
    """Any attribute of a stubbed package: fails with a clear message when used."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __call__(self, *args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError(f"{self._name} is stubbed out in this controller process")

    def __getattr__(self, attr: str) -> _Unavailable:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{self._name}.{attr}")


class StubModule(types.ModuleType):
    """A stubbed package or submodule: importing it (and names from it) works, using them does not."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{self.__name__}.{attr}")


class StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves a :class:`StubModule` for each of ``names`` and everything under them."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    def find_spec(
        self, name: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if any(name == n or name.startswith(n + ".") for n in self.names):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return StubModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []
        module.__dict__["__stub__"] = True  # read from __dict__: the module's __getattr__ answers anything


def _release_memory() -> None:
    """Collect garbage, freeze what is left, and hand freed heap pages back to the system.

    gc.freeze() keeps later collections in the workers from writing to every object's header, which
    would turn the shared pages into private copies; malloc_trim returns the building's free heap.
    """
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)  # glibc only


def _fork_worker(ctrl: socket.socket, conn: Connection, fd: int, controller: object, factory: object) -> None:
    from controllers.deadline import serve

    if os.fork() != 0:
        os.close(fd)
        return
    # the worker: only its own pipe stays open; the runner kills it, the template does not wait for it
    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        conn.close()
        ctrl.close()
        serve(Connection(fd), controller, factory)  # type: ignore[arg-type]
    except BaseException:
        code = 1
    finally:
        os._exit(code)  # no atexit handlers or buffered output inherited from the template


def main(argv: list[str]) -> int:
    fd = int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when the template stops
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked workers are reaped by the kernel
    ctrl = socket.socket(fileno=os.dup(fd))
    conn = Connection(fd)
    sys_path, block, stub, preload, nice = conn.recv()
    sys.path[:] = sys_path
    if stub:
        sys.meta_path.insert(0, StubFinder(stub))
    from controllers.deadline import renice

    renice(nice)  # the build and the workers (which inherit it) yield to the control loop
    for name in block:
        sys.modules[name] = None  # type: ignore[assignment]  # import fails, find_spec says "absent"
    failed: str | None = None
    controller: object = None
    factory: object = None
    t0 = time.monotonic()
    try:
        for name in preload:
            importlib.import_module(name)
        factory = conn.recv()
        controller = factory()  # type: ignore[operator]
    except BaseException as exc:  # reported to the runner, which may start a new template
        failed = f"{type(exc).__name__}: {exc}"
    _release_memory()
    conn.send(("failed", failed) if failed else ("ready", time.monotonic() - t0))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return 0  # runner gone
        if msg != FORK:
            return 0
        _, fds, _, _ = socket.recv_fds(ctrl, 1, 1)
        if not fds:
            return 1
        if failed is not None:
            with contextlib.suppress(OSError):
                Connection(fds[0]).send(("failed", 0, failed))
            return 1
        _fork_worker(ctrl, conn, fds[0], controller, factory)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
