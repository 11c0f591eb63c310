"""The command line end to end: fit → predict → evaluate, JSON output, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl_meta.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "automl_meta", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_fit_predict_evaluate_classification(tmp_path, breast_cancer_csv):
    run = tmp_path / "run"
    r = run_cli("fit", breast_cancer_csv, "--target", "diagnosis", "--n-trials", "3",
                "--output", run, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)  # stdout holds exactly one JSON document
    assert summary["task"] == "binary" and summary["trials"]["total"] == 3
    assert {p.name for p in run.iterdir()} == {"model.joblib", "manifest.json", "study.db",
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


def test_predict_missing_column_and_tampered_model(tmp_path, small, capsys):
    run = tmp_path / "run"
    assert main(["fit", str(small), "--target", "label", "--n-trials", "2", "--output",
                 str(run), "--quiet"]) == 0
    lacking = _write(tmp_path, "lack.csv", pd.DataFrame({"x": [1.0, 2.0]}))
    capsys.readouterr()
    assert main(["predict", str(run), str(lacking)]) == 2
    assert "lacks 1 column(s) the model needs: 'z'" in capsys.readouterr().err
    with open(run / "model.joblib", "ab") as fh:
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


def test_integer_coded_classes_with_a_classification_metric(tmp_path, capsys):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=300)})
    df["genre"] = 101 + (np.abs(df["x"]) * 7).astype(int) % 15  # 15 integer-coded classes
    path = _write(tmp_path, "codes.csv", df)
    code = main(["fit", str(path), "--target", "genre", "--metric", "accuracy", "--n-trials",
                 "1", "--no-warm-start", "--output", str(tmp_path / "run"), "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["task"] == "multiclass"
