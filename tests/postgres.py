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
from dataclasses import dataclass, field
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


@dataclass
class Cluster:
    """A running throwaway cluster: its URL, and pg_ctl to stop and start it again."""

    url: str
    bindir: Path
    root: Path
    port: int
    prefix: list[str] = field(default_factory=list)  # run as 'postgres' when we are root

    @property
    def data(self) -> Path:
        return self.root / "data"

    def run(self, *cmd: object) -> subprocess.CompletedProcess:
        """Run a PostgreSQL program (as the cluster's owner)."""
        return subprocess.run([*self.prefix, *map(str, cmd)], check=True,
                              capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self.run(self.bindir / "pg_ctl", "-D", self.data, "-l", self.root / "log", "-w", "-o",
                 f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                 "-c max_connections=100", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: connections are closed, as by a service restart)."""
        self.run(self.bindir / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def add_password_user(self, user: str, password: str) -> str:
        """Create ``user`` with ``password`` (SCRAM, required for it over TCP) and a database
        it owns, named like it; return its URL, without the password."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as con:
            con.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
            con.execute(f"CREATE DATABASE {user} OWNER {user}")
        hba = self.data / "pg_hba.conf"
        rule = f"host all {user} 127.0.0.1/32 scram-sha-256\n"
        self.run("sh", "-c", f"printf '%s' '{rule}' | cat - {hba} > {hba}.new && "
                             f"mv {hba}.new {hba}")  # first match wins: before 'trust'
        self.run(self.bindir / "pg_ctl", "-D", self.data, "-w", "reload")
        return f"postgresql://{user}@127.0.0.1:{self.port}/{user}"


@contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a cluster; yield it; stop and delete it. Skips (or fails under CI=true) when
    PostgreSQL or its Python driver is not installed."""
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
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="automl-meta-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the cluster as 'postgres'
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    c = Cluster(f"postgresql://postgres@127.0.0.1:{port}/automl", bindir, root, port, prefix)
    try:
        c.run(bindir / "initdb", "-D", c.data, "-A", "trust", "-U", "postgres", "--no-sync")
        c.start()
        c.run(bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "automl")
        yield c
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(c.data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a cluster; yield its URL; stop and delete it. Skips (or fails under CI=true)
    when PostgreSQL or its Python driver is not installed."""
    with cluster() as c:
        yield c.url
