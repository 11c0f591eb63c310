"""Ensemble selection over the search's trials, and the fitted ensemble itself.

The selection is Caruana et al.'s greedy forward selection with replacement ("Ensemble
selection from libraries of models", ICML 2004), the method auto-sklearn uses. Its input
is what the search kept in memory (:attr:`~automl_meta.search.optimize.SearchResult.oof`):
the out-of-fold predictions of the best complete trials — class probabilities for
classification, predicted values for regression — on the search rows. It starts from the
best trial of the leaderboard and, for ``size - 1`` rounds, adds (again, if it helps most)
the trial whose addition gives the best out-of-fold score of the run's metric; the weights
are how often each trial was picked, divided by the number of picks. The result is the
best-scoring prefix of those rounds, so its out-of-fold score is never below the best
trial's.

:func:`refit_ensemble` then fits the members on all rows in the refit worker (and the other
workers whose context holds all rows, side by side), within the time left, and
:class:`Ensemble` is the one fitted estimator that is saved.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automl_meta import metrics as metrics_mod
from automl_meta.budget import WRITE_RESERVE_SECONDS, model_write_seconds
from automl_meta.search.families import final_fit_seconds
from automl_meta.search.workers import run_side_by_side


class Ensemble:
    """A weighted average of fitted pipelines, used like one pipeline.

    Classification: ``predict_proba`` is the weighted mean of the members' class
    probabilities (one column per class code ``0 .. n_classes - 1``, rows summing to 1) and
    ``predict`` its arg-max, as class codes. Regression: ``predict`` is the weighted mean of
    the members' predictions.

    Parameters
    ----------
    estimators : list
        Fitted pipelines (as :func:`automl_meta.search.pipeline.build_pipeline` builds them),
        trained on class codes.
    weights : sequence of float
        One positive weight per estimator (normalised to sum to 1).
    task : str
        ``"binary"``, ``"multiclass"`` or ``"regression"``.
    n_classes : int
        Number of classes (0 for regression).
    trials : sequence of int, optional
        The trial number each estimator comes from (kept for the record).
    """

    def __init__(self, estimators: list[Any], weights: Sequence[float], task: str,
                 n_classes: int = 0, trials: Sequence[int] | None = None) -> None:
        w = np.asarray(weights, dtype=float)
        if len(estimators) == 0 or len(w) != len(estimators) or not np.all(w > 0):
            raise ValueError("an ensemble needs one positive weight per estimator")
        self.estimators = list(estimators)
        self.weights = w / w.sum()
        self.task = task
        self.n_classes = int(n_classes)
        self.trials = np.asarray(list(trials) if trials is not None else [], dtype=np.int64)

    @property
    def classes_(self) -> np.ndarray:
        """Class codes ``0 .. n_classes - 1`` (classification)."""
        if self.task == "regression":
            raise AttributeError("a regression ensemble has no classes_")
        return np.arange(self.n_classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Weighted mean of the members' class probabilities, one column per class code."""
        if self.task == "regression":
            raise AttributeError("a regression ensemble has no predict_proba")
        out = np.zeros((len(X), self.n_classes))
        for est, w in zip(self.estimators, self.weights, strict=True):
            out += w * member_proba(est, X, self.n_classes)
        total = out.sum(axis=1, keepdims=True)
        return out / np.where(total > 0, total, 1.0)

    def predict(self, X: Any) -> np.ndarray:
        """Class codes (arg-max of :meth:`predict_proba`) or predicted values."""
        if self.task == "regression":
            out = np.zeros(len(X))
            for est, w in zip(self.estimators, self.weights, strict=True):
                out += w * np.asarray(est.predict(X), dtype=float)
            return out
        return np.argmax(self.predict_proba(X), axis=1)

    def __len__(self) -> int:
        return len(self.estimators)


def member_proba(model: Any, X: Any, n_classes: int) -> np.ndarray:
    """Class probabilities of one fitted pipeline, one column per class code (classes a
    pipeline never saw get 0); a softmax of the decision values for a model without
    ``predict_proba`` (an SVM whose classes were too rare to calibrate)."""
    seen = np.asarray(model.classes_, dtype=int)
    out = np.zeros((len(X), n_classes))
    if hasattr(model[-1], "predict_proba"):
        out[:, seen] = model.predict_proba(X)
        return out
    dec = np.asarray(model.decision_function(X), dtype=float)
    if dec.ndim == 1:
        dec = np.column_stack([-dec, dec])
    dec = np.exp(dec - dec.max(axis=1, keepdims=True))
    out[:, seen] = dec / dec.sum(axis=1, keepdims=True)
    return out


# ----------------------------------------------------------------------------- selection
def oof_score(pred: np.ndarray, y: np.ndarray, metric: metrics_mod.Metric, task: str,
              n_classes: int) -> float:
    """The metric of out-of-fold predictions on all rows at once.

    ``pred`` holds class probabilities (rows × classes) for classification, labels being
    their arg-max, or predicted values for regression.
    """
    if task == "regression":
        return metrics_mod.compute(metric, y, pred, None)
    labels = np.argmax(pred, axis=1)
    return metrics_mod.compute(metric, y, labels, pred if metric.needs_proba else None,
                               n_classes)


@dataclass
class Selection:
    """What the greedy selection chose.

    ``weights`` maps trial number to weight (summing to 1), best trial first then by
    weight; ``score`` is the ensemble's out-of-fold score, ``single_score`` the best
    trial's (the same pooled computation); ``rounds`` how many picks the weights count.
    """

    weights: dict[int, float]
    score: float
    single_trial: int
    single_score: float
    rounds: int
    candidates: int
    history: list[float] = field(default_factory=list)

    @property
    def members(self) -> list[int]:
        return list(self.weights)


def select_ensemble(oof: Mapping[int, np.ndarray], y: np.ndarray, metric: str, task: str,
                    n_classes: int, size: int, best_trial: int,
                    deadline: float | None = None) -> Selection:
    """Greedy forward selection with replacement over out-of-fold predictions.

    Parameters
    ----------
    oof : mapping of int to ndarray
        Trial number → out-of-fold predictions on the same rows (probabilities, rows ×
        classes, for classification; values for regression).
    y : ndarray
        The true targets of those rows (class codes or values).
    metric : str
        Name of the metric to optimise (:data:`automl_meta.metrics.METRICS`).
    task : str
        ``"binary"``, ``"multiclass"`` or ``"regression"``.
    n_classes : int
        Number of classes (0 for regression).
    size : int
        Selection rounds, the first being ``best_trial``; 1 selects ``best_trial`` alone.
    best_trial : int
        The trial the selection starts from (the leaderboard's best; must be in ``oof``).
    deadline : float, optional
        ``time.monotonic()`` value after which no new round starts (the best prefix so far
        is returned).

    Returns
    -------
    Selection
    """
    if best_trial not in oof:
        raise ValueError(f"trial {best_trial} has no out-of-fold predictions")
    m = metrics_mod.METRICS[metric]
    sign = 1.0 if m.greater_is_better else -1.0
    ids = list(oof)
    preds = [np.asarray(oof[i], dtype=float) for i in ids]

    def score(pred: np.ndarray) -> float:
        value = oof_score(pred, y, m, task, n_classes)
        return value if np.isfinite(value) else -np.inf * sign

    start = ids.index(best_trial)
    counts = np.zeros(len(ids), dtype=int)
    counts[start] = 1
    total = preds[start].copy()  # sum of the picked predictions
    single = score(total)
    best_counts, best_score, history = counts.copy(), single, [single]
    for r in range(2, max(1, int(size)) + 1):
        if deadline is not None and time.monotonic() >= deadline:
            break
        round_best, round_j = None, -1
        for j, p in enumerate(preds):
            value = score((total + p) / r)
            if round_best is None or sign * value > sign * round_best:
                round_best, round_j = value, j
        counts[round_j] += 1
        total += preds[round_j]
        history.append(round_best)
        if sign * round_best > sign * best_score:  # a tie keeps the smaller ensemble
            best_counts, best_score = counts.copy(), round_best
    picks = int(best_counts.sum())
    order = sorted((j for j in range(len(ids)) if best_counts[j] > 0),
                   key=lambda j: (j != start, -best_counts[j], j))
    weights = {int(ids[j]): float(best_counts[j] / picks) for j in order}
    return Selection(weights, float(best_score), int(best_trial), float(single), picks,
                     len(ids), [float(h) for h in history])


def blend(oof: Mapping[int, np.ndarray], weights: Mapping[int, float]) -> np.ndarray:
    """Weighted mean of the out-of-fold predictions of ``weights``' trials (re-normalised)."""
    total = sum(weights.values())
    return sum(np.asarray(oof[t], dtype=float) * (w / total) for t, w in weights.items())


# ----------------------------------------------------------------------------- refit
@dataclass
class EnsembleRefit:
    """Outcome of :func:`refit_ensemble`.

    ``ensemble`` is None when the plan fell back to the single best trial (``reason`` says
    why), e.g. when Ctrl-C stopped the refit before a second member was fitted; ``fitted``
    holds every pipeline fitted on all rows by trial number (so that the fallback can reuse
    the best trial's), ``info`` what the report shows.
    """

    ensemble: Ensemble | None
    reason: str
    fitted: dict[int, tuple[Any, float]]
    info: dict[str, Any]
    #: Ctrl-C / SIGTERM arrived during a member's refit (the refit stopped there)
    interrupted: bool = False


def refit_ensemble(selection: Selection, records: Mapping[int, Any], oof: Mapping[int, np.ndarray],
                   y: np.ndarray, worker: Any, *, metric: str, task: str, n_classes: int,
                   train_rows: int, fit_rows: int, window_end: float | None,
                   write_allowance: float = WRITE_RESERVE_SECONDS,
                   extra_workers: Sequence[Any] = ()) -> EnsembleRefit:
    """Fit the selected members on all rows in ``worker`` (and ``extra_workers`` side by
    side), within ``window_end``.

    The plan takes the members in order (best trial first, then by weight) and gives each
    to the worker that is free first, while their estimated refit times
    (:func:`~automl_meta.search.families.final_fit_seconds` of the trial's measured per-fold
    fit time) end in the time left; the others are dropped. A
    member whose refit fails or runs out of time is dropped too, and so is one whose model
    file would take too long to write: each member's writing time, estimated from its
    arrays (:func:`~automl_meta.budget.model_write_seconds`), counts against
    ``window_end`` beyond ``write_allowance``. The weights of
    the members left are re-normalised; when fewer than two are left, or their re-normalised blend
    scores below the best trial out of fold, the result is the single best trial
    (``ensemble`` None). Ctrl-C (SIGTERM as the command line handles it) during a member's
    refit stops the refit there: the members fitted so far are used the same way and
    ``interrupted`` is set.

    Parameters
    ----------
    selection : Selection
        From :func:`select_ensemble`.
    records : mapping of int to TrialRecord
        The trials by number (config, fit_seconds, family).
    oof, y : as for :func:`select_ensemble`
        Used to re-score the ensemble after members are dropped.
    worker : automl_meta.search.workers.Worker
        The refit worker (its context holds all rows).
    metric, task, n_classes : as for :func:`select_ensemble`
    train_rows : int
        Rows each CV fit saw (the fit times were measured on them).
    fit_rows : int
        Rows of the refit.
    window_end : float, optional
        ``time.monotonic()`` value by which every member must be fitted.
    write_allowance : float
        Seconds of writing the model file that may follow ``window_end``
        (:func:`~automl_meta.budget.ensemble_write_allowance`); the members' writing
        beyond it counts against the window.
    extra_workers : sequence of Worker
        More workers whose context holds all rows: members are refitted on them at the
        same time as on ``worker``.

    Returns
    -------
    EnsembleRefit
    """
    m = metrics_mod.METRICS[metric]
    members = selection.members
    workers = [worker, *extra_workers]
    now = time.monotonic()
    left = None if window_end is None else window_end - now
    planned, dropped = [], []
    lanes = [0.0] * len(workers)  # estimated seconds of the members each worker fits
    for t in members:
        est = final_fit_seconds(records[t].family, records[t].fit_seconds, train_rows,
                                fit_rows, task != "regression")
        lane = int(np.argmin(lanes))
        if left is not None and t != selection.single_trial and lanes[lane] + est > left:
            dropped.append({"trial": t, "family": records[t].family,
                            "why": f"needs ~{est:.1f} s, {max(0.0, left - lanes[lane]):.1f} s "
                                   "left"})
            continue
        lanes[lane] += est
        planned.append(t)
    written = 0.0  # estimated seconds to write the members fitted so far

    def beyond_allowance() -> float:  # what writing them takes from the window
        return max(0.0, written - write_allowance)

    def writable(t: int, out: dict) -> str | None:
        nonlocal written
        more = model_write_seconds(out["pipeline"])
        if window_end is not None and t != selection.single_trial and \
                time.monotonic() + max(0.0, written + more - write_allowance) > window_end:
            # fitted, but writing it too would take the fit past its budget
            return f"its model would take ~{more:.1f} s to write, past the time left"
        written += more
        return None

    # one member: the single-model refit
    jobs = [(t, ("fit", records[t].config), None) for t in planned] if len(planned) >= 2 \
        else []
    answers, failed, interrupted = run_side_by_side(jobs, workers, window_end,
                                                    reserve=beyond_allowance, accept=writable)
    fitted = {t: (out["pipeline"], float(out["fit_seconds"])) for t, out in answers.items()}
    dropped += [{"trial": t, "family": records[t].family, "why": why}
                for t, why in failed.items()]
    # a member's place in the plan, not the order the workers finished in
    dropped.sort(key=lambda d: members.index(d["trial"]))
    kept = {t: w for t, w in selection.weights.items() if t in fitted}
    total = sum(kept.values())
    weights = {t: float(w / total) for t, w in kept.items()} if total else {}
    score = float(oof_score(blend(oof, weights), y, m, task, n_classes)) if weights else None
    info: dict[str, Any] = {
        "picks": selection.rounds, "candidates": selection.candidates,
        "selected": [{"trial": t, "family": records[t].family, "weight": float(w)}
                     for t, w in selection.weights.items()],
        "selected_oof_score": selection.score,
        "best_single": {"trial": selection.single_trial,
                        "family": records[selection.single_trial].family,
                        "oof_score": selection.single_score},
        "dropped": dropped,
        "refit_seconds": round(sum(s for _, s in fitted.values()), 3),
        "interrupted": interrupted,
    }
    reason = ""
    if len(weights) < 2:
        reason = ("fewer than two members could be refitted in the time left"
                  if len(members) >= 2 else "the selection kept the best trial alone")
    elif m.better(selection.single_score, score):
        reason = (f"without the dropped members the ensemble scores {score:.4g} out of fold, "
                  f"below the best trial's {selection.single_score:.4g}")
    if reason:
        info.update(members=[], oof_score=selection.single_score, used=False, reason=reason)
        return EnsembleRefit(None, reason, fitted, info, interrupted)
    info.update(members=[{"trial": t, "family": records[t].family, "weight": w,
                          "refit_seconds": round(fitted[t][1], 3)} for t, w in weights.items()],
                oof_score=score, used=True,
                reason=f"ensemble of {len(weights)} trials"
                + (f" ({len(dropped)} selected member(s) dropped)" if dropped else ""))
    ensemble = Ensemble([fitted[t][0] for t in weights], list(weights.values()), task,
                        n_classes, list(weights))
    return EnsembleRefit(ensemble, info["reason"], fitted, info, interrupted)


def ensemble_for_search(search: Any, worker: Any, *, size: int, task: str, n_classes: int,
                        train_rows: int, fit_rows: int, window_end: float | None,
                        write_allowance: float = WRITE_RESERVE_SECONDS,
                        extra_workers: Sequence[Any] = ()) -> EnsembleRefit:
    """Select an ensemble from a search's kept out-of-fold predictions and refit it.

    Only complete trials whose out-of-fold predictions this process kept take part
    (:attr:`~automl_meta.search.optimize.SearchResult.oof`); trials evaluated by other
    processes of a shared study have none here. Without the best trial's predictions, or
    with fewer than two candidates, nothing is selected and the result says why
    (``ensemble`` None, nothing fitted).

    Parameters
    ----------
    search : SearchResult
        The finished search.
    worker : Worker
        The refit worker.
    size : int
        Selection rounds (:func:`select_ensemble`).
    task, n_classes : as for :func:`select_ensemble`
    train_rows, fit_rows, window_end, write_allowance, extra_workers : as for
        :func:`refit_ensemble`

    Returns
    -------
    EnsembleRefit
    """
    ranked = search.ranked()
    records = {r.number: r for r in ranked}
    oof = {t: p for t, p in search.oof.items() if t in records}
    foreign = max(0, len(ranked) - int(getattr(search, "oof_seen", len(oof))))
    info: dict[str, Any] = {"size": int(size), "candidates": len(oof), "members": [],
                            "used": False, "oof_bound": int(search.oof_limit)}
    if foreign:
        info["not_in_memory"] = (
            f"{foreign} complete trial(s) ran in another process (or an earlier run of the "
            "study): their out-of-fold predictions are not stored in the study (rows × "
            "classes numbers per trial), so they do not take part")
    reason = ""
    if not ranked:
        reason = "no trial completed"
    elif ranked[0].number not in oof:
        reason = ("the best trial's out-of-fold predictions are not in this process (it ran "
                  "in another process or an earlier run of the study)")
    elif len(oof) < 2:
        reason = "fewer than two complete trials with out-of-fold predictions"
    if reason:
        info["reason"] = reason
        return EnsembleRefit(None, reason, {}, info)
    now = time.monotonic()
    selection_end = None if window_end is None else now + max(0.5, 0.1 * (window_end - now))
    selection = select_ensemble(oof, search.oof_y, search.metric, task, n_classes, size,
                                ranked[0].number, deadline=selection_end)
    out = refit_ensemble(selection, records, oof, search.oof_y, worker, metric=search.metric,
                         task=task, n_classes=n_classes, train_rows=train_rows,
                         fit_rows=fit_rows, window_end=window_end,
                         write_allowance=write_allowance, extra_workers=extra_workers)
    out.info = info | out.info
    return out


def describe(families: Sequence[str]) -> str:
    """``"ensemble of K (family, family, …)"`` for summaries."""
    uniq = list(dict.fromkeys(families))
    return f"ensemble of {len(families)} ({', '.join(uniq)})"
