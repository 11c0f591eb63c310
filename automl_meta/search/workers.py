"""A child process that evaluates configurations and can be stopped at any moment.

The parent sends the :class:`~automl_meta.search.cv.EvalContext` once, then requests
(``("fold", config, k)``, ``("fit", config[, rows])`` or ``("holdout", config, fit_rows,
eval_rows)``) one at a time and waits for each answer
with a time-out. A request that overruns its time-out, a child that dies (segfault, kill)
or one that runs out of its memory limit costs one failed evaluation and a new child, never
the search.

Children are started with the standard library's ``"forkserver"`` start method: one clean
server interpreter (a fresh interpreter, not a fork of the caller) imports
:data:`PRELOAD_MODULES` once, and every child is a fork of it. The server is configured and
started by :func:`worker_context`, which the fit calls when it starts its workers (never at
import of :mod:`automl_meta`). The server must stay single-threaded for forking it to be
safe: it is started with one BLAS / OpenMP thread and without the background thread of
pyarrow's jemalloc (pandas imports pyarrow). Where ``"forkserver"`` is not available, each
child is a ``"spawn"``-ed interpreter.

Children do not import the caller's main script (what ``multiprocessing`` does by default
for these start methods): a worker needs nothing defined there, and a script that fits a
model without an ``if __name__ == "__main__":`` guard would otherwise run again in every
child.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.forkserver
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from automl_meta.search.families import ESTIMATOR_MODULES

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from automl_meta.search.cv import EvalContext

#: Imported once by the fork server, inherited by every trial worker: what a trial needs
#: (the pipeline, and every estimator module of the model families). Nothing that starts a
#: thread at import (see :data:`CHILD_ENV`).
PRELOAD_MODULES = ("numpy", "pandas", "scipy.sparse", "sklearn", *ESTIMATOR_MODULES,
                   "automl_meta.search.cv", "automl_meta.search.pipeline",
                   "automl_meta.search.workers")

#: Environment defaults of the fork server and of every worker (a value the user set wins):
#: one BLAS / OpenMP thread per worker (``n_jobs`` workers already use the cores; a thread
#: pool started at import would also make the server unsafe to fork), and pyarrow's
#: jemalloc without its background thread.
CHILD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "JE_ARROW_MALLOC_CONF": "background_thread:false"}

#: What the failure of an evaluation that ran out of memory starts with.
MEMORY_LIMIT_REASON = "memory limit exceeded"

_context_lock = threading.Lock()
_env_lock = threading.Lock()


class EvaluationTimeout(Exception):
    """The evaluation did not finish in time; the child was killed."""


class EvaluationFailed(Exception):
    """The configuration raised an error, or the child process died."""


def default_start_method() -> str:
    """``"forkserver"`` where the platform has it, else ``"spawn"``."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


@contextmanager
def _child_environment() -> Iterator[None]:
    """:data:`CHILD_ENV` in ``os.environ`` while a server process is started (it inherits
    the environment at its start), then the caller's environment as it was."""
    with _env_lock:
        added = [k for k in CHILD_ENV if k not in os.environ]
        for key in added:
            os.environ[key] = CHILD_ENV[key]
        try:
            yield
        finally:
            for key in added:
                os.environ.pop(key, None)


def worker_context(start_method: str | None = None) -> multiprocessing.context.BaseContext:
    """The ``multiprocessing`` context trial workers are started with.

    For ``"forkserver"`` (the default where available) this sets the server's preloaded
    modules (:data:`PRELOAD_MODULES`) and starts the server if it is not running; it
    returns at once, the server imports in the background. The server is this process's
    ``multiprocessing`` fork server, shared with any other user of that start method in the
    process, and lives until the process exits.

    Parameters
    ----------
    start_method : {"forkserver", "spawn"}, optional
        Default: :func:`default_start_method`.

    Returns
    -------
    multiprocessing.context.BaseContext
    """
    method = start_method or default_start_method()
    mp_ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        with _context_lock:
            mp_ctx.set_forkserver_preload(list(PRELOAD_MODULES))
            with _child_environment():
                multiprocessing.forkserver.ensure_running()
    return mp_ctx


def _set_memory_limit(limit: int | None) -> None:
    """Limit this process's data segment (heap and private anonymous mappings) to ``limit``
    bytes: an allocation past it fails, which Python raises as MemoryError.

    ``RLIMIT_DATA``, not ``RLIMIT_AS``: the address space also counts shared libraries and
    the reservations of allocators and BLAS, which grow with the number of cores and are
    never touched; the data segment tracks what the process really uses.
    """
    if not limit:
        return
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _is_memory_error(exc: BaseException) -> bool:
    """MemoryError, or an error a library raised while handling one."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, MemoryError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _child_main(conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    from automl_meta.search.cv import evaluate_fold, fit_full, fit_holdout

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
            elif request[0] == "holdout":
                answer = ("ok", fit_holdout(ctx, request[1], request[2], request[3]))
            else:
                answer = ("error", f"unknown request {request[0]!r}")
        except Exception as exc:  # any failure of a configuration is reported, not fatal
            if _is_memory_error(exc):
                answer = ("memory", f"{type(exc).__name__}: {str(exc)[:200]}")
            else:
                last = traceback.extract_tb(exc.__traceback__)[-1:]
                where = f" at {last[0].name}" if last else ""
                answer = ("error", f"{type(exc).__name__}: {str(exc)[:300]}{where}")
        try:
            conn.send(answer)
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent is gone: nothing to report to
        except Exception as exc:  # e.g. an unpicklable fitted model, or no memory to pickle
            kind = "memory" if _is_memory_error(exc) else "error"
            try:
                conn.send((kind, f"cannot return result: {type(exc).__name__}: {exc}"))
            except OSError:
                return


def _child_entry(conn: Connection, memory_limit: int | None) -> None:
    """Entry point of a worker child (see :meth:`Worker.start`)."""
    # The objects inherited from the fork server are never garbage: out of the collector's
    # sight, a collection does not write to (and so copy) every page of the inherited heap.
    gc.freeze()
    for key, value in CHILD_ENV.items():  # spawned children: before anything imports BLAS
        os.environ.setdefault(key, value)
    parent = multiprocessing.parent_process()

    def watch_parent() -> None:  # exit when the parent is gone, even in the middle of a fit
        if parent is not None:
            parent.join()  # the parent's end of a pipe closes when it dies
            os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    _set_memory_limit(memory_limit)
    try:
        _child_main(conn)
    finally:
        conn.close()


_main_lock = threading.Lock()


@contextmanager
def _main_not_imported() -> Iterator[None]:
    """Start a child without it importing the caller's main script.

    ``multiprocessing`` tells a new child to import the parent's ``__main__`` from its file
    unless ``__main__.__spec__`` names a module; a spec named ``__main__`` is the one case it
    skips. While a child starts, a script run by path gets such a spec, then its own back.
    """
    import importlib.machinery
    import sys

    main = sys.modules.get("__main__")
    with _main_lock:
        if main is None or getattr(main, "__spec__", None) is not None:
            yield
            return
        main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
        try:
            yield
        finally:
            main.__spec__ = None


class _Child:
    """One worker child: its process, the parent's end of its pipe, and the thread that
    starts it and sends it the context (a fork server still importing makes
    ``Process.start`` wait)."""

    def __init__(self, mp_ctx: multiprocessing.context.BaseContext, payload: Any,
                 memory_limit: int | None):
        self.method = mp_ctx.get_start_method()
        self.conn, child_conn = mp_ctx.Pipe()
        self.proc = mp_ctx.Process(target=_child_entry, args=(child_conn, memory_limit),
                                   daemon=True, name="automl-meta-worker")
        self.started = False
        self.cancelled = False
        self.served = 0  # answers received from it
        self.error: str | None = None
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._launch, args=(child_conn, payload),
                                       daemon=True)
        self.thread.start()

    def _launch(self, child_conn: Connection, payload: Any) -> None:
        try:
            with _main_not_imported():
                if self.method == "spawn":  # the new interpreter inherits os.environ
                    with _child_environment():
                        self.proc.start()
                else:
                    self.proc.start()
        except Exception as exc:
            self.error = f"cannot start a worker process: {type(exc).__name__}: {exc}"
            return
        finally:
            child_conn.close()
        with self._lock:
            self.started = True
            cancelled = self.cancelled
        if cancelled:  # killed while it was starting
            self._stop()
            return
        try:
            self.conn.send(payload)
        except (OSError, ValueError):
            pass  # the child died; the next request notices

    def alive(self) -> bool:
        with self._lock:
            if not self.started:
                return self.error is None and not self.cancelled
        return self.proc.is_alive()

    def exitcode(self, wait: float = 0.0) -> int | None:
        with self._lock:
            if not self.started:
                return None
        self.proc.join(wait)
        return self.proc.exitcode

    def _stop(self) -> None:
        if self.proc.exitcode is None:
            try:
                self.proc.kill()
            except (OSError, ValueError):  # pragma: no cover - already gone
                pass
        self.proc.join(5)
        if self.proc.exitcode is not None:
            self.proc.close()

    def kill(self) -> None:
        """SIGKILL the child (one still starting is killed as soon as it has started)."""
        with self._lock:
            self.cancelled = True
            started = self.started
        if started:
            self._stop()
        self.conn.close()


class Worker:
    """Evaluates requests in a child process with a time-out per request.

    Parameters
    ----------
    ctx : EvalContext
        The dataset and settings; sent to the child once per child.
    memory_limit_gb : float, optional
        Limit of the child's data segment (``RLIMIT_DATA``), GiB: an allocation past it
        raises MemoryError in the child, and the evaluation fails with a reason that starts
        with :data:`MEMORY_LIMIT_REASON`; the child is replaced.
    in_process : bool
        Evaluate in this process instead (no time-out, no isolation). For debugging.
    start_method : {"forkserver", "spawn"}, optional
        How children are started (see :func:`worker_context`); default
        :func:`default_start_method`.
    """

    def __init__(self, ctx: EvalContext, memory_limit_gb: float | None = None,
                 in_process: bool = False, start_method: str | None = None):
        self.ctx = ctx
        self.memory_limit = int(memory_limit_gb * 2**30) if memory_limit_gb else None
        self.in_process = in_process
        self.start_method = start_method
        self._mp_ctx: multiprocessing.context.BaseContext | None = None
        self._child: _Child | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """Process id of the current child (None when there is none or it is starting)."""
        child = self._child
        if child is None or not child.started:
            return None
        return child.proc.pid

    def start(self) -> None:
        """Start the child now; returns at once (a child is ready once the fork server has
        imported :data:`PRELOAD_MODULES`, and in milliseconds after that); idempotent."""
        if self.in_process or (self._child is not None and self._child.alive()):
            return
        if self._mp_ctx is None:
            self._mp_ctx = worker_context(self.start_method)
        self._child = _Child(self._mp_ctx, self.ctx, self.memory_limit)

    def wait_started(self, until: float | None = None) -> None:
        """Wait until the child has started (a child that died is replaced first), or until
        ``until`` (a ``time.monotonic()`` value): a caller that times what follows does not
        count the fork server's imports."""
        if self.in_process:
            return
        with self._lock:
            if self._child is None or not self._child.alive():
                self.kill()
                self.start()
            child = self._child
        child.thread.join(None if until is None else max(0.0, until - time.monotonic()))

    def run(self, request: tuple, timeout: float | None,
            limit: Callable[[], float | None] | None = None) -> dict[str, Any]:
        """Evaluate ``request``; raise :class:`EvaluationTimeout` / :class:`EvaluationFailed`.

        ``limit``, if given, is polled while the child works: a ``time.monotonic()`` value
        that may move earlier (e.g. the search keeps time for the final refit once a slow
        best trial exists); the evaluation is stopped when it passes.
        """
        if self.in_process:
            from automl_meta.search.cv import evaluate_fold, fit_full, fit_holdout

            try:
                if request[0] == "fold":
                    return evaluate_fold(self.ctx, request[1], request[2])
                if request[0] == "holdout":
                    return fit_holdout(self.ctx, request[1], request[2], request[3])
                return fit_full(self.ctx, request[1], *request[2:])
            except Exception as exc:
                raise EvaluationFailed(f"{type(exc).__name__}: {exc}") from exc
        with self._lock:
            if timeout is not None and timeout <= 0:
                raise EvaluationTimeout("no time left")
            # the clock starts now: restarting a killed child counts against the time-out
            deadline = None if timeout is None else time.monotonic() + timeout
            if self._child is None or not self._child.alive():
                self.kill()
                self.start()
            child = self._child
            child.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if child.thread.is_alive():
                self.kill()
                raise EvaluationTimeout(f"stopped after {timeout:.1f} s (worker start-up)")
            if child.error is not None:
                self.kill()
                raise EvaluationFailed(child.error)
            try:
                child.conn.send(request)
            except (BrokenPipeError, OSError):  # the child died between two requests
                raise EvaluationFailed(self._reap()) from None
            started = time.monotonic()
            while True:
                if limit is not None:
                    moved = limit()
                    if moved is not None and (deadline is None or moved < deadline):
                        deadline = moved
                wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if wait <= 0:
                    self.kill()
                    raise EvaluationTimeout(f"stopped after {time.monotonic() - started:.1f} s")
                if child.conn.poll(wait):
                    break
                if not child.alive():
                    code = child.exitcode()
                    self.kill()
                    raise EvaluationFailed(self._death_reason(code, child))
            try:
                status, payload = child.conn.recv()
            except (EOFError, OSError):
                raise EvaluationFailed(self._reap()) from None
            child.served += 1
            if status == "memory":  # its heap may be fragmented or half-freed: a fresh one
                self.kill()
                raise EvaluationFailed(f"{MEMORY_LIMIT_REASON} ({self._limit_text()}): "
                                       f"{payload}")
            if status != "ok":
                raise EvaluationFailed(payload)
            return payload

    def _limit_text(self) -> str:
        return f"--memory-limit {self.memory_limit / 2**30:.2f} GiB" if self.memory_limit \
            else "out of memory"

    def _death_reason(self, code: int | None, child: _Child | None) -> str:
        reason = _death_reason(code)
        if code == 1 and child is not None and not child.served:
            reason += " while starting (its error is on stderr)"
        elif self.memory_limit and code is not None and code != 0:
            reason += f" (a native allocation past the {self._limit_text()}?)"
        return reason

    def _reap(self) -> str:
        """The pipe to the child is closed: wait for its exit status, clean up, say why."""
        child = self._child
        code = child.exitcode(wait=2) if child is not None else None
        self.kill()
        return self._death_reason(code, child)

    def kill(self) -> None:
        """Stop the child now (a new one starts with the next request)."""
        child, self._child = self._child, None
        if child is not None:
            child.kill()

    def close(self) -> None:
        """Ask the child to exit and wait for it briefly."""
        child = self._child
        if child is not None and child.started and not child.thread.is_alive():
            try:
                child.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            else:
                child.proc.join(2)
        self.kill()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: a job for :func:`run_side_by_side`: ``(key, request, estimate)``, optionally with a
#: fourth element, ``smaller(limit, least=False)``: the same job on the most rows (with
#: ``least``, its fewest rows) whose estimate is at most ``limit`` seconds, as ``(request,
#: estimate, rows)``, or None when none is
Job = tuple[Any, ...]


def run_side_by_side(jobs: list[Job], workers: Sequence[Worker], window_end: float | None,
                     first_margin: float = 1.0, *,
                     reserve: Callable[[], float] | None = None,
                     accept: Callable[[Any, dict], str | None] | None = None
                     ) -> tuple[dict[Any, dict], dict[Any, str], bool]:
    """Run ``(key, request, estimate[, smaller])`` jobs in order on ``workers``, one thread
    each.

    A job whose estimate (None: unknown) does not fit in the time left runs on fewer rows
    (``smaller``) if that fits, and is skipped otherwise; the first job is also run on its
    fewest rows, or as it is without ``smaller``, while its estimate is within
    ``first_margin`` times the time left. Each runs with the time left as its time-out.
    ``reserve()`` (under the runner's lock, as each job starts) is the part of the window
    already spoken for, not left to the job; ``accept(key, answer)`` (under the lock, as
    each job answers) may turn an answer down with a reason. Returns the answers (with
    ``fit_rows`` for a job run on fewer rows) and the reasons of the jobs that produced
    none, by key, and whether Ctrl-C stopped them (the jobs it stopped say
    ``"interrupted"``).
    """
    lock = threading.Lock()
    queue = list(jobs)
    first_key = jobs[0][0] if jobs else None
    answers: dict[Any, dict] = {}
    failed: dict[Any, str] = {}
    stopping = threading.Event()

    def drive(worker: Worker) -> None:
        while True:
            with lock:
                if not queue:
                    return
                key, request, est, *more = queue.pop(0)
                smaller: Callable[..., tuple[tuple, float, int] | None] | None = (
                    more[0] if more else None)
                held = reserve() if reserve is not None else 0.0
                left = None if window_end is None else window_end - time.monotonic() - held
                margin = first_margin if key == first_key else 1.0
                rows = None
                if left is not None and left > 0.2 and est is not None and est > left \
                        and smaller is not None:
                    fewer = smaller(left) or (
                        smaller(margin * left, least=True) if margin > 1 else None)
                    if fewer is not None:
                        request, est, rows = fewer
                if left is not None and (left <= 0.2 or (
                        est is not None and est > margin * left)):
                    failed[key] = (
                        f"needs ~{est:.1f} s, {max(0.0, left):.1f} s left"
                        if est is not None and left > 0.2 else "no time left" + (
                            f" (~{held:.1f} s kept to write what was fitted so far)"
                            if held else ""))
                    continue
            try:
                out = worker.run(request, left)
            except (EvaluationTimeout, EvaluationFailed) as exc:
                with lock:
                    failed[key] = "interrupted" if stopping.is_set() else (
                        str(exc) + ("" if rows is None else f" (on {rows} rows)"))
                continue
            with lock:
                why = accept(key, out) if accept is not None else None
                if why is not None:
                    failed[key] = why
                    continue
                if rows is not None:
                    out["fit_rows"] = rows
                answers[key] = out

    threads = [threading.Thread(target=drive, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    interrupted = False
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: stop the fits, keep what is fitted
        interrupted = True
        stopping.set()
        with lock:
            for key, *_ in queue:
                failed[key] = "interrupted"
            queue.clear()
        for w in workers:
            w.kill()
        for t in threads:
            t.join(5.0)
    return answers, failed, interrupted


def _death_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        hint = " (killed: out of memory?)" if name == "SIGKILL" else ""
        return f"worker process died with signal {name}{hint}"
    return f"worker process exited unexpectedly (exit code {code})"
