"""A fork server for trial workers: one clean interpreter imports the evaluation code once,
then forks a worker child on request in a few milliseconds.

Starting a fresh interpreter per worker costs ~1.7 s of CPU (importing scikit-learn, SciPy
and pandas). A fit with two trial workers and a refit worker paid that three times at its
start, and again for every worker killed at a time-out; on two cores, with a 10-second
budget, that was a quarter of the budget. With the fork server it is paid once, in parallel
with the meta-features and the warm start.

The server is a fresh interpreter (never a fork of the caller, so no lock held by the
caller's threads and none of the caller's ``__main__`` is inherited) that stays
single-threaded, so forking it is safe. Protocol: the caller passes a connected socket with
``SCM_RIGHTS`` on the request socket; the server forks, the child serves
:func:`automl_meta.worker._entry` on that socket, and the server answers ``("forked", seq,
pid)`` on the message connection; when a child exits, the server reaps it and sends
``("exit", pid, returncode)`` (negative: killed by that signal, as in ``subprocess``). The
server exits when the caller closes the request socket or dies; its children exit when it
does (they watch their parent).

Linux and other POSIX systems with ``os.fork`` and ``socket.send_fds``; elsewhere (or if the
server cannot start) :class:`~automl_meta.worker.Worker` starts one interpreter per child,
as before.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any


def available() -> bool:
    """Whether this platform can run the fork server."""
    return hasattr(os, "fork") and hasattr(socket, "send_fds") and sys.platform != "win32"


class ForkedChild:
    """The parent's handle on a child forked by the server (the subset of
    :class:`subprocess.Popen` that :class:`~automl_meta.worker.Worker` uses)."""

    def __init__(self, server: ForkServer, seq: int):
        self._server = server
        self.seq = seq
        self._pid: int | None = None
        self.returncode: int | None = None
        self._forked = threading.Event()
        self._exited = threading.Event()

    @property
    def pid(self) -> int | None:
        """The child's process id (waits for the server to fork it; None if it never did)."""
        self._forked.wait(self._server.start_timeout)
        return self._pid

    def poll(self) -> int | None:
        """The exit code if the child has exited, else None."""
        return self.returncode if self._exited.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the child to exit; raises :class:`subprocess.TimeoutExpired`."""
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired("forked worker", timeout or 0.0)
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the child (a child not forked yet is killed as soon as it is)."""
        self._server._kill(self)

    # called by the server's reader thread
    def _set_pid(self, pid: int) -> None:
        self._pid = pid
        self._forked.set()

    def _set_exit(self, code: int | None) -> None:
        self.returncode = code
        self._forked.set()
        self._exited.set()


class ForkServer:
    """Owns the server interpreter; :meth:`spawn` gives a new worker child.

    Parameters
    ----------
    env : dict, optional
        Environment of the server (and so of every child).
    start_timeout : float
        How long :attr:`ForkedChild.pid` waits for the server to come up and fork.
    """

    def __init__(self, env: dict[str, str] | None = None, start_timeout: float = 60.0):
        self.env = env
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen | None = None
        self._req: socket.socket | None = None
        self._msg: Connection | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._children: dict[int, ForkedChild] = {}  # by seq
        self._by_pid: dict[int, ForkedChild] = {}
        self._kill_pending: set[int] = set()
        self._seq = 0
        self.failed = False

    def start(self) -> None:
        """Start the server interpreter (returns at once; it imports in the background)."""
        with self._lock:
            if self._proc is not None or self.failed:
                return
            req_parent, req_child = socket.socketpair()
            msg_parent, msg_child = socket.socketpair()
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-c", "import sys; del sys.path[0]; "
                     "from automl_meta.forkserver import _serve; "
                     "_serve(int(sys.argv[1]), int(sys.argv[2]))",
                     str(req_child.fileno()), str(msg_child.fileno())],
                    pass_fds=(req_child.fileno(), msg_child.fileno()), env=self.env,
                    stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError:
                self.failed = True
                req_parent.close()
                msg_parent.close()
                return
            finally:
                req_child.close()
                msg_child.close()
            self._req = req_parent
            self._msg = Connection(msg_parent.detach())
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    @property
    def usable(self) -> bool:
        """False once the server failed to start or died (callers then start interpreters)."""
        return not self.failed

    def spawn(self, sock: socket.socket) -> ForkedChild:
        """Ask for a child serving the worker protocol on ``sock`` (closed here).

        Returns at once; the child is forked as soon as the server has finished importing.
        Raises OSError if the server is gone.
        """
        self.start()
        with self._lock:
            if self.failed or self._req is None:
                sock.close()
                raise OSError("the fork server is not running")
            self._seq += 1
            child = ForkedChild(self, self._seq)
            self._children[child.seq] = child
            try:
                socket.send_fds(self._req, [self._seq.to_bytes(8, "little")], [sock.fileno()])
            except OSError:
                del self._children[child.seq]
                self.failed = True
                raise
            finally:
                sock.close()
        return child

    def _kill(self, child: ForkedChild) -> None:
        with self._lock:
            if child.poll() is not None:
                return
            pid = child._pid
            if pid is None:  # not forked yet: kill it when it is
                self._kill_pending.add(child.seq)
                return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _read(self) -> None:
        msg = self._msg
        while True:
            try:
                kind, a, b = msg.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                if kind == "forked":
                    child = self._children.pop(a, None)
                    if child is None:
                        continue
                    self._by_pid[b] = child
                    kill_now = a in self._kill_pending
                    self._kill_pending.discard(a)
                    child._set_pid(b)
                elif kind == "exit":
                    child = self._by_pid.pop(a, None)
                    if child is not None:
                        child._set_exit(b)
                    continue
                else:
                    continue
            if kill_now:
                try:
                    os.kill(b, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        # the server is gone: so are (within a second) its children
        with self._lock:
            self.failed = True
            orphans = list(self._children.values()) + list(self._by_pid.values())
            self._children.clear()
            self._by_pid.clear()
        for child in orphans:
            if child._pid is not None:
                try:
                    os.kill(child._pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            child._set_exit(None)

    def close(self) -> None:
        """Stop the server; it kills the children it still has."""
        with self._lock:
            proc, req = self._proc, self._req
            self._req = None
        if req is not None:
            try:
                req.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            req.close()
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._msg is not None:
            self._msg.close()
            self._msg = None

    def __enter__(self) -> ForkServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _serve(req_fd: int, msg_fd: int) -> None:
    """The server's main loop (see the module docstring). Single-threaded by design."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    import automl_meta.worker as worker  # the imports every child inherits

    req = socket.socket(fileno=req_fd)
    msg = Connection(msg_fd)
    parent = os.getppid()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the pipe
    children: set[int] = set()

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                return
            if pid == 0:
                return
            children.discard(pid)
            try:
                msg.send(("exit", pid, os.waitstatus_to_exitcode(status)))
            except OSError:
                pass

    def shutdown() -> None:
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in list(children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        os._exit(0)

    while True:
        try:
            ready, _, _ = select.select([req, wake_r], [], [], 1.0)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            ready = []
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        reap()
        if os.getppid() != parent:
            shutdown()
        if req not in ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(req, 8, 1)
        except OSError:
            shutdown()
        if not data:
            shutdown()
        seq = int.from_bytes(data, "little")
        if not fds:
            continue
        pid = os.fork()
        if pid == 0:  # the child: serve the worker protocol, never return into this loop
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(wake_r)
                os.close(wake_w)
                req.close()
                msg.close()
                worker._entry(fds[0])
            finally:
                os._exit(0)
        os.close(fds[0])
        children.add(pid)
        try:
            msg.send(("forked", seq, pid))
        except OSError:
            shutdown()
