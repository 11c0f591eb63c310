"""The command line end to end: fit → predict → evaluate, JSON output, exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from automl_meta.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "automl_meta", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_fit_predict_evaluate_classification(tmp_path, breast_cancer_csv):
    run = tmp_path / "run"
    r = run_cli("fit", breast_cancer_csv, "--target", "diagnosis", "--n-trials", "3",
                "--output", run, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)  # stdout holds exactly one JSON document
    assert summary["task"] == "binary" and summary["trials"]["total"] == 3
    assert {p.name for p in run.iterdir()} == {"model.skops", "manifest.json", "study.journal",
                                               "leaderboard.csv", "report.json", "report.html"}
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["target"] == "diagnosis" and len(manifest["model_sha256"]) == 64
    assert len(pd.read_csv(run / "leaderboard.csv")) == 3
    report = json.loads((run / "report.json").read_text())
    assert report["target_distribution"]["counts"] == {"benign": 357, "malignant": 212}
    oof = report["diagnostics"]["oof"]
    assert np.array(oof["confusion"]).sum() == 569  # every row predicted out of fold once
    assert oof["score"] == pytest.approx(summary["best"]["cv_score"], abs=0.01)

    # predict on shuffled columns, with --proba
    df = pd.read_csv(breast_cancer_csv).drop(columns="diagnosis")
    shuffled = tmp_path / "new.csv"
    df[df.columns[::-1]].head(20).to_csv(shuffled, index=False)
    out = tmp_path / "pred.csv"
    r = run_cli("predict", run, shuffled, "--output", out, "--proba")
    assert r.returncode == 0, r.stderr
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["diagnosis", "proba_benign", "proba_malignant"]
    assert set(pred["diagnosis"]) <= {"benign", "malignant"}
    assert np.allclose(pred[["proba_benign", "proba_malignant"]].sum(axis=1), 1)

    r = run_cli("evaluate", run, breast_cancer_csv, "--target", "diagnosis", "--json")
    assert r.returncode == 0, r.stderr
    score = json.loads(r.stdout)["score"]
    assert 0.85 < score <= 1.0
    r = run_cli("evaluate", run, breast_cancer_csv, "--fail-under", "1.01")
    assert r.returncode == 1 and "quality gate failed" in r.stderr


@pytest.mark.slow
def test_fit_regression_in_process(tmp_path, diabetes_csv, capsys):
    run = tmp_path / "run"
    code = main(["fit", str(diabetes_csv), "--target", "y", "--n-trials", "3",
                 "--output", str(run), "--json", "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out)
    assert summary["task"] == "regression" and summary["metric"] == "r2"
    code = main(["evaluate", str(run), str(diabetes_csv), "--metric", "rmse", "--json",
                 "--fail-under", "1000"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["metric"] == "rmse" and doc["passed"] is True


def _write(tmp_path: Path, name: str, df: pd.DataFrame) -> Path:
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


@pytest.fixture()
def small(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=40), "z": rng.normal(size=40),
                       "label": ["a", "b"] * 20})
    return _write(tmp_path, "small.csv", df)


@pytest.mark.parametrize("case", [
    "missing_file", "empty_file", "header_only", "unknown_target", "target_all_missing",
    "single_class", "too_few_rows", "unknown_metric", "metric_task_mismatch", "bad_task",
    "garbage",
])
def test_bad_input_exits_2_with_one_line(case, tmp_path, small, capsys):
    args = ["fit", str(small), "--target", "label", "--n-trials", "1",
            "--output", str(tmp_path / "run")]
    expect = {
        "missing_file": "no such file", "empty_file": "empty", "header_only": "no data rows",
        "unknown_target": "did you mean 'label'", "target_all_missing": "entirely missing",
        "single_class": "single class", "too_few_rows": "at least 10",
        "unknown_metric": "unknown metric",
        "metric_task_mismatch": "--metric r2 is a regression metric, but target 'label' has "
                                "non-numeric values",
        "bad_task": "unknown task", "garbage": "binary file",
    }[case]
    if case == "missing_file":
        args[1] = str(tmp_path / "nope.csv")
    elif case == "empty_file":
        args[1] = str(_write_text(tmp_path / "e.csv", ""))
    elif case == "header_only":
        args[1] = str(_write_text(tmp_path / "h.csv", "x,z,label\n"))
    elif case == "unknown_target":
        args[3] = "lable"
    elif case == "target_all_missing":
        df = pd.DataFrame({"x": range(20), "label": [None] * 20})
        args[1] = str(_write(tmp_path, "m.csv", df))
    elif case == "single_class":
        df = pd.DataFrame({"x": range(20), "label": ["a"] * 20})
        args[1] = str(_write(tmp_path, "s.csv", df))
    elif case == "too_few_rows":
        df = pd.DataFrame({"x": range(5), "label": list("ababa")})
        args[1] = str(_write(tmp_path, "f.csv", df))
    elif case == "unknown_metric":
        args += ["--metric", "awesomeness"]
    elif case == "metric_task_mismatch":
        args += ["--metric", "r2"]
    elif case == "bad_task":
        args += ["--task", "ranking"]
    elif case == "garbage":
        p = tmp_path / "g.csv"
        p.write_bytes(bytes(range(256)) * 40)
        args[1] = str(p)
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert expect in err
    assert not (tmp_path / "run").exists()


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.slow
def test_predict_missing_column_and_tampered_model(tmp_path, small, capsys):
    run = tmp_path / "run"
    assert main(["fit", str(small), "--target", "label", "--n-trials", "2", "--output",
                 str(run), "--quiet"]) == 0
    lacking = _write(tmp_path, "lack.csv", pd.DataFrame({"x": [1.0, 2.0]}))
    capsys.readouterr()
    assert main(["predict", str(run), str(lacking)]) == 2
    assert "lacks 1 column(s) the model needs: 'z'" in capsys.readouterr().err
    with open(run / "model.skops", "ab") as fh:
        fh.write(b"tampered")
    assert main(["predict", str(run), str(small)]) == 2
    assert "does not match the manifest" in capsys.readouterr().err


def test_existing_output_is_refused(tmp_path, small, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    assert main(["fit", str(small), "--target", "label", "--n-trials", "1", "--output",
                 str(run)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run / "keep.txt").read_text() == "precious"


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("fit", "predict", "evaluate", "build-metabase", "metabase"):
        assert cmd in r.stdout


def test_metafeatures_command(diabetes_csv, capsys):
    assert main(["metafeatures", str(diabetes_csv), "--target", "y", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    mf = doc["metafeatures"]
    assert doc["task"] == "regression"
    assert mf["NumberOfInstances"] == 442 and mf["NumberOfFeatures"] == 11
    assert "ClassEntropy" not in mf  # class-only qualities are absent for regression
    assert all(v is None or np.isfinite(v) for v in mf.values())


@pytest.mark.slow
def test_skops_model_format(tmp_path, small, capsys):
    run = tmp_path / "run"
    assert main(["fit", str(small), "--target", "label", "--n-trials", "1", "--no-warm-start",
                 "--output", str(run), "--model-format", "skops", "--quiet"]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["model_format"] == "skops" and (run / "model.skops").exists()
    assert not (run / "model.joblib").exists()
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run), str(small), "--output", str(out)]) == 0
    assert len(pd.read_csv(out)) == 40


@pytest.mark.slow
def test_integer_coded_classes_with_a_classification_metric(tmp_path, capsys):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=300)})
    df["genre"] = 101 + (np.abs(df["x"]) * 7).astype(int) % 15  # 15 integer-coded classes
    path = _write(tmp_path, "codes.csv", df)
    code = main(["fit", str(path), "--target", "genre", "--metric", "accuracy", "--n-trials",
                 "1", "--no-warm-start", "--output", str(tmp_path / "run"), "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["task"] == "multiclass"


# ----------------------------------------------------------------- outputs and exit codes
def _strict_json(text: str) -> Any:
    """JSON as the standard defines it: NaN / Infinity tokens are an error."""
    def refuse(token: str) -> Any:
        raise AssertionError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


#: a target and columns that matplotlib's math text rejects ("$x^$", "$\foo$") or that rich
#: would read as markup; the fit exited 3 and left the model in the .partial folder before
MATH_TARGET = "$x^$ [bold]y[/bold]"


@pytest.fixture(scope="module")
def math_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("math")
    rng = np.random.default_rng(0)
    n = 120
    X = rng.normal(size=(n, 3))
    df = pd.DataFrame(X, columns=["$\\alpha$", "$\\foo$", "[bold]x[/bold]"])
    df["[red]k[/red]"] = 1.0  # constant: dropped, with a note on stderr naming it
    df[MATH_TARGET] = 2 * X[:, 0] - X[:, 1] + rng.normal(scale=0.3, size=n)
    data = _write(tmp, "math.csv", df)
    run = tmp / "run"
    r = run_cli("fit", data, "--target", MATH_TARGET, "--n-trials", "2", "--output", run)
    return run, r


@pytest.mark.slow
def test_math_text_and_markup_in_names_fit_and_report(math_run):
    run, r = math_run
    assert r.returncode == 0, r.stderr
    assert {"report.html", "report.json", "manifest.json"} <= {p.name for p in run.iterdir()}
    assert not list(run.parent.glob(".*partial*"))
    assert "warning" not in r.stderr
    assert "dropped column '[red]k[/red]': constant" in r.stderr  # printed literally
    assert MATH_TARGET in r.stdout  # the summary table prints it as written
    for name in ("report.json", "manifest.json"):
        assert "report_error" not in _strict_json((run / name).read_text())


@pytest.mark.slow
def test_predict_into_a_closed_pipe_exits_141_quietly(math_run, tmp_path):
    """``predict run/ new.csv | head -1``: the reader leaves after one line."""
    run, _ = math_run
    rng = np.random.default_rng(1)
    new = _write(tmp_path, "new.csv", pd.DataFrame(
        rng.normal(size=(20_000, 3)), columns=["$\\alpha$", "$\\foo$", "[bold]x[/bold]"]))
    proc = subprocess.Popen([sys.executable, "-m", "automl_meta", "predict", str(run),
                             str(new)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().decode().strip() == MATH_TARGET
    proc.stdout.close()  # ~400 kB of predictions cannot all fit in the pipe: a write fails
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


@pytest.mark.slow
def test_a_command_printing_to_a_closed_stdout_exits_141_quietly():
    """Any command (here one whose output goes through click's echo): no reader at all."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([sys.executable, "-m", "automl_meta", "metabase", "info"],
                           stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (r.returncode, r.stderr) == (141, "")


@pytest.mark.slow
def test_evaluate_an_undefined_score_prints_null(math_run, tmp_path, capsys):
    run, _ = math_run
    one = tmp_path / "one.csv"
    pd.read_csv(run.parent / "math.csv").head(1).to_csv(one, index=False)  # r2 of one row
    assert main(["evaluate", str(run), str(one), "--json"]) == 0
    captured = capsys.readouterr()
    doc = _strict_json(captured.out)
    assert doc["score"] is None and doc["metric"] == "r2" and "undefined" in doc["note"]
    assert captured.err == ""
    assert main(["evaluate", str(run), str(one), "--fail-under", "0.5"]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == "r2: undefined on 1 rows — FAIL (threshold 0.5)"
    assert captured.err.strip() == "quality gate failed: r2 is undefined on these rows " \
                                   "(threshold 0.5)"


@pytest.mark.slow
def test_report_that_cannot_render_keeps_the_run(tmp_path, small_csv):
    """matplotlib broken in the environment: the fit still saves its run and exits 0."""
    fake = tmp_path / "site" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("matplotlib is broken here")\n')
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "automl_meta", "fit", str(small_csv),
                        "--target", "label", "--n-trials", "2", "--output", str(run),
                        "--quiet", "--no-warm-start"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "matplotlib is broken here" in warnings[0]
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob(".*partial*")) and not (run / "report.html").exists()
    for name in ("report.json", "manifest.json"):
        assert "matplotlib is broken here" in _strict_json((run / name).read_text())[
            "report_error"]
    assert (run / _strict_json((run / "manifest.json").read_text())["model_file"]).exists()
    r = run_cli("predict", run, small_csv)  # the saved run is usable
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 161


@pytest.mark.slow
def test_huge_regression_target_refused_or_fitted(tmp_path, capsys):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    y = df["a"].to_numpy() * 1e300
    y[:3] = [1.7e308, -1.7e308, 1e300]
    df["y"] = y
    data = _write(tmp_path, "huge.csv", df)
    code = main(["fit", str(data), "--target", "y", "--n-trials", "2", "--output",
                 str(tmp_path / "refused"), "--json"])
    captured = capsys.readouterr()
    assert code == 2, captured.err  # beyond what float arithmetic in the models survives
    assert "rescale" in captured.err and captured.out == ""
    df["y"] = df["a"].to_numpy() * 1e149  # huge but usable: fitted, every JSON strict
    data = _write(tmp_path, "large.csv", df)
    run = tmp_path / "run"
    code = main(["fit", str(data), "--target", "y", "--n-trials", "2", "--output", str(run),
                 "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    _strict_json(captured.out)
    report = _strict_json((run / "report.json").read_text())
    _strict_json((run / "manifest.json").read_text())
    assert "report_error" not in report
    hist = report["target_distribution"]["histogram"]
    assert np.isfinite(hist["edges"]).all() and sum(hist["counts"]) == 120


@pytest.mark.parametrize("option, value", [
    ("--time-budget", "nan"), ("--time-budget", "inf"), ("--time-budget", "-0"),
    ("--memory-limit", "nan"), ("--memory-limit", "inf"), ("--memory-limit", "-1"),
])
def test_non_finite_budgets_exit_2(option, value, tmp_path, small, capsys):
    code = main(["fit", str(small), "--target", "label", f"{option}={value}", "--output",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"error: {option} must be a finite positive number" + \
        (" (GiB)" if option == "--memory-limit" else "")
    assert list(tmp_path.iterdir()) == [small]  # no run, no .partial


@pytest.mark.parametrize("params, message", [
    ({"time_budget": float("nan")}, "time_budget must be a positive finite number"),
    ({"time_budget": float("inf")}, "time_budget must be a positive finite number"),
    ({"n_trials": 1, "memory_limit": float("nan")}, "memory_limit must be a positive finite"),
])
def test_python_api_refuses_non_finite_budgets(params, message):
    from automl_meta import AutoML
    from automl_meta.errors import UsageError

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 2)), np.array(["a", "b"] * 20)
    with pytest.raises(UsageError, match=message) as info:
        AutoML(**params).fit(X, y)
    assert isinstance(info.value, ValueError)


def test_python_api_errors_name_parameters_not_flags():
    from automl_meta import AutoML
    from automl_meta.errors import UsageError

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 2)), np.array(["a", "b"] * 20)
    for params, message in [({"n_trials": 0}, "n_trials must be at least 1 (got 0)"),
                            ({"time_budget": -1.0}, "time_budget must be a positive")]:
        with pytest.raises(UsageError, match=re.escape(message)) as info:
            AutoML(**params).fit(X, y)
        assert "--" not in str(info.value)


@pytest.mark.parametrize("args, message", [
    (["--n-trials", "0"], "--n-trials must be at least 1"),
    (["--n-jobs", "0"], "--n-jobs must be at least 1 (or -1: every core)"),
    (["--time-budget", "-5"], "--time-budget must be a finite positive number"),
])
def test_fit_checks_its_options_before_reading_data(args, message, tmp_path, capsys):
    # DATA does not exist: the option is refused first, under its flag name
    code = main(["fit", str(tmp_path / "absent.csv"), "--target", "y", "--output",
                 str(tmp_path / "run"), *args])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert not (tmp_path / "run").exists()


def test_worker_checks_its_options_with_flag_names(tmp_path, capsys):
    code = main(["worker", str(tmp_path / "absent.csv"), "--storage",
                 f"sqlite:///{tmp_path / 'study.db'}", "--study", "s", "--n-trials", "0"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: --n-trials must be at least 1"


def _option_defaults(*command: str) -> dict[str, Any]:
    import typer.main

    from automl_meta.cli import app

    cmd = typer.main.get_command(app)
    for name in command:
        cmd = cmd.commands[name]
    return {p.name: p.default for p in cmd.params}


def test_option_defaults_are_the_library_defaults():
    import inspect

    from automl_meta import AutoML
    from automl_meta.artifacts.rundir import DEFAULT_MODEL_FORMAT
    from automl_meta.budget import DEFAULT_TIME_BUDGET
    from automl_meta.meta.builder.local import build_metabase
    from automl_meta.meta.builder.queue import DEFAULT_GRACE

    fit = _option_defaults("fit")
    params = AutoML().get_params()
    for name in ("warm_start", "warm_start_strategy", "seed", "n_jobs", "time_budget",
                 "n_trials", "metric", "memory_limit"):
        assert fit[name] == params[name], name
    assert fit["model_format"] == DEFAULT_MODEL_FORMAT
    assert _option_defaults("neighbors")["k"] == params["n_neighbors"]

    build = _option_defaults("build-metabase")
    signature = inspect.signature(build_metabase).parameters
    for name in ("trials_per_task", "trial_timeout", "max_rows", "n_jobs", "seed"):
        assert build[name] == signature[name].default, name
    assert build["heartbeat_grace"] == DEFAULT_GRACE

    # the help texts state the library's default time budget
    out = subprocess.run([sys.executable, "-m", "automl_meta", "worker", "--help"],
                         capture_output=True, text=True, timeout=120).stdout
    assert f"default {DEFAULT_TIME_BUDGET:g} when" in " ".join(out.split())


def test_help_lists_every_command_in_order(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    names = ["fit", "predict", "evaluate", "report", "worker", "metafeatures", "neighbors",
             "build-metabase", "metabase"]
    positions = [out.index(f"  {n} ") for n in names]
    assert positions == sorted(positions)


def test_metabase_info_json_is_describe_metabase(capsys):
    from automl_meta.meta.metabase import describe_metabase

    assert main(["metabase", "info", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads(json.dumps(describe_metabase()))
    assert doc["checksums_ok"] and doc["search_space_matches"]


def test_evaluate_table_scores_and_gates(tmp_path, small):
    from automl_meta import AutoML
    from automl_meta.artifacts.scoring import evaluate_table
    from automl_meta.errors import UsageError

    df = pd.read_csv(small)
    automl = AutoML(n_trials=1, warm_start=0, report=False).fit(
        df.drop(columns="label"), df["label"])
    ev = evaluate_table(automl.model_, df, "label", "accuracy", threshold=0.0)
    assert ev.rows == len(df) and ev.defined and 0 <= ev.score <= 1 and ev.passed
    assert evaluate_table(automl.model_, df, "label", "accuracy", threshold=1.01).passed is False
    with pytest.raises(UsageError, match="target column 'lable' not found in t.csv; did you"):
        evaluate_table(automl.model_, df, "lable", "accuracy", source="t.csv")


def test_the_console_script_ends_its_process_after_the_exit_handlers(tmp_path):
    """main() without arguments ends the process itself (skipping the interpreter's module
    teardown): exit handlers still run, buffered output still arrives, the code is kept,
    and a thread that is not a daemon is waited for."""
    script = (
        "import atexit, sys, threading, time\n"
        "atexit.register(lambda: print('handler ran', flush=False))\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('thread done'))).start()\n"
        "from automl_meta.cli import main\n"
        "sys.argv = ['automl-meta', 'predict', 'no-such-run', 'x.csv']\n"
        "main()\n"
        "print('not reached')\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "no such run directory" in r.stderr
    assert r.stdout.split() == ["thread", "done", "handler", "ran"]
