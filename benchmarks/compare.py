"""Side by side with what users would pick instead, at the same wall-clock budget.

Systems: automl-meta (warm start from the bundled metabase *minus the task and its
variants*), automl-meta (cold), FLAML (``flaml[automl]``, same metric), a plain Optuna TPE
search of the kind a user writes by hand (HistGradientBoosting / random forest, 5-fold CV),
and scikit-learn's HistGradientBoosting with defaults. Every system gets the same 75/25
split, the same budget and both cores. Test-set accuracy (classification) or R²
(regression) is reported per task, with mean score, wins and average rank per system.

    pip install "flaml[automl]" matplotlib
    python benchmarks/compare.py --n-tasks 26 --budgets 10 30     # resumable

Writes ``benchmarks/results/compare.csv``, ``compare.md`` and ``compare.png``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from corpus_fit import choose  # noqa: E402
from loo import stem  # noqa: E402

from automl_meta import AutoML  # noqa: E402
from automl_meta.build import derived_statistics  # noqa: E402
from automl_meta.data import load_dataset  # noqa: E402
from automl_meta.metabase import load_metabase, write_metabase  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CORPUS = ROOT.parent / "shared" / "corpus"
SYSTEMS = ("automl-meta warm", "automl-meta cold", "flaml", "optuna tpe", "hgb defaults")


def metabase_without(task_names: set[str], out: Path) -> Path:
    """A copy of the bundled metabase without the given tasks (and derived stats redone)."""
    mb = load_metabase(ROOT / "metabase")
    keep = ~mb.tasks["name"].astype(str).map(stem).isin({stem(n) for n in task_names})
    tasks = mb.tasks[keep]
    results = mb.results[mb.results["task_id"].isin(set(tasks["task_id"]))]
    configs = {c: mb.configs[c] for c in set(results["config_id"])}
    manifest = {k: v for k, v in mb.manifest.items() if k not in ("files", "counts")}
    manifest.update(derived_statistics(tasks, configs, results, manifest))
    write_metabase(out, tasks, configs, results, manifest)
    return out


def _encode(X: pd.DataFrame, cats: list[str]) -> pd.DataFrame:
    X = X.copy()
    for c in cats:
        X[c] = X[c].astype("category")
    return X


def run_hgb(X_tr, y_tr, X_te, task, budget, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingRegressor if task == "regression" else \
        HistGradientBoostingClassifier
    return cls(categorical_features="from_dtype", random_state=seed).fit(X_tr, y_tr).predict(X_te)


def run_optuna(X_tr, y_tr, X_te, task, budget, seed):
    """The search a user writes by hand: TPE over HGB / RF, 5-fold CV, timeout = budget."""
    import optuna
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.model_selection import cross_val_score

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    clf = task != "regression"
    X_num = X_tr.copy()
    for c in X_num.columns:
        if isinstance(X_num[c].dtype, pd.CategoricalDtype):
            X_num[c] = X_num[c].cat.codes.replace(-1, np.nan)

    def make(trial):
        if trial.suggest_categorical("model", ["hgb", "rf"]) == "hgb":
            cls = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
            return cls(learning_rate=trial.suggest_float("lr", 0.01, 0.3, log=True),
                       max_leaf_nodes=trial.suggest_int("leaves", 8, 128, log=True),
                       min_samples_leaf=trial.suggest_int("msl", 2, 50, log=True),
                       random_state=seed)
        cls = RandomForestClassifier if clf else RandomForestRegressor
        return cls(n_estimators=trial.suggest_int("trees", 50, 300),
                   max_features=trial.suggest_float("mf", 0.1, 1.0),
                   min_samples_leaf=trial.suggest_int("rf_msl", 1, 10), n_jobs=2,
                   random_state=seed)

    def objective(trial):
        return cross_val_score(make(trial), X_num.fillna(-999), y_tr, cv=5).mean()

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, timeout=budget * 0.8)
    model = make(optuna.trial.FixedTrial(study.best_params))
    model.fit(X_num.fillna(-999), y_tr)
    X_te_num = X_te.copy()
    for c in X_te_num.columns:
        if isinstance(X_te_num[c].dtype, pd.CategoricalDtype):
            X_te_num[c] = X_te_num[c].cat.codes.replace(-1, np.nan)
    return model.predict(X_te_num.fillna(-999))


def run_flaml(X_tr, y_tr, X_te, task, budget, seed):
    from flaml import AutoML as Flaml

    automl = Flaml()
    automl.fit(X_tr, y_tr, task="regression" if task == "regression" else "classification",
               time_budget=budget, metric="r2" if task == "regression" else "accuracy",
               n_jobs=2, seed=seed, verbose=0)
    return automl.predict(X_te)


def run_ours(X_tr, y_tr, X_te, task, budget, seed, metabase, warm):
    model = AutoML(time_budget=budget, seed=seed, n_jobs=2, warm_start=10 if warm else 0,
                   metabase=str(metabase), diagnostics=False,
                   task="regression" if task == "regression" else "classification")
    model.fit(X_tr, y_tr)
    s = model.summary()
    info = {"trials": s["trials"]["total"], "strategy": s["warm_start"]["strategy"],
            "best_origin": (s["best"] or {}).get("origin")}
    return model.predict(X_te), info


def score(task: str, y_true, y_pred) -> float:
    from sklearn.metrics import accuracy_score, r2_score

    if task == "regression":
        return float(r2_score(np.asarray(y_true, float), np.asarray(y_pred, float)))
    return float(accuracy_score(pd.Series(y_true).astype(str), pd.Series(y_pred).astype(str)))


def scores_wide(df: pd.DataFrame) -> pd.DataFrame:
    """Task x system table of test scores; NaN where a system failed on the task."""
    return df.pivot_table(index="name", columns="system", values="score", dropna=False)


def average_ranks(wide: pd.DataFrame) -> pd.Series:
    """Each system's mean rank over the tasks (1 = best; a system that failed on a task
    ranks last there, tied with any other that failed)."""
    return wide.fillna(-np.inf).rank(axis=1, ascending=False, method="average").mean()


def summarise(df: pd.DataFrame) -> str:
    lines = []
    for budget, grp in df.groupby("budget"):
        wide = scores_wide(grp)
        ranks = average_ranks(wide)
        wins = (wide.eq(wide.max(axis=1), axis=0)).sum()
        lines += [f"### Budget {budget:g} s — {len(wide)} tasks", "",
                  "| system | mean score | failed | wins | average rank |",
                  "|---|---:|---:|---:|---:|"]
        for sys_name in wide.columns:
            lines.append(f"| {sys_name} | {wide[sys_name].mean():.4f} | "
                         f"{int(wide[sys_name].isna().sum())} | {int(wins[sys_name])} "
                         f"| {ranks[sys_name]:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="automl-meta vs FLAML vs Optuna vs HGB")
    ap.add_argument("--n-tasks", type=int, default=26)
    ap.add_argument("--budgets", type=float, nargs="+", default=[10.0, 30.0])
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--summary-only", action="store_true",
                    help="only rewrite compare.md / compare.png from the results table")
    ap.add_argument("--out", type=Path, default=RESULTS / "compare.csv",
                    help="results table (compare.md and compare.png are written beside it)")
    args = ap.parse_args()
    out = args.out
    done = pd.read_csv(out) if out.exists() else pd.DataFrame(
        columns=["name", "task", "budget", "system"])
    rows = done.to_dict("records")
    have = {(r["name"], float(r["budget"]), r["system"]) for r in rows}
    runners = {"automl-meta warm": lambda *a, mb: run_ours(*a, mb, True),
               "automl-meta cold": lambda *a, mb: run_ours(*a, mb, False),
               "flaml": lambda *a, mb: run_flaml(*a),
               "optuna tpe": lambda *a, mb: run_optuna(*a),
               "hgb defaults": lambda *a, mb: run_hgb(*a)}
    manifest = pd.read_csv(CORPUS / "manifest.csv") if not args.summary_only else None
    chosen = choose(manifest, args.n_tasks, min_rows=150) if manifest is not None else \
        pd.DataFrame()
    for _, t in chosen.iterrows():
        ds = load_dataset(CORPUS / t.file, t.target, t.task)
        from sklearn.model_selection import train_test_split

        strat = ds.y if ds.classes is not None and ds.y.value_counts().min() >= 2 else None
        X_tr, X_te, y_tr, y_te = train_test_split(ds.X, ds.y, test_size=0.25,
                                                  random_state=args.seed, stratify=strat)
        cats = ds.schema.of_kind("categorical")
        X_tr_c, X_te_c = _encode(X_tr, cats), _encode(X_te, cats)
        tmp = Path(tempfile.mkdtemp())
        try:
            mb = metabase_without({t["name"]}, tmp / "metabase")
            for budget in args.budgets:
                for system in args.systems:
                    if (t["name"], float(budget), system) in have:
                        continue
                    t0 = time.monotonic()
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            pred = runners[system](X_tr_c, y_tr, X_te_c, t.task, budget,
                                                   args.seed, mb=mb)
                        pred, info = pred if isinstance(pred, tuple) else (pred, {})
                        s, err = score(t.task, y_te, pred), ""
                    except Exception as exc:  # a system failing is a result too
                        s, err, info = np.nan, f"{type(exc).__name__}: {exc}"[:200], {}
                    rows.append({"name": t["name"], "task": t.task, "rows": ds.n_rows,
                                 "budget": budget, "system": system, "score": s,
                                 "wall_seconds": round(time.monotonic() - t0, 1),
                                 "error": err} | info)
                    pd.DataFrame(rows).to_csv(out, index=False)
                    print(f"{t['name']:<28} {budget:>4.0f}s {system:<18} {s:.4f}", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    df = pd.DataFrame(rows)
    text = summarise(df)
    out.with_suffix(".md").write_text(
        "# automl-meta side by side\n\nCommand: `python benchmarks/compare.py --n-tasks "
        f"{args.n_tasks} --budgets {' '.join(f'{b:g}' for b in args.budgets)}`\n\n"
        + text + "\n")
    print(text)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(args.budgets), figsize=(6 * len(args.budgets), 4))
        for ax, (budget, grp) in zip(np.atleast_1d(axes), df.groupby("budget"), strict=False):
            average_ranks(scores_wide(grp)).sort_values().plot.barh(ax=ax)
            ax.set_title(f"average rank, {budget:g} s (lower is better)")
        fig.tight_layout()
        fig.savefig(out.with_suffix(".png"), dpi=100)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
