"""How long does a fit spend reading a full history (target: < 0.2 s for 1 000 runs)?

Builds a history of ``--runs`` runs of ``--trials`` trials each in a temporary folder (the
real :class:`automl_meta.meta.history.History`, real meta-feature names, configurations
drawn from the search space), then times what the warm start does with it: the same-schema
lookup and the history as a metabase merged with the bundled one. Prints the median and
the worst of ``--repeats`` timings, and the file size.

    python benchmarks/history_load.py --runs 1000 --trials 50
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import optuna

    from automl_meta.meta.builder.local import all_metafeature_names
    from automl_meta.meta.history import History, RunRecord, as_metabase, merge_metabases
    from automl_meta.meta.metabase import load_metabase
    from automl_meta.search.space import load_space

    space = load_space()
    names = all_metafeature_names()
    rng = np.random.default_rng(0)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [space.suggest(study.ask(), "binary", space.family_names("binary", 1000))
               for _ in range(200)]
    with tempfile.TemporaryDirectory() as tmp:
        history = History(tmp)
        t0 = time.monotonic()
        for i in range(args.runs):
            trials = [{"trial": k, "state": "COMPLETE", "score": float(rng.uniform(0.5, 1)),
                       "fit_seconds": 0.1, "duration": 0.5, "origin": "tpe",
                       "config": configs[int(rng.integers(len(configs)))]}
                      for k in range(args.trials)]
            best = max(trials, key=lambda t: t["score"])
            history.append(RunRecord(
                run_id=f"run{i:05d}", name=f"table{i % 37}", fingerprint=f"{i % 37:016x}",
                task="binary", target="y", metric="accuracy", greater_is_better=True,
                n_rows=1000, n_features=10, n_classes=2, n_folds=5,
                best_score=best["score"], best_config=best["config"],
                final_config=best["config"],
                metafeatures={n: float(rng.normal()) for n in names},
                search_space_version=space.version, trials=trials))
        write_s = time.monotonic() - t0
        bundled = load_metabase(space_version=space.version)
        timings = []
        for _ in range(args.repeats):
            t0 = time.monotonic()
            History(tmp).same_schema(f"{5:016x}", "binary", space.version, 5)
            merged = merge_metabases(bundled, as_metabase(History(tmp), space.version))
            timings.append(time.monotonic() - t0)
        size = (Path(tmp) / "history.sqlite").stat().st_size
    print(f"history of {args.runs} runs x {args.trials} trials: {size / 1e6:.1f} MB, "
          f"written in {write_s:.1f} s ({1000 * write_s / args.runs:.1f} ms per append)")
    print(f"same-schema lookup + history as metabase + merge ({len(merged.tasks)} tasks): "
          f"median {statistics.median(timings):.3f} s, worst {max(timings):.3f} s over "
          f"{args.repeats} (target < 0.2 s)")


if __name__ == "__main__":
    main()
