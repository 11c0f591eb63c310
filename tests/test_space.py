"""The search space file, configurations and the pipelines built from them."""

from __future__ import annotations

import copy

import numpy as np
import optuna
import pytest
import yaml

from automl_meta.data import prepare_dataset
from automl_meta.errors import UsageError
from automl_meta.resources import default_space_path
from automl_meta.search.families import FAMILIES, KNOWN_FAMILIES, family_label
from automl_meta.search.pipeline import build_pipeline
from automl_meta.search.space import load_space, parse_space, space_version


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
    (lambda d: d["families"]["svm"].update(max_rows=5000), "svm.max_rows is a fact of the family"),
    (lambda d: d["families"]["rf"].update(label="Forest"), "rf.label is a fact of the family"),
])
def test_invalid_spaces_are_rejected(mutate, message):
    data = yaml.safe_load(default_space_path().read_text())
    bad = copy.deepcopy(data)
    mutate(bad)
    with pytest.raises(UsageError, match=message):
        parse_space(bad)


@pytest.mark.slow
def test_every_family_fits_on_mixed_data(space, mixed_frame):
    ds = prepare_dataset(mixed_frame, "label")
    y = ds.y.map({c: i for i, c in enumerate(ds.classes)}).to_numpy()
    for fam in space.family_names(ds.task):
        pipe = build_pipeline(space.default_config(fam, ds.task), ds.schema, ds.task, space,
                              n_rows=len(y), n_classes=2, final=True)
        pipe.fit(ds.X, y)
        proba = pipe.predict_proba(ds.X.iloc[:5])
        assert proba.shape == (5, 2) and np.allclose(proba.sum(axis=1), 1)


@pytest.mark.slow
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


def test_the_bundled_metabase_was_built_against_this_space_version(space):
    """The version covers the YAML plus the registry's labels and row limits, exactly the
    content the space file held when the bundled metabase was built."""
    from automl_meta.meta.metabase import load_metabase
    from automl_meta.resources import bundled_metabase_dir

    mb = load_metabase(bundled_metabase_dir(), space_version=space.version)
    assert mb.manifest["search_space_version"] == space.version


def test_space_version_follows_the_family_records(monkeypatch):
    """A row limit decides which families a search offers: changing it in the registry
    changes the version (a metabase built before is then refused)."""
    import dataclasses

    import automl_meta.search.space as space_mod

    data = yaml.safe_load(default_space_path().read_text())
    before = space_version(data)
    assert parse_space(data).version == before
    changed = dict(FAMILIES, svm=dataclasses.replace(FAMILIES["svm"], max_rows=20_000))
    monkeypatch.setattr(space_mod, "FAMILIES", changed)
    assert space_version(data) != before
    assert "svm" in parse_space(data).family_names("binary", n_rows=15_000)


def test_family_facts_come_from_one_record_each(space):
    from automl_meta.artifacts import report
    from automl_meta.meta.warmstart.cost import PER_CLASS_FAMILIES

    assert set(space.families) == set(KNOWN_FAMILIES)
    for name, fam in space.families.items():
        record = FAMILIES[name]
        assert fam.label == record.label == family_label(name)
        assert fam.max_rows == record.max_rows
        assert report._family_label(name) == record.label
    assert not hasattr(report, "FAMILY_LABELS")
    assert set(PER_CLASS_FAMILIES) == {n for n, r in FAMILIES.items() if r.cost_per_class}
    assert family_label("lightgbm") == "lightgbm" and family_label("") == "?"
    assert space.family_names("binary", n_rows=FAMILIES["knn"].max_rows + 1) == [
        n for n in KNOWN_FAMILIES if FAMILIES[n].max_rows is None]


def test_space_and_families_import_neither_the_pipeline_nor_scikit_learn():
    """families.py is read by the space, the report and the warm start: importing it (and
    the space) loads no estimator code and does not reach back to the pipeline."""
    import subprocess
    import sys

    code = ("import sys, automl_meta.search.space, automl_meta.search.families; "
            "print(sorted(m for m in ('sklearn', 'automl_meta.search.pipeline') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"
