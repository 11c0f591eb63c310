"""Run directories are untrusted input: crafted model files, manifests and output paths.

Covers docs/security.md: the skops allow-lists (types, functions), the pickle gate, the
model file checks (regular file, exact name), manifest validation, the ``--overwrite`` rules
and the staging lock.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl_meta.artifacts.ensemble import Ensemble
from automl_meta.artifacts.model import TabularModel
from automl_meta.artifacts.rundir import (
    LEGACY_MODULES,
    SKOPS_ALLOWED_FUNCTIONS,
    SKOPS_ALLOWED_TYPE_VALUES,
    SKOPS_ALLOWED_TYPES,
    RunStaging,
    _dump_skops,
    load_run,
    skops_references,
    skops_refusals,
    write_run_dir,
)
from automl_meta.cli import main
from automl_meta.data import file_sha256, load_dataset, prepare_dataset
from automl_meta.errors import ModelIntegrityError, UsageError
from automl_meta.search.pipeline import build_pipeline
from automl_meta.search.space import load_space

sio = pytest.importorskip("skops.io")


def run_cli(*args: object, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh interpreter (a hang fails the test)."""
    full_env = {k: v for k, v in os.environ.items() if k != "AUTOML_META_ALLOW_PICKLE"}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return subprocess.run([sys.executable, "-m", "automl_meta", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd)


def cli_in_process(capsys, *args: object) -> tuple[int, str]:
    """automl_meta.cli.main in this process: (exit code, the one stderr line)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 1, err
    return code, err


def _fit(data: Path, out: Path, *extra: str) -> None:
    code = main(["fit", str(data), "--target", "label", "--n-trials", "2", "--no-warm-start",
                 "--output", str(out), "--quiet", "--no-report", *extra])
    assert code == 0


@pytest.fixture(scope="module")
def skops_run(small_csv, tmp_path_factory) -> Path:
    """A run directory written by the default fit (skops)."""
    out = tmp_path_factory.mktemp("runs") / "skops_run"
    _fit(small_csv, out)
    return out


@pytest.fixture(scope="module")
def joblib_run(small_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "joblib_run"
    _fit(small_csv, out, "--model-format", "joblib")
    return out


@pytest.fixture()
def run_copy(skops_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(skops_run, dst)
    return dst


def _edit_manifest(run: Path, **changes: object) -> None:
    doc = json.loads((run / "manifest.json").read_text())
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    (run / "manifest.json").write_text(json.dumps(doc))


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    err = r.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    return err


# ------------------------------------------------------------------ the allow-list's scope
def _mixed_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "num": rng.normal(size=n),
        "num_missing": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        "cat": rng.choice(["red", "green", "blue"], size=n),
        "cat_high": rng.choice([f"v{i}" for i in range(40)], size=n),  # ordinal / target enc.
        "cat_huge": [f"w{i % 280}" for i in range(n)],  # above native_max_categories (250)
        "flag": rng.choice(["true", "false"], size=n),
        "when": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
    })


def _variants(space, family: str, task: str) -> list[tuple[dict, dict]]:
    """(config, build_pipeline keywords) covering every preprocessing step of a family."""
    small = {"rf.n_estimators": 3, "et.n_estimators": 3, "hgb.max_iter": 5, "mlp.width": 16}
    base = space.default_config(family, task)
    base |= {k: v for k, v in small.items() if k in base}
    out = [(base, {})]
    if f"{family}.scaler" in base:
        out += [(base | {f"{family}.scaler": s}, {}) for s in ("robust", "quantile")]
    if family == "linear" and task == "regression":
        out.append((base | {"linear.penalty": "elasticnet", "linear.l1_ratio": 0.5}, {}))
    if family == "svm" and task != "regression":
        out.append((base, {"min_class_count": 1}))  # too rare to calibrate: a plain SVC
    if family == "knn":
        out.append((base | {"knn.p": 1, "knn.weights": "distance"}, {}))
    if family == "mlp":
        out.append((base, {"n_rows": 1000}))  # early stopping
    return out


@pytest.mark.slow
def test_allow_list_is_exactly_what_every_family_contains(tmp_path):
    """Every family, task kind and preprocessing step round-trips through skops and
    load_run; together they use every allow-listed name (no stale entries)."""
    space = load_space()
    wide = _mixed_frame(300)
    rng = np.random.default_rng(1)
    narrow = pd.DataFrame({"u": rng.normal(size=300), "v": rng.normal(size=300)})  # trees
    seen: dict[str, set[str]] = {"types": set(), "functions": set(), "type_values": set()}
    run = tmp_path / "run"
    targets = {"binary": np.where(wide["num"] > 0, "yes", "no"),
               "multiclass": np.array(["a", "b", "c"])[np.arange(300) % 3],
               "regression": wide["num"].to_numpy() * 3 + rng.normal(size=300)}
    for task, target in targets.items():
        members: list = []  # (pipeline, dataset) of the wide frame, for an Ensemble
        for frame in (wide, narrow):
            ds = prepare_dataset(frame.assign(y=target), "y", task, name="t",
                                 sha256="0" * 64)
            y = (ds.y.to_numpy() if task == "regression"
                 else pd.Series(ds.y).map({c: i for i, c in enumerate(ds.classes)}).to_numpy())
            for family in space.families:
                if frame is narrow and family not in ("knn", "hgb"):
                    continue
                for config, kw in _variants(space, family, task):
                    pipe = build_pipeline(config, ds.schema, task, space,
                                          n_rows=kw.get("n_rows", len(y)),
                                          n_classes=len(ds.classes or []), final=True,
                                          min_class_count=kw.get("min_class_count"))
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        pipe.fit(ds.X, y)
                    if frame is wide:
                        members.append((pipe, ds, y))
                    model = TabularModel(pipe, ds.schema, task, "y", ds.classes, config)
                    manifest = {"target": "y", "task": task, "metric": "accuracy"}
                    write_run_dir(run, model, manifest, pd.DataFrame(), {}, overwrite=True)
                    with zipfile.ZipFile(run / "model.skops") as zf:
                        refs = skops_references(json.loads(zf.read("schema.json")))
                    assert skops_refusals(refs) == [], (family, task, config, kw)
                    for key in seen:
                        seen[key] |= refs[key]
                    _, loaded = load_run(run)
                    np.testing.assert_array_equal(loaded.predict(ds.X), model.predict(ds.X))
        # the final model of an ensemble selection: fitted pipelines and their weights
        (first, ds, y), (second, _, _) = members[0], members[-1]
        ensemble = Ensemble([first, second], [0.7, 0.3], task, len(ds.classes or []), [0, 1])
        model = TabularModel(ensemble, ds.schema, task, "y", ds.classes, {"family": "ensemble"})
        write_run_dir(run, model, {"target": "y", "task": task, "metric": "accuracy"},
                      pd.DataFrame(), {}, overwrite=True)
        with zipfile.ZipFile(run / "model.skops") as zf:
            refs = skops_references(json.loads(zf.read("schema.json")))
        assert skops_refusals(refs) == [], task
        for key in seen:
            seen[key] |= refs[key]
        _, loaded = load_run(run)
        np.testing.assert_array_equal(loaded.predict(ds.X), model.predict(ds.X))
        if task != "regression":
            np.testing.assert_allclose(loaded.predict_proba(ds.X), model.predict_proba(ds.X))
    assert seen["functions"] == set(SKOPS_ALLOWED_FUNCTIONS)
    assert seen["type_values"] == set(SKOPS_ALLOWED_TYPE_VALUES)
    legacy = {f"{old}.{name}" for old in LEGACY_MODULES
              for name in ("TabularModel", "FeaturePreparer")} | {
        "automl_meta.data.Schema", "automl_meta.data.Column"}
    assert seen["types"] == set(SKOPS_ALLOWED_TYPES) - (legacy & set(SKOPS_ALLOWED_TYPES))


# ------------------------------------------------------------------ the crafted skops file
def _craft_exploit(small_csv: Path, model_path: Path, marker: Path) -> None:
    """A model.skops that runs ``touch MARKER`` at predict: a ColumnTransformer step named
    like a shell command feeds its column names to a FunctionTransformer whose func is
    ``sklearn.utils._testing.check_output`` (that is, subprocess.check_output) with
    shell=True."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    ds = load_dataset(small_csv, "label")
    y = pd.Series(ds.y).map({c: i for i, c in enumerate(ds.classes)}).to_numpy()
    command = f"touch {shlex.quote(str(marker))}; #"
    assert "__" not in command
    ct = ColumnTransformer([(command, "passthrough", ["a"])], verbose_feature_names_out=True
                           ).set_output(transform="pandas")
    run = FunctionTransformer()  # identity while fitting
    pipe = Pipeline([("prepare", ct), ("run", run), ("model", LogisticRegression())])
    pipe.fit(ds.X, y)
    from sklearn.utils._testing import check_output

    run.func, run.kw_args = check_output, {"shell": True}
    model = TabularModel(pipe, ds.schema, ds.task, "label", ds.classes, {"family": "linear"})
    buf = io.BytesIO(sio.dumps(model))
    with zipfile.ZipFile(buf) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    schema = json.loads(entries["schema.json"])

    def redirect(node: object) -> int:
        hits = 0
        if isinstance(node, dict):
            if node.get("__loader__") == "FunctionNode" and node["__class__"] == "check_output":
                node["__module__"] = "sklearn.utils._testing"  # a re-export under sklearn.
                hits += 1
            hits += sum(redirect(v) for v in node.values())
        elif isinstance(node, list):
            hits += sum(redirect(v) for v in node)
        return hits

    assert redirect(schema) == 1
    entries["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(model_path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


@pytest.mark.slow
def test_crafted_skops_file_is_refused_and_never_runs(small_csv, run_copy, tmp_path):
    marker = tmp_path / "pwned"
    _craft_exploit(small_csv, run_copy / "model.skops", marker)
    _edit_manifest(run_copy, model_sha256=file_sha256(run_copy / "model.skops"))

    for command in ("predict", "evaluate"):
        r = run_cli(command, run_copy, small_csv, "--allow-pickle")
        assert r.returncode == 2, r.stderr
        err = _one_line_error(r)
        assert "function sklearn.utils._testing.check_output" in err
        assert not marker.exists()
    with pytest.raises(ModelIntegrityError, match="check_output"):
        load_run(run_copy, allow_pickle=True)
    assert not marker.exists()

    # the payload is live: the former check (any name starting with "sklearn.") passed it,
    # and skops builds it when told to trust those names
    untrusted = sio.get_untrusted_types(file=run_copy / "model.skops")
    former = {"automl_meta.artifacts.model.TabularModel",
              "automl_meta.search.pipeline.FeaturePreparer", "automl_meta.data.schema.Schema",
              "automl_meta.data.schema.Column", "numpy.dtype"}
    assert "sklearn.utils._testing.check_output" in untrusted
    assert all(t in former or t.startswith("sklearn.") for t in untrusted)
    model = sio.load(run_copy / "model.skops", trusted=untrusted)
    with pytest.raises(Exception):  # noqa: B017 - whatever follows the payload fails
        model.predict(pd.read_csv(small_csv))
    assert marker.exists()


@pytest.mark.parametrize("name", ["builtins.eval", "os.system", "subprocess.Popen"])
def test_function_and_type_references_outside_the_lists_are_refused(name):
    module, attr = name.rsplit(".", 1)
    node = {"__loader__": "FunctionNode", "__module__": module, "__class__": attr}
    typed = {"__loader__": "TypeNode", "__module__": module, "__class__": attr}
    method = {"__loader__": "MethodNode", "__module__": "sklearn.pipeline",
              "__class__": "Pipeline", "content": {"func": "fit", "obj": {}}}
    for state, kind in [(node, "function"), (typed, "class value"), (method, "node kind")]:
        refused = skops_refusals(skops_references({"__loader__": "ListNode",
                                                   "content": [state]}))
        assert any(r.startswith(kind) for r in refused), (state, refused)
    assert skops_refusals(skops_references({"__loader__": "ObjectNode", "__module__": module,
                                            "__class__": attr})) == [f"type {name}"]


# --------------------------------------------------------------------------- pickle gate
@pytest.mark.slow
def test_pickle_models_need_allow_pickle(joblib_run, small_csv, tmp_path):
    assert (joblib_run / "model.joblib").exists()
    r = run_cli("predict", joblib_run, small_csv)
    assert r.returncode == 2
    err = _one_line_error(r)
    assert "pickle" in err and "--model-format skops" in err and "--allow-pickle" in err
    r = run_cli("evaluate", joblib_run, small_csv)
    assert r.returncode == 2 and "pickle" in r.stderr
    assert run_cli("predict", joblib_run, small_csv, "--allow-pickle").returncode == 0
    r = run_cli("evaluate", joblib_run, small_csv, env={"AUTOML_META_ALLOW_PICKLE": "1"})
    assert r.returncode == 0, r.stderr
    with pytest.raises(UsageError, match="pickle"):
        load_run(joblib_run, allow_pickle=False)
    assert isinstance(load_run(joblib_run, allow_pickle=True)[1], TabularModel)


@pytest.mark.slow
def test_manifest_swapping_the_format_to_joblib_is_refused(run_copy, small_csv, tmp_path):
    # a pickle planted next to a manifest that now says joblib, checksum and all
    marker = tmp_path / "pwned"
    payload = (b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    (run_copy / "model.joblib").write_bytes(payload)
    (run_copy / "model.skops").unlink()
    _edit_manifest(run_copy, model_format="joblib", model_file="model.joblib",
                   model_sha256=file_sha256(run_copy / "model.joblib"))
    r = run_cli("predict", run_copy, small_csv)
    assert r.returncode == 2 and "pickle" in _one_line_error(r)
    assert not marker.exists()


@pytest.mark.slow
def test_a_0_1_0_run_directory_still_loads(run_copy, small_csv):
    _edit_manifest(run_copy, format_version=None)  # the 0.1.0 layout had no format_version
    r = run_cli("predict", run_copy, small_csv)
    assert r.returncode == 0, r.stderr
    assert len(pd.read_csv(io.StringIO(r.stdout))) == 160


# ----------------------------------------------------------------------- the model file
@pytest.mark.parametrize("case", ["dev_zero", "fifo", "outside", "symlink_outside",
                                  "symlink_dev_zero", "absolute", "wrong_name_for_format",
                                  "directory"])
@pytest.mark.slow
def test_model_file_must_be_a_regular_file_in_the_run_dir(case, run_copy, small_csv, tmp_path):
    model = run_copy / "model.skops"
    outside = tmp_path / "outside.skops"
    shutil.copy(model, outside)
    if case == "dev_zero":
        _edit_manifest(run_copy, model_file="/dev/zero")
    elif case == "fifo":
        model.unlink()
        os.mkfifo(model)
    elif case == "outside":
        _edit_manifest(run_copy, model_file="../outside.skops")
    elif case == "symlink_outside":
        model.unlink()
        model.symlink_to(outside)
    elif case == "symlink_dev_zero":
        model.unlink()
        model.symlink_to("/dev/zero")
    elif case == "absolute":
        _edit_manifest(run_copy, model_file=str(outside))
    elif case == "wrong_name_for_format":
        _edit_manifest(run_copy, model_file="model.joblib")
        shutil.copy(outside, run_copy / "model.joblib")
    elif case == "directory":
        model.unlink()
        model.mkdir()
    started = time.monotonic()
    r = run_cli("predict", run_copy, small_csv, "--allow-pickle", timeout=60)
    assert r.returncode == 2, r.stderr
    _one_line_error(r)
    assert time.monotonic() - started < 60


# ---------------------------------------------------------------------- the manifest
@pytest.mark.parametrize("case, expect", [
    ("list", "not an object"), ("not_utf8", "not UTF-8"), ("not_json", "not JSON"),
    ("missing_target", "missing target"), ("missing_sha", "missing model_sha256"),
    ("bad_sha", "not a SHA-256"), ("newer_version", "newer automl-meta"),
    ("version_string", "format_version"), ("target_not_string", "target is not a string"),
    ("model_format_unknown", "unknown model_format"), ("deep", "not JSON"),
])
@pytest.mark.slow
def test_untrusted_manifest_gives_exit_2(case, expect, run_copy, small_csv, capsys,
                                         monkeypatch):
    monkeypatch.delenv("AUTOML_META_ALLOW_PICKLE", raising=False)
    path = run_copy / "manifest.json"
    doc = json.loads(path.read_text())
    if case == "list":
        path.write_text(json.dumps([doc]))
    elif case == "not_utf8":
        path.write_bytes(b"\xff\xfe{\x00")
    elif case == "not_json":
        path.write_text("{target: y")
    elif case == "missing_target":
        _edit_manifest(run_copy, target=None)
    elif case == "missing_sha":
        _edit_manifest(run_copy, model_sha256=None)
    elif case == "bad_sha":
        _edit_manifest(run_copy, model_sha256="abc")
    elif case == "newer_version":
        _edit_manifest(run_copy, format_version=99)
    elif case == "version_string":
        _edit_manifest(run_copy, format_version="2")
    elif case == "target_not_string":
        _edit_manifest(run_copy, target=["label"])
    elif case == "model_format_unknown":
        _edit_manifest(run_copy, model_format="pickle")
    elif case == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    for command in ("predict", "evaluate"):
        code, err = cli_in_process(capsys, command, run_copy, small_csv)
        assert code == 2 and expect in err, err


# ------------------------------------------------------------------------- --overwrite
def test_overwrite_refuses_a_folder_holding_the_data(small_csv, tmp_path, capsys):
    folder = tmp_path / "project"
    folder.mkdir()
    data = folder / "train.csv"
    shutil.copy(small_csv, data)
    (folder / "notes.txt").write_text("keep me")
    code, err = cli_in_process(capsys, "fit", data, "--target", "label", "--n-trials", "1",
                               "--output", folder, "--overwrite", "--quiet")
    assert code == 2 and "never replaced" in err
    assert data.read_bytes() == small_csv.read_bytes()
    assert (folder / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("output", [".", "..", "home", "link"])
def test_overwrite_refuses_cwd_ancestors_home_and_symlinks(output, small_csv, tmp_path,
                                                           capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    data = work / "train.csv"
    shutil.copy(small_csv, data)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious.txt").write_text("x")
    if output == "link":
        (work / "link").symlink_to(target, target_is_directory=True)
    home = tmp_path / "home"
    home.mkdir()
    if output == "home":  # what the shell makes of ~
        output = str(home)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    code, err = cli_in_process(capsys, "fit", "train.csv", "--target", "label", "--n-trials",
                               "1", "--output", output, "--overwrite", "--quiet")
    assert code == 2
    assert "symlink" in err if output == "link" else "never replaced" in err
    assert data.exists() and (target / "precious.txt").exists()
    assert not any(p.name.endswith(".partial") for p in tmp_path.rglob(".*"))


def test_overwrite_refuses_a_folder_that_is_not_a_run(small_csv, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"target": "label"}))  # no model_sha256
    (out / "thesis.tex").write_text("x")
    assert main(["fit", str(small_csv), "--target", "label", "--n-trials", "1",
                 "--output", str(out), "--overwrite", "--quiet"]) == 2
    assert (out / "thesis.tex").exists()


@pytest.mark.slow
def test_overwrite_replaces_a_previous_run(skops_run, small_csv, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(skops_run, out)
    before = json.loads((out / "manifest.json").read_text())["created"]
    _fit(small_csv, out, "--overwrite", "--seed", "3")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["created"] != before and manifest["seed"] == 3
    assert manifest["format_version"] == 2 and manifest["model_format"] == "skops"
    assert not list(tmp_path.glob(".run.*"))  # no staging or backup left behind
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # private only while staging


@pytest.mark.slow
def test_write_run_dir_checks_again_before_replacing(skops_run, tmp_path):
    """A file added to the target while the fit ran stops the replacement."""
    out = tmp_path / "run"
    shutil.copytree(skops_run, out)
    _, model = load_run(out)

    def add_file(staged: Path) -> None:  # runs after the files are written, before the rename
        (out / "added-meanwhile.txt").write_text("x")

    with pytest.raises(UsageError, match="checked again"):
        write_run_dir(out, model, {"target": "label", "task": "binary", "metric": "accuracy"},
                      pd.DataFrame(), {}, overwrite=True, finalize=add_file)
    assert (out / "added-meanwhile.txt").exists() and (out / "model.skops").exists()


# ------------------------------------------------------------------------ staging lock
def test_staging_lock_is_exclusive_while_its_owner_lives(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        staging = RunStaging(tmp_path / "run")
        staging.path.mkdir(mode=0o700)
        (staging.path / "lock").write_text(f"{sleeper.pid} {platform.node()}\n")
        with pytest.raises(UsageError, match=f"pid {sleeper.pid}"):
            RunStaging(tmp_path / "run").open(resume=True)
        assert (staging.path / "lock").read_text().split()[0] == str(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    # its owner is dead now: the lock is stale and taken over
    staging = RunStaging(tmp_path / "run").open(resume=True)
    assert (staging.path / "lock").read_text().split() == [str(os.getpid()), platform.node()]
    # a lock of another host is never taken over
    (staging.path / "lock").write_text("1 some-other-host\n")
    with pytest.raises(UsageError, match="some-other-host"):
        RunStaging(tmp_path / "run").open(resume=True)


def test_resuming_a_killed_fit_fails_the_trials_it_had_running(tmp_path):
    """A journal has no heartbeats: the trials a dead fit left RUNNING are failed when its
    staging directory is resumed, and finished and enqueued ones are kept as they are."""
    import optuna

    from .studies import finished_numbers

    staging = RunStaging(tmp_path / "run").open()
    study = optuna.create_study(storage=staging.storage(), study_name="s")
    study.tell(study.ask(), 0.5)
    study.ask()  # running when the process "dies"
    study.enqueue_trial({"x": 1.0})
    (staging.path / "lock").write_text(f"999999999 {platform.node()}\n")  # a dead owner
    assert finished_numbers(staging.path / "study.journal") == {0}
    resumed = RunStaging(tmp_path / "run").open(resume=True)
    states = [t.state.name for t in optuna.load_study(study_name="s",
                                                      storage=resumed.storage()).trials]
    assert states == ["COMPLETE", "FAIL", "WAITING"]
    assert finished_numbers(staging.path / "study.journal") == {0, 1}


@pytest.mark.slow
def test_staging_claim_is_atomic_between_two_processes(tmp_path):
    """Two fits claiming the same fresh output: exactly one gets it."""
    code = ("import sys; from automl_meta.artifacts.rundir import RunStaging\n"
            "from automl_meta.errors import UsageError\n"
            "try:\n    RunStaging(sys.argv[1]).open()\nexcept UsageError as e:\n"
            "    print('refused', e); sys.exit(2)\n"
            "print('claimed', flush=True); sys.stdin.read()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.stdout.readline() for p in procs]
    for p in procs:
        p.stdin.close()
        p.wait(timeout=60)
    assert sorted(o.split()[0] for o in outs) == ["claimed", "refused"], outs
    assert sorted(p.returncode for p in procs) == [0, 2]


def test_staging_new_directory_is_private(tmp_path):
    staging = RunStaging(tmp_path / "run").open()
    assert staging.path.stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to another user")
def test_staging_of_another_user_is_never_adopted_or_deleted(small_csv, tmp_path, capsys):
    out = tmp_path / "run"
    staging = RunStaging(out)
    staging.path.mkdir()
    (staging.path / "study.journal").write_text("theirs")
    os.chown(staging.path, 65534, 65534)
    for flags in (["--overwrite"], ["--resume"], []):
        code, err = cli_in_process(capsys, "fit", small_csv, "--target", "label",
                                   "--n-trials", "1", "--output", out, "--quiet", *flags)
        assert code == 2 and "belongs to user id 65534" in err
        assert (staging.path / "study.journal").read_text() == "theirs"


def test_skops_file_is_the_one_skops_writes(tmp_path):
    """The run directory's skops writer (linear in the number of arrays) writes the file
    ``skops.io.dump`` writes: the same schema (written without indentation) and the same
    arrays, up to object ids (in the schema and the arrays' file names), and it loads back
    to the same predictions."""
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 4)), np.arange(120) % 12  # 12 classes: 36 arrays a round
    model = HistGradientBoostingClassifier(max_iter=5, early_stopping=False).fit(X, y)
    ours, theirs = tmp_path / "ours.skops", tmp_path / "theirs.skops"
    _dump_skops(model, ours)
    sio.dump(model, theirs, compression=zipfile.ZIP_DEFLATED, compresslevel=1)

    def normalized(path: Path) -> tuple[str, list[bytes]]:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n != "schema.json"]
            # the same JSON document, whatever its whitespace
            schema = json.dumps(json.loads(zf.read("schema.json")), indent=2)
            for i, name in enumerate(names):
                schema = schema.replace(f'"{name}"', f'"array-{i}"')
            ids: dict[str, str] = {}
            schema = re.sub(r'"__id__": (\d+)',
                            lambda m: f'"__id__": {ids.setdefault(m[1], str(len(ids)))}',
                            schema)
            return schema, [zf.read(n) for n in names]

    assert normalized(ours) == normalized(theirs)
    assert len(normalized(ours)[1]) > 3 * 5 * 12
    loaded = sio.load(ours, trusted=sio.get_untrusted_types(file=ours))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
