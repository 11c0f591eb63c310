"""AutoML as a scikit-learn estimator."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from automl_meta import AutoML

# isolation=False evaluates trials in-process and warm_start=0 skips the metabase: the checks
# fit ~100 times on tiny arrays, where a worker process per fit would only add start-up time.
# The isolated, warm-started path is the default and is exercised by every other test.
# No check is skipped or expected to fail; the one scikit-learn skips itself is
# check_array_api_input (SCIPY_ARRAY_API not set).


@parametrize_with_checks([AutoML(n_trials=1, isolation=False, warm_start=0, diagnostics=False)])
@pytest.mark.slow
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_clone_and_params():
    est = AutoML(metric="balanced_accuracy", n_trials=3, seed=7)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert twin.get_params()["seed"] == 7


@pytest.mark.slow
def test_inside_pipeline_and_cross_val_score():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(FunctionTransformer(np.log1p), AutoML(n_trials=2, seed=0))
    scores = cross_val_score(pipe, X, y, cv=KFold(2, shuffle=True, random_state=0))
    assert scores.shape == (2,) and scores.min() > 0.6


@pytest.mark.slow
def test_score_sign_for_losses():
    X, y = load_iris(return_X_y=True)
    est = AutoML(metric="log_loss", n_trials=2).fit(X, y)
    assert est.score(X, y) < 0  # negated loss: greater is better, as scikit-learn expects
    assert est.predict_proba(X[:4]).shape == (4, 3)
    assert list(est.classes_) == [0, 1, 2]
