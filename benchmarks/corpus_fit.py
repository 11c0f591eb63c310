"""Fit + predict through the real CLI on corpus datasets, checking the time-budget promise.

For each chosen dataset of the corpus (``--corpus``, default ../shared/corpus; up to 20 000
rows): a 75/25 split written as
CSV, ``automl-meta fit train.csv --target T --time-budget B --output run/ --metric M``
(accuracy for classification, r2 for regression), then ``automl-meta predict run/
test.csv``; the test score is computed from the predictions. The wall time of the whole
``fit`` process is compared with ``B + max(5 s, 10 %)``.

    python benchmarks/corpus_fit.py --n 32 --budget 30   # writes benchmarks/results/corpus_fit.csv

Resumable: datasets already in the results file are skipped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: common.py

from common import RESULTS, add_corpus_argument, choose, read_corpus_manifest  # noqa: E402

from automl_meta.data import read_table  # noqa: E402

OUT = RESULTS / "corpus_fit.csv"




def run_one(row: pd.Series, budget: float, workdir: Path, corpus: Path) -> dict:
    df = read_table(corpus / row.file)
    target = row.target
    strat = df[target] if row.task == "classification" and \
        df[target].value_counts().min() >= 2 else None
    train, test = train_test_split(df, test_size=0.25, random_state=0, stratify=strat)
    train_csv, test_csv = workdir / "train.csv", workdir / "test.csv"
    train.to_csv(train_csv, index=False)
    test.drop(columns=[target]).to_csv(test_csv, index=False)
    metric = "accuracy" if row.task == "classification" else "r2"
    run_dir, pred_csv = workdir / "run", workdir / "pred.csv"
    t0 = time.monotonic()
    fit = subprocess.run([sys.executable, "-m", "automl_meta", "fit", str(train_csv),
                          "--target", target, "--time-budget", str(budget), "--output",
                          str(run_dir), "--metric", metric, "--quiet"],
                         capture_output=True, text=True)
    fit_wall = time.monotonic() - t0
    out = {"name": row["name"], "task": row.task, "rows": len(df), "features": df.shape[1] - 1,
           "fit_exit": fit.returncode, "fit_wall_s": round(fit_wall, 2),
           "limit_s": budget + max(5.0, 0.1 * budget), "error": fit.stderr.strip()[-300:]}
    out["within_budget"] = fit_wall <= out["limit_s"]
    if fit.returncode != 0:
        return out
    pred = subprocess.run([sys.executable, "-m", "automl_meta", "predict", str(run_dir),
                           str(test_csv), "--output", str(pred_csv)],
                          capture_output=True, text=True)
    out["predict_exit"] = pred.returncode
    if pred.returncode == 0:
        p = pd.read_csv(pred_csv)[target]
        truth = test[target]
        if metric == "accuracy":
            out["test_score"] = accuracy_score(truth.astype(str).str.strip(), p.astype(str))
        else:
            out["test_score"] = r2_score(truth.astype(float), p.astype(float))
    else:
        out["error"] = pred.stderr.strip()[-300:]
    lb = pd.read_csv(run_dir / "leaderboard.csv")
    out["trials"] = len(lb)
    out["failed_trials"] = int((lb.state == "FAIL").sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--budget", type=float, default=30.0)
    add_corpus_argument(ap)
    args = ap.parse_args()
    manifest = read_corpus_manifest(args.corpus)
    chosen = choose(manifest, args.n)
    done = pd.read_csv(OUT) if OUT.exists() else pd.DataFrame()
    rows = done.to_dict("records")
    for _, row in chosen.iterrows():
        if len(done) and row["name"] in set(done["name"]):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            res = run_one(row, args.budget, Path(tmp), args.corpus)
        rows.append(res)
        pd.DataFrame(rows).to_csv(OUT, index=False)
        print(f"{res['name']:<28} {res['task']:<14} rows={res['rows']:<6} exit={res['fit_exit']} "
              f"wall={res['fit_wall_s']:>6.1f}s score={res.get('test_score', float('nan')):.4f}",
              flush=True)
    res = pd.DataFrame(rows)
    print(f"\n{len(res)} datasets; fit exit 0: {(res.fit_exit == 0).sum()}; within budget: "
          f"{res.within_budget.sum()}; max wall {res.fit_wall_s.max():.1f} s")


if __name__ == "__main__":
    main()
