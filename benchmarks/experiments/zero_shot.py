"""Zero-shot: how good is the *first* warm-start configuration of each strategy?

Leave-one-task-out as in ``loo.py`` (the task and its variants removed; normalisation,
neighbours and portfolio from what is left), on the same tasks, data, folds and seed. For
each strategy of :func:`automl_meta.meta.warmstart.suggest` the first suggested configuration is
evaluated once (a configuration two strategies both chose is evaluated once); its CV score
is compared with the best of the cold search's first 5 trials (the build's stored study).

    python benchmarks/experiments/zero_shot.py --n-tasks 60 --n-jobs 2     # resumable

Writes ``benchmarks/experiments/results/zero_shot.csv`` and ``zero_shot.md``.

``--task-set rest`` runs on every other task of the metabase instead (the tasks ``loo.py``
never reports on): a second, larger sample, to check that what was seen on the 60 was not
luck, and the one to compare variants on before looking at the 60:

    python benchmarks/experiments/zero_shot.py --task-set rest --strategies learned --n-jobs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py

from common import (  # noqa: E402
    EXPERIMENT_RESULTS,
    ROOT,
    add_corpus_argument,
    at_stored_precision,
    best_so_far,
    choose_tasks,
    cold_bests,
    cold_scores,
    context_for,
    held_out,
    normalise_per_task,
    task_specs,
)
from strategies import BLEND_NEIGHBOURS  # noqa: E402  (also registers blend and rank)

from automl_meta.meta.metabase import Metabase, load_metabase  # noqa: E402
from automl_meta.meta.neighbors import nearest  # noqa: E402
from automl_meta.meta.surrogate import fit_surrogate  # noqa: E402
from automl_meta.meta.warmstart import compute_portfolio, suggest  # noqa: E402
from automl_meta.search.optimize import run_search  # noqa: E402
from automl_meta.search.space import load_space, task_kind  # noqa: E402

STRATEGIES = ("local", "blend", "portfolio", "rank", "learned")


def run_task(mb: Metabase, specs: dict, task_id: str, k: int,
             strategies: tuple[str, ...] = STRATEGIES) -> dict:
    space = load_space()
    row, excluded, norm = held_out(mb, task_id)
    wide = nearest(mb, row.to_dict(), row["task"], k=max(k, BLEND_NEIGHBOURS),
                   exclude=excluded, normalisation=norm)
    portfolio = compute_portfolio(mb, space, task_kind(row["task"]), exclude=excluded)
    ctx, seed = context_for(row, mb, specs[task_id])
    timeout = float(mb.manifest["build"].get("trial_timeout") or 120)
    greater = str(row["greater_is_better"]).lower() in ("true", "1", "1.0")
    cold = cold_scores(mb, task_id)
    out = {"task_id": task_id, "task": row["task"], "greater_is_better": greater,
           "cold_1": best_so_far(cold, greater, 1),
           "cold_5": best_so_far(cold, greater, 5)}
    scored: dict[str, float | None] = {}
    surrogate = fit_surrogate(mb, space, row["task"], exclude=excluded, normalisation=norm) \
        if "learned" in strategies else None
    for strategy in strategies:
        nbs = wide if strategy == "blend" else wide[:k]
        ws = suggest(mb, nbs, row["task"], len(ctx.y), space, 1, portfolio=portfolio,
                     strategy=strategy, metafeatures=row.to_dict(), surrogate=surrogate)
        if not ws.suggestions:
            out[strategy] = None
            continue
        config = ws.suggestions[0].config
        key = json.dumps(config, sort_keys=True)
        if key not in scored:
            res = run_search(ctx, n_trials=1, seed=seed, enqueue=[(config, strategy)],
                             trial_timeout=timeout, prune=False)
            rec = res.records[0] if res.records else None
            scored[key] = rec.score if rec is not None and rec.state == "COMPLETE" else None
        out[strategy] = scored[key]
        out[f"{strategy}_family"] = config["family"]
    return out


def summarise(df: pd.DataFrame, mb: Metabase) -> str:
    """The table of ``zero_shot.md``; the last column compares each first trial with a
    second cold draw, the best of the build's trials 6-10 (see ``common.cold_bests``)."""
    lines = [f"{len(df)} tasks ({(df.task == 'regression').sum()} regression, "
             f"{(df.task != 'regression').sum()} classification)", "",
             "| first configuration of | beats cold best of 5 | ties | loses | of differing "
             "| beats cold's first trial | mean normalised score | beats trials 6-10 instead "
             "(of differing) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    present = [s for s in STRATEGIES if s in df]
    cols = present + ["cold_1", "cold_5"]
    df = at_stored_precision(df, cols)
    norm = normalise_per_task(df, cols)
    signs = df["greater_is_better"].astype(bool)
    second = at_stored_precision(pd.DataFrame({"b": [
        cold_bests(mb, t, g)[1] for t, g in zip(df["task_id"], signs, strict=True)]},
        index=df.index), ["b"])["b"]
    sign = signs.map({True: 1.0, False: -1.0})
    for s in present:
        d5 = norm[s] - norm["cold_5"]
        d1 = norm[s] - norm["cold_1"]
        db = np.sign((df[s] - second) * sign).dropna()
        w, t, lo = int((d5 > 1e-9).sum()), int((d5.abs() <= 1e-9).sum()), int((d5 < -1e-9).sum())
        wb, lb = int((db > 0).sum()), int((db < 0).sum())
        lines.append(f"| {s} | {w} ({w / len(df):.0%}) | {t} | {lo} | "
                     f"{w / max(1, w + lo):.0%} | "
                     f"{int((d1 > 1e-9).sum())} ({(d1 > 1e-9).mean():.0%}) | "
                     f"{norm[s].mean():.3f} | {wb} / {wb + lb} ({wb / max(1, wb + lb):.0%}) |")
    lines.append(f"| (cold best of 5) | | | | | | {norm['cold_5'].mean():.3f} | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="zero-shot warm-start strategies")
    ap.add_argument("--metabase", default=str(ROOT / "metabase"))
    ap.add_argument("--n-tasks", type=int, default=60)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--task-set", choices=("loo", "rest"), default="loo",
                    help="loo: the --n-tasks tasks loo.py reports on; rest: all the others")
    ap.add_argument("--strategies", default=",".join(STRATEGIES),
                    help="comma-separated warm-start strategies to evaluate")
    ap.add_argument("--out", default=None,
                    help="results CSV (default: results/zero_shot.csv, or "
                         "zero_shot_rest.csv for --task-set rest)")
    add_corpus_argument(ap)
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out or EXPERIMENT_RESULTS / ("zero_shot.csv" if args.task_set == "loo"
                                      else "zero_shot_rest.csv"))
    strategies = tuple(s for s in args.strategies.split(",") if s)
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise SystemExit(f"unknown strategies {sorted(unknown)}; choose from {STRATEGIES}")
    mb = load_metabase(args.metabase)
    done = pd.read_csv(out) if out.exists() else pd.DataFrame()
    rows = done.to_dict("records")
    if not args.summary_only:
        specs = task_specs(mb, args.corpus)
        by_task = {r["task_id"]: r for r in rows}
        # a task is to do for the strategies it has no column for (a strategy added later)
        tasks = choose_tasks(mb, args.n_tasks)
        if args.task_set == "rest":
            reported = set(tasks)
            tasks = [t for t in mb.ok_tasks().sort_values("task_id")["task_id"]
                     if t not in reported]
        todo = [(t, tuple(s for s in strategies if s not in by_task.get(t, {})))
                for t in tasks]
        todo = [(t, s) for t, s in todo if s]
        lock = threading.Lock()

        def one(item: tuple[str, tuple[str, ...]]) -> None:
            tid, strategies = item
            res = run_task(mb, specs, tid, args.k, strategies)
            with lock:
                if tid in by_task:
                    by_task[tid].update(res)
                else:
                    rows.append(res)
                    by_task[tid] = res
                pd.DataFrame(rows).to_csv(out, index=False)
                print(f"{tid:<45} " + " ".join(
                    f"{s}={res.get(s)}" for s in (*strategies, "cold_5")), flush=True)

        with ThreadPoolExecutor(max_workers=max(1, args.n_jobs)) as pool:
            for f in [pool.submit(one, t) for t in todo]:
                f.result()
    text = summarise(pd.DataFrame(rows), mb)
    command = f"python benchmarks/experiments/zero_shot.py --n-tasks {args.n_tasks}"
    if args.task_set == "rest":
        command += f" --task-set rest --strategies {args.strategies}"
    out.with_suffix(".md").write_text(
        "# Zero-shot: the first warm-start configuration of each strategy\n\nCommand: "
        f"`{command}`\n\n{text}\n")
    print(text)


if __name__ == "__main__":
    main()
