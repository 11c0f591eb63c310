"""The weekly retraining case: does a fit that draws on the user's history do better than
one that does not?

For each corpus task (``tables.choose_corpus``; at least ``--min-rows`` rows), the rows are
shuffled (seeded) and split in half: "last month" and "this month". Through the command
line, each with the task and its variants left out of the metabase (``--metabase`` pointing
at a reduced copy) and a temporary HOME:

1. ``fit last.csv --history H`` (H: an empty folder of this task) at ``--budget`` seconds;
2. ``fit this.csv --history H`` at the same budget: it draws on (1);
3. ``fit this.csv --no-history`` at the same budget: the same fit without history.

Per task: the best CV score of (2) and (3) at the end of the fit, and for each the seconds
from process start until a trial reached the best CV score of (1) (the search start from
``report.json``'s timeline plus the trial's start and duration; empty when none did).
Both fits of "this month" see the same rows and the same folds, so their CV scores compare
directly.

    python benchmarks/history_retrain.py --tasks 20 --budget 10     # resumable
    python benchmarks/history_retrain.py --summary-only

Results: ``benchmarks/results/history_retrain.csv`` (one row per task, appended as it
finishes) and ``history_retrain.md``. Targets (issue #22): (2) at least as good as (3) on
>= 80 % of tasks; median time to reach (1)'s best under a quarter of the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import tables  # noqa: E402  (benchmarks/tables.py)

RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work" / "history_retrain"
COLUMNS = ["name", "kind", "rows", "budget", "excluded_tasks", "last_best", "with_best",
           "without_best", "with_reach_s", "without_reach_s", "with_first_origin",
           "with_search_start_s", "without_search_start_s",
           "with_trials", "without_trials", "with_fit_s", "without_fit_s", "status", "error"]


def fit(python: str, data: Path, target: str, kind: str, budget: float, run: Path,
        metabase: Path, home: Path, history: Path | None) -> dict[str, Any]:
    """One ``automl-meta fit`` through the command line; its summary and leaderboard."""
    cmd = [python, "-m", "automl_meta", "fit", str(data), "--target", target, "--task", kind,
           "--time-budget", f"{budget:g}", "--output", str(run), "--json", "--quiet",
           "--metabase", str(metabase), "--no-report"]
    cmd += ["--history", str(history)] if history is not None else ["--no-history"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_META")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "share"),
               XDG_CACHE_HOME=str(home / "cache"), MPLCONFIGDIR=str(WORK / "mplconfig"),
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=4 * budget + 120,
                       stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"fit exit {p.returncode}: {p.stderr.strip().splitlines()[-1:]}")
    doc = json.loads(p.stdout)
    lb = pd.read_csv(run / "leaderboard.csv")
    search_start = next((e["seconds"] for e in doc.get("timeline", [])
                         if e["event"] == "search start"), 0.0)
    lb["reached_at"] = search_start + lb["started"] + lb["duration"]
    return {"doc": doc, "lb": lb, "wall": wall, "search_start": search_start}


def reach_seconds(lb: pd.DataFrame, target: float, greater: bool) -> float | None:
    """Seconds from process start until a complete trial scored at least ``target``."""
    ok = lb[lb["state"] == "COMPLETE"]
    hit = ok[ok["score"] >= target - 1e-12] if greater else ok[ok["score"] <= target + 1e-12]
    return None if hit.empty else round(float(hit["reached_at"].min()), 2)


def one_task(table: tables.Table, args: argparse.Namespace) -> dict[str, Any]:
    from automl_meta.meta.metabase import load_metabase

    work = WORK / tables.stem(table.name).replace("/", "_")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    df = tables.read_frame(table, args.corpus).sample(frac=1.0, random_state=args.seed)
    half = len(df) // 2
    last, this = work / "last.csv", work / "this.csv"
    df.iloc[:half].to_csv(last, index=False)
    df.iloc[half:].to_csv(this, index=False)
    excluded = tables.variants_in_metabase(load_metabase(ROOT / "metabase").tasks, table)
    mb = tables.metabase_without(excluded, work / "metabase")
    kind = "regression" if table.kind == "regression" else "classification"
    row: dict[str, Any] = {"name": table.name, "kind": table.kind, "rows": len(df),
                           "budget": args.budget, "excluded_tasks": len(excluded)}
    history = work / "history"
    first = fit(args.python, last, table.target, kind, args.budget, work / "run_last", mb,
                work / "home1", history)
    greater = bool(first["doc"]["greater_is_better"])
    row["last_best"] = first["doc"]["best"]["cv_score"]
    for arm, hist in (("with", history), ("without", None)):
        res = fit(args.python, this, table.target, kind, args.budget, work / f"run_{arm}", mb,
                  work / f"home_{arm}", hist)
        best = res["doc"]["best"]
        row[f"{arm}_best"] = None if best is None else best["cv_score"]
        row[f"{arm}_reach_s"] = reach_seconds(res["lb"], row["last_best"], greater)
        row[f"{arm}_search_start_s"] = res["search_start"]
        row[f"{arm}_trials"] = len(res["lb"])
        row[f"{arm}_fit_s"] = round(res["wall"], 2)
        if arm == "with":
            row["with_first_origin"] = str(res["lb"].sort_values("trial")["origin"].iloc[0])
    row["greater_is_better"] = greater
    row["status"] = "ok"
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return row


def summarise(df: pd.DataFrame, budget: float) -> str:
    ok = df[df["status"] == "ok"].copy()
    if ok.empty:
        return "no finished task\n"
    # the default metrics, accuracy and R², are both greater-is-better
    # a fit without any complete trial counts as worse than one with
    at_least = (ok["with_best"].fillna(-np.inf) >= ok["without_best"].fillna(-np.inf) - 1e-12)
    no_trial = int(ok["with_best"].isna().sum()), int(ok["without_best"].isna().sum())
    diff = (ok["with_best"] - ok["without_best"]).dropna()
    reach_w = ok["with_reach_s"].astype(float)
    reach_wo = ok["without_reach_s"].astype(float)
    lines = [
        "# Weekly retraining: a fit with the history against the same fit without",
        "",
        f"Command: `python benchmarks/history_retrain.py --tasks {len(df)} --budget "
        f"{budget:g}` (through the CLI; each task and its variants left out of the "
        "metabase; both fits of 'this month' on the same rows and folds).",
        "",
        f"- tasks finished: {len(ok)} of {len(df)}",
        f"- best CV score with history >= without: {int(at_least.sum())} of {len(ok)} "
        f"({100 * at_least.mean():.0f} %; target >= 80 %)",
        f"- mean difference of best CV score (with - without): {diff.mean():+.4f} "
        f"(median {diff.median():+.4f}) over the {len(diff)} tasks where both have one; "
        "accuracy or R² by task kind",
        f"- fits without a complete trial: with history {no_trial[0]}, without {no_trial[1]}",
        f"- first trial of the fit with history from the history: "
        f"{int(ok['with_first_origin'].astype(str).str.startswith('history:').sum())} "
        f"of {len(ok)}",
        f"- reached last month's best CV score: with history {int(reach_w.notna().sum())}, "
        f"without {int(reach_wo.notna().sum())} of {len(ok)} tasks",
        f"- seconds from process start to reach it (median over tasks that did): with "
        f"history {np.nanmedian(reach_w):.2f} s, without {np.nanmedian(reach_wo):.2f} s "
        f"(target: under a quarter of the budget, {budget / 4:g} s)"
        if reach_w.notna().any() and reach_wo.notna().any() else
        "- seconds to reach it: too few tasks reached it to say",
        f"- of which before the search starts (reading, meta-features, warm start; median): "
        f"with history {ok['with_search_start_s'].median():.2f} s, without "
        f"{ok['without_search_start_s'].median():.2f} s",
        f"- median over all tasks, counting a task that never reached it as the whole "
        f"budget: with {np.nanmedian(reach_w.fillna(budget)):.2f} s, without "
        f"{np.nanmedian(reach_wo.fillna(budget)):.2f} s",
        "",
        "| task | kind | rows | last month best | this month with history | without | "
        "reach with (s) | reach without (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    def num(x: Any) -> str:
        return "no trial" if pd.isna(x) else f"{x:.4f}"

    for r in ok.itertuples():
        lines.append(f"| {r.name} | {r.kind} | {r.rows} | {num(r.last_best)} | "
                     f"{num(r.with_best)} | {num(r.without_best)} | "
                     f"{'' if pd.isna(r.with_reach_s) else r.with_reach_s} | "
                     f"{'' if pd.isna(r.without_reach_s) else r.without_reach_s} |")
    failed = df[df["status"] != "ok"]
    for r in failed.itertuples():
        lines.append(f"\nfailed: {r.name}: {r.error}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--min-rows", type=int, default=400)
    ap.add_argument("--budget", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--out", type=Path, default=RESULTS / "history_retrain.csv")
    ap.add_argument("--keep-work", action="store_true")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated task names: run only these "
                    "of the chosen tasks (e.g. to look at one again with --keep-work)")
    args = ap.parse_args()
    done = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame(columns=COLUMNS)
    if not args.summary_only:
        chosen = tables.choose_corpus(tables.corpus_tables(args.corpus), args.tasks,
                                      args.min_rows)
        if args.only:
            chosen = [t for t in chosen if t.name in set(args.only.split(","))]
        for i, table in enumerate(chosen, 1):
            if table.name in set(done["name"]):
                continue
            try:
                row = one_task(table, args)
            except Exception as exc:  # recorded, the run goes on
                row = {"name": table.name, "kind": table.kind, "budget": args.budget,
                       "status": "failed", "error": str(exc)[:300]}
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            done.to_csv(args.out, index=False)
            print(f"[{i}/{len(chosen)}] {table.name}: last {row.get('last_best')} with "
                  f"{row.get('with_best')} ({row.get('with_reach_s')} s) without "
                  f"{row.get('without_best')} ({row.get('without_reach_s')} s) "
                  f"{row.get('error', '')}", flush=True)
    text = summarise(done, args.budget)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
