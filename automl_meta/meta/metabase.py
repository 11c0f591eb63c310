"""The meta-knowledge base (metabase): its files, and loading them safely.

Files (see ARCHITECTURE.md):

- ``manifest.json``: format version, build date, status, source, command, search-space
  version, meta-feature names, counts, SHA-256 of the three files below;
- ``tasks.csv``: one row per prior task (id, name, OpenML id, task type, status, meta-features);
- ``configs.jsonl``: one line per distinct configuration (``{"config_id", "params"}``);
- ``results.csv``: every evaluated trial (task id, config id, state, CV score, fit seconds).

Loading verifies the checksums and the search-space version; a mismatch raises
:class:`~automl_meta.errors.MetabaseError` and is never silently used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from automl_meta.errors import MetabaseError
from automl_meta.resources import bundled_metabase_dir

FORMAT_VERSION = 1
TASKS_FILE = "tasks.csv"
CONFIGS_FILE = "configs.jsonl"
RESULTS_FILE = "results.csv"
MANIFEST_FILE = "manifest.json"
DATA_FILES = (TASKS_FILE, CONFIGS_FILE, RESULTS_FILE)
TASK_COLUMNS = ["task_id", "name", "openml_id", "source", "target", "task", "status", "error",
                "n_rows", "n_features", "n_classes", "search_rows", "n_folds", "metric",
                "greater_is_better", "n_trials", "best_score", "best_config_id",
                "search_seconds"]
RESULT_COLUMNS = ["task_id", "config_id", "trial", "state", "score", "fit_seconds", "duration"]


def config_id(config: Mapping[str, Any]) -> str:
    """Stable id of a configuration: SHA-1 of its canonical JSON, 12 hex digits."""
    canonical = json.dumps(dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode()).hexdigest()[:12]


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Metabase:
    """A loaded metabase."""

    tasks: pd.DataFrame
    configs: dict[str, dict[str, Any]]
    results: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def metafeature_names(self) -> list[str]:
        return list(self.manifest.get("metafeatures", {}).get("names", []))

    def ok_tasks(self) -> pd.DataFrame:
        """Tasks whose search succeeded."""
        return self.tasks[self.tasks["status"] == "ok"]


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def serialise(tasks: pd.DataFrame, configs: Mapping[str, Mapping[str, Any]],
              results: pd.DataFrame) -> dict[str, bytes]:
    """The three data files as bytes (deterministic: sorted, fixed float format)."""
    tasks = tasks.sort_values("task_id").reset_index(drop=True)
    results = results.sort_values(["task_id", "trial"]).reset_index(drop=True)
    buf = io.StringIO()
    tasks.to_csv(buf, index=False, float_format="%.10g", lineterminator="\n")
    out = {TASKS_FILE: buf.getvalue().encode()}
    lines = [json.dumps({"config_id": cid, "params": dict(configs[cid])}, sort_keys=True)
             for cid in sorted(configs)]
    out[CONFIGS_FILE] = ("\n".join(lines) + ("\n" if lines else "")).encode()
    buf = io.StringIO()
    results.to_csv(buf, index=False, float_format="%.8g", lineterminator="\n")
    out[RESULTS_FILE] = buf.getvalue().encode()
    return out


def deserialise(raw: Mapping[str, bytes]
                ) -> tuple[pd.DataFrame, dict[str, dict[str, Any]], pd.DataFrame]:
    """Tasks, configurations and results from the bytes of the three data files."""
    tasks = pd.read_csv(io.BytesIO(raw[TASKS_FILE]), dtype={"task_id": str, "name": str})
    results = pd.read_csv(io.BytesIO(raw[RESULTS_FILE]), dtype={"task_id": str,
                                                                "config_id": str})
    configs = {}
    for line in raw[CONFIGS_FILE].decode().splitlines():
        if line.strip():
            rec = json.loads(line)
            configs[rec["config_id"]] = rec["params"]
    return tasks, configs, results


def as_stored(tasks: pd.DataFrame, configs: Mapping[str, Mapping[str, Any]],
              results: pd.DataFrame
              ) -> tuple[pd.DataFrame, dict[str, dict[str, Any]], pd.DataFrame]:
    """The three tables exactly as they read back once written (sorted, floats in the
    file format): statistics derived from these (the portfolio, the normalisation) are
    the ones a reader of the written metabase computes too."""
    return deserialise(serialise(tasks, configs, results))


def write_manifest(path: str | Path, manifest: Mapping[str, Any]) -> None:
    """Write a metabase's ``manifest.json`` atomically (as :func:`write_metabase` does)."""
    _atomic_write(Path(path) / MANIFEST_FILE,
                  (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode())


def write_file(path: str | Path, name: str, data: bytes) -> dict[str, Any]:
    """Write a file derived from a metabase into its folder, atomically.

    Returns
    -------
    dict
        ``sha256`` and ``bytes`` of what was written, for the manifest.
    """
    _atomic_write(Path(path) / name, data)
    return {"sha256": _sha256_bytes(data), "bytes": len(data)}


def write_metabase(path: str | Path, tasks: pd.DataFrame,
                   configs: Mapping[str, Mapping[str, Any]], results: pd.DataFrame,
                   manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Write all files atomically (each by temp file and rename; the manifest last).

    Returns the manifest as written (with counts and checksums).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    files = serialise(tasks, configs, results)
    manifest = dict(manifest)
    manifest["format_version"] = FORMAT_VERSION
    ok = tasks[tasks["status"] == "ok"] if len(tasks) else tasks
    manifest["counts"] = {
        "tasks": int(len(ok)), "tasks_failed": int(len(tasks) - len(ok)),
        "by_task_type": {str(k): int(v) for k, v in ok["task"].value_counts().items()}
        if len(ok) else {},
        "configs": len(configs), "results": int(len(results))}
    manifest["files"] = {name: {"sha256": _sha256_bytes(data), "bytes": len(data)}
                         for name, data in files.items()}
    manifest.pop("surrogates", None)  # fitted on other data: store_surrogates refits them
    for name, data in files.items():
        _atomic_write(path / name, data)
    write_manifest(path, manifest)
    return manifest


def read_manifest(path: str | Path) -> dict[str, Any]:
    """A metabase's manifest, or a clear error."""
    path = Path(path)
    mpath = path / MANIFEST_FILE
    if not mpath.exists():
        raise MetabaseError(f"{path}: not a metabase (no {MANIFEST_FILE})")
    try:
        return json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise MetabaseError(f"{mpath}: corrupt manifest ({exc})") from None


def verify_files(path: str | Path, manifest: Mapping[str, Any]) -> dict[str, bool]:
    """Whether each data file matches the checksum in the manifest."""
    path = Path(path)
    status = {}
    for name in DATA_FILES:
        expected = manifest.get("files", {}).get(name, {}).get("sha256")
        fpath = path / name
        status[name] = bool(expected) and fpath.exists() and \
            _sha256_bytes(fpath.read_bytes()) == expected
    return status


def load_metabase(path: str | Path | None = None, *, space_version: str | None = None,
                  verify: bool = True) -> Metabase:
    """Load a metabase (the bundled one by default), verifying checksums and space version.

    Parameters
    ----------
    path : str or Path, optional
        Metabase folder; the bundled one when omitted.
    space_version : str, optional
        The search space in use; a metabase built against another version is refused.
    verify : bool
        Check the SHA-256 of every data file.

    Raises
    ------
    MetabaseError
        Missing or corrupt files, checksum mismatch, other search-space version.
    """
    path = Path(path) if path else bundled_metabase_dir()
    manifest = read_manifest(path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise MetabaseError(f"{path}: metabase format {manifest.get('format_version')} is not "
                            f"supported (expected {FORMAT_VERSION})")
    if space_version is not None and manifest.get("search_space_version") != space_version:
        raise MetabaseError(
            f"{path}: built against search space {manifest.get('search_space_version')}, but "
            f"this search space is {space_version}; rebuild it with `automl-meta "
            "build-metabase` (its configurations may not exist in this space)")
    raw: dict[str, bytes] = {}
    for name in DATA_FILES:
        fpath = path / name
        if not fpath.exists():
            raise MetabaseError(f"{path}: missing {name}")
        raw[name] = fpath.read_bytes()
        if verify:
            expected = manifest.get("files", {}).get(name, {}).get("sha256")
            if _sha256_bytes(raw[name]) != expected:
                raise MetabaseError(f"{fpath}: checksum does not match the manifest (the file "
                                    "was changed or is corrupt); rebuild the metabase")
    try:
        tasks, configs, results = deserialise(raw)
    except (ValueError, KeyError, pd.errors.ParserError) as exc:
        raise MetabaseError(f"{path}: cannot parse metabase files ({exc})") from None
    missing_cols = [c for c in ("task_id", "task", "status") if c not in tasks.columns]
    if missing_cols:
        raise MetabaseError(f"{path}: {TASKS_FILE} lacks columns {missing_cols}")
    return Metabase(tasks, configs, results, manifest, str(path))


def task_layer(source: Any) -> str:
    """The layer a task belongs to, from its ``source`` in ``tasks.csv``.

    A source that is a bare tag (``openml-run``, ``history``) is its own layer; a task
    built from OpenML (``openml:task/ID``) is in ``openml``; a task built from a file (its
    path) is in ``dir``.

    Parameters
    ----------
    source : str or None

    Returns
    -------
    str
    """
    text = "" if source is None or (isinstance(source, float) and source != source) \
        else str(source)
    if text.startswith("openml:"):
        return "openml"
    if text and not any(ch in text for ch in "/\\.:"):
        return text
    return "dir"


def _layers(path: Path, manifest: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, Any]]:
    """Tasks per layer (from ``tasks.csv``'s ``source``) and each recorded layer's
    provenance in brief (``manifest["layers"]``)."""
    try:
        sources = pd.read_csv(path / TASKS_FILE, usecols=["source"], dtype=str)["source"]
        counts = {str(k): int(v) for k, v in sources.map(task_layer).value_counts().items()}
    except (OSError, ValueError, pd.errors.ParserError):
        counts = {}
    brief = {}
    for name, entry in (manifest.get("layers") or {}).items():
        entry = entry if isinstance(entry, Mapping) else {}
        brief[name] = {k: entry.get(k) for k in ("task_source", "source", "date", "counts",
                                                 "flows_without_family", "summarising",
                                                 "licence", "citation")}
        brief[name]["flows"] = sorted(entry.get("flows") or {})
        brief[name]["linked"] = len(entry.get("linked") or {})
    return counts, brief


def describe_metabase(path: str | Path | None = None) -> dict[str, Any]:
    """What a metabase holds, from its manifest, and whether its files are intact.

    Parameters
    ----------
    path : str, Path or None
        The metabase folder; ``None`` is the bundled one.

    Returns
    -------
    dict
        ``path``, ``status``, ``source``, ``command``, ``created``, ``updated``, ``counts``
        (per task type among them), ``search_space_version`` and ``search_space_matches``
        (whether this install's search space has that version), ``checksums_ok`` and
        ``checksums`` (file name → whether it matches the manifest), ``n_metafeatures``,
        ``layers`` (tasks per layer, see :func:`task_layer`), ``layer_provenance``
        (each imported layer's source, date and counts, from ``manifest["layers"]``) and
        ``surrogates`` (the stored performance model of each task kind: trials it was
        fitted on, scikit-learn version, whether its checksum matches and whether it was
        fitted on these data files, see :mod:`automl_meta.meta.surrogate`).
    """
    from automl_meta.search.space import load_space

    path = path or bundled_metabase_dir()
    manifest = read_manifest(path)
    checks = verify_files(path, manifest)
    space_version = load_space().version
    layers, provenance = _layers(Path(path), manifest)
    from automl_meta.data import file_sha256
    from automl_meta.meta.surrogate import data_digest

    models = {}
    for kind, entry in (manifest.get("surrogates") or {}).items():
        fpath = Path(path) / str(entry.get("file", ""))
        intact = fpath.is_file() and file_sha256(fpath) == entry.get("sha256")
        models[kind] = {"file": entry.get("file"), "n_trials": entry.get("n_trials"),
                        "sklearn": entry.get("sklearn"), "checksum_ok": intact,
                        "current": intact and entry.get("data_digest") == data_digest(manifest)}
    return {"path": str(path), "status": manifest.get("status"),
            "source": manifest.get("source"), "command": manifest.get("command"),
            "created": manifest.get("created"), "updated": manifest.get("updated"),
            "counts": manifest.get("counts"),
            "search_space_version": manifest.get("search_space_version"),
            "search_space_matches": manifest.get("search_space_version") == space_version,
            "checksums_ok": all(checks.values()), "checksums": checks,
            "n_metafeatures": len(manifest.get("metafeatures", {}).get("names", [])),
            "layers": layers, "layer_provenance": provenance, "surrogates": models}
