"""How well the warm start's cost estimates predict the trials' durations: the columns a
table has against the model inputs its families see.

For every kept automl-meta run directory of a ``compare.py --keep-work`` folder, the warm
start is recomputed from the run's training file (meta-features, nearest tasks, the
learned strategy's suggestions, on the metabase the run used), and every complete trial
that came from a suggestion gets two estimates (:func:`estimated_trial_seconds` with the
table's columns, and with each family's model inputs,
:func:`~automl_meta.search.pipeline.estimate_n_inputs`) next to the duration it took.

    python benchmarks/experiments/cost_estimates.py WORK_DIR [WORK_DIR ...] --out F.csv
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from automl_meta.data.dataset import load_dataset
from automl_meta.defaults import DEFAULT_NEIGHBORS
from automl_meta.meta.features import compute_metafeatures
from automl_meta.meta.metabase import load_metabase
from automl_meta.meta.neighbors import nearest
from automl_meta.meta.surrogate import stored_surrogate
from automl_meta.meta.warmstart import estimated_trial_seconds, suggest
from automl_meta.search.families import FAMILIES
from automl_meta.search.pipeline import estimate_n_inputs
from automl_meta.search.space import load_space


def run_rows(task_dir: Path, run: Path) -> list[dict]:
    report = json.loads((run / "report.json").read_text())
    lb = pd.read_csv(run / "leaderboard.csv")
    ds = load_dataset(task_dir / "train.csv", report["target"], report["task"])
    space = load_space()
    mb = load_metabase(report["warm_start"]["metabase"], space_version=space.version)
    n_rows, n_folds = int(report["search_rows"]), int(report["n_folds"])
    n_classes = len(ds.classes or [])
    mf = compute_metafeatures(*ds.as_read(), ds.task, random_state=0)
    neighbors = nearest(mb, mf, ds.task, k=DEFAULT_NEIGHBORS)
    surrogate, _ = stored_surrogate(mb, space, ds.task)
    ws = suggest(mb, neighbors, ds.task, n_rows, space, 10, strategy="learned",
                 metafeatures=mf, surrogate=surrogate)
    inputs = {f: estimate_n_inputs(ds.schema, space, f, n_classes) for f in space.families}
    by_origin = {(s.origin, s.config.get("family")): s for s in ws.suggestions}
    out = []
    for _, t in lb[lb["state"] == "COMPLETE"].iterrows():
        config = json.loads(t["config"])
        sug = by_origin.get((t["origin"], config.get("family")))
        if sug is None:
            continue
        family = config["family"]
        knob = FAMILIES[family].cost_param
        factor = 1.0
        if knob is not None:
            factor = float(config[f"{family}.{knob}"]) / float(sug.config[f"{family}.{knob}"])
        ran = replace(sug, config=config, cost_factor=sug.cost_factor * factor)
        old = estimated_trial_seconds(mb, ran, n_rows, n_folds, n_classes, ds.X.shape[1])
        new = estimated_trial_seconds(mb, ran, n_rows, n_folds, n_classes, inputs,
                                      space=space)
        if old is None or new is None:
            continue
        out.append({"table": task_dir.name, "family": family, "origin": t["origin"],
                    "rows": n_rows, "columns": ds.X.shape[1], "inputs": inputs[family],
                    "categorical": len(ds.schema.of_kind("categorical")),
                    "duration": float(t["duration"]), "columns_estimate": old,
                    "inputs_estimate": new})
    return out


def summary(df: pd.DataFrame) -> str:
    lines = []
    for name, part in [("all trials", df),
                       ("tables with a categorical column", df[df["categorical"] > 0]),
                       ("tables without", df[df["categorical"] == 0])]:
        if not len(part):
            continue
        lines.append(f"{name}: {len(part)} trials on {part['table'].nunique()} tables")
        for col in ("columns_estimate", "inputs_estimate"):
            err = np.log2(part["duration"] / part[col])
            lines.append(f"  {col}: median actual/estimate {2 ** err.median():.2f}, "
                         f"median |log2 error| {err.abs().median():.2f}, "
                         f"within 2x {np.mean(err.abs() <= 1):.0%}, "
                         f"over 3x too short {np.mean(err > np.log2(3)):.0%}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    for work in args.work:
        for run in sorted(work.glob("*/automl-meta_warm-*/run")):
            try:
                rows.extend(run_rows(run.parent.parent, run))
            except Exception as exc:  # a run this script cannot redo is reported, not fatal
                print(f"{run}: {type(exc).__name__}: {exc}")
    df = pd.DataFrame(rows)
    df.to_csv(args.out, index=False)
    print(summary(df))


if __name__ == "__main__":
    main()
