"""A throwaway PostgreSQL cluster for tests: initdb in a temporary folder, 127.0.0.1 only."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # /usr/local/bin may hold only some symlinks
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a cluster; yield its URL; stop and delete it. Skips (or fails under CI=true)
    when PostgreSQL or its Python driver is not installed."""
    bindir = _bindir()
    problem = None
    if bindir is None:
        problem = "PostgreSQL server binaries (initdb) not found"
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            problem = "the psycopg driver is not installed (pip install 'psycopg[binary]')"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must run the PostgreSQL tests (see .ci/run)")
        pytest.skip(problem)
    root = Path(tempfile.mkdtemp(prefix="automl-meta-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the cluster as 'postgres'
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    run = lambda *cmd: subprocess.run([*prefix, *map(str, cmd)], check=True,  # noqa: E731
                                      capture_output=True, text=True, timeout=120)
    try:
        run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        run(bindir / "pg_ctl", "-D", data, "-l", root / "log", "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=100", "start")
        run(bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "automl")
        yield f"postgresql://postgres@127.0.0.1:{port}/automl"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
