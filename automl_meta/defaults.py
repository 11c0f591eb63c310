"""The library's default settings that are not time policy, in one light module.

:class:`~automl_meta.AutoML`, the metabase builders, the run directory and the command line
all read their defaults here; the command line's option defaults and help texts come from
this module so that ``automl-meta --help`` shows what the library does without importing
scikit-learn or Optuna. Time-budget policy (``DEFAULT_TIME_BUDGET`` and the rest) lives in
:mod:`automl_meta.budget`.

This module imports nothing from the rest of the package: every layer may use it.
"""

from __future__ import annotations

from typing import Any

# ---- fit / AutoML
#: configurations from the nearest prior tasks evaluated before the sampler takes over
DEFAULT_WARM_START = 10
#: prior tasks the warm start draws on (and ``automl-meta neighbors -k``)
DEFAULT_NEIGHBORS = 10
#: the warm start's first configurations: the best of earlier fits on a table with the same
#: schema, from the user's history (at most half the warm start); the rest of the warm start
#: comes from the nearest other tasks
DEFAULT_HISTORY_FIRST = 2
#: at most this many scored configurations of earlier fits on a table with the same schema
#: (newest fit first) are told to the search's sampler before it starts, so that its model
#: of this table starts from them
DEFAULT_HISTORY_OBSERVATIONS = 100
#: how the warm-start configurations are chosen (see :mod:`automl_meta.meta.warmstart`)
DEFAULT_STRATEGY = "learned"
#: the default configuration of each of these families is in every warm start's list, at
#: position ``WARM_START_DEFAULTS_AT`` (0: first) of the strategy's list, and at the same
#: position among the configurations of earlier fits on the same schema: a baseline that
#: does well on many tables, for the tables on which the prior tasks' configurations do not
#: carry over (against the clock with more than one worker and no history configuration to
#: start with, they start at once instead, while the rest of the warm start is computed)
WARM_START_DEFAULT_FAMILIES = ("hgb",)
WARM_START_DEFAULTS_AT = 1
#: when no trial's configuration can be refitted in the time left (or none completed), the
#: default configuration of these families is fitted on all rows before the last resort (a
#: linear model on a subsample): strong on many tables and fast enough to fit in the time a
#: slow trial's refit could not
FALLBACK_DEFAULT_FAMILIES = ("hgb",)
#: the search sees at most this many rows (a stratified subsample); the final fit sees all
DEFAULT_MAX_SEARCH_ROWS = 20_000
#: seed of the CV split, the sampler and the models
DEFAULT_SEED = 0
#: rounds of ensemble selection over the best trials; 1 = the single best trial (25 is
#: AutoGluon's default too)
DEFAULT_ENSEMBLE_SIZE = 25
#: on a large table searched on a subsample, the final candidates compared on held-out rows:
#: at most this many, the best trial of each family the search tried (best first)...
DEFAULT_HOLDOUT_CANDIDATES = 6
#: ...and the default configurations of these families, which need no search to do well on
#: many rows
HOLDOUT_DEFAULT_FAMILIES = ("hgb", "linear")
#: ...and on tables of at least ``HOLDOUT_LARGE_ROWS`` rows, these settings over a family's
#: defaults: gradient boosting with the capacity such a table carries (more and larger
#: trees; its early stopping on a validation share decides how many are kept), which a
#: search on a subsample of the table cannot find
HOLDOUT_LARGE_ROWS = 50_000
HOLDOUT_LARGE_SETTINGS: dict[str, dict[str, Any]] = {
    "hgb": {"hgb.max_iter": 500, "hgb.max_leaf_nodes": 127},
}
#: the model format a run directory is written in: skops, because the receiving side
#: refuses pickles by default
DEFAULT_MODEL_FORMAT = "skops"

#: environment variable naming the history folder (``--history`` wins over it)
HISTORY_ENV = "AUTOML_META_HISTORY"

# ---- build-metabase
#: trials of the search on each prior task (every one is stored)
DEFAULT_TRIALS_PER_TASK = 50
#: prior tasks built in parallel by one process (with a shared database: its worker threads)
DEFAULT_BUILD_JOBS = 1
#: rows a prior task's search uses at most (a stratified subsample)
DEFAULT_BUILD_MAX_ROWS = 5000
#: wall-clock limit of one trial of a prior task's search, seconds
DEFAULT_TRIAL_TIMEOUT = 120.0
#: seconds without a heartbeat after which a claimed task is presumed abandoned
DEFAULT_HEARTBEAT_GRACE = 60.0
#: published OpenML runs kept per task by ``build-metabase --source openml-runs``: the best
#: half plus the other half spread over the rest by score rank
DEFAULT_MAX_RUNS_PER_TASK = 100
