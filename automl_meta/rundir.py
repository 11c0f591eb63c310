"""The run directory: writing it atomically, reading it back safely.

Layout: ``model.joblib``, ``manifest.json``, ``leaderboard.csv``, ``report.json``. The
directory is written under a temporary name beside the target and renamed when complete,
so an interrupted run never leaves a directory that looks finished. ``load_run`` checks the
model file's SHA-256 against the manifest *before* unpickling it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from . import __version__
from .data import file_sha256
from .errors import ModelIntegrityError, UsageError
from .model import TabularModel

# lz4 compresses a 200 MB forest to ~80 MB in ~1 s; zlib level 3 needs ~5 s, too slow for
# the time-budget promise
try:
    import lz4  # noqa: F401

    _COMPRESS: Any = ("lz4", 1)
except ImportError:  # pragma: no cover - lz4 is a dependency
    _COMPRESS = 0

MODEL_FILE = "model.joblib"
MODEL_FILES = {"joblib": "model.joblib", "skops": "model.skops"}
#: the only non-scikit-learn types a skops model file may contain (checked before loading)
SKOPS_TRUSTED = ["automl_meta.model.TabularModel", "automl_meta.pipeline.FeaturePreparer",
                 "automl_meta.data.Schema", "automl_meta.data.Column", "numpy.dtype"]
#: scikit-learn's own types (e.g. sklearn.tree._tree.Tree, which skops does not trust by default)
SKOPS_TRUSTED_PREFIXES = ("sklearn.",)
MANIFEST_FILE = "manifest.json"
LEADERBOARD_FILE = "leaderboard.csv"
REPORT_FILE = "report.json"


def versions() -> dict[str, str]:
    """Versions of automl-meta and the libraries a model depends on."""
    import numpy
    import optuna
    import sklearn

    return {"automl_meta": __version__, "python": platform.python_version(),
            "scikit_learn": sklearn.__version__, "numpy": numpy.__version__,
            "pandas": pd.__version__, "optuna": optuna.__version__, "joblib": joblib.__version__}


def check_output_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse an existing, non-empty output directory unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"output {path} exists and is not a directory")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise UsageError(f"output directory {path} already exists and is not empty; "
                         "choose another --output or pass --overwrite")
    return path


def _skops_io() -> Any:
    try:
        import skops.io as sio
    except ImportError:
        raise UsageError("the skops model format needs the skops package: "
                         "pip install 'automl-meta[skops]'") from None
    return sio


class RunStaging:
    """Where a fit in progress keeps its state: ``.NAME.partial`` beside the output directory.

    It holds the Optuna study (``study.db``, SQLite) and a ``lock`` file with the owner's pid.
    When the fit ends, the run files are written into it and it is renamed to the output
    directory. A fit that is killed leaves it behind: ``fit --resume`` continues its study;
    a second fit while the first is alive is refused.
    """

    def __init__(self, output: str | Path):
        self.output = Path(output).resolve()
        self.path = self.output.with_name(f".{self.output.name}.partial")

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{self.path / 'study.db'}"

    def owner(self) -> int | None:
        """Pid of a live fit that owns the staging directory, if any."""
        try:
            pid = int((self.path / "lock").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid if pid != os.getpid() else None

    def open(self, *, resume: bool = False, overwrite: bool = False) -> RunStaging:
        """Claim the staging directory (see the class docstring for the rules)."""
        if self.path.exists():
            pid = self.owner()
            if pid is not None:
                raise UsageError(f"another fit (pid {pid}) is writing to {self.output}; wait "
                                 "for it or choose another --output")
            if not resume:
                if not overwrite:
                    raise UsageError(f"an interrupted fit left its state for {self.output} "
                                     f"in {self.path.name}; pass --resume to continue it or "
                                     "--overwrite to start again")
                shutil.rmtree(self.path)
        elif resume:
            raise UsageError(f"nothing to resume for {self.output} (no {self.path.name})")
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "lock").write_text(f"{os.getpid()} {platform.node()}\n")
        return self


def write_run_dir(path: str | Path, model: TabularModel, manifest: dict[str, Any],
                  leaderboard: pd.DataFrame, report: dict[str, Any],
                  overwrite: bool = False, model_format: str = "joblib",
                  staging: RunStaging | None = None,
                  finalize: Callable[[Path], Any] | None = None) -> Path:
    """Write a complete run directory at ``path`` (atomically: temp name, then rename).

    ``model_format`` is ``joblib`` (a pickle: loading runs code, so only load your own) or
    ``skops`` (skops.io: loading only instantiates an allow-list of types).
    """
    if model_format not in MODEL_FILES:
        raise UsageError(f"unknown model format {model_format!r}; use joblib or skops")
    sio = _skops_io() if model_format == "skops" else None
    path = Path(path).resolve()
    check_output_dir(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    if staging is not None:
        tmp = staging.path
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        model_path = tmp / MODEL_FILES[model_format]
        if sio is not None:
            sio.dump(model, model_path)
        else:
            joblib.dump(model, model_path, compress=_COMPRESS)
        manifest = dict(manifest)
        manifest["model_file"] = model_path.name
        manifest["model_format"] = model_format
        manifest["model_sha256"] = file_sha256(model_path)
        manifest["versions"] = versions()
        leaderboard.to_csv(tmp / LEADERBOARD_FILE, index=False)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2, default=_json_default))
        # the manifest goes last: its presence marks a complete directory
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=_json_default))
        if finalize is not None:  # e.g. render report.html from the files just written
            finalize(tmp)
        (tmp / "lock").unlink(missing_ok=True)
        if path.exists():
            if not overwrite and any(path.iterdir()):
                raise UsageError(f"output directory {path} appeared while fitting; "
                                 "nothing was overwritten (pass --overwrite to replace it)")
            backup = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(backup)
            tmp.rename(path)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        if staging is None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray,)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run directory's manifest (a clear error when it is not a run directory)."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / MANIFEST_FILE
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    if not manifest_path.exists():
        raise UsageError(f"{run_dir}: not a complete run directory (no {MANIFEST_FILE})")
    try:
        return json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelIntegrityError(f"{manifest_path}: corrupt manifest ({exc})") from None


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], TabularModel]:
    """Load a run directory's manifest and model, verifying the model's SHA-256 first.

    Raises
    ------
    ModelIntegrityError
        When the model file's checksum differs from the manifest's (it is not unpickled).
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    model_path = run_dir / manifest.get("model_file", MODEL_FILE)
    if not model_path.exists():
        raise UsageError(f"{run_dir}: the model file {model_path.name} is missing")
    expected = manifest.get("model_sha256")
    actual = file_sha256(model_path)
    if not expected or actual != expected:
        raise ModelIntegrityError(
            f"{model_path}: SHA-256 {actual[:12]}… does not match the manifest's "
            f"{str(expected)[:12]}…; refusing to load a model file that was changed")
    if manifest.get("model_format", "joblib") == "skops":
        sio = _skops_io()
        untrusted = sio.get_untrusted_types(file=model_path)
        unknown = [t for t in untrusted
                   if t not in SKOPS_TRUSTED and not t.startswith(SKOPS_TRUSTED_PREFIXES)]
        if unknown:
            raise ModelIntegrityError(f"{model_path}: contains types outside the allow-list, "
                                      f"refusing to load: {', '.join(unknown[:5])}")
        model = sio.load(model_path, trusted=untrusted)
    else:
        model = joblib.load(model_path)
    if not isinstance(model, TabularModel):
        raise ModelIntegrityError(f"{model_path}: not an automl-meta model")
    saved = manifest.get("versions", {}).get("scikit_learn")
    import sklearn

    if saved and saved != sklearn.__version__:
        print(f"warning: model was fitted with scikit-learn {saved}, this is "
              f"{sklearn.__version__}", file=sys.stderr)
    return manifest, model
