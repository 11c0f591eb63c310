"""The model families: one record per family with every fact about it the code uses.

A :class:`FamilySpec` holds the family's name, its display label, how to build its
scikit-learn estimator from a configuration's values, whether its fit time grows with the
number of classes, and the largest training set it is offered on. The search space
(:mod:`automl_meta.search.space`, ``configs/space.yaml``) declares the family's
hyperparameters and preprocessing and takes the label and row limit from here; the
pipeline builds the estimator with :attr:`FamilySpec.build`; the report shows the label; the
warm start's cost estimate reads :attr:`FamilySpec.cost_per_class`, and makes a configuration
cheaper for a short budget through :attr:`FamilySpec.cost_param`.

The estimator classes are imported when an estimator is built, so importing this module (and
the search space) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from automl_meta.budget import REFIT_EXPONENT, refit_seconds


@dataclass(frozen=True)
class ModelInputs:
    """What an estimator factory needs to know about the data besides the configuration.

    Attributes
    ----------
    n_rows : int
        Training rows (bounds k for k-NN, switches the MLP's early stopping on).
    n_inputs : int
        Columns the model sees after preprocessing (scales the SVM's gamma).
    random_state : int
    final : bool
        The final model: SVMs also fit probability estimates so ``predict_proba`` works.
    categorical_mask : list of bool, optional
        Which model inputs are categorical codes (families with native categorical support).
    min_class_count : int, optional
        Rows of the rarest class (the SVM's probability calibration needs folds holding every
        class; gradient boosting needs L2 regularisation against a very rare one).
    """

    n_rows: int
    n_inputs: int
    random_state: int = 0
    final: bool = False
    categorical_mask: list[bool] | None = None
    min_class_count: int | None = None


#: Modules the estimator factories import (when an estimator is first built): the trial
#: workers' fork server imports them once, ahead of the first trial.
ESTIMATOR_MODULES = ("sklearn.ensemble", "sklearn.linear_model", "sklearn.calibration",
                     "sklearn.compose", "sklearn.preprocessing", "sklearn.svm",
                     "sklearn.neighbors", "sklearn.neural_network")

#: ``build(values, classification, inputs)``: the unfitted estimator for the family's
#: hyperparameter values (keys without the ``family.`` prefix)
Factory = Callable[[Mapping[str, Any], bool, ModelInputs], Any]


@dataclass(frozen=True)
class FamilySpec:
    """The facts about one model family.

    Attributes
    ----------
    name : str
        The name configurations use (``{"family": name, ...}``).
    label : str
        How reports and messages name the family.
    build : callable
        The estimator factory, see :data:`Factory`.
    cost_per_class : bool
        Fit time grows with the number of classes (one tree, or one set of coefficients,
        per class): the warm start scales its time estimate by the class count.
    max_rows : int, optional
        The family is not offered above this many training rows (None: no limit).
    cost_param : str, optional
        The hyperparameter a fit's time is about proportional to (trees, boosting rounds):
        the warm start makes a configuration too dear for a short budget cheaper through it.
    compensate : str, optional
        A hyperparameter multiplied by the inverse of the factor ``cost_param`` is reduced
        by (boosting: fewer rounds take larger steps, so that the product stays the same).
    fit_exponent : float, optional
        A fit on ``k`` times the rows takes ``k`` to this power times as long, where that
        differs from :data:`automl_meta.budget.REFIT_EXPONENT`: faster for a kernel SVM's
        training (at least quadratic), slower for histogram gradient boosting (binned
        features: a boosting round's cost is mostly per leaf, and on many rows it stops
        early).
    final_fit_factor : float
        A classifier's final model (the one refitted, with ``final=True``) takes this many
        times as long to fit as a CV trial's model on as many rows (a kernel SVM fits its
        probability calibration by 3-fold CV first, then itself on all rows).
    early_stopping_rows : int, optional
        Above this many training rows the model stops early on a validation split of its
        own (scikit-learn's histogram gradient boosting, ``early_stopping="auto"``): its
        cost parameter is only a maximum there, so a time estimate from smaller prior
        trials, which ran every round, is an upper bound, and the warm start does not
        make the configuration cheaper.
    """

    name: str
    label: str
    build: Factory
    cost_per_class: bool = False
    max_rows: int | None = None
    cost_param: str | None = None
    compensate: str | None = None
    fit_exponent: float | None = None
    early_stopping_rows: int | None = None
    final_fit_factor: float = 1.0


def _class_weight(p: Mapping[str, Any]) -> str | None:
    return None if p.get("class_weight", "none") == "none" else p["class_weight"]


#: a gradient-boosting classifier whose rarest class holds less than this share of its
#: training rows gets at least ``HGB_RARE_CLASS_L2`` of L2 regularisation: the Newton step
#: of a leaf is its gradients over its hessians (plus L2), and a class of a handful of rows
#: among thousands has hessians near zero, so with little L2 and a large learning rate the
#: leaf values overshoot and the whole model diverges (scikit-learn HGB has no cap on the
#: step); on leaves of ordinary classes the extra L2 is negligible against their hessians
HGB_RARE_CLASS_SHARE = 0.01
HGB_RARE_CLASS_L2 = 0.1


def _hgb(p: Mapping[str, Any], clf: bool, inputs: ModelInputs) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
    l2 = float(p["l2_regularization"])
    if clf and inputs.min_class_count is not None \
            and inputs.min_class_count < HGB_RARE_CLASS_SHARE * inputs.n_rows:
        l2 = max(l2, HGB_RARE_CLASS_L2)
    return cls(learning_rate=p["learning_rate"], max_iter=int(p["max_iter"]),
               max_leaf_nodes=int(p["max_leaf_nodes"]),
               min_samples_leaf=int(p["min_samples_leaf"]),
               l2_regularization=l2, max_features=p["max_features"],
               categorical_features=inputs.categorical_mask,
               random_state=inputs.random_state)


def _forest_kwargs(p: Mapping[str, Any], clf: bool, inputs: ModelInputs) -> dict[str, Any]:
    kw = dict(n_estimators=int(p["n_estimators"]), max_features=p["max_features"],
              min_samples_leaf=int(p["min_samples_leaf"]),
              min_samples_split=int(p["min_samples_split"]), bootstrap=bool(p["bootstrap"]),
              n_jobs=1, random_state=inputs.random_state)
    if clf:
        kw["criterion"] = p["criterion"]
    return kw


def _rf(p: Mapping[str, Any], clf: bool, inputs: ModelInputs) -> Any:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestClassifier if clf else RandomForestRegressor
    return cls(**_forest_kwargs(p, clf, inputs))


def _et(p: Mapping[str, Any], clf: bool, inputs: ModelInputs) -> Any:
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

    cls = ExtraTreesClassifier if clf else ExtraTreesRegressor
    return cls(**_forest_kwargs(p, clf, inputs))


def _linear(p: Mapping[str, Any], clf: bool, inputs: ModelInputs) -> Any:
    from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge

    if clf:
        return LogisticRegression(C=p["C"], class_weight=_class_weight(p), max_iter=2000)
    if p["penalty"] == "elasticnet":
        return ElasticNet(alpha=p["alpha"], l1_ratio=p["l1_ratio"], max_iter=5000,
                          random_state=inputs.random_state)
    return Ridge(alpha=p["alpha"])


def _svm(p: Mapping[str, Any], clf: bool, inputs: ModelInputs) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, SVR

    gamma = p["gamma_scale"] / inputs.n_inputs
    if clf:
        svc = SVC(C=p["C"], gamma=gamma, class_weight=_class_weight(p), cache_size=500,
                  random_state=inputs.random_state)
        # probabilities for the final model: Platt scaling fitted by 3-fold CV, then one
        # SVC on all rows (what SVC(probability=True) did before scikit-learn 1.9)
        folds = min(3, inputs.min_class_count if inputs.min_class_count is not None else 3)
        if inputs.final and folds >= 2:
            return CalibratedClassifierCV(svc, ensemble=False, cv=folds)
        return svc
    return TransformedTargetRegressor(
        SVR(C=p["C"], gamma=gamma, epsilon=p["epsilon"], cache_size=500),
        transformer=StandardScaler())


def _knn(p: Mapping[str, Any], clf: bool, inputs: ModelInputs) -> Any:
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    k = int(min(p["n_neighbors"], max(1, int(inputs.n_rows * 0.6))))
    cls = KNeighborsClassifier if clf else KNeighborsRegressor
    return cls(n_neighbors=k, weights=p["weights"], p=int(p["p"]))


def _mlp(p: Mapping[str, Any], clf: bool, inputs: ModelInputs) -> Any:
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import StandardScaler

    kw = dict(hidden_layer_sizes=(int(p["width"]),) * int(p["depth"]), alpha=p["alpha"],
              learning_rate_init=p["learning_rate_init"], max_iter=200,
              early_stopping=inputs.n_rows >= 1000, random_state=inputs.random_state)
    if clf:
        return MLPClassifier(**kw)
    return TransformedTargetRegressor(MLPRegressor(**kw), transformer=StandardScaler())


# The labels and row limits are part of the search-space version (see
# automl_meta.search.space.parse_space): changing one changes the version, and a metabase
# built against the old version is refused.
FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in (
    FamilySpec("hgb", "Histogram gradient boosting", _hgb, cost_per_class=True,
               cost_param="max_iter", compensate="learning_rate", early_stopping_rows=10_000,
               fit_exponent=0.7),
    FamilySpec("rf", "Random forest", _rf, cost_param="n_estimators"),
    FamilySpec("et", "Extra trees", _et, cost_param="n_estimators"),
    FamilySpec("linear", "Linear (logistic regression / ridge / elastic net)", _linear,
               cost_per_class=True),
    FamilySpec("svm", "Support vector machine (RBF kernel)", _svm, max_rows=10_000,
               fit_exponent=2.0, final_fit_factor=3.0),
    FamilySpec("knn", "k-nearest neighbours", _knn, max_rows=50_000),
    FamilySpec("mlp", "Multi-layer perceptron", _mlp),
)}

#: the family names, in declaration order
KNOWN_FAMILIES: tuple[str, ...] = tuple(FAMILIES)


def fit_exponent(name: Any) -> float:
    """How family ``name``'s fit time grows with the rows (:attr:`FamilySpec.fit_exponent`,
    else :data:`automl_meta.budget.REFIT_EXPONENT`)."""
    spec = FAMILIES.get(str(name))
    return spec.fit_exponent if spec is not None and spec.fit_exponent is not None \
        else REFIT_EXPONENT


def final_fit_seconds(name: Any, fold_fit_seconds: float, train_rows: int, fit_rows: int,
                      classifier: bool) -> float:
    """Estimated seconds of the final model of family ``name`` on ``fit_rows`` rows, from a
    CV trial's fit of ``fold_fit_seconds`` on ``train_rows`` rows:
    :func:`automl_meta.budget.refit_seconds` with the family's :func:`fit_exponent`, times
    its :attr:`FamilySpec.final_fit_factor` for a ``classifier``."""
    spec = FAMILIES.get(str(name))
    factor = spec.final_fit_factor if spec is not None and classifier else 1.0
    return refit_seconds(fold_fit_seconds, train_rows, fit_rows,
                         exponent=fit_exponent(name)) * factor


def get_family(name: str) -> FamilySpec:
    """The record of family ``name``.

    Raises
    ------
    ValueError
        ``name`` is not a known family.
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r} (known: {', '.join(KNOWN_FAMILIES)})"
                         ) from None


def family_label(name: Any) -> str:
    """The display label of family ``name``; the name itself when it is not a known family
    (``"?"`` when empty)."""
    spec = FAMILIES.get(str(name))
    return spec.label if spec is not None else (str(name) or "?")
