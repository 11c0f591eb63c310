"""Published OpenML runs as a metabase layer (#21): flow mappings, the mapping report,
the live client's layout, duplicate linking, summarising and ``build-metabase --source
openml-runs``."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from automl_meta.cli import main
from automl_meta.data import file_sha256, read_table
from automl_meta.errors import UsageError
from automl_meta.meta.builder.sources import openml_runs as om
from automl_meta.meta.metabase import describe_metabase, load_metabase
from automl_meta.resources import bundled_metabase_dir, flows_dir
from automl_meta.search.space import load_space

from .conftest import needs_shared, shared_path

RUNS = shared_path("openml-runs")
needs_runs = pytest.mark.skipif(not (RUNS / om.QUALITIES_FILE).exists(),
                                reason="../shared/openml-runs is absent")
RF = "randomforestclassifier__"
IMPUTE = "columntransformer__numeric__imputer__strategy"


# ------------------------------------------------------------------------ synthetic data
def _rf_run(task: int, score: float, **kw) -> dict:
    """One run of flow 6969 as the published export writes it."""
    run = {f"{RF}bootstrap": "True", f"{RF}criterion": "gini", f"{RF}max_depth": "None",
           f"{RF}max_features": 0.5, f"{RF}max_leaf_nodes": "None",
           f"{RF}min_samples_leaf": 1, f"{RF}min_samples_split": 2,
           f"{RF}min_weight_fraction_leaf": 0.0, f"{RF}n_estimators": 100,
           IMPUTE: "median", "predictive_accuracy": score, "task_id": task}
    run.update({(k if k in run else f"{RF}{k}"): v for k, v in kw.items()})
    return run


def _qualities(n_rows: int, classes: list[int], n_missing: int, n_features: int = 5) -> dict:
    return {"NumberOfInstances": n_rows, "NumberOfFeatures": n_features,
            "NumberOfNumericFeatures": n_features - 1, "NumberOfSymbolicFeatures": 1,
            "NumberOfBinaryFeatures": 0, "NumberOfClasses": len(classes),
            "MajorityClassSize": max(classes), "MinorityClassSize": min(classes),
            # OpenML's quirks: a fraction where a percentage belongs, -1 for "not computed"
            "MajorityClassPercentage": 100 * max(classes) / n_rows,
            "MinorityClassPercentage": min(classes) / n_rows,
            "MaxNominalAttDistinctValues": -1, "MinNominalAttDistinctValues": -1,
            "MeanNominalAttDistinctValues": -1, "StdvNominalAttDistinctValues": -1,
            "MeanAttributeEntropy": -1, "MinSkewnessOfNumericAtts": -1.0,
            "NumberOfMissingValues": n_missing, "CfsSubsetEval_kNN1NAUC": 0.7}


@pytest.fixture()
def export_folder(tmp_path) -> Path:
    """A folder with a CSV export of flow 6969 (recognised by its columns), one of flow
    6970 (named by a flow_id column) and task_qualities.json."""
    folder = tmp_path / "runs"
    folder.mkdir()
    runs = [_rf_run(101, 0.60 + i / 100, min_samples_split=2 + i % 10,
                    max_features=0.1 + i / 50) for i in range(24)]
    runs += [_rf_run(101, 0.5, **{IMPUTE: "most_frequent"}),           # -> median
             _rf_run(101, 0.51, max_features=1.3),                        # clipped
             _rf_run(101, 0.52, max_features=0.01, min_samples_leaf=25),  # clipped twice
             _rf_run(101, 0.90, max_depth=10),                            # dropped
             _rf_run(101, 0.91, n_estimators=500),                        # dropped
             _rf_run(101, float("nan"))]                                  # dropped
    runs += [_rf_run(102, 0.7, **{IMPUTE: "most_frequent"}),            # dropped: missing
             _rf_run(102, 0.71, **{IMPUTE: "most_frequent"}),
             _rf_run(102, 0.8, criterion="entropy", bootstrap="False", **{IMPUTE: "mean"}),
             _rf_run(102, 0.6), _rf_run(102, 0.65)]
    runs += [_rf_run(103, 0.9), _rf_run(103, 0.8)]                        # no qualities
    pd.DataFrame(runs).to_csv(folder / "random_forest.csv", index=False)
    ada = pd.DataFrame({"adaboostclassifier__algorithm": ["SAMME", "SAMME.R", "SAMME"],
                        "adaboostclassifier__learning_rate": [0.1, 0.5, 1.0],
                        "adaboostclassifier__base_estimator__max_depth": [1, 3, 5],
                        "adaboostclassifier__n_estimators": [50, 100, 200],
                        IMPUTE: ["mean", "median", "most_frequent"],
                        "predictive_accuracy": [0.7, 0.8, 0.9], "task_id": [101, 101, 102],
                        "flow_id": [6970] * 3})
    ada.to_csv(folder / "boosting.csv.gz", index=False)
    quals = {"101": _qualities(200, [120, 80], 0), "102": _qualities(300, [150, 100, 50], 12),
             "104": _qualities(50, [25, 25], 0)}
    (folder / om.QUALITIES_FILE).write_text(json.dumps(quals))
    return folder


# ------------------------------------------------------------------------ no shared data
def test_flow_mappings_load_and_target_the_space():
    flows = om.load_flows()
    assert set(flows) >= {6969, 6970}
    rf, ada = flows[6969], flows[6970]
    assert rf.family == "rf" and rf.fixed == {"rf.n_estimators": 100}
    assert ada.family is None and rf.evaluation == ada.evaluation == "predictive_accuracy"
    assert rf.licence == "BSD-3-Clause" and "van Rijn" in rf.citation
    assert (flows_dir() / "6969.yaml").exists() and rf.sha256 == file_sha256(rf.path)


def test_flow_mapping_errors_are_usage_errors(tmp_path):
    bad = tmp_path / "1.yaml"
    bad.write_text("flow_id: 1\nversion: 1\nevaluation: predictive_accuracy\nfamily: rf\n"
                   "params:\n  x:\n    rule: rename\n    to: rf.max_depth\n")
    with pytest.raises(UsageError, match="not a parameter of 'rf'"):
        om.load_flow(bad)
    bad.write_text("flow_id: 1\nversion: 1\nevaluation: predictive_accuracy\nfamily: rf\n"
                   "params:\n  x:\n    rule: rename\n    to: rf.max_features\n")
    with pytest.raises(UsageError, match="sets no value for"):
        om.load_flow(bad)


@pytest.mark.parametrize("raw, plain", [
    ("True", True), ("false", False), ("None", None), ("null", None), (float("nan"), None),
    ("18", 18), (np.int64(3), 3), ("0.25", 0.25), (2.0, 2), ('"gini"', "gini"),
    ("entropy", "entropy"), (np.bool_(True), True)])
def test_plain_value(raw, plain):
    got = om.plain_value(raw)
    assert got == plain and type(got) is type(plain)


def test_synthetic_csv_export(export_folder):
    """Every rule on a small export: rename, clip (counted), require, the value map and its
    no-missing-values extension, no qualities, no evaluation; AdaBoost reported."""
    space = load_space()
    layer = om.layer_from_folder(export_folder, max_runs_per_task=10)
    rep = layer.report
    rf = rep.flows[6969]
    assert (rf.runs_read, rf.tasks_read) == (37, 3)
    assert rf.mapped == 30 and rf.n_dropped == 7 and rf.mapped + rf.n_dropped == rf.runs_read
    assert rf.clipped == 2
    assert dict(rf.clipped_values) == {f"{RF}max_features": 2, f"{RF}min_samples_leaf": 1}
    assert sum(rf.mapped_by_value_rule.values()) == 1
    drops = dict(rf.dropped)
    assert drops[f"{IMPUTE}=most_frequent: not in the space (the task has missing values)"] \
        == 2
    assert drops["no qualities for the task (number of classes unknown)"] == 2
    assert drops["no predictive_accuracy"] == 1
    assert sum(n for r, n in drops.items() if r.startswith(f"{RF}max_depth=10")) == 1
    assert sum(n for r, n in drops.items() if r.startswith(f"{RF}n_estimators=500")) == 1
    ada = rep.flows[6970]
    assert rep.flows_without_family == [6970]
    assert (ada.runs_read, ada.mapped, ada.n_dropped) == (3, 0, 3)
    assert "no family" in next(iter(ada.dropped))
    assert any("no family in the search space" in line for line in rep.lines())

    tasks = layer.tasks.set_index("task_id")
    assert list(tasks.index) == ["openml-run/101", "openml-run/102"]
    assert tasks.loc["openml-run/101", "task"] == "binary"
    assert tasks.loc["openml-run/102", "task"] == "multiclass"
    assert (tasks["source"] == om.SOURCE).all() and (tasks["metric"] == "accuracy").all()
    assert list(tasks["openml_id"]) == [101, 102]
    assert (tasks["evaluation_protocol"] == "openml 10-fold CV").all()
    assert (tasks["licence"] == "BSD-3-Clause").all()
    # summarising: 27 mapped runs on task 101, 10 kept (5 best + 5 spread), 3 on 102
    counts = layer.results.groupby("task_id").size()
    assert counts.to_dict() == {"openml-run/101": 10, "openml-run/102": 3}
    assert rep.runs_kept == 13 == len(layer.results)
    assert tasks.loc["openml-run/101", "n_trials"] == 10
    assert tasks.loc["openml-run/101", "runs_mapped"] == 27
    assert tasks.loc["openml-run/101", "best_score"] == pytest.approx(0.83)
    for r in layer.results.itertuples():
        cfg = layer.configs[r.config_id]
        assert space.check_config(cfg, tasks.loc[r.task_id, "task"]) is None, cfg
        assert cfg["rf.n_estimators"] == 100
    maxf = [c["rf.max_features"] for c in layer.configs.values()]
    assert 0.05 <= min(maxf) and max(maxf) <= 1.0
    # qualities: fraction -> per cent, -1 -> missing or filled from the target
    assert tasks.loc["openml-run/101", "MinorityClassPercentage"] == pytest.approx(40.0)
    assert tasks.loc["openml-run/101", "MajorityClassPercentage"] == pytest.approx(60.0)
    assert tasks.loc["openml-run/102", "MaxNominalAttDistinctValues"] == 3
    assert tasks.loc["openml-run/102", "StdvNominalAttDistinctValues"] == 0
    assert math.isnan(tasks.loc["openml-run/101", "MeanAttributeEntropy"])
    # the moments of the numeric attributes are not imported (unreliable as published)...
    assert "MinSkewnessOfNumericAtts" not in tasks.columns
    assert rep.qualities["not_stored_unreliable"] == ["MinSkewnessOfNumericAtts"]
    # ...but read as values where they are compared: a -1 there is a real value
    raw, _ = om.clean_qualities({101: _qualities(100, [60, 40], 0)}, drop_unreliable=False)
    assert raw.loc[101, "MinSkewnessOfNumericAtts"] == -1.0
    assert "CfsSubsetEval_kNN1NAUC" not in tasks.columns
    assert "CfsSubsetEval_kNN1NAUC" in rep.qualities["not_stored"]
    assert set(layer.files) == {"random_forest.csv", "boosting.csv.gz", om.QUALITIES_FILE}


def test_summarise_runs_keeps_the_best_and_a_spread():
    rng = np.random.default_rng(0)
    scores = rng.permutation(np.linspace(0.5, 1.0, 500))
    mapped = pd.DataFrame({"task_id": 7, "run": np.arange(500), "score": scores,
                           "flow_id": 6969, "config_id": [f"c{i}" for i in range(500)]})
    kept = om.summarise_runs(mapped, 100)
    assert len(kept) == 100 and kept["run"].is_unique
    ranked = np.sort(scores)[::-1]
    assert np.allclose(kept["score"].iloc[:50], ranked[:50])      # the 50 best
    rest = kept["score"].iloc[50:].to_numpy()
    assert rest[0] == ranked[50] and rest[-1] == ranked[-1]      # from the next to the worst
    gaps = np.diff(np.searchsorted(-ranked, -rest))
    assert gaps.min() >= 8 and gaps.max() <= 10                  # evenly over the rank
    assert len(om.summarise_runs(mapped.iloc[:80], 100)) == 80
    assert len(om.summarise_runs(mapped, None)) == 500
    assert len(om.summarise_runs(mapped, 7)) == 7


def _live_listing() -> pd.DataFrame:
    """What ``openml.evaluations.list_evaluations_setups(..., flows=[6969])`` returns
    (default layout: a ``parameters`` dict of setup full names to JSON-encoded values)."""
    rf = "sklearn.ensemble.forest.RandomForestClassifier(45)_{}"
    imp = "sklearn.impute._base.SimpleImputer(7)_strategy"

    def params(maxf: str, leaf: str, strategy: str) -> dict:
        return {rf.format("bootstrap"): "true", rf.format("criterion"): '"entropy"',
                rf.format("max_features"): maxf, rf.format("min_samples_leaf"): leaf,
                rf.format("min_samples_split"): "4", rf.format("n_estimators"): "100",
                rf.format("max_depth"): "null", rf.format("max_leaf_nodes"): "null",
                rf.format("min_weight_fraction_leaf"): "0.0", rf.format("random_state"): "1",
                imp: strategy,
                "sklearn.pipeline.Pipeline(columntransformer=sklearn.compose.ColumnTransformer,"
                "randomforestclassifier=sklearn.ensemble.forest.RandomForestClassifier)(1)"
                "_memory": "null"}

    rows = []
    for i, (task, fn, maxf, leaf, strategy, value) in enumerate([
            (101, "predictive_accuracy", "0.3", "3", '"mean"', 0.91),
            (101, "predictive_accuracy", "0.95", "30", '"most_frequent"', 0.88),
            (101, "area_under_roc_curve", "0.3", "3", '"mean"', 0.97),  # another measure
            (102, "predictive_accuracy", "0.6", "1", '"median"', 0.75)]):
        rows.append({"run_id": 1000 + i, "task_id": task, "setup_id": 50 + i,
                     "flow_id": 6969, "flow_name": "sklearn.pipeline.Pipeline(...)",
                     "data_id": task - 100, "data_name": f"toy{task}", "function": fn,
                     "upload_time": "2018-01-01 00:00:00", "uploader": 1,
                     "uploader_name": "someone", "value": value, "values": None,
                     "array_data": None, "parameters": params(maxf, leaf, strategy)})
    return pd.DataFrame(rows)


def test_live_client_layout_gives_the_same_runs():
    flow = om.load_flows()[6969]
    listing = _live_listing()
    # openml-python's parameters_in_separate_columns=True layout, built as it builds it
    separate = pd.concat([listing.drop("parameters", axis=1),
                          listing["parameters"].apply(pd.Series)], axis=1)
    a = om.runs_from_openml_frame(listing, flow)
    b = om.runs_from_openml_frame(separate, flow)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 3 and list(a["task_id"]) == [101, 101, 102]
    assert list(a["run_id"]) == [1000, 1001, 1003]
    assert a[f"{RF}criterion"].tolist() == ["entropy"] * 3
    assert a[f"{RF}bootstrap"].tolist() == [True] * 3
    assert a[f"{RF}max_depth"].isna().all() and a[IMPUTE].tolist() == ["mean", "most_frequent",
                                                                        "median"]
    quals = {101: _qualities(200, [120, 80], 0), 102: _qualities(300, [150, 100, 50], 12)}
    layer = om.build_layer([(flow, a)], quals, max_runs_per_task=None)
    assert layer.report.flows[6969].mapped == 3 and layer.report.flows[6969].clipped == 1
    tasks = layer.tasks.set_index("task_id")
    assert tasks.loc["openml-run/101", "name"] == "toy101"
    first = layer.results[layer.results["trial"] == 0].iloc[0]
    assert layer.configs[first["config_id"]] == {
        "family": "rf", "rf.n_estimators": 100, "rf.max_features": 0.3,
        "rf.min_samples_leaf": 3, "rf.min_samples_split": 4, "rf.bootstrap": True,
        "rf.criterion": "entropy", "rf.impute": "mean"}
    with pytest.raises(UsageError, match="no column for"):
        om.runs_from_openml_frame(separate.drop(columns=[
            c for c in separate.columns if str(c).endswith("_max_features")]), flow)


def test_fetch_openml_runs_calls_the_client(monkeypatch):
    """The one-command refresh: the client's listing and dataset qualities, offline."""
    import openml

    calls = {}

    def listing(**kw):
        calls.update(kw)
        frame = _live_listing()
        return pd.concat([frame.drop("parameters", axis=1),
                          frame["parameters"].apply(pd.Series)], axis=1)

    def dataset(did, **kw):
        n = {1: (200, [120, 80], 0), 2: (300, [150, 100, 50], 12)}[did]
        return SimpleNamespace(qualities=_qualities(*n))

    monkeypatch.setattr(openml.evaluations, "list_evaluations_setups", listing)
    monkeypatch.setattr(openml.datasets, "get_dataset", dataset)
    pairs, quals = om.fetch_openml_runs([6969])
    assert calls["flows"] == [6969] and calls["function"] == "predictive_accuracy"
    assert calls["parameters_in_separate_columns"] is True
    assert set(quals) == {101, 102} and quals[102]["NumberOfClasses"] == 3
    layer = om.build_layer(pairs, quals)
    assert len(layer.tasks) == 2 and len(layer.results) == 3


def test_cli_default_is_the_library_default():
    import typer.main

    from automl_meta.cli import app

    cmd = typer.main.get_command(app).commands["build-metabase"]
    defaults = {p.name: p.default for p in cmd.params}
    assert defaults["max_runs_per_task"] == om.DEFAULT_MAX_RUNS_PER_TASK


@pytest.mark.slow
def test_cli_layer_replaces_only_its_own_tasks(export_folder, tmp_path, capsys):
    """Into a copy of the bundled metabase: the corpus tasks stay as they are, the layer
    (the bundled one, then this one) is replaced with its provenance, and a second import
    replaces it instead of adding to it."""
    out = tmp_path / "mb"
    shutil.copytree(bundled_metabase_dir(), out)
    bundled = load_metabase(out)
    # the bundled metabase carries the published runs' layer: the import replaces it
    own = bundled.tasks[bundled.tasks["source"] != om.SOURCE]
    own_results = bundled.results[bundled.results["task_id"].isin(own["task_id"])]
    argv = ["build-metabase", str(export_folder), "--source", "openml-runs", "--output",
            str(out), "--max-runs-per-task", "10"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "flow 6969 (RandomForestClassifier -> rf): 37 runs read" in printed
    assert "flows with no family in the search space" in printed and "6970" in printed
    for _ in range(2):
        mb = load_metabase(out, space_version=load_space().version)
        layer = mb.tasks[mb.tasks["source"] == om.SOURCE]
        assert len(layer) == 2 and len(mb.tasks) == len(own) + 2
        corpus = mb.tasks[mb.tasks["source"] != om.SOURCE]
        columns = [c for c in own.columns if own[c].notna().any()]
        pd.testing.assert_frame_equal(
            corpus[columns].sort_values("task_id").reset_index(drop=True),
            own[columns].sort_values("task_id").reset_index(drop=True), check_dtype=False)
        old = mb.results[~mb.results["task_id"].isin(layer["task_id"])]
        assert len(old) == len(own_results)
        assert {c for c in own_results["config_id"]} <= set(mb.configs)
        prov = mb.manifest["layers"][om.LAYER]
        assert prov["counts"]["kept"] == 13 and prov["summarising"]["max_runs_per_task"] == 10
        assert mb.manifest["normalisation"] != bundled.manifest["normalisation"]
        assert main(argv + ["--quiet"]) == 0  # the refresh: same layer, nothing doubled
    info = describe_metabase(out)
    assert info["layers"] == {"dir": len(own), "openml-run": 2}
    assert info["layer_provenance"][om.LAYER]["flows"] == ["6969", "6970"]


@pytest.mark.slow
def test_refreshing_metafeatures_keeps_the_layer(export_folder, tmp_path):
    """``--refresh-metafeatures`` recomputes the meta-features of the tasks it has data
    for; the other tasks (here all of them: the layer's, described by OpenML's qualities,
    and the corpus tasks, whose data is not given) keep every column as it was."""
    from automl_meta.meta.builder.local import refresh_metafeatures

    out = tmp_path / "mb"
    shutil.copytree(bundled_metabase_dir(), out)
    assert main(["build-metabase", str(export_folder), "--source", "openml-runs", "--output",
                 str(out), "--max-runs-per-task", "10", "--quiet"]) == 0
    before = load_metabase(out).tasks
    assert (before["source"] == om.SOURCE).sum() == 2 and "licence" in before.columns
    refresh_metafeatures([], out)
    after = load_metabase(out).tasks
    pd.testing.assert_frame_equal(after[before.columns].sort_values("task_id")
                                  .reset_index(drop=True),
                                  before.sort_values("task_id").reset_index(drop=True),
                                  check_dtype=False)


# ----------------------------------------------------------------------- the shared runs
@pytest.fixture(scope="module")
def shared_layer() -> om.RunsLayer:
    bundled = load_metabase(bundled_metabase_dir())
    return om.layer_from_folder(RUNS, reference=bundled.tasks,
                                reference_name=str(bundled_metabase_dir()))


@needs_shared
@needs_runs
@pytest.mark.slow
def test_flow_6969_mapping_on_the_published_runs(shared_layer):
    space = load_space()
    raw = read_table(RUNS / "random_forest.arff.gz")
    rep = shared_layer.report.flows[6969]
    assert rep.runs_read == len(raw) == 47000 and rep.tasks_read == 94
    assert rep.mapped + rep.n_dropped == rep.runs_read
    # clipping counted: exactly the values outside the space's bounds (none were drawn so)
    maxf = raw[f"{RF}max_features"].astype(float)
    leaf = raw[f"{RF}min_samples_leaf"].astype(int)
    split = raw[f"{RF}min_samples_split"].astype(int)
    outside = ((maxf < 0.05) | (maxf > 1.0)).sum() + ((leaf < 1) | (leaf > 20)).sum() + \
        ((split < 2) | (split > 20)).sum()
    assert sum(rep.clipped_values.values()) == outside
    # most_frequent: kept as median where there is nothing to impute, dropped elsewhere
    quals = json.loads((RUNS / om.QUALITIES_FILE).read_text())
    missing = raw["task_id"].astype(int).map(
        lambda t: quals[str(t)]["NumberOfMissingValues"] > 0)
    mf = raw[IMPUTE].astype(str) == "most_frequent"
    assert rep.n_dropped == (mf & missing).sum() > 0
    assert sum(rep.mapped_by_value_rule.values()) == (mf & ~missing).sum()
    assert list(rep.dropped) == [
        f"{IMPUTE}=most_frequent: not in the space (the task has missing values)"]
    tasks = shared_layer.tasks.set_index("task_id")
    for r in shared_layer.results.itertuples():
        cfg = shared_layer.configs[r.config_id]
        assert space.check_config(cfg, tasks.loc[r.task_id, "task"]) is None, cfg
        assert cfg["family"] == "rf" and cfg["rf.n_estimators"] == 100


@needs_shared
@needs_runs
@pytest.mark.slow
def test_adaboost_is_reported_as_no_family(shared_layer):
    rep = shared_layer.report
    ada = rep.flows[6970]
    assert rep.flows_without_family == [6970]
    assert ada.runs_read == 40000 and ada.tasks_read == 100 and ada.mapped == 0
    assert dict(ada.dropped) == {
        "flow 6970 (AdaBoostClassifier): no family in the search space": 40000}
    assert (shared_layer.tasks["openml_flows"] == "6969").all()


@needs_shared
@needs_runs
@pytest.mark.slow
def test_duplicates_are_linked_by_shape(shared_layer):
    bundled = load_metabase(bundled_metabase_dir()).tasks
    bundled = bundled[bundled["source"] != om.SOURCE].set_index("task_id")  # our own tasks
    tasks = shared_layer.tasks.set_index("task_id")
    linked = tasks["linked_task_id"].dropna()
    # classic datasets of both (OpenML task -> corpus file), whatever their names
    for task, corpus in {6: "classification/letter", 37: "classification/diabetes",
                         43: "classification/spambase", 21: "classification/car",
                         2079: "agridata/eucalyptus", 3021: "classification/sick"}.items():
        assert linked[f"openml-run/{task}"] == corpus
    assert len(linked) >= 15 and linked.is_unique
    for task, corpus in linked.items():  # every link is the same shape
        for q in ("NumberOfInstances", "NumberOfClasses", "MajorityClassSize",
                  "MinorityClassSize"):
            assert tasks.loc[task, q] == bundled.loc[corpus, q], (task, corpus, q)
        assert abs(tasks.loc[task, "NumberOfFeatures"]
                   - bundled.loc[corpus, "NumberOfFeatures"]) <= 2
    # kr-vs-kp (task 3) and credit-g (task 31) are not among the bundled metabase's own
    # tasks: none has their shape, so they stay unlinked
    cls = bundled[bundled["task"].isin(["binary", "multiclass"])]
    for task in (3, 31):
        row = tasks.loc[f"openml-run/{task}"]
        assert not ((cls["NumberOfInstances"] == row["NumberOfInstances"])
                    & (cls["MajorityClassSize"] == row["MajorityClassSize"])).any()
        assert pd.isna(row["linked_task_id"])
    # same rows as cylinder.bands, other class sizes (climate-model crashes): not linked;
    # same rows and classes as credit.a but re-encoded (all numeric): reported, not linked
    assert pd.isna(tasks.loc["openml-run/9980", "linked_task_id"])
    assert pd.isna(tasks.loc["openml-run/125923", "linked_task_id"])
    assert any(r["task_id"] == "openml-run/125923" and r["candidate"] ==
               "classification/credit.a" for r in shared_layer.report.link_rejected)


@needs_shared
@needs_runs
@pytest.mark.slow
def test_summarising_bound_on_the_published_runs(shared_layer):
    rep = shared_layer.report
    per_task = shared_layer.results.groupby("task_id").size()
    assert per_task.max() <= om.DEFAULT_MAX_RUNS_PER_TASK
    assert rep.runs_kept == len(shared_layer.results) == per_task.sum()
    assert rep.runs_kept < rep.flows[6969].mapped
    best = shared_layer.results.groupby("task_id")["score"].max()
    tasks = shared_layer.tasks.set_index("task_id")
    assert np.allclose(best, tasks.loc[best.index, "best_score"])
    assert "50 best plus 50 spread" in om.summarising_rule(
        om.DEFAULT_MAX_RUNS_PER_TASK)["rule"]


@needs_shared
@needs_runs
@pytest.mark.slow
def test_cli_writes_a_new_metabase_of_the_layer(tmp_path, capsys):
    out = tmp_path / "layer"
    assert main(["build-metabase", str(RUNS), "--source", "openml-runs", "--output",
                 str(out)]) == 0
    printed = capsys.readouterr().out
    assert "flow 6969 (RandomForestClassifier -> rf): 47000 runs read" in printed
    assert "flow 6970 (AdaBoostClassifier -> no family in the space)" in printed
    mb = load_metabase(out, space_version=load_space().version)
    assert len(mb.tasks) == 94 and (mb.tasks["source"] == om.SOURCE).all()
    assert len(mb.results) == 9400 and (mb.results["state"] == "COMPLETE").all()
    assert mb.tasks["linked_task_id"].notna().sum() >= 15
    prov = mb.manifest["layers"][om.LAYER]
    assert prov["source"] == str(RUNS)
    assert prov["files_sha256"] == {p.name: file_sha256(p) for p in RUNS.iterdir()
                                    if p.name.endswith((".arff.gz", ".json"))}
    assert set(prov["flows"]) == {"6969", "6970"} and prov["flows_without_family"] == [6970]
    assert prov["flows"]["6969"]["mapping"] == "6969.yaml"
    assert prov["counts"]["runs_read"] == 87000 and prov["counts"]["kept"] == 9400
    assert prov["counts"]["mapped"] + prov["counts"]["dropped"] == 87000
    assert prov["summarising"]["max_runs_per_task"] == 100
    assert prov["licence"] == "BSD-3-Clause" and "Hutter" in prov["citation"]
    assert prov["date"] and prov["linked_against"] == str(bundled_metabase_dir())
    assert mb.manifest["portfolio"]["classification"]
    assert describe_metabase(out)["layers"] == {"openml-run": 94}
