"""Where the metabase builder gets its tasks: a local folder or OpenML."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automl_meta.data import Dataset


@dataclass
class TaskSpec:
    """One prior task to build: an id, provenance, and a way to load it."""

    task_id: str
    name: str
    source: str  # file path or openml:task/ID
    openml_id: int | None = None
    task_hint: str | None = None  # "classification" / "regression" when the source says
    loader: Callable[[], LoadedTask] | None = field(default=None, repr=False, compare=False)

    def load(self) -> LoadedTask:
        if self.loader is None:  # pragma: no cover - every source sets one
            raise RuntimeError(f"task {self.task_id} has no loader")
        return self.loader()


@dataclass
class LoadedTask:
    """A loaded task: the dataset and, when the source prescribes them, its CV folds."""

    dataset: Dataset
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
