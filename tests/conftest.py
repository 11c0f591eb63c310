"""Shared fixtures (small datasets written by the tests or shipped with scikit-learn), the
automatic tier markers, and :func:`wait_until` for waiting on another process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

# One BLAS / OpenMP thread in each test process, as in the fit's trial workers: the suite
# runs two test processes on two cores (pytest-xdist), and a fit a test runs in its own
# process (isolation=False) would otherwise start a thread per core in each of them.
threadpool_limits(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared (tests using it skip when it is absent)."""
    return SHARED.joinpath(*parts)


needs_shared = pytest.mark.skipif(not (SHARED / "corpus" / "manifest.csv").exists(),
                                  reason="../shared (corpus, fixtures, reference) is absent")

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _own_history(tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's fits (in process and in the subprocesses it starts) record in an empty
    history of the test's own, never in the user's and never in another test's."""
    folder = tmp_path_factory.mktemp("history")
    monkeypatch.setenv("AUTOML_META_HISTORY", str(folder))
    return folder


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05,
               what: str = "the condition") -> T:
    """Poll ``predicate`` until it returns a true value, and return that value.

    Parameters
    ----------
    predicate : callable
        Called with no arguments; it may raise :class:`AssertionError` to fail at once
        (for example when the process it watches has ended).
    timeout : float
        Seconds to wait before failing.
    interval : float
        Seconds between two calls.
    what : str
        What is awaited, for the failure message.

    Returns
    -------
    The first true value ``predicate`` returned.

    Raises
    ------
    AssertionError
        When ``timeout`` seconds pass without a true value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"no {what} after {timeout:g} s")
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used (Linux /proc); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Tier markers applied from what a test uses, so that new tests get them too. ``slow`` is
# set explicitly on the tests themselves.
POSTGRES_FIXTURES = {"postgres_url", "pg_cluster"}


def _tiers(item: pytest.Item) -> set[str]:
    """The tier markers ``item`` needs: ``postgres`` (a PostgreSQL fixture, or a
    ``postgresql`` parameter), ``browser`` and ``corpus`` (from its skip conditions)."""
    tiers = set()
    fixtures = set(getattr(item, "fixturenames", ()))
    params = getattr(getattr(item, "callspec", None), "params", {})
    if fixtures & POSTGRES_FIXTURES or any(isinstance(v, str) and v == "postgresql"
                                           for v in params.values()):
        tiers.add("postgres")
    for mark in item.iter_markers("skipif"):
        reason = str(mark.kwargs.get("reason", "")).lower()
        if "chromium" in reason:
            tiers.add("browser")
        if "shared" in reason:
            tiers.add("corpus")
    return tiers


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the ``postgres``, ``browser`` and ``corpus`` markers (see :func:`_tiers`)."""
    for item in items:
        for tier in sorted(_tiers(item) - {m.name for m in item.iter_markers()}):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def breast_cancer_csv(tmp_path_factory) -> Path:
    from sklearn.datasets import load_breast_cancer

    df = load_breast_cancer(as_frame=True).frame
    df["diagnosis"] = df.pop("target").map({0: "malignant", 1: "benign"})
    path = tmp_path_factory.mktemp("data") / "breast_cancer.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory) -> Path:
    """160 rows, 4 numeric and 1 categorical feature, a binary target ``label``: for tests of
    the machinery (processes, storage, signals) where trials should take a fraction of a
    second."""
    rng = np.random.default_rng(7)
    n = 160
    X = rng.normal(size=(n, 4))
    colour = rng.choice(["red", "green", "blue"], size=n)
    logit = X[:, 0] - 0.8 * X[:, 1] + (colour == "red") + rng.normal(scale=0.7, size=n)
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"]).round(4)
    df["colour"] = colour
    df["label"] = np.where(logit > 0.3, "yes", "no")
    path = tmp_path_factory.mktemp("data") / "small.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def diabetes_csv(tmp_path_factory) -> Path:
    from sklearn.datasets import load_diabetes

    df = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "y"})
    path = tmp_path_factory.mktemp("data") / "diabetes.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture()
def mixed_frame() -> pd.DataFrame:
    """200 rows with numeric, categorical, boolean, datetime, ID and constant columns."""
    rng = np.random.default_rng(0)
    n = 200
    num = rng.normal(size=n)
    cat = rng.choice(["red", "green", "blue"], size=n)
    y = np.where(num + (cat == "red") * 1.5 + rng.normal(scale=0.3, size=n) > 0.5, "yes", "no")
    return pd.DataFrame({
        "num": num,
        "num_missing": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        "cat": cat,
        "flag": rng.choice(["true", "false"], size=n),
        "when": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "customer_id": np.arange(n) + 1000,
        "const": 7,
        "label": y,
    })


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster for the whole session (skips without PostgreSQL;
    fails under CI=true)."""
    from .postgres import throwaway_cluster

    with throwaway_cluster() as url:
        yield url
