"""A dense configuration × task matrix: the same configurations evaluated on every task.

The metabase holds each task's own search, so no configuration was ever run on two tasks;
every transfer estimate is indirect. This job evaluates one fixed candidate set on every
task of its kind, on the rows, folds and seed of the build: the metabase's global portfolio
(25 configurations per task kind, ``manifest.json``) and each family's default
configuration. With it, any zero-shot selection rule (which candidate to run first on a new
task) can be scored leave-one-task-out without running a model: the candidate's score on
the held-out task is in the matrix, and the cold search's best of 5 is in the metabase.

    python benchmarks/experiments/config_matrix.py --n-jobs 2      # resumable; hours of CPU

Tasks run in ``loo.py``'s interleaved order first (its 60, then the rest), so a partial
matrix is balanced between task kinds. Writes
``benchmarks/experiments/results/config_matrix.csv``: one row per (task, candidate) with the
candidate's source (``portfolio`` or ``default``), the configuration id it was made from,
the id actually run (after adapting to the data), the CV score, the state and the seconds
taken. A candidate the data cannot take (an SVM above its row limit) is recorded as
``skipped``.

Caveat for rules scored on it: the portfolio was chosen on the whole metabase, so each task
had a (small) say in which candidates exist; drop the candidates that came from the
held-out task and its variants, and compare with the family defaults, which no task chose.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
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
    choose_tasks,
    cold_bests,
    context_for,
    held_out,
    task_specs,
)

from automl_meta.meta.metabase import Metabase, config_id, load_metabase  # noqa: E402
from automl_meta.meta.neighbors import nearest, normalise  # noqa: E402
from automl_meta.meta.surrogate import fit_surrogate  # noqa: E402
from automl_meta.search.optimize import run_search  # noqa: E402
from automl_meta.search.space import SearchSpace, load_space, task_kind  # noqa: E402


def candidates(mb: Metabase, space: SearchSpace, task: str) -> list[tuple[str, str, dict]]:
    """(source, source config id, config) for one task: the portfolio of its kind, then
    each family's default configuration."""
    kind = task_kind(task)
    out = [("portfolio", cid, dict(mb.configs[cid]))
           for cid in mb.manifest.get("portfolio", {}).get(kind, []) if cid in mb.configs]
    for family in space.family_names(task):
        config = space.default_config(family, task)
        out.append(("default", config_id(config), config))
    return out


def run_task(mb: Metabase, specs: dict, space: SearchSpace, task_id: str,
             todo: set[str]) -> list[dict]:
    row = mb.tasks.set_index("task_id").loc[task_id].copy()
    row["task_id"] = task_id
    ctx, seed = context_for(row, mb, specs[task_id])
    allowed = set(space.family_names(row["task"], len(ctx.y)))
    timeout = float(mb.manifest["build"].get("trial_timeout") or 120)
    out = []
    for source, source_id, config in candidates(mb, space, row["task"]):
        if source_id not in todo:
            continue
        rec = {"task_id": task_id, "task": row["task"], "source": source,
               "source_config_id": source_id, "family": config["family"]}
        if config["family"] not in allowed:
            out.append(rec | {"config_id": None, "state": "skipped", "score": None,
                              "seconds": 0.0})
            continue
        if space.check_config(config, row["task"]):
            config = space.adapt_config(config, row["task"])
        t0 = time.monotonic()
        res = run_search(ctx, n_trials=1, seed=seed, enqueue=[(config, source)],
                         trial_timeout=timeout, prune=False)
        trial = res.records[0] if res.records else None
        out.append(rec | {"config_id": config_id(config),
                          "state": trial.state if trial is not None else "FAIL",
                          "score": trial.score if trial is not None else None,
                          "seconds": round(time.monotonic() - t0, 2)})
    return out


def _matrix_model(ranks: pd.DataFrame, info: pd.DataFrame, stats: dict,
                  row: pd.Series) -> np.ndarray:
    """Predicted rank of each candidate (the columns of ``ranks``) on ``row``'s task, by a
    model fitted on the matrix: (task meta-features, candidate) → the candidate's rank
    on the task."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    mf = normalise(info.loc[ranks.index], stats)
    n_tasks, n_cands = ranks.shape
    X = np.hstack([np.repeat(mf, n_cands, axis=0),
                   np.tile(np.arange(n_cands), n_tasks)[:, None]])
    cat = np.zeros(X.shape[1], bool)
    cat[-1] = True
    model = HistGradientBoostingRegressor(categorical_features=cat, max_iter=100,
                                          min_samples_leaf=10, random_state=0)
    model.fit(X, ranks.to_numpy().ravel())
    query = normalise(row.to_dict(), stats)
    return model.predict(np.hstack([np.repeat(query, n_cands, axis=0),
                                    np.arange(n_cands)[:, None]]))


def zero_shot_rules(mb: Metabase, matrix: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Leave-one-task-out on the matrix: each rule's first candidate for each complete
    task, its score there and the cold search's best of 5 (see the module docstring).

    Rules: ``learned`` (the default warm start's performance model, refitted without the
    task, choosing among the candidates), ``best_rank`` (the best mean rank over the other
    tasks of the matrix: a portfolio of one, chosen on dense data), ``knn_rank`` (the same
    over the ``k`` nearest of them by meta-feature distance), ``best_beat`` and
    ``knn_beat`` (the candidate that beat the cold best of 5 on the largest share of the
    other tasks, or of the ``k`` nearest: the target itself, estimated directly),
    ``matrix_model`` (a model fitted on the other tasks' rows of the matrix: meta-features
    and candidate → rank), ``learned+knn_rank`` and ``learned+matrix_model`` (the mean of
    the two rules' ranks among the candidates),
    ``default:<family>`` and ``hindsight`` (the best candidate on the task itself: the
    ceiling).

    Each pick is compared with two cold baselines (``common.cold_bests``): ``cold_5``, the
    best of the build's first 5 trials (the target's baseline), and ``cold_5b``, a second
    draw of the best of 5 random configurations (its trials 6 to 10)."""
    space = load_space()
    info = mb.tasks.set_index("task_id")
    source_task = mb.results.drop_duplicates("config_id").set_index("config_id")["task_id"]
    m = matrix.copy()
    greater_of = {t: str(g).lower() in ("true", "1", "1.0")
                  for t, g in info["greater_is_better"].items()}
    greater = m["task_id"].map(greater_of)
    m["signed"] = (pd.to_numeric(m["score"], errors="coerce")
                   * greater.map({True: 1.0, False: -1.0})).where(m["state"] == "COMPLETE")
    wide = m.pivot_table(index="task_id", columns="source_config_id", values="signed",
                         aggfunc="first")
    evaluated = m.groupby("task_id")["state"].apply(lambda s: (s != "skipped").sum())
    counts = m.groupby("task_id").size()
    complete = [t for t in wide.index if counts[t] == len(candidates(mb, space,
                                                                   info.loc[t, "task"]))]
    ranks = wide.rank(axis=1, pct=True)  # per task: 1 = best candidate; failed: NaN
    stored = at_stored_precision(wide, list(wide.columns))
    cold = {tid: cold_bests(mb, tid, greater_of[tid]) for tid in complete}
    signed_cold = at_stored_precision(pd.DataFrame(
        {"c": {t: np.nan if c[0] is None else c[0] * c[2] for t, c in cold.items()}}),
        ["c"])["c"]
    beats = stored.loc[complete].gt(signed_cold, axis=0).astype(float)
    out = []
    for tid in complete:
        row, same, norm = held_out(mb, tid)
        kind = task_kind(row["task"])
        offered = {cid: (src, config) for src, cid, config in candidates(mb, space, row["task"])}
        cands = [cid for cid, (src, _) in offered.items()
                 if (src == "default" or source_task.get(cid) not in same)
                 and cid in wide.columns and pd.notna(wide.loc[tid, cid])]
        if not cands or evaluated[tid] == 0:
            continue
        others = [t for t in complete if t not in same and task_kind(info.loc[t, "task"])
                  == kind]
        picks = {"hindsight": max(cands, key=lambda c: wide.loc[tid, c])}
        if not others:
            continue
        picks["best_rank"] = ranks.loc[others, cands].fillna(0.0).mean().idxmax()
        near = nearest(mb, row.to_dict(), row["task"], k=k, normalisation=norm,
                       exclude=set(info.index) - set(others))
        near_ids = [nb.task_id for nb in near]
        knn = ranks.loc[near_ids, cands].fillna(0.0).mean() if near_ids else None
        if knn is not None:
            picks["knn_rank"] = knn.idxmax()
            picks["knn_beat"] = beats.loc[near_ids, cands].mean().idxmax()
        picks["best_beat"] = beats.loc[others, cands].mean().idxmax()
        by_matrix = pd.Series(_matrix_model(ranks.loc[others, cands].fillna(0.0), info,
                                            norm[kind], row), index=cands)
        picks["matrix_model"] = by_matrix.idxmax()
        surrogate = fit_surrogate(mb, space, row["task"], exclude=same, normalisation=norm)
        if surrogate is not None:
            pred = surrogate.predict(row.to_dict(), [offered[c][1] for c in cands])
            picks["learned"] = cands[int(np.argmax(pred))]
            if knn is not None:  # the two opinions' ranks among the candidates, averaged
                both = pd.Series(pred, index=cands).rank() + knn.rank()
                picks["learned+knn_rank"] = both.idxmax()
            both = pd.Series(pred, index=cands).rank() + by_matrix.rank()
            picks["learned+matrix_model"] = both.idxmax()
        for cid in cands:
            src, config = offered[cid]
            if src == "default":
                picks[f"default:{config['family']}"] = cid
        cold_5, cold_5b, sign = cold[tid]
        for rule, cid in picks.items():
            out.append({"task_id": tid, "task": row["task"], "rule": rule,
                        "config_id": cid, "score": wide.loc[tid, cid] * sign,
                        "cold_5": cold_5, "cold_5b": cold_5b, "greater_is_better": sign > 0})
    return pd.DataFrame(out)


def summarise(rules: pd.DataFrame) -> str:
    if rules.empty:
        return "no task yet has a complete row and another complete task of its kind"
    df = at_stored_precision(rules, ["score", "cold_5", "cold_5b"])
    sign = df["greater_is_better"].map({True: 1.0, False: -1.0})
    df = df.assign(diff=np.sign((df["score"] - df["cold_5"]) * sign),
                   diff_b=np.sign((df["score"] - df["cold_5b"]) * sign),
                   kind=df["task"].map(task_kind))
    lines = [f"{df['task_id'].nunique()} complete tasks", "",
             "| first trial chosen by | beats cold best of 5 | ties | loses | of differing "
             "| classification | regression | vs trials 6-10 instead |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def share(d: pd.Series) -> str:
        w, lo = int((d > 0).sum()), int((d < 0).sum())
        return f"{w} / {w + lo} ({w / max(1, w + lo):.0%})"

    for rule, grp in df.groupby("rule"):
        w, t, lo = (int((grp["diff"] > 0).sum()), int((grp["diff"] == 0).sum()),
                    int((grp["diff"] < 0).sum()))
        by_kind = [share(grp.loc[grp["kind"] == k, "diff"])
                   for k in ("classification", "regression")]
        lines.append(f"| {rule} | {w} | {t} | {lo} | {w / max(1, w + lo):.0%} | "
                     f"{by_kind[0]} | {by_kind[1]} | {share(grp['diff_b'].dropna())} |")
    first = df.drop_duplicates("task_id")
    cold_b = np.sign((first["cold_5b"] - first["cold_5"]) * sign[first.index]).dropna()
    lines += ["", "Noise: the build's trials 6-10 (best completed) beat its first 5 on "
              f"{share(cold_b)} of the differing tasks; by symmetry both are draws of the "
              "same best-of-5-random, so a rule's two win rates differ by luck alone."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metabase", default=str(ROOT / "metabase"))
    ap.add_argument("--n-jobs", type=int, default=1, help="tasks evaluated at once")
    ap.add_argument("--out", default=str(EXPERIMENT_RESULTS / "config_matrix.csv"))
    add_corpus_argument(ap)
    ap.add_argument("--summary-only", action="store_true",
                    help="score zero-shot rules on the matrix so far (no evaluations)")
    args = ap.parse_args()
    out = Path(args.out)
    mb = load_metabase(args.metabase)
    if args.summary_only:
        text = summarise(zero_shot_rules(mb, pd.read_csv(out)))
        out.with_suffix(".md").write_text(
            "# Zero-shot rules scored on the configuration x task matrix\n\nCommand: "
            "`python benchmarks/experiments/config_matrix.py --summary-only` (leave one task out; "
            f"see the script's docstring)\n\n{text}\n")
        print(text)
        return
    space = load_space()
    specs = task_specs(mb, args.corpus)
    rows = pd.read_csv(out).to_dict("records") if out.exists() else []
    done = {(r["task_id"], r["source_config_id"]) for r in rows}
    first = choose_tasks(mb, 60)
    order = first + [t for t in mb.ok_tasks().sort_values("task_id")["task_id"]
                     if t not in set(first)]
    tasks = mb.tasks.set_index("task_id")["task"]
    todo = []
    for tid in order:
        wanted = {cid for _, cid, _ in candidates(mb, space, tasks[tid])
                  if (tid, cid) not in done}
        if wanted:
            todo.append((tid, wanted))
    lock = threading.Lock()

    def one(item: tuple[str, set[str]]) -> None:
        tid, wanted = item
        res = run_task(mb, specs, space, tid, wanted)
        with lock:
            rows.extend(res)
            pd.DataFrame(rows).to_csv(out, index=False)
            n_ok = sum(r["state"] == "COMPLETE" for r in res)
            print(f"{tid:<45} {n_ok}/{len(res)} complete, "
                  f"{sum(r['seconds'] for r in res):.0f} s", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, args.n_jobs)) as pool:
        for f in [pool.submit(one, t) for t in todo]:
            f.result()


if __name__ == "__main__":
    main()
