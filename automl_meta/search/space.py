"""The search space: loading and validating ``configs/space.yaml``, sampling configurations.

A configuration is a flat dict ``{"family": NAME, "NAME.PARAM": value, ...}``. The YAML file
declares each family's hyperparameters, tasks and preprocessing; the facts the code holds
about a family (label, estimator, row limit) come from :mod:`automl_meta.search.families`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from automl_meta.data.dataset import TASK_KINDS, task_kind
from automl_meta.errors import UsageError
from automl_meta.resources import default_space_path
from automl_meta.search.families import FAMILIES, KNOWN_FAMILIES

__all__ = ["CATEGORICAL_MODES", "TASK_KINDS", "Family", "Param", "SearchSpace", "load_space",
           "parse_space", "space_version", "task_kind"]

CATEGORICAL_MODES = ("onehot_ordinal", "onehot_target", "native")
#: family keys that belong to the family's record in :mod:`automl_meta.search.families`
REGISTRY_KEYS = ("label", "max_rows")


@dataclass(frozen=True)
class Param:
    """One hyperparameter of a family."""

    name: str
    type: str
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    tasks: tuple[str, ...] = TASK_KINDS
    condition: Mapping[str, tuple] = field(default_factory=dict)

    def active(self, kind: str, values: Mapping[str, Any]) -> bool:
        """Whether the parameter exists for this task kind given the family's other values."""
        if kind not in self.tasks:
            return False
        return all(values.get(other) in allowed for other, allowed in self.condition.items())

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the parameter's domain."""
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and int(value) != value:
            return False
        return self.low <= value <= self.high

    def clip(self, value: Any) -> Any:
        """The nearest value of the domain (for adapting configurations)."""
        if self.type == "categorical":
            return value if value in self.choices else self.default
        try:
            value = float(value)
        except (TypeError, ValueError):
            return self.default
        if math.isnan(value):
            return self.default
        value = min(max(value, self.low), self.high)
        return int(round(value)) if self.type == "int" else value


@dataclass(frozen=True)
class Family:
    """A model family and its hyperparameters (``label`` and ``max_rows`` as its
    :class:`~automl_meta.search.families.FamilySpec` says)."""

    name: str
    label: str
    tasks: tuple[str, ...]
    scale: bool
    impute: bool
    categorical: str
    max_rows: int | None
    params: tuple[Param, ...]

    def active_params(self, kind: str, values: Mapping[str, Any]) -> list[Param]:
        """Parameters that exist for ``kind`` given (already chosen) ``values``."""
        return [p for p in self.params if p.active(kind, values)]


@dataclass(frozen=True)
class SearchSpace:
    """The parsed search space. ``version`` is the SHA-256 of its canonical content."""

    families: Mapping[str, Family]
    onehot_max_cardinality: int
    native_max_categories: int
    version: str
    path: str = ""

    # ----------------------------------------------------------------------------------
    def family_names(self, task: str, n_rows: int | None = None) -> list[str]:
        """Families offered for ``task`` on ``n_rows`` training rows, in declaration order."""
        kind = task_kind(task)
        names = []
        for name, fam in self.families.items():
            if kind not in fam.tasks:
                continue
            if n_rows is not None and fam.max_rows is not None and n_rows > fam.max_rows:
                continue
            names.append(name)
        return names

    def default_config(self, family: str, task: str) -> dict[str, Any]:
        """The family's default configuration for ``task``."""
        fam = self.families[family]
        kind = task_kind(task)
        config: dict[str, Any] = {"family": family}
        values: dict[str, Any] = {}
        for p in fam.params:
            if p.active(kind, values):
                values[p.name] = p.default
                config[f"{family}.{p.name}"] = p.default
        return config

    def suggest(self, trial: Any, task: str, families: list[str]) -> dict[str, Any]:
        """Sample a configuration with an Optuna trial (define-by-run, conditional)."""
        family = trial.suggest_categorical("family", families)
        fam = self.families[family]
        kind = task_kind(task)
        config: dict[str, Any] = {"family": family}
        values: dict[str, Any] = {}
        for p in fam.params:
            if not p.active(kind, values):
                continue
            key = f"{family}.{p.name}"
            if p.type == "float":
                v = trial.suggest_float(key, p.low, p.high, log=p.log)
            elif p.type == "int":
                v = trial.suggest_int(key, int(p.low), int(p.high), log=p.log)
            else:
                v = trial.suggest_categorical(key, list(p.choices))
            values[p.name] = v
            config[key] = v
        return config

    def check_config(self, config: Mapping[str, Any], task: str) -> str | None:
        """Why ``config`` is not a valid configuration for ``task``; None when it is."""
        family = config.get("family")
        if family not in self.families:
            return f"unknown family {family!r}"
        fam = self.families[family]
        kind = task_kind(task)
        if kind not in fam.tasks:
            return f"family {family!r} does not serve {kind}"
        values = {k.split(".", 1)[1]: v for k, v in config.items() if k != "family"}
        expected = {p.name for p in fam.active_params(kind, values)}
        unknown = set(values) - expected
        missing = expected - set(values)
        if unknown:
            return f"unexpected parameters {sorted(unknown)} for {family!r}"
        if missing:
            return f"missing parameters {sorted(missing)} for {family!r}"
        for p in fam.params:
            if p.name in values and not p.contains(values[p.name]):
                return f"{family}.{p.name}={values[p.name]!r} is outside its domain"
        return None

    def adapt_config(self, config: Mapping[str, Any], task: str) -> dict[str, Any]:
        """Project ``config`` onto the space for ``task``: clip values, fill defaults, drop extras.

        Raises
        ------
        UsageError
            When the family itself is unknown or does not serve the task.
        """
        family = config.get("family")
        if family not in self.families or task_kind(task) not in self.families[family].tasks:
            raise UsageError(f"family {family!r} cannot be used for {task}")
        fam = self.families[family]
        kind = task_kind(task)
        out: dict[str, Any] = {"family": family}
        values: dict[str, Any] = {}
        for p in fam.params:
            if not p.active(kind, values):
                continue
            key = f"{family}.{p.name}"
            v = p.clip(config[key]) if key in config else p.default
            values[p.name] = v
            out[key] = v
        return out


def _parse_param(family: str, name: str, spec: Mapping[str, Any]) -> Param:
    where = f"space: {family}.{name}"
    if not isinstance(spec, Mapping):
        raise UsageError(f"{where}: expected a mapping")
    kind = spec.get("type")
    tasks = tuple(spec.get("tasks", TASK_KINDS))
    if any(t not in TASK_KINDS for t in tasks):
        raise UsageError(f"{where}: tasks must be among {TASK_KINDS}")
    condition = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in
                 (spec.get("condition") or {}).items()}
    if "default" not in spec:
        raise UsageError(f"{where}: missing default")
    default = spec["default"]
    if kind in ("float", "int"):
        low, high = spec.get("low"), spec.get("high")
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or low >= high:
            raise UsageError(f"{where}: needs numeric low < high")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise UsageError(f"{where}: log scale needs low > 0")
        p = Param(name, kind, default, float(low), float(high), log, (), tasks, condition)
    elif kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UsageError(f"{where}: categorical needs a non-empty list of choices")
        p = Param(name, kind, default, choices=tuple(choices), tasks=tasks, condition=condition)
    else:
        raise UsageError(f"{where}: type must be float, int or categorical, not {kind!r}")
    if not p.contains(default):
        raise UsageError(f"{where}: default {default!r} is outside the domain")
    return p


def space_version(data: Mapping[str, Any]) -> str:
    """The search-space version of a parsed space document: the first 16 hex digits of the
    SHA-256 of its canonical JSON, with every family's ``label`` and ``max_rows`` filled in
    from its record in :mod:`automl_meta.search.families` (so the version covers the row
    limits, which decide which families a search offers, wherever they are declared).

    Parameters
    ----------
    data : mapping
        The parsed YAML document (families already validated as known).

    Returns
    -------
    str
    """
    effective = copy.deepcopy(dict(data))
    families = dict(effective.get("families") or {})
    for name, spec in families.items():
        spec = dict(spec or {})
        record = FAMILIES[name]
        spec["label"] = record.label
        spec["max_rows"] = record.max_rows
        families[name] = spec
    effective["families"] = families
    canonical = json.dumps(effective, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_space(data: Mapping[str, Any], path: str = "") -> SearchSpace:
    """Validate a parsed YAML document and build a :class:`SearchSpace`.

    Raises
    ------
    UsageError
        The document is not a valid search space: an unknown family, a family key that
        belongs to the family registry (``label``, ``max_rows``), a bad parameter.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("families"), Mapping):
        raise UsageError("space: expected a mapping with a 'families' key")
    prep = data.get("preprocessing") or {}
    families: dict[str, Family] = {}
    for name, spec in data["families"].items():
        if name not in KNOWN_FAMILIES:
            raise UsageError(f"space: unknown family {name!r} (known: {sorted(KNOWN_FAMILIES)})")
        if not isinstance(spec, Mapping):
            raise UsageError(f"space: {name}: expected a mapping")
        moved = [key for key in REGISTRY_KEYS if key in spec]
        if moved:
            raise UsageError(f"space: {name}.{moved[0]} is a fact of the family, set in "
                             "automl_meta/search/families.py, not in the space file")
        record = FAMILIES[name]
        tasks = tuple(spec.get("tasks", TASK_KINDS))
        pre = spec.get("preprocessing") or {}
        cat = pre.get("categorical", "onehot_ordinal")
        if cat not in CATEGORICAL_MODES:
            raise UsageError(f"space: {name}.preprocessing.categorical must be one of "
                             f"{CATEGORICAL_MODES}")
        params = tuple(_parse_param(name, pname, pspec)
                       for pname, pspec in (spec.get("params") or {}).items())
        names = {p.name for p in params}
        for p in params:
            for other in p.condition:
                if other not in names:
                    raise UsageError(f"space: {name}.{p.name} depends on unknown {other!r}")
        if pre.get("scale") and "scaler" not in names:
            raise UsageError(f"space: {name} scales numerics but has no 'scaler' parameter")
        if pre.get("impute") and "impute" not in names:
            raise UsageError(f"space: {name} imputes but has no 'impute' parameter")
        families[name] = Family(name, record.label, tasks, bool(pre.get("scale")),
                                bool(pre.get("impute")), cat, record.max_rows, params)
    if not families:
        raise UsageError("space: no families declared")
    return SearchSpace(families, int(prep.get("onehot_max_cardinality", 16)),
                       int(prep.get("native_max_categories", 250)), space_version(data), path)


def load_space(path: str | Path | None = None) -> SearchSpace:
    """Load and validate a search-space YAML file (the shipped one by default).

    Parameters
    ----------
    path : str or Path, optional
        YAML file; defaults to the shipped ``configs/space.yaml``.

    Returns
    -------
    SearchSpace
    """
    path = Path(path) if path else default_space_path()
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read search space {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"search space {path} is not valid YAML: {exc}") from None
    return parse_space(data, str(path))
