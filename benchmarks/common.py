"""Helpers shared by the benchmark and experiment scripts (the one module they import).

Paths: ``ROOT`` (the repository), ``RESULTS`` (``benchmarks/results``), ``EXPERIMENT_RESULTS``
(``benchmarks/experiments/results``) and ``DEFAULT_CORPUS`` (``../shared/corpus`` beside the
repository; every script takes ``--corpus`` to point elsewhere). Importing this module puts
the repository first on ``sys.path``, so the scripts run the working tree's ``automl_meta``.

Corpus choice: :func:`choose` (datasets from the corpus's ``manifest.csv``) and :func:`stem`
(the data a task comes from, so that variants of one dataset are left out together).

Leave-one-task-out on the bundled metabase (the experiments): :func:`held_out`,
:func:`choose_tasks`, :func:`task_specs`, :func:`context_for`, the stored cold search
(:func:`cold_scores`, :func:`cold_bests`, :func:`best_so_far`) and score handling
(:func:`at_stored_precision`, :func:`normalise_per_task`).

Meta-feature timing: :func:`make_table` (a seeded synthetic mixed-type table) and
:func:`measure_metafeatures`.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EXPERIMENT_RESULTS = ROOT / "benchmarks" / "experiments" / "results"
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def add_corpus_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--corpus DIR`` (default ``../shared/corpus`` relative to the repository)."""
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="corpus folder with manifest.csv (default: ../shared/corpus "
                             "beside the repository)")


def read_corpus_manifest(corpus: Path) -> pd.DataFrame:
    """The corpus's ``manifest.csv`` (name, file, task, target, n_rows, …), or exit saying
    where it was looked for."""
    path = Path(corpus) / "manifest.csv"
    if not path.exists():
        raise SystemExit(f"no corpus at {corpus} ({path} is missing); pass --corpus DIR")
    return pd.read_csv(path)


def choose(manifest: pd.DataFrame, n: int, min_rows: int = 0) -> pd.DataFrame:
    """``n`` corpus datasets of ``min_rows`` to 20 000 rows, half per task kind, spread over
    sizes (deterministic)."""
    m = manifest[(manifest.n_rows <= 20_000) & (manifest.n_rows >= min_rows)]
    m = m.sort_values("n_rows")
    picks = []
    for task in ("classification", "regression"):
        sub = m[m.task == task]
        idx = np.unique(np.linspace(0, len(sub) - 1, n // 2).round().astype(int))
        picks.append(sub.iloc[idx])
    return pd.concat(picks)


def stem(name: str) -> str:
    """The data a task comes from: drop variant suffixes (.version1, .orig, 19a, _2 …)."""
    base = name.split(".")[0].lower()
    return re.sub(r"[_-]?\d+[a-z]?$|[_-]?v(ersion)?\d+$", "", base) or base


def held_out(mb: Any, task_id: str) -> tuple[pd.Series, set[str], dict]:
    """One task left out: its row of ``tasks.csv`` (with ``task_id``), the ids of it and
    every variant of the same data (same name stem), and the meta-feature normalisation
    fitted on the tasks that remain."""
    from automl_meta.meta.neighbors import fit_normalisation

    tasks = mb.tasks.set_index("task_id")
    row = tasks.loc[task_id].copy()
    row["task_id"] = task_id
    s = stem(str(row["name"]))
    excluded = {t for t, name in tasks["name"].astype(str).items() if stem(name) == s}
    return row, excluded, fit_normalisation(mb.tasks[~mb.tasks["task_id"].isin(excluded)])


def choose_tasks(mb: Any, n: int) -> list[str]:
    """``n`` metabase tasks spread evenly over each task kind (sorted by id), the kinds
    interleaved so that a partial run is balanced."""
    from automl_meta.search.space import task_kind

    ok = mb.ok_tasks().sort_values("task_id")
    per_kind = []
    for kind in ("classification", "regression"):
        sub = ok[ok["task"].map(task_kind) == kind]
        k = min(len(sub), n // 2)
        idx = np.unique(np.linspace(0, len(sub) - 1, k).round().astype(int)) if k else []
        per_kind.append(list(sub.iloc[idx]["task_id"]))
    out = []
    for i in range(max(map(len, per_kind))):
        out += [ids[i] for ids in per_kind if i < len(ids)]
    return out


def best_so_far(scores: list[float | None], greater: bool, n: int) -> float | None:
    """The best finite score among the first ``n`` (None when there is none)."""
    vals = [s for s in scores[:n] if s is not None and np.isfinite(s)]
    if not vals:
        return None
    return max(vals) if greater else min(vals)


def cold_scores(mb: Any, task_id: str) -> list[float | None]:
    """The build's stored search on the task (the cold search with the build's seed): each
    trial's CV score in trial order, None where it did not complete."""
    return [None if r.state != "COMPLETE" else float(r.score) for r in
            mb.results[mb.results["task_id"] == task_id].sort_values("trial").itertuples()]


def cold_bests(mb: Any, task_id: str, greater: bool
               ) -> tuple[float | None, float | None, float]:
    """The best of the build's first 5 trials on the task (the zero-shot baseline), the
    best completed one of its trials 6 to 10, and the sign that makes greater better.

    TPE starts with 10 random trials, so trials 6 to 10 are a second, independent draw of
    "the best of 5 random configurations" (pruned ones have no score; they were below the
    running 75th percentile, so rarely the best): comparing a figure against both shows how
    much of it is the luck of one cold draw."""
    scores = cold_scores(mb, task_id)
    return (best_so_far(scores, greater, 5), best_so_far(scores[5:], greater, 5),
            1.0 if greater else -1.0)


def task_specs(mb: Any, corpus: Path | None = None) -> dict:
    """The build's own task loaders (same source, same target, same typing), read from
    ``corpus`` when given, else from the source folder recorded in the metabase."""
    from automl_meta.meta.builder.sources.directory import list_tasks

    src = mb.manifest.get("source", {})
    if src.get("type") != "dir":
        raise SystemExit("this script needs a metabase built from a local folder (--source dir)")
    path = Path(corpus) if corpus is not None else Path(src["path"])
    if not path.is_absolute():
        path = ROOT / path
    if not path.is_dir():
        raise SystemExit(f"no corpus at {path}; pass --corpus DIR")
    return {s.task_id: s for s in list_tasks(path)}


def context_for(row: pd.Series, mb: Any, spec: Any) -> tuple[Any, int]:
    """The EvalContext the build used for this task (same rows, folds, seed), and the seed."""
    from automl_meta.meta.builder.local import task_seed
    from automl_meta.search.prepare import prepare_search
    from automl_meta.search.space import load_space

    build = mb.manifest["build"]
    seed = task_seed(int(build["seed"]), row["task_id"])
    loaded = spec.load()
    prepared = prepare_search(loaded.dataset, row["metric"], seed, int(build["max_rows"]),
                              load_space(), folds=loaded.folds)
    return prepared.ctx, seed


def at_stored_precision(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``df`` with the scores in ``cols`` rounded to 8 significant digits, the precision of
    the metabase's results.csv, where the cold scores come from: the same CV score (e.g.
    0.62526316 vs 0.625263157...) is then a tie, not a 2e-9 win or loss that the per-task
    normalisation would blow up to a full point."""
    df = df.copy()
    df[cols] = df[cols].apply(pd.to_numeric, errors="coerce").map(
        lambda x: float(f"{x:.8g}") if np.isfinite(x) else x)
    return df


def normalise_per_task(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Each task's scores in ``cols`` scaled to [0, 1]: 0 = the worst of them, 1 = the best
    (a run with no score counts as the worst)."""
    norm = pd.DataFrame(index=df.index, columns=cols, dtype=float)
    for i, r in df.iterrows():
        sign = 1.0 if r["greater_is_better"] else -1.0
        v = pd.to_numeric(r[cols], errors="coerce").astype(float) * sign
        lo, hi = np.nanmin(v), np.nanmax(v)
        norm.loc[i] = ((v - lo) / (hi - lo)).fillna(0.0) if hi > lo else 1.0
    return norm


def make_table(rows: int = 100_000, cols: int = 100, task: str = "multiclass",
               seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A seeded synthetic mixed-type table and a target that depends on a few columns."""
    rng = np.random.default_rng(seed)
    shares = {"float": 0.60, "int": 0.15, "category": 0.10, "string": 0.10, "bool": 0.03}
    counts = {k: int(round(v * cols)) for k, v in shares.items()}
    counts["datetime"] = max(cols - sum(counts.values()), 0)
    data: dict[str, object] = {}
    for j in range(counts["float"]):
        kind = j % 3
        x = (rng.normal(j, 1 + j % 7, rows) if kind == 0
             else rng.lognormal(0, 1, rows) if kind == 1 else rng.uniform(-j, j + 1, rows))
        if j % 4 == 0:
            x[rng.random(rows) < 0.05] = np.nan
        data[f"f{j}"] = x
    for j in range(counts["int"]):
        data[f"i{j}"] = rng.integers(0, 10 + 20 * j, rows)
    for j in range(counts["category"]):
        k = 2 + (j * 3) % 29
        codes = rng.integers(-1 if j % 2 else 0, k, rows)
        data[f"c{j}"] = pd.Categorical.from_codes(codes, [f"v{v}" for v in range(k)])
    for j in range(counts["string"]):
        k = [3, 10, 50, 200][j % 4]
        vocab = np.array([f"s{v}" for v in range(k)], dtype=object)
        s = vocab[rng.integers(0, k, rows)]
        if j % 3 == 0:
            s[rng.random(rows) < 0.02] = None
        data[f"s{j}"] = s
    for j in range(counts["bool"]):
        data[f"b{j}"] = rng.random(rows) < 0.3
    for j in range(counts["datetime"]):
        data[f"d{j}"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(
            rng.integers(0, 10**8, rows), unit="s")
    X = pd.DataFrame(data)
    signal = np.nan_to_num(X["f0"].to_numpy()) + (X["c0"].cat.codes.to_numpy() == 1)
    if task == "regression":
        y = pd.Series(signal + rng.normal(0, 1, rows), name="target")
    else:
        n_classes = 2 if task == "binary" else 4
        edges = np.quantile(signal, np.linspace(0, 1, n_classes + 1)[1:-1])
        y = pd.Series(np.array([f"class{c}" for c in range(n_classes)])[
            np.searchsorted(edges, signal)], name="target")
    return X, y


def measure_metafeatures(rows: int = 100_000, cols: int = 100, repeats: int = 3,
            task: str = "multiclass", cpu: list[float] | None = None) -> list[float]:
    """Wall-clock seconds of ``repeats`` whole ``compute_metafeatures`` calls (first = cold).

    CPU seconds of the calls are appended to ``cpu`` when given.
    """
    from automl_meta.meta.features import compute_metafeatures

    X, y = make_table(rows, cols, task)
    times = []
    for r in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        compute_metafeatures(X, y, task, random_state=r)
        times.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
    return times
