"""report.html: content checked against the run directory's files, and a headless browser.

Inputs come from real (small) fits. Keys of report.json that a run may lack (older run
directories, diagnostics switched off) are removed in some tests to check the "not available"
paths; the diagnostics of one test are computed here with scikit-learn, independently of the
fit, to check that the report shows exactly the numbers it is given.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from automl_meta.artifacts.report import (
    _SCRIPT,
    _num,
    _origin_group,
    _origin_label,
    render_report,
    write_report,
)
from automl_meta.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SECTIONS = ["Summary", "Dataset", "Nearest prior tasks", "Optimisation history",
            "Leaderboard (top 10)", "Final model", "Final comparison on held-out rows",
            "Ensemble selection", "Out-of-fold diagnostics",
            "Permutation importance", "Run details"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


# ---------------------------------------------------------------------------- helpers
class _Page(HTMLParser):
    """Parses a page strictly enough: balanced tags, tables as text, images, headings, ids."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.images: list[dict[str, str]] = []
        self.headings: list[tuple[str, str]] = []
        self.ids: list[str] = []
        self.refs: list[str] = []
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        for key in ("src", "href", "action", "poster", "data"):
            if key in a:
                self.refs.append(a[key])
        if tag == "img":
            self.images.append(a)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("h1", "h2", "h3"):
            self._heading = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.errors.append(f"self-closing <{tag}/>")
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.errors.append(f"end tag for void element </{tag}>")
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None and self.tables and \
                self.tables[-1]:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append((tag, " ".join("".join(self._heading).split())))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)

    def table(self, *header: str) -> list[list[str]]:
        """Body rows of the first table whose header starts with ``header``."""
        for t in self.tables:
            if t and tuple(t[0][: len(header)]) == header:
                return t[1:]
        raise AssertionError(f"no table with header {header}; tables: "
                             f"{[t[0] for t in self.tables if t]}")


def parse(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    p.close()
    assert not p.errors, p.errors[:5]
    assert p.stack == [], f"unclosed tags: {p.stack}"
    assert len(p.ids) == len(set(p.ids)), "duplicate ids"
    return p


def assert_self_contained(page: str, parsed: _Page) -> None:
    """No resource or link outside the page: no http(s)/protocol-relative/file references."""
    for ref in parsed.refs:
        assert ref.startswith(("#", "data:")), f"external reference: {ref[:80]}"
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:|//)", page, re.I)
    assert "@import" not in page
    assert "<link" not in page.lower()
    for img in parsed.images:
        assert img["src"].startswith("data:image/"), img["src"][:40]


def section(page: str, sid: str) -> str:
    """The HTML of one <section id=...>."""
    m = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert m, f"no section {sid}"
    return m.group(1)


def mixed_classification(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Three classes with awkward labels, every column kind, an ID and a constant column."""
    rng = np.random.default_rng(seed)
    num = rng.normal(size=n)
    cat = rng.choice(["red", "green", "blue"], size=n)
    latent = num + (cat == "red") * 1.5 + rng.normal(scale=0.4, size=n)
    y = np.select([latent < -0.3, latent < 0.9], ["<low>", "mid & co"], "high")
    X = pd.DataFrame({
        "num": num,
        "a<b": rng.normal(size=n),
        "cat": cat,
        "flag": rng.choice(["true", "false"], size=n),
        "when": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "customer_id": np.arange(n) + 1000,
        "const": 7,
    })
    return X, y


@pytest.fixture(scope="module")
def clf_run(tmp_path_factory) -> Path:
    """A real warm-started fit (4 trials) on mixed data, saved as a run directory."""
    from automl_meta import AutoML

    X, y = mixed_classification()
    out = tmp_path_factory.mktemp("report") / "clf"
    AutoML(n_trials=4, warm_start=2, seed=0).fit(X, y).save(out)
    return out


@pytest.fixture(scope="module")
def reg_run(tmp_path_factory) -> Path:
    """A real cold-start regression fit (3 trials)."""
    from sklearn.datasets import load_diabetes

    from automl_meta import AutoML

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    out = tmp_path_factory.mktemp("report") / "reg"
    AutoML(n_trials=3, warm_start=0, seed=0).fit(X.iloc[:300], y.iloc[:300]).save(out)
    return out


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def edit_report(run: Path, **changes: Any) -> dict[str, Any]:
    """Change keys of a run's report.json (value None = remove the key)."""
    path = run / "report.json"
    report = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            report.pop(key, None)
        else:
            report[key] = value
    path.write_text(json.dumps(report))
    return report


def ranked(lb: pd.DataFrame, gib: bool) -> pd.DataFrame:
    done = lb[lb["state"] == "COMPLETE"]
    return done.sort_values(["score", "trial"], ascending=[not gib, True])


# ---------------------------------------------------------------------------- content
@pytest.mark.slow
def test_classification_report_matches_run_files(clf_run: Path) -> None:
    started = time.monotonic()
    path = write_report(clf_run)
    seconds = time.monotonic() - started
    assert path == clf_run / "report.html"
    assert seconds < 5.0, f"rendering took {seconds:.1f} s"
    page = path.read_text(encoding="utf-8")
    p = parse(page)
    assert_self_contained(page, p)
    report = json.loads((clf_run / "report.json").read_text())
    lb = pd.read_csv(clf_run / "leaderboard.csv")
    assert [h for tag, h in p.headings if tag == "h2"] == SECTIONS

    # summary: best score and trial count are the leaderboard's
    best = ranked(lb, report["greater_is_better"]).iloc[0]
    assert report["best"]["trial"] == best["trial"]
    summary = section(page, "summary")
    assert _num(best["score"]) in summary
    assert f"#{int(best['trial'])}" in summary

    # dataset: columns by type, dropped columns with reasons, target distribution
    kinds = {row[0]: int(row[1]) for row in p.table("type", "columns", "names")}
    assert kinds == report["columns"]
    assert kinds["categorical"] >= 1 and kinds["boolean"] >= 1 and kinds["datetime"] >= 1
    dropped = {row[0]: row[1] for row in p.table("column", "why")}
    assert dropped == report["dropped_columns"]
    assert {"customer_id", "const"} <= set(dropped)
    classes = {row[0]: int(row[1]) for row in p.table("class", "rows", "share")}
    assert classes == report["target_distribution"]["counts"]
    assert sum(classes.values()) == report["rows_used"]

    # history: trials per state and per origin group, from leaderboard.csv
    states = {row[0]: int(row[1]) for row in p.table("state", "trials")}
    assert states == lb["state"].value_counts().to_dict()
    origins = {row[0]: int(row[1]) for row in p.table("origin", "trials")}
    n_tpe = int((lb["origin"] == "tpe").sum())
    assert origins.get("TPE", 0) == n_tpe
    assert sum(origins.values()) == len(lb) == report["trials"]["total"]
    warm = int(lb["origin"].str.startswith("neighbour").sum())
    assert origins.get("warm start: nearest prior task", 0) == warm
    assert '<img class="plot wide" alt="optimisation history' in page

    # leaderboard: top trials in the leaderboard's order, scores as in the CSV
    rows = p.table("rank", "trial")
    top = ranked(lb, report["greater_is_better"]).head(10)
    assert [r[1].split()[0] for r in rows] == [f"#{t}" for t in top["trial"]]
    assert [r[2].split()[0] for r in rows] == [_num(s) for s in top["score"]]
    first_cfg = json.loads(top.iloc[0]["config"])
    family = first_cfg["family"]
    some_key = next(k for k in sorted(first_cfg) if k != "family")
    assert some_key.removeprefix(f"{family}.") in rows[0][6]  # readable: prefix stripped

    # neighbours: every neighbour of report.json, in order, with its distance
    neighbours = report["warm_start"]["neighbors"]
    if neighbours:
        nrows = p.table("#", "prior task")
        assert len(nrows) == len(neighbours)
        for row, n in zip(nrows, neighbours, strict=True):
            assert row[1].startswith(n["name"])
            assert row[5] == _num(n["distance"], 3)
        assert sum(r[8].count("#") for r in nrows) == warm
    else:  # a metabase that cannot be used means a cold start: then a warning says why
        assert report["warnings"]

    # diagnostics (computed by fit) and permutation importance
    diag = report["diagnostics"]
    conf = np.array(diag["oof"]["confusion"])
    assert conf.sum() == report["search_rows"]
    per_class = p.table("class", "precision", "recall", "F1", "support")
    assert [r[0] for r in per_class[:-1]] == diag["oof"]["labels"]
    assert [int(r[4]) for r in per_class[:-1]] == conf.sum(axis=1).tolist()
    assert "&lt;low&gt;" in page and "<low>" not in page  # labels escaped
    if diag["permutation_importance"]:
        imp = p.table("rank", "column", "mean drop")
        assert [r[1] for r in imp] == [d["column"] for d in diag["permutation_importance"]]
        assert "a&lt;b" in section(page, "importance")

    manifest = json.loads((clf_run / "manifest.json").read_text())
    assert manifest["model_sha256"] in section(page, "run")


@pytest.mark.slow
def test_regression_report_with_diagnostics_computed_here(reg_run: Path,
                                                          tmp_path: Path) -> None:
    """Regression: the report shows the out-of-fold numbers it is given, plots and all."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import cross_val_predict

    run = copy_run(reg_run, tmp_path / "reg")
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X, y = X.iloc[:300], y.iloc[:300].to_numpy()
    pred = cross_val_predict(Ridge(alpha=0.1), X, y, cv=5)
    counts, edges = np.histogram(y, bins=20)
    q = np.percentile(y, [0, 25, 50, 75, 100])
    oof = {"kind": "regression", "y_true": y.tolist(), "y_pred": pred.tolist(),
           "r2": float(r2_score(y, pred)), "rmse": float(np.sqrt(mean_squared_error(y, pred))),
           "mae": float(mean_absolute_error(y, pred))}
    importance = sorted(({"column": c, "mean": float(abs(np.corrcoef(X[c], y)[0, 1])),
                          "std": 0.01} for c in X.columns), key=lambda d: -d["mean"])
    report = edit_report(
        run,
        target_distribution={"kind": "numeric", "histogram": {"edges": edges.tolist(),
                                                               "counts": counts.tolist()},
                             "quantiles": dict(zip(["min", "q1", "median", "q3", "max"],
                                                   q.tolist(), strict=True))},
        diagnostics={"oof": oof, "permutation_importance": importance, "seconds": 0.5})
    page = write_report(run).read_text(encoding="utf-8")
    p = parse(page)
    assert_self_contained(page, p)
    assert [h for tag, h in p.headings if tag == "h2"] == SECTIONS
    diag = section(page, "diagnostics")
    for value in (oof["r2"], oof["rmse"], oof["mae"]):
        assert _num(value) in diag
    assert "predicted versus true" in diag and "300 rows shown" in diag
    quant = p.table("min", "Q1", "median", "Q3", "max")[0]
    assert quant == [_num(v) for v in q]
    assert "histogram of the target" in section(page, "dataset")
    imp = p.table("rank", "column", "mean drop")
    assert [r[1] for r in imp] == [d["column"] for d in importance]
    assert "R²" in section(page, "importance")
    # a cold start: no neighbour table, and the page says why
    assert report["warm_start"]["requested"] == 0
    assert "Cold start" in section(page, "neighbours")
    assert len(p.images) == 4  # history, histogram, predicted-vs-true + residuals, importance


@pytest.mark.slow
def test_missing_optional_inputs_say_not_available(clf_run: Path, tmp_path: Path) -> None:
    """An older run directory: no diagnostics, no target distribution, no leaderboard.csv."""
    run = copy_run(clf_run, tmp_path / "old")
    report = edit_report(run, diagnostics=None, target_distribution=None)
    (run / "leaderboard.csv").unlink()
    (run / "report.html").unlink(missing_ok=True)
    page = write_report(run).read_text(encoding="utf-8")
    p = parse(page)
    assert [h for tag, h in p.headings if tag == "h2"] == SECTIONS
    for sid in ("diagnostics", "importance"):
        assert "Not available" in section(page, sid)
    assert "Not available" in section(page, "dataset")  # the target distribution
    # the leaderboard falls back to report.json's top 10
    rows = p.table("rank", "trial")
    assert [r[1].split()[0] for r in rows] == [f"#{r['trial']}"
                                              for r in report["leaderboard_top"]]

    # diagnostics present but empty: what could not be computed, and why
    edit_report(run, diagnostics={"oof": None, "permutation_importance": None,
                                  "permutation_importance_error": "MemoryError: too big",
                                  "seconds": 0.1})
    (run / "manifest.json").unlink()
    page = write_report(run).read_text(encoding="utf-8")
    parse(page)
    assert "no out-of-fold predictions" in section(page, "diagnostics")
    assert "MemoryError: too big" in section(page, "importance")
    assert "no manifest.json" in section(page, "run")


def test_write_report_refuses_what_is_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such run directory"):
        write_report(tmp_path / "missing")
    with pytest.raises(UsageError, match="no report.json"):
        write_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(UsageError, match="unreadable"):
        write_report(tmp_path)


def synthetic_inputs(n_trials: int = 400, n_columns: int = 150, n_classes: int = 40
                     ) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """A large run: many trials of every state and origin, many columns and classes."""
    rng = np.random.default_rng(1)
    origins = ["neighbour:classification/a", "portfolio", "user", "neighbour:regression/<x>"]
    rows, t = [], 0.0
    for i in range(n_trials):
        state = "FAIL" if i % 37 == 5 else "PRUNED" if i % 7 == 3 else "COMPLETE"
        score = None if state == "FAIL" else float(0.8 + 0.1 * rng.random())
        if i == 11:
            score = -40.0  # a catastrophic trial must not flatten the plot
        dur = float(rng.uniform(0.1, 3))
        rows.append({"trial": i, "state": state, "score": score, "score_std": 0.01,
                     "n_folds": 5, "family": "hgb", "origin": origins[i] if i < 4 else "tpe",
                     "fit_seconds": dur / 5, "duration": dur, "started": t,
                     "error": "Timeout <killed> & more" if state == "FAIL" else "",
                     "config": json.dumps({"family": "hgb", "hgb.learning_rate": 0.05,
                                           "hgb.max_leaf_nodes": 31})})
        t += dur
    lb = pd.DataFrame(rows)
    labels = [f"class {i} <{i}>" for i in range(n_classes)]
    conf = rng.integers(0, 20, size=(n_classes, n_classes)) + np.eye(n_classes, dtype=int) * 50
    cols = [f"col_{i} <script>alert({i})</script>" for i in range(n_columns)]
    report = {
        "task": "multiclass", "target": "y & <z>", "metric": "accuracy",
        "greater_is_better": True, "rows": 10_000, "rows_used": 9_990,
        "rows_dropped_missing_target": 10, "search_rows": 9_990, "n_folds": 5,
        "columns": {"numeric": n_columns, "categorical": 0, "boolean": 0, "datetime": 0},
        "dropped_columns": {"<id>": "ID-like: a distinct value on every row"},
        "notes": ["note with <b>markup</b>"], "classes": labels,
        "trials": {"total": n_trials}, "stop_reason": "time budget", "interrupted": True,
        "best": {"trial": 0, "family": "hgb", "cv_score": 0.9, "cv_std": 0.01,
                 "config": {"family": "hgb"}, "origin": "tpe"},
        "final_model": {"config": {"family": "linear", "linear.C": 1.0},
                        "reason": "fallback: faster top-5 trial", "fit_seconds": 2.0,
                        "trial": 3, "cv_score": 0.85, "skipped": ["hgb: no time left"]},
        "time_budget": 600, "elapsed_seconds": 640.5,
        "warm_start": {"requested": 4, "metabase": "/x", "log": ["skipped <x>"],
                       "neighbors": [{"task_id": "classification/a", "name": "a",
                                      "distance": 0.5, "task": "binary", "n_rows": 100,
                                      "n_features": 3, "best_score": 0.9,
                                      "metric": "accuracy", "best_family": "rf",
                                      "openml_id": None}]},
        "warnings": ["warning with <i>markup</i>"],
        "target_distribution": {"kind": "classes",
                                "counts": {lab: 250 for lab in labels}},
        "diagnostics": {
            "oof": {"kind": "classification", "labels": labels, "confusion": conf.tolist(),
                    "per_class": [{"label": lab, "precision": 0.5, "recall": 0.5, "f1": 0.5,
                                   "support": int(conf[i].sum())}
                                  for i, lab in enumerate(labels)], "score": 0.7},
            "permutation_importance": [{"column": c, "mean": 0.1 / (i + 1), "std": 0.001}
                                       for i, c in enumerate(cols)],
            "seconds": 4.0},
    }
    manifest = {"status": "interrupted", "created": "2025-01-01T00:00:00+00:00",
                "feature_schema": {"columns": [{"name": c, "kind": "numeric"} for c in cols],
                                   "dropped": {"<id>": "ID-like"}}}
    return report, lb, manifest


@pytest.mark.slow
def test_large_run_renders_fast_deterministically_and_escaped() -> None:
    report, lb, manifest = synthetic_inputs()
    render_report(report, lb.head(5), manifest)  # warm up the imports
    started = time.monotonic()
    page = render_report(report, lb, manifest)
    seconds = time.monotonic() - started
    assert seconds < 5.0, f"rendering took {seconds:.1f} s"
    assert page == render_report(report, lb, manifest)  # same inputs, same bytes
    p = parse(page)
    assert_self_contained(page, p)
    assert "<script>alert" not in page and "<b>markup" not in page and "<i>markup" not in page
    assert "Interrupted run" in page
    assert "not the best trial" in section(page, "final-model")
    assert "more than 25" in section(page, "diagnostics")  # confusion matrix too big
    assert "The 20 most important of 150 columns" in section(page, "importance")
    history = section(page, "history")
    states = {row[0]: int(row[1]) for row in p.table("state", "trials")}
    assert states == lb["state"].value_counts().to_dict()
    assert "failed trial(s) and why" in history and "Timeout &lt;killed&gt;" in history
    origins = {row[0]: int(row[1]) for row in p.table("origin", "trials")}
    assert origins == {"TPE": 396, "warm start: nearest prior task": 2,
                       "warm start: portfolio": 1, "user configuration": 1}
    assert len(page) < 3_000_000


# ---------------------------------------------------------------------------- browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None and not ON_CI,
                                    reason="chromium is not installed (required under CI)")


def run_chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with no network (every host name fails to resolve)."""
    if CHROMIUM is None:
        pytest.fail("CI=true but chromium is not installed (.ci/run installs it)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--window-size=1366,900", "--hide-scrollbars", *args, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to its console (errors, failed loads); a clean page writes none."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@needs_chromium
def test_browser_detects_errors_and_broken_images(tmp_path: Path) -> None:
    """The checks below catch what they claim to: a script error and an undecodable image."""
    page = (tmp_path / "bad.html")
    page.write_text('<!DOCTYPE html><html><body><img src="data:image/svg+xml;base64,AAAA">'
                    f"<script>undefinedFunction();</script><script>{_SCRIPT}</script>"
                    "</body></html>")
    proc = run_chromium(page.as_uri(), tmp_path / "profile", "--dump-dom")
    assert any("Uncaught" in m for m in console_messages(proc.stderr)), proc.stderr[-2000:]
    assert 'data-images="1 1"' in proc.stdout


@needs_chromium
@pytest.mark.slow
def test_report_in_headless_chromium(clf_run: Path, tmp_path: Path) -> None:
    path = write_report(clf_run)
    n_images = path.read_text(encoding="utf-8").count("<img ")
    assert n_images >= 2  # history and importance (plus histogram / scatter in regression)
    dom = run_chromium(path.as_uri(), tmp_path / "profile", "--dump-dom")
    assert console_messages(dom.stderr) == [], console_messages(dom.stderr)
    assert f'data-images="{n_images} 0"' in dom.stdout, "images missing or not decoded"
    assert "Optimisation history" in dom.stdout

    png = tmp_path / "report.png"
    shot = run_chromium(path.as_uri(), tmp_path / "profile", f"--screenshot={png}")
    assert console_messages(shot.stderr) == [], console_messages(shot.stderr)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1366, 900)
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels[..., :3].std() > 0.05, "blank screenshot"
    if os.environ.get("AUTOML_META_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(png, REPO / "docs" / "report.png")


def test_degenerate_inputs_still_render() -> None:
    """Nothing at all, no completed trial, a loss metric: a page, never an exception."""
    parse(render_report({}, pd.DataFrame(), {}))
    report, lb, manifest = synthetic_inputs(n_trials=5)
    lb["state"], lb["score"] = "FAIL", None
    report.update(best=None, diagnostics=None)
    page = render_report(report, lb, manifest)
    parse(page)
    assert "no trial completed" in section(page, "leaderboard")
    report, lb, manifest = synthetic_inputs(n_trials=30)
    report.update(task="regression", metric="rmse", greater_is_better=False)
    lb["score"] = 100 - 50 * lb["score"]  # lower is better
    page = render_report(report, lb, manifest)
    rows = parse(page).table("rank", "trial")
    assert [r[2].split()[0] for r in rows] == [_num(s) for s in ranked(lb, False)
                                              .head(10)["score"]]
    assert "lower is better" in page


# ---------------------------------------------------------------------------- robustness
def _write_run_files(run: Path, report: dict[str, Any], lb: pd.DataFrame,
                     manifest: dict[str, Any]) -> Path:
    run.mkdir()
    (run / "report.json").write_text(json.dumps(report))
    (run / "manifest.json").write_text(json.dumps(manifest))
    lb.to_csv(run / "leaderboard.csv", index=False)
    return run


def _strict_json(path: Path) -> Any:
    def refuse(token: str) -> Any:
        raise AssertionError(f"{path.name} holds {token}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_names_that_are_math_text_or_markup_are_drawn_as_written(tmp_path: Path,
                                                                capsys) -> None:
    """Target and column names that matplotlib's math-text parser rejects render the page."""
    from matplotlib.mathtext import MathTextParser

    bad = ["$x^$", "$\\foo$"]
    for text in bad:  # the inputs do break math text: the page must not parse them
        with pytest.raises(ValueError):
            MathTextParser("path").parse(text)
    report, lb, manifest = synthetic_inputs(n_trials=20, n_columns=6, n_classes=3)
    report["target"] = "$x^$ [bold]y[/bold]"
    report["target_distribution"] = {"kind": "numeric", "quantiles": {
        "min": 0.0, "q1": 1.0, "median": 2.0, "q3": 3.0, "max": 4.0},
        "histogram": {"edges": [0.0, 1.0, 2.0, 3.0, 4.0], "counts": [1, 2, 3, 4]}}
    report["diagnostics"]["permutation_importance"] = [
        {"column": name, "mean": 0.1, "std": 0.01} for name in [*bad, "[red]k[/red]"]]
    run = _write_run_files(tmp_path / "run", report, lb, manifest)
    page = write_report(run).read_text()
    assert capsys.readouterr().err == ""
    assert "could not be drawn" not in page
    assert len(parse(page).images) == 3  # histogram, history, importance
    assert "<code>$x^$ [bold]y[/bold]</code>" in page  # HTML: escaped, literal


def test_huge_and_infinite_values_are_drawn_or_left_out(tmp_path: Path, capsys) -> None:
    """A regression target near the float limit: finite histogram, every plot drawn."""
    from automl_meta.artifacts.diagnostics import target_distribution
    from automl_meta.data import prepare_dataset

    rng = np.random.default_rng(0)
    y = rng.normal(size=60) * 1e300
    y[:3] = [1.7e308, -1.7e308, 1e300]
    # fit refuses such a target (exit 2); the report's code must still cope with one (a
    # report.json of a run directory can hold anything)
    ds = prepare_dataset(pd.DataFrame({"a": rng.normal(size=60), "y": np.arange(60.0)}), "y",
                         "regression")
    ds.y = pd.Series(y)
    dist = target_distribution(ds)
    edges, counts = dist["histogram"]["edges"], dist["histogram"]["counts"]
    assert np.isfinite(edges).all() and sum(counts) == 60 and len(edges) == 21
    assert dist["quantiles"]["min"] == -1.7e308 and dist["quantiles"]["max"] == 1.7e308
    assert edges[0] == -1.7e308 and edges[-1] == 1.7e308
    # a target of ordinary size is binned exactly as numpy bins it
    small = prepare_dataset(pd.DataFrame({"a": y, "y": np.arange(60.0)}), "y", "regression")
    assert target_distribution(small)["histogram"]["edges"] == \
        np.histogram(np.arange(60.0), bins=20)[1].tolist()

    report, lb, manifest = synthetic_inputs(n_trials=20, n_columns=4, n_classes=3)
    report.update(task="regression", metric="rmse", greater_is_better=False,
                  target_distribution=dist)
    report["diagnostics"]["oof"] = {"kind": "regression", "r2": None, "rmse": None,
                                    "mae": None, "y_true": y.tolist(),
                                    "y_pred": (y[::-1] / 3).tolist()}
    lb["score"] = np.where(lb["score"].notna(), lb["score"] * 1.7e308, np.nan)
    lb.loc[2, "score"] = np.inf
    run = _write_run_files(tmp_path / "run", report, lb, manifest)
    page = write_report(run).read_text()
    assert capsys.readouterr().err == ""
    assert "could not be drawn" not in page
    assert len(parse(page).images) == 4  # histogram, history, scatter pair, importance


def test_a_plot_that_fails_is_a_note_and_the_run_records_it(tmp_path: Path, capsys) -> None:
    from automl_meta.artifacts.report import finalize_report

    report, lb, manifest = synthetic_inputs(n_trials=10, n_columns=4, n_classes=3)
    # a hand-edited report.json: bin edges that are not numbers
    report["target_distribution"] = {"kind": "numeric", "quantiles": {},
                                     "histogram": {"edges": ["a", "b"], "counts": [1]}}
    run = _write_run_files(tmp_path / "run", report, lb, manifest)
    error = finalize_report(run)
    assert error is not None and "histogram" in error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: report.html: the histogram")
    page = (run / "report.html").read_text()
    assert "could not be drawn" in section(page, "dataset")
    assert len(parse(page).images) == 2  # the other plots are there
    for name in ("report.json", "manifest.json"):
        assert _strict_json(run / name)["report_error"] == error

    # nothing renderable at all: the page is not written, the error recorded, no exception
    (run / "report.html").unlink()
    (run / "report.json").write_text("{ not json")
    error = finalize_report(run)
    assert error is not None and error.startswith("not written (UsageError")
    assert not (run / "report.html").exists()
    assert _strict_json(run / "manifest.json")["report_error"] == error
    assert "warning: report.html: not written" in capsys.readouterr().err


def test_json_safe_turns_every_non_finite_number_into_null() -> None:
    from automl_meta.artifacts.report import dumps_json, json_safe

    doc = {"nan": float("nan"), "inf": np.float32("inf"), "neg": -np.inf,
           "nested": [{"x": np.array([1.0, np.nan])}, (np.int64(3), np.bool_(True))],
           np.int64(7): np.float64(2.5), "na": pd.NA, "path": Path("/x")}
    text = dumps_json(doc, indent=2)

    def refuse(token: str) -> Any:
        raise AssertionError(token)

    assert json.loads(text, parse_constant=refuse) == {
        "nan": None, "inf": None, "neg": None, "nested": [{"x": [1.0, None]}, [3, True]],
        "7": 2.5, "na": None, "path": "/x"}
    assert json_safe({"a": [np.nan]}) == {"a": [None]}
    with pytest.raises(ValueError):  # the plain serialiser would have written NaN
        json.dumps({"a": float("nan")}, allow_nan=False)


def test_family_default_origins_are_named_as_such():
    assert _origin_group("default:hgb") == "default"
    assert _origin_label("default:hgb") == "warm start · hgb defaults"
    assert _origin_group("user") == "user"
