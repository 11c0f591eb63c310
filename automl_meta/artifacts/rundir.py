"""The run directory: writing it atomically, reading it back safely.

Layout: ``model.skops`` (or ``model.joblib``), ``manifest.json``, ``leaderboard.csv``,
``report.json``, ``report.html`` and the search's ``study.db``. The directory is written
under a temporary name beside the target and renamed when complete, so an interrupted run
never leaves a directory that looks finished.

Everything in a run directory is treated as untrusted when it is read back
(see ``docs/security.md``): ``load_run`` validates the manifest, opens the model file only
when it is a regular file named as the manifest's format requires, checks its SHA-256, and
then either audits a skops file against :data:`SKOPS_ALLOWED_TYPES` /
:data:`SKOPS_ALLOWED_FUNCTIONS` before building anything, or refuses a pickle unless the
caller allows pickles.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import platform
import shutil
import stat
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import joblib
import pandas as pd

from automl_meta._version import __version__
from automl_meta.artifacts.model import TabularModel
from automl_meta.artifacts.report import dumps_json
from automl_meta.data import file_sha256
from automl_meta.defaults import DEFAULT_MODEL_FORMAT
from automl_meta.errors import AutoMLError, ModelIntegrityError, UsageError

# lz4 compresses a 200 MB forest to ~80 MB in ~1 s; zlib level 3 needs ~5 s, too slow for
# the time-budget promise
try:
    import lz4  # noqa: F401

    _COMPRESS: Any = ("lz4", 1)
except ImportError:  # pragma: no cover - lz4 is a dependency
    _COMPRESS = 0

MODEL_FILES = {"joblib": "model.joblib", "skops": "model.skops"}
#: model file of a 0.1.0 manifest that names none
MODEL_FILE = MODEL_FILES["joblib"]
MANIFEST_FILE = "manifest.json"
LEADERBOARD_FILE = "leaderboard.csv"
REPORT_FILE = "report.json"
REPORT_HTML_FILE = "report.html"
STUDY_FILE = "study.journal"
#: the study file of run directories written by 0.2.0 and earlier (SQLite)
LEGACY_STUDY_FILE = "study.db"
#: every name a finished run directory may hold (``--overwrite`` replaces nothing else):
#: what write_run_dir writes, report.html (write_report), and the staging directory's Optuna
#: study (with the lock Optuna's journal keeps beside it, and the SQLite files of older
#: versions)
RUN_FILES = frozenset({MANIFEST_FILE, *MODEL_FILES.values(), LEADERBOARD_FILE, REPORT_FILE,
                       REPORT_HTML_FILE, STUDY_FILE, f"{STUDY_FILE}.lock", LEGACY_STUDY_FILE,
                       f"{LEGACY_STUDY_FILE}-journal", f"{LEGACY_STUDY_FILE}-wal",
                       f"{LEGACY_STUDY_FILE}-shm"})
#: manifest layout written now; a manifest without ``format_version`` is the 0.1.0 layout
FORMAT_VERSION = 2
#: environment variable that allows loading pickle (joblib) models, like ``--allow-pickle``
ALLOW_PICKLE_ENV = "AUTOML_META_ALLOW_PICKLE"
MAX_MANIFEST_BYTES = 16 << 20
MAX_MODEL_BYTES = 64 << 30
MAX_SKOPS_SCHEMA_BYTES = 512 << 20

#: Every type a skops model file written by automl-meta may contain, by exact name (module
#: path + class name as skops records it). It is the set of classes the pipelines built by
#: ``automl_meta.search.pipeline`` hold once fitted, for every family of ``configs/space.yaml``,
#: both task kinds and every preprocessing step (tests/test_security.py fits each one and
#: checks the list), plus automl-meta's own classes. A type not listed makes ``load_run``
#: refuse the file before anything in it is built. When a class of automl-meta moves to
#: another module, add the new name next to the old one: run directories written before the
#: move still name the old one.
#: Modules of 0.1.0 (the flat layout) that model files written then name, and the modules
#: that hold those classes now; ``load_run`` makes the old names resolve while it loads.
LEGACY_MODULES = {"automl_meta.model": "automl_meta.artifacts.model",
                  "automl_meta.pipeline": "automl_meta.search.pipeline"}

SKOPS_ALLOWED_TYPES: frozenset[str] = frozenset({
    # automl-meta's own classes, where they live now...
    "automl_meta.artifacts.model.TabularModel",
    "automl_meta.artifacts.ensemble.Ensemble",
    "automl_meta.search.pipeline.FeaturePreparer",
    "automl_meta.data.schema.Schema",
    # ...and their 0.1.0 names (LEGACY_MODULES makes those names resolve)
    "automl_meta.model.TabularModel",
    "automl_meta.pipeline.FeaturePreparer",
    "automl_meta.data.Schema",
    "automl_meta.data.Column",
    # Python and NumPy values
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.slice",
    "functools.partial",
    "numpy.ndarray", "numpy.dtype", "numpy.float64", "numpy.int64", "numpy.uint64",
    "numpy.random._generator.Generator", "numpy.random.mtrand.RandomState",
    # pipeline and preprocessing
    "sklearn.pipeline.Pipeline",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.compose._target.TransformedTargetRegressor",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.preprocessing._data.QuantileTransformer",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._target_encoder.TargetEncoder",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.preprocessing._label.LabelEncoder",
    # HistGradientBoosting's own categorical preprocessor holds a FunctionTransformer whose
    # func is functools.partial(check_array, ...); its func is audited separately
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.model_selection._split.KFold",
    "sklearn.model_selection._split.StratifiedKFold",
    # histogram gradient boosting
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.IdentityLink", "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit", "sklearn._loss.link.Interval",
    # random forest, extra trees
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
    # linear
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._coordinate_descent.ElasticNet",
    # SVM
    "sklearn.svm._classes.SVC", "sklearn.svm._classes.SVR",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    # k-nearest neighbours
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._regression.KNeighborsRegressor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    # MLP
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
})
#: Functions a skops model file may reference (skops ``FunctionNode``): only pure ones our
#: pipelines hold. Any other function, and every bound method, is refused.
SKOPS_ALLOWED_FUNCTIONS: frozenset[str] = frozenset({
    "sklearn.utils.validation.check_array",
})
#: Classes a skops model file may hold as values (skops ``TypeNode``, e.g. an encoder's
#: ``dtype``); a class held as a value can be called, so this list is kept apart and short.
SKOPS_ALLOWED_TYPE_VALUES: frozenset[str] = frozenset({"builtins.str", "numpy.float64"})
#: skops node kinds whose name is a function or class reference (checked against the two
#: lists above); every other node kind names the type of an object it builds
_SKOPS_FUNCTION_NODES = {"FunctionNode"}
_SKOPS_TYPE_VALUE_NODES = {"TypeNode"}
#: node kinds that build nothing from their name: JSON literals and references to a node
#: met earlier in the file (which was checked there)
_SKOPS_UNNAMED_NODES = {"JsonNode", "CachedNode"}
#: node kinds our model files are made of; a file using any other (a bound method, an
#: ``operator`` function, ...) is refused
_SKOPS_KNOWN_NODES = (_SKOPS_FUNCTION_NODES | _SKOPS_TYPE_VALUE_NODES | _SKOPS_UNNAMED_NODES
                      | {"ObjectNode", "DictNode", "ListNode", "TupleNode", "SliceNode",
                         "PartialNode", "NdArrayNode", "DTypeNode", "RandomStateNode",
                         "RandomGeneratorNode", "TreeNode", "LossNode"})


def versions() -> dict[str, str]:
    """Versions of automl-meta and the libraries a model depends on."""
    import numpy
    import optuna
    import sklearn

    return {"automl_meta": __version__, "python": platform.python_version(),
            "scikit_learn": sklearn.__version__, "numpy": numpy.__version__,
            "pandas": pd.__version__, "optuna": optuna.__version__, "joblib": joblib.__version__}


# ------------------------------------------------------------------------- output checks
def _protected_dirs() -> list[Path]:
    """Directories ``fit --output`` never replaces: the working directory, its ancestors,
    the home directory and its ancestors."""
    out = [Path.cwd().resolve()]
    out += list(out[0].parents)
    try:
        home = Path.home().resolve()
        out += [home, *home.parents]
    except RuntimeError:  # no home directory
        pass
    return out


def run_dir_problem(path: str | Path) -> str | None:
    """Why ``path`` is not recognisably a run directory written by automl-meta, or None.

    A run directory holds a ``manifest.json`` that parses as a dict with ``format_version``
    (or, in the 0.1.0 layout, ``model_sha256`` and ``target``) and nothing but the files
    listed in :data:`RUN_FILES`, all of them regular files.
    """
    path = Path(path)
    try:
        entries = list(os.scandir(path))
    except OSError as exc:
        return f"cannot list it ({exc.strerror})"
    foreign = sorted(e.name for e in entries if e.name not in RUN_FILES
                     or not e.is_file(follow_symlinks=False))
    if foreign:
        shown = ", ".join(repr(n) for n in foreign[:5])
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        return f"it holds {shown}{more}, which a run directory does not"
    try:
        manifest = json.loads(_read_regular(path / MANIFEST_FILE, MAX_MANIFEST_BYTES))
    except (OSError, ValueError, RecursionError, AutoMLError):
        return f"it has no readable {MANIFEST_FILE}"
    if not isinstance(manifest, dict) or not (
            "format_version" in manifest or {"model_sha256", "target"} <= manifest.keys()):
        return f"its {MANIFEST_FILE} was not written by automl-meta"
    return None


def check_output_dir(path: str | Path, overwrite: bool = False,
                     data_files: Iterable[str | Path] = ()) -> Path:
    """Check that ``fit`` may write its run directory at ``path``; raise if not.

    An existing ``path`` must be an empty directory, or, with ``overwrite``, a run directory
    (see :func:`run_dir_problem`). Never replaced, with or without ``overwrite``: a symlink,
    the working directory or any of its ancestors, the home directory, and a directory that
    holds one of ``data_files`` (the training data).

    Parameters
    ----------
    path : str or Path
        The ``--output`` directory, as given.
    overwrite : bool
        Allow replacing a previous run directory.
    data_files : iterable of str or Path
        Files the fit reads; a directory holding one is never replaced.

    Returns
    -------
    Path
        ``path`` as a Path.

    Raises
    ------
    UsageError
        When ``path`` must not be written or replaced (exit 2).
    """
    path = Path(path)
    if not os.path.lexists(path):
        return path
    if path.is_symlink():
        raise UsageError(f"output {path} is a symlink; give the real directory or a new one "
                         "(a symlink is never replaced)")
    if not path.is_dir():
        raise UsageError(f"output {path} exists and is not a directory")
    real = path.resolve()
    if real in _protected_dirs():
        raise UsageError(f"output {path} is the working directory, the home directory or one "
                         "of their ancestors; it is never replaced, choose a new --output")
    for data in data_files:
        try:
            Path(data).resolve().relative_to(real)
        except ValueError:
            continue
        raise UsageError(f"output {path} holds the data file {data}; it is never replaced, "
                         "choose a new --output")
    if not any(path.iterdir()):
        return path
    if not overwrite:
        raise UsageError(f"output directory {path} already exists and is not empty; "
                         "choose another --output or pass --overwrite")
    problem = run_dir_problem(path)
    if problem is not None:
        raise UsageError(f"--overwrite replaces only an empty directory or a previous run "
                         f"directory, and {path} is neither: {problem}; nothing was deleted")
    return path


def _skops_io() -> Any:
    try:
        import skops.io as sio
    except ImportError:
        raise UsageError("the skops model format needs the skops package: "
                         "pip install skops") from None
    return sio


class _IndexedZipFile(zipfile.ZipFile):
    """A zip file being written whose ``namelist()`` is a live view of the names (O(1) ``in``).

    skops checks ``name not in zip_file.namelist()`` once per array it writes; with the
    list ``ZipFile`` builds on every call, writing a model of n arrays takes O(n²) (a
    gradient-boosting classifier of many classes has three arrays per tree per class).
    """

    def namelist(self) -> Any:
        return self.NameToInfo.keys()


def _dump_skops(model: Any, path: Path) -> None:
    """Write ``model`` as skops.io.dump does (deflate level 1), in time linear in its arrays.

    The file is the one ``skops.io.dump`` writes: the same ``get_state`` tree and
    ``schema.json`` (written without indentation); only the zip file's name lookups
    differ. If this skops no longer has the names used here, ``skops.io.dump`` writes it.
    """
    # deflate level 1: about the size of joblib's lz4 pickle; stored is ~4x larger
    sio = _skops_io()
    try:
        import skops
        from skops.io._utils import SaveContext, get_state
    except ImportError:  # pragma: no cover - a skops whose internals moved
        sio.dump(model, path, compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        return
    with _IndexedZipFile(path, "w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=1) as zip_file:
        context = SaveContext(zip_file=zip_file)
        state = get_state(model, context)
        context.clear_memo()
        state["protocol"] = context.protocol
        state["_skops_version"] = skops.__version__
        # compact: json's C encoder (an indent falls back to the pure-Python one, ~15x slower
        # on the state of a forest); readers parse either
        zip_file.writestr("schema.json", json.dumps(state, separators=(",", ":")))


# ------------------------------------------------------------------------------- staging
class RunStaging:
    """Where a fit in progress keeps its state: ``.NAME.partial`` beside the output directory.

    It holds the Optuna study (``study.journal``, Optuna's journal file) and a ``lock`` file
    with the owner's pid and host. When the fit ends, the run files are written into it and
    it is renamed to the output directory. A fit that is killed leaves it behind:
    ``fit --resume`` continues its study; a second fit while the first is alive is refused.

    The lock is created atomically (``O_CREAT | O_EXCL``). A lock left by a dead process on
    this host is stale and taken over (under an ``flock`` of the staging directory, so two
    fits cannot both take it over); a lock of another host is never taken over. A staging
    directory owned by another user is never adopted or deleted. The directory is created
    with mode 0700.
    """

    LOCK = "lock"

    def __init__(self, output: str | Path):
        self.output = Path(output).resolve()
        self.path = self.output.with_name(f".{self.output.name}.partial")

    def storage(self) -> Any:
        """The staging directory's Optuna storage (:func:`~automl_meta.search.study.
        journal_storage` on ``study.journal``)."""
        from automl_meta.search.study import journal_storage

        return journal_storage(self.path / STUDY_FILE)

    @property
    def lock_path(self) -> Path:
        return self.path / self.LOCK

    def _read_lock(self) -> tuple[int, str] | None:
        """(pid, host) recorded in the lock file, or None when it is unreadable."""
        try:
            fields = self.lock_path.read_text().split()
            return int(fields[0]), (fields[1] if len(fields) > 1 else "")
        except (OSError, ValueError, IndexError, UnicodeDecodeError):
            return None

    @staticmethod
    def _alive(pid: int, host: str) -> bool:
        """Whether the process could still be running (always True for another host)."""
        if host and host != platform.node():
            return True
        if pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def owner(self) -> int | None:
        """Pid of a live fit (other than this process) that holds the lock, if any."""
        held = self._read_lock()
        if held is None:
            return None
        pid, host = held
        if pid == os.getpid() and host in ("", platform.node()):
            return None
        return pid if self._alive(pid, host) else None

    def _check_dir(self) -> None:
        st = os.lstat(self.path)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{self.path} is not a directory; remove it or choose another "
                             "--output")
        if st.st_uid != os.getuid():
            raise UsageError(f"{self.path} (an unfinished fit's state for {self.output}) "
                             f"belongs to user id {st.st_uid}, not to you; it is neither "
                             "used nor deleted, choose another --output")

    def _create_lock(self) -> bool:
        try:
            fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()} {platform.node()}\n")
        return True

    def _claim_lock(self) -> None:
        if self._create_lock():
            return
        dfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX)  # one fit at a time decides about a stale lock
            held = self._read_lock()
            if held is None:
                if self._create_lock():  # removed meanwhile
                    return
                raise UsageError(f"{self.lock_path} is unreadable; if no fit is writing to "
                                 f"{self.output}, delete that file and run again")
            pid, host = held
            if self._alive(pid, host):
                where = f" on {host}" if host and host != platform.node() else ""
                raise UsageError(f"another fit (pid {pid}{where}) is writing to "
                                 f"{self.output}; wait for it or choose another --output")
            self.lock_path.unlink(missing_ok=True)  # stale: its fit is dead
            if not self._create_lock():
                raise UsageError(f"another fit took {self.lock_path} at the same time; "
                                 "choose another --output")
        finally:
            os.close(dfd)

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self._read_lock() == (os.getpid(), platform.node()):
            self.lock_path.unlink(missing_ok=True)

    def open(self, *, resume: bool = False, overwrite: bool = False) -> RunStaging:
        """Claim the staging directory (see the class docstring for the rules).

        Raises
        ------
        UsageError
            When another live fit holds it, it belongs to another user, it is left from an
            interrupted fit and neither ``resume`` nor ``overwrite`` is given, or ``resume``
            finds nothing to resume.
        """
        existed = os.path.lexists(self.path)
        if not existed:
            if resume:
                raise UsageError(f"nothing to resume for {self.output} (no {self.path.name})")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(self.path, 0o700)
            except FileExistsError:
                existed = True
            else:
                os.chmod(self.path, 0o700)
        self._check_dir()
        self._claim_lock()
        if existed and not resume:
            if not overwrite:
                self.release()
                raise UsageError(f"an interrupted fit left its state for {self.output} "
                                 f"in {self.path.name}; pass --resume to continue it or "
                                 "--overwrite to start again")
            for entry in self.path.iterdir():  # start again: everything but our lock
                if entry.name == self.LOCK:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        elif existed and (self.path / STUDY_FILE).exists():
            # the lock was stale: trials its fit had running will never finish
            from automl_meta.search.study import fail_abandoned_trials

            fail_abandoned_trials(self.storage())
        return self


# --------------------------------------------------------------------------------- write
def _default_dir_mode() -> int:
    """The mode ``mkdir`` gives a new directory under the process's umask."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o777 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o755


def write_run_dir(path: str | Path, model: TabularModel, manifest: dict[str, Any],
                  leaderboard: pd.DataFrame, report: dict[str, Any],
                  overwrite: bool = False, model_format: str = DEFAULT_MODEL_FORMAT,
                  staging: RunStaging | None = None,
                  finalize: Callable[[Path], Any] | None = None) -> Path:
    """Write a complete run directory at ``path`` (atomically: temp name, then rename).

    ``model_format`` is ``skops`` (skops.io: loading builds only an allow-list of types) or
    ``joblib`` (a pickle: loading runs code, so :func:`load_run` refuses it unless pickles
    are allowed). An existing ``path`` is checked by :func:`check_output_dir` first and once
    more right before it is replaced.
    """
    if model_format not in MODEL_FILES:
        raise UsageError(f"unknown model format {model_format!r}; use skops or joblib")
    if model_format == "skops":
        _skops_io()  # the missing package is a usage error before anything is written
    given = Path(path)
    check_output_dir(given, overwrite)
    path = given.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if staging is not None:
        tmp = staging.path
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        model_path = tmp / MODEL_FILES[model_format]
        if model_format == "skops":
            _dump_skops(model, model_path)
        else:
            joblib.dump(model, model_path, compress=_COMPRESS)
        manifest = dict(manifest)
        manifest["format_version"] = FORMAT_VERSION
        manifest["model_file"] = model_path.name
        manifest["model_format"] = model_format
        manifest["model_sha256"] = file_sha256(model_path)
        manifest["versions"] = versions()
        leaderboard.to_csv(tmp / LEADERBOARD_FILE, index=False)
        (tmp / REPORT_FILE).write_text(dumps_json(report, indent=2))
        # the manifest goes last: its presence marks a complete directory
        (tmp / MANIFEST_FILE).write_text(dumps_json(manifest, indent=2))
        if finalize is not None:  # e.g. render report.html from the files just written
            finalize(tmp)
        (tmp / RunStaging.LOCK).unlink(missing_ok=True)
        os.chmod(tmp, _default_dir_mode())  # staging was private; the result is not
        _replace_dir(tmp, given, path, overwrite)
    except BaseException:
        if staging is None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _replace_dir(tmp: Path, given: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``, replacing what is there only if it may be replaced."""
    if not os.path.lexists(given) and not os.path.lexists(path):
        tmp.rename(path)
        return
    try:
        check_output_dir(given, overwrite)  # again: it may have changed during the fit
    except UsageError as exc:
        raise UsageError(f"{exc} (checked again after fitting; the new run is not saved "
                         f"there)") from None
    backup = path.with_name(f".{path.name}.old-{os.getpid()}")
    path.rename(backup)
    try:
        tmp.rename(path)
    except BaseException:
        backup.rename(path)
        raise
    if not any(backup.iterdir()) or run_dir_problem(backup) is None:
        shutil.rmtree(backup, ignore_errors=True)
    else:  # something was added between the check and the rename: keep it
        print(f"warning: {path} changed while it was being replaced; its previous content "
              f"is kept in {backup}", file=sys.stderr)


def _open_regular(path: Path, limit: int) -> tuple[IO[bytes], int]:
    """Open ``path`` for reading only if it is a regular file (not a symlink, FIFO or
    device) of at most ``limit`` bytes; return the file and its size.

    The type is checked with ``lstat`` before opening, and again on the open descriptor
    (opened with ``O_NOFOLLOW | O_NONBLOCK``, so a FIFO swapped in meanwhile cannot block).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UsageError(f"{path} is missing") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise ModelIntegrityError(f"{path} is {kind}; refusing to read it")
    if st.st_size > limit:
        raise ModelIntegrityError(f"{path} is {st.st_size} bytes, more than the "
                                  f"{limit} this reads; refusing to read it")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ModelIntegrityError(f"{path} is a symlink; refusing to read it") from None
        raise UsageError(f"{path}: {exc.strerror}") from None
    fst = os.fstat(fd)
    if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise ModelIntegrityError(f"{path} changed while it was opened; refusing to read it")
    return os.fdopen(fd, "rb"), min(fst.st_size, limit)


def _read_regular(path: Path, limit: int) -> bytes:
    fh, size = _open_regular(path, limit)
    with fh:
        return fh.read(size)


def _sha256_of(fh: IO[bytes], size: int) -> str:
    """SHA-256 of the first ``size`` bytes of ``fh`` (exactly those: a growing file cannot
    make it read on)."""
    h = hashlib.sha256()
    left = size
    while left > 0:
        chunk = fh.read(min(left, 1 << 20))
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run directory's manifest, validated (a clear error for anything else).

    Raises
    ------
    UsageError
        When ``run_dir`` is not a directory or has no manifest.
    ModelIntegrityError
        When the manifest is not UTF-8 JSON holding an object with the keys a run's
        manifest has (``target``, ``task``, ``metric``, ``model_sha256``, …), or names a
        ``format_version`` this automl-meta does not know.
    """
    run_dir = Path(run_dir)
    manifest_path = run_dir / MANIFEST_FILE
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    if not os.path.lexists(manifest_path):
        raise UsageError(f"{run_dir}: not a complete run directory (no {MANIFEST_FILE})")
    raw = _read_regular(manifest_path, MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelIntegrityError(f"{manifest_path}: corrupt manifest (not UTF-8 text)"
                                  ) from None
    except (ValueError, RecursionError) as exc:
        raise ModelIntegrityError(f"{manifest_path}: corrupt manifest (not JSON: {exc})"
                                  ) from None
    if not isinstance(manifest, dict):
        raise ModelIntegrityError(f"{manifest_path}: corrupt manifest (a JSON "
                                  f"{type(manifest).__name__}, not an object)")
    problem = _manifest_problem(manifest)
    if problem:
        raise ModelIntegrityError(f"{manifest_path}: corrupt manifest ({problem})")
    return manifest


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    version = manifest.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return f"format_version {version!r} is not a known version"
    if version > FORMAT_VERSION:
        return (f"format_version {version} was written by a newer automl-meta; this one reads "
                f"up to {FORMAT_VERSION}, upgrade automl-meta")
    required = ["target", "task", "metric", "model_sha256"]
    if version >= 2:
        required += ["model_file", "model_format"]
    missing = [k for k in required if k not in manifest]
    if missing:
        return "missing " + ", ".join(missing)
    for key in required:
        if not isinstance(manifest[key], str):
            return f"{key} is not a string"
    if manifest["task"] not in ("binary", "multiclass", "regression"):
        return f"unknown task {manifest['task']!r}"
    sha = manifest["model_sha256"]
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        return "model_sha256 is not a SHA-256 hex digest"
    if not isinstance(manifest.get("versions", {}), dict):
        return "versions is not an object"
    return None


def pickle_allowed(allow_pickle: bool | None = None) -> bool:
    """Whether pickle (joblib) models may be loaded: ``allow_pickle`` when given, else the
    environment variable ``AUTOML_META_ALLOW_PICKLE=1``."""
    if allow_pickle is not None:
        return bool(allow_pickle)
    return os.environ.get(ALLOW_PICKLE_ENV, "").strip() == "1"


def load_run(run_dir: str | Path, *, allow_pickle: bool | None = None
             ) -> tuple[dict[str, Any], TabularModel]:
    """Load a run directory's manifest and model, treating both as untrusted.

    Order: the manifest is validated (:func:`read_manifest`); the model file must be
    ``model.skops`` or ``model.joblib`` as its ``model_format`` says, directly in
    ``run_dir``, a regular file; a pickle is refused unless allowed; the file's SHA-256 must
    match the manifest; a skops file must contain only :data:`SKOPS_ALLOWED_TYPES`,
    :data:`SKOPS_ALLOWED_FUNCTIONS` and :data:`SKOPS_ALLOWED_TYPE_VALUES`. Only then is the
    model built from the same open file.

    Parameters
    ----------
    run_dir : str or Path
        A run directory written by ``automl-meta fit`` / ``AutoML.save``.
    allow_pickle : bool, optional
        Load a pickle (joblib) model. Loading a pickle runs whatever code its author put in
        it: allow it only for runs you made yourself. ``None`` (default): allowed when the
        environment variable ``AUTOML_META_ALLOW_PICKLE`` is ``1``.

    Returns
    -------
    manifest : dict
    model : TabularModel

    Raises
    ------
    UsageError
        When the run directory or its model file is missing, or it holds a pickle model and
        pickles are not allowed.
    ModelIntegrityError
        When the manifest is corrupt, the model file is not a regular file named as its
        format requires, its checksum differs, or a skops file holds a type or function
        outside the allow-lists. Nothing in the model file has been built then.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    model_format = manifest.get("model_format", "joblib")
    model_file = manifest.get("model_file", MODEL_FILES.get(model_format, MODEL_FILE))
    if model_format not in MODEL_FILES:
        raise ModelIntegrityError(f"{run_dir}: unknown model_format {model_format!r} in the "
                                  f"manifest (expected skops or joblib)")
    if model_file != MODEL_FILES[model_format]:
        raise ModelIntegrityError(f"{run_dir}: the manifest names model file "
                                  f"{str(model_file)[:80]!r}; a {model_format} model must be "
                                  f"{MODEL_FILES[model_format]!r} in the run directory")
    if model_format == "joblib" and not pickle_allowed(allow_pickle):
        raise UsageError(
            f"{run_dir} holds a pickle (joblib) model, and loading a pickle can run any code, "
            f"so it is refused. Re-fit with --model-format skops, or pass --allow-pickle "
            f"(Python: allow_pickle=True; CI: {ALLOW_PICKLE_ENV}=1) if you made this run "
            f"yourself")
    model_path = run_dir / model_file
    if not os.path.lexists(model_path):
        raise UsageError(f"{run_dir}: the model file {model_file} is missing")
    fh, size = _open_regular(model_path, MAX_MODEL_BYTES)
    with fh:
        actual = _sha256_of(fh, size)
        expected = manifest["model_sha256"]
        if actual != expected:
            raise ModelIntegrityError(
                f"{model_path}: SHA-256 {actual[:12]}… does not match the manifest's "
                f"{expected[:12]}…; refusing to load a model file that was changed")
        fh.seek(0)
        _register_legacy_modules()
        if model_format == "skops":
            model = _load_skops(fh, model_path)
        else:
            try:
                model = joblib.load(fh)
            except Exception as exc:
                raise ModelIntegrityError(f"{model_path}: cannot load the model "
                                          f"({type(exc).__name__}: {exc})") from None
    if not isinstance(model, TabularModel):
        raise ModelIntegrityError(f"{model_path}: not an automl-meta model")
    saved = manifest.get("versions", {}).get("scikit_learn")
    import sklearn

    if saved and saved != sklearn.__version__:
        print(f"warning: model was fitted with scikit-learn {saved}, this is "
              f"{sklearn.__version__}", file=sys.stderr)
    return manifest, model


def skops_references(schema: Any) -> dict[str, set[str]]:
    """The names a skops ``schema.json`` refers to, by kind.

    Returns
    -------
    dict
        ``{"types": ..., "functions": ..., "type_values": ..., "nodes": ...}``: types of the
        objects the file builds, functions it references, classes it holds as values, and
        the skops node kinds (``__loader__``) it uses. Every dict with a ``__loader__``
        anywhere in the schema counts, wherever it is nested.
    """
    found: dict[str, set[str]] = {"types": set(), "functions": set(), "type_values": set(),
                                  "nodes": set()}
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        if "__loader__" not in node:
            continue
        loader = node["__loader__"]
        found["nodes"].add(str(loader))
        if loader in _SKOPS_UNNAMED_NODES:
            continue
        name = f"{node.get('__module__')}.{node.get('__class__')}"
        if loader in _SKOPS_FUNCTION_NODES:
            found["functions"].add(name)
        elif loader in _SKOPS_TYPE_VALUE_NODES:
            found["type_values"].add(name)
        else:
            found["types"].add(name)
    return found


def skops_refusals(refs: dict[str, set[str]]) -> list[str]:
    """What in :func:`skops_references`' result is outside the allow-lists (empty: none)."""
    out = [f"node kind {n}" for n in sorted(refs["nodes"] - _SKOPS_KNOWN_NODES)]
    out += [f"function {n}" for n in sorted(refs["functions"] - SKOPS_ALLOWED_FUNCTIONS)]
    out += [f"class value {n}" for n in sorted(refs["type_values"] - SKOPS_ALLOWED_TYPE_VALUES)]
    out += [f"type {n}" for n in sorted(refs["types"] - SKOPS_ALLOWED_TYPES)]
    return out


def _register_legacy_modules() -> None:
    """Make the 0.1.0 module names of :data:`LEGACY_MODULES` importable (as aliases of the
    modules that hold those classes now), so that older model files load."""
    import importlib

    for old, new in LEGACY_MODULES.items():
        if old not in sys.modules:
            sys.modules[old] = importlib.import_module(new)


def _load_skops(fh: IO[bytes], model_path: Path) -> Any:
    """Audit a skops file's schema against the allow-lists, then build it."""
    sio = _skops_io()
    try:
        with zipfile.ZipFile(fh) as zf:
            info = zf.getinfo("schema.json")
            if info.file_size > MAX_SKOPS_SCHEMA_BYTES:
                raise ModelIntegrityError(f"{model_path}: its schema.json is "
                                          f"{info.file_size} bytes; refusing to read it")
            schema = json.loads(zf.read(info).decode("utf-8"))
    except ModelIntegrityError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, RecursionError, OSError) as exc:
        raise ModelIntegrityError(f"{model_path}: not a readable skops file "
                                  f"({type(exc).__name__}: {exc})") from None
    refs = skops_references(schema)
    refused = skops_refusals(refs)
    if refused:
        more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
        raise ModelIntegrityError(f"{model_path}: contains what automl-meta models never "
                                  f"contain, refusing to load it: {', '.join(refused[:5])}"
                                  f"{more}")
    trusted = sorted(refs["types"] | refs["functions"] | refs["type_values"])
    fh.seek(0)
    try:
        return sio.load(fh, trusted=trusted)
    except Exception as exc:
        raise ModelIntegrityError(f"{model_path}: cannot load the model "
                                  f"({type(exc).__name__}: {exc})") from None
