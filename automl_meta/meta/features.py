"""Dataset meta-features ("data qualities") under OpenML's quality names.

A metabase built from OpenML's published qualities and one computed here must speak the same
language, so every quality OpenML has is computed the way OpenML's Java characterizers compute
it (``org.openml.webapplication.fantail.dc`` in OpenML's EvaluationEngine: ``SimpleMetaFeatures``,
``Statistical``, ``NominalAttDistinctValues``, ``AttributeEntropy``, ``GenericLandmarker``), and
checked against OpenML's published values (``benchmarks/metafeature_agreement.py``).

Entry points: :func:`compute_metafeatures` and :func:`metafeature_names`.

What is described is the table as read, as OpenML describes a dataset as published: every
feature column with the type the reader gave it (constant, ID-like and text columns too; a
datetime column is one attribute, not expanded into its parts) and the target. ``fit``,
``build-metabase`` and the ``metafeatures`` / ``neighbors`` commands all pass
:meth:`automl_meta.data.Dataset.as_read` (the rows with a target), not the features the model
is fitted on (:data:`COMPUTED_ON` is what a metabase's manifest says).

How OpenML sees a table
-----------------------
OpenML (Weka) sees an ARFF file: ``X`` plus the target as the *last attribute*. Every count
below follows that view, so **the target is an attribute**: ``NumberOfFeatures`` is the number
of columns of ``X`` plus one, a nominal target counts in ``NumberOfSymbolicFeatures`` (and in
``NumberOfBinaryFeatures`` when it has two declared values), a numeric target counts in
``NumberOfNumericFeatures`` and in the ``…OfNumericAtts`` statistics (OpenML loops over all
attributes; for classification the target is nominal so only the features are summarised).

Column kinds (how a pandas column maps to an ARFF attribute):

* float / int / nullable ``Int64``/``Float64`` columns: numeric, NaN / NA = missing.
* ``bool`` / ``boolean`` columns: nominal with the two declared values ``{False, True}``
  (an ARFF written from a boolean column declares ``{False, True}``; OpenML's datasets store
  flags as two-valued nominals), so they count as symbolic *and* binary.
* ``category`` columns: nominal; the **declared** categories are the attribute's values, so a
  column declared with two categories is binary even if only one occurs (OpenML counts
  ``numValues() == 2``).
* object / string columns: nominal; the declared values are the distinct non-missing values,
  in sorted order of their string form; None / NaN = missing.
* datetime64 columns (tz-aware ones converted to UTC) and timedelta columns: numeric, as Weka
  treats ARFF ``DATE`` attributes (``isNumeric()`` is true): milliseconds since the epoch
  (resp. milliseconds); NaT = missing.

Quality families
----------------
Simple (all tasks): ``NumberOfInstances``, ``NumberOfFeatures``, ``NumberOfNumericFeatures``,
``NumberOfSymbolicFeatures``, ``NumberOfBinaryFeatures`` and their ``PercentageOf…`` versions
(per cent of ``NumberOfFeatures``), ``NumberOfMissingValues`` / ``PercentageOfMissingValues``
(per cent of instances × features), ``NumberOfInstancesWithMissingValues`` /
``PercentageOfInstancesWithMissingValues``, ``Dimensionality`` (features / instances), and
``Max/Min/Mean/StdvNominalAttDistinctValues`` (distinct *observed* values per nominal
attribute, target included; ``Stdv`` is the sample standard deviation).

Class (classification only): ``NumberOfClasses`` (observed classes), ``Majority/MinorityClass
Size`` and ``…Percentage`` (observed classes only), ``AutoCorrelation`` (share of consecutive
rows with the same label: ``(n - 1 - changes) / (n - 1)``; it depends on row order). OpenML
also reports ``AutoCorrelation`` for numeric targets, but its formula then telescopes to
``(n - 1 - (y_first - y_last)) / (n - 1)``, which means nothing, so it is left out for
regression; OpenML's ``NumberOfClasses = 0`` for regression is left out too.

Statistical (all tasks): for every numeric attribute, over its non-missing values, the mean,
the sample standard deviation (n - 1), the bias-corrected sample skewness
``n / ((n-1)(n-2)) · Σ((x - mean)/s)³`` and the bias-corrected sample excess kurtosis
``n(n+1) / ((n-1)(n-2)(n-3)) · Σ((x - mean)/s)⁴ - 3(n-1)² / ((n-2)(n-3))`` — the formulas of
Apache Commons Math's ``DescriptiveStatistics`` which OpenML uses (the population formulas
g1 / g2 do not match OpenML's numbers; these do, to the reference's printed precision).
Skewness needs 3 non-missing values, kurtosis 4, and both are undefined for a constant column
(Commons Math computes 0 / 0); as in OpenML, undefined values are left out of the lists (a
constant column still counts in the means and standard deviations but not in the skewness and
kurtosis lists; an all-missing column counts in none). Each list is summarised by
``Mean/Min/Max/Quartile1/Quartile2/Quartile3`` + ``Means|StdDev|Kurtosis|Skewness`` +
``OfNumericAtts``; quartiles use Commons Math's default percentile estimator (position
``p(n + 1)``, i.e. numpy's ``method="weibull"``). No numeric attribute → all None. Infinite
values are treated as missing (ARFF has no infinities), also in the missing-value counts.

Information-theoretic: entropies in bits (log2), **over nominal attributes only**. OpenML does
*not* discretise numeric attributes: its reference values are missing for every dataset
without a nominal feature, and on mixed datasets (hypothyroid, sick, eucalyptus, …) the
nominal-only values match OpenML's to 1e-12, so there is no bin-count rule to reproduce.
A quirk reproduced on purpose: Weka casts a missing nominal value (NaN) to index 0, so OpenML
counts missing values as the attribute's **first declared value** in entropies and mutual
information (this reproduces hypothyroid's ``MeanAttributeEntropy`` exactly; skipping missing
values or giving them their own value does not).

* ``Mean/Min/Max/Quartile1-3AttributeEntropy`` (all tasks; OpenML leaves them null for
  numeric targets, we compute them since they do not involve the target).
* Classification only: ``ClassEntropy``, ``Mean/Min/Max/Quartile1-3MutualInformation``
  (class–attribute information gain, rounded to 1e-14 as OpenML does),
  ``EquivalentNumberOfAtts`` = ClassEntropy / MeanMutualInformation and
  ``MeanNoiseToSignalRatio`` = (MeanAttributeEntropy - MeanMutualInformation) /
  MeanMutualInformation, both None when the mean mutual information is not positive.

Regression only (not OpenML qualities): ``TargetSkewness``, ``TargetKurtosis`` (the same
Commons Math formulas) and ``Mean/Min/Max/Quartile1-3AbsFeatureTargetCorrelation``: the
absolute Pearson correlation of each numeric feature with the target (pairwise-complete
rows), and for a nominal feature the correlation ratio η (square root of the between-group
share of the target's variance; for a two-valued feature it equals the absolute point-biserial
correlation). Constant features are skipped.

Landmarkers (``landmarkers=True``): cross-validated scores of cheap learners, computed on a
class-stratified random subsample of at most :data:`LANDMARKER_MAX_ROWS` rows with
:data:`LANDMARKER_FOLDS`-fold stratified cross-validation (OpenML: Weka, 2-fold CV on all
rows), out-of-fold predictions pooled before scoring, as Weka's ``Evaluation`` does.

* Classification: ``DecisionStump``, ``NaiveBayes``, ``kNN1N`` (OpenML's names) and ``LDA``
  (not on OpenML) × ``AUC`` (class-frequency-weighted one-vs-rest ROC AUC, Weka's
  ``weightedAreaUnderROC``), ``ErrRate``, ``Kappa`` (Cohen's).
* Regression: ``DecisionStumpR2``, ``LinearRegressionR2``, ``kNN1NR2`` (pooled out-of-fold R²,
  1 - SSE / SST; it can be negative).

The learners are small numpy re-implementations in the spirit of Weka's (importing
scikit-learn would cost more than computing every quality of a 100 000-row table):

* decision stump: the single threshold split minimising the children's entropy
  (classification, Weka's criterion) or squared error (regression), over mean-imputed numeric
  and one-hot nominal columns (so a nominal attribute splits one value against the rest, as in
  Weka); leaves predict class frequencies / means;
* naive Bayes: Weka's default NaiveBayes re-implemented — numeric values rounded to the
  attribute's precision (mean gap between distinct values), per-class normal estimators with
  Weka's minimum standard deviation (precision / 6) giving the probability of the
  precision-wide interval, Laplace-smoothed nominal and class frequencies over the declared
  values, missing values ignored (on all rows it is within ~0.002 AUC of OpenML's);
* 1-NN: Euclidean on min–max scaled numeric columns and one-hot nominal columns scaled so
  that a mismatch costs 1, as in Weka's IBk;
* LDA: pooled within-class covariance shrunk with the Ledoit–Wolf formula, on standardised
  columns;
* linear regression: ridge (α = 1, intercept free) on standardised columns.

One-hot encoding keeps the :data:`LANDMARKER_MAX_LEVELS` most frequent values of a nominal
attribute (the rest pooled, missing its own level); with more than
:data:`LANDMARKER_MAX_ATTRIBUTES` attributes a random subset of them is used. BLAS runs
single-threaded during the landmarkers (their matrices are small and the machine shared).
Because of the subsample and these approximations, landmarkers agree with OpenML's only
approximately (see the agreement report). With ``landmarkers=False`` their keys are present
with value None.

Undefined values
----------------
No value is ever NaN or infinite: an undefined quality (moments without a numeric attribute,
entropies without a nominal one, ``EquivalentNumberOfAtts`` when no attribute carries
information about the class, a landmarker that cannot be fitted, …) is None. Keys depend only on
the task (:func:`metafeature_names`); class-only qualities are absent for regression.

Cost
----
Counts, moments, entropies and correlations use all rows, vectorised over columns with numpy
(numeric columns are processed one at a time from a column-major copy, so temporaries stay one
column long); landmarkers use the subsample. A
100 000 × 100 mixed table takes well under a second (``benchmarks/metafeature_speed.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from automl_meta.errors import UsageError

__all__ = [
    "COMPUTED_ON",
    "LANDMARKER_FOLDS",
    "LANDMARKER_MAX_ATTRIBUTES",
    "LANDMARKER_MAX_LEVELS",
    "LANDMARKER_MAX_ROWS",
    "TASKS",
    "compute_metafeatures",
    "metafeature_names",
]

TASKS = ("binary", "multiclass", "regression")
#: What the meta-features are computed on, as a metabase's manifest records it.
COMPUTED_ON = ("the table as read (every feature column, constant, ID-like and text ones "
               "included, datetime columns not expanded, and the target; rows with a "
               "target), as OpenML computes its qualities and as fit computes them")
#: Landmarkers are cross-validated on a subsample of at most this many rows.
LANDMARKER_MAX_ROWS = 2000
#: Folds of the landmarkers' cross-validation (OpenML uses 2).
LANDMARKER_FOLDS = 2
#: Most frequent values of a nominal attribute one-hot encoded for the landmarkers.
LANDMARKER_MAX_LEVELS = 10
#: Landmarkers use a random subset of the attributes beyond this many.
LANDMARKER_MAX_ATTRIBUTES = 300
_VAR_EPS = 1e-19  # variances below this count as zero (correlations)

_AGGS = ("Mean", "Min", "Max", "Quartile1", "Quartile2", "Quartile3")
_SIMPLE = [
    "NumberOfInstances", "NumberOfFeatures", "NumberOfNumericFeatures",
    "NumberOfSymbolicFeatures", "NumberOfBinaryFeatures", "PercentageOfNumericFeatures",
    "PercentageOfSymbolicFeatures", "PercentageOfBinaryFeatures", "NumberOfMissingValues",
    "PercentageOfMissingValues", "NumberOfInstancesWithMissingValues",
    "PercentageOfInstancesWithMissingValues", "Dimensionality",
    "MaxNominalAttDistinctValues", "MinNominalAttDistinctValues",
    "MeanNominalAttDistinctValues", "StdvNominalAttDistinctValues",
]
_CLASS_SIMPLE = [
    "NumberOfClasses", "MajorityClassSize", "MinorityClassSize", "MajorityClassPercentage",
    "MinorityClassPercentage", "AutoCorrelation",
]
_STAT_KINDS = ("Means", "StdDev", "Kurtosis", "Skewness")
_STATISTICAL = [f"{a}{k}OfNumericAtts" for k in _STAT_KINDS for a in _AGGS]
_ATT_ENTROPY = [f"{a}AttributeEntropy" for a in _AGGS]
_CLASS_INFO = (["ClassEntropy"] + [f"{a}MutualInformation" for a in _AGGS]
               + ["EquivalentNumberOfAtts", "MeanNoiseToSignalRatio"])
_REGRESSION_STATS = (["TargetSkewness", "TargetKurtosis"]
                     + [f"{a}AbsFeatureTargetCorrelation" for a in _AGGS])
_CLASS_LANDMARKERS = ("DecisionStump", "NaiveBayes", "kNN1N", "LDA")
_CLASS_LANDMARK_NAMES = [f"{lm}{m}" for lm in _CLASS_LANDMARKERS
                         for m in ("AUC", "ErrRate", "Kappa")]
_REGRESSION_LANDMARK_NAMES = ["DecisionStumpR2", "LinearRegressionR2", "kNN1NR2"]


def metafeature_names(task: str) -> list[str]:
    """Names of the qualities :func:`compute_metafeatures` returns for a task, in its order.

    Parameters
    ----------
    task : {"binary", "multiclass", "regression"}
        The learning task.

    Returns
    -------
    list of str
        The keys, in a stable order. Classification and regression share the simple,
        statistical and attribute-entropy qualities; class qualities, mutual information and
        the classification landmarkers exist only for classification, the target statistics
        and regression landmarkers only for regression.

    Raises
    ------
    UsageError
        For an unknown task.
    """
    _check_task(task)
    if task == "regression":
        return (_SIMPLE + _STATISTICAL + _ATT_ENTROPY + _REGRESSION_STATS
                + _REGRESSION_LANDMARK_NAMES)
    return (_SIMPLE + _CLASS_SIMPLE + _STATISTICAL + _ATT_ENTROPY + _CLASS_INFO
            + _CLASS_LANDMARK_NAMES)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


# ------------------------------------------------------------------------ column typing
@dataclass
class _Nominal:
    """A nominal attribute: integer codes (-1 = missing) and its number of declared values."""

    codes: np.ndarray
    n_declared: int


def _nominal_from_values(s: pd.Series) -> _Nominal:
    """Encode a non-categorical column as nominal; declared values sorted by string form."""
    try:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
    except TypeError:  # unhashable values (lists, dicts, …): their text is the value
        codes, uniques = pd.factorize(s.map(str).where(s.notna(), None), use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    if len(uniques) > 1:
        order = np.argsort(np.array([str(u) for u in uniques], dtype=object), kind="stable")
        remap = np.empty(len(uniques), dtype=np.int64)
        remap[order] = np.arange(len(uniques))
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    return _Nominal(codes, len(uniques))


def _as_float(s: pd.Series) -> np.ndarray | None:
    """The column as float64 with NaN for missing, or None when it is not numeric-like."""
    dtype = s.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return None
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        if getattr(dtype, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        unit = "datetime64[ms]" if pd.api.types.is_datetime64_any_dtype(s.dtype) \
            else "timedelta64[ms]"
        stamps = s.to_numpy(dtype=unit)  # milliseconds, as Weka's DATE attributes
        out = stamps.astype(np.int64).astype(np.float64)
        out[np.isnat(stamps)] = np.nan
        return out
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        try:
            return s.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            return None
    return None


def _split_columns(X: pd.DataFrame) -> tuple[np.ndarray, list[_Nominal]]:
    """Numeric block (n × p float64, column-major, NaN missing) and the nominal attributes."""
    numeric: list[np.ndarray] = []
    nominal: list[_Nominal] = []
    for i in range(X.shape[1]):
        s = X.iloc[:, i]
        if isinstance(s.dtype, pd.CategoricalDtype):
            nominal.append(_Nominal(np.asarray(s.cat.codes, dtype=np.int64),
                                    len(s.cat.categories)))
            continue
        if pd.api.types.is_bool_dtype(s.dtype):
            codes = np.where(s.isna().to_numpy(), -1,
                             s.fillna(False).to_numpy(dtype=bool).astype(np.int64))
            nominal.append(_Nominal(codes, 2))
            continue
        values = _as_float(s)
        if values is None:
            nominal.append(_nominal_from_values(s))
        else:
            numeric.append(values)
    # column-major: every per-column pass below reads contiguous memory
    num = np.empty((X.shape[0], len(numeric)), dtype=np.float64, order="F")
    for j, values in enumerate(numeric):
        num[:, j] = values
    num[np.isinf(num)] = np.nan  # ARFF has no infinities: treated as missing (a copy)
    return num, nominal


# ------------------------------------------------------------------------- statistics
def _quantiles(values: np.ndarray) -> list[float]:
    """Commons Math's default (legacy) 25/50/75 % percentiles, i.e. numpy's ``weibull``."""
    return [float(q) for q in np.quantile(values, [0.25, 0.5, 0.75], method="weibull")]


def _summary(prefix_names: list[str], values: list[float] | np.ndarray) -> dict[str, float | None]:
    """Mean/Min/Max/Quartile1-3 of a list, one name per aggregate (None when empty)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return dict.fromkeys(prefix_names)
    vals = [float(arr.mean()), float(arr.min()), float(arr.max()), *_quantiles(arr)]
    return dict(zip(prefix_names, vals, strict=True))


def _moments(block: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-column count, mean, sample std, skewness, excess kurtosis (Commons Math formulas).

    Missing values (NaN) are left out. Undefined entries are NaN: skewness of fewer than 3
    values, kurtosis of fewer than 4, and both for a constant column (0 / 0 in Commons Math's
    ``evaluate``, which OpenML then skips). Columns are processed one at a time (fast on a
    column-major block; temporaries stay one column long).
    """
    p = block.shape[1]
    n, mean, m2, m3, m4 = (np.zeros(p) for _ in range(5))
    for j in range(p):
        x = block[:, j]
        missing = np.isnan(x)
        if missing.any():
            x = x[~missing]
        n[j] = x.size
        if x.size == 0:
            mean[j] = np.nan
            continue
        mu = x.sum() / x.size
        d = x - mu
        # Commons Math's Mean adds a correction pass; it makes a constant column's deviations
        # exactly zero, so its skewness / kurtosis come out undefined as in OpenML
        correction = d.sum() / x.size
        mean[j] = mu + correction
        d -= correction
        d2 = d * d
        m2[j] = d2.sum()
        m3[j] = (d2 * d).sum()  # ufuncs, not BLAS: no thread pool to wake on a busy machine
        m4[j] = (d2 * d2).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        var = m2 / (n - 1)
        std = np.where(n > 1, np.sqrt(var), np.where(n == 1, 0.0, np.nan))
        skew = n * m3 / ((n - 1) * (n - 2) * np.sqrt(var) * var)
        kurt = (n * (n + 1) * m4 / ((n - 1) * (n - 2) * (n - 3) * var * var)
                - 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))
    undefined = m2 <= 0
    skew = np.where((n < 3) | undefined, np.nan, skew)
    kurt = np.where((n < 4) | undefined, np.nan, kurt)
    return n, mean, std, skew, kurt


def _statistical(num: np.ndarray, target: np.ndarray | None) -> dict[str, float | None]:
    """The ``…OfNumericAtts`` family over the numeric attributes (and a numeric target)."""
    if num.shape[1] == 0 and target is None:
        return dict.fromkeys(_STATISTICAL)
    per_column = _moments(num)
    if target is not None:  # OpenML loops over all attributes, the numeric target included
        per_column = tuple(np.concatenate([a, b]) for a, b in zip(
            per_column, _moments(target.reshape(-1, 1)), strict=True))
    _, mean, std, skew, kurt = per_column
    out: dict[str, float | None] = {}
    for kind, values in zip(_STAT_KINDS, (mean, std, kurt, skew), strict=True):
        out.update(_summary([f"{a}{kind}OfNumericAtts" for a in _AGGS], values))
    return out


def _entropy_bits(counts: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in bits of count vectors along ``axis`` (0 for an empty vector)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(counts > 0, counts / total, 1.0)
        h = -(np.where(counts > 0, p * np.log2(p), 0.0)).sum(axis=axis)
    return np.where(np.squeeze(total, axis=axis) > 0, h, 0.0)


def _weka_codes(att: _Nominal) -> tuple[np.ndarray, int]:
    """Codes with missing mapped to value 0, as Weka's ``(int) NaN`` does in OpenML's code."""
    return np.maximum(att.codes, 0), max(att.n_declared, 1)


def _attribute_entropies(nominal: list[_Nominal]) -> list[float]:
    out = []
    for att in nominal:
        codes, k = _weka_codes(att)
        out.append(float(_entropy_bits(np.bincount(codes, minlength=k))))
    return out


def _mutual_informations(nominal: list[_Nominal], y_codes: np.ndarray,
                         n_classes: int) -> list[float]:
    """Information gain of the class for each nominal attribute, rounded to 1e-14 (OpenML)."""
    class_entropy = float(_entropy_bits(np.bincount(y_codes, minlength=n_classes)))
    n = len(y_codes)
    out = []
    for att in nominal:
        codes, k = _weka_codes(att)
        joint = codes * n_classes + y_codes
        if k * n_classes <= 4 * n + 1024:  # dense contingency table
            table = np.bincount(joint, minlength=k * n_classes).reshape(k, n_classes)
            sizes = table.sum(axis=1)
            conditional = float((sizes / n * _entropy_bits(table, axis=1)).sum())
        else:  # many values × many classes: only the occupied cells
            cells, cell_counts = np.unique(joint, return_counts=True)
            sizes = np.bincount(codes, minlength=k)[cells // n_classes]
            conditional = float(-(cell_counts / n * np.log2(cell_counts / sizes)).sum())
        gain = class_entropy - conditional
        out.append(float(np.floor(gain * 1e14 + 0.5) / 1e14))
    return out


def _information(nominal: list[_Nominal], y_codes: np.ndarray | None,
                 n_classes: int) -> dict[str, float | None]:
    ent = _attribute_entropies(nominal)
    out = _summary(_ATT_ENTROPY, ent)
    if y_codes is None:
        return out
    class_entropy = float(_entropy_bits(np.bincount(y_codes, minlength=n_classes)))
    mi = _mutual_informations(nominal, y_codes, n_classes)
    out["ClassEntropy"] = class_entropy
    out.update(_summary([f"{a}MutualInformation" for a in _AGGS], mi))
    mean_mi = out["MeanMutualInformation"]
    mean_ent = out["MeanAttributeEntropy"]
    if mean_mi is not None and mean_mi > 0:
        out["EquivalentNumberOfAtts"] = class_entropy / mean_mi
        out["MeanNoiseToSignalRatio"] = (None if mean_ent is None
                                         else (mean_ent - mean_mi) / mean_mi)
    else:
        out["EquivalentNumberOfAtts"] = None
        out["MeanNoiseToSignalRatio"] = None
    return out


def _commons_moment(x: np.ndarray) -> tuple[float | None, float | None]:
    """Skewness and excess kurtosis of one vector (Commons Math formulas)."""
    _, _, _, skew, kurt = _moments(x.reshape(-1, 1))
    return _finite(skew[0]), _finite(kurt[0])


def _feature_target_correlations(num: np.ndarray, nominal: list[_Nominal],
                                 y: np.ndarray) -> list[float]:
    """|Pearson r| of numeric features and correlation ratio η of nominal ones with y."""
    out: list[float] = []
    for j in range(num.shape[1]):
        x = num[:, j]
        keep = ~np.isnan(x)
        xx, yy = (x, y) if keep.all() else (x[keep], y[keep])
        if xx.size < 2:
            continue
        dx, dy = xx - xx.mean(), yy - yy.mean()
        sxx, syy = float((dx * dx).sum()), float((dy * dy).sum())
        if sxx <= _VAR_EPS * xx.size or syy <= _VAR_EPS * xx.size:
            continue  # a constant feature (or target on these rows) has no correlation
        out.append(min(abs(float((dx * dy).sum())) / np.sqrt(sxx * syy), 1.0))
    for att in nominal:
        keep = att.codes >= 0
        codes, yy = att.codes[keep], y[keep]
        if len(yy) < 2:
            continue
        dev = yy - yy.mean()
        total = float((dev * dev).sum())
        counts = np.bincount(codes)
        if total <= _VAR_EPS * len(yy) or np.count_nonzero(counts) < 2:
            continue
        sums = np.bincount(codes, weights=dev)
        nz = counts > 0
        between = float((sums[nz] ** 2 / counts[nz]).sum())
        out.append(float(np.sqrt(min(max(between / total, 0.0), 1.0))))
    return out


# ------------------------------------------------------------------------- landmarkers
def _subsample(n: int, y_codes: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a (class-stratified) random subsample of at most LANDMARKER_MAX_ROWS."""
    if n <= LANDMARKER_MAX_ROWS:
        return np.arange(n)
    if y_codes is None:
        return np.sort(rng.choice(n, LANDMARKER_MAX_ROWS, replace=False))
    frac = LANDMARKER_MAX_ROWS / n
    picked = []
    order = np.argsort(y_codes, kind="stable")
    bounds = np.flatnonzero(np.diff(y_codes[order])) + 1
    for members in np.split(order, bounds):
        take = min(len(members), max(2, int(round(len(members) * frac))))
        picked.append(rng.choice(members, take, replace=False))
    idx = np.concatenate(picked)
    if len(idx) > LANDMARKER_MAX_ROWS:  # rounding / the two-per-class floor overshot
        idx = rng.choice(idx, LANDMARKER_MAX_ROWS, replace=False)
    return np.sort(idx)


@dataclass
class _Design:
    """Landmarker inputs on the subsample."""

    raw_num: np.ndarray  # numeric, NaN kept (naive Bayes)
    raw_nominal: list[tuple[np.ndarray, int]]  # codes (-1 missing), declared values (NB)
    num: np.ndarray  # numeric, mean-imputed, constant columns dropped
    levels: list[np.ndarray]  # per nominal attribute: level codes, 0..L (L = missing)
    n_levels: list[int]

    def onehot(self) -> np.ndarray:
        n = self.num.shape[0]
        blocks = []
        for codes, k in zip(self.levels, self.n_levels, strict=True):
            if k > 1:
                m = np.zeros((n, k))
                m[np.arange(n), codes] = 1.0
                blocks.append(m[:, m.std(axis=0) > 0])
        return np.hstack(blocks) if blocks else np.empty((n, 0))


def _design(num: np.ndarray, nominal: list[_Nominal], idx: np.ndarray,
            rng: np.random.Generator) -> _Design:
    """Landmarker inputs on the subsample rows ``idx``.

    Beyond LANDMARKER_MAX_ATTRIBUTES attributes a random subset of them is used.
    """
    p = num.shape[1]
    if p + len(nominal) > LANDMARKER_MAX_ATTRIBUTES:
        chosen = np.sort(rng.choice(p + len(nominal), LANDMARKER_MAX_ATTRIBUTES,
                                    replace=False))
        nominal = [nominal[i - p] for i in chosen[chosen >= p]]
        num = num[:, chosen[chosen < p]]
    raw = num[idx]
    keep = ~np.all(np.isnan(raw), axis=0)
    raw = raw[:, keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(raw, axis=0) if raw.shape[1] else np.empty(0)
    filled = np.where(np.isnan(raw), means, raw)
    varying = filled.std(axis=0) > 0 if raw.shape[1] else np.zeros(0, dtype=bool)
    levels, n_levels = [], []
    for att in nominal:
        codes = att.codes[idx]
        present = codes[codes >= 0]
        counts = np.bincount(present, minlength=max(att.n_declared, 1))
        top = np.argsort(-counts, kind="stable")[:LANDMARKER_MAX_LEVELS]
        top = top[counts[top] > 0]
        lut = np.full(len(counts), len(top), dtype=np.int64)  # "other"
        lut[top] = np.arange(len(top))
        other = bool(np.any(lut[present] == len(top))) if present.size else False
        missing_level = len(top) + int(other)
        mapped = np.where(codes >= 0, lut[np.maximum(codes, 0)], missing_level)
        levels.append(mapped)
        n_levels.append(missing_level + 1)
    raw_nominal = [(att.codes[idx], att.n_declared) for att in nominal]
    return _Design(raw, raw_nominal, filled[:, varying], levels, n_levels)


def _folds(n: int, y_codes: np.ndarray | None,
           rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled LANDMARKER_FOLDS-fold split, class-stratified when ``y_codes`` is given.

    Rows are shuffled, grouped by class, and dealt to the folds in turn, so every class is
    spread as evenly as its size allows (Weka's stratified cross-validation does the same).
    """
    order = rng.permutation(n)
    if y_codes is not None:
        order = order[np.argsort(y_codes[order], kind="stable")]
    fold = np.empty(n, dtype=np.int64)
    fold[order] = np.arange(n) % LANDMARKER_FOLDS
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f))
            for f in range(LANDMARKER_FOLDS)]


def _xlogx(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a * np.log(np.where(a > 0, a, 1.0))


class _Stump:
    """Depth-1 decision tree: the best single threshold split over all columns.

    Classification minimises the children's entropy (Weka's DecisionStump criterion) and
    predicts the leaf's class frequencies; regression minimises the squared error and predicts
    the leaf's mean. Without any possible split it predicts the training prior / mean.
    """

    def __init__(self, n_classes: int) -> None:
        self.k = n_classes  # 0 for regression

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Stump:
        n, p = x.shape
        target = np.eye(self.k)[y] if self.k else y.reshape(-1, 1).astype(np.float64)
        total = target.sum(axis=0)
        best_score, self.col, self.threshold = np.inf, -1, 0.0
        if n >= 2:
            nl = np.arange(1, n, dtype=np.float64)[:, None]
            nr = n - nl
            chunk = max(1, 2_000_000 // (n * target.shape[1]))  # bounds the cumulative sums
            for j0 in range(0, p, chunk):
                xs = x[:, j0:j0 + chunk]
                order = np.argsort(xs, axis=0, kind="stable")
                v = np.take_along_axis(xs, order, axis=0)
                left = np.cumsum(target[order], axis=0)[:-1]  # (n - 1, columns, outputs)
                if self.k:
                    score = (_xlogx(nl) - _xlogx(left).sum(axis=2)
                             + _xlogx(nr) - _xlogx(total - left).sum(axis=2))
                else:
                    sl = left[..., 0]
                    score = -(sl * sl / nl + (total[0] - sl) ** 2 / nr)
                score = np.where(v[1:] > v[:-1], score, np.inf)
                i, c = np.unravel_index(np.argmin(score), score.shape)
                if score[i, c] < best_score:
                    best_score, self.col = score[i, c], j0 + c
                    self.threshold = v[i, c] + (v[i + 1, c] - v[i, c]) / 2
        if self.col < 0:
            self.leaves = np.vstack([total / n] * 2)
        else:
            go_left = x[:, self.col] <= self.threshold
            self.leaves = np.vstack([target[go_left].mean(axis=0), target[~go_left].mean(axis=0)])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class frequencies (n × k) or means (n × 1) of the leaf each row falls in."""
        if self.col < 0:
            return np.repeat(self.leaves[:1], len(x), axis=0)
        return self.leaves[np.where(x[:, self.col] <= self.threshold, 0, 1)]


def _nearest(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Index of each test row's nearest training row (Euclidean; ties: the first)."""
    d = ((test * test).sum(axis=1)[:, None] - 2.0 * test @ train.T
         + (train * train).sum(axis=1)[None, :])
    return d.argmin(axis=1)


def _ledoit_wolf(xc: np.ndarray) -> np.ndarray:
    """Ledoit–Wolf shrunk covariance of centred rows (the formula scikit-learn uses)."""
    n, p = xc.shape
    emp = xc.T @ xc / n
    mu = np.trace(emp) / p
    x2 = xc * xc
    beta_ = float((x2.sum(axis=1) ** 2).sum())  # sum of the entries of x2ᵀ x2
    delta_ = float((emp * emp).sum())
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * np.trace(emp) + p * mu * mu) / p
    shrinkage = 0.0 if delta <= 0 else min(beta, delta) / delta
    return (1.0 - shrinkage) * emp + shrinkage * mu * np.eye(p)


class _LDA:
    """Linear discriminant analysis with a Ledoit–Wolf shrunk pooled covariance."""

    def __init__(self, n_classes: int) -> None:
        self.k = n_classes

    def fit(self, x: np.ndarray, y: np.ndarray) -> _LDA:
        counts = np.bincount(y, minlength=self.k).astype(np.float64)
        present = counts > 0
        means = np.zeros((self.k, x.shape[1]))
        np.add.at(means, y, x)
        means[present] /= counts[present, None]
        cov = _ledoit_wolf(x - means[y])
        coef = np.linalg.lstsq(cov, means.T, rcond=None)[0].T  # (k, p)
        with np.errstate(divide="ignore"):
            log_prior = np.log(counts / counts.sum())
        self.coef = coef
        self.intercept = np.where(present, -0.5 * (means * coef).sum(axis=1) + log_prior,
                                  -np.inf)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        scores = x @ self.coef.T + self.intercept
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        return p / p.sum(axis=1, keepdims=True)


def _erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (
        0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (
            1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    ans = t * np.exp(poly)
    return np.where(x >= 0, ans, 2.0 - ans)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF computed as Weka's ``Statistics.normalProbability`` does."""
    upper = 0.5 * _erfc(np.abs(z) / np.sqrt(2.0))
    return np.where(z > 0, 1.0 - upper, upper)


class _NaiveBayes:
    """Weka's NaiveBayes (default options), re-implemented.

    Numeric attributes: a normal estimator per class on values rounded to the attribute's
    precision (mean gap between its distinct training values), population standard deviation
    floored at precision / 6, and the probability of the precision-wide interval around the
    rounded value. Nominal attributes and the class prior: Laplace-smoothed frequencies over the
    declared values. Missing values are ignored; every factor is floored at 1e-75 as in Weka.
    """

    def __init__(self, n_classes: int) -> None:
        self.k = n_classes

    def fit(self, design: _Design, rows: np.ndarray, y: np.ndarray) -> _NaiveBayes:
        k = self.k
        counts = np.bincount(y, minlength=k).astype(np.float64)
        self.log_prior = np.log((counts + 1.0) / (counts.sum() + k))
        x = design.raw_num[rows]
        self.precision = np.array([_weka_precision(x[:, j]) for j in range(x.shape[1])])
        valid = ~np.isnan(x)
        xs = np.where(valid, np.rint(x / self.precision) * self.precision, 0.0)
        onehot_y = np.eye(k)[y]  # (n, k)
        w = onehot_y.T @ valid  # (k, p)
        sums = onehot_y.T @ xs
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(w > 0, sums / w, 0.0)
            std = np.sqrt(np.abs(onehot_y.T @ (xs * xs) - mean * sums) / w)
        floor = self.precision / 6.0
        self.mean = mean
        self.std = np.where((w > 0) & (std > 1e-10), np.maximum(std, floor), floor)
        self.nominal_logp = []
        for codes, n_values in design.raw_nominal:
            c = codes[rows]
            keep = c >= 0
            table = np.zeros((k, max(n_values, 1)))
            np.add.at(table, (y[keep], c[keep]), 1.0)
            self.nominal_logp.append(np.log((table + 1.0)
                                            / (table.sum(axis=1, keepdims=True) + n_values)))
        return self

    def predict(self, design: _Design, rows: np.ndarray) -> np.ndarray:
        x = design.raw_num[rows]
        logp = np.tile(self.log_prior, (len(rows), 1))
        if x.shape[1]:
            half = self.precision / 2.0
            step = max(1, 1_000_000 // (self.k * x.shape[1]))  # bounds the (rows, k, p) block
            for r0 in range(0, len(rows), step):
                xr = x[r0:r0 + step]
                valid = ~np.isnan(xr)
                xr = np.where(valid, np.rint(xr / self.precision) * self.precision, 0.0)
                centred = xr[:, None, :] - self.mean[None]
                prob = (_normal_cdf((centred + half) / self.std[None])
                        - _normal_cdf((centred - half) / self.std[None]))
                ll = np.log(np.maximum(prob, 1e-75))
                logp[r0:r0 + step] += np.where(valid[:, None, :], ll, 0.0).sum(axis=2)
        for (codes, _), table in zip(design.raw_nominal, self.nominal_logp, strict=True):
            c = codes[rows]
            keep = c >= 0
            logp[keep] += np.maximum(table[:, c[keep]].T, np.log(1e-75))
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        return p / p.sum(axis=1, keepdims=True)


def _weka_precision(x: np.ndarray) -> float:
    """Weka NaiveBayes' numeric precision: mean gap between consecutive distinct values."""
    v = np.unique(x[~np.isnan(x)])
    if v.size < 2:
        return 0.01
    return float((v[-1] - v[0]) / (v.size - 1))


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def _weighted_auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    """Class-frequency-weighted one-vs-rest ROC AUC (Weka's ``weightedAreaUnderROC``)."""
    total, weight = 0.0, 0
    n = len(y)
    for c in range(proba.shape[1]):
        pos = y == c
        n_pos = int(pos.sum())
        if n_pos == 0 or n_pos == n:
            continue
        ranks = _average_ranks(proba[:, c])
        auc = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos))
        total += n_pos * auc
        weight += n_pos
    return total / weight if weight else None


def _kappa(y: np.ndarray, pred: np.ndarray, k: int) -> float | None:
    conf = np.bincount(y * k + pred, minlength=k * k).reshape(k, k).astype(np.float64)
    n = conf.sum()
    po = np.trace(conf) / n
    pe = float((conf.sum(axis=0) * conf.sum(axis=1)).sum() / (n * n))
    return None if pe >= 1.0 else float((po - pe) / (1.0 - pe))


def _scaled_for_knn(design: _Design) -> np.ndarray:
    """Min–max scaled numeric columns; one-hot nominal scaled so a mismatch costs 1 (IBk)."""
    num = design.num
    if num.shape[1]:
        lo, hi = num.min(axis=0), num.max(axis=0)
        num = (num - lo) / np.where(hi > lo, hi - lo, 1.0)
    return _nonempty(np.hstack([num, design.onehot() / np.sqrt(2.0)]))


def _standardised(design: _Design) -> np.ndarray:
    x = np.hstack([design.num, design.onehot()])
    if x.shape[1]:
        sd = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return _nonempty(x)


def _nonempty(x: np.ndarray) -> np.ndarray:
    """A design with no column gets one constant column (the learners then predict priors)."""
    return x if x.shape[1] else np.zeros((x.shape[0], 1))


def _ridge_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                   alpha: float = 1.0) -> np.ndarray:
    """Ridge regression (intercept not penalised) fitted and applied."""
    mx, my = x_train.mean(axis=0), y_train.mean()
    xc = x_train - mx
    gram = xc.T @ xc + alpha * np.eye(x_train.shape[1])
    coef = np.linalg.lstsq(gram, xc.T @ (y_train - my), rcond=None)[0]
    return (x_test - mx) @ coef + my


FoldFit = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _classification_landmarkers(num: np.ndarray, nominal: list[_Nominal],
                                y_codes: np.ndarray,
                                random_state: int) -> dict[str, float | None]:
    out: dict[str, float | None] = dict.fromkeys(_CLASS_LANDMARK_NAMES)
    rng = np.random.default_rng(random_state)
    idx = _subsample(len(y_codes), y_codes, rng)
    _, y = np.unique(y_codes[idx], return_inverse=True)
    k = int(y.max()) + 1 if len(y) else 0
    if k < 2 or len(y) < 2 * LANDMARKER_FOLDS:
        return out
    design = _design(num, nominal, idx, rng)
    folds = _folds(len(y), y, rng)
    dense = _nonempty(np.hstack([design.num, design.onehot()]))
    knn_x, lda_x = _scaled_for_knn(design), _standardised(design)
    eye = np.eye(k)
    learners: dict[str, FoldFit] = {
        "DecisionStump": lambda tr, te: _Stump(k).fit(dense[tr], y[tr]).predict(dense[te]),
        "NaiveBayes": lambda tr, te: _NaiveBayes(k).fit(design, tr, y[tr]).predict(design, te),
        "kNN1N": lambda tr, te: eye[y[tr][_nearest(knn_x[tr], knn_x[te])]],
        "LDA": lambda tr, te: _LDA(k).fit(lda_x[tr], y[tr]).predict(lda_x[te]),
    }
    for name, fit_predict in learners.items():
        proba = np.zeros((len(y), k))
        try:
            with np.errstate(all="ignore"):
                for train, test in folds:
                    proba[test] = fit_predict(train, test)
        except (ValueError, np.linalg.LinAlgError):  # e.g. SVD that does not converge
            continue
        if not np.all(np.isfinite(proba)):
            continue
        pred = proba.argmax(axis=1)
        out[f"{name}AUC"] = _weighted_auc(y, proba)
        out[f"{name}ErrRate"] = float(np.mean(pred != y))
        out[f"{name}Kappa"] = _kappa(y, pred, k)
    return out


def _regression_landmarkers(num: np.ndarray, nominal: list[_Nominal], target: np.ndarray,
                            random_state: int) -> dict[str, float | None]:
    out: dict[str, float | None] = dict.fromkeys(_REGRESSION_LANDMARK_NAMES)
    rng = np.random.default_rng(random_state)
    idx = _subsample(len(target), None, rng)
    y = target[idx]
    if len(y) < 2 * LANDMARKER_FOLDS:
        return out
    sst = float(((y - y.mean()) ** 2).sum())
    if sst <= _VAR_EPS * len(y):
        return out
    design = _design(num, nominal, idx, rng)
    folds = _folds(len(y), None, rng)
    dense = _nonempty(np.hstack([design.num, design.onehot()]))
    knn_x, lin_x = _scaled_for_knn(design), _standardised(design)
    learners: dict[str, FoldFit] = {
        "DecisionStumpR2": lambda tr, te: _Stump(0).fit(dense[tr], y[tr]).predict(dense[te])[:, 0],
        "LinearRegressionR2": lambda tr, te: _ridge_predict(lin_x[tr], y[tr], lin_x[te]),
        "kNN1NR2": lambda tr, te: y[tr][_nearest(knn_x[tr], knn_x[te])],
    }
    for name, fit_predict in learners.items():
        pred = np.empty(len(y))
        try:
            with np.errstate(all="ignore"):
                for train, test in folds:
                    pred[test] = fit_predict(train, test)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if np.all(np.isfinite(pred)):
            out[name] = 1.0 - float(((y - pred) ** 2).sum()) / sst
    return out


# ------------------------------------------------------------------------------- main
def _finite(v: object) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _pct(part: float, whole: float) -> float | None:
    return part / whole * 100.0 if whole > 0 else None


def _encode_target(y: pd.Series) -> tuple[np.ndarray, int]:
    """Codes of a class label (observed classes, 0..K-1) and its number of declared values."""
    if isinstance(y.dtype, pd.CategoricalDtype):
        declared = len(y.cat.categories)
        _, codes = np.unique(np.asarray(y.cat.codes, dtype=np.int64), return_inverse=True)
        return codes.astype(np.int64), declared
    codes, uniques = pd.factorize(y)
    return np.asarray(codes, dtype=np.int64), len(uniques)


def compute_metafeatures(X: pd.DataFrame, y: pd.Series, task: str, *, random_state: int = 0,
                         landmarkers: bool = True) -> dict[str, float | None]:
    """Compute the dataset's meta-features under OpenML's quality names.

    Parameters
    ----------
    X : pandas.DataFrame
        The features, raw (as OpenML sees the data: no columns dropped), e.g. the first
        item of :meth:`automl_meta.data.Dataset.as_read`. Column kinds are described in the
        module docstring (numeric, bool, category, object/string, datetime).
    y : pandas.Series
        The target, aligned with ``X``, without missing values: class labels (any hashable,
        or a categorical whose declared categories count as the target's values) for
        ``"binary"`` / ``"multiclass"``, numbers for ``"regression"``.
    task : {"binary", "multiclass", "regression"}
        The learning task; it decides which qualities exist (see :func:`metafeature_names`).
    random_state : int, default 0
        Seed of the landmarkers' subsample and folds (nothing else is random).
    landmarkers : bool, default True
        Compute the landmarkers (the only part that fits models). When False their keys are
        present with value None.

    Returns
    -------
    dict of str to float or None
        Exactly the keys of ``metafeature_names(task)``, in that order. Counts are floats
        with integral values. Undefined qualities are None; no value is NaN or infinite.

    Raises
    ------
    UsageError
        For an unknown task, ``X`` and ``y`` of different lengths, missing target values or
        a non-numeric regression target.
    """
    # extreme values (e.g. 1e308) overflow in moments / correlations: the results are
    # already reported as None or finite, so the warnings are noise
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _compute_metafeatures(X, y, task, random_state=random_state,
                                     landmarkers=landmarkers)


def _compute_metafeatures(X: pd.DataFrame, y: pd.Series, task: str, *, random_state: int,
                          landmarkers: bool) -> dict[str, float | None]:
    _check_task(task)
    if not isinstance(X, pd.DataFrame):
        raise UsageError("X must be a pandas DataFrame")
    y = pd.Series(y) if not isinstance(y, pd.Series) else y
    if len(X) != len(y):
        raise UsageError(f"X has {len(X)} rows but y has {len(y)}")
    if y.isna().any():
        raise UsageError("y has missing values; drop those rows first")
    n = len(X)
    num, nominal = _split_columns(X)
    out: dict[str, float | None] = {}

    # --- the target as an attribute
    classification = task != "regression"
    if classification:
        y_codes, y_declared = _encode_target(y)
        n_classes = int(y_codes.max()) + 1 if n else 0
        target_num = None
    else:
        try:
            target_num = pd.to_numeric(y).to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise UsageError("a regression target must be numeric") from None
        y_codes, y_declared, n_classes = None, 0, 0

    # --- simple
    n_features = X.shape[1] + 1
    n_numeric = num.shape[1] + (0 if classification else 1)
    n_symbolic = len(nominal) + (1 if classification else 0)
    n_binary = sum(att.n_declared == 2 for att in nominal) + int(classification
                                                                and y_declared == 2)
    missing_cells = np.isnan(num)
    missing_rows = missing_cells.any(axis=1)
    n_missing = int(missing_cells.sum())
    for att in nominal:
        miss = att.codes < 0
        n_missing += int(miss.sum())
        missing_rows |= miss
    out.update({
        "NumberOfInstances": float(n),
        "NumberOfFeatures": float(n_features),
        "NumberOfNumericFeatures": float(n_numeric),
        "NumberOfSymbolicFeatures": float(n_symbolic),
        "NumberOfBinaryFeatures": float(n_binary),
        "PercentageOfNumericFeatures": _pct(n_numeric, n_features),
        "PercentageOfSymbolicFeatures": _pct(n_symbolic, n_features),
        "PercentageOfBinaryFeatures": _pct(n_binary, n_features),
        "NumberOfMissingValues": float(n_missing),
        "PercentageOfMissingValues": _pct(n_missing, n_features * n),
        "NumberOfInstancesWithMissingValues": float(missing_rows.sum()),
        "PercentageOfInstancesWithMissingValues": _pct(float(missing_rows.sum()), n),
        "Dimensionality": n_features / n if n else None,
    })
    distinct = [float(np.count_nonzero(np.bincount(att.codes[att.codes >= 0],
                                                   minlength=1))) for att in nominal]
    if classification:
        distinct.append(float(n_classes))
    if distinct:
        arr = np.array(distinct)
        out.update({
            "MaxNominalAttDistinctValues": float(arr.max()),
            "MinNominalAttDistinctValues": float(arr.min()),
            "MeanNominalAttDistinctValues": float(arr.mean()),
            "StdvNominalAttDistinctValues": (float(arr.std(ddof=1)) if arr.size > 1
                                             else 0.0),
        })
    if classification:
        counts = np.bincount(y_codes, minlength=n_classes) if n else np.zeros(0, dtype=int)
        changes = float(np.count_nonzero(np.diff(y_codes))) if n > 1 else 0.0
        out.update({
            "NumberOfClasses": float(n_classes),
            "MajorityClassSize": float(counts.max()) if counts.size else None,
            "MinorityClassSize": float(counts.min()) if counts.size else None,
            "MajorityClassPercentage": _pct(float(counts.max()), n) if counts.size else None,
            "MinorityClassPercentage": _pct(float(counts.min()), n) if counts.size else None,
            "AutoCorrelation": (n - 1 - changes) / (n - 1) if n > 1 else None,
        })

    # --- statistical, information-theoretic
    out.update(_statistical(num, target_num))
    out.update(_information(nominal, y_codes if n else None, n_classes))

    # --- regression target statistics
    if not classification:
        skew, kurt = _commons_moment(target_num)
        out["TargetSkewness"], out["TargetKurtosis"] = skew, kurt
        out.update(_summary([f"{a}AbsFeatureTargetCorrelation" for a in _AGGS],
                            _feature_target_correlations(num, nominal, target_num)))

    # --- landmarkers
    if landmarkers and n:
        from threadpoolctl import threadpool_limits

        # the matrices are small: BLAS / OpenMP thread pools only add contention (measured
        # 5x slower wall clock on a busy 2-core machine), so run them single-threaded
        with threadpool_limits(limits=1):
            if classification:
                out.update(_classification_landmarkers(num, nominal, y_codes, random_state))
            else:
                out.update(_regression_landmarkers(num, nominal, target_num, random_state))

    return {name: _finite(out.get(name)) for name in metafeature_names(task)}
