"""The user's history: every fit recorded, the next fit on the same table starting from it."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl_meta.cli import main
from automl_meta.errors import HistoryError
from automl_meta.meta.history import History, RunRecord, as_metabase, schema_fingerprint
from automl_meta.meta.metabase import load_metabase
from automl_meta.search.space import load_space


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    frame["colour"] = rng.choice(["vermilion", "teal", "ochre"], size=n)
    score = X[:, 0] - 0.8 * X[:, 1] + 0.6 * (frame["colour"] == "teal") \
        + rng.normal(scale=0.7, size=n)
    frame["label"] = np.where(score > 0, "approved", "declined")
    return frame


def _fit(capsys, data: Path, run: Path, *extra: str, trials: int = 6) -> dict:
    capsys.readouterr()
    code = main(["fit", str(data), "--target", "label", "--n-trials", str(trials), "--n-jobs", "1",
                 "--output", str(run), "--json", "--no-report", *extra])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def _record(run_id: str, score: float, fingerprint: str = "f" * 16) -> RunRecord:
    config = {"family": "linear", "linear.C": score}
    return RunRecord(run_id=run_id, name="t", fingerprint=fingerprint, task="binary",
                     target="y", metric="accuracy", greater_is_better=True, n_rows=100,
                     n_features=3, n_classes=2, n_folds=5, best_score=score,
                     best_config=config, final_config=config,
                     metafeatures={"NumberOfInstances": 100.0},
                     search_space_version="v", trials=[
                         {"trial": 0, "state": "COMPLETE", "score": score, "fit_seconds": 0.1,
                          "duration": 0.2, "origin": "tpe", "config": config}])


def _append_many(folder: str, prefix: str, n: int) -> None:
    history = History(folder)
    for i in range(n):
        history.append(_record(f"{prefix}-{i:03d}", 0.5 + i / 1000))


@pytest.mark.slow
def test_second_fit_starts_from_the_first_ones_best(tmp_path, capsys, _own_history):
    """Two samples of one table: the second fit's first trial is the first fit's best
    configuration, it reaches that score within its first trials, and both are listed."""
    table = _table(3000, 0)
    first_csv, second_csv = tmp_path / "march.csv", tmp_path / "april.csv"
    table.iloc[:1500].to_csv(first_csv, index=False)
    table.iloc[1500:].to_csv(second_csv, index=False)
    first = _fit(capsys, first_csv, tmp_path / "run1")
    second = _fit(capsys, second_csv, tmp_path / "run2")

    lb = pd.read_csv(tmp_path / "run2" / "leaderboard.csv").sort_values("trial")
    head = lb.iloc[0]
    assert head["origin"].startswith("history:")
    assert json.loads(head["config"]) == first["best"]["config"]
    # on another sample of 1500 rows: within about three standard errors of a CV accuracy
    early = lb[lb["state"] == "COMPLETE"].head(3)["score"].max()
    assert early >= first["best"]["cv_score"] - 0.03
    assert any("same schema" in line for line in second["warm_start"]["log"])
    # the first fit's scores are told to the second one's sampler, not evaluated again:
    # they are in its study, marked, and not among its trials
    import optuna

    from automl_meta.search.study import journal_storage
    told = [line for line in second["warm_start"]["log"] if "sampler starts from" in line]
    assert len(told) == 1
    study = optuna.load_study(study_name=None, storage=journal_storage(
        tmp_path / "run2" / "study.journal"))
    observed = [t for t in study.trials if t.user_attrs.get("observed")]
    assert 1 <= len(observed) <= first["trials"]["total"]
    assert f"from {len(observed)} scores" in told[0]
    assert {t.user_attrs["origin"] for t in observed} == {head["origin"]}
    assert len(lb) == second["trials"]["total"] == 6
    assert not lb["origin"].isin([t.user_attrs["origin"] for t in observed]).all()
    # the earlier fit of this table came first; it is not a neighbour as well
    assert not any(n["task_id"].startswith("history:")
                   for n in second["warm_start"]["neighbors"])

    capsys.readouterr()
    assert main(["report", str(tmp_path / "run2")]) == 0
    page = (tmp_path / "run2" / "report.html").read_text()
    assert "Evaluated first: the best configurations of your earlier fit" in page
    assert "your fit " + head["origin"].split(":", 1)[1] in page  # the leaderboard's origin

    capsys.readouterr()
    assert main(["history", "list", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert len(runs) == 2 and runs[0]["name"] == "april.csv" and runs[1]["name"] == "march.csv"
    assert runs[0]["fingerprint"] == runs[1]["fingerprint"]
    assert main(["history", "show", runs[1]["run"][:20], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["best_config"] == first["best"]["config"]
    assert len(shown["trials"]) == first["trials"]["total"]
    # nothing of the data itself: no row values, no class labels
    raw = (_own_history / "history.sqlite").read_bytes()
    for value in (b"vermilion", b"teal", b"ochre", b"approved", b"declined"):
        assert value not in raw
    assert f"{table['x0'].iloc[0]:.6f}".encode()[:8] not in raw


@pytest.mark.slow
def test_against_the_clock_history_configs_start_before_the_meta_features(
        tmp_path, capsys, _own_history):
    """With a time budget, the history's configurations start at once; the strategy's
    list, computed meanwhile, is evaluated after them in the same search."""
    data = tmp_path / "t.csv"
    _table(400, 2).to_csv(data, index=False)
    first = _fit(capsys, data, tmp_path / "run1")
    capsys.readouterr()
    assert main(["fit", str(data), "--target", "label", "--time-budget", "8", "--n-jobs", "1",
                 "--output", str(tmp_path / "run2"), "--json", "--no-report"]) == 0
    second = json.loads(capsys.readouterr().out)
    events = {e["event"]: e["seconds"] for e in second["timeline"]}
    # the search did not wait for the warm start (whether it started before the
    # meta-features were done is a race of a few milliseconds on a 400-row table)
    assert events["search start"] < events["warm start ready"]
    assert events["meta-features"] <= events["warm start ready"]
    assert any("started while the meta-features were computed" in line
               for line in second["warm_start"]["log"])
    lb = pd.read_csv(tmp_path / "run2" / "leaderboard.csv").sort_values("trial")
    assert json.loads(lb.iloc[0]["config"]) == first["best"]["config"]
    origins = list(lb["origin"])
    learned = [i for i, o in enumerate(origins) if o.startswith("learned:")]
    assert learned, origins  # enqueued while the search ran, and evaluated
    # the worker waited for the strategy's list rather than start a sampled configuration;
    # the defaults a fit without history starts with came right after the history's best
    hgb = load_space().default_config("hgb", "binary")
    assert origins[1] == "default:hgb" or json.loads(lb.iloc[0]["config"]) == hgb, origins
    assert all(o.startswith(("history:", "default:")) for o in origins[:min(learned)]), origins
    assert second["warm_start"]["neighbors"]  # the meta-features were computed meanwhile


def test_no_history_neither_uses_nor_records(tmp_path, capsys, _own_history):
    data = tmp_path / "t.csv"
    _table(300, 1).to_csv(data, index=False)
    _fit(capsys, data, tmp_path / "run1", trials=2)
    summary = _fit(capsys, data, tmp_path / "run2", "--no-history", trials=2)
    assert not any(o.startswith("history:") for o in summary["trials"]["by_origin"])
    assert len(History(_own_history).runs()) == 1


@pytest.mark.slow
def test_truncated_history_is_reported_and_the_fit_goes_on(tmp_path, capsys, _own_history):
    data = tmp_path / "t.csv"
    _table(300, 2).to_csv(data, index=False)
    _fit(capsys, data, tmp_path / "run1", trials=2)
    path = _own_history / "history.sqlite"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    summary = _fit(capsys, data, tmp_path / "run2", trials=2)
    assert any("history is not used" in w for w in summary["warnings"]), summary["warnings"]
    assert any("not recorded in the history" in w for w in summary["warnings"])
    assert not any(o.startswith("history:") for o in summary["trials"]["by_origin"])
    capsys.readouterr()
    assert main(["history", "list"]) == 2  # reported, with the way out
    assert "forget --all" in capsys.readouterr().err
    assert main(["history", "forget", "--all"]) == 0
    assert not path.exists()


def test_a_foreign_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "history.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE notes (x TEXT)")
        con.execute("INSERT INTO notes VALUES ('mine')")
    before = path.read_bytes()
    history = History(tmp_path)
    with pytest.raises(HistoryError, match="not an automl-meta history"):
        history.append(_record("r1", 0.7))
    with pytest.raises(HistoryError, match="not an automl-meta history"):
        history.runs()
    assert path.read_bytes() == before


def test_concurrent_appends_all_land(tmp_path):
    """Two processes appending at the same time (two CI jobs on one runner)."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), p, 15)) for p in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    runs = History(tmp_path).runs()
    assert len(runs) == 30 and runs["run_id"].is_unique
    assert len(History(tmp_path).trials()) == 30


def test_size_bound_drops_the_oldest(tmp_path):
    history = History(tmp_path)
    for i in range(5):
        history.append(_record(f"r{i}", 0.6), max_runs=3)
    assert sorted(history.runs()["run_id"]) == ["r2", "r3", "r4"]
    assert set(history.trials()["run_id"]) == {"r2", "r3", "r4"}  # their trials went too


def test_same_schema_gives_best_first_newest_run_first(tmp_path):
    history = History(tmp_path)
    rec = _record("old", 0.9)
    rec.trials.append({"trial": 1, "state": "COMPLETE", "score": 0.95, "fit_seconds": 0.1,
                       "duration": 0.1, "origin": "tpe",
                       "config": {"family": "linear", "linear.C": 2.0}})
    history.append(rec)
    history.append(_record("new", 0.8))
    history.append(_record("other", 0.99, fingerprint="0" * 16))
    history.append(_record("tie", 0.5, fingerprint="1" * 16))  # two trials, one score
    tie = _record("tie2", 0.5, fingerprint="1" * 16)
    tie.trials.append({**tie.trials[0], "trial": 1, "config": {"family": "linear",
                                                               "linear.C": 9.0}})
    history.append(tie)
    assert [p.config["linear.C"] for p in history.same_schema("1" * 16, "binary", "v", 5)
            ] == [0.5]  # the newest run's first, its tie skipped, the older run's the same
    got = history.same_schema("f" * 16, "binary", "v", 5)
    assert [p.origin for p in got] == ["history:new", "history:old", "history:old"]
    assert [p.score for p in got] == [0.8, 0.95, 0.9]
    # what the trial cost there, scaled to another fit: twice the rows, 3 folds instead of 5
    assert got[0].seconds_for(200, 3) == pytest.approx(0.2 * 2 * 3 / 5)
    assert history.same_schema("f" * 16, "binary", "another space", 5) == []


def test_fingerprint_is_the_schema_not_the_rows():
    cols = {"a": "numeric", "b": "categorical"}
    fp = schema_fingerprint(cols, "y", "binary")
    assert fp == schema_fingerprint(dict(reversed(cols.items())), "y", "multiclass")
    assert fp != schema_fingerprint({**cols, "b": "numeric"}, "y", "binary")
    assert fp != schema_fingerprint(cols, "z", "binary")
    assert fp != schema_fingerprint(cols, "y", "regression")


@pytest.mark.slow
def test_export_is_a_metabase_fit_can_use(tmp_path, capsys, _own_history):
    data = tmp_path / "t.csv"
    _table(300, 3).to_csv(data, index=False)
    _fit(capsys, data, tmp_path / "run1", trials=2)
    capsys.readouterr()
    assert main(["history", "export", str(tmp_path / "mb")]) == 0
    from automl_meta.search.space import load_space

    mb = load_metabase(tmp_path / "mb", space_version=load_space().version)
    assert len(mb.ok_tasks()) == 1 and mb.tasks["task_id"][0].startswith("history:")
    assert len(mb.results) == len(as_metabase(History(_own_history)).results)
    summary = _fit(capsys, data, tmp_path / "run2", "--no-history", "--metabase",
                   str(tmp_path / "mb"), trials=2)
    assert summary["warm_start"]["neighbors"][0]["task_id"].startswith("history:")
