"""The user's own history: every fit recorded, so that the next search starts from it.

A history is one SQLite file, ``history.sqlite``, in a folder: the user's data directory
(``platformdirs.user_data_dir("automl-meta")/history``), or the folder ``--history`` /
``AUTOML_META_HISTORY`` names (a CI job points it at a cached folder). It holds, per fit:

- the task: meta-features, a fingerprint of the schema (:func:`schema_fingerprint`: column
  names and kinds, target, task kind), shape, metric, best CV score, the final model's
  configuration;
- every trial: configuration, state, CV score, fit seconds, duration, origin.

No data values are stored: no rows, no class labels, no column statistics beyond the
meta-features. Appending is one SQLite transaction, so two fits that finish at the same
time (two CI jobs on one runner) both land, one after the other, and a reader never sees
half a run. A history holds at most :data:`MAX_RUNS` runs: appending drops the oldest.

:func:`as_metabase` turns a history into a :class:`~automl_meta.meta.metabase.Metabase`
(task ids ``history:<run>``), which the warm start merges with the bundled metabase
(:func:`merge_metabases`) and ``automl-meta history export`` writes as a metabase folder.
A history that cannot be read (truncated, not a history, another format version) raises
:class:`~automl_meta.errors.HistoryError`; callers report it and go on without it.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from automl_meta.defaults import HISTORY_ENV
from automl_meta.errors import HistoryError
from automl_meta.meta.metabase import RESULT_COLUMNS, TASK_COLUMNS, Metabase, config_id
from automl_meta.meta.neighbors import finite_or_none

__all__ = ["ENV_VAR", "FILE_NAME", "FORMAT_VERSION", "MAX_RUNS", "History", "Prior", "RunRecord",
           "as_metabase", "default_history_dir", "export_metabase", "merge_metabases",
           "resolve_history_dir", "schema_fingerprint"]

#: environment variable naming the history folder (``--history`` wins over it)
ENV_VAR = HISTORY_ENV
#: the history's file inside its folder
FILE_NAME = "history.sqlite"
#: the layout of the file; another version is refused (and reported), never rewritten
FORMAT_VERSION = 1
#: runs a history keeps; appending beyond drops the oldest
MAX_RUNS = 1000
#: trials kept per run (the best ones; the rest are summarised by the run's counts)
MAX_TRIALS_PER_RUN = 500
#: trials of each run the history contributes to the warm start as a prior task's results
#: (its best; all of them stay in the file for ``history show`` and ``export``)
TRIALS_AS_RESULTS = 20
#: seconds a writer waits for another writer's transaction
LOCK_TIMEOUT = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created TEXT NOT NULL, name TEXT, fingerprint TEXT NOT NULL,
    task TEXT NOT NULL, target TEXT, metric TEXT NOT NULL, greater_is_better INTEGER NOT NULL,
    n_rows INTEGER, n_features INTEGER, n_classes INTEGER, n_folds INTEGER,
    n_trials INTEGER, best_score REAL, best_config TEXT, final_config TEXT,
    metafeatures TEXT, search_space_version TEXT, automl_meta_version TEXT
);
CREATE TABLE IF NOT EXISTS configs (config_id TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, trial INTEGER NOT NULL,
    state TEXT NOT NULL, score REAL, fit_seconds REAL, duration REAL, origin TEXT,
    config_id TEXT NOT NULL REFERENCES configs(config_id),
    rank INTEGER NOT NULL,  -- 0: the run's best trial (complete ones first)
    PRIMARY KEY (run_id, trial)
);
CREATE INDEX IF NOT EXISTS trials_rank ON trials (rank);
CREATE INDEX IF NOT EXISTS runs_fingerprint ON runs (fingerprint);
"""
_RESULT_COLUMNS = ("task_id", "trial", "state", "score", "fit_seconds", "duration", "config_id")
_RUN_FIELDS = ("run_id", "created", "name", "fingerprint", "task", "target", "metric",
               "greater_is_better", "n_rows", "n_features", "n_classes", "n_folds", "n_trials",
               "best_score", "best_config", "final_config", "metafeatures",
               "search_space_version", "automl_meta_version")


def default_history_dir() -> Path:
    """The history folder when neither ``--history`` nor ``AUTOML_META_HISTORY`` says."""
    import platformdirs

    return Path(platformdirs.user_data_dir("automl-meta")) / "history"


def resolve_history_dir(history: str | os.PathLike[str] | bool | None) -> Path | None:
    """Where a fit's history lives: ``None`` or ``False`` means no history; ``True`` the
    folder of ``AUTOML_META_HISTORY``, else :func:`default_history_dir`; a path itself."""
    if history is None or history is False:
        return None
    if history is True:
        env = os.environ.get(ENV_VAR)
        return Path(env).expanduser() if env else default_history_dir()
    return Path(history).expanduser()


def schema_fingerprint(columns: Mapping[str, str], target: str, task: str) -> str:
    """SHA-256 (16 hex digits) of a table's schema: input column names with their kinds
    (``"dropped"`` for columns the model does not use), the target and the task kind.
    Two samples of the same table have the same fingerprint; the row count does not
    enter."""
    from automl_meta.data.dataset import task_kind

    doc = {"columns": sorted([str(k), str(v)] for k, v in columns.items()),
           "target": str(target), "task": task_kind(task)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


class Prior(NamedTuple):
    """A configuration from an earlier fit of the same table, and what it cost there."""

    config: dict[str, Any]
    origin: str
    score: float | None
    duration: float  # seconds of the whole trial (all its folds)
    n_rows: int  # rows of that fit
    n_folds: int  # CV folds of that fit

    def seconds_for(self, n_rows: int, n_folds: int) -> float:
        """The trial's duration scaled to a fit on ``n_rows`` rows with ``n_folds`` folds."""
        rows = n_rows / max(self.n_rows, 1)
        return self.duration * max(rows, 1.0) * n_folds / max(self.n_folds, 1)


@dataclass
class RunRecord:
    """What the history keeps of one fit."""

    run_id: str
    name: str
    fingerprint: str
    task: str
    target: str
    metric: str
    greater_is_better: bool
    n_rows: int
    n_features: int
    n_classes: int
    n_folds: int
    best_score: float | None
    best_config: dict[str, Any] | None
    final_config: dict[str, Any] | None
    metafeatures: dict[str, float]
    search_space_version: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    created: str = ""
    automl_meta_version: str = ""
    n_trials: int = 0

    @staticmethod
    def new_id(sha256: str = "") -> str:
        """A run id: UTC time to the microsecond, and the data's checksum prefix."""
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        return f"{now}-{sha256[:8] or 'nodata'}"


class History:
    """A history file: append runs, list, show, forget them, load them as a metabase.

    Parameters
    ----------
    folder : str or Path
        The history folder (created on the first append).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / FILE_NAME

    def __repr__(self) -> str:
        return f"History({str(self.folder)!r})"

    # ----------------------------------------------------------------- connection
    @contextlib.contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        if not write and not self.path.exists():
            raise FileNotFoundError(self.path)
        if write:
            self.folder.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT, isolation_level=None)
        else:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                  timeout=LOCK_TIMEOUT, isolation_level=None)
        try:
            con.execute("PRAGMA foreign_keys = ON")
            yield con
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{self.path}: not a readable history ({exc}); move it "
                               f"away or run `automl-meta history forget --all`") from None
        finally:
            con.close()

    def _check(self, con: sqlite3.Connection) -> None:
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is None:
            raise HistoryError(f"{self.path}: not an automl-meta history")
        if int(row[0]) != FORMAT_VERSION:
            raise HistoryError(f"{self.path}: history format {row[0]} is not supported "
                               f"(this automl-meta writes {FORMAT_VERSION})")

    def exists(self) -> bool:
        return self.path.exists()

    # --------------------------------------------------------------------- writing
    def append(self, record: RunRecord, max_runs: int = MAX_RUNS) -> None:
        """Add one run (one transaction); drop the oldest runs beyond ``max_runs``."""
        trials = sorted(record.trials, key=lambda t: _sort_key(
            t.get("state"), t.get("score"), record.greater_is_better))
        trials = trials[:MAX_TRIALS_PER_RUN]
        values = {
            "run_id": record.run_id,
            "created": record.created or _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "name": record.name, "fingerprint": record.fingerprint, "task": record.task,
            "target": record.target, "metric": record.metric,
            "greater_is_better": int(bool(record.greater_is_better)),
            "n_rows": int(record.n_rows), "n_features": int(record.n_features),
            "n_classes": int(record.n_classes), "n_folds": int(record.n_folds),
            "n_trials": int(record.n_trials or len(record.trials)),
            "best_score": finite_or_none(record.best_score),
            "best_config": _dumps(record.best_config), "final_config": _dumps(record.final_config),
            "metafeatures": json.dumps(
                {k: finite_or_none(v) for k, v in record.metafeatures.items()}, sort_keys=True),
            "search_space_version": record.search_space_version,
            "automl_meta_version": record.automl_meta_version or _version()}
        with self._connect(write=True) as con:
            con.execute("BEGIN IMMEDIATE")  # one writer at a time; readers go on
            try:
                if _has_table(con, "meta"):
                    self._check(con)
                elif _has_table(con, None):  # some other SQLite database: leave it alone
                    raise HistoryError(f"{self.path}: not an automl-meta history")
                else:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            con.execute(statement)
                    con.execute("INSERT INTO meta VALUES ('format', 'automl-meta history')")
                    con.execute("INSERT INTO meta VALUES ('format_version', ?)",
                                (str(FORMAT_VERSION),))
                con.execute(f"INSERT INTO runs ({', '.join(_RUN_FIELDS)}) VALUES "
                            f"({', '.join('?' * len(_RUN_FIELDS))})",
                            [values[f] for f in _RUN_FIELDS])
                ids = [config_id(t["config"]) for t in trials]
                con.executemany("INSERT OR IGNORE INTO configs VALUES (?, ?)",
                                [(cid, _dumps(t["config"]))
                                 for cid, t in zip(ids, trials, strict=True)])
                con.executemany(
                    "INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(record.run_id, int(t["trial"]), str(t["state"]),
                      finite_or_none(t.get("score")), finite_or_none(t.get("fit_seconds")),
                      finite_or_none(t.get("duration")),
                      str(t.get("origin", "")), cid, rank)
                     for rank, (cid, t) in enumerate(zip(ids, trials, strict=True))])
                dropped = con.execute(
                    "DELETE FROM runs WHERE run_id NOT IN (SELECT run_id FROM runs "
                    "ORDER BY created DESC, run_id DESC LIMIT ?)", (int(max_runs),)).rowcount
                if dropped:
                    _drop_unused_configs(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def forget(self, run_ids: Sequence[str] | None = None) -> int:
        """Remove the named runs (all of them with ``None``); returns how many went."""
        if not self.path.exists():
            return 0
        if run_ids is None:  # also the way out of a history that cannot be read
            try:
                n = len(self.runs())
            except HistoryError:
                n = 0
            self.path.unlink()
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            return int(n)
        with self._connect(write=True) as con:
            self._check(con)
            con.execute("BEGIN IMMEDIATE")
            n = 0
            for run_id in run_ids:
                n += con.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)).rowcount
            _drop_unused_configs(con)
            con.execute("COMMIT")
        return n

    # --------------------------------------------------------------------- reading
    def runs(self) -> pd.DataFrame:
        """One row per run, newest first (empty when there is no history yet)."""
        if not self.path.exists():
            return pd.DataFrame(columns=list(_RUN_FIELDS))
        with self._connect() as con:
            self._check(con)
            frame = pd.read_sql_query("SELECT * FROM runs ORDER BY created DESC, run_id DESC",
                                      con)
        return frame

    def trials(self, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """The trials of the named runs (all runs by default)."""
        if not self.path.exists():
            return pd.DataFrame(columns=["run_id", "trial", "state", "score", "fit_seconds",
                                         "duration", "origin", "config"])
        with self._connect() as con:
            self._check(con)
            query = ("SELECT t.run_id, t.trial, t.state, t.score, t.fit_seconds, t.duration, "
                     "t.origin, c.config FROM trials t JOIN configs c USING (config_id)")
            if run_ids is None:
                return pd.read_sql_query(query + " ORDER BY t.run_id, t.trial", con)
            marks = ", ".join("?" * len(run_ids))
            return pd.read_sql_query(query + f" WHERE t.run_id IN ({marks}) ORDER BY t.run_id, "
                                     "t.trial", con, params=list(run_ids))

    def run(self, run_id: str) -> dict[str, Any]:
        """One run with its trials; a unique prefix of the id is enough."""
        runs = self.runs()
        match = runs[runs["run_id"].str.startswith(run_id)] if len(runs) else runs
        if len(match) != 1:
            raise KeyError(run_id if len(match) == 0 else
                           f"{run_id} (matches {len(match)} runs: give more of the id)")
        row = match.iloc[0].to_dict()
        for key in ("best_config", "final_config", "metafeatures"):
            row[key] = json.loads(row[key]) if isinstance(row[key], str) else None
        trials = self.trials([row["run_id"]])
        trials["config"] = trials["config"].map(json.loads)
        row["trials"] = trials.to_dict("records")
        return row

    def same_schema(self, fingerprint: str, task: str, space_version: str,
                    n: int, metric: str | None = None) -> list[Prior]:
        """The best configurations of earlier runs on a table with this schema.

        Newest run first, each run's complete trials best first; at most ``n`` distinct
        configurations, as :class:`Prior` records (configuration, ``"history:<run>"``, CV
        score, and what the trial cost there). Of the trials of one run that scored exactly
        alike (on the same folds: almost surely the same predictions, e.g. a linear model
        whose regularisation no longer matters) only the first is taken. ``metric``: only
        runs scored with that metric.
        """
        if not self.path.exists() or n <= 0:
            return []
        with self._connect() as con:
            self._check(con)
            runs = con.execute(
                "SELECT run_id, greater_is_better, n_rows, n_folds FROM runs WHERE "
                "fingerprint = ? AND task = ? AND search_space_version = ? "
                + ("AND metric = ? " if metric is not None else "")
                + "ORDER BY created DESC, run_id DESC",
                (fingerprint, task, space_version,
                 *(() if metric is None else (metric,)))).fetchall()
            out: list[Prior] = []
            seen: set[str] = set()
            for run_id, gib, n_rows, n_folds in runs:
                scores: set[float] = set()
                rows = con.execute(
                    "SELECT c.config, t.score, t.duration FROM trials t "
                    "JOIN configs c USING (config_id) "
                    "WHERE t.run_id = ? AND t.state = 'COMPLETE' AND t.score IS NOT NULL "
                    f"ORDER BY t.score {'DESC' if gib else 'ASC'}, t.trial",
                    (run_id,)).fetchall()
                for text, score, duration in rows:
                    config = json.loads(text)
                    cid = config_id(config)
                    if cid in seen or round(score, 12) in scores:
                        continue
                    seen.add(cid)
                    scores.add(round(score, 12))
                    out.append(Prior(config, f"history:{run_id}", score, duration or 0.0,
                                     int(n_rows or 0), int(n_folds or 0)))
                    if len(out) >= n:
                        return out
        return out


def as_metabase(history: History, space_version: str | None = None,
                per_run: int = TRIALS_AS_RESULTS) -> Metabase:
    """The history's runs as a metabase: one task per run (id ``history:<run>``, source
    ``history``), its ``per_run`` best trials as results (complete ones first). Runs of
    another search-space version are left out; runs without meta-features are kept with
    status ``no-metafeatures`` (not neighbours)."""
    empty = Metabase(pd.DataFrame(columns=TASK_COLUMNS), {},
                     pd.DataFrame(columns=RESULT_COLUMNS), {}, str(history.folder))
    if not history.exists():
        return empty
    where, params = ("WHERE search_space_version = ?", [space_version]) \
        if space_version is not None else ("", [])
    with history._connect() as con:
        history._check(con)
        runs = con.execute(
            "SELECT run_id, name, fingerprint, task, target, metric, greater_is_better, "
            "n_rows, n_features, n_classes, n_folds, n_trials, best_score, best_config, "
            f"metafeatures, created FROM runs {where}", params).fetchall()
        results = con.execute(
            "SELECT t.run_id, t.trial, t.state, t.score, t.fit_seconds, t.duration, "
            "t.config_id, c.config FROM trials t JOIN configs c USING (config_id) "
            f"WHERE t.rank < ? AND t.run_id IN (SELECT run_id FROM runs {where})",
            [int(per_run), *params]).fetchall()
    configs = _JsonConfigs({row[6]: row[7] for row in results})
    if not runs:
        return empty
    tasks = []
    for (run_id, name, fingerprint, task, target, metric, gib, n_rows, n_features, n_classes,
         n_folds, n_trials, best_score, best_config, metafeatures, created) in runs:
        mf = json.loads(metafeatures) if metafeatures else {}
        tasks.append({
            "task_id": f"history:{run_id}", "name": name or run_id, "openml_id": None,
            "source": "history", "target": target, "task": task,
            "status": "ok" if mf else "no-metafeatures", "error": "",
            "n_rows": n_rows, "n_features": n_features, "n_classes": n_classes,
            "search_rows": n_rows, "n_folds": n_folds, "metric": metric,
            "greater_is_better": bool(gib), "n_trials": n_trials, "best_score": best_score,
            "best_config_id": config_id(json.loads(best_config)) if best_config else None,
            "search_seconds": None, "fingerprint": fingerprint, "created": created,
            **{k: (math.nan if v is None else v) for k, v in mf.items()}})
    result_frame = pd.DataFrame([r[:7] for r in results], columns=[*_RESULT_COLUMNS])
    result_frame["task_id"] = "history:" + result_frame["task_id"].astype(str)
    result_frame = result_frame[RESULT_COLUMNS]
    manifest = {"source": {"type": "history", "path": str(history.folder)},
                "search_space_version": space_version}
    return Metabase(pd.DataFrame(tasks), configs, result_frame, manifest, str(history.folder))


def export_metabase(history: History, output: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the history as a metabase folder (new or empty); returns its manifest.

    Its tasks are the runs of this install's search space, with their meta-features and
    trials; the manifest holds the normalisation and portfolio derived from them, as a
    built metabase's does."""
    from automl_meta.errors import UsageError
    from automl_meta.meta.builder.local import all_metafeature_names, derived_statistics
    from automl_meta.meta.features import COMPUTED_ON
    from automl_meta.meta.metabase import as_stored, write_metabase
    from automl_meta.search.space import load_space

    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty folder")
    space = load_space()
    mb = as_metabase(history, space.version, per_run=MAX_TRIALS_PER_RUN)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat()
    manifest: dict[str, Any] = {
        "status": "complete", "created": now, "updated": now,
        "built_with": f"automl-meta {_version()}", "command": "automl-meta history export",
        "source": {"type": "history", "path": str(history.folder)},
        "search_space_version": space.version,
        "metafeatures": {"names": all_metafeature_names(), "computed_on": COMPUTED_ON}}
    stored = as_stored(mb.tasks, mb.configs, mb.results)
    manifest.update(derived_statistics(*stored, manifest))
    written = write_metabase(out, *stored, manifest)
    from automl_meta.meta.surrogate import store_surrogates

    written["surrogates"] = store_surrogates(out)
    return written


def merge_metabases(base: Metabase, extra: Metabase) -> Metabase:
    """``base`` with the tasks, configurations and results of ``extra`` added.

    The manifest (normalisation, portfolio, provenance) stays ``base``'s: what the history
    adds never changes how the bundled metabase is read."""
    if extra.tasks.empty:
        return base
    tasks = pd.concat([base.tasks, extra.tasks], ignore_index=True, sort=False)
    results = pd.concat([base.results, extra.results], ignore_index=True, sort=False)
    configs = collections.ChainMap(base.configs, extra.configs)  # nothing parsed yet
    return Metabase(tasks, configs, results, dict(base.manifest), base.path)  # type: ignore[arg-type]


class _JsonConfigs(Mapping[str, dict[str, Any]]):
    """Configurations by id, kept as their JSON text and parsed when first looked up (the
    warm start reads a few of the history's thousands)."""

    def __init__(self, texts: dict[str, str]) -> None:
        self._texts = texts
        self._parsed: dict[str, dict[str, Any]] = {}

    def __getitem__(self, key: str) -> dict[str, Any]:
        if key not in self._parsed:
            self._parsed[key] = json.loads(self._texts[key])
        return self._parsed[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def __contains__(self, key: object) -> bool:
        return key in self._texts


def _drop_unused_configs(con: sqlite3.Connection) -> None:
    con.execute("DELETE FROM configs WHERE config_id NOT IN (SELECT config_id FROM trials)")


def _has_table(con: sqlite3.Connection, name: str | None) -> bool:
    """Whether the database has a table of that name (any table, for ``None``)."""
    if name is None:
        row = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone()
    else:
        row = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                          (name,)).fetchone()
    return row is not None


def _sort_key(state: Any, score: Any, greater_is_better: bool) -> tuple[int, int, float]:
    """Best first: complete trials, then those with a score, by score."""
    value = finite_or_none(score)
    if value is None:
        return (int(state != "COMPLETE"), 1, 0.0)
    return (int(state != "COMPLETE"), 0, -value if greater_is_better else value)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _version() -> str:
    from automl_meta._version import __version__

    return __version__
