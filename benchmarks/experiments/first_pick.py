"""Which of the warm start's first suggestions should go first? Data for that question.

Leave-one-task-out as in ``loo.py`` (the task and its variants removed; normalisation,
neighbours, portfolio and performance model from what is left), on the same tasks, data,
folds and seed. The ``learned`` warm start's first ``--top`` suggestions (of the
``--warm-start`` the LOO searches enqueue) are each evaluated once, so that any reordering
of them can be scored without re-running searches: the best of the first 5 and of the
first 10 do not depend on the order within each group, and the first trial is whichever
suggestion a rule puts first.

    python benchmarks/experiments/first_pick.py --n-tasks 60 --top 10 --n-jobs 2   # resumable

Writes ``benchmarks/experiments/results/first_pick.csv``: one row per (task, suggestion),
with its position in the current order, family, configuration id, origin, the performance
model's prediction and the CV score, and the stored cold search's best of 1 and of 5.
"""

from __future__ import annotations

import argparse
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py

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
    task_specs,
)

from automl_meta.meta.metabase import Metabase, config_id, load_metabase  # noqa: E402
from automl_meta.meta.neighbors import nearest  # noqa: E402
from automl_meta.meta.surrogate import fit_surrogate  # noqa: E402
from automl_meta.meta.warmstart import compute_portfolio, suggest  # noqa: E402
from automl_meta.search.optimize import run_search  # noqa: E402
from automl_meta.search.space import load_space, task_kind  # noqa: E402


def run_task(mb: Metabase, specs: dict, task_id: str, warm_n: int, k: int,
             positions: list[int]) -> list[dict]:
    space = load_space()
    row, excluded, norm = held_out(mb, task_id)
    neighbours = nearest(mb, row.to_dict(), row["task"], k=k, exclude=excluded,
                         normalisation=norm)
    portfolio = compute_portfolio(mb, space, task_kind(row["task"]), exclude=excluded)
    surrogate = fit_surrogate(mb, space, row["task"], exclude=excluded, normalisation=norm)
    ctx, seed = context_for(row, mb, specs[task_id])
    ws = suggest(mb, neighbours, row["task"], len(ctx.y), space, warm_n, portfolio=portfolio,
                 strategy="learned", metafeatures=row.to_dict(), surrogate=surrogate)
    timeout = float(mb.manifest["build"].get("trial_timeout") or 120)
    greater = str(row["greater_is_better"]).lower() in ("true", "1", "1.0")
    cold = cold_scores(mb, task_id)
    out = []
    for pos in positions:
        if pos >= len(ws.suggestions):
            continue
        sug = ws.suggestions[pos]
        res = run_search(ctx, n_trials=1, seed=seed, enqueue=[(sug.config, sug.origin)],
                         trial_timeout=timeout, prune=False)
        rec = res.records[0] if res.records else None
        out.append({"task_id": task_id, "task": row["task"], "greater_is_better": greater,
                    "position": pos, "family": sug.config["family"],
                    "config_id": config_id(sug.config), "origin": sug.origin,
                    "predicted": sug.source_score,
                    "score": rec.score if rec is not None and rec.state == "COMPLETE"
                    else None,
                    "cold_1": best_so_far(cold, greater, 1),
                    "cold_5": best_so_far(cold, greater, 5)})
    return out


def summarise(df: pd.DataFrame) -> str:
    """How often the suggestion at each position, and the best of the first 5 / 10, beats
    the cold search's best of 5 (scores at the metabase's stored precision)."""
    df = at_stored_precision(df, ["score", "cold_5"])
    sign = df["greater_is_better"].map(lambda g: 1.0 if g else -1.0)
    df = df.assign(signed=(df["score"] * sign).fillna(-float("inf")),
                   cold=df["cold_5"] * sign)

    def wtl(diff: pd.Series) -> str:
        w, t, lo = int((diff > 0).sum()), int((diff == 0).sum()), int((diff < 0).sum())
        return f"{w} | {t} | {lo} | {w / max(1, w + lo):.0%}"

    lines = [f"{df['task_id'].nunique()} tasks", "",
             "| first trial would be | beats cold best of 5 | ties | loses | of differing |",
             "|---|---:|---:|---:|---:|"]
    for pos, grp in df.groupby("position"):
        lines.append(f"| suggestion {pos + 1} | {wtl(grp['signed'] - grp['cold'])} |")
    for n in (5, 10):
        best = df[df["position"] < n].groupby("task_id").agg(signed=("signed", "max"),
                                                             cold=("cold", "first"))
        lines.append(f"| the best of suggestions 1-{n} (hindsight) | "
                     f"{wtl(best['signed'] - best['cold'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metabase", default=str(ROOT / "metabase"))
    ap.add_argument("--n-tasks", type=int, default=60)
    ap.add_argument("--warm-start", type=int, default=10)
    ap.add_argument("--top", type=int, default=10, help="suggestions evaluated per task")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--out", default=str(EXPERIMENT_RESULTS / "first_pick.csv"))
    add_corpus_argument(ap)
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if args.summary_only:
        text = summarise(pd.read_csv(out))
        out.with_suffix(".md").write_text(
            "# Which suggestion first? Each of the learned warm start's first 10, alone\n\n"
            f"Command: `python benchmarks/experiments/first_pick.py --n-tasks {args.n_tasks} --top "
            f"{args.top}`\n\n{text}\n")
        print(text)
        return
    mb = load_metabase(args.metabase)
    specs = task_specs(mb, args.corpus)
    rows = pd.read_csv(out).to_dict("records") if out.exists() else []
    done = {(r["task_id"], int(r["position"])) for r in rows}
    tasks = choose_tasks(mb, args.n_tasks)
    # the first 5 of every task before the next 5: a partial run answers the first question
    todo = []
    for lo, hi in ((0, min(5, args.top)), (5, args.top)):
        for t in tasks:
            pos = [p for p in range(lo, hi) if (t, p) not in done]
            if pos:
                todo.append((t, pos))
    lock = threading.Lock()

    def one(item: tuple[str, list[int]]) -> None:
        tid, positions = item
        res = run_task(mb, specs, tid, args.warm_start, args.k, positions)
        with lock:
            rows.extend(res)
            pd.DataFrame(rows).sort_values(["task_id", "position"]).to_csv(out, index=False)
            print(f"{tid:<45} " + " ".join(f"{r['position']}:{r['family']}={r['score']}"
                                           for r in res), flush=True)

    with ThreadPoolExecutor(max_workers=max(1, args.n_jobs)) as pool:
        for f in [pool.submit(one, t) for t in todo]:
            f.result()


if __name__ == "__main__":
    main()
