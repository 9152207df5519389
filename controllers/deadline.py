"""Run a controller's step in a worker process that can be killed when it misses its deadline.

IPOPT checks its time limits only between iterations and its linear solver cannot be interrupted
(coin-or/Ipopt#811), and a thread cannot be stopped at all: only a separate process gives a hard
deadline. :class:`DeadlineRunner` keeps one long-lived worker process holding the controller (so the
MPC keeps its warm start between steps) and one pre-started spare. A step that misses its deadline
returns ``SolveStatus.TIMEOUT``; the worker is killed (SIGKILL) and the spare takes over at once, so
the restart cost (interpreter start, imports, building the controller) is paid in the background.

What comes back is checked: an exception, a crashed worker, a non-ControlResult or a result with
non-finite values becomes ``SolveStatus.ERROR`` with no setpoints; a late answer is never returned.

The controller is built in the worker by ``factory()``; the factory must be picklable (a module-level
function or class, or ``functools.partial`` of one). Start method "forkserver" (default on Linux) forks
workers from a clean server process: restarts cost milliseconds plus whatever the factory does,
and ``preload`` modules (casadi, the MPC module) are imported once in the server. "spawn" starts a
fresh interpreter per worker (slower, portable).

For asyncio code, :meth:`DeadlineRunner.solve_async` waits in a dedicated thread, so the event loop
is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import multiprocessing as mp
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Any

from controllers.types import Controller, ControlRequest, ControlResult, SolveStatus
from controllers.worker_entry import FORK

log = logging.getLogger(__name__)

ControllerFactory = Callable[[], Controller]


class RunnerClosed(RuntimeError):
    """solve() called on a closed DeadlineRunner."""


def _worker_main(conn: Connection, factory: ControllerFactory, nice: int = 0) -> None:
    """Worker process (forkserver, spawn): build the controller, then :func:`serve`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    renice(nice)
    try:
        controller = factory()
    except BaseException as exc:
        conn.send(("failed", 0, f"{type(exc).__name__}: {exc}"))
        return
    serve(conn, controller, factory)


def renice(nice: int) -> None:
    """Lower this process's priority by ``nice``: the control loop must win the CPU over a solver
    that runs long (or hangs until killed), and over a controller being built in the background."""
    if nice > 0:
        with contextlib.suppress(OSError):
            os.nice(nice)


def serve(conn: Connection, controller: Controller, factory: ControllerFactory) -> None:
    """Worker loop around a built controller: answer step requests until told to stop.

    Announces itself with ``("ready", pid, CLOCK_MONOTONIC)`` (system-wide: the parent can compare).
    ``factory`` rebuilds the controller on a reset when it has no ``reset_warm_start``.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send(("ready", os.getpid(), time.monotonic()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # parent gone
        if msg is None:
            return
        kind, rid, payload = msg
        if kind == "modules":
            loaded = {
                name.split(".")[0]
                for name, mod in sys.modules.items()
                if mod is not None and not mod.__dict__.get("__stub__")
            }
            conn.send(("modules", rid, sorted(loaded)))
            continue
        if kind == "reset":
            reset = getattr(controller, "reset_warm_start", None)
            try:
                if callable(reset):
                    reset()
                else:
                    controller = factory()
                conn.send(("reset", rid, None))
            except BaseException as exc:
                conn.send(("reset", rid, f"{type(exc).__name__}: {exc}"))
            continue
        t0 = time.perf_counter()
        try:
            result: Any = controller.step(payload.state, payload.forecasts, payload.now)
        except Exception as exc:
            tb = traceback.format_exc(limit=3)
            result = ControlResult.failure(SolveStatus.ERROR, f"{type(exc).__name__}: {exc}\n{tb}")
        if not isinstance(result, ControlResult):
            result = ControlResult.failure(SolveStatus.ERROR, f"step returned {type(result).__name__}")
        try:
            conn.send(("result", rid, result))
        except Exception as exc:  # unpicklable content
            failure = ControlResult.failure(
                SolveStatus.ERROR, f"result not sendable: {exc}", time.perf_counter() - t0
            )
            conn.send(("result", rid, failure))


@dataclass
class _Worker:
    proc: BaseProcess | _ForkedProc
    conn: Connection
    started: float
    ready: bool = False
    failed: str | None = None
    ready_s: float = math.nan
    counted: bool = False  # start time already entered in the stats

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the worker has built its controller; waits at most ``timeout_s`` [s]."""
        if self.ready or self.failed is not None:
            return self.ready
        try:
            if not self.conn.poll(max(timeout_s, 0.0)):
                return False
            kind, pid, detail = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.failed = f"worker exited during start: {exc!r}"
            return False
        if kind == "ready":
            self.ready, self.ready_s = True, float(detail) - self.started
            if isinstance(self.proc, _ForkedProc):
                self.proc.bind(int(pid))
        else:
            self.failed = str(detail)
        return self.ready


class _ForkedProc:
    """A worker forked by the template process (not our child): watched and killed through a pidfd,
    so a recycled pid can never be hit. The pid is known once the worker has announced itself."""

    exitcode: int | None = None

    def __init__(self) -> None:
        self.pid: int | None = None
        self._fd: int | None = None

    def bind(self, pid: int) -> None:
        self.pid = pid
        try:
            self._fd = os.pidfd_open(pid)
        except OSError:  # already gone
            self.exitcode = -1

    def is_alive(self) -> bool:
        if self._fd is None or self.exitcode is not None:
            return False
        if select.select([self._fd], [], [], 0.0)[0]:  # a pidfd turns readable when the process exits
            self.exitcode = -1  # not our child: the code itself is not available
            return False
        return True

    def join(self, timeout: float | None = None) -> None:
        if self._fd is not None and self.exitcode is None:
            select.select([self._fd], [], [], timeout)
            self.is_alive()

    def kill(self) -> None:
        if self._fd is not None and self.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._fd, signal.SIGKILL)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Zygote:
    """The template process (:mod:`controllers.worker_entry`): builds the controller once, then forks
    workers that share it copy-on-write. Thread-safe (the runner launches from two threads)."""

    def __init__(
        self,
        factory: ControllerFactory,
        preload: Sequence[str],
        block: Sequence[str],
        stub: Sequence[str],
        nice: int,
    ) -> None:
        self._lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        # one BLAS thread: the NLPs are small and sparse, and threads alive at fork() are lost
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controllers.worker_entry", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._sock = ours
        self._conn = Connection(os.dup(ours.fileno()))
        self._conn.send(([p for p in sys.path if p], tuple(block), tuple(stub), tuple(preload), nice))
        self._conn.send(factory)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self) -> _Worker:
        """Ask for a worker; it answers on its own pipe once the template has built the controller."""
        parent, child = mp.Pipe(duplex=True)
        started = time.monotonic()
        try:
            with self._lock:
                self._conn.send(FORK)
                socket.send_fds(self._sock, [b"F"], [child.fileno()])
        finally:
            child.close()
        return _Worker(_ForkedProc(), parent, started)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        try:
            self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:  # still building: its workers are told to stop on their pipes
            self.proc.kill()
            self.proc.wait(timeout=5.0)
        self._conn.close()
        self._sock.close()


@dataclass(frozen=True)
class RunnerStats:
    """Counters since the runner started. Restart cost: start of a worker until its controller is built."""

    solves: int
    timeouts: int
    errors: int
    restarts: int
    last_restart_s: float
    max_restart_s: float


class DeadlineRunner:
    """A controller in a killable worker process, with a hot spare.

    factory: builds the controller inside the worker (picklable).
    start_method: "forkserver", "spawn" or "zygote" (the controller is built once in a template
        process, :mod:`controllers.worker_entry`, which forks the workers: they share the built
        controller copy-on-write, and a replacement is ready in milliseconds; Linux only, elsewhere
        it falls back to "forkserver").
    preload: modules imported before the factory runs: by the forkserver (only before the first
        forkserver start in this process; the forkserver is shared by the whole process) or by the
        template ("zygote").
    block_imports: packages made unimportable in the template ("zygote" only), for libraries that
        import optional extras when they find them installed.
    stub_imports: packages replaced by stand-ins in the template ("zygote" only) that import but fail
        when used, for libraries that import helpers the controller never calls
        (:class:`controllers.worker_entry.StubModule`).
    spare: keep a pre-started spare worker (hides the restart cost after a timeout).
    worker_nice: niceness added to the workers, so a long or hung solve cannot starve the control
        loop of CPU (0 keeps the parent's priority).
    """

    def __init__(
        self,
        factory: ControllerFactory,
        *,
        start_method: str = "forkserver",
        preload: Sequence[str] = (),
        spare: bool = True,
        worker_nice: int = 5,
        block_imports: Sequence[str] = (),
        stub_imports: Sequence[str] = (),
    ) -> None:
        if start_method not in ("forkserver", "spawn", "zygote"):
            raise ValueError(f"start_method must be 'forkserver', 'spawn' or 'zygote', got {start_method!r}")
        if start_method == "zygote" and not hasattr(os, "pidfd_open"):
            # the template's workers are not our children: only a pidfd kills them race-free (Linux 5.3+)
            log.warning("start method 'zygote' needs pidfd_open (Linux); using 'forkserver'")
            start_method = "forkserver"
        self._factory = factory
        self._zygote_opts: tuple[Sequence[str], Sequence[str], Sequence[str]] | None = None
        self._zygote: _Zygote | None = None
        self._ctx = mp.get_context("spawn" if start_method == "zygote" else start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(["controllers.deadline", *preload])
        elif start_method == "zygote":
            self._zygote_opts = (tuple(preload), tuple(block_imports), tuple(stub_imports))
        self._use_spare = spare
        self._nice = worker_nice
        self._active: _Worker | None = None
        # The spare is launched in a background thread: starting a process (and, for spawn, a whole
        # interpreter) must not sit in a control cycle after a timeout.
        self._spare: Future[_Worker] | None = None
        self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deadline-launcher")
        self._dead: list[_Worker] = []
        self._rid = 0
        self._closed = False
        self._executor: ThreadPoolExecutor | None = None
        self._solves = self._timeouts = self._errors = self._restarts = 0
        self._restart_times: list[float] = []

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the worker (and spare) and wait until the active one is ready [s]."""
        if self._active is None:
            self._active = self._launch()
        self._ensure_spare()
        if not self._active.wait_ready(timeout_s):
            raise RuntimeError(f"controller worker not ready: {self._active.failed or 'timed out'}")
        self._note_ready(self._active)

    def close(self) -> None:
        """Stop all workers (politely, then by force)."""
        self._closed = True
        workers = [self._active, *self._dead]
        if self._spare is not None:
            with contextlib.suppress(Exception):
                workers.append(self._spare.result(timeout=30.0))
        self._launcher.shutdown(wait=True)
        for w in workers:
            if w is not None:
                with contextlib.suppress(OSError, ValueError):
                    w.conn.send(None)
        for w in workers:
            if w is None:
                continue
            w.wait_ready(0.0)  # a forked worker's pid comes with its announcement
            w.proc.join(timeout=1.0)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=1.0)
            self._release(w)
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None
        self._active = self._spare = None
        self._dead.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def __enter__(self) -> DeadlineRunner:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def stats(self) -> RunnerStats:
        times = self._restart_times
        return RunnerStats(
            solves=self._solves,
            timeouts=self._timeouts,
            errors=self._errors,
            restarts=self._restarts,
            last_restart_s=times[-1] if times else math.nan,
            max_restart_s=max(times) if times else math.nan,
        )

    @property
    def worker_start_times(self) -> tuple[float, ...]:
        """Start-to-ready time of every worker that became ready so far [s]."""
        return tuple(self._restart_times)

    # -- solving --------------------------------------------------------------------------------------

    def solve(self, request: ControlRequest, deadline_s: float) -> ControlResult:
        """Run one step; return within ``deadline_s`` [s] (plus the few ms a kill takes)."""
        if self._closed:
            raise RunnerClosed("solve() on a closed DeadlineRunner")
        t0 = time.monotonic()
        end = t0 + deadline_s
        self._solves += 1
        worker = self._ready_worker(end)
        if worker is None:
            self._timeouts += 1
            return ControlResult.failure(
                SolveStatus.TIMEOUT, "no controller worker ready before the deadline", time.monotonic() - t0
            )
        self._rid += 1
        rid = self._rid
        try:
            worker.conn.send(("step", rid, request))
            while True:
                remaining = end - time.monotonic()
                if remaining <= 0.0 or not worker.conn.poll(remaining):
                    self._timeouts += 1
                    self._replace_active(f"missed its deadline of {deadline_s:.3g} s")
                    return ControlResult.failure(
                        SolveStatus.TIMEOUT, f"deadline {deadline_s:.3g} s passed", time.monotonic() - t0
                    )
                kind, got, payload = worker.conn.recv()
                if kind == "result" and got == rid:
                    break
        except (EOFError, OSError, BrokenPipeError) as exc:
            self._errors += 1
            self._replace_active(f"worker died: {exc!r}")
            return ControlResult.failure(
                SolveStatus.ERROR, f"controller worker died: {exc!r}", time.monotonic() - t0
            )
        return self._checked(payload, time.monotonic() - t0)

    async def solve_async(self, request: ControlRequest, deadline_s: float) -> ControlResult:
        """:meth:`solve` without blocking the event loop (waits in a dedicated thread)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deadline-runner")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.solve, request, deadline_s)

    def reset_warm_start(self, timeout_s: float = 5.0) -> bool:
        """Ask the worker's controller to drop its warm start (``reset_warm_start()`` if it has one,
        else it is rebuilt by the factory). A worker that does not answer in time is replaced."""
        worker = self._ready_worker(time.monotonic() + timeout_s)
        if worker is None:
            return False
        self._rid += 1
        try:
            worker.conn.send(("reset", self._rid, None))
            if worker.conn.poll(timeout_s):
                kind, rid, err = worker.conn.recv()
                if kind == "reset" and rid == self._rid and err is None:
                    return True
                log.warning("controller warm-start reset failed: %s", err)
        except (EOFError, OSError):
            pass
        self._replace_active("warm-start reset failed or timed out")
        return False

    def worker_modules(self, timeout_s: float = 5.0) -> list[str]:
        """Top-level packages imported in the active worker (what its memory is spent on)."""
        worker = self._ready_worker(time.monotonic() + timeout_s)
        if worker is None:
            raise RuntimeError("no controller worker ready")
        self._rid += 1
        worker.conn.send(("modules", self._rid, None))
        while worker.conn.poll(timeout_s):
            kind, rid, names = worker.conn.recv()
            if kind == "modules" and rid == self._rid:
                return list(names)
        raise RuntimeError("the controller worker did not answer")

    # -- internals ------------------------------------------------------------------------------------

    def _checked(self, result: Any, elapsed: float) -> ControlResult:
        if not isinstance(result, ControlResult):
            self._errors += 1
            return ControlResult.failure(SolveStatus.ERROR, f"worker sent {type(result).__name__}", elapsed)
        if result.status.usable and not result.usable:
            self._errors += 1
            bad = sorted(k for k, v in result.setpoints.items() if not math.isfinite(v))
            return ControlResult.failure(
                SolveStatus.ERROR, f"non-finite values in result (setpoints {bad or 'ok'}, or plan)", elapsed
            )
        if result.status is SolveStatus.ERROR:
            self._errors += 1
        return dataclasses.replace(result, solve_time_s=elapsed)

    def _launch(self) -> _Worker:
        if self._zygote_opts is not None:
            if self._zygote is None or not self._zygote.alive():
                if self._zygote is not None:  # crashed, or its build failed: a new one builds again
                    self._zygote.close()
                preload, block, stub = self._zygote_opts
                self._zygote = _Zygote(self._factory, preload, block, stub, self._nice)
            return self._zygote.fork()
        parent, child = self._ctx.Pipe(duplex=True)
        process_cls: Any = self._ctx.Process  # type: ignore[attr-defined]  # not in BaseContext's stubs
        proc = process_cls(target=_worker_main, args=(child, self._factory, self._nice), daemon=True)
        started = time.monotonic()
        proc.start()
        child.close()
        return _Worker(proc, parent, started)

    def _ensure_spare(self) -> None:
        if self._use_spare and self._spare is None and not self._closed:
            self._spare = self._launcher.submit(self._launch)

    def _note_ready(self, worker: _Worker) -> None:
        if math.isfinite(worker.ready_s) and not worker.counted:
            self._restart_times.append(worker.ready_s)
            worker.counted = True

    def _ready_worker(self, end: float) -> _Worker | None:
        """The active worker once ready (waiting until ``end`` at most), replacing failed ones."""
        self._reap()
        if self._active is None:
            if self._spare is None:
                self._spare = self._launcher.submit(self._launch)
            try:
                self._active = self._spare.result(timeout=max(end - time.monotonic(), 0.0))
            except FutureTimeout:
                return None
            except Exception as exc:  # the process could not even be started
                log.error("cannot start a controller worker: %r", exc)
                self._spare = None
                return None
            self._spare = None
        self._ensure_spare()
        worker = self._active
        if not worker.wait_ready(end - time.monotonic()):
            if worker.failed is not None:
                log.error("controller worker failed to start: %s", worker.failed)
                self._retire(worker)
                self._active = None
            return None
        self._note_ready(worker)
        return worker

    def _replace_active(self, why: str) -> None:
        """Kill the active worker; the spare takes over at the next step (no process start here)."""
        worker = self._active
        if worker is not None:
            log.warning("killing controller worker pid %s: %s", worker.proc.pid, why)
            worker.proc.kill()
            self._retire(worker)
        self._restarts += 1
        self._active = None

    def _retire(self, worker: _Worker) -> None:
        worker.proc.join(timeout=0.0)
        self._dead.append(worker)

    def _reap(self) -> None:
        still: list[_Worker] = []
        for w in self._dead:
            w.proc.join(timeout=0.0)
            if w.proc.is_alive() or (w.proc.exitcode is None and not isinstance(w.proc, _ForkedProc)):
                still.append(w)
            else:
                self._release(w)
        self._dead = still

    @staticmethod
    def _release(w: _Worker) -> None:
        w.conn.close()
        if isinstance(w.proc, _ForkedProc):
            w.proc.close()
