"""The search space file, configurations and the pipelines built from them."""

from __future__ import annotations

import copy

import numpy as np
import optuna
import pytest
import yaml

from automl_meta.data import prepare_dataset
from automl_meta.errors import UsageError
from automl_meta.pipeline import build_pipeline
from automl_meta.resources import default_space_path
from automl_meta.space import load_space, parse_space


@pytest.fixture(scope="module")
def space():
    return load_space()


def test_shipped_space_has_all_families_for_both_tasks(space):
    for task in ("binary", "multiclass", "regression"):
        assert set(space.family_names(task)) == {"hgb", "rf", "et", "linear", "svm", "knn",
                                                 "mlp"}
    assert "svm" not in space.family_names("binary", n_rows=200_000)
    assert len(space.version) == 16


def test_default_configs_are_valid(space):
    for task in ("binary", "regression"):
        for fam in space.family_names(task):
            cfg = space.default_config(fam, task)
            assert space.check_config(cfg, task) is None, cfg


def test_sampled_configs_are_valid_and_flat(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for task in ("multiclass", "regression"):
        for _ in range(40):
            trial = study.ask()
            cfg = space.suggest(trial, task, space.family_names(task))
            assert space.check_config(cfg, task) is None
            assert all(k == "family" or k.startswith(cfg["family"] + ".") for k in cfg)


def test_check_and_adapt_config(space):
    cfg = space.default_config("linear", "regression")
    cfg["linear.alpha"] = 1e9
    assert "outside its domain" in space.check_config(cfg, "regression")
    adapted = space.adapt_config(cfg, "regression")
    assert adapted["linear.alpha"] == 100.0
    assert space.check_config({"family": "nope"}, "binary") == "unknown family 'nope'"
    clf = space.adapt_config(space.default_config("linear", "regression"), "binary")
    assert space.check_config(clf, "binary") is None


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["families"]["hgb"]["params"]["learning_rate"].update(low=1, high=0.5),
     "low < high"),
    (lambda d: d["families"]["hgb"]["params"]["learning_rate"].update(type="weird"), "type"),
    (lambda d: d["families"].update(gbm={"params": {}}), "unknown family"),
    (lambda d: d["families"]["rf"]["params"]["bootstrap"].update(default="maybe"), "default"),
    (lambda d: d["families"]["svm"]["params"].pop("scaler"), "scaler"),
])
def test_invalid_spaces_are_rejected(mutate, message):
    data = yaml.safe_load(default_space_path().read_text())
    bad = copy.deepcopy(data)
    mutate(bad)
    with pytest.raises(UsageError, match=message):
        parse_space(bad)


def test_every_family_fits_on_mixed_data(space, mixed_frame):
    ds = prepare_dataset(mixed_frame, "label")
    y = ds.y.map({c: i for i, c in enumerate(ds.classes)}).to_numpy()
    for fam in space.family_names(ds.task):
        pipe = build_pipeline(space.default_config(fam, ds.task), ds.schema, ds.task, space,
                              n_rows=len(y), n_classes=2, final=True)
        pipe.fit(ds.X, y)
        proba = pipe.predict_proba(ds.X.iloc[:5])
        assert proba.shape == (5, 2) and np.allclose(proba.sum(axis=1), 1)


def test_every_family_fits_regression_with_high_cardinality(space):
    rng = np.random.default_rng(0)
    n = 300
    import pandas as pd

    df = pd.DataFrame({"a": rng.normal(size=n),
                       "city": [f"c{i}" for i in rng.integers(0, 60, size=n)]})
    df["y"] = df["a"] * 2 + df["city"].str[1:].astype(int) / 30 + rng.normal(size=n) * 0.1
    ds = prepare_dataset(df, "y")
    for fam in space.family_names("regression"):
        pipe = build_pipeline(space.default_config(fam, "regression"), ds.schema, "regression",
                              space, n_rows=n, final=True)
        pipe.fit(ds.X, ds.y.to_numpy())
        assert np.isfinite(pipe.predict(ds.X)).all()
