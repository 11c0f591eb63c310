"""The task queue of a distributed ``build-metabase``, kept in a database.

Two tables live beside Optuna's in the storage database:

- ``automl_meta_builds``: one row per build (its name, and the manifest base as JSON: build
  settings, source, command, search-space version);
- ``automl_meta_build_tasks``: one row per task of a build: state (``pending``,
  ``running``, ``done``, ``failed``), the worker holding it, that worker's last heartbeat,
  attempts, and when finished the outcome (the task's row and its trials, as JSON).

A worker *claims* a task in one transaction: the first task (in source order) that is
pending, or running with a heartbeat older than the grace period (its worker is presumed
dead), is locked (``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises
writers with ``BEGIN IMMEDIATE``) and marked running under the worker's id. While it builds,
a :class:`ClaimHeartbeat` thread refreshes the heartbeat. Completion is conditional on the
claim still being the worker's: a worker that was presumed dead and whose task was claimed
again by another has its late result discarded, so every task is stored exactly once.

All times are the database server's clock, so the machines' clocks need not agree. Every
operation is retried while the database is unreachable (a restart, a failover) for up to
:data:`~automl_meta.search.study.STORAGE_RETRY_SECONDS`; claiming and completing a task stay
exactly-once when an attempt reached the database but its answer was lost.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from automl_meta.defaults import DEFAULT_HEARTBEAT_GRACE as DEFAULT_GRACE
from automl_meta.errors import UsageError
from automl_meta.search.study import (
    MAX_STUDY_NAME,
    STORAGE_RETRY_SECONDS,
    describe_error,
    redact,
    retry_storage,
)

STATES = ("pending", "running", "done", "failed")
#: the manifest keys two processes must agree on to work on the same build
SETTING_KEYS = ("search_space_version", "build")
#: the longest build name, task id and worker id the tables store
MAX_BUILD_NAME = 200
MAX_TASK_ID = 500
MAX_WORKER_ID = 300

_metadata = sa.MetaData()
builds_table = sa.Table(
    "automl_meta_builds", _metadata,
    sa.Column("name", sa.String(MAX_BUILD_NAME), primary_key=True),
    sa.Column("base", sa.Text, nullable=False),  # manifest base, JSON
    sa.Column("created", sa.Float, nullable=False),  # database clock, epoch seconds
)
tasks_table = sa.Table(
    "automl_meta_build_tasks", _metadata,
    sa.Column("build", sa.String(MAX_BUILD_NAME), primary_key=True),
    sa.Column("task_id", sa.String(MAX_TASK_ID), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, default="pending"),
    sa.Column("worker", sa.String(MAX_WORKER_ID)),
    sa.Column("heartbeat", sa.Float),
    sa.Column("claimed", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("outcome", sa.Text),  # JSON: {"row": {...}, "trials": [[config, row], ...]}
    sa.Column("error", sa.Text),
    sa.Index("ix_automl_meta_build_tasks_state", "build", "state"),
)

_NOW_SQL = {  # the database clock as epoch seconds (float)
    "postgresql": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}
_T = TypeVar("_T")


@dataclass(frozen=True)
class Claim:
    """A task this worker holds."""

    task_id: str
    worker: str
    attempt: int
    #: the worker that held it before and was presumed dead (None for a pending task)
    previous_worker: str | None = None


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def dumps(doc: Any) -> str:
    """JSON for the database (NaN allowed: meta-features may be undefined)."""
    return json.dumps(doc, default=_json_default, sort_keys=True)


def check_build_name(name: str) -> None:
    """Refuse a build name the tables cannot store (UsageError, exit 2)."""
    if not name or len(name) > MAX_BUILD_NAME:
        raise UsageError(f"the build name must be 1 to {MAX_BUILD_NAME} characters long, not "
                         f"{len(name)}")


def check_task_ids(build: str, task_ids: Iterable[str]) -> None:
    """Refuse task ids the tables, or the study names ``<build>/<task id>``, cannot store."""
    limit = min(MAX_TASK_ID, MAX_STUDY_NAME - len(build) - 1)
    for tid in task_ids:
        if not tid or len(tid) > limit:
            shown = tid if len(tid) <= 60 else f"{tid[:40]}…{tid[-10:]}"
            raise UsageError(f"task id {shown!r} is {len(tid)} characters long; with build "
                             f"name {build!r} a task id may have 1 to {limit} (rename the "
                             "file or give a shorter --build)")


def _make_engine(url: str) -> sa.Engine:
    try:
        parsed = sa.engine.make_url(url)
    except sa_exc.ArgumentError as exc:
        raise UsageError(f"--storage {redact(url)!r} is not a database URL ({exc})") from None
    dialect = parsed.get_backend_name()
    if dialect not in _NOW_SQL:
        raise UsageError(f"--storage {redact(url)}: a distributed build needs PostgreSQL "
                         f"(postgresql://…) or SQLite (sqlite:///…), not {dialect}")
    try:
        if dialect == "sqlite":
            engine = sa.create_engine(url, connect_args={"timeout": 60})

            @sa.event.listens_for(engine, "connect")
            def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
                dbapi_connection.isolation_level = None  # we emit BEGIN ourselves

            @sa.event.listens_for(engine, "begin")
            def _begin_immediate(conn: sa.Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # one writer at a time
        else:
            connect_args = {} if "connect_timeout" in url else {"connect_timeout": 10}
            engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except UsageError:
        raise
    except Exception as exc:  # missing driver, unreachable server, bad credentials
        raise UsageError(f"cannot open storage {redact(url)}: {describe_error(exc, url)}"
                         ) from None
    return engine


def _create_tables(engine: sa.Engine) -> None:
    for attempt in range(4):
        try:
            _metadata.create_all(engine, checkfirst=True)
            return
        except (sa_exc.IntegrityError, sa_exc.ProgrammingError):
            if attempt == 3:  # else another process was creating them at the same moment
                raise
            time.sleep(0.2 + attempt)


def retry_transient(fn: Callable[[], _T], url: str = "",
                    seconds: float = STORAGE_RETRY_SECONDS) -> _T:
    """Call ``fn``, retrying on lost connections and serialisation failures for up to
    ``seconds`` (see :func:`automl_meta.search.study.retry_storage`); ``url`` names the storage
    in the messages (its password hidden)."""
    return retry_storage(fn, what=f"storage {redact(url)}" if url else "storage",
                         seconds=seconds)


class BuildQueue:
    """The tasks of one named build in a database: register, claim, heartbeat, complete.

    Parameters
    ----------
    url : str
        SQLAlchemy / Optuna storage URL (``postgresql://…`` or ``sqlite:///…``).
    name : str
        The build's name.
    grace : float
        Seconds without a heartbeat after which a running task may be claimed again.
    engine : sqlalchemy.Engine, optional
        Reuse an engine (otherwise one is created for ``url``).
    """

    def __init__(self, url: str, name: str, *, grace: float = DEFAULT_GRACE,
                 engine: sa.Engine | None = None):
        if grace <= 0 or not math.isfinite(grace):
            raise UsageError("the heartbeat grace period must be a positive number of seconds")
        check_build_name(name)
        self.url = url
        self.name = name
        self.grace = float(grace)
        self.engine = engine if engine is not None else _make_engine(url)
        self._now_sql = _NOW_SQL[self.engine.dialect.name]
        _create_tables(self.engine)

    # ---------------------------------------------------------------- helpers
    @property
    def heartbeat_interval(self) -> float:
        """How often a claim is refreshed: a quarter of the grace period (at most 15 s)."""
        return min(15.0, self.grace / 4)

    def _now(self, conn: sa.Connection) -> float:
        return float(conn.execute(sa.text(f"SELECT {self._now_sql}")).scalar_one())

    def _mine(self) -> sa.ColumnElement[bool]:
        return tasks_table.c.build == self.name

    def _retry(self, fn: Callable[[], _T]) -> _T:
        return retry_transient(fn, self.url)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    @staticmethod
    def list_builds(url: str) -> dict[str, dict[str, int]]:
        """Every build in the storage, with its task counts by state."""
        engine = _make_engine(url)

        def read() -> dict[str, dict[str, int]]:
            if not sa.inspect(engine).has_table(builds_table.name):
                return {}
            t = tasks_table
            with engine.connect() as conn:
                names = [r[0] for r in conn.execute(
                    sa.select(builds_table.c.name).order_by(builds_table.c.created))]
                out: dict[str, dict[str, int]] = {n: {} for n in names}
                for build, state, n in conn.execute(
                        sa.select(t.c.build, t.c.state, sa.func.count()).group_by(
                            t.c.build, t.c.state)):
                    out.setdefault(build, {})[state] = int(n)
            return out

        try:
            return retry_transient(read, url)
        finally:
            engine.dispose()

    # ---------------------------------------------------------------- the build
    def register(self, base: Mapping[str, Any], task_ids: Sequence[str], *,
                 leader: bool = False) -> list[str]:
        """Create the build, or join it if it exists with the same settings; add the tasks it
        does not hold yet (as pending).

        Parameters
        ----------
        base : mapping
            Manifest base (see :func:`automl_meta.meta.builder.local.manifest_base`); its
            ``search_space_version`` and ``build`` settings must equal the stored ones.
        task_ids : sequence of str
            The tasks, in build order.
        leader : bool
            The process that will export the build: failed tasks are put back to pending
            (as a local ``--resume`` does), and its provenance (``command``, ``source``)
            replaces that of a worker that happened to register the build first.

        Returns
        -------
        list of str
            The failed tasks that were put back to pending.

        Raises
        ------
        UsageError
            The build exists with other settings, or a task id is too long.
        """
        check_task_ids(self.name, task_ids)
        return self._retry(lambda: self._register(base, task_ids, leader))

    def _register(self, base: Mapping[str, Any], task_ids: Sequence[str],
                  leader: bool) -> list[str]:
        b, t = builds_table, tasks_table
        for _ in range(3):  # a concurrent registration may win the insert: then join it
            try:
                with self.engine.begin() as conn:
                    row = conn.execute(sa.select(b.c.base).where(b.c.name == self.name)
                                       .with_for_update()).first()
                    if row is None:
                        conn.execute(sa.insert(b).values(name=self.name, base=dumps(base),
                                                         created=self._now(conn)))
                    else:
                        stored = json.loads(row[0])
                        self._check_settings(stored, base)
                        if leader and any(stored.get(k) != json.loads(dumps(base.get(k)))
                                          for k in ("command", "source")):
                            stored.update(command=base.get("command"), source=base.get("source"))
                            conn.execute(sa.update(b).where(b.c.name == self.name).values(
                                base=dumps(stored)))
                    have = {r[0] for r in conn.execute(sa.select(t.c.task_id).where(
                        self._mine()))}
                    start = len(have)
                    new = [tid for tid in dict.fromkeys(task_ids) if tid not in have]
                    if new:
                        conn.execute(sa.insert(t), [
                            {"build": self.name, "task_id": tid, "position": start + i,
                             "state": "pending", "attempts": 0} for i, tid in enumerate(new)])
                    reset: list[str] = []
                    if leader:
                        reset = [r[0] for r in conn.execute(sa.select(t.c.task_id).where(
                            self._mine(), t.c.state == "failed"))]
                        if reset:
                            conn.execute(sa.update(t).where(
                                self._mine(), t.c.state == "failed").values(
                                state="pending", worker=None, heartbeat=None, outcome=None,
                                error=None, finished=None))
                    return reset
            except sa_exc.IntegrityError:
                continue
        raise UsageError(f"could not register build {self.name!r} (concurrent changes)")

    def _check_settings(self, stored: Mapping[str, Any], base: Mapping[str, Any]) -> None:
        for key in SETTING_KEYS:
            have, want = stored.get(key), json.loads(dumps(base.get(key)))
            if isinstance(have, dict) and isinstance(want, dict):
                diff = [f"{k}={have.get(k)!r}, not {want.get(k)!r}"
                        for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
            else:
                diff = [] if have == want else [f"{key}={have!r}, not {want!r}"]
            if diff:
                raise UsageError(
                    f"build {self.name!r} in the storage was started with {'; '.join(diff)}: "
                    "run it with the same settings, or give this one another --build name")

    def exists(self) -> bool:
        """Whether the build is registered."""
        def read() -> bool:
            with self.engine.connect() as conn:
                return conn.execute(sa.select(builds_table.c.name).where(
                    builds_table.c.name == self.name)).first() is not None

        return self._retry(read)

    def base(self) -> tuple[dict[str, Any], float]:
        """The stored manifest base and the build's creation time (epoch seconds)."""
        def read() -> Any:
            with self.engine.connect() as conn:
                return conn.execute(sa.select(builds_table.c.base, builds_table.c.created)
                                    .where(builds_table.c.name == self.name)).first()

        row = self._retry(read)
        if row is None:
            raise UsageError(f"the storage holds no build named {self.name!r}")
        return json.loads(row[0]), float(row[1])

    # ---------------------------------------------------------------- workers
    def claim(self, worker: str, among: Iterable[str] | None = None) -> Claim | None:
        """Claim the next pending task, or a running one whose heartbeat is older than the
        grace period; None when there is none (now).

        Parameters
        ----------
        worker : str
            This worker's id (unique among all processes of the build).
        among : iterable of str, optional
            Only tasks this worker can build (those its source lists).
        """
        if not worker or len(worker) > MAX_WORKER_ID:
            raise UsageError(f"the worker id must be 1 to {MAX_WORKER_ID} characters long")
        among = None if among is None else list(among)
        attempts = 0

        def run() -> Claim | None:
            nonlocal attempts
            attempts += 1
            return self._claim(worker, among, attempts > 1)

        return self._retry(run)

    def _claim(self, worker: str, among: Iterable[str] | None,
               retrying: bool = False) -> Claim | None:
        t = tasks_table
        with self.engine.begin() as conn:
            now = self._now(conn)
            if retrying:  # an earlier attempt may have claimed a task, its answer lost
                held = conn.execute(sa.select(t.c.task_id, t.c.attempts).where(
                    self._mine(), t.c.state == "running", t.c.worker == worker)
                    .order_by(t.c.position).limit(1).with_for_update()).first()
                if held is not None:
                    conn.execute(sa.update(t).where(
                        self._mine(), t.c.task_id == held.task_id).values(heartbeat=now))
                    return Claim(held.task_id, worker, held.attempts, None)
            claimable = sa.or_(t.c.state == "pending", sa.and_(
                t.c.state == "running",
                sa.or_(t.c.heartbeat.is_(None), t.c.heartbeat < now - self.grace)))
            query = sa.select(t.c.task_id, t.c.state, t.c.worker, t.c.attempts).where(
                self._mine(), claimable)
            if among is not None:
                query = query.where(t.c.task_id.in_(list(among)))
            row = conn.execute(query.order_by(t.c.position).limit(1)
                               .with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            conn.execute(sa.update(t).where(self._mine(), t.c.task_id == row.task_id).values(
                state="running", worker=worker, heartbeat=now, claimed=now,
                attempts=row.attempts + 1))
            previous = row.worker if row.state == "running" else None
            return Claim(row.task_id, worker, row.attempts + 1, previous)

    def heartbeat(self, claim: Claim) -> bool:
        """Refresh the claim; False when it is no longer this worker's (claimed again)."""
        t = tasks_table

        def run() -> bool:
            with self.engine.begin() as conn:
                res = conn.execute(sa.update(t).where(
                    self._mine(), t.c.task_id == claim.task_id, t.c.worker == claim.worker,
                    t.c.state == "running").values(heartbeat=sa.literal_column(self._now_sql)))
                return res.rowcount == 1

        return self._retry(run)

    def complete(self, claim: Claim, outcome: Mapping[str, Any], *, ok: bool,
                 error: str = "") -> bool:
        """Store a task's outcome, if the claim is still this worker's.

        Returns
        -------
        bool
            False when the task was claimed again meanwhile (the outcome is discarded, so
            that every task is stored once).
        """
        t = tasks_table
        payload = dumps(outcome)
        state = "done" if ok else "failed"
        attempts = 0

        def run() -> bool:
            nonlocal attempts
            attempts += 1
            with self.engine.begin() as conn:
                now = self._now(conn)
                res = conn.execute(sa.update(t).where(
                    self._mine(), t.c.task_id == claim.task_id, t.c.worker == claim.worker,
                    t.c.state == "running").values(
                    state=state, outcome=payload, error=error or None,
                    finished=now, heartbeat=now))
                if res.rowcount == 1:
                    return True
                if attempts == 1:
                    return False
                # a retry: an earlier attempt may have stored this very outcome
                row = conn.execute(sa.select(t.c.state, t.c.worker, t.c.outcome).where(
                    self._mine(), t.c.task_id == claim.task_id)).first()
                return row is not None and (row.state, row.worker, row.outcome) == (
                    state, claim.worker, payload)

        return self._retry(run)

    def release(self, workers: Iterable[str]) -> int:
        """Put the running tasks of these workers back to pending (on a clean stop, so that
        others need not wait for the grace period). Returns how many."""
        t = tasks_table
        workers = list(workers)
        if not workers:
            return 0

        def run() -> int:
            with self.engine.begin() as conn:
                res = conn.execute(sa.update(t).where(
                    self._mine(), t.c.state == "running", t.c.worker.in_(workers)).values(
                    state="pending", worker=None, heartbeat=None))
                return int(res.rowcount)

        return self._retry(run)

    # ---------------------------------------------------------------- reading
    def counts(self, among: Iterable[str] | None = None) -> dict[str, int]:
        """Tasks by state (every state present, zero or not)."""
        t = tasks_table
        query = sa.select(t.c.state, sa.func.count()).where(self._mine()).group_by(t.c.state)
        if among is not None:
            query = query.where(t.c.task_id.in_(list(among)))
        def read() -> dict[str, int]:
            out = dict.fromkeys(STATES, 0)
            with self.engine.connect() as conn:
                for state, n in conn.execute(query):
                    out[state] = int(n)
            return out

        return self._retry(read)

    def tasks(self) -> list[dict[str, Any]]:
        """Every task row (without its outcome), in build order."""
        t = tasks_table
        cols = [c for c in t.c if c.name != "outcome"]

        def read() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(
                    sa.select(*cols).where(self._mine()).order_by(t.c.position))]

        return self._retry(read)

    def outcomes(self) -> list[dict[str, Any]]:
        """The stored outcomes of the finished (done or failed) tasks, in build order, each
        with ``task_id``, ``state``, ``attempts`` and ``outcome``."""
        t = tasks_table

        def read() -> list[Any]:
            with self.engine.connect() as conn:
                return list(conn.execute(
                    sa.select(t.c.task_id, t.c.state, t.c.attempts, t.c.outcome)
                    .where(self._mine(), t.c.state.in_(("done", "failed")))
                    .order_by(t.c.position)).all())

        rows = self._retry(read)
        return [{"task_id": r.task_id, "state": r.state, "attempts": r.attempts,
                 "outcome": json.loads(r.outcome) if r.outcome else None} for r in rows]


class ClaimHeartbeat:
    """Refresh a claim from a background thread while the task is built.

    Use as a context manager. ``lost`` is set when the claim turned out to be another
    worker's (this one was presumed dead); a beat that fails although retried (see
    :meth:`BuildQueue.heartbeat`) is tried again at the next one.
    """

    def __init__(self, queue: BuildQueue, claim: Claim, interval: float | None = None):
        self.queue = queue
        self.claim = claim
        self.interval = interval if interval is not None else queue.heartbeat_interval
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"heartbeat {claim.task_id}")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.queue.heartbeat(self.claim):
                    self.lost.set()
                    return
            except Exception:  # noqa: S110 - a blip; a long outage costs the claim
                pass

    def __enter__(self) -> ClaimHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
