"""Predictions of the best single trial inside a fitted ensemble: the model
``--ensemble-size 1`` would have saved from the same search (the ensemble's members are
refitted on all rows like the single best trial; the selection starts from the best trial,
so it is a member unless the refit plan dropped it).

    python benchmarks/best_member.py RUN_DIR TEST_CSV OUT_CSV

Writes OUT_CSV (one column, the target's name) and exits 0; exits 3 when the run's final
model is not an ensemble holding the best trial. ``compare.py`` scores the file as it
scores ``predict``'s output, for a comparison of the ensemble with its own best trial that
the search's run-to-run noise does not blur.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from automl_meta.artifacts.ensemble import Ensemble
from automl_meta.artifacts.model import TabularModel
from automl_meta.artifacts.rundir import load_run
from automl_meta.data import read_table


def main(run_dir: str, test_csv: str, out_csv: str) -> int:
    report = json.loads((Path(run_dir) / "report.json").read_text())
    best = (report.get("best") or {}).get("trial")
    _, model = load_run(run_dir, allow_pickle=True)  # our own run directory
    ens = model.pipeline
    if not isinstance(ens, Ensemble) or best is None or best not in set(ens.trials.tolist()):
        return 3
    member = ens.estimators[int(np.flatnonzero(ens.trials == best)[0])]
    single = TabularModel(member, model.schema, model.task, model.target, model.classes,
                          model.config)
    pred = single.predict(read_table(test_csv))
    pd.DataFrame({model.target: pred}).to_csv(out_csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
