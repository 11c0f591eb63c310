"""A performance model learned on the metabase: (task meta-features, configuration) → rank.

The metabase holds, for every prior task, every trial of its own search. Pooled over the
tasks of one kind, those trials are training data for a regression model that predicts how
a configuration ranks among a task's trials from the task's meta-features and the
configuration's parameters:

- **inputs**: the task's normalised meta-features (the same vector the neighbour distance
  uses, NaN where a quality is undefined), the configuration's family (a categorical
  column) and its parameters on the space's [0, 1] scale (log scale where the space says so;
  categorical parameters as codes; parameters of other families NaN);
- **target**: the trial's percentile rank among the task's trials (1 = the task's best,
  0 = its worst; failed trials count as the worst);
- **model**: scikit-learn's ``HistGradientBoostingRegressor`` (handles the NaNs natively).

The warm-start strategy ``"learned"`` (:mod:`automl_meta.meta.warmstart.learned`) scores
the best configurations of every prior task with it and suggests the highest predicted
first. It learns which meta-features matter for which family and setting (an SVM's ``C``
on wide data, a forest on many rows, ...) from the metabase itself, instead of relying on
one hand-weighted distance.

Fitting the model takes about a second, which a short budget cannot spare, so a metabase
carries it fitted (:func:`store_surrogates`: ``surrogate-<kind>.npz`` beside the data
files, listed in the manifest with its checksum, the scikit-learn version and a digest of
the data it was fitted on). The file holds the fitted trees as plain arrays
(:class:`StoredTrees`): numpy reads them without unpickling anything, and predicting needs
no more of scikit-learn than its tree evaluator — no model-file loader, whose import alone
takes about a second of a short budget. :func:`stored_surrogate` loads it when it is
current, and says why not otherwise; the warm start then fits one as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl_meta.data import file_sha256
from automl_meta.meta.metabase import (
    Metabase,
    load_metabase,
    write_file,
    write_manifest,
)
from automl_meta.meta.neighbors import fit_normalisation, normalise
from automl_meta.search.space import SearchSpace, task_kind

#: boosting settings (larger models ranked held-out tasks' trials no better in a quick
#: leave-one-task-out check on 30 tasks; that check's script was not kept)
MODEL_PARAMS = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31,
                "min_samples_leaf": 20, "l2_regularization": 1.0}
#: the stored model of each task kind, in the metabase folder
SURROGATE_FILES = {"classification": "surrogate-classification.npz",
                   "regression": "surrogate-regression.npz"}


def _param_columns(space: SearchSpace, kind: str) -> list[tuple[str, str, Any]]:
    """(family, parameter key, Param) for every parameter of the families serving ``kind``."""
    cols = []
    for name, fam in space.families.items():
        if kind not in fam.tasks:
            continue
        for p in fam.params:
            cols.append((name, f"{name}.{p.name}", p))
    return cols


def encode_configs(configs: Sequence[Mapping[str, Any]], space: SearchSpace,
                   kind: str) -> np.ndarray:
    """Configurations as a numeric matrix: family code, then every parameter of the space
    scaled to [0, 1] (categoricals as codes, absent parameters NaN)."""
    families = [n for n, f in space.families.items() if kind in f.tasks]
    fam_code = {n: i for i, n in enumerate(families)}
    cols = _param_columns(space, kind)
    out = np.full((len(configs), 1 + len(cols)), np.nan)
    for i, c in enumerate(configs):
        out[i, 0] = fam_code.get(c.get("family"), np.nan)
        for j, (_, key, p) in enumerate(cols, start=1):
            if key not in c:
                continue
            v = c[key]
            if p.type == "categorical":
                out[i, j] = p.choices.index(v) if v in p.choices else np.nan
                continue
            try:
                x = float(v)
            except (TypeError, ValueError):
                continue
            lo, hi = p.low, p.high
            if p.log:
                lo, hi, x = np.log(lo), np.log(hi), np.log(max(x, 1e-300))
            out[i, j] = (x - lo) / (hi - lo)
    return out


def _categorical_mask(space: SearchSpace, kind: str) -> np.ndarray:
    cols = _param_columns(space, kind)
    return np.array([True] + [p.type == "categorical" for _, _, p in cols])


def trial_ranks(results: pd.DataFrame, greater: Mapping[str, bool]) -> pd.Series:
    """Per-task percentile rank of every trial (1 = best, 0 = worst; failed = 0)."""
    res = results.copy()
    score = pd.to_numeric(res["score"], errors="coerce")
    signed = score.where(np.isfinite(score))
    signed = signed * res["task_id"].map(lambda t: 1.0 if greater.get(t, True) else -1.0)
    signed = signed.where(res["state"] != "FAIL")
    # no score (failed): the lowest rank
    ranks = signed.groupby(res["task_id"]).rank(method="average", na_option="top")
    sizes = res.groupby("task_id")["task_id"].transform("size")
    return ((ranks - 1) / (sizes - 1)).where(sizes > 1, 1.0)


class StoredTrees:
    """The trees of a fitted ``HistGradientBoostingRegressor`` (squared error) as plain
    arrays, and its predictions from them.

    :meth:`arrays` takes them from a fitted model; :meth:`load` reads them from an ``.npz``
    file without unpickling (a file holding anything but numbers is refused). Predictions
    are the model's own: its categorical columns encoded as its encoder does (the codes of
    the categories seen in fit, unknown ones missing) and put first, then its baseline plus
    every tree's value, computed by scikit-learn's tree evaluator (the one the model's
    ``predict`` calls). The node layout belongs to the scikit-learn version that fitted the
    model: a file of another layout is refused, and the manifest records that version so
    the warm start can say so first.

    Parameters
    ----------
    arrays : mapping of str to ndarray
        As :meth:`arrays` returns them.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

        nodes = np.asarray(arrays["nodes"])
        if nodes.dtype != PREDICTOR_RECORD_DTYPE:
            raise ValueError("its trees are laid out for another scikit-learn version")
        node_ends = np.asarray(arrays["node_ends"], dtype=np.int64)
        bitset_ends = np.asarray(arrays["bitset_ends"], dtype=np.int64)
        binned = np.ascontiguousarray(arrays["binned_bitsets"], dtype=np.uint32)
        raw = np.ascontiguousarray(arrays["raw_bitsets"], dtype=np.uint32)
        if len(node_ends) != len(bitset_ends) or (len(node_ends) and (
                node_ends[-1] != len(nodes) or bitset_ends[-1] != len(raw))):
            raise ValueError("its tree offsets do not match its nodes")
        self._trees = [TreePredictor(nodes[n0:n1], binned[b0:b1], raw[b0:b1])
                       for n0, n1, b0, b1 in zip(np.r_[0, node_ends[:-1]], node_ends,
                                                 np.r_[0, bitset_ends[:-1]], bitset_ends,
                                                 strict=True)]
        self._known = np.ascontiguousarray(arrays["known_cat_bitsets"], dtype=np.uint32)
        self._f_idx_map = np.ascontiguousarray(arrays["f_idx_map"], dtype=np.uint32)
        self._baseline = float(np.asarray(arrays["baseline"]).reshape(-1)[0])
        self.n_features_in_ = int(np.asarray(arrays["n_features_in"]).reshape(-1)[0])
        self._categorical = np.asarray(arrays["categorical"], dtype=bool)
        values = np.asarray(arrays["categories"], dtype=np.float64)
        ends = np.asarray(arrays["category_ends"], dtype=np.int64)
        if len(self._categorical) != self.n_features_in_ or \
                len(ends) != self._categorical.sum():
            raise ValueError("its categorical columns do not match its inputs")
        self._categories = np.split(values, ends[:-1]) if len(ends) else []

    @staticmethod
    def arrays(model: Any) -> dict[str, np.ndarray]:
        """The arrays of a fitted ``HistGradientBoostingRegressor`` with squared-error loss
        (one tree per iteration)."""
        if getattr(model, "loss", None) != "squared_error" or \
                getattr(model, "n_trees_per_iteration_", None) != 1:
            raise ValueError("only a squared-error HistGradientBoostingRegressor is stored")
        trees = [p for iteration in model._predictors for p in iteration]
        known, f_idx_map = model._bin_mapper.make_known_categories_bitsets()
        empty = np.zeros((0, 8), dtype=np.uint32)
        categorical = np.zeros(model.n_features_in_, dtype=bool)
        categories: list[np.ndarray] = []
        if model._preprocessor is not None:
            categorical = np.asarray(model.is_categorical_, dtype=bool)
            categories = list(model._preprocessor.named_transformers_["encoder"].categories_)
        return {
            "nodes": np.concatenate([t.nodes for t in trees]),
            "node_ends": np.cumsum([len(t.nodes) for t in trees]),
            "binned_bitsets": np.concatenate([empty, *(t.binned_left_cat_bitsets
                                                       for t in trees)]),
            "raw_bitsets": np.concatenate([empty, *(t.raw_left_cat_bitsets for t in trees)]),
            "bitset_ends": np.cumsum([len(t.raw_left_cat_bitsets) for t in trees]),
            "known_cat_bitsets": known, "f_idx_map": f_idx_map,
            "baseline": np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1),
            "n_features_in": np.asarray([model.n_features_in_]),
            "categorical": categorical,
            "categories": np.concatenate([np.zeros(0), *categories]).astype(np.float64),
            "category_ends": np.cumsum([len(c) for c in categories], dtype=np.int64),
        }

    @classmethod
    def load(cls, path: str | Path) -> StoredTrees:
        """Read the arrays :meth:`arrays` made from an ``.npz`` file (no pickles)."""
        with np.load(path, allow_pickle=False) as z:
            return cls({name: z[name] for name in z.files})

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The model's predictions for the rows of ``X``."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[-1]} columns, the model {self.n_features_in_}")
        if self._categorical.any():
            codes = []
            for j, values in zip(np.flatnonzero(self._categorical), self._categories,
                                 strict=True):
                at = np.minimum(np.searchsorted(values, X[:, j]), len(values) - 1)
                codes.append(np.where(values[at] == X[:, j], at, np.nan))
            X = np.ascontiguousarray(np.column_stack([*codes, X[:, ~self._categorical]]))
        out = np.full(len(X), self._baseline)
        for tree in self._trees:
            out += tree.predict(X, self._known, self._f_idx_map, 1)
        return out


@dataclass
class Surrogate:
    """A fitted performance model for one task kind (see the module docstring)."""

    kind: str
    space: SearchSpace
    normalisation: Mapping[str, Mapping[str, float]]
    model: Any
    task_ids: list[str]
    n_trials: int
    columns: np.ndarray  # the input columns the model was fitted on (all-NaN ones dropped)
    #: tasks it was told to leave out (leave-one-task-out): not candidates either
    excluded: frozenset[str] = frozenset()

    def predict(self, metafeatures: Mapping[str, Any],
                configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted percentile rank (higher is better) of each configuration on a task
        with these meta-features."""
        if not configs:
            return np.zeros(0)
        mf = normalise(metafeatures, self.normalisation)[0]
        X = np.hstack([np.tile(mf, (len(configs), 1)),
                       encode_configs(configs, self.space, self.kind)])
        return self.model.predict(X[:, self.columns])


def fit_surrogate(metabase: Metabase, space: SearchSpace, task: str,
                  exclude: set[str] | None = None,
                  normalisation: Mapping[str, Any] | None = None,
                  seed: int = 0) -> Surrogate | None:
    """Fit the performance model on the metabase's tasks of ``task``'s kind.

    Parameters
    ----------
    metabase : Metabase
    space : SearchSpace
    task : str
        The user's task (``binary``, ``multiclass`` or ``regression``).
    exclude : set of str, optional
        Task ids to leave out (leave-one-task-out evaluation).
    normalisation : mapping, optional
        Meta-feature normalisation (default: the metabase's stored one).
    seed : int

    Returns
    -------
    Surrogate or None
        None when the metabase has fewer than 5 tasks of this kind.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    kind = task_kind(task)
    tasks = metabase.ok_tasks()
    tasks = tasks[tasks["task"].map(lambda t: task_kind(str(t))) == kind]
    if exclude:
        tasks = tasks[~tasks["task_id"].isin(exclude)]
    if len(tasks) < 5:
        return None
    stats_all = normalisation or metabase.manifest.get("normalisation") or \
        fit_normalisation(metabase.tasks)
    stats = stats_all[kind]
    greater = {str(t): str(g).lower() in ("true", "1", "1.0") for t, g in
               zip(tasks["task_id"], tasks.get("greater_is_better",
                                               pd.Series(True, tasks.index)), strict=True)}
    res = metabase.results[metabase.results["task_id"].isin(set(tasks["task_id"]))]
    res = res[res["config_id"].isin(metabase.configs.keys())]
    res = res.assign(family=res["config_id"].map(lambda c: metabase.configs[c].get("family")))
    res = res[res["family"].isin([n for n, f in space.families.items() if kind in f.tasks])]
    if res.empty:
        return None
    y = trial_ranks(res, greater).to_numpy()
    mf = normalise(tasks.set_index("task_id"), stats)
    row_of = {t: i for i, t in enumerate(tasks["task_id"])}
    X_task = mf[res["task_id"].map(row_of).to_numpy()]
    X_cfg = encode_configs([metabase.configs[c] for c in res["config_id"]], space, kind)
    X = np.hstack([X_task, X_cfg])
    cat = np.concatenate([np.zeros(X_task.shape[1], bool), _categorical_mask(space, kind)])
    keep = ~np.isnan(X).all(axis=0)  # e.g. a parameter no trial of this kind has
    model = HistGradientBoostingRegressor(categorical_features=cat[keep], random_state=seed,
                                          **MODEL_PARAMS)
    # one thread: as fast here as OpenMP's, and far faster when other work holds the cores
    with threadpool_limits(1):
        model.fit(X[:, keep], y)
    return Surrogate(kind, space, stats, model, [str(t) for t in tasks["task_id"]], len(res),
                     keep, frozenset(exclude or ()))


def data_digest(manifest: Mapping[str, Any]) -> str:
    """What a stored model was fitted on, as one SHA-256: the data files' checksums, the
    meta-feature normalisation and the search-space version from the manifest."""
    h = hashlib.sha256()
    files = manifest.get("files") or {}
    for name in sorted(files):
        h.update(f"{name}={(files[name] or {}).get('sha256')};".encode())
    h.update(json.dumps(manifest.get("normalisation"), sort_keys=True, default=str).encode())
    h.update(str(manifest.get("search_space_version")).encode())
    return h.hexdigest()


def _sklearn_minor() -> str:
    import sklearn

    return ".".join(sklearn.__version__.split(".")[:2])


def store_surrogates(path: str | Path, seed: int = 0) -> dict[str, Any]:
    """Fit the performance model of each task kind on the metabase in ``path`` and store it
    there (``surrogate-<kind>.npz``, recorded in the manifest's ``surrogates``).

    Parameters
    ----------
    path : str or Path
        A metabase folder (its files are verified first).
    seed : int

    Returns
    -------
    dict
        The manifest entry per task kind (a kind with fewer than 5 prior tasks has none).
    """
    import io

    import sklearn

    from automl_meta.search.space import load_space

    space = load_space()
    mb = load_metabase(path, space_version=space.version)
    entries: dict[str, Any] = {}
    for kind, name in SURROGATE_FILES.items():
        surrogate = fit_surrogate(mb, space, "binary" if kind == "classification" else kind,
                                  seed=seed)
        # the skops file an older version stored there is not read any more
        (Path(path) / name.replace(".npz", ".skops")).unlink(missing_ok=True)
        if surrogate is None:
            (Path(path) / name).unlink(missing_ok=True)
            continue
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **StoredTrees.arrays(surrogate.model))
        data = buffer.getvalue()
        entries[kind] = {"file": name, **write_file(path, name, data),
                         "data_digest": data_digest(mb.manifest),
                         "sklearn": sklearn.__version__, "seed": seed,
                         "model": "HistGradientBoostingRegressor", "params": MODEL_PARAMS,
                         "n_inputs": int(len(surrogate.columns)),
                         "inputs_used": [int(i) for i in np.flatnonzero(surrogate.columns)],
                         "task_ids": surrogate.task_ids, "n_trials": surrogate.n_trials}
    manifest = dict(mb.manifest)
    manifest["surrogates"] = entries
    write_manifest(path, manifest)
    return entries


def stored_surrogate(metabase: Metabase, space: SearchSpace, task: str
                     ) -> tuple[Surrogate | None, str]:
    """The metabase's stored performance model for ``task``'s kind, if it can be used.

    Parameters
    ----------
    metabase : Metabase
        As loaded (a metabase merged with the user's history keeps its manifest, and with it
        the model fitted on its own tasks).
    space : SearchSpace
    task : str

    Returns
    -------
    (Surrogate or None, str)
        The model, and ``"stored"`` or why it cannot be used (no model stored, fitted on
        other data or with another scikit-learn, file changed or unreadable).
    """
    kind = task_kind(task)
    entry = (metabase.manifest.get("surrogates") or {}).get(kind)
    if not isinstance(entry, Mapping) or not entry.get("file"):
        return None, "the metabase stores no performance model for this kind"
    if entry.get("file") != SURROGATE_FILES[kind]:
        return None, (f"the stored performance model ({entry.get('file')}) is in an older "
                      "format; rebuilding the metabase stores the current one")
    if entry.get("data_digest") != data_digest(metabase.manifest):
        return None, "the stored performance model was fitted on other data"
    fitted_with = ".".join(str(entry.get("sklearn", "")).split(".")[:2])
    if fitted_with != _sklearn_minor():
        return None, (f"the stored performance model was fitted with scikit-learn "
                      f"{entry.get('sklearn')}")
    path = Path(metabase.path) / entry["file"]
    try:
        if file_sha256(path) != entry.get("sha256"):
            return None, f"{path.name} does not match the manifest's checksum"
        model = StoredTrees.load(path)
        columns = np.zeros(int(entry["n_inputs"]), dtype=bool)
        columns[np.asarray(entry["inputs_used"], dtype=int)] = True
        normalisation = metabase.manifest["normalisation"][kind]
        if getattr(model, "n_features_in_", None) != int(columns.sum()):
            return None, f"{path.name} does not fit the manifest's inputs"
    except Exception as exc:  # unreadable, not plain arrays, malformed entry
        return None, f"{path.name} cannot be used ({type(exc).__name__}: {exc})"
    return Surrogate(kind, space, normalisation, model, [str(t) for t in entry["task_ids"]],
                     int(entry.get("n_trials", 0)), columns), "stored"
