"""Tasks from OpenML through the official ``openml`` client.

A task id resolves to its dataset and target (``task.target_name``); the task's own
cross-validation splits (repeat 0) are used as the CV folds when the data is used whole.
A suite (name or id, e.g. ``OpenML-CC18``) resolves to its task ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from automl_meta.data import prepare_dataset
from automl_meta.errors import UsageError
from automl_meta.meta.builder.sources import LoadedTask, TaskSpec


def configure(cache_dir: str | Path | None = None, server: str | None = None) -> None:
    """Point the openml client at a cache folder and / or server."""
    import openml

    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        openml.config.set_root_cache_directory(str(cache_dir))
    if server is not None:
        openml.config.server = server


def suite_task_ids(suite: str) -> list[int]:
    """Task ids of an OpenML suite (benchmark study) given by name or id."""
    import openml

    try:
        s = openml.study.get_suite(int(suite) if str(suite).isdigit() else suite)
    except Exception as exc:  # the client raises many kinds (network, server)
        raise UsageError(f"cannot fetch OpenML suite {suite!r}: {type(exc).__name__}: "
                         f"{exc}") from None
    return [int(t) for t in s.tasks]


def list_tasks(task_ids: Sequence[int]) -> list[TaskSpec]:
    """One spec per OpenML task id (nothing is downloaded until a task is loaded)."""
    return [TaskSpec(task_id=f"openml-task-{tid}", name=f"openml-task-{tid}",
                     source=f"openml:task/{tid}", loader=_loader(int(tid)))
            for tid in task_ids]


def load_task(task_id: int) -> LoadedTask:
    """Download (or read from the cache) an OpenML task and its dataset."""
    import openml

    task = openml.tasks.get_task(task_id, download_data=False, download_qualities=False)
    kind = {openml.tasks.TaskType.SUPERVISED_CLASSIFICATION: "classification",
            openml.tasks.TaskType.SUPERVISED_REGRESSION: "regression"}.get(task.task_type_id)
    if kind is None:
        raise UsageError(f"OpenML task {task_id} is a {task.task_type}, not supervised "
                         "classification or regression")
    ds = openml.datasets.get_dataset(task.dataset_id, download_data=True,
                                     download_qualities=False,
                                     download_features_meta_data=True)
    target = task.target_name
    X, y, _, _ = ds.get_data(target=target)
    df = X.copy()
    df[target] = y
    dataset = prepare_dataset(df, target, kind, name=ds.name)
    folds = None
    if dataset.n_dropped_missing_target == 0:
        try:
            n_repeats, n_folds, _ = task.get_split_dimensions()
            folds = []
            for k in range(n_folds):
                train, test = task.get_train_test_split_indices(fold=k, repeat=0)
                folds.append((np.asarray(train), np.asarray(test)))
        except Exception:  # a task without splits: our own folds are used
            folds = None
    return LoadedTask(dataset, folds, {"openml_dataset_id": int(task.dataset_id),
                                       "openml_task_id": int(task_id),
                                       "dataset_name": ds.name})


def _loader(task_id: int):
    def load() -> LoadedTask:
        return load_task(task_id)

    return load

