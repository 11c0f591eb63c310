"""Ensemble selection (issue #20): the greedy selection on known predictions, and real fits
whose final model is an ensemble of refitted trials."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from automl_meta.artifacts.ensemble import (
    Ensemble,
    ensemble_for_search,
    oof_score,
    select_ensemble,
)
from automl_meta.artifacts.rundir import load_run
from automl_meta.budget import grace_seconds
from automl_meta.data import load_dataset
from automl_meta.estimator import AutoML, prepare_search
from automl_meta.metrics import METRICS
from automl_meta.search.optimize import SearchResult, oof_capacity
from automl_meta.search.space import load_space
from automl_meta.search.workers import Worker


# ------------------------------------------------------------------ the selection alone
def test_selection_picks_with_replacement_and_never_loses_to_the_best_single():
    rng = np.random.default_rng(0)
    y = rng.normal(size=400)
    e = rng.normal(size=400)
    # A errs by 2e, B by -e: the best blend is A/3 + 2B/3 (exact), which needs B twice
    oof = {10: y + 2 * e, 11: y - e, 12: rng.normal(size=400)}
    sel = select_ensemble(oof, y, "r2", "regression", 0, size=3, best_trial=11)
    assert sel.weights == pytest.approx({11: 2 / 3, 10: 1 / 3})
    assert sum(sel.weights.values()) == pytest.approx(1.0)
    assert sel.score == pytest.approx(1.0)
    assert sel.single_score == pytest.approx(oof_score(oof[11], y, METRICS["r2"],
                                                       "regression", 0))
    assert sel.score >= sel.single_score


@pytest.mark.parametrize("metric", ["accuracy", "log_loss", "roc_auc", "f1_macro"])
def test_selection_on_noisy_probabilities(metric):
    rng = np.random.default_rng(1)
    n, k = 300, 3
    y = rng.integers(0, k, size=n)
    truth = np.eye(k)[y]
    oof = {}
    for t in range(8):  # independent noise: averaging helps
        logits = 1.2 * truth + rng.normal(scale=1.0 + 0.1 * t, size=(n, k))
        p = np.exp(logits)
        oof[t] = p / p.sum(axis=1, keepdims=True)
    m = METRICS[metric]
    sign = 1 if m.greater_is_better else -1
    singles = {t: oof_score(p, y, m, "multiclass", k) for t, p in oof.items()}
    best = max(singles, key=lambda t: sign * singles[t])
    sel = select_ensemble(oof, y, metric, "multiclass", k, size=10, best_trial=best)
    assert sum(sel.weights.values()) == pytest.approx(1.0)
    assert sign * sel.score >= sign * sel.single_score
    assert sel.single_score == pytest.approx(singles[best])
    assert len(sel.weights) > 1  # with this much independent noise an average wins
    assert sign * sel.score > sign * singles[best]
    assert list(sel.weights)[0] == best
    blended = sum(oof[t] * w for t, w in sel.weights.items())
    assert oof_score(blended, y, m, "multiclass", k) == pytest.approx(sel.score)


def test_size_one_or_no_time_keeps_the_best_trial_alone():
    rng = np.random.default_rng(2)
    y = rng.normal(size=100)
    oof = {1: y + rng.normal(size=100), 2: y + rng.normal(size=100)}
    for kwargs in ({"size": 1}, {"size": 10, "deadline": time.monotonic() - 1}):
        sel = select_ensemble(oof, y, "rmse", "regression", 0, best_trial=2, **kwargs)
        assert sel.weights == {2: 1.0}
        assert sel.score == sel.single_score


def test_oof_bound_keeps_the_best_and_states_its_size():
    assert oof_capacity(1000, 2) == 30
    # 200 MB / (1e6 rows × 10 classes × 8 bytes) = 2 candidates
    assert oof_capacity(1_000_000, 10) == 2
    assert oof_capacity(50_000_000, 100) == 1
    result = SearchResult([], "accuracy", True, 5, "", oof_limit=3)
    scores: dict[int, float] = {}
    for number, score in enumerate([0.5, 0.9, 0.7, 0.6, 0.95]):
        result.keep_oof(number, score, np.full((4, 2), score), scores)
    assert sorted(result.oof) == [1, 2, 4]
    assert result.oof_seen == 5


# ------------------------------------------------------------------ real fits
@pytest.fixture(scope="module")
def fitted_small(small_csv):
    ds = load_dataset(small_csv, "label")
    model = AutoML(n_trials=8, warm_start=0, seed=0, n_jobs=1).fit_dataset(ds)
    return ds, model


def _check_ensemble_scores(model: AutoML) -> dict:
    ens = model.refit_["ensemble"]
    m = model.metric_
    best = model.search_.ranked()[0]
    assert ens["best_single"]["trial"] == best.number
    # the best trial's pooled out-of-fold score, recomputed from what the search kept
    assert ens["best_single"]["oof_score"] == pytest.approx(oof_score(
        model.search_.oof[best.number], model.search_.oof_y, m, model.dataset_.task,
        len(model.dataset_.classes or [])))
    final = ens["oof_score"]
    assert not m.better(ens["best_single"]["oof_score"], final)
    if ens["used"]:
        assert sum(x["weight"] for x in ens["members"]) == pytest.approx(1.0)
        assert model.refit_["reason"].startswith(f"ensemble of {len(ens['members'])} (")
    return ens


@pytest.mark.slow
def test_classification_fit_ends_with_a_better_ensemble(fitted_small, tmp_path):
    ds, model = fitted_small
    ens = _check_ensemble_scores(model)
    # on this data and seed the selection mixes several trials (a change of the space or
    # of the selection that loses this is worth a look)
    assert ens["used"], ens
    assert isinstance(model.model_.pipeline, Ensemble)
    assert len(ens["members"]) >= 2
    proba = model.predict_proba(ds.X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert proba.shape == (ds.n_rows, 2)
    pred = model.predict(ds.X)
    assert set(pred) <= set(ds.classes) and set(model.classes_) == {"no", "yes"}
    # the labels are the arg-max of the probabilities, in the order of classes_
    np.testing.assert_array_equal(pred, model.classes_[np.argmax(proba, axis=1)])
    assert model.score(ds.X, ds.y) >= 0.8
    # the leaderboard top-10 and the summary name the members
    summary = model.summary()
    assert summary["final_model"]["config"]["family"] == "ensemble"
    members = {m["trial"] for m in summary["final_model"]["config"]["members"]}
    assert members == {m["trial"] for m in ens["members"]}
    for fmt in ("skops", "joblib"):
        run = model.save(tmp_path / fmt, model_format=fmt, report=fmt == "skops")
        _, loaded = load_run(run, allow_pickle=fmt == "joblib")
        assert isinstance(loaded.pipeline, Ensemble)
        np.testing.assert_array_equal(loaded.predict(ds.X), model.predict(ds.X))
        np.testing.assert_allclose(loaded.predict_proba(ds.X), proba)
    html = (tmp_path / "skops" / "report.html").read_text()
    assert "Ensemble selection" in html and "ensemble ×" in html


@pytest.mark.slow
def test_regression_fit_ensemble_not_below_the_best_trial(diabetes_csv):
    ds = load_dataset(diabetes_csv, "y")
    model = AutoML(n_trials=8, warm_start=0, seed=0, n_jobs=1).fit_dataset(ds)
    ens = _check_ensemble_scores(model)
    pred = model.predict(ds.X)
    assert pred.shape == (ds.n_rows,) and np.isfinite(pred).all()
    if ens["used"]:
        parts = model.model_.pipeline
        manual = sum(w * est.predict(ds.X) for est, w in zip(parts.estimators, parts.weights,
                                                            strict=True))
        np.testing.assert_allclose(pred, manual)


@pytest.mark.slow
def test_no_time_for_a_second_refit_means_the_single_best_trial(fitted_small):
    """With no time left beyond the best trial's refit, every other member is dropped by
    the plan and nothing is fitted for the ensemble: the single-model refit takes over."""
    ds, model = fitted_small
    prepared = prepare_search(ds, model.metric_.name, 0, 20_000, load_space())
    with Worker(prepared.full_ctx) as worker:
        outcome = ensemble_for_search(model.search_, worker, size=10, task=ds.task,
                                      n_classes=2, train_rows=128, fit_rows=ds.n_rows,
                                      window_end=time.monotonic())
    assert outcome.ensemble is None
    assert outcome.fitted == {}
    assert "fewer than two members" in outcome.reason
    assert outcome.info["dropped"] and all("left" in d["why"] for d in outcome.info["dropped"])
    assert outcome.info["used"] is False


@pytest.mark.slow
def test_members_refitted_side_by_side_make_the_same_ensemble(fitted_small):
    """With a second worker the members are refitted on both at once: the same members,
    weights and predictions as one worker fitting them one after the other, and each
    worker fitted some of them."""
    ds, model = fitted_small
    prepared = prepare_search(ds, model.metric_.name, 0, 20_000, load_space())
    kwargs = dict(size=10, task=ds.task, n_classes=2, train_rows=128, fit_rows=ds.n_rows,
                  window_end=time.monotonic() + 120)
    with Worker(prepared.full_ctx) as worker:
        one = ensemble_for_search(model.search_, worker, **kwargs)
    if not one.info.get("used") or len(one.fitted) < 2:
        pytest.skip(f"the selection kept one member: {one.reason}")
    with Worker(prepared.full_ctx) as a, Worker(prepared.full_ctx) as b:
        two = ensemble_for_search(model.search_, a, extra_workers=[b], **kwargs)
        served = [w._child.served for w in (a, b)]
    assert two.info["used"] and set(two.fitted) == set(one.fitted)
    assert two.info["members"] == [m | {"refit_seconds": n["refit_seconds"]}
                                   for m, n in zip(one.info["members"], two.info["members"],
                                                   strict=True)]
    assert two.info["dropped"] == one.info["dropped"] == []
    np.testing.assert_allclose(two.ensemble.predict_proba(prepared.full_ctx.X),
                               one.ensemble.predict_proba(prepared.full_ctx.X))
    assert min(served) >= 1 and sum(served) == len(two.fitted)


@pytest.mark.slow
def test_members_whose_model_files_cannot_be_written_in_time_are_dropped(fitted_small,
                                                                         monkeypatch):
    """Each member's writing time (from its arrays) counts against the refit
    window: with a generous window and the usual writing speed the ensemble is used; with
    writing a thousand times slower, every member but the best trial is dropped, said so,
    and the best trial's pipeline is kept for the single-model refit; unless the writing
    may take that long after the window (``write_allowance``)."""
    from automl_meta import budget

    ds, model = fitted_small
    prepared = prepare_search(ds, model.metric_.name, 0, 20_000, load_space())
    with Worker(prepared.full_ctx) as worker:
        usual = ensemble_for_search(model.search_, worker, size=10, task=ds.task,
                                    n_classes=2, train_rows=128, fit_rows=ds.n_rows,
                                    window_end=time.monotonic() + 120)
    if not usual.info.get("used"):
        pytest.skip(f"the selection kept one member: {usual.reason}")
    best = usual.info["best_single"]["trial"]
    monkeypatch.setattr(budget, "MODEL_WRITE_SECONDS_PER_ARRAY", 10.0)
    with Worker(prepared.full_ctx) as worker:
        slow = ensemble_for_search(model.search_, worker, size=10, task=ds.task,
                                   n_classes=2, train_rows=128, fit_rows=ds.n_rows,
                                   window_end=time.monotonic() + 120)
    assert slow.ensemble is None and "fewer than two members" in slow.reason
    assert list(slow.fitted) == [best]
    assert slow.info["dropped"] and all("write" in d["why"] for d in slow.info["dropped"])
    # the same slow writing within what may follow the window (the grace's writing share)
    # drops nothing for it
    with Worker(prepared.full_ctx) as worker:
        allowed = ensemble_for_search(model.search_, worker, size=10, task=ds.task,
                                      n_classes=2, train_rows=128, fit_rows=ds.n_rows,
                                      window_end=time.monotonic() + 120, write_allowance=1e6)
    assert not any("write" in d["why"] for d in allowed.info["dropped"])
    assert allowed.info["used"] and set(allowed.fitted) == set(usual.fitted)


@pytest.mark.slow
def test_short_budget_keeps_the_promise(small_csv):
    ds = load_dataset(small_csv, "label")
    budget = 6.0
    started = time.monotonic()
    model = AutoML(time_budget=budget, warm_start=0, seed=0, n_jobs=1).fit_dataset(
        ds, started=started)
    elapsed = time.monotonic() - started
    assert elapsed <= budget + grace_seconds(budget), elapsed
    info = model.refit_
    assert "ensemble" in info
    if isinstance(model.model_.pipeline, Ensemble):
        assert info["ensemble"]["used"]
    else:  # the single best trial, and the report says why the ensemble was not used
        assert info["ensemble"]["reason"]
        if model.search_.completed:
            assert info["trial"] == model.search_.best.number or info["skipped"]


@pytest.mark.slow
def test_ensemble_size_one_is_the_single_best_trial(small_csv):
    ds = load_dataset(small_csv, "label")
    model = AutoML(n_trials=4, warm_start=0, seed=0, n_jobs=1,
                   ensemble_size=1).fit_dataset(ds)
    assert isinstance(model.model_.pipeline, Pipeline)
    assert model.refit_["reason"] == "best trial"
    assert model.refit_["trial"] == model.search_.best.number
    assert "ensemble" not in model.refit_
    with pytest.raises(Exception, match="ensemble_size"):
        AutoML(n_trials=2, warm_start=0, n_jobs=1, ensemble_size=0).fit_dataset(ds)


@pytest.mark.slow
def test_ensemble_predicts_like_its_members_on_raw_frames(fitted_small):
    ds, model = fitted_small
    ens = model.model_.pipeline
    frame = pd.DataFrame(ds.X).iloc[:7]
    manual = sum(w * est.predict_proba(frame) for est, w in zip(ens.estimators, ens.weights,
                                                                strict=True))
    np.testing.assert_allclose(ens.predict_proba(frame), manual)
    np.testing.assert_array_equal(ens.classes_, [0, 1])
