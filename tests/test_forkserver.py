"""The fork server: workers forked from one clean interpreter behave like started ones."""

from __future__ import annotations

import os
import signal
import time

import pytest

from automl_meta import forkserver
from automl_meta.evaluate import evaluate_fold
from automl_meta.forkserver import ForkServer
from automl_meta.worker import EvaluationTimeout, Worker, worker_env

from .test_faults import _processes
from .test_search import _ctx

pytestmark = pytest.mark.skipif(not forkserver.available(), reason="needs os.fork")


def _parent_of(pid: int) -> int | None:
    return _processes().get(pid, (None, ""))[0]


def _children_of(pid: int) -> list[int]:
    return [child for child, (ppid, _) in _processes().items() if ppid == pid]


def test_forked_worker_scores_like_the_evaluation_in_process(mixed_frame):
    ctx = _ctx(mixed_frame, "label")
    config = ctx.space.default_config("hgb", "binary")
    with ForkServer(env=worker_env()) as server:
        with Worker(ctx, server=server) as worker:
            out = worker.run(("fold", config, 1), timeout=60)
            assert _parent_of(worker._proc.pid) == server._proc.pid
    assert out["score"] == evaluate_fold(ctx, config, 1)["score"]


def test_killed_child_is_replaced_by_a_new_fork_and_server_close_leaves_nothing(mixed_frame):
    ctx = _ctx(mixed_frame, "label")
    config = ctx.space.default_config("linear", "binary")
    server = ForkServer(env=worker_env())
    server.start()
    worker = Worker(ctx, server=server)
    worker.run(("fold", config, 0), timeout=60)
    first = worker._proc.pid
    os.kill(first, signal.SIGKILL)  # between two requests: replaced without a failure
    worker._proc.wait(timeout=10)
    assert worker._proc.returncode == -signal.SIGKILL  # the server reported the signal
    worker.run(("fold", config, 0), timeout=60)  # a fresh fork serves the next request
    second = worker._proc.pid
    assert second != first and _parent_of(second) == server._proc.pid
    with pytest.raises(EvaluationTimeout):  # a time-out kills the child, not the server
        worker.run(("fold", ctx.space.default_config("svm", "binary")
                    | {"svm.C": 1000.0}, 0), timeout=0.01)
    assert server.usable
    server_pid = server._proc.pid
    worker.close()
    server.close()
    assert not _children_of(server_pid)
    assert server._proc.poll() is not None


def test_worker_falls_back_to_an_interpreter_when_the_server_dies(mixed_frame):
    ctx = _ctx(mixed_frame, "label")
    config = ctx.space.default_config("linear", "binary")
    server = ForkServer(env=worker_env())
    server.start()
    os.kill(server._proc.pid, signal.SIGKILL)
    server._proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while server.usable and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.usable
    with Worker(ctx, server=server) as worker:
        out = worker.run(("fold", config, 0), timeout=60)
        assert _parent_of(worker._proc.pid) == os.getpid()  # its own interpreter
    assert out["score"] == evaluate_fold(ctx, config, 0)["score"]
    server.close()
