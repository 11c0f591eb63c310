"""The performance model learned on the metabase, on a synthetic metabase whose ground truth
is known: k-NN wins on small tasks, gradient boosting on large ones."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from automl_meta.meta.metabase import Metabase, config_id
from automl_meta.meta.neighbors import fit_normalisation
from automl_meta.meta.surrogate import encode_configs, fit_surrogate, trial_ranks
from automl_meta.meta.warmstart import suggest
from automl_meta.search.space import load_space


@pytest.fixture(scope="module")
def synthetic_metabase() -> Metabase:
    space = load_space()
    rng = np.random.default_rng(0)
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    tasks, results, configs = [], [], {}
    for i in range(12):
        n_rows = int(100 * 4 ** (i % 6))  # 100 … 102 400 rows
        tid = f"synthetic/t{i}"
        tasks.append({"task_id": tid, "name": f"t{i}", "task": "regression", "status": "ok",
                      "greater_is_better": True, "NumberOfInstances": n_rows,
                      "NumberOfFeatures": 5 + i, "Dimensionality": (5 + i) / n_rows})
        favourite = "knn" if n_rows < 3000 else "hgb"
        for trial in range(20):
            config = space.suggest(study.ask(), "regression", ["knn", "hgb"])
            cid = config_id(config)
            configs[cid] = config
            score = 0.5 + 0.3 * (config["family"] == favourite) + rng.normal(scale=0.05)
            results.append({"task_id": tid, "config_id": cid, "trial": trial,
                            "state": "COMPLETE", "score": score, "fit_seconds": 0.1,
                            "duration": 0.2})
    tasks_df = pd.DataFrame(tasks)
    return Metabase(tasks_df, configs, pd.DataFrame(results),
                    {"normalisation": fit_normalisation(tasks_df)})


def test_trial_ranks_per_task_with_failures_worst():
    res = pd.DataFrame({"task_id": ["a", "a", "a", "b", "b"],
                        "state": ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"],
                        "score": [0.9, 0.5, np.nan, 3.0, 1.0]})
    ranks = trial_ranks(res, {"a": True, "b": False})  # b: a loss, lower is better
    assert ranks.tolist() == [1.0, 0.5, 0.0, 0.0, 1.0]


def test_encoding_scales_to_unit_interval_and_marks_absent_parameters():
    space = load_space()
    cfgs = [space.default_config("knn", "regression"), space.default_config("hgb", "regression")]
    X = encode_configs(cfgs, space, "regression")
    assert X.shape[0] == 2 and X[0, 0] != X[1, 0]  # family code differs
    numeric = X[:, 1:][np.isfinite(X[:, 1:])]
    assert numeric.min() >= 0
    # each configuration leaves the other family's parameters absent
    assert np.isnan(X[0, 1:]).sum() > 0 and np.isnan(X[1, 1:]).sum() > 0


def test_surrogate_learns_which_family_wins_where(synthetic_metabase):
    space = load_space()
    model = fit_surrogate(synthetic_metabase, space, "regression")
    assert model is not None and model.n_trials == 240
    knn = space.default_config("knn", "regression")
    hgb = space.default_config("hgb", "regression")
    small = {"NumberOfInstances": 150, "NumberOfFeatures": 6, "Dimensionality": 0.04}
    large = {"NumberOfInstances": 80_000, "NumberOfFeatures": 15, "Dimensionality": 2e-4}
    p_small, p_large = model.predict(small, [knn, hgb]), model.predict(large, [knn, hgb])
    assert p_small[0] > p_small[1] and p_large[1] > p_large[0]
    # too few tasks of a kind: no model
    assert fit_surrogate(synthetic_metabase, space, "binary") is None


def test_learned_strategy_puts_the_predicted_best_first(synthetic_metabase):
    space = load_space()
    mb = synthetic_metabase
    held_out = {"synthetic/t0", "synthetic/t6"}  # both 100-row tasks: knn wins there
    model = fit_surrogate(mb, space, "regression", exclude=held_out)
    small = {"NumberOfInstances": 100, "NumberOfFeatures": 5, "Dimensionality": 0.05}
    ws = suggest(mb, [], "regression", 100, space, 6, strategy="learned",
                 metafeatures=small, surrogate=model)
    assert ws.suggestions[0].config["family"] == "knn"
    assert ws.suggestions[0].origin.startswith("learned:")
    assert not any(s.origin.split(":")[1] in held_out for s in ws.suggestions)
    assert len({config_id(s.config) for s in ws.suggestions}) == len(ws.suggestions) == 6
    # neither family gets more than max(2, n // 3) places before the other had its turn
    assert [s.config["family"] for s in ws.suggestions][:4].count("knn") == 2
    with pytest.raises(ValueError, match="meta-features"):
        suggest(mb, [], "regression", 100, space, 3, strategy="learned")


@pytest.mark.slow
def test_warm_fit_with_the_bundled_metabase_uses_the_learned_strategy():
    from sklearn.datasets import load_breast_cancer

    from automl_meta import AutoML

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = AutoML(n_trials=3, warm_start=2, seed=0, diagnostics=False).fit(X, y)
    summary = model.summary()["warm_start"]
    assert summary["strategy"] == "learned"
    assert "performance model: the one stored in the metabase" in summary["log"]
    origins = model.leaderboard_["origin"].tolist()
    assert origins[0].startswith("learned:") and origins[1:] == ["default:hgb", "tpe"]


# ------------------------------------------------------------------ stored with a metabase
@pytest.fixture()
def written_metabase(synthetic_metabase, tmp_path):
    from automl_meta.meta.metabase import write_metabase

    mb = synthetic_metabase
    manifest = {"search_space_version": load_space().version, "status": "complete",
                "normalisation": {"regression": mb.manifest["normalisation"]["regression"]}}
    write_metabase(tmp_path / "mb", mb.tasks, mb.configs, mb.results, manifest)
    return tmp_path / "mb"


def test_a_stored_model_predicts_as_the_one_fitted_at_run_time(written_metabase):
    from automl_meta.meta.metabase import describe_metabase, load_metabase
    from automl_meta.meta.surrogate import store_surrogates, stored_surrogate

    space = load_space()
    mb = load_metabase(written_metabase)
    assert stored_surrogate(mb, space, "regression")[0] is None  # none stored yet
    entries = store_surrogates(written_metabase)
    assert set(entries) == {"regression"}  # 0 classification tasks: no model
    mb = load_metabase(written_metabase)
    stored, why = stored_surrogate(mb, space, "regression")
    assert why == "stored" and stored is not None
    fresh = fit_surrogate(mb, space, "regression")
    configs = [space.default_config("knn", "regression"),
               space.default_config("hgb", "regression")]
    mf = {"NumberOfInstances": 150, "NumberOfFeatures": 6, "Dimensionality": 0.04}
    np.testing.assert_allclose(stored.predict(mf, configs), fresh.predict(mf, configs))
    assert stored.task_ids == fresh.task_ids
    info = describe_metabase(written_metabase)["surrogates"]
    assert info["regression"]["current"] and info["regression"]["checksum_ok"]


def test_a_stale_changed_or_foreign_stored_model_is_not_used(written_metabase):
    from automl_meta.meta.metabase import load_metabase, write_metabase
    from automl_meta.meta.surrogate import store_surrogates, stored_surrogate

    space = load_space()
    store_surrogates(written_metabase)
    model_file = written_metabase / "surrogate-regression.npz"
    good = model_file.read_bytes()
    # the file changed: its checksum no longer matches
    model_file.write_bytes(good[:-10] + b"0" * 10)
    stored, why = stored_surrogate(load_metabase(written_metabase), space, "regression")
    assert stored is None and "checksum" in why
    # the data changed under a copied manifest entry: fitted on other data
    model_file.write_bytes(good)
    mb = load_metabase(written_metabase)
    entry = mb.manifest["surrogates"]
    write_metabase(written_metabase, mb.tasks.iloc[1:], mb.configs, mb.results, mb.manifest)
    mb = load_metabase(written_metabase)
    assert "surrogates" not in mb.manifest  # rewriting the data drops the models' entry
    mb.manifest["surrogates"] = entry
    stored, why = stored_surrogate(mb, space, "regression")
    assert stored is None and "other data" in why
    # an entry an older version wrote (a skops file): said so, not read
    mb.manifest["surrogates"] = {"regression": dict(entry["regression"],
                                                    file="surrogate-regression.skops")}
    stored, why = stored_surrogate(mb, space, "regression")
    assert stored is None and "older format" in why


def test_a_stored_model_holding_more_than_numbers_is_refused(written_metabase):
    from automl_meta.data import file_sha256
    from automl_meta.meta.metabase import load_metabase, write_manifest
    from automl_meta.meta.surrogate import StoredTrees, store_surrogates, stored_surrogate

    store_surrogates(written_metabase)
    model_file = written_metabase / "surrogate-regression.npz"
    with np.load(model_file) as z:
        arrays = {name: z[name] for name in z.files}
    # an object array: reading it back would unpickle whatever the file holds
    np.savez(model_file, **(arrays | {"nodes": np.array([NotAModel()], dtype=object)}))
    mb = load_metabase(written_metabase)
    mb.manifest["surrogates"]["regression"]["sha256"] = file_sha256(model_file)
    write_manifest(written_metabase, mb.manifest)
    stored, why = stored_surrogate(load_metabase(written_metabase), load_space(), "regression")
    assert stored is None and "cannot be used" in why and "pickle" in why
    # trees of another layout (another scikit-learn's nodes) are refused too
    with pytest.raises(ValueError, match="another scikit-learn"):
        StoredTrees(arrays | {"nodes": np.zeros(3, dtype=[("value", "f8")])})


class NotAModel:  # stands in for a crafted payload
    pass


def test_the_bundled_metabase_carries_current_models_for_both_kinds():
    from automl_meta.meta.metabase import describe_metabase

    models = describe_metabase()["surrogates"]
    assert set(models) == {"classification", "regression"}
    assert all(m["current"] for m in models.values()), models
