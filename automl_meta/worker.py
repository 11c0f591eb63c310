"""A child process that evaluates configurations and can be stopped at any moment.

The parent sends the :class:`~automl_meta.evaluate.EvalContext` once, then requests
(``("fold", config, k)`` or ``("fit", config)``) one at a time and waits for each answer
with a time-out. A request that overruns its time-out, or a child that dies (segfault,
out-of-memory kill), costs one failed evaluation and a new child, never the search.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from .evaluate import EvalContext, evaluate_fold, fit_full

if TYPE_CHECKING:
    from .forkserver import ForkedChild, ForkServer


class EvaluationTimeout(Exception):
    """The evaluation did not finish in time; the child was killed."""


class EvaluationFailed(Exception):
    """The configuration raised an error, or the child process died."""


def worker_env() -> dict[str, str]:
    """Environment of worker processes: one BLAS / OpenMP thread each unless the user set
    otherwise (``n_jobs`` workers already use the cores)."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def resident_bytes(pid: int | None) -> int | None:
    """Resident memory of a process (Linux /proc), or None where it cannot be read."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _child_main(conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        ctx = conn.recv()
    except (EOFError, OSError):
        return
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            if request[0] == "fold":
                answer = ("ok", evaluate_fold(ctx, request[1], request[2]))
            elif request[0] == "fit":
                answer = ("ok", fit_full(ctx, request[1], *request[2:]))
            else:
                answer = ("error", f"unknown request {request[0]!r}")
        except MemoryError:
            answer = ("error", "MemoryError: out of memory")
        except Exception as exc:  # any failure of a configuration is reported, not fatal
            last = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" at {last[0].name}" if last else ""
            answer = ("error", f"{type(exc).__name__}: {str(exc)[:300]}{where}")
        try:
            conn.send(answer)
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent is gone: nothing to report to
        except Exception as exc:  # e.g. an unpicklable fitted model
            try:
                conn.send(("error", f"cannot return result: {type(exc).__name__}: {exc}"))
            except OSError:
                return


class Worker:
    """Evaluates requests in a child process with a time-out per request.

    Parameters
    ----------
    ctx : EvalContext
        The dataset and settings; sent to the child once per child.
    memory_limit_gb : float, optional
        Resident-memory limit of the child, checked every 0.1 s while it evaluates; an
        evaluation that exceeds it is stopped and fails.
    in_process : bool
        Evaluate in this process instead (no time-out, no isolation). For debugging.
    server : ForkServer, optional
        Fork children from this :class:`~automl_meta.forkserver.ForkServer` (milliseconds)
        instead of starting an interpreter for each (~1.7 s of CPU); an interpreter is
        started when the server is not usable.
    """

    def __init__(self, ctx: EvalContext, memory_limit_gb: float | None = None,
                 in_process: bool = False, server: ForkServer | None = None):
        self.ctx = ctx
        self.memory_limit = int(memory_limit_gb * 2**30) if memory_limit_gb else None
        self.in_process = in_process
        self.server = server
        self._proc: subprocess.Popen | ForkedChild | None = None
        self._conn: Connection | None = None
        self._sender: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the child now (returns at once; a new interpreter needs ~1.7 s to import
        scikit-learn, a fork of the server milliseconds once the server is up); idempotent."""
        if self.in_process or (self._proc is not None and self._proc.poll() is None):
            return
        parent_sock, child_sock = socket.socketpair()
        self._proc = None
        if self.server is not None and self.server.usable:
            try:
                self._proc = self.server.spawn(child_sock)  # closes child_sock
            except OSError:
                parent_sock.close()
                parent_sock, child_sock = socket.socketpair()
        if self._proc is None:
            # A fresh interpreter (not fork / spawn of this process): the caller's __main__
            # is never re-run and no lock held by another thread of the parent is inherited.
            self._proc = subprocess.Popen(
                # `del sys.path[0]`: not the current directory, whatever files it holds
                [sys.executable, "-c", "import sys; del sys.path[0]; "
                 "from automl_meta.worker import _entry; _entry(int(sys.argv[1]))",
                 str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),), env=worker_env(), stdin=subprocess.DEVNULL,
                start_new_session=True)
            child_sock.close()
        self._conn = Connection(parent_sock.detach())
        payload = self.ctx
        self._sender = threading.Thread(target=self._send_quietly, args=(self._conn, payload),
                                        daemon=True)
        self._sender.start()

    @staticmethod
    def _send_quietly(conn: Connection, payload: Any) -> None:
        try:
            conn.send(payload)
        except (OSError, ValueError):
            pass  # the child died; the next request notices

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def run(self, request: tuple, timeout: float | None,
            limit: Callable[[], float | None] | None = None) -> dict[str, Any]:
        """Evaluate ``request``; raise :class:`EvaluationTimeout` / :class:`EvaluationFailed`.

        ``limit``, if given, is polled while the child works: a ``time.monotonic()`` value
        that may move earlier (e.g. the search keeps time for the final refit once a slow
        best trial exists); the evaluation is stopped when it passes.
        """
        if self.in_process:
            try:
                if request[0] == "fold":
                    return evaluate_fold(self.ctx, request[1], request[2])
                return fit_full(self.ctx, request[1], *request[2:])
            except Exception as exc:
                raise EvaluationFailed(f"{type(exc).__name__}: {exc}") from exc
        with self._lock:
            if timeout is not None and timeout <= 0:
                raise EvaluationTimeout("no time left")
            # the clock starts now: restarting a killed child counts against the time-out
            deadline = None if timeout is None else time.monotonic() + timeout
            if not self._alive():
                self.kill()
                self.start()
            self._sender.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if self._sender.is_alive():
                self.kill()
                raise EvaluationTimeout(f"stopped after {timeout:.1f} s (worker start-up)")
            try:
                self._conn.send(request)
            except (BrokenPipeError, OSError):  # the child died between two requests
                raise EvaluationFailed(self._reap()) from None
            started = time.monotonic()
            while True:
                if limit is not None:
                    moved = limit()
                    if moved is not None and (deadline is None or moved < deadline):
                        deadline = moved
                step = 0.1 if self.memory_limit else 0.5
                wait = step if deadline is None else min(step, deadline - time.monotonic())
                if wait <= 0:
                    self.kill()
                    raise EvaluationTimeout(f"stopped after {time.monotonic() - started:.1f} s")
                if self._conn.poll(wait):
                    break
                if not self._alive():
                    code = self._proc.returncode if self._proc else None
                    self.kill()
                    raise EvaluationFailed(_death_reason(code))
                if self.memory_limit:
                    rss = resident_bytes(self._proc.pid)
                    if rss is not None and rss > self.memory_limit:
                        self.kill()
                        raise EvaluationFailed(
                            f"memory limit exceeded: {rss / 2**30:.2f} GiB resident > "
                            f"{self.memory_limit / 2**30:.2f} GiB (--memory-limit)")
            try:
                status, payload = self._conn.recv()
            except (EOFError, OSError):
                raise EvaluationFailed(self._reap()) from None
            if status != "ok":
                raise EvaluationFailed(payload)
            return payload

    def _reap(self) -> str:
        """The pipe to the child is closed: wait for its exit status, clean up, say why."""
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
        self.kill()
        return _death_reason(code)

    def kill(self) -> None:
        """Stop the child now (a new one starts with the next request)."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Ask the child to exit and wait for it briefly."""
        if self._conn is not None:
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
        self.kill()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _entry(fd: int) -> None:
    """Entry point of the child interpreter (see :meth:`Worker.start`)."""
    conn = Connection(fd)
    parent = os.getppid()

    def watch_parent() -> None:  # exit when the parent is gone, even in the middle of a fit
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    try:
        _child_main(conn)
    finally:
        conn.close()


def _death_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        hint = " (killed: out of memory?)" if name == "SIGKILL" else ""
        return f"worker process died with signal {name}{hint}"
    return f"worker process exited unexpectedly (exit code {code})"

