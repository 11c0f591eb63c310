"""Leave-one-task-out: does the warm start pay?

For each chosen task of the metabase: the task and every variant of the same data (same
name stem, e.g. ``bridges.version1`` / ``bridges.version2``, ``csb_ch19a`` / ``csb_ch19b``)
are removed; meta-feature normalisation, neighbours and portfolio are computed from what is
left; a warm search (the product's default: 10 suggested configurations, then TPE) runs for
25 trials on exactly the data, folds, rows and seed the metabase build used for that task.
The cold search with that seed is the build's own study (plain TPE, same code path), so its
first 25 trials are read from ``results.csv``; ``--verify-cold N`` re-runs the cold search on
the first N tasks and checks that the scores are identical.

Scores: best CV score after 5, 10 and 25 trials (and the first warm trial alone, zero-shot),
normalised per task: 0 = the worst of these runs, 1 = the best any of them found.

    python benchmarks/experiments/loo.py --n-tasks 60     # resumable; writes experiments/results/
    python benchmarks/experiments/loo.py --summary-only   # re-print the summary
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py

import strategies  # noqa: E402, F401  (registers the experiments' blend and rank)
from common import (  # noqa: E402
    EXPERIMENT_RESULTS,
    ROOT,
    add_corpus_argument,
    at_stored_precision,
    best_so_far,
    choose_tasks,
    cold_scores,
    context_for,
    held_out,
    normalise_per_task,
    task_specs,
)

from automl_meta.meta.metabase import Metabase, load_metabase  # noqa: E402
from automl_meta.meta.neighbors import nearest  # noqa: E402
from automl_meta.meta.surrogate import fit_surrogate  # noqa: E402
from automl_meta.meta.warmstart import available, compute_portfolio, suggest  # noqa: E402
from automl_meta.search.optimize import run_search  # noqa: E402
from automl_meta.search.space import load_space, task_kind  # noqa: E402

BUDGETS = (5, 10, 25)

def _scores(result) -> list[float | None]:
    return [r.score if r.state == "COMPLETE" else None for r in result.records]


def run_task(mb: Metabase, specs: dict, task_id: str, warm_n: int, k: int,
             variants: tuple[str, ...] = ("local",), verify_cold: bool = False) -> dict:
    """Warm searches (the first variant to 25 trials, the others through their suggestions)
    and the stored cold study of one task, with the task and its variants left out."""
    space = load_space()
    row, excluded, norm = held_out(mb, task_id)
    neighbours = nearest(mb, row.to_dict(), row["task"], k=k, exclude=excluded,
                         normalisation=norm)
    kind = task_kind(row["task"])
    portfolio = compute_portfolio(mb, space, kind, exclude=excluded)
    ctx, seed = context_for(row, mb, specs[task_id])
    timeout = float(mb.manifest["build"].get("trial_timeout") or 120)
    greater = str(row["greater_is_better"]).lower() in ("true", "1", "1.0")
    out = {"task_id": task_id, "name": row["name"], "task": row["task"],
           "n_rows": int(row["n_rows"]), "excluded": len(excluded),
           "nearest": neighbours[0].task_id if neighbours else None,
           "nearest_distance": neighbours[0].distance if neighbours else None,
           "greater_is_better": greater}
    surrogate = fit_surrogate(mb, space, row["task"], exclude=excluded, normalisation=norm) \
        if "learned" in variants else None
    for i, variant in enumerate(variants):
        ws = suggest(mb, neighbours, row["task"], len(ctx.y), space, warm_n,
                     portfolio=portfolio, strategy=variant, metafeatures=row.to_dict(),
                     surrogate=surrogate)
        t0 = time.monotonic()
        n_trials = max(BUDGETS) if i == 0 else len(ws.suggestions)
        warm = run_search(ctx, n_trials=n_trials, seed=seed,
                          enqueue=[(x.config, x.origin) for x in ws.suggestions],
                          trial_timeout=timeout)
        scores = _scores(warm)
        prefix = "" if i == 0 else f"{variant}_"
        out[f"{prefix}zero_shot"] = scores[0] if scores else None
        for b in BUDGETS if i == 0 else BUDGETS[:2]:
            out[f"{prefix}warm_{b}"] = best_so_far(scores, greater, b)
        if i == 0:
            out["n_suggested"] = len(ws.suggestions)
            out["warm_seconds"] = round(time.monotonic() - t0, 1)
    cold = cold_scores(mb, task_id)
    if verify_cold:  # the cold search re-run here must equal the build's stored study
        rerun = _scores(run_search(ctx, n_trials=max(BUDGETS), seed=seed))
        stored = cold[:max(BUDGETS)]
        same = all((a is None and b is None) or (a is not None and b is not None and
                                                 abs(a - b) < 1e-9)
                   for a, b in zip(rerun, stored, strict=True))
        if not same:
            raise SystemExit(f"{task_id}: re-run cold search differs from the metabase's")
    for b in BUDGETS:
        out[f"cold_{b}"] = best_so_far(cold, greater, b)
    return out






def summarise(df: pd.DataFrame) -> str:
    main_cols = [f"{m}_{b}" for m in ("warm", "cold") for b in BUDGETS] + ["zero_shot"]
    extra = sorted({c.split("_warm_")[0].split("_zero_shot")[0] for c in df.columns
                    if "_warm_" in c or c.endswith("_zero_shot")} - {""})
    extra = [v for v in extra if v not in ("warm", "cold")]
    variant_cols = [f"{v}_{c}" for v in extra
                    for c in ("warm_5", "warm_10", "warm_25", "zero_shot")
                    if f"{v}_{c}" in df.columns]
    cols = main_cols + variant_cols
    df = at_stored_precision(df, cols)
    norm = normalise_per_task(df, cols)
    lines = [f"{len(df)} tasks ({(df.task == 'regression').sum()} regression, "
             f"{(df.task != 'regression').sum()} classification)", "",
             "| run | mean normalised score |", "|---|---:|"]
    for c in cols:
        lines.append(f"| {c} | {norm[c].mean():.3f} |")

    def wtl(a: str, b: str) -> str:
        both = df[a].notna() & df[b].notna()  # tasks a variant was not run on are left out
        diff = (norm[a] - norm[b]).astype(float)[both]
        w, t, lo = int((diff > 1e-9).sum()), int((diff.abs() <= 1e-9).sum()), int(
            (diff < -1e-9).sum())
        share = w / (w + lo) if w + lo else float("nan")
        return f"| {a} vs {b} | {w} | {t} | {lo} | {share:.0%} |"

    lines += ["", "| comparison | wins | ties | losses | wins where they differ |",
              "|---|---:|---:|---:|---:|"]
    pairs = [("warm_5", "cold_5"), ("warm_10", "cold_10"), ("warm_25", "cold_25"),
             ("warm_10", "cold_25"), ("zero_shot", "cold_5")]
    for v in extra:
        pairs += [(f"{v}_warm_10", "cold_10"), (f"{v}_zero_shot", "cold_5"),
                  ("warm_10", f"{v}_warm_10")]
        if f"{v}_warm_25" in df.columns:
            pairs += [(f"{v}_warm_25", "cold_25"), ("warm_25", f"{v}_warm_25")]
    for a, b in pairs:
        lines.append(wtl(a, b))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="leave-one-task-out warm vs cold")
    ap.add_argument("--metabase", default=str(ROOT / "metabase"))
    ap.add_argument("--n-tasks", type=int, default=60)
    ap.add_argument("--warm-start", type=int, default=10)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--variants", default="local,rank",
                    help="warm-start strategies, comma-separated; the first runs to 25 trials, "
                         "the others through their suggestions only")
    ap.add_argument("--n-jobs", type=int, default=1, help="tasks run at once")
    ap.add_argument("--out", default=str(EXPERIMENT_RESULTS / "loo_tasks.csv"))
    ap.add_argument("--summary-only", action="store_true")
    add_corpus_argument(ap)
    ap.add_argument("--verify-cold", type=int, default=2,
                    help="re-run the cold search on the first N new tasks and check it equals "
                         "the metabase's stored study")
    args = ap.parse_args()
    out = Path(args.out)
    mb = load_metabase(args.metabase)
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    unknown = [v for v in variants if v not in available()]
    if unknown:  # before any search runs
        raise SystemExit(f"unknown variants {unknown}; choose from {available()}")
    done = pd.read_csv(out) if out.exists() else pd.DataFrame()
    if not args.summary_only:
        rows = done.to_dict("records")
        by_task = {r["task_id"]: r for r in rows}
        specs = task_specs(mb, args.corpus)
        # a task is to do when it has no default-variant result (warm_25) yet; results of
        # other variants already in its row are kept
        todo = [t for t in choose_tasks(mb, args.n_tasks)
                if pd.isna(by_task.get(t, {}).get("warm_25"))]
        lock = threading.Lock()

        def one(i: int, tid: str) -> None:
            res = run_task(mb, specs, tid, args.warm_start, args.k, variants,
                           verify_cold=i < args.verify_cold)
            with lock:
                if tid in by_task:
                    by_task[tid].update(res)
                else:
                    rows.append(res)
                    by_task[tid] = res
                pd.DataFrame(rows).to_csv(out, index=False)
                print(f"[{len(rows)}] {tid:<45} warm10={res['warm_10']} "
                      f"cold10={res['cold_10']} ({res['warm_seconds']} s)", flush=True)

        with ThreadPoolExecutor(max_workers=max(1, args.n_jobs)) as pool:
            for f in [pool.submit(one, i, t) for i, t in enumerate(todo)]:
                f.result()
        done = pd.DataFrame(rows)
    text = summarise(done)
    (out.with_suffix(".md")).write_text(
        "# Leave-one-task-out: warm vs cold\n\nCommand: `python benchmarks/experiments/loo.py "
        f"--n-tasks {args.n_tasks} --variants {args.variants}`"
        + (" (this summary: `--summary-only`, from the runs in loo_tasks.csv)"
           if args.summary_only else "") + "\n\n" + text + "\n")
    print(text)


if __name__ == "__main__":
    main()
