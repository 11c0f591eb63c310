"""Shared fixtures: small datasets written by the tests or shipped with scikit-learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared (tests using it skip when it is absent)."""
    return SHARED.joinpath(*parts)


needs_shared = pytest.mark.skipif(not (SHARED / "corpus" / "manifest.csv").exists(),
                                  reason="../shared (corpus, fixtures, reference) is absent")


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
