"""Trial workers from the multiprocessing fork server: forks of one clean, single-threaded
interpreter that preloads the evaluation code; replaced when killed; gone with their parent."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from automl_meta.search.cv import evaluate_fold
from automl_meta.search.workers import (
    CHILD_ENV,
    EvaluationTimeout,
    Worker,
    default_start_method,
)

from .conftest import cpu_seconds, wait_until
from .test_faults import _processes
from .test_search import _ctx

needs_forkserver = pytest.mark.skipif(default_start_method() != "forkserver",
                                      reason="the platform has no forkserver start method")


def _parent_of(pid: int) -> int | None:
    return _processes().get(pid, (None, ""))[0]


def _children_of(pid: int) -> list[int]:
    return [child for child, (ppid, _) in _processes().items() if ppid == pid]


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def _wait_until(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.slow
def test_importing_the_library_starts_and_configures_nothing():
    code = ("import multiprocessing.forkserver as f, os\n"
            "import automl_meta.estimator, automl_meta.search.workers\n"
            "kids = [p for p in os.listdir('/proc') if p.isdigit() and "
            "f'PPid:\\t{os.getpid()}\\n' in open(f'/proc/{p}/status').read()]\n"
            "print(len(kids), f._forkserver._preload_modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split(maxsplit=1)
    assert out[0] == "0"
    assert out[1].strip() == "['__main__']"  # the standard library's default, untouched


@needs_forkserver
def test_server_is_single_threaded_preloaded_and_workers_are_its_forks(mixed_frame):
    ctx = _ctx(mixed_frame, "label")
    config = ctx.space.default_config("hgb", "binary")
    env_before = dict(os.environ)
    with Worker(ctx) as worker:
        out = worker.run(("fold", config, 1), timeout=120)
        server = _parent_of(worker.pid)
        assert server is not None and server != os.getpid()
        assert _parent_of(server) == os.getpid()
        assert "multiprocessing.forkserver" in _processes()[server][1]
        # one thread: safe to fork (pyarrow, imported by pandas, starts none there)
        assert len(os.listdir(f"/proc/{server}/task")) == 1
        maps = Path(f"/proc/{server}/maps").read_text()
        assert "sklearn/tree/_tree" in maps and "pyarrow" in maps  # preloaded
        environ = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
        for key, value in CHILD_ENV.items():
            if key not in env_before:
                assert f"{key}={value}".encode() in environ
    assert dict(os.environ) == env_before  # the caller's environment is left as it was
    assert out["score"] == evaluate_fold(ctx, config, 1)["score"]


@needs_forkserver
def test_worker_killed_at_a_deadline_is_replaced_and_close_leaves_nothing(mixed_frame):
    ctx = _ctx(mixed_frame, "label")
    config = ctx.space.default_config("linear", "binary")
    worker = Worker(ctx)
    worker.run(("fold", config, 0), timeout=120)
    first = worker.pid
    server = _parent_of(first)
    with pytest.raises(EvaluationTimeout):  # a time-out kills the child, not the server
        worker.run(("fold", ctx.space.default_config("svm", "binary")
                    | {"svm.C": 1000.0}, 0), timeout=0.01)
    assert _wait_until(lambda: not _running(first))
    out = worker.run(("fold", config, 0), timeout=120)  # a fresh fork serves the next one
    second = worker.pid
    assert second != first and _parent_of(second) == server
    assert out["score"] == evaluate_fold(ctx, config, 0)["score"]
    os.kill(second, signal.SIGKILL)  # between two requests: replaced without a failure
    child = worker._child
    assert _wait_until(lambda: not child.alive())
    assert child.exitcode() == -signal.SIGKILL  # the server reported the signal
    worker.run(("fold", config, 0), timeout=120)
    assert worker.pid not in (first, second)
    worker.close()
    assert _wait_until(lambda: not [p for p in _children_of(server) if _running(p)])
    assert server in _processes()  # the server stays for the next fit of this process


@pytest.mark.slow
def test_spawn_fallback_evaluates_in_its_own_interpreter(mixed_frame):
    ctx = _ctx(mixed_frame, "label")
    config = ctx.space.default_config("linear", "binary")
    with Worker(ctx, start_method="spawn") as worker:
        out = worker.run(("fold", config, 0), timeout=180)
        pid = worker.pid
        assert _parent_of(pid) == os.getpid()
        assert "multiprocessing.spawn" in _processes()[pid][1]
    assert _wait_until(lambda: not _running(pid))
    assert out["score"] == evaluate_fold(ctx, config, 0)["score"]


@pytest.mark.parametrize("start_method", [
    pytest.param("forkserver", marks=needs_forkserver), "spawn"])
@pytest.mark.slow
def test_workers_exit_when_their_parent_dies(tmp_path, start_method):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import numpy as np
        import pandas as pd
        from automl_meta.data import prepare_dataset
        from automl_meta.search.cv import EvalContext, make_folds
        from automl_meta.search.space import load_space
        from automl_meta.search.workers import Worker

        if __name__ == "__main__":
            rng = np.random.default_rng(0)
            df = pd.DataFrame(rng.normal(size=(3000, 10)), columns=list("abcdefghij"))
            df["y"] = np.where(df["a"] + rng.normal(size=3000) > 0, "a", "b")
            ds = prepare_dataset(df, "y")
            y = ds.y.map({{"a": 0, "b": 1}}).to_numpy()
            ctx = EvalContext(ds.X, y, ds.task, ds.schema, 2, "accuracy",
                              make_folds(y, ds.task, 0), load_space(), 0)
            w = Worker(ctx, start_method="{start_method}")
            slow = ctx.space.default_config("svm", "binary") | {{"svm.C": 1000.0}}
            w.run(("fold", ctx.space.default_config("linear", "binary"), 0), 120)
            print(w.pid, flush=True)
            w.run(("fold", slow, 0), 600)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())
        idle = cpu_seconds(pid)  # the parent dies while the worker computes the slow fit
        wait_until(lambda: cpu_seconds(pid) >= idle + 0.3, timeout=120,
                   what="CPU time spent on the slow fit")
        assert _running(pid)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert _wait_until(lambda: not _running(pid), timeout=30)


@pytest.mark.slow
def test_a_script_without_a_main_guard_fits_and_runs_once(tmp_path):
    """Workers do not import the caller's script: one without ``if __name__ ==
    "__main__":`` fits with every trial complete, and its body runs once."""
    script = tmp_path / "fit_script.py"
    script.write_text(textwrap.dedent("""
        import numpy as np, pandas as pd
        from automl_meta import AutoML
        print("BODY RAN", flush=True)
        rng = np.random.default_rng(0)
        X = pd.DataFrame(rng.normal(size=(150, 3)), columns=list("abc"))
        y = (X["a"] + rng.normal(scale=0.5, size=150) > 0).astype(int)
        m = AutoML(n_trials=3, warm_start=0, diagnostics=False).fit(X, y)
        print("STATES", ",".join(m.leaderboard_["state"]), m.refit_["reason"])
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("BODY RAN") == 1
    # the final model: the best trial or an ensemble of trials
    assert re.search(r"STATES COMPLETE,COMPLETE,COMPLETE (best trial|ensemble of)", out.stdout)
