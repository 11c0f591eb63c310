"""The final choice on a large table: candidates compared on rows the search did not see.

A search with a time budget sees a subsample of a large table (:func:`automl_meta.budget.
budget_search_rows`), and its CV scores rank configurations by how they do on that many
rows. The final model is fitted on all of them, where the ranking can turn: gradient
boosting and linear models gain more from ten times the rows than forests of deep trees or
a small network, which win on the subsample. So when enough rows are left outside the
search (:func:`automl_meta.budget.holdout_rows`), the final candidates are fitted on every
row but a held-out set drawn from those rows, and compared on it:

- the best trial of each family the search tried, best first
  (:data:`~automl_meta.defaults.DEFAULT_HOLDOUT_CANDIDATES` in all), the default
  configurations of :data:`~automl_meta.defaults.HOLDOUT_DEFAULT_FAMILIES`, and on a table
  of :data:`~automl_meta.defaults.HOLDOUT_LARGE_ROWS` rows or more gradient boosting with
  more capacity (:data:`~automl_meta.defaults.HOLDOUT_LARGE_SETTINGS`); a trial of one of
  those configurations is one candidate, fitted as the defaults are (on all the rows);
- they are fitted side by side on the workers, in that order, as long as their estimated
  time (:meth:`HoldoutCandidate.estimate`: the fit, and predicting the held-out rows) fits
  in the time left; a trial whose estimate does not is fitted on as many of those rows as
  the time left allows, down to the search's own rows (where its CV score comes from),
  and skipped only when even those do not fit (the search's best trial only when they are
  estimated at more than :data:`~automl_meta.budget.HOLDOUT_FIRST_MARGIN` times the time
  left);
- the ensemble selection (:func:`~automl_meta.artifacts.ensemble.select_ensemble`) runs on
  their held-out predictions, starting from the best of them; with ``size`` 1 the best one
  is the final model;
- the chosen members are then refitted on all rows where the time left allows it; a member
  that is not keeps its fit without the held-out rows (the report says which).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automl_meta import metrics as metrics_mod
from automl_meta.artifacts.ensemble import Ensemble, describe, select_ensemble
from automl_meta.budget import HOLDOUT_FIRST_MARGIN, HOLDOUT_REFIT_SAFETY, refit_seconds
from automl_meta.search.families import final_fit_seconds, fit_exponent
from automl_meta.search.workers import run_side_by_side


@dataclass
class HoldoutCandidate:
    """One configuration in the final comparison.

    ``key`` is its trial number, or a negative number for a family's default configuration
    (which the search did not evaluate); ``record`` the trial (None for a default).
    """

    key: int
    label: str
    config: dict[str, Any]
    record: Any = None
    #: the CV score of a trial that is also a default configuration (``record`` is None:
    #: it is fitted on all the rows, as a default is, without a time estimate)
    trial_score: float | None = None

    @property
    def family(self) -> str:
        return str(self.config.get("family", ""))

    @property
    def cv_score(self) -> float | None:
        """The search's CV score of its configuration (None: the search did not run it)."""
        return self.record.score if self.record is not None else self.trial_score

    def estimate(self, train_rows: int, fit_rows: int, eval_rows: int = 0,
                 classifier: bool = False) -> float | None:
        """Estimated seconds to fit it on ``fit_rows`` rows and predict ``eval_rows`` (None:
        not measured). The prediction is the trial's seconds per fold besides the fit,
        scaled by the rows predicted and by the rows fitted (a nearest-neighbour model
        compares each row with every training row; for the others this errs long). A
        ``classifier``'s fit counts its family's
        :attr:`~automl_meta.search.families.FamilySpec.final_fit_factor`."""
        if self.record is None:
            return None
        fit = final_fit_seconds(self.family, self.record.fit_seconds, train_rows, fit_rows,
                                classifier)
        n_folds = len(self.record.fold_scores)
        if not eval_rows or n_folds < 2:
            return fit
        rest = max(0.0, self.record.duration / n_folds - self.record.fit_seconds)
        val_rows = max(1.0, train_rows / (n_folds - 1))
        return fit + rest * (eval_rows / val_rows) * max(1.0, fit_rows / max(train_rows, 1))


def holdout_candidates(ranked: Sequence[Any], space: Any, task: str, *,
                       max_candidates: int, default_families: Sequence[str],
                       fit_rows: int,
                       large_settings: Mapping[str, Mapping[str, Any]] | None = None
                       ) -> list[HoldoutCandidate]:
    """The best trial of each family (best first, at most ``max_candidates``), with the
    default configurations of ``default_families`` next: they cost little and are the
    strongest where the subsample misleads. ``large_settings`` (family → values over its
    defaults; given for a large table) adds such a configuration right after its family's
    defaults (a family not among ``default_families`` gets none). Only families the space
    offers on ``fit_rows`` training rows take part (a kernel SVM stops at 10 000); the
    search's best trial always does.

    A trial whose configuration is one of those defaults or settings (the search starts
    with the defaults) is one candidate, in the trial's place when it is the search's best
    and in the default's otherwise: fitted on all the rows, as a default is, not a second
    time on fewer rows for its time estimate (the same model, worse trained, would
    otherwise compete with itself on the held-out rows)."""
    families = space.family_names(task, fit_rows)
    best_of: dict[str, Any] = {}
    for i, r in enumerate(ranked):
        if i == 0 or r.family in families:
            best_of.setdefault(r.family, r)
    trials = [HoldoutCandidate(r.number, f"trial #{r.number} ({r.family})", r.config, r)
              for r in best_of.values()]
    defaults: list[HoldoutCandidate] = []
    large = dict(large_settings or {})
    for fam in default_families:
        if fam in families:
            defaults.append(HoldoutCandidate(-1 - len(defaults), f"{fam} defaults",
                                             space.default_config(fam, task)))
            if fam in large:  # a family's settings for a large table right after its defaults
                config = space.adapt_config(space.default_config(fam, task) | dict(large[fam]),
                                            task)
                defaults.append(HoldoutCandidate(-1 - len(defaults),
                                                 f"{fam}, large-table settings", config))
    kept: list[HoldoutCandidate] = []
    for d in defaults:
        same = next((t for t in trials if t.config == d.config), None)
        if same is None:
            kept.append(d)
            continue
        merged = HoldoutCandidate(same.key, f"trial #{same.key} ({d.label})", d.config,
                                  trial_score=same.record.score)
        if same is trials[0]:
            trials[0] = merged
        else:
            kept.append(merged)
            trials.remove(same)
    return trials[:1] + kept + trials[1:max(1, max_candidates)]


@dataclass
class HoldoutOutcome:
    """What :func:`select_on_holdout` produced.

    ``model`` is a fitted pipeline or an :class:`~automl_meta.artifacts.ensemble.Ensemble`
    (None when no candidate could be fitted: the caller falls back to the usual refit);
    ``config`` its configuration (``{"family": "ensemble", "members": …}`` for an
    ensemble), ``info`` what the report shows.
    """

    model: Any
    config: dict[str, Any] | None
    reason: str
    trial: int | None
    fit_seconds: float
    info: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False


def _fewer_rows(candidate: HoldoutCandidate, train_rows: int, fit_rows: np.ndarray,
                eval_rows: np.ndarray, search_rows: np.ndarray | None, extra: np.ndarray,
                classifier: bool = False
                ) -> Callable[..., tuple[tuple, float, int] | None] | None:
    """For a trial: its held-out fit on the most rows whose estimate fits in a limit, from
    the search's rows (where its CV score comes from) plus the first of ``extra`` (the other
    fit rows, shuffled); None for a candidate with no measured trial or no rows to spare."""
    if candidate.record is None or search_rows is None \
            or not 0 < len(search_rows) < len(fit_rows):
        return None
    low, high, n_eval = len(search_rows), len(fit_rows), len(eval_rows)

    def estimate(rows: int) -> float:
        est = candidate.estimate(train_rows, rows, n_eval, classifier)
        return float("inf") if est is None else est

    def smaller(limit: float, least: bool = False) -> tuple[tuple, float, int] | None:
        if estimate(low) > limit:
            return None
        a, b = low, high  # the estimate grows with the rows: fits at a, not at b
        while not least and b - a > max(1, high // 100):
            mid = (a + b) // 2
            a, b = (mid, b) if estimate(mid) <= limit else (a, mid)
        rows = np.sort(np.concatenate([search_rows, extra[:a - low]]))
        return ("holdout", candidate.config, rows, eval_rows), estimate(a), a

    return smaller


def select_on_holdout(candidates: Sequence[HoldoutCandidate], workers: Sequence[Any], *,
                      y: np.ndarray, fit_rows: np.ndarray, eval_rows: np.ndarray,
                      metric: str, task: str, n_classes: int, size: int, train_rows: int,
                      window_end: float | None, refit_end: float | None = None,
                      offered: Sequence[str] | None = None,
                      search_rows: np.ndarray | None = None, seed: int = 0
                      ) -> HoldoutOutcome:
    """Fit the candidates without the held-out rows, choose on them, refit on all rows.

    Parameters
    ----------
    candidates : sequence of HoldoutCandidate
        From :func:`holdout_candidates`; a trial whose estimate does not fit in the time
        left is fitted on fewer rows (``search_rows`` and more); the first is skipped only
        when its estimate on ``search_rows`` exceeds ``HOLDOUT_FIRST_MARGIN`` times it.
    workers : sequence of Worker
        Workers whose context holds all rows (``y`` are its targets).
    y : ndarray
        Targets of all rows (class codes or values).
    fit_rows, eval_rows : ndarray
        Row indices the candidates are fitted on and compared on.
    metric, task, n_classes : as for :func:`~automl_meta.artifacts.ensemble.select_ensemble`
    size : int
        Ensemble selection rounds; 1: the best candidate alone.
    train_rows : int
        Rows each CV fit of the search saw (the trials' fit times were measured on them).
    window_end : float, optional
        ``time.monotonic()`` value by which the candidates must be fitted.
    refit_end : float, optional
        ... and by which the refit of the chosen members on all rows must be done (default
        ``window_end``): the fit without the held-out rows is already a good model, so its
        refit need not reach into the grace period.
    offered : sequence of str, optional
        Families the space offers on all rows: a member of another family (a kernel SVM
        past its row limit) keeps its fit without the held-out rows.
    search_rows : ndarray, optional
        The rows the search saw (among ``fit_rows``): the fewest a trial is fitted on when
        the time left does not allow all of ``fit_rows`` (default: it is skipped then).
    seed : int
        Seeds the choice of the rows added to ``search_rows`` in that case.

    Returns
    -------
    HoldoutOutcome
    """
    m = metrics_mod.METRICS[metric]
    n_fit, n_all = len(fit_rows), len(y)
    by_key = {c.key: c for c in candidates}
    extra = np.array([], dtype=int)
    if search_rows is not None:
        extra = np.random.default_rng(seed).permutation(np.setdiff1d(fit_rows, search_rows))
    clf = task != "regression"
    jobs = [(c.key, ("holdout", c.config, fit_rows, eval_rows),
             c.estimate(train_rows, n_fit, len(eval_rows), clf),
             _fewer_rows(c, train_rows, fit_rows, eval_rows, search_rows, extra, clf))
            for c in candidates]
    answers, failed, interrupted = run_side_by_side(jobs, workers, window_end,
                                                    HOLDOUT_FIRST_MARGIN)
    rows = []
    for c in candidates:
        a = answers.get(c.key)
        rows.append({"label": c.label, "family": c.family,
                     "trial": c.key if c.key >= 0 else None,
                     "cv_score": c.cv_score,
                     "holdout_score": None if a is None else a["score"],
                     "fit_seconds": None if a is None else round(a["fit_seconds"], 3),
                     "fit_rows": None if a is None else int(a.get("fit_rows", n_fit)),
                     "skipped": failed.get(c.key)})
    info: dict[str, Any] = {"rows": int(len(eval_rows)), "fit_rows": int(n_fit),
                            "candidates": rows, "interrupted": interrupted}
    scored = [k for k in (c.key for c in candidates) if k in answers
              and np.isfinite(answers[k]["score"])]
    if not scored:
        info["reason"] = "no candidate could be fitted without the held-out rows in time"
        return HoldoutOutcome(None, None, info["reason"], None, 0.0, info, interrupted)
    best = scored[0]
    for k in scored[1:]:
        if m.better(answers[k]["score"], answers[best]["score"]):
            best = k
    y_eval = y[eval_rows]
    preds = {k: answers[k]["pred"] for k in scored}
    selection = select_ensemble(preds, y_eval, metric, task, n_classes,
                                size if not interrupted else 1, best)
    weights = selection.weights
    info.update(chosen=by_key[best].label, chosen_score=answers[best]["score"],
                selected_score=selection.score, picks=selection.rounds)
    # refit the chosen members on all rows, side by side, where the time left allows
    refit_jobs = [(k, ("fit", by_key[k].config),
                   refit_seconds(answers[k]["fit_seconds"], answers[k].get("fit_rows", n_fit),
                                 n_all,
                                 safety=HOLDOUT_REFIT_SAFETY,
                                 exponent=fit_exponent(by_key[k].family)))
                  for k in weights if offered is None or by_key[k].family in offered]
    refitted: dict[Any, dict] = {}
    not_refitted = {k: f"{by_key[k].family} is not offered on {n_all} rows" for k in weights
                    if offered is not None and by_key[k].family not in offered}
    if not interrupted and refit_jobs:
        refitted, failed_refits, interrupted = run_side_by_side(
            refit_jobs, workers, window_end if refit_end is None else refit_end)
        not_refitted |= failed_refits
    members = []
    for k, w in weights.items():
        out = refitted.get(k, answers[k])
        members.append({"label": by_key[k].label, "family": by_key[k].family,
                        "trial": k if k >= 0 else None, "weight": w,
                        "holdout_score": answers[k]["score"],
                        "all_rows": k in refitted,
                        "fit_rows": n_all if k in refitted else int(
                            answers[k].get("fit_rows", n_fit)),
                        "fit_seconds": round(float(out["fit_seconds"]), 3),
                        "why_not_all_rows": None if k in refitted else
                        not_refitted.get(k, "interrupted")})
    info.update(members=members, interrupted=interrupted)
    pipes = [refitted.get(k, answers[k])["pipeline"] for k in weights]
    seconds = float(sum(a["fit_seconds"] for a in answers.values())
                    + sum(a["fit_seconds"] for a in refitted.values()))
    top = by_key[best]
    scale = (f"compared on {len(eval_rows)} rows the search did not see "
             f"(fitted on the other {n_fit})")
    if len(weights) == 1:
        reason = f"{top.label}: best of {len(scored)} candidates {scale}"
        if members[0]["fit_rows"] < n_fit:
            reason += f"; fitted on {members[0]['fit_rows']} of them (no time for more)"
        if not members[0]["all_rows"]:
            reason += f"; not refitted on all rows ({members[0]['why_not_all_rows']})"
        info["reason"] = reason
        return HoldoutOutcome(pipes[0], dict(top.config), reason,
                              best if best >= 0 else None, seconds, info, interrupted)
    config = {"family": "ensemble",
              "members": [{"trial": k if k >= 0 else None, "weight": w,
                           "label": by_key[k].label, "config": by_key[k].config}
                          for k, w in weights.items()]}
    reason = (describe([by_key[k].family for k in weights])
              + f", selected on {len(eval_rows)} held-out rows")
    info["reason"] = reason
    model = Ensemble(pipes, list(weights.values()), task, n_classes,
                     [max(k, -1) for k in weights])
    return HoldoutOutcome(model, config, reason, best if best >= 0 else None, seconds, info,
                          interrupted)
