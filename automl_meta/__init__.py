"""automl-meta: AutoML for tabular data, warm-started from similar prior tasks."""

from __future__ import annotations

from typing import Any

from automl_meta._version import __version__

__all__ = ["AutoML", "__version__"]


def __getattr__(name: str) -> Any:
    # imported lazily so that `automl-meta --help` does not pay for scikit-learn and Optuna
    if name == "AutoML":
        from automl_meta.estimator import AutoML

        return AutoML
    raise AttributeError(f"module 'automl_meta' has no attribute {name!r}")
