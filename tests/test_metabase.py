"""build-metabase end to end, resume after a kill, integrity checks, the openml source."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl_meta.cli import main
from automl_meta.errors import MetabaseError
from automl_meta.meta.builder.local import build_metabase
from automl_meta.meta.builder.sources.directory import list_tasks
from automl_meta.meta.metabase import load_metabase

from .conftest import needs_shared, shared_path

TIMING = ["fit_seconds", "duration"]


@pytest.fixture()
def corpus(tmp_path) -> Path:
    """A folder of three small datasets in three formats, with a manifest."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "corpus"
    folder.mkdir()
    n = 80
    a = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    a["cls"] = np.where(a.x1 + rng.normal(scale=0.5, size=n) > 0, "pos", "neg")
    a.to_csv(folder / "alpha.csv", index=False)
    b = pd.DataFrame({"u": rng.normal(size=n), "c": rng.choice(list("abc"), size=n)})
    b["t"] = b.u * 3 + (b.c == "a") + rng.normal(scale=0.1, size=n)
    b.to_parquet(folder / "beta.parquet")
    lines = ["@relation gamma", "@attribute f numeric", "@attribute g {p,q}",
             "@attribute k {one,two,three}", "@data"]
    for i in range(n):
        f = rng.normal()
        k = ["one", "two", "three"][int(f > 0) + (i % 3 == 0)]
        lines.append(f"{f:.4f},{'p' if i % 2 else 'q'},{k}")
    (folder / "gamma.arff").write_text("\n".join(lines) + "\n")
    pd.DataFrame({"name": ["alpha", "beta", "gamma"],
                  "file": ["alpha.csv", "beta.parquet", "gamma.arff"],
                  "task": ["classification", "regression", "classification"],
                  "target": ["cls", "t", "k"], "openml_id": ["", "", "61"]}
                 ).to_csv(folder / "manifest.csv", index=False)
    return folder


def _without_timing(mb):
    tasks = mb.tasks.drop(columns=["search_seconds"]).sort_values("task_id")
    results = mb.results.drop(columns=TIMING).sort_values(["task_id", "trial"])
    return tasks.reset_index(drop=True), results.reset_index(drop=True), mb.configs


@pytest.mark.slow
def test_build_from_folder_end_to_end(corpus, tmp_path, capsys):
    out = tmp_path / "mb"
    code = main(["build-metabase", str(corpus), "--output", str(out), "--trials-per-task", "4",
                 "--n-jobs", "2"])
    assert code == 0
    mb = load_metabase(out)
    assert mb.manifest["status"] == "complete"
    assert set(mb.tasks["task_id"]) == {"alpha", "beta", "gamma"}
    assert (mb.tasks["status"] == "ok").all()
    assert dict(zip(mb.tasks.task_id, mb.tasks.task, strict=True)) == {
        "alpha": "binary", "beta": "regression", "gamma": "multiclass"}
    assert mb.results.groupby("task_id").size().to_dict() == {"alpha": 4, "beta": 4, "gamma": 4}
    assert set(mb.results["config_id"]) <= set(mb.configs)
    assert mb.manifest["openml_ids"] == {"gamma": 61}
    assert mb.manifest["source"]["manifest_sha256"]
    assert "NumberOfInstances" in mb.tasks.columns
    capsys.readouterr()
    assert main(["metabase", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["checksums_ok"] and info["counts"]["tasks"] == 3


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted(corpus, tmp_path):
    reference = tmp_path / "reference"
    build_metabase(list_tasks(corpus), reference, trials_per_task=3)

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "automl_meta", "build-metabase", str(corpus), "--output",
           str(out), "--trials-per-task", "3", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill once the first task is stored
        manifest = out / "manifest.json"
        if manifest.exists() and json.loads(manifest.read_text())["counts"]["tasks"] >= 1:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = load_metabase(out)
    assert partial.manifest["status"] == "partial" and 1 <= len(partial.tasks) < 3

    assert main(["build-metabase", str(corpus), "--output", str(out), "--trials-per-task",
                 "3", "--resume", "--quiet"]) == 0
    resumed = load_metabase(out)
    assert resumed.manifest["status"] == "complete"
    a, b = _without_timing(resumed), _without_timing(load_metabase(reference))
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert a[2] == b[2]


@pytest.mark.slow
def test_existing_metabase_needs_resume_or_overwrite(corpus, tmp_path, capsys):
    out = tmp_path / "mb"
    build_metabase(list_tasks(corpus)[:1], out, trials_per_task=2)
    capsys.readouterr()
    assert main(["build-metabase", str(corpus), "--output", str(out),
                 "--trials-per-task", "2"]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.slow
def test_corrupt_and_mismatched_metabases_are_refused(corpus, tmp_path, capsys):
    out = tmp_path / "mb"
    build_metabase(list_tasks(corpus)[:1], out, trials_per_task=2)
    load_metabase(out)  # intact

    with pytest.raises(MetabaseError, match="search space"):
        load_metabase(out, space_version="0000000000000000")

    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    with open(bad / "results.csv", "a") as fh:
        fh.write("alpha,deadbeef0000,99,COMPLETE,1.0,0.1,0.1\n")
    with pytest.raises(MetabaseError, match="checksum"):
        load_metabase(bad)
    capsys.readouterr()
    assert main(["metabase", "info", str(bad)]) == 0
    assert "MISMATCH: results.csv" in capsys.readouterr().out

    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(MetabaseError, match="corrupt manifest"):
        load_metabase(bad)
    (bad / "manifest.json").unlink()
    with pytest.raises(MetabaseError, match="not a metabase"):
        load_metabase(bad)


@pytest.mark.slow
def test_failed_task_is_recorded_and_build_goes_on(corpus, tmp_path):
    (corpus / "beta.parquet").write_bytes(b"not parquet at all")
    out = tmp_path / "mb"
    build_metabase(list_tasks(corpus), out, trials_per_task=2)
    mb = load_metabase(out)
    row = mb.tasks.set_index("task_id").loc["beta"]
    assert row["status"] == "failed" and "load" in row["error"]
    assert (mb.tasks.set_index("task_id").loc[["alpha", "gamma"], "status"] == "ok").all()


@needs_shared
@pytest.mark.slow
def test_openml_source_on_fixtures(tmp_path):
    """The real openml client, offline, on openml-python's own test cache (task 1882)."""
    from automl_meta.meta.builder.sources import openml_source

    cache = tmp_path / "openml-cache"
    shutil.copytree(shared_path("openml-fixtures"), cache)
    openml_source.configure(cache, "https://test.openml.org/api/v1/xml")
    loaded = openml_source.load_task(1882)
    assert loaded.dataset.name == "anneal" and loaded.dataset.n_rows == 898
    assert loaded.extra["openml_dataset_id"] == 2
    assert len(loaded.folds) == 10  # the task's own 10-fold split
    out = tmp_path / "mb"
    build_metabase(openml_source.list_tasks([1882]), out, trials_per_task=3,
                   source={"type": "openml", "task_ids": [1882]})
    mb = load_metabase(out)
    row = mb.tasks.iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["openml_id"] == 2 and row["n_folds"] == 10 and row["task"] == "multiclass"
