"""Tasks from a local folder of CSV / TSV / Parquet / ARFF(.gz) files.

With a ``manifest.csv`` (columns ``name, file`` and optionally ``task, target, openml_id``)
the manifest decides; without one, every data file in the folder (recursively) is a task
whose target is its last column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from automl_meta.data import load_dataset
from automl_meta.errors import UsageError
from automl_meta.meta.builder.sources import LoadedTask, TaskSpec

DATA_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".arff", ".csv.gz", ".tsv.gz", ".arff.gz")


def _task_arg(hint: str | None) -> str | None:
    if hint in (None, "") or (isinstance(hint, float) and pd.isna(hint)):
        return None
    hint = str(hint).strip().lower()
    return hint if hint in ("classification", "regression", "binary", "multiclass") else None


def list_tasks(folder: str | Path) -> list[TaskSpec]:
    """The tasks in ``folder`` (sorted by id; the id is the file's relative path without its
    data suffix, e.g. ``classification/anneal``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    manifest = folder / "manifest.csv"
    specs: list[TaskSpec] = []
    if manifest.exists():
        m = pd.read_csv(manifest, dtype=str)
        if "file" not in m.columns:
            raise UsageError(f"{manifest}: needs at least the column 'file'")
        for row in m.to_dict("records"):
            file = folder / row["file"]
            name = row.get("name") or _stem(Path(row["file"]))
            target = row.get("target") if isinstance(row.get("target"), str) else None
            oid = row.get("openml_id")
            oid = int(float(oid)) if isinstance(oid, str) and oid.strip() else None
            hint = _task_arg(row.get("task"))
            specs.append(TaskSpec(task_id=_task_id(row["file"]), name=str(name), source=str(file),
                                  openml_id=oid, task_hint=hint,
                                  loader=_loader(file, target, hint)))
    else:
        for file in sorted(folder.rglob("*")):
            if file.is_file() and file.name.lower().endswith(DATA_SUFFIXES):
                rel = file.relative_to(folder).as_posix()
                specs.append(TaskSpec(task_id=_task_id(rel), name=_stem(file), source=str(file),
                                      loader=_loader(file, None, None)))
    ids = [s.task_id for s in specs]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise UsageError(f"{folder}: task names are not unique: {sorted(dupes)[:5]}")
    if not specs:
        raise UsageError(f"{folder}: no data files found")
    return sorted(specs, key=lambda s: s.task_id)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(DATA_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _task_id(relative_file: str) -> str:
    """A task's id: its file path relative to the folder, without the data suffix
    (stable whatever other files the folder holds)."""
    rel = Path(relative_file)
    return (rel.parent / _stem(rel)).as_posix()


def _loader(file: Path, target: str | None, hint: str | None):
    def load() -> LoadedTask:
        # "classification" lets the data decide binary vs multiclass
        return LoadedTask(load_dataset(file, target, hint))

    return load
