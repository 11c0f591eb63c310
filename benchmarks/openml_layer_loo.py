"""Does the openml-runs layer help the warm start? Leave one task out through the CLI
(issue #21).

The layer: ``automl-meta build-metabase ../shared/openml-runs --source openml-runs
--output DIR`` imports published OpenML random-forest runs (flow 6969, 94 OpenML tasks) into
a copy of the bundled metabase as prior tasks of source ``openml-run`` (OpenML's qualities
as meta-features; a task that is the same data as a metabase task carries its id in
``linked_task_id``). It is built once by this script, through that command, into
``benchmarks/work/openml_layer_loo/metabase-layered`` (git-ignored), and rebuilt only when
the bundled metabase, the run exports, the flow mappings or the importer change.

Tasks
-----
Corpus classification tasks (the layer holds classification tasks only) of at least
``--min-rows`` rows (default 300; the layer's tasks have 500 to 98 050), one per data
source (variants such as ``anneal`` / ``anneal.orig`` count once, :func:`tables.stem`).
First every data source with a linked duplicate in the layer (a layer task whose
``linked_task_id`` is the task or one of its variants, e.g. ``hypothyroid`` through
``sick``): these corpus tasks belong to the population the layer was drawn from (OpenML100),
so the layer's other tasks are their nearest analogues; the duplicate itself is left out.
With more than ``--tasks`` of them, the pick is spread evenly over their sizes. The
remaining places go to the other classification tasks, spread evenly over sizes by
:func:`tables.choose_corpus`. The tasks run from the smallest to the largest; with the
shipped data and the defaults, 30 tasks of 303 to 20 000 rows, 19 with a linked duplicate.

Per task
--------
A fixed 75/25 split (:func:`tables.split_to_csv`, seeded, stratified) and two reduced copies
of the metabases (:func:`tables.metabase_without`, the stored performance models refitted):

- arm ``without``: the bundled metabase without the task and its variants
  (:func:`tables.variants_in_metabase`);
- arm ``with``: the layered metabase without the same tasks, the layer's tasks linked to
  them (``linked_task_id``) and any layer task the variant rule matches (same name stem or
  same number of rows).

Each arm runs ``python -m automl_meta fit train.csv --target T --task classification
--output RUN --json --quiet --metabase COPY --seed 0 --no-history`` with a temporary HOME, in
two modes:

- ``trials``: ``--n-trials 25 --n-jobs 1``; from ``leaderboard.csv``, the best CV score of
  the complete trials among the first 5, 10 and 25 trials in trial-number order;
- ``budget``: ``--time-budget 10`` (the default ``--n-jobs``); the best CV score at the end.

In both modes, the test accuracy of the final model (``automl-meta predict RUN test.csv``);
the warm-start trials (``origin`` other than ``tpe``) and their families; which of them came
from the layer (``learned:<task id>`` whose task is of source ``openml-run``); suggestions
skipped for this data (``report.json``'s ``warm_start.log``); the nearest prior tasks
(``warm_start.neighbors``) and how many are layer tasks; the best CV score per model family.
Both arms of a task see the same rows and folds (same data, same seed), so their CV scores
compare directly. The arms run next to each other, their order alternating from task to
task, so that a change in machine load hits both alike; the 10 s mode still depends on the
load (run it on an otherwise idle machine), the 25-trial mode does not (one worker, no time
limit).

    python benchmarks/openml_layer_loo.py --tasks 30                 # resumable
    python benchmarks/openml_layer_loo.py --tasks 30 --max-minutes 60  # stop, rerun later
    python benchmarks/openml_layer_loo.py --summary-only

Results: ``benchmarks/results/openml_layer_loo.csv`` (one row per task, arm and mode,
appended as each finishes; a rerun skips the rows there, failed ones too unless
``--retry-failed``; ``--max-minutes`` starts no new fit after that time) and
``openml_layer_loo.md`` (a per-task table, the summary per mode and budget, by family and
by task group, and a plain verdict computed from the rows).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import tables  # noqa: E402  (benchmarks/tables.py)

RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work" / "openml_layer_loo"
BUNDLED = ROOT / "metabase"
DEFAULT_RUNS = ROOT.parent / "shared" / "openml-runs"
LAYER_SOURCE = "openml-run"  # tasks.csv ``source`` of the layer's tasks
ARMS = ("without", "with")
MODES = ("trials", "budget")
#: a difference of best scores at most this large counts as a tie
TIE = 1e-9
#: per-task differences at least this large are listed by name in the summary
NOTABLE = 0.005

COLUMNS = [
    # what ran
    "name", "arm", "mode", "n_trials", "budget", "checkpoints", "seed", "layer_key", "commit",
    # the task
    "corpus_file", "task_type", "n_classes", "rows", "n_train", "n_test", "features",
    "linked", "linked_layer_tasks",
    # the metabase copy
    "metabase_tasks", "metabase_layer_tasks", "excluded_tasks", "excluded_layer_tasks",
    # scores
    "best_cv_at", "best_cv", "test_accuracy",
    # the search
    "trials", "complete", "stop_reason", "fit_s", "elapsed_s",
    "best_family", "best_origin", "best_from_layer", "final_family", "family_best",
    # the warm start
    "first_origin", "warm_trials", "layer_trials", "warm_families", "layer_families",
    "warm_skipped", "layer_skipped", "layer_trials_at",
    "neighbors", "layer_neighbors", "nearest", "nearest_distance", "nearest_is_layer",
    "first_layer_neighbor_rank", "neighbor_ids",
    "status", "error",
]


# ---------------------------------------------------------------------------- utilities
def cli_env(home: Path) -> dict[str, str]:
    """The environment of a command-line call: no ``AUTOML_META*`` settings, HOME and the
    XDG folders in ``home``, the working tree's ``automl_meta`` first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_META")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "share"),
               XDG_CACHE_HOME=str(home / "cache"), XDG_CONFIG_HOME=str(home / "config"),
               MPLCONFIGDIR=str(home / "mpl"),
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def run_cli(python: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``python -m automl_meta ARGV`` with a temporary HOME; raises on a non-zero exit.

    Parameters
    ----------
    python : str
        The interpreter.
    argv : list of str
        The arguments after ``automl_meta``.
    timeout : float
        Seconds before the process is killed.

    Returns
    -------
    subprocess.CompletedProcess
    """
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="home-", dir=WORK) as home:
        p = subprocess.run([python, "-m", "automl_meta", *argv], env=cli_env(Path(home)),
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        tail = (p.stderr.strip() or p.stdout.strip()).splitlines()[-3:]
        raise RuntimeError(f"{argv[0]} exit {p.returncode}: {' | '.join(tail)}")
    return p


def sha256_of(paths: list[Path], extra: str = "") -> str:
    """SHA-256 over the names and contents of ``paths`` (folders: their files) and
    ``extra``."""
    h = hashlib.sha256(extra.encode())
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def code_version() -> str:
    """The repository's commit, ``+dirty`` when ``automl_meta/`` or ``configs/`` has
    uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "automl_meta", "configs"],
                               cwd=ROOT, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("+dirty" if dirty else "")


def is_layer_source(source: Any) -> bool:
    """Whether a ``tasks.csv`` ``source`` is the openml-runs layer's."""
    from automl_meta.meta.metabase import task_layer

    return task_layer(source) == LAYER_SOURCE


# ---------------------------------------------------------------------- layered metabase
def layered_metabase(runs: Path, python: str, rebuild: bool = False) -> tuple[Path, str]:
    """The bundled metabase with the openml-runs layer, built once through the CLI.

    A copy of the bundled metabase gets the layer from ``build-metabase RUNS --source
    openml-runs --output COPY``; the result is kept in ``WORK/metabase-layered`` with the
    key of its inputs, and rebuilt when the key changes.

    Parameters
    ----------
    runs : Path
        The folder of run exports and ``task_qualities.json``.
    python : str
        The interpreter to run the CLI with.
    rebuild : bool
        Build again even when the cached one is current.

    Returns
    -------
    path : Path
        The layered metabase.
    key : str
        The first 12 hex digits of the key (bundled metabase, run exports, flow mappings,
        importer).
    """
    key = sha256_of([BUNDLED / "manifest.json", runs, ROOT / "configs" / "flows",
                     ROOT / "automl_meta" / "meta" / "builder" / "sources"])[:12]
    dest, stamp = WORK / "metabase-layered", WORK / "metabase-layered.key"
    if (not rebuild and (dest / "manifest.json").exists() and stamp.exists()
            and stamp.read_text().strip() == key):
        return dest, key
    tmp = WORK / "metabase-layered.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(BUNDLED, tmp)
    t0 = time.monotonic()
    print(f"building the layered metabase from {runs} (key {key}) ...", flush=True)
    p = run_cli(python, ["build-metabase", str(runs), "--source", "openml-runs",
                         "--output", str(tmp)], timeout=1800)
    (WORK / "metabase-layered.log").write_text(p.stdout + p.stderr)
    tasks = pd.read_csv(tmp / "tasks.csv", low_memory=False)
    n_layer = int(tasks["source"].map(is_layer_source).sum())
    if not n_layer:
        raise SystemExit(f"the layer build wrote no task of source {LAYER_SOURCE}: see "
                         f"{WORK / 'metabase-layered.log'}")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    stamp.write_text(key + "\n")
    print(f"layered metabase: {n_layer} layer tasks, "
          f"{int(tasks.get('linked_task_id', pd.Series(dtype=str)).notna().sum())} linked, "
          f"{time.monotonic() - t0:.1f} s", flush=True)
    return dest, key


def linked_by_task(layered_tasks: pd.DataFrame) -> dict[str, list[str]]:
    """Metabase task id -> the layer tasks linked to it."""
    out: dict[str, list[str]] = {}
    if "linked_task_id" not in layered_tasks:
        return out
    layer = layered_tasks[layered_tasks["source"].map(is_layer_source)]
    for tid, linked in zip(layer["task_id"].astype(str), layer["linked_task_id"],
                           strict=True):
        if isinstance(linked, str) and linked:
            out.setdefault(linked, []).append(tid)
    return out


# ------------------------------------------------------------------------------- tasks
def choose_tasks(corpus: Path, n: int, min_rows: int, bundled_tasks: pd.DataFrame,
                 layered_tasks: pd.DataFrame) -> list[tuple[tables.Table, list[str]]]:
    """The classification tasks of the run, each with its linked layer tasks (see the
    module docstring: data sources with a linked duplicate first, then the others spread
    over sizes), smallest first.

    Parameters
    ----------
    corpus : Path
    n : int
        Number of tasks.
    min_rows : int
    bundled_tasks, layered_tasks : DataFrame
        ``tasks.csv`` of the bundled and of the layered metabase.

    Returns
    -------
    list of (Table, list of str)
    """
    links = linked_by_task(layered_tasks)
    cls = [t for t in tables.corpus_tables(corpus)
           if t.kind == "classification" and t.n_rows >= min_rows]

    def linked_of(table: tables.Table) -> list[str]:
        variants = tables.variants_in_metabase(bundled_tasks, table)
        return sorted({lt for v in variants for lt in links.get(v, [])})

    by_stem: dict[str, list[tables.Table]] = {}
    for t in sorted(cls, key=lambda t: (t.n_rows, t.name)):
        by_stem.setdefault(tables.stem(t.name), []).append(t)
    linked_pool: list[tables.Table] = []
    for variants in by_stem.values():
        if any(linked_of(t) for t in variants):
            own = [t for t in variants if t.corpus_file.removesuffix(".arff.gz") in links]
            linked_pool.append((own or variants)[0])
    linked_pool.sort(key=lambda t: (t.n_rows, t.name))
    if len(linked_pool) > n:
        idx = np.unique(np.linspace(0, len(linked_pool) - 1, n).round().astype(int))
        linked_pool = [linked_pool[i] for i in idx]
    picks = list(linked_pool[:n])
    rest = n - len(picks)
    if rest > 0:
        taken = {tables.stem(t.name) for t in picks}
        others = [t for t in cls if tables.stem(t.name) not in taken]
        # choose_corpus gives ceil(k/2) classification tasks of k (and no regression task
        # here, there is none in ``others``): ask for 2 * rest
        picks += tables.choose_corpus(others, 2 * rest, min_rows)[:rest]
    picks.sort(key=lambda t: (t.n_rows, t.name))
    return [(t, linked_of(t)) for t in picks]


def slug(name: str) -> str:
    """A folder name for a task."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def prepare_task(table: tables.Table, args: argparse.Namespace, layered: Path,
                 layer_key: str) -> dict[str, Any]:
    """The split and the two reduced metabases of a task, cached in its work folder.

    Returns
    -------
    dict
        ``dir``, ``train``, ``test``, ``info`` (of the split), ``metabase`` (arm -> path)
        and ``facts`` (arm -> what the copy holds and leaves out).
    """
    from automl_meta.meta.metabase import load_metabase

    work = WORK / "tasks" / slug(table.name)
    stamp = work / "prepared.json"
    want = {"layer_key": layer_key, "seed": args.seed,
            "bundled": sha256_of([BUNDLED / "manifest.json"])[:12]}
    if stamp.exists():
        done = json.loads(stamp.read_text())
        if all(done.get(k) == v for k, v in want.items()):
            return done | {"dir": work, "train": work / "data" / "train.csv",
                           "test": work / "data" / "test.csv",
                           "metabase": {a: work / f"mb-{a}" for a in ARMS}}
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    train, test, info = tables.split_to_csv(table, args.corpus, work / "data", seed=args.seed)
    bundled_tasks = load_metabase(BUNDLED).tasks
    layered_tasks = load_metabase(layered).tasks
    excluded = {"without": tables.variants_in_metabase(bundled_tasks, table),
                "with": tables.variants_in_metabase(layered_tasks, table)}
    facts: dict[str, dict[str, Any]] = {}
    for arm, source in (("without", BUNDLED), ("with", layered)):
        tmp = work / f"mb-{arm}.tmp"
        tables.metabase_without(excluded[arm], tmp, source=source)
        tmp.rename(work / f"mb-{arm}")
        kept = pd.read_csv(work / f"mb-{arm}" / "tasks.csv", low_memory=False)
        src = layered_tasks if arm == "with" else bundled_tasks
        dropped = src[~src["task_id"].astype(str).isin(set(kept["task_id"].astype(str)))]
        dropped_layer = dropped[dropped["source"].map(is_layer_source)]
        facts[arm] = {
            "metabase_tasks": int((kept["task"].isin(["binary", "multiclass"])).sum()),
            "metabase_layer_tasks": int(kept["source"].map(is_layer_source).sum()),
            "excluded_tasks": int(len(dropped) - len(dropped_layer)),
            "excluded_layer_tasks": ";".join(sorted(dropped_layer["task_id"].astype(str)))}
    # the same prior tasks of the bundled metabase are left out in both arms
    if facts["with"]["excluded_tasks"] != facts["without"]["excluded_tasks"]:
        raise RuntimeError("the two arms leave out different bundled tasks: "
                           f"{facts['without']['excluded_tasks']} against "
                           f"{facts['with']['excluded_tasks']}")
    done = want | {"info": info, "facts": facts}
    stamp.write_text(json.dumps(done, indent=1))
    return done | {"dir": work, "train": train, "test": test,
                   "metabase": {a: work / f"mb-{a}" for a in ARMS}}


# ---------------------------------------------------------------------------- one fit
def labels_equal(truth: pd.Series, pred: pd.Series) -> np.ndarray:
    """Element-wise equality of true and predicted labels read back from CSV (numbers
    compared as numbers, so ``1`` equals ``1.0``)."""
    a = truth.astype(str).str.strip().to_numpy()
    b = pred.astype(str).str.strip().to_numpy()
    na = pd.to_numeric(pd.Series(a), errors="coerce")
    nb = pd.to_numeric(pd.Series(b), errors="coerce")
    if na.notna().all() and nb.notna().all():
        return np.isclose(na.to_numpy(float), nb.to_numpy(float))
    return a == b


def test_accuracy(python: str, run: Path, test: Path, target: str) -> float:
    """Accuracy of the run's final model on ``test`` through ``automl-meta predict``."""
    pred_file = run.parent / f"{run.name}-pred.csv"
    run_cli(python, ["predict", str(run), str(test), "--output", str(pred_file)], timeout=600)
    truth = pd.read_csv(test, dtype=str, keep_default_na=False)[target]
    pred = pd.read_csv(pred_file, dtype=str, keep_default_na=False)[target]
    if len(truth) != len(pred):
        raise RuntimeError(f"predict wrote {len(pred)} rows for {len(truth)}")
    pred_file.unlink()
    return float(labels_equal(truth, pred).mean())


def source_task(origin: str) -> str:
    """The prior task a warm-start origin names (``learned:<task>`` -> ``<task>``)."""
    return origin.split(":", 1)[1] if ":" in origin else ""


def best_of(scores: pd.Series, greater: bool) -> float | None:
    """The best of ``scores`` (``None`` when empty)."""
    s = scores.dropna()
    if s.empty:
        return None
    return float(s.max() if greater else s.min())


def fit_row(table: tables.Table, prep: dict[str, Any], arm: str, mode: str,
            args: argparse.Namespace, layer_ids: set[str]) -> dict[str, Any]:
    """One fit through the CLI and what the row records of it (see ``COLUMNS``)."""
    run = prep["dir"] / f"run-{arm}-{mode}"
    shutil.rmtree(run, ignore_errors=True)
    argv = ["fit", str(prep["train"]), "--target", table.target, "--task", "classification",
            "--output", str(run), "--json", "--quiet", "--metabase",
            str(prep["metabase"][arm]), "--seed", str(args.seed), "--no-history"]
    if mode == "trials":
        argv += ["--n-trials", str(args.n_trials), "--n-jobs", "1"]
        timeout = args.fit_timeout
    else:
        argv += ["--time-budget", f"{args.budget:g}"]
        timeout = 4 * args.budget + 120
    t0 = time.monotonic()
    p = run_cli(args.python, argv, timeout=timeout)
    wall = time.monotonic() - t0
    doc = json.loads(p.stdout)
    greater = bool(doc["greater_is_better"])
    lb = pd.read_csv(run / "leaderboard.csv").sort_values("trial").reset_index(drop=True)
    lb["origin"] = lb["origin"].fillna("").astype(str)
    complete = lb["state"] == "COMPLETE"
    warm = lb["origin"] != "tpe"
    from_layer = lb["origin"].map(lambda o: source_task(o) in layer_ids)

    def is_layer(tid: str) -> bool:
        return tid in layer_ids

    checkpoints = args.checkpoints if mode == "trials" else []
    at = {k: best_of(lb.head(k).loc[complete.head(k), "score"], greater) for k in checkpoints}
    layer_at = {k: int(from_layer[:k].sum()) for k in checkpoints}
    skipped = [m.group(1) for line in doc.get("warm_start", {}).get("log", [])
               if (m := re.match(r"skipped (\S+:\S+) ", str(line)))]
    nbs = doc.get("warm_start", {}).get("neighbors") or []
    nb_ids = [str(n.get("task_id")) for n in nbs]
    layer_ranks = [i + 1 for i, t in enumerate(nb_ids) if is_layer(t)]
    best = doc.get("best") or {}
    fam_best = {f: best_of(g.loc[complete[g.index], "score"], greater)
                for f, g in lb.groupby("family")}
    row = {
        "arm": arm, "mode": mode,
        "n_trials": args.n_trials if mode == "trials" else None,
        "budget": args.budget if mode == "budget" else None,
        "checkpoints": ",".join(map(str, checkpoints)),
        "task_type": doc.get("task"), "n_classes": len(doc.get("classes") or []) or None,
        "best_cv_at": json.dumps(at),
        "best_cv": best.get("cv_score"),
        "test_accuracy": test_accuracy(args.python, run, prep["test"], table.target),
        "trials": len(lb), "complete": int(complete.sum()),
        "stop_reason": doc.get("stop_reason"), "fit_s": round(wall, 2),
        "elapsed_s": doc.get("elapsed_seconds"),
        "best_family": best.get("family"), "best_origin": best.get("origin"),
        "best_from_layer": is_layer(source_task(str(best.get("origin") or ""))),
        "final_family": ((doc.get("final_model") or {}).get("config") or {}).get("family"),
        "family_best": json.dumps({f: v for f, v in sorted(fam_best.items())
                                   if v is not None}),
        "first_origin": lb["origin"].iloc[0] if len(lb) else None,
        "warm_trials": int(warm.sum()), "layer_trials": int(from_layer.sum()),
        "warm_families": json.dumps(dict(Counter(lb.loc[warm, "family"]))),
        "layer_families": json.dumps(dict(Counter(lb.loc[from_layer, "family"]))),
        "warm_skipped": len(skipped),
        "layer_skipped": sum(is_layer(source_task(o)) for o in skipped),
        "layer_trials_at": json.dumps(layer_at),
        "neighbors": len(nb_ids), "layer_neighbors": len(layer_ranks),
        "nearest": nb_ids[0] if nb_ids else None,
        "nearest_distance": nbs[0].get("distance") if nbs else None,
        "nearest_is_layer": bool(nb_ids) and is_layer(nb_ids[0]),
        "first_layer_neighbor_rank": layer_ranks[0] if layer_ranks else None,
        "neighbor_ids": ";".join(nb_ids),
        "status": "ok", "error": "",
    }
    if not args.keep_work:
        shutil.rmtree(run, ignore_errors=True)
    return row


# ---------------------------------------------------------------------------- summary
def _json_col(df: pd.DataFrame, col: str) -> pd.Series:
    return df[col].map(lambda s: json.loads(s) if isinstance(s, str) and s else {})


def measures(df: pd.DataFrame) -> list[tuple[str, str, pd.Series, pd.Series]]:
    """(label, mode, without, with) per compared quantity, indexed by task name."""
    out = []
    ok = df[df["status"] == "ok"].copy()
    for mode in MODES:
        part = ok[ok["mode"] == mode]
        if part.empty:
            continue
        per = {arm: part[part["arm"] == arm].drop_duplicates("name", keep="last")
               .set_index("name") for arm in ARMS}
        if mode == "trials":
            ats = {arm: _json_col(per[arm], "best_cv_at") for arm in ARMS}
            ks = sorted({int(k) for arm in ARMS for d in ats[arm] for k in d})
            n = int(part["n_trials"].dropna().iloc[0]) if part["n_trials"].notna().any() \
                else max(ks, default=0)
            for k in ks:
                vals = {arm: ats[arm].map(lambda d, k=k: d.get(str(k))).astype(float)
                        for arm in ARMS}
                out.append((f"best CV, first {k} of {n} trials", mode, vals["without"],
                            vals["with"]))
            out.append((f"test accuracy, {n} trials", mode,
                        per["without"]["test_accuracy"].astype(float),
                        per["with"]["test_accuracy"].astype(float)))
        else:
            b = part["budget"].dropna()
            label = f"{b.iloc[0]:g} s" if len(b) else "budget"
            out.append((f"best CV, {label}", mode, per["without"]["best_cv"].astype(float),
                        per["with"]["best_cv"].astype(float)))
            out.append((f"test accuracy, {label}", mode,
                        per["without"]["test_accuracy"].astype(float),
                        per["with"]["test_accuracy"].astype(float)))
    return out


def compare(without: pd.Series, with_: pd.Series) -> dict[str, Any]:
    """Paired comparison over the tasks both arms ran: means, wins / losses / ties (a fit
    without a complete trial counts as worse than one with), sign-test p-value."""
    from scipy.stats import binomtest

    both = without.index.intersection(with_.index)
    a, b = without.reindex(both), with_.reindex(both)
    diff = (b - a).dropna()
    d = b.fillna(-np.inf) - a.fillna(-np.inf)
    d = d.where(~(a.isna() & b.isna()), 0.0)
    wins, losses = int((d > TIE).sum()), int((d < -TIE).sum())
    ties = len(both) - wins - losses
    p = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
    return {"n": len(both), "without": a.mean(), "with": b.mean(), "diff": diff.mean(),
            "median": diff.median(), "wins": wins, "losses": losses, "ties": ties, "p": p,
            "d": diff}


def verdict(c: dict[str, Any]) -> str:
    """A plain reading of one comparison."""
    if c["n"] == 0:
        return "no task"
    if c["wins"] + c["losses"] == 0:
        return "no difference (every task tied)"
    if c["diff"] > 0 and c["wins"] > c["losses"]:
        word = "better with the layer"
    elif c["diff"] < 0 and c["losses"] > c["wins"]:
        word = "worse with the layer"
    else:
        return "mixed (as many better as worse, or the mean against the count)"
    return word + ("" if c["p"] < 0.05 else " but within noise (sign test p >= 0.05)")


def _fmt(x: Any, nd: int = 4) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _pair(a: Any, b: Any) -> str:
    if pd.isna(a) and pd.isna(b):
        return ""
    mark = ""
    if not (pd.isna(a) or pd.isna(b)):
        mark = " ▲" if b - a > TIE else " ▼" if a - b > TIE else ""
    return f"{_fmt(a) or 'none'} / {_fmt(b) or 'none'}{mark}"


def _trial_ks(ok: pd.DataFrame) -> list[int]:
    """The checkpoints of the trials-mode rows."""
    part = ok[ok["mode"] == "trials"]
    return sorted({int(k) for d in _json_col(part, "best_cv_at") for k in d})


def family_compare(part: pd.DataFrame, family: str) -> dict[str, Any]:
    """:func:`compare` of one family's best CV score per task, over the tasks where both
    arms completed a trial of it (``part``: the rows of one mode)."""
    fb = {arm: _json_col(part[part["arm"] == arm].drop_duplicates("name", keep="last")
                         .set_index("name"), "family_best")
          .map(lambda d: d.get(family)).astype(float) for arm in ARMS}
    both = fb["without"].dropna().index.intersection(fb["with"].dropna().index)
    return compare(fb["without"].reindex(both), fb["with"].reindex(both))


def summarise(df: pd.DataFrame, command: str) -> str:
    """The markdown report of the rows in ``df``."""
    ok = df[df["status"] == "ok"].copy()
    lines = ["# The openml-runs layer: warm start with it against without it, leave one "
             "task out", "",
             f"Command: `{command}` (through the CLI: `fit --metabase COPY --seed 0 "
             "--no-history`, a temporary HOME, a fixed 75/25 split; each task, its variants "
             "and the layer's tasks linked to them left out of both arms' metabase copies; "
             "the performance models refitted on each copy). Scores: accuracy. ▲ / ▼: with "
             "the layer better / worse.", ""]
    if ok.empty:
        return "\n".join(lines + ["No finished row yet."]) + "\n"
    keys = sorted(set(ok["layer_key"].dropna().astype(str)))
    commits = sorted(set(ok["commit"].dropna().astype(str)))
    tasks = ok.drop_duplicates("name").set_index("name")
    done = ok.groupby("name").size()
    complete_tasks = done[done == len(ARMS) * ok["mode"].nunique()].index
    linked = tasks["linked"].astype(str).str.lower().eq("true")
    lines += [f"- tasks: {len(tasks)} ({len(complete_tasks)} with every arm and mode done), "
              f"{int(linked.sum())} of them with a linked duplicate in the layer (left out); "
              f"failed rows: {int(df['status'].ne('ok').sum())}",
              f"- layer build key: {', '.join(keys)}; code: {', '.join(commits)}"
              + (" — MIXED: rows from different layers or code" if len(keys) > 1 else ""),
              ""]

    comps = [(label, mode, compare(a, b)) for label, mode, a, b in measures(ok)]
    # ---- verdict
    cv = [(label, c) for label, _, c in comps if label.startswith("best CV")]
    better = [label for label, c in cv if verdict(c).startswith("better")]
    worse = [label for label, c in cv if verdict(c).startswith("worse")]
    clear_b = [label for label, c in cv if verdict(c) == "better with the layer"]
    clear_w = [label for label, c in cv if verdict(c) == "worse with the layer"]
    n_cv = len(cv)
    if cv and len(better) == n_cv and clear_b:
        plain = (f"Yes, it helps: best CV is higher with the layer at every point compared, "
                 f"beyond noise at {len(clear_b)} of {n_cv}")
    elif cv and len(worse) == n_cv and clear_w:
        plain = (f"No, it hurts: best CV is lower with the layer at every point compared, "
                 f"beyond noise at {len(clear_w)} of {n_cv}")
    elif better and not worse:
        plain = (f"Not clearly: the direction favours the layer at {len(better)} of {n_cv} "
                 f"points compared, beyond noise at {len(clear_b)}")
    elif worse and not better:
        plain = (f"No: the direction is against the layer at {len(worse)} of {n_cv} points "
                 f"compared, beyond noise at {len(clear_w)}")
    else:
        plain = "No clear effect: the differences go both ways or are within noise"
    lines += ["## Verdict", "", f"**{plain}.**", ""]
    for label, _, c in comps:
        lines.append(f"- {label}: {verdict(c)} (with − without: mean {_fmt(c['diff'], 4)}, "
                     f"{c['wins']} better / {c['losses']} worse / {c['ties']} tied of "
                     f"{c['n']})")
    # families: what the layer brought, and whether those families did better with it
    for mode in MODES:
        w = ok[(ok["mode"] == mode) & (ok["arm"] == "with")]
        if w.empty:
            continue
        lf = Counter()
        for d in _json_col(w, "layer_families"):
            lf.update(d)
        fams = ", ".join(f"{f} {n}" for f, n in lf.most_common()) or "none"
        parts = []
        for f, _ in lf.most_common():
            c = family_compare(ok[ok["mode"] == mode], f)
            if c["n"]:
                parts.append(f"{f}'s best CV with − without {_fmt(c['diff'])} "
                             f"({c['wins']} better / {c['losses']} worse / {c['ties']} tied "
                             f"of {c['n']} tasks where both arms completed a {f} trial)")
        best_l = int(w["best_from_layer"].astype(str).str.lower().eq("true").sum())
        lines.append(f"- families, {mode} mode: the layer's warm-start trials: {fams}; the "
                     f"best trial came from the layer in {best_l} of {len(w)} fits"
                     + ("; " + "; ".join(parts) if parts else ""))
    # tasks: the groups and the largest differences
    for label, mode, a, b in measures(ok):
        if not label.startswith("best CV") or (mode == "trials" and not label.startswith(
                f"best CV, first {max(_trial_ks(ok), default=0)} ")):
            continue
        parts = []
        for gname, gmask in (("with a linked duplicate", linked), ("without", ~linked)):
            names = set(tasks.index[gmask])
            c = compare(a[a.index.isin(names)], b[b.index.isin(names)])
            if c["n"]:
                parts.append(f"tasks {gname}: mean {_fmt(c['diff'])} ({c['wins']}/"
                             f"{c['losses']}/{c['ties']})")
        d = compare(a, b)["d"]
        up = ", ".join(f"{n} {v:+.3f}" for n, v in d[d >= NOTABLE].nlargest(3).items())
        down = ", ".join(f"{n} {v:+.3f}" for n, v in d[d <= -NOTABLE].nsmallest(3).items())
        lines.append(f"- tasks, {label}: " + "; ".join(parts)
                     + f"; helped most: {up or 'none'}; hurt most: {down or 'none'}")
    lines.append("")

    # ---- summary per mode
    lines += ["## Summary per mode and budget", "",
              "| measure | tasks | mean without | mean with | mean diff | median diff | "
              "better | worse | tied | sign test p |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, _, c in comps:
        lines.append(f"| {label} | {c['n']} | {_fmt(c['without'])} | {_fmt(c['with'])} | "
                     f"{_fmt(c['diff'])} | {_fmt(c['median'])} | {c['wins']} | "
                     f"{c['losses']} | {c['ties']} | {_fmt(c['p'], 3)} |")
    lines.append("")

    # ---- by task group
    groups = {"linked duplicate in the layer": set(tasks.index[linked]),
              "no linked duplicate": set(tasks.index[~linked])}
    for tt in sorted(tasks["task_type"].dropna().astype(str).unique()):
        groups[tt] = set(tasks.index[tasks["task_type"].astype(str) == tt])
    lines += ["## By task group", "", "Mean diff (with − without) and better / worse / tied.",
              "", "| measure | " + " | ".join(groups) + " |",
              "|---|" + "---:|" * len(groups)]
    for label, _, a, b in measures(ok):
        cells = []
        for names in groups.values():
            c = compare(a[a.index.isin(names)], b[b.index.isin(names)])
            cells.append(f"{_fmt(c['diff'])} ({c['wins']}/{c['losses']}/{c['ties']})"
                         if c["n"] else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")

    # ---- the layer's share
    lines += ["## What the layer contributed (arm with the layer)", "",
              "| mode | warm-start trials | from the layer | suggestions (ran or skipped) | "
              "from the layer | tasks with a layer neighbour | nearest is a layer task | "
              "best trial from the layer |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mode in MODES:
        w = ok[(ok["mode"] == mode) & (ok["arm"] == "with")]
        if w.empty:
            continue
        wt, lt = int(w["warm_trials"].sum()), int(w["layer_trials"].sum())
        sg = wt + int(w["warm_skipped"].sum())
        ls = lt + int(w["layer_skipped"].sum())
        lines.append(
            f"| {mode} | {wt} | {lt} ({100 * lt / max(wt, 1):.0f} %) | {sg} | {ls} "
            f"({100 * ls / max(sg, 1):.0f} %) | "
            f"{int((w['layer_neighbors'] > 0).sum())} of {len(w)} (mean "
            f"{w['layer_neighbors'].mean():.1f} of {w['neighbors'].mean():.1f}) | "
            f"{int(w['nearest_is_layer'].astype(str).str.lower().eq('true').sum())} | "
            f"{int(w['best_from_layer'].astype(str).str.lower().eq('true').sum())} |")
    tr = ok[(ok["mode"] == "trials") & (ok["arm"] == "with")]
    if not tr.empty:
        at = _json_col(tr, "layer_trials_at")
        ks = sorted({int(k) for d in at for k in d})
        if ks:
            lines += ["", "Trials from the layer among the first k (trials mode, all tasks): "
                      + ", ".join(f"{k}: {sum(d.get(str(k), 0) for d in at)} of "
                                  f"{k * len(tr)}" for k in ks)]
    lines.append("")

    # ---- by family
    lines += ["## By model family", ""]
    for mode in MODES:
        part = ok[ok["mode"] == mode]
        if part.empty:
            continue
        fams: dict[str, dict[str, Any]] = {}
        for arm in ARMS:
            p = part[part["arm"] == arm]
            warm = Counter()
            for d in _json_col(p, "warm_families"):
                warm.update(d)
            layer = Counter()
            for d in _json_col(p, "layer_families"):
                layer.update(d)
            bests = Counter(p["best_family"].dropna().astype(str))
            for f in set(warm) | set(bests) | set(layer):
                e = fams.setdefault(f, {})
                e[f"warm_{arm}"], e[f"best_{arm}"] = warm.get(f, 0), bests.get(f, 0)
                e[f"layer_{arm}"] = layer.get(f, 0)
        lines += [f"### {mode}", "",
                  "| family | warm-start trials without | with (from the layer) | best trial "
                  "without | with | best CV of the family, tasks where both ran it: mean "
                  "diff (better/worse/tied) |", "|---|---:|---:|---:|---:|---|"]
        for f in sorted(fams):
            e = fams[f]
            c = family_compare(part, f)
            lines.append(f"| {f} | {e.get('warm_without', 0)} | {e.get('warm_with', 0)} "
                         f"({e.get('layer_with', 0)}) | {e.get('best_without', 0)} | "
                         f"{e.get('best_with', 0)} | "
                         + (f"{_fmt(c['diff'])} ({c['wins']}/{c['losses']}/{c['ties']}) "
                            f"over {c['n']}" if c["n"] else "") + " |")
        lines.append("")

    # ---- notable tasks
    lines += ["## Tasks it helped or hurt", "",
              f"Differences of at least {NOTABLE:g} (with − without)."]
    for label, _, c in comps:
        d = c["d"]
        up = ", ".join(f"{n} ({v:+.4f})" for n, v in d[d >= NOTABLE].sort_values(
            ascending=False).items())
        down = ", ".join(f"{n} ({v:+.4f})" for n, v in d[d <= -NOTABLE].sort_values().items())
        lines.append(f"- {label}: helped {up or 'none'}; hurt {down or 'none'}")
    lines.append("")

    # ---- per task
    lines += ["## Per task", "",
              "Each cell: without / with. Layer neighbours and trials: the arm with the layer "
              "(trials mode; budget mode in brackets).", ""]
    ms = measures(ok)
    lines += ["| task | rows | classes | linked | layer neighbours | layer trials | "
              + " | ".join(label for label, *_ in ms) + " |",
              "|---|---:|---:|---|---:|---:|" + "---|" * len(ms)]
    w = {mode: ok[(ok["mode"] == mode) & (ok["arm"] == "with")]
         .drop_duplicates("name", keep="last").set_index("name") for mode in MODES}

    def get(mode: str, name: str, col: str) -> str:
        if name not in w[mode].index:
            return "–"
        v = w[mode].at[name, col]
        return "" if pd.isna(v) else str(int(v))

    for name, t in tasks.sort_values("rows").iterrows():
        cells = [_pair(a.get(name, np.nan), b.get(name, np.nan)) for _, _, a, b in ms]
        classes = "" if pd.isna(t["n_classes"]) else int(t["n_classes"])
        lines.append(
            f"| {name} | {int(t['rows'])} | {classes}"
            f" | {'yes' if str(t['linked']).lower() == 'true' else ''} | "
            f"{get('trials', name, 'layer_neighbors')} ({get('budget', name, 'layer_neighbors')})"
            f" | {get('trials', name, 'layer_trials')} ({get('budget', name, 'layer_trials')}) | "
            + " | ".join(cells) + " |")
    failed = df[df["status"] != "ok"]
    if len(failed):
        lines += ["", "## Failed rows", ""]
        lines += [f"- {r.name} {r.arm} {r.mode}: {r.error}" for r in failed.itertuples()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- main
def append_row(out: Path, row: dict[str, Any]) -> None:
    """Append one row to the results CSV (the header when the file is new)."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise RuntimeError(f"row columns not in COLUMNS: {sorted(unknown)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([row]).reindex(columns=COLUMNS).to_csv(
        out, mode="a", header=not out.exists() or out.stat().st_size == 0, index=False)


def read_rows(out: Path) -> pd.DataFrame:
    """The results CSV (empty with ``COLUMNS`` when there is none)."""
    if not out.exists() or out.stat().st_size == 0:
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--runs", type=Path, default=DEFAULT_RUNS,
                    help="folder of OpenML run exports and task_qualities.json")
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--min-rows", type=int, default=300,
                    help="smallest task (the layer's tasks have 500 rows or more)")
    ap.add_argument("--n-trials", type=int, default=25)
    ap.add_argument("--checkpoints", default="5,10,25",
                    help="best CV after this many trials (trials mode)")
    ap.add_argument("--budget", type=float, default=10.0, help="seconds (budget mode)")
    ap.add_argument("--modes", default="trials,budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-timeout", type=float, default=1800.0,
                    help="seconds before a trials-mode fit is killed")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="start no new fit after this many minutes (rerun to continue)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--out", type=Path, default=RESULTS / "openml_layer_loo.csv")
    ap.add_argument("--rebuild-layer", action="store_true")
    ap.add_argument("--retry-failed", action="store_true")
    ap.add_argument("--keep-work", action="store_true")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    args.checkpoints = sorted({int(k) for k in args.checkpoints.split(",") if k.strip()})
    args.checkpoints = [k for k in args.checkpoints if k <= args.n_trials] or [args.n_trials]
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - set(MODES):
        raise SystemExit(f"--modes: use {', '.join(MODES)}")
    started = time.monotonic()
    command = "python benchmarks/openml_layer_loo.py " + " ".join(
        a for a in sys.argv[1:] if a != "--summary-only")
    done = read_rows(args.out)
    if args.retry_failed and len(done):
        done = done[done["status"] == "ok"]
        done.to_csv(args.out, index=False)
    stopped = False
    if not args.summary_only:
        from automl_meta.meta.metabase import load_metabase

        layered, key = layered_metabase(args.runs, args.python, args.rebuild_layer)
        bundled_tasks = load_metabase(BUNDLED).tasks
        layered_tasks = load_metabase(layered).tasks
        layer_ids = set(layered_tasks.loc[layered_tasks["source"].map(is_layer_source),
                                          "task_id"].astype(str))
        chosen = choose_tasks(args.corpus, args.tasks, args.min_rows, bundled_tasks,
                              layered_tasks)
        print(f"{len(chosen)} tasks, {sum(bool(lk) for _, lk in chosen)} with a linked "
              f"duplicate in the layer", flush=True)
        commit = code_version()
        have = set(zip(done["name"].astype(str), done["arm"], done["mode"], strict=True))
        for i, (table, linked) in enumerate(chosen):
            todo = [(mode, arm) for mode in modes
                    for arm in (ARMS if i % 2 == 0 else ARMS[::-1])
                    if (table.name, arm, mode) not in have]
            if not todo:
                continue
            if args.max_minutes is not None and \
                    time.monotonic() - started > 60 * args.max_minutes:
                stopped = True
                break
            base: dict[str, Any] = {"name": table.name, "corpus_file": table.corpus_file,
                                    "linked": bool(linked),
                                    "linked_layer_tasks": ";".join(linked),
                                    "seed": args.seed, "layer_key": key, "commit": commit}
            try:
                prep = prepare_task(table, args, layered, key)
            except Exception as exc:  # recorded, the run goes on
                for mode, arm in todo:
                    append_row(args.out, base | {"arm": arm, "mode": mode,
                                                 "status": "failed",
                                                 "error": f"prepare: {exc}"[:300]})
                print(f"[{i + 1}/{len(chosen)}] {table.name}: prepare failed: {exc}",
                      flush=True)
                continue
            info = prep["info"]
            base |= {"rows": info["rows"], "n_train": info["n_train"],
                     "n_test": info["n_test"], "features": info["features"]}
            for mode, arm in todo:
                if args.max_minutes is not None and \
                        time.monotonic() - started > 60 * args.max_minutes:
                    stopped = True
                    break
                row = base | prep["facts"][arm]
                try:
                    row |= fit_row(table, prep, arm, mode, args, layer_ids)
                except Exception as exc:  # recorded, the run goes on
                    row |= {"arm": arm, "mode": mode, "status": "failed",
                            "error": str(exc)[:300]}
                append_row(args.out, row)
                at = row.get("best_cv_at") or ""
                print(f"[{i + 1}/{len(chosen)}] {table.name} {arm:7s} {mode:6s} best "
                      f"{_fmt(row.get('best_cv'))} {at} test {_fmt(row.get('test_accuracy'))}"
                      f" layer trials {row.get('layer_trials')} of {row.get('warm_trials')}"
                      f" warm, layer neighbours {row.get('layer_neighbors')}"
                      f" {row.get('fit_s')} s {row.get('error') or ''}", flush=True)
            if stopped:
                break
            if not args.keep_work:
                shutil.rmtree(prep["dir"], ignore_errors=True)
        done = read_rows(args.out)
    text = summarise(done, command)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    if stopped:
        print(f"stopped after {args.max_minutes:g} min (--max-minutes); run the same command "
              "again to continue", file=sys.stderr)


if __name__ == "__main__":
    main()
