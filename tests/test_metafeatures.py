"""Tests of automl_meta.meta.features: OpenML-named data qualities."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.datasets import load_diabetes, load_iris, load_wine

from automl_meta.errors import UsageError
from automl_meta.meta.features import TASKS, compute_metafeatures, metafeature_names

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference" / "openml_qualities_lcdb.csv"
needs_shared = pytest.mark.skipif(not REFERENCE.exists(),
                                  reason="OpenML reference table (/work/shared) not available")

CLASS_ONLY = ["NumberOfClasses", "MajorityClassSize", "MinorityClassSize",
              "MajorityClassPercentage", "MinorityClassPercentage", "AutoCorrelation",
              "ClassEntropy", "MeanMutualInformation", "EquivalentNumberOfAtts",
              "MeanNoiseToSignalRatio", "NaiveBayesAUC", "kNN1NErrRate", "DecisionStumpKappa"]


def check_clean(mf: dict, task: str) -> None:
    """Keys are exactly metafeature_names(task), values finite floats or None."""
    assert list(mf) == metafeature_names(task)
    for key, value in mf.items():
        assert value is None or (type(value) is float and math.isfinite(value)), (key, value)


# ------------------------------------------------------------------------------ names
def test_names_stable_and_distinct():
    for task in TASKS:
        names = metafeature_names(task)
        assert len(names) == len(set(names))
        assert names == metafeature_names(task)
    assert metafeature_names("binary") == metafeature_names("multiclass")
    regression = set(metafeature_names("regression"))
    for name in CLASS_ONLY:
        assert name in metafeature_names("binary")
        assert name not in regression
    assert {"TargetSkewness", "TargetKurtosis", "MaxAbsFeatureTargetCorrelation",
            "LinearRegressionR2", "MeanAttributeEntropy",
            "MeanSkewnessOfNumericAtts"} <= regression


def test_unknown_task_and_bad_inputs():
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    with pytest.raises(UsageError):
        metafeature_names("clustering")
    with pytest.raises(UsageError):
        compute_metafeatures(X, pd.Series([0, 1, 0]), "ranking")
    with pytest.raises(UsageError):
        compute_metafeatures(X, pd.Series([0, 1]), "binary")
    with pytest.raises(UsageError):
        compute_metafeatures(X, pd.Series([0, None, 1]), "binary")
    with pytest.raises(UsageError):
        compute_metafeatures(X, pd.Series(["a", "b", "c"]), "regression")


# ------------------------------------------------------------------ scikit-learn data
def test_iris_counts_moments_and_landmarkers():
    X, y = load_iris(return_X_y=True, as_frame=True)
    mf = compute_metafeatures(X, y, "multiclass")
    check_clean(mf, "multiclass")
    assert mf["NumberOfInstances"] == 150
    assert mf["NumberOfFeatures"] == 5  # the target is an attribute, as on OpenML
    assert mf["NumberOfNumericFeatures"] == 4
    assert mf["NumberOfSymbolicFeatures"] == 1
    assert mf["NumberOfBinaryFeatures"] == 0
    assert mf["NumberOfClasses"] == 3
    assert mf["MajorityClassSize"] == mf["MinorityClassSize"] == 50
    assert mf["MinorityClassPercentage"] == pytest.approx(100 / 3)
    assert mf["NumberOfMissingValues"] == 0
    assert mf["Dimensionality"] == pytest.approx(5 / 150)
    assert mf["ClassEntropy"] == pytest.approx(math.log2(3))
    assert mf["MaxNominalAttDistinctValues"] == 3  # only the target is nominal
    # no nominal feature: entropy / MI family undefined (as on OpenML), not zero
    assert mf["MeanAttributeEntropy"] is None and mf["MeanMutualInformation"] is None
    assert mf["EquivalentNumberOfAtts"] is None
    # moments: bias-corrected sample formulas, quartiles at p(n + 1)
    skews = stats.skew(X.to_numpy(), axis=0, bias=False)
    kurts = stats.kurtosis(X.to_numpy(), axis=0, bias=False)
    assert mf["MeanSkewnessOfNumericAtts"] == pytest.approx(skews.mean())
    assert mf["MaxKurtosisOfNumericAtts"] == pytest.approx(kurts.max())
    assert mf["Quartile1KurtosisOfNumericAtts"] == pytest.approx(
        np.quantile(kurts, 0.25, method="weibull"))
    assert mf["MeanStdDevOfNumericAtts"] == pytest.approx(X.std(ddof=1).mean())
    assert mf["MinMeansOfNumericAtts"] == pytest.approx(X.mean().min())
    # landmarkers: iris is easy
    assert mf["kNN1NErrRate"] < 0.1 and mf["NaiveBayesAUC"] > 0.95 and mf["LDAAUC"] > 0.95
    assert 0.3 < mf["DecisionStumpErrRate"] < 0.45  # a stump separates one class of three
    assert 0 < mf["NaiveBayesKappa"] <= 1


def test_wine_binary_subset_and_integer_labels():
    X, y = load_wine(return_X_y=True, as_frame=True)
    keep = y < 2
    mf = compute_metafeatures(X[keep], y[keep], "binary")
    check_clean(mf, "binary")
    assert mf["NumberOfClasses"] == 2
    assert mf["NumberOfBinaryFeatures"] == 1  # the two-class target
    assert mf["MajorityClassSize"] == 71 and mf["MinorityClassSize"] == 59


def test_diabetes_regression():
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    mf = compute_metafeatures(X, y, "regression")
    check_clean(mf, "regression")
    for name in CLASS_ONLY:
        assert name not in mf
    assert mf["NumberOfFeatures"] == 11
    assert mf["NumberOfNumericFeatures"] == 11  # a numeric target counts, as on OpenML
    assert mf["NumberOfSymbolicFeatures"] == 0
    assert mf["TargetSkewness"] == pytest.approx(stats.skew(y, bias=False))
    assert mf["TargetKurtosis"] == pytest.approx(stats.kurtosis(y, bias=False))
    corr = np.abs([np.corrcoef(X[c], y)[0, 1] for c in X])
    assert mf["MaxAbsFeatureTargetCorrelation"] == pytest.approx(corr.max())
    assert mf["MeanAbsFeatureTargetCorrelation"] == pytest.approx(corr.mean())
    # the numeric target is one of OpenML's numeric attributes
    assert mf["MaxMeansOfNumericAtts"] == pytest.approx(y.mean())
    assert 0.3 < mf["LinearRegressionR2"] < 0.7
    assert mf["DecisionStumpR2"] < mf["LinearRegressionR2"]
    assert mf["MeanAttributeEntropy"] is None


# ------------------------------------------------------------------------- mixed data
def mixed_frame() -> tuple[pd.DataFrame, pd.Series]:
    X = pd.DataFrame({
        "num": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0],
        "int": [1, 2, 3, 4, 5, 6],
        "nullable": pd.array([1, None, 3, 3, 2, 1], dtype="Int64"),
        "flag": [True, False, True, True, False, True],
        "cat2": pd.Categorical(["x", "x", None, "x", "x", "x"], categories=["x", "y"]),
        "cat3": pd.Categorical(["a", "b", "c", "a", "b", "c"]),
        "text": ["u", None, "v", "w", "u", "u"],
        "string": pd.array(["p", "q", "p", None, "q", "p"], dtype="string"),
        "when": pd.to_datetime(["2020-01-01", None, "2020-01-03", "2020-01-04",
                                "2020-01-05", "2020-01-06"]),
    })
    y = pd.Series(["yes", "no", "yes", "no", "yes", "yes"])
    return X, y


def test_mixed_columns_counts():
    X, y = mixed_frame()
    before = X.copy()
    mf = compute_metafeatures(X, y, "binary", landmarkers=False)
    check_clean(mf, "binary")
    pd.testing.assert_frame_equal(X, before)  # the caller's data is untouched
    assert mf["NumberOfFeatures"] == 10
    assert mf["NumberOfNumericFeatures"] == 4  # num, int, nullable, datetime
    assert mf["NumberOfSymbolicFeatures"] == 6  # flag, cat2, cat3, text, string + target
    # flag (bool), cat2 (two declared categories, one observed), string (p/q), target
    assert mf["NumberOfBinaryFeatures"] == 4
    assert mf["NumberOfMissingValues"] == 6
    assert mf["NumberOfInstancesWithMissingValues"] == 3  # rows 1, 2 and 3
    assert mf["PercentageOfMissingValues"] == pytest.approx(6 / 60 * 100)
    assert mf["MaxNominalAttDistinctValues"] == 3 and mf["MinNominalAttDistinctValues"] == 1
    assert mf["AutoCorrelation"] == pytest.approx(1 / 5)
    for key in [k for k in metafeature_names("binary") if k.endswith(("AUC", "Kappa"))]:
        assert mf[key] is None  # landmarkers=False: present, undefined


# ---------------------------------------------------- the table fit describes (as read)
def table_with_dropped_columns(n: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    """A numeric feature, and a constant, an ID-like and a free-text column that the model's
    schema drops."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    X = pd.DataFrame({
        "x": x,
        "const": 1.0,
        "row_id": np.arange(n),
        "note": [f"free text note {i % 40} about the customer's visit" for i in range(n)],
    })
    return X, np.where(x + rng.normal(scale=0.5, size=n) > 0, "yes", "no")


def check_openml_counts(mf: dict) -> None:
    """The counts OpenML publishes for :func:`table_with_dropped_columns`: every column and
    the target are attributes."""
    assert mf["NumberOfFeatures"] == 5 and mf["NumberOfInstances"] == 60
    assert mf["NumberOfNumericFeatures"] == 3  # x, const, row_id
    assert mf["NumberOfSymbolicFeatures"] == 2  # note, the target
    assert mf["NumberOfBinaryFeatures"] == 1  # the target
    assert mf["MaxNominalAttDistinctValues"] == 40 and mf["MinNominalAttDistinctValues"] == 2
    assert mf["Dimensionality"] == pytest.approx(5 / 60)
    assert mf["MinStdDevOfNumericAtts"] == 0.0  # the constant column counts


def test_dataset_as_read_counts_dropped_columns():
    from automl_meta.data import prepare_dataset
    from automl_meta.meta.builder.local import _metafeatures
    from automl_meta.meta.builder.sources import LoadedTask

    X, y = table_with_dropped_columns()
    ds = prepare_dataset(X.assign(label=y), "label")
    assert ds.schema.names == ["x"]  # the model's features
    assert set(ds.schema.dropped) == {"const", "row_id", "note"}
    assert "free text" in ds.schema.dropped["note"] and "ID" in ds.schema.dropped["row_id"]
    check_openml_counts(compute_metafeatures(*ds.as_read(), ds.task, landmarkers=False))
    built, error = _metafeatures(LoadedTask(ds), seed=0)  # what build-metabase stores
    assert error == "" and built["NumberOfFeatures"] == 5


def test_fit_metafeatures_count_what_openml_counts():
    from automl_meta.estimator import AutoML

    X, y = table_with_dropped_columns()
    model = AutoML(n_trials=1, isolation=False, warm_start=1, diagnostics=False, report=False,
                   history=False, n_jobs=1, seed=0).fit(X, y)
    check_openml_counts(model.metafeatures_)
    assert model.model_.schema.names == ["x"]  # the model still fits on x alone
    assert model.n_features_in_ == 4


def test_arff_nominal_declared_with_two_values_is_binary():
    from automl_meta.data import prepare_dataset, read_arff_text

    arff = ("@relation r\n@attribute x numeric\n@attribute flag {yes, no}\n"
            "@attribute colour {red, green, blue}\n@attribute class {a, b, c}\n@data\n"
            + "".join(f"{i},yes,{('red', 'green')[i % 2]},{'ab'[i // 10]}\n"
                      for i in range(20)))
    ds = prepare_dataset(read_arff_text(arff), "class")
    assert ds.task == "binary" and "flag" in ds.schema.dropped  # constant for the model
    mf = compute_metafeatures(*ds.as_read(), ds.task, landmarkers=False)
    # flag: two declared values, one observed -> binary; colour: three declared; the target
    # is declared with three values although two occur -> not binary
    assert mf["NumberOfBinaryFeatures"] == 1
    assert mf["NumberOfSymbolicFeatures"] == 3 and mf["NumberOfFeatures"] == 4
    assert mf["NumberOfClasses"] == 2 and mf["MinNominalAttDistinctValues"] == 1


def test_entropy_and_mutual_information_by_hand():
    X = pd.DataFrame({"same": ["a", "a", "b", "b"], "noise": ["a", "b", "a", "b"],
                      "const": ["c", "c", "c", "c"], "num": [1.0, 2.0, 3.0, 4.0]})
    y = pd.Series(["p", "p", "q", "q"])
    mf = compute_metafeatures(X, y, "binary", landmarkers=False)
    assert mf["ClassEntropy"] == pytest.approx(1.0)
    assert mf["MaxAttributeEntropy"] == pytest.approx(1.0)
    assert mf["MinAttributeEntropy"] == 0.0
    assert mf["MeanAttributeEntropy"] == pytest.approx(2 / 3)
    assert mf["MaxMutualInformation"] == pytest.approx(1.0)
    assert mf["MinMutualInformation"] == 0.0
    assert mf["MeanMutualInformation"] == pytest.approx(1 / 3)
    assert mf["EquivalentNumberOfAtts"] == pytest.approx(3.0)
    assert mf["MeanNoiseToSignalRatio"] == pytest.approx(1.0)


def test_missing_nominal_counts_as_first_declared_value():
    # Weka casts a missing nominal value to index 0, so OpenML counts it as the first value
    X = pd.DataFrame({"c": pd.Categorical(["b", None, "a", "a"], categories=["b", "a"])})
    y = pd.Series(["p", "p", "q", "q"])
    mf = compute_metafeatures(X, y, "binary", landmarkers=False)
    assert mf["MeanAttributeEntropy"] == pytest.approx(1.0)  # b, b(missing), a, a
    assert mf["MeanMutualInformation"] == pytest.approx(1.0)
    assert mf["NumberOfMissingValues"] == 1


def test_regression_feature_target_correlation_of_nominal_is_eta():
    x = pd.Series(["a", "b", "a", "b", "a", "b"])
    y = pd.Series([1.0, 3.0, 1.2, 2.8, 0.9, 3.1])
    mf = compute_metafeatures(pd.DataFrame({"x": x}), y, "regression", landmarkers=False)
    point_biserial = abs(np.corrcoef((x == "b").astype(float), y)[0, 1])
    assert mf["MaxAbsFeatureTargetCorrelation"] == pytest.approx(point_biserial)


# -------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("task", TASKS)
def test_degenerate_tables_do_not_crash(task):
    rng = np.random.default_rng(0)
    n = 40
    y = (pd.Series(rng.normal(size=n)) if task == "regression"
         else pd.Series(rng.integers(0, 2 if task == "binary" else 3, n)).map(
             lambda v: f"class{v}"))
    frames = {
        "constant columns": pd.DataFrame({"a": np.ones(n), "b": ["k"] * n,
                                          "c": np.full(n, 0.1)}),
        "all missing": pd.DataFrame({"a": np.full(n, np.nan), "b": [None] * n,
                                     "c": pd.Categorical([None] * n, categories=["u", "v"])}),
        "single numeric": pd.DataFrame({"a": rng.normal(size=n)}),
        "all categorical": pd.DataFrame({"a": rng.choice(["x", "y", "z"], n),
                                         "b": pd.Categorical(rng.choice(["p", "q"], n))}),
        "no columns": pd.DataFrame(index=range(n)),
        "infinities": pd.DataFrame({"a": np.r_[np.inf, -np.inf, rng.normal(size=n - 2)]}),
        "tz datetime and timedelta": pd.DataFrame({
            "t": pd.date_range("2021-01-01", periods=n, freq="h", tz="Europe/Paris"),
            "d": pd.to_timedelta(np.arange(n), unit="m")}),
        "nullable boolean": pd.DataFrame({"b": pd.array([True, None] * (n // 2),
                                                        dtype="boolean")}),
    }
    for label, X in frames.items():
        mf = compute_metafeatures(X, y, task)
        check_clean(mf, task)
        assert mf["NumberOfFeatures"] == X.shape[1] + 1, label
    mf = compute_metafeatures(frames["constant columns"], y, task)
    if task == "regression":  # the numeric target is one of the numeric attributes
        assert mf["MinStdDevOfNumericAtts"] == 0.0 and mf["MaxStdDevOfNumericAtts"] > 0.5
        assert mf["MeanSkewnessOfNumericAtts"] == pytest.approx(stats.skew(y, bias=False))
    else:
        assert mf["MeanSkewnessOfNumericAtts"] is None  # 0 / 0 for a constant column
        assert mf["MeanStdDevOfNumericAtts"] == 0.0
    mf = compute_metafeatures(frames["all missing"], y, task)
    assert mf["NumberOfMissingValues"] == 3 * n
    assert mf["NumberOfInstancesWithMissingValues"] == n
    assert (mf["MeanMeansOfNumericAtts"] is None) == (task != "regression")
    mf = compute_metafeatures(frames["infinities"], y, task)
    assert mf["NumberOfMissingValues"] == 2


def test_tiny_and_single_class_inputs():
    X = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    for task, y in [("binary", pd.Series(["p", "q"])), ("multiclass", pd.Series(["p", "p"])),
                    ("regression", pd.Series([1.0, 1.0]))]:
        check_clean(compute_metafeatures(X, y, task), task)
    mf = compute_metafeatures(X.iloc[:1], pd.Series([3.0]), "regression")
    check_clean(mf, "regression")
    assert mf["MeanStdDevOfNumericAtts"] == 0.0 and mf["TargetSkewness"] is None
    empty = compute_metafeatures(X.iloc[:0], pd.Series([], dtype=object), "binary")
    check_clean(empty, "binary")
    assert empty["NumberOfInstances"] == 0 and empty["Dimensionality"] is None


def test_landmarkers_deterministic_and_subsampled():
    rng = np.random.default_rng(1)
    n = 6000  # above the subsample bound
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.choice(list("abcdefghijklm"), n),
                      "c": rng.normal(size=n)})
    y = pd.Series(np.where(X["a"] + (X["b"] == "a") > 0.5, "pos", "neg"))
    y.iloc[:3] = "rare"  # a class too small for stratification
    first = compute_metafeatures(X, y, "multiclass", random_state=3)
    check_clean(first, "multiclass")
    assert first == compute_metafeatures(X, y, "multiclass", random_state=3)
    assert first["DecisionStumpErrRate"] < 0.2 and first["LDAAUC"] > 0.8


# ------------------------------------------- the numpy landmarkers against scikit-learn
def test_numpy_learners_match_scikit_learn():
    from sklearn.covariance import ledoit_wolf
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    from automl_meta.meta import features as mf

    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    x = X + rng.normal(0, 1e-3, X.shape)  # no ties: the best split is unique
    stump = mf._Stump(3).fit(x, y)
    tree = DecisionTreeClassifier(max_depth=1, criterion="entropy").fit(x, y)
    np.testing.assert_allclose(stump.predict(x), tree.predict_proba(x))
    target = X[:, 0] * 2 + rng.normal(size=150)
    reg = DecisionTreeRegressor(max_depth=1).fit(x[:, 1:], target)
    np.testing.assert_allclose(mf._Stump(0).fit(x[:, 1:], target).predict(x[:, 1:])[:, 0],
                               reg.predict(x[:, 1:]))
    train, test = np.arange(0, 150, 2), np.arange(1, 150, 2)
    knn = KNeighborsClassifier(n_neighbors=1).fit(x[train], y[train])
    np.testing.assert_array_equal(y[train][mf._nearest(x[train], x[test])], knn.predict(x[test]))
    proba = rng.dirichlet(np.ones(3), 150).round(1)  # rounded: many ties
    proba /= proba.sum(axis=1, keepdims=True)
    assert mf._weighted_auc(y, proba) == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="weighted"))
    xc = x - x.mean(axis=0)
    np.testing.assert_allclose(mf._ledoit_wolf(xc), ledoit_wolf(xc, assume_centered=True)[0])
    assert mf._kappa(y, y, 3) == 1.0


# ----------------------------------------------------------------- OpenML's reference
def _reference_row(openml_id: int) -> pd.Series:
    ref = pd.read_csv(REFERENCE)
    return ref[ref.openmlid == openml_id].iloc[0]


def _corpus_dataset(name: str):
    """A corpus dataset loaded as fit and build-metabase load it."""
    from automl_meta.data import load_dataset

    manifest = pd.read_csv(SHARED / "corpus" / "manifest.csv")
    row = manifest[manifest.name == name].iloc[0]
    return load_dataset(SHARED / "corpus" / row["file"], row["target"], row["task"])


@needs_shared
@pytest.mark.parametrize("name, openml_id", [
    ("car", 21),  # all nominal: entropies, mutual information
    ("hypothyroid", 57),  # mixed, missing nominal values (Weka's index-0 quirk)
    ("eucalyptus", 188),  # mixed with missing numeric and nominal values
    ("segment", 36),  # numeric with a constant column (undefined skewness / kurtosis)
])
def test_matches_openml_reference(name, openml_id):
    # (anneal, id 2, is not in the reference table; these are.)
    ds = _corpus_dataset(name)
    mf = compute_metafeatures(*ds.as_read(), ds.task, landmarkers=False)  # as fit does
    row = _reference_row(openml_id)
    compared = 0
    for quality, theirs in row.drop(["openmlid", "Name"]).items():
        if pd.isna(theirs) or quality not in mf or quality.endswith(("AUC", "ErrRate",
                                                                     "Kappa")):
            continue
        ours = mf[quality]
        assert ours is not None, quality
        if quality.startswith("NumberOf") or quality.endswith("ClassSize"):
            assert ours == theirs, quality
        else:  # the reference is printed to 6 decimals
            assert ours == pytest.approx(float(theirs), rel=1e-5, abs=2e-6), quality
        compared += 1
    assert compared >= 30
