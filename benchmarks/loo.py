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

    python benchmarks/loo.py --n-tasks 60          # resumable; writes benchmarks/results/
    python benchmarks/loo.py --summary-only        # re-print the summary
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from automl_meta.automl import _search_rows  # noqa: E402
from automl_meta.build import task_seed  # noqa: E402
from automl_meta.evaluate import EvalContext, make_folds  # noqa: E402
from automl_meta.metabase import Metabase, load_metabase  # noqa: E402
from automl_meta.neighbors import fit_normalisation, nearest  # noqa: E402
from automl_meta.search import run_search  # noqa: E402
from automl_meta.sources.directory import list_tasks  # noqa: E402
from automl_meta.space import load_space, task_kind  # noqa: E402
from automl_meta.warmstart import compute_portfolio, suggest  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BUDGETS = (5, 10, 25)


def stem(name: str) -> str:
    """The data a task comes from: drop variant suffixes (.version1, .orig, 19a, _2 …)."""
    base = name.split(".")[0].lower()
    return re.sub(r"[_-]?\d+[a-z]?$|[_-]?v(ersion)?\d+$", "", base) or base


def choose_tasks(mb: Metabase, n: int) -> list[str]:
    ok = mb.ok_tasks().sort_values("task_id")
    per_kind = []
    for kind in ("classification", "regression"):
        sub = ok[ok["task"].map(task_kind) == kind]
        k = min(len(sub), n // 2)
        idx = np.unique(np.linspace(0, len(sub) - 1, k).round().astype(int)) if k else []
        per_kind.append(sub.iloc[idx])
    return list(pd.concat(per_kind)["task_id"])


def best_so_far(scores: list[float | None], greater: bool, n: int) -> float | None:
    vals = [s for s in scores[:n] if s is not None and np.isfinite(s)]
    if not vals:
        return None
    return max(vals) if greater else min(vals)


def task_specs(mb: Metabase) -> dict:
    """The build's own task loaders (same source, same target, same typing)."""
    src = mb.manifest.get("source", {})
    if src.get("type") != "dir":
        raise SystemExit("loo.py needs a metabase built from a local folder (--source dir)")
    path = Path(src["path"])
    if not path.is_absolute():
        path = ROOT / path
    return {s.task_id: s for s in list_tasks(path)}


def context_for(row: pd.Series, mb: Metabase, spec) -> tuple[EvalContext, int]:
    """The EvalContext the build used for this task (same rows, folds, seed)."""
    build = mb.manifest["build"]
    seed = task_seed(int(build["seed"]), row["task_id"])
    loaded = spec.load()
    ds = loaded.dataset
    if ds.classes is not None:
        y = ds.y.map({c: i for i, c in enumerate(ds.classes)}).to_numpy(dtype=int)
    else:
        y = ds.y.to_numpy(dtype=float)
    idx = _search_rows(y, ds.task, int(build["max_rows"]), seed)
    folds = loaded.folds if (loaded.folds and len(idx) == len(y)) else \
        make_folds(y[idx], ds.task, seed)
    ctx = EvalContext(ds.X.iloc[idx].reset_index(drop=True), y[idx], ds.task, ds.schema,
                      len(ds.classes) if ds.classes else 0, row["metric"], folds, load_space(),
                      seed)
    return ctx, seed


def run_task(mb: Metabase, specs: dict, task_id: str, warm_n: int, k: int,
             verify_cold: bool = False) -> dict:
    space = load_space()
    row = mb.tasks.set_index("task_id").loc[task_id]
    row["task_id"] = task_id
    s = stem(str(row["name"]))
    names = mb.tasks.set_index("task_id")["name"].astype(str)
    excluded = {tid for tid, name in names.items() if stem(name) == s}
    rest = mb.tasks[~mb.tasks["task_id"].isin(excluded)]
    norm = fit_normalisation(rest)
    neighbours = nearest(mb, row.to_dict(), row["task"], k=k, exclude=excluded,
                         normalisation=norm)
    kind = task_kind(row["task"])
    portfolio = compute_portfolio(mb, space, kind, exclude=excluded)
    ctx, seed = context_for(row, mb, specs[task_id])
    ws = suggest(mb, neighbours, row["task"], len(ctx.y), space, warm_n, portfolio=portfolio)
    t0 = time.monotonic()
    warm = run_search(ctx, n_trials=max(BUDGETS), seed=seed,
                      enqueue=[(x.config, x.origin) for x in ws.suggestions],
                      trial_timeout=float(mb.manifest["build"].get("trial_timeout") or 120))
    warm_seconds = time.monotonic() - t0
    greater = str(row["greater_is_better"]).lower() in ("true", "1", "1.0")
    cold_rows = mb.results[mb.results["task_id"] == task_id].sort_values("trial")
    cold_scores = [None if r.state != "COMPLETE" else float(r.score)
                   for r in cold_rows.itertuples()]
    warm_scores = [r.score if r.state == "COMPLETE" else None for r in warm.records]
    if verify_cold:  # the cold search re-run here must equal the build's stored study
        cold = run_search(ctx, n_trials=max(BUDGETS), seed=seed)
        rerun = [r.score if r.state == "COMPLETE" else None for r in cold.records]
        stored = cold_scores[:max(BUDGETS)]
        same = all((a is None and b is None) or (a is not None and b is not None and
                                                 abs(a - b) < 1e-9)
                   for a, b in zip(rerun, stored, strict=True))
        if not same:
            raise SystemExit(f"{task_id}: re-run cold search differs from the metabase's")
    out = {"task_id": task_id, "name": row["name"], "task": row["task"],
           "n_rows": int(row["n_rows"]), "excluded": len(excluded),
           "nearest": neighbours[0].task_id if neighbours else None,
           "nearest_distance": neighbours[0].distance if neighbours else None,
           "n_suggested": len(ws.suggestions), "greater_is_better": greater,
           "warm_seconds": round(warm_seconds, 1), "zero_shot": warm_scores[0]}
    for b in BUDGETS:
        out[f"warm_{b}"] = best_so_far(warm_scores, greater, b)
        out[f"cold_{b}"] = best_so_far(cold_scores, greater, b)
    return out


def summarise(df: pd.DataFrame) -> str:
    cols = [f"{m}_{b}" for m in ("warm", "cold") for b in BUDGETS] + ["zero_shot"]
    norm = pd.DataFrame(index=df.index, columns=cols, dtype=float)
    for i, r in df.iterrows():
        vals = pd.to_numeric(r[cols], errors="coerce").astype(float)
        sign = 1.0 if r["greater_is_better"] else -1.0
        v = vals * sign
        lo, hi = np.nanmin(v), np.nanmax(v)
        norm.loc[i] = ((v - lo) / (hi - lo)).fillna(0.0) if hi > lo else 1.0
    lines = [f"{len(df)} tasks ({(df.task == 'regression').sum()} regression, "
             f"{(df.task != 'regression').sum()} classification)", "",
             "| run | mean normalised score |", "|---|---:|"]
    for c in cols:
        lines.append(f"| {c} | {norm[c].mean():.3f} |")

    def wtl(a: str, b: str) -> str:
        diff = (norm[a] - norm[b]).astype(float)
        w, t, lo = int((diff > 1e-9).sum()), int((diff.abs() <= 1e-9).sum()), int(
            (diff < -1e-9).sum())
        share = w / (w + lo) if w + lo else float("nan")
        return f"| {a} vs {b} | {w} | {t} | {lo} | {share:.0%} |"

    lines += ["", "| comparison | wins | ties | losses | wins where they differ |",
              "|---|---:|---:|---:|---:|"]
    for a, b in (("warm_5", "cold_5"), ("warm_10", "cold_10"), ("warm_25", "cold_25"),
                 ("warm_10", "cold_25"), ("zero_shot", "cold_5")):
        lines.append(wtl(a, b))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="leave-one-task-out warm vs cold")
    ap.add_argument("--metabase", default=str(ROOT / "metabase"))
    ap.add_argument("--n-tasks", type=int, default=60)
    ap.add_argument("--warm-start", type=int, default=10)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--out", default=str(RESULTS / "loo_tasks.csv"))
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--verify-cold", type=int, default=2,
                    help="re-run the cold search on the first N new tasks and check it equals "
                         "the metabase's stored study")
    args = ap.parse_args()
    out = Path(args.out)
    mb = load_metabase(args.metabase)
    done = pd.read_csv(out) if out.exists() else pd.DataFrame()
    if not args.summary_only:
        rows = done.to_dict("records")
        specs = task_specs(mb)
        for tid in choose_tasks(mb, args.n_tasks):
            if len(done) and tid in set(done["task_id"]):
                continue
            verify = args.verify_cold > 0
            args.verify_cold -= 1
            res = run_task(mb, specs, tid, args.warm_start, args.k, verify_cold=verify)
            rows.append(res)
            pd.DataFrame(rows).to_csv(out, index=False)
            print(f"{tid:<45} warm10={res['warm_10']} cold10={res['cold_10']} "
                  f"({res['warm_seconds']} s)", flush=True)
        done = pd.DataFrame(rows)
    text = summarise(done)
    (out.with_suffix(".md")).write_text(
        "# Leave-one-task-out: warm vs cold\n\nCommand: `python benchmarks/loo.py "
        f"--n-tasks {args.n_tasks}`\n\n" + text + "\n")
    print(text)


if __name__ == "__main__":
    main()
