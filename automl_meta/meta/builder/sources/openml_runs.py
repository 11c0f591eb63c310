"""Published OpenML runs as a metabase layer.

OpenML holds runs of scikit-learn flows on many tasks, each evaluated on the task's own
10-fold cross-validation. This module turns such runs into tasks, configurations and results
in the metabase format (:mod:`automl_meta.meta.metabase`), through one declarative mapping
per flow: ``configs/flows/<flow id>.yaml`` (see ``configs/flows/6969.yaml`` for its keys).

Inputs
------
* Run exports: ARFF or CSV files (optionally gzipped) with one column per flow parameter,
  the evaluation column (e.g. ``predictive_accuracy``) and ``task_id`` (an OpenML task id),
  one row per run, as published with van Rijn & Hutter (KDD 2018). The flow is the one
  named in the ARFF header comment (``% {"flow_id": 6969, ...}``) or in a ``flow_id``
  column, else the mapping whose parameter columns the file has.
* What the live ``openml`` client gives: :func:`runs_from_openml_frame` converts the frame
  of ``openml.evaluations.list_evaluations_setups(function, flows=[id], ...)`` (either
  layout: one ``parameters`` column of ``{full name: value}`` dicts, or
  ``parameters_in_separate_columns=True``) into the same per-run frame;
  :func:`fetch_openml_runs` calls the client (a machine with a network refreshes the layer
  with ``automl-meta build-metabase --source openml-runs --output DIR``).
* The tasks' data qualities, ``{task_id: {quality: value}}`` under OpenML's names
  (``task_qualities.json``). Cleaned by :func:`clean_qualities`: OpenML's ``-1`` "not
  computed" value becomes missing (for qualities that cannot be negative), the nominal
  distinct-value qualities of a table whose only nominal attribute is the target are filled
  in as ours are computed (number of classes; standard deviation 0), and percentages stored
  as fractions are put back in per cent (checked against the counts they derive from).
  Only the qualities automl-meta computes too are stored (the others are counted in the
  report), less the moments of the numeric attributes (:data:`UNRELIABLE_QUALITIES`), whose
  published values disagree with the datasets they describe.

Mapping
-------
:func:`map_runs` maps every run through its flow's YAML (rename / clip / require / ignore
rules, value maps, fixed values); every configuration it returns passes
:meth:`~automl_meta.search.space.SearchSpace.check_config`. A run that cannot be expressed in
the search space is dropped and counted under its reason; a flow whose learner has no family
in the space (``family: null``, e.g. AdaBoost) is read, counted and reported as such, never
silently skipped.

Summarising
-----------
:func:`summarise_runs` keeps at most ``max_runs_per_task`` runs per task (default
:data:`DEFAULT_MAX_RUNS_PER_TASK` = 100): the best half (50) plus the other half (50) spread
evenly over the remaining runs by score rank (from the best of the rest to the worst), so
the layer keeps each task's optimum and the shape of its score distribution while the
bundled metabase stays small.

Duplicates
----------
:func:`link_duplicates` finds the layer's tasks that are the same dataset as a task of an
existing metabase, by shape and qualities (never by name): same number of classes, number
of instances within 1 %, majority and minority class sizes within 1 % of the instances,
numbers of features, of symbolic and of numeric features within ``max(2, 5 %)`` (both sides
count every column of the table as read, but OpenML publishes some datasets in versions
that differ by a column or two, e.g. an ID column) and class entropies within 0.01.
Moments and landmarkers are not compared: OpenML's published moments disagree with ours on
several datasets that are certainly the same (e.g. OpenML task 37, diabetes), and its
landmarkers are computed differently. A match is recorded in the task's ``linked_task_id``
so that leave-one-task-out can remove both.

Tasks of the layer have ``task_id`` ``openml-run/<OpenML task id>``, ``source``
``openml-run``, ``openml_id`` = the OpenML **task** id (tasks built from OpenML or a corpus
manifest hold a *dataset* id there), ``metric`` ``accuracy``, their
qualities as meta-features, and the columns ``evaluation_protocol``, ``licence``,
``citation``, ``openml_flows`` (the flows of its kept runs), ``runs_read`` (its runs read, of
every flow, also those without a family), ``runs_mapped`` and ``linked_task_id``;
``n_trials`` is the number of runs kept, ``best_score`` the best of all its mapped runs.
:func:`write_layer` writes the layer into a metabase (replacing an earlier version of the
layer, other tasks untouched) with its provenance under ``manifest["layers"]["openml-runs"]``.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from automl_meta.defaults import DEFAULT_MAX_RUNS_PER_TASK
from automl_meta.errors import UsageError
from automl_meta.search.space import SearchSpace, load_space

#: ``source`` of the layer's tasks in ``tasks.csv``
SOURCE = "openml-run"
#: key of the layer's provenance under ``manifest["layers"]``
LAYER = "openml-runs"
#: prefix of the layer's task ids
TASK_PREFIX = "openml-run/"
#: the qualities file of a run folder
QUALITIES_FILE = "task_qualities.json"
RUN_FILE_SUFFIXES = (".arff", ".arff.gz", ".csv", ".csv.gz")
RULES = ("rename", "clip", "require", "ignore")
#: columns of a per-run frame besides the flow's parameters and its evaluation
RUN_META_COLUMNS = ("task_id", "run_id", "setup_id", "flow_id", "data_id", "data_name")
#: extra task columns of the layer (after the metabase's own and the meta-features)
LAYER_TASK_COLUMNS = ["evaluation_protocol", "licence", "citation", "openml_flows",
                      "runs_read", "runs_mapped", "linked_task_id"]
#: OpenML qualities that can be negative (a -1 there is a value, not OpenML's "not computed")
_SIGNED_QUALITIES = ("MeansOfNumericAtts", "SkewnessOfNumericAtts", "KurtosisOfNumericAtts",
                     "Kappa", "R2", "Correlation", "TargetSkewness", "TargetKurtosis")
#: percentage quality -> (numerator, denominator(s)) it is computed from
_PERCENTAGES = {
    "PercentageOfNumericFeatures": ("NumberOfNumericFeatures", ("NumberOfFeatures",)),
    "PercentageOfSymbolicFeatures": ("NumberOfSymbolicFeatures", ("NumberOfFeatures",)),
    "PercentageOfBinaryFeatures": ("NumberOfBinaryFeatures", ("NumberOfFeatures",)),
    "MajorityClassPercentage": ("MajorityClassSize", ("NumberOfInstances",)),
    "MinorityClassPercentage": ("MinorityClassSize", ("NumberOfInstances",)),
    "PercentageOfMissingValues": ("NumberOfMissingValues",
                                  ("NumberOfInstances", "NumberOfFeatures")),
    "PercentageOfInstancesWithMissingValues": ("NumberOfInstancesWithMissingValues",
                                               ("NumberOfInstances",)),
}
#: OpenML qualities (names containing these) not imported because the published values do
#: not describe the dataset as ours do: the moments of the numeric attributes (means,
#: standard deviations, skewness, kurtosis) agree with ours on a quarter of the pairs
#: (``benchmarks/results/metafeature_agreement.md``); the neighbour distance leaves out, for
#: the layer's tasks, what the layer does not record (:func:`automl_meta.meta.neighbors.nearest`)
UNRELIABLE_QUALITIES = ("OfNumericAtts",)
_NOMINAL_DISTINCT = ("MaxNominalAttDistinctValues", "MinNominalAttDistinctValues",
                     "MeanNominalAttDistinctValues", "StdvNominalAttDistinctValues")
#: linking tolerances (see the module docstring)
LINK_ROWS_REL = 0.01
LINK_CLASS_SIZE_REL = 0.01
LINK_FEATURES_ABS = 2
LINK_FEATURES_REL = 0.05
LINK_ENTROPY_ABS = 0.01
_FULL_NAME = re.compile(r"^(?P<flow>.*)\((?P<version>\d+)\)_(?P<param>[^()]+)$")


# ------------------------------------------------------------------------- flow mappings
@dataclass(frozen=True)
class ParamRule:
    """How one column of a flow's runs maps to the search space (see ``6969.yaml``)."""

    column: str
    rule: str
    to: str | None = None
    values: Mapping[Any, Any] | None = None
    values_if_no_missing_values: Mapping[Any, Any] = field(default_factory=dict)
    allowed: tuple[Any, ...] = ()
    openml: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlowMapping:
    """A flow's mapping file, parsed and checked against the search space."""

    flow_id: int
    version: int
    name: str
    learner: str
    family: str | None
    evaluation: str
    metric: str
    task_kind: str
    evaluation_protocol: str
    licence: str
    citation: str
    params: tuple[ParamRule, ...]
    fixed: Mapping[str, Any]
    path: str = ""
    sha256: str = ""

    @property
    def columns(self) -> list[str]:
        """The run columns this flow's exports have (its declared parameters)."""
        return [r.column for r in self.params]

    @property
    def required_columns(self) -> list[str]:
        """The columns a run export of this flow must have (all but ``ignore`` ones)."""
        return [r.column for r in self.params if r.rule != "ignore"]

    def provenance(self) -> dict[str, Any]:
        """What the manifest records of the mapping."""
        return {"name": self.name, "learner": self.learner, "family": self.family,
                "mapping": Path(self.path).name, "mapping_version": self.version,
                "mapping_sha256": self.sha256, "evaluation": self.evaluation,
                "evaluation_protocol": self.evaluation_protocol, "licence": self.licence,
                "citation": self.citation}


def load_flow(path: str | Path, space: SearchSpace | None = None) -> FlowMapping:
    """Read and check one flow mapping file.

    Parameters
    ----------
    path : str or Path
        A ``<flow id>.yaml`` file.
    space : SearchSpace, optional
        The search space the mapping must target (the shipped one by default).

    Returns
    -------
    FlowMapping

    Raises
    ------
    UsageError
        The file is not a valid mapping: unknown rule, a target that is not a parameter of
        the flow's family, a fixed value outside its domain, ...
    """
    import hashlib

    space = space or load_space()
    path = Path(path)
    raw = path.read_bytes()
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc})") from None
    where = str(path)
    if not isinstance(doc, Mapping):
        raise UsageError(f"{where}: expected a mapping")
    for key in ("flow_id", "version", "evaluation", "params"):
        if key not in doc:
            raise UsageError(f"{where}: missing key {key!r}")
    family = doc.get("family")
    if family is not None and family not in space.families:
        raise UsageError(f"{where}: family {family!r} is not in the search space")
    kind = doc.get("task_kind", "classification")
    if family is not None and kind not in space.families[family].tasks:
        raise UsageError(f"{where}: family {family!r} does not serve {kind}")
    fam = space.families[family] if family is not None else None
    pnames = {p.name: p for p in fam.params} if fam else {}

    def target(key: Any, what: str) -> str:
        if fam is None:
            raise UsageError(f"{where}: {what} maps to {key!r} but the flow has no family")
        if not isinstance(key, str) or not key.startswith(f"{family}.") or \
                key.split(".", 1)[1] not in pnames:
            raise UsageError(f"{where}: {what}: {key!r} is not a parameter of {family!r} "
                             f"({sorted(f'{family}.{n}' for n in pnames)})")
        return key

    rules = []
    for column, spec in (doc.get("params") or {}).items():
        spec = spec or {}
        rule = spec.get("rule")
        if rule not in RULES:
            raise UsageError(f"{where}: {column}: rule must be one of {RULES}, not {rule!r}")
        to = spec.get("to")
        if rule in ("rename", "clip"):
            to = target(to, column)
            if rule == "clip" and pnames[to.split(".", 1)[1]].type == "categorical":
                raise UsageError(f"{where}: {column}: clip needs a numeric parameter, {to} "
                                 "is categorical")
        elif to is not None:
            raise UsageError(f"{where}: {column}: rule {rule!r} takes no 'to'")
        allowed = tuple(plain_value(v) for v in spec.get("allowed") or ())
        if rule == "require" and not allowed:
            raise UsageError(f"{where}: {column}: rule 'require' needs 'allowed' values")
        values = spec.get("values")
        values = None if values is None else {plain_value(k): v for k, v in values.items()}
        extra = {plain_value(k): v for k, v in
                 (spec.get("values_if_no_missing_values") or {}).items()}
        openml = spec.get("openml") or ()
        openml = (openml,) if isinstance(openml, str) else tuple(openml)
        rules.append(ParamRule(str(column), rule, to, values, extra, allowed, openml))
    fixed = dict(doc.get("fixed") or {})
    for key, value in fixed.items():
        target(key, "fixed")
        if not pnames[key.split(".", 1)[1]].contains(value):
            raise UsageError(f"{where}: fixed {key}={value!r} is outside its domain")
    if fam is not None:
        covered = {r.to for r in rules if r.to} | set(fixed)
        needed = {f"{family}.{p.name}" for p in fam.params
                  if kind in p.tasks and not p.condition}
        if needed - covered:
            raise UsageError(f"{where}: the mapping sets no value for {sorted(needed - covered)}")
    return FlowMapping(
        flow_id=int(doc["flow_id"]), version=int(doc["version"]),
        name=str(doc.get("name", "")), learner=str(doc.get("learner", "")), family=family,
        evaluation=str(doc["evaluation"]), metric=str(doc.get("metric", "accuracy")),
        task_kind=str(kind),
        evaluation_protocol=str(doc.get("evaluation_protocol", "openml 10-fold CV")),
        licence=str(doc.get("licence", "")), citation=" ".join(str(doc.get("citation",
                                                                           "")).split()),
        params=tuple(rules), fixed=fixed, path=str(path),
        sha256=hashlib.sha256(raw).hexdigest())


def load_flows(folder: str | Path | None = None,
               space: SearchSpace | None = None) -> dict[int, FlowMapping]:
    """Every flow mapping of a folder (the shipped ``configs/flows`` by default), by flow id."""
    from automl_meta.resources import flows_dir

    folder = Path(folder) if folder is not None else flows_dir()
    space = space or load_space()
    flows = {}
    for path in sorted(folder.glob("*.yaml")):
        flow = load_flow(path, space)
        if flow.flow_id in flows:
            raise UsageError(f"{path}: flow {flow.flow_id} is mapped twice")
        flows[flow.flow_id] = flow
    return flows


# ------------------------------------------------------------------------------- values
def plain_value(value: Any) -> Any:
    """A run's parameter value as a plain Python value.

    ``None``, NaN, ``"None"`` and ``"null"`` → None; ``"True"`` / ``"true"`` → True (and
    false alike); numeric strings → int or float (an integral float → int); JSON-quoted
    strings (the live client's ``'"gini"'``) → the string; numpy scalars → Python ones.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isnan(f):
            return None
        return int(f) if f.is_integer() and abs(f) < 2**53 else f
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return plain_value(json.loads(text))
        except json.JSONDecodeError:
            return text[1:-1]
    low = text.lower()
    if low in ("", "none", "null", "nan"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return plain_value(float(text))
    except ValueError:
        return text


def _same(a: Any, b: Any) -> bool:
    """Equality of plain values (1 == 1.0, but True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


# ---------------------------------------------------------------------------------- report
@dataclass
class FlowReport:
    """What mapping the runs of one flow did."""

    flow_id: int
    learner: str
    family: str | None
    runs_read: int = 0
    tasks_read: int = 0
    mapped: int = 0
    clipped: int = 0
    clipped_values: Counter = field(default_factory=Counter)
    mapped_by_value_rule: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    tasks_mapped: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def n_dropped(self) -> int:
        return int(sum(self.dropped.values()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary."""
        return {"flow_id": self.flow_id, "learner": self.learner, "family": self.family,
                "files": list(self.files), "runs_read": self.runs_read,
                "tasks_read": self.tasks_read, "mapped": self.mapped,
                "tasks_mapped": self.tasks_mapped, "clipped": self.clipped,
                "clipped_values": dict(sorted(self.clipped_values.items())),
                "mapped_by_value_rule": dict(sorted(self.mapped_by_value_rule.items())),
                "dropped": self.n_dropped,
                "dropped_by_reason": dict(self.dropped.most_common()),
                "ignored_columns": list(self.ignored_columns)}


@dataclass
class MappingReport:
    """The mapping report of a layer: per flow, the summarising, the qualities, the links."""

    flows: dict[int, FlowReport] = field(default_factory=dict)
    max_runs_per_task: int | None = DEFAULT_MAX_RUNS_PER_TASK
    runs_kept: int = 0
    tasks: int = 0
    qualities: dict[str, Any] = field(default_factory=dict)
    linked: dict[str, str] = field(default_factory=dict)
    link_rejected: list[dict[str, Any]] = field(default_factory=list)
    linked_against: str | None = None

    @property
    def flows_without_family(self) -> list[int]:
        """Flows whose learner has no family in the search space."""
        return [f.flow_id for f in self.flows.values() if f.family is None]

    def totals(self) -> dict[str, int]:
        """Runs read, mapped, clipped, dropped and kept over all flows."""
        fl = self.flows.values()
        return {"runs_read": sum(f.runs_read for f in fl), "mapped": sum(f.mapped for f in fl),
                "clipped": sum(f.clipped for f in fl), "dropped": sum(f.n_dropped for f in fl),
                "kept": self.runs_kept, "tasks": self.tasks}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (what the manifest records, with :func:`layer_provenance`)."""
        return {"flows": {str(k): v.to_dict() for k, v in sorted(self.flows.items())},
                "flows_without_family": self.flows_without_family,
                "totals": self.totals(),
                "summarising": summarising_rule(self.max_runs_per_task),
                "qualities": self.qualities, "linked": dict(sorted(self.linked.items())),
                "linked_against": self.linked_against,
                "link_rejected": self.link_rejected}

    def lines(self) -> list[str]:
        """The report as printed by ``build-metabase --source openml-runs``."""
        out = []
        for f in sorted(self.flows.values(), key=lambda f: f.flow_id):
            fam = f.family or "no family in the space"
            out.append(f"flow {f.flow_id} ({f.learner} -> {fam}): {f.runs_read} runs read on "
                       f"{f.tasks_read} tasks, {f.mapped} mapped ({f.tasks_mapped} tasks), "
                       f"{f.clipped} clipped, {f.n_dropped} dropped")
            for col, n in sorted(f.clipped_values.items()):
                out.append(f"    clipped {col}: {n} values")
            for rule, n in sorted(f.mapped_by_value_rule.items()):
                out.append(f"    mapped {rule}: {n} runs")
            for reason, n in f.dropped.most_common():
                out.append(f"    dropped {n}: {reason}")
            if f.ignored_columns:
                out.append(f"    columns not in the mapping (not read): "
                           f"{', '.join(f.ignored_columns)}")
        if self.flows_without_family:
            out.append("flows with no family in the search space (runs reported, not mapped): "
                       + ", ".join(str(i) for i in self.flows_without_family))
        t = self.totals()
        rule = summarising_rule(self.max_runs_per_task)["rule"]
        out.append(f"summarising: {rule}; {t['kept']} of {t['mapped']} mapped runs kept on "
                   f"{t['tasks']} tasks")
        q = self.qualities
        if q:
            out.append(f"qualities: {q.get('stored', 0)} stored per task, "
                       f"{len(q.get('not_stored', []))} OpenML qualities not computed by "
                       "automl-meta left out, "
                       f"{len(q.get('not_stored_unreliable', []))} moments of the numeric "
                       "attributes left out as unreliable; OpenML's -1 ('not computed') "
                       "made missing: "
                       f"{sum(q.get('minus_one_to_missing', {}).values())} values; nominal "
                       "distinct values filled from the target: "
                       f"{q.get('nominal_distinct_from_target', 0)} tasks; fractions "
                       f"rescaled to per cent: {sum(q.get('fraction_to_percent', {}).values())}"
                       " values")
        if self.linked_against is not None:
            out.append(f"linked to {self.linked_against}: {len(self.linked)} tasks"
                       + (": " + ", ".join(f"{k} = {v}" for k, v in sorted(
                           self.linked.items(), key=lambda kv: _task_number(kv[0])))
                          if self.linked else ""))
            for rej in self.link_rejected:
                out.append(f"    not linked: {rej['task_id']} ~ {rej['candidate']} "
                           f"({rej['reason']})")
        return out


def _task_number(task_id: str) -> int:
    try:
        return int(str(task_id).rsplit("/", 1)[-1])
    except ValueError:
        return 0


def summarising_rule(max_runs_per_task: int | None) -> dict[str, Any]:
    """The summarising rule as recorded in the manifest."""
    if not max_runs_per_task:
        return {"max_runs_per_task": None, "rule": "every mapped run kept"}
    best = (max_runs_per_task + 1) // 2
    return {"max_runs_per_task": int(max_runs_per_task),
            "rule": f"per task at most {max_runs_per_task} runs: the {best} best plus "
                    f"{max_runs_per_task - best} spread evenly over the rest by score rank"}


# ------------------------------------------------------------------------------- reading
def _arff_header_json(path: Path) -> dict[str, Any]:
    """The JSON document of an ARFF file's first comment line (``% {...}``), if any."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            for _ in range(20):
                line = fh.readline()
                if not line:
                    break
                text = line.strip()
                if text.startswith("%"):
                    body = text.lstrip("%").strip()
                    if body.startswith("{"):
                        try:
                            doc = json.loads(body)
                        except json.JSONDecodeError:
                            continue
                        return doc if isinstance(doc, dict) else {}
                elif text and not text.startswith("@"):
                    break
    except (OSError, EOFError):
        return {}
    return {}


def read_run_export(path: str | Path) -> tuple[pd.DataFrame, int | None]:
    """One run export (ARFF or CSV, optionally gzipped) and the flow id it names, if any.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    (DataFrame, int or None)
        One row per run; the flow id from the ARFF header comment or a ``flow_id`` column
        holding one value.
    """
    from automl_meta.data import read_table

    path = Path(path)
    frame = read_table(path)
    flow_id = None
    if path.name.lower().endswith((".arff", ".arff.gz")):
        doc = _arff_header_json(path)
        if doc.get("flow_id") is not None:
            flow_id = int(doc["flow_id"])
    if flow_id is None and "flow_id" in frame.columns:
        ids = pd.to_numeric(frame["flow_id"], errors="coerce").dropna().unique()
        if len(ids) == 1:
            flow_id = int(ids[0])
    return frame, flow_id


def identify_flow(frame: pd.DataFrame, flow_id: int | None,
                  flows: Mapping[int, FlowMapping], where: str = "runs") -> FlowMapping:
    """The flow mapping of a run frame: the one named, else the one whose columns it has.

    Raises
    ------
    UsageError
        No mapping for the named flow, or no mapping fits the columns, or the named flow's
        columns are missing.
    """
    if flow_id is not None:
        if flow_id not in flows:
            raise UsageError(f"{where}: OpenML flow {flow_id} has no mapping (add "
                             f"configs/flows/{flow_id}.yaml; known: {sorted(flows)})")
        flow = flows[flow_id]
    else:
        fits = [f for f in flows.values() if set(f.required_columns) <= set(frame.columns)]
        if not fits:
            raise UsageError(f"{where}: its columns match no flow mapping (known flows: "
                             f"{sorted(flows)}); columns: {list(frame.columns)[:12]}")
        flow = max(fits, key=lambda f: len(f.columns))
    missing = [c for c in flow.required_columns + [flow.evaluation, "task_id"]
               if c not in frame.columns]
    if missing:
        raise UsageError(f"{where}: runs of flow {flow.flow_id} lack the columns {missing}")
    return flow


def _component_match(column: str, spec: str) -> bool:
    """Whether a live-client column (a setup parameter's full name
    ``<flow name>(<version>)_<parameter>``) is ``<Component>.<parameter>``."""
    m = _FULL_NAME.match(column)
    if m is None or "." not in spec:
        return False
    component, param = spec.rsplit(".", 1)
    flow_class = m.group("flow").split("(", 1)[0].rsplit(".", 1)[-1]
    return m.group("param") == param and flow_class.lower() == component.lower()


def runs_from_openml_frame(frame: pd.DataFrame, flow: FlowMapping) -> pd.DataFrame:
    """The per-run frame of a flow from what the live ``openml`` client lists.

    Parameters
    ----------
    frame : DataFrame
        ``openml.evaluations.list_evaluations_setups(function=flow.evaluation,
        flows=[flow.flow_id], ...)``: columns ``run_id, task_id, setup_id, flow_id,
        flow_name, data_id, data_name, function, upload_time, uploader, uploader_name,
        value, values, array_data`` and either ``parameters`` (a dict per run, setup
        parameter full name → value as OpenML stores it, JSON-encoded: ``'true'``,
        ``'"gini"'``, ``'0.5'``, ``'null'``) or, with ``parameters_in_separate_columns=True``,
        one column per full name (``sklearn.ensemble.forest.RandomForestClassifier(45)_
        max_features``). A column already named as in the exports is used as it is.
        (``openml.runs.list_runs`` alone has no evaluations: list the evaluations.)
    flow : FlowMapping
        Each parameter's ``openml`` key (``<Component>.<parameter>``) finds its column.

    Returns
    -------
    DataFrame
        One row per run of the flow evaluated with ``flow.evaluation``: the flow's columns
        (values decoded), the evaluation, ``task_id`` and, when given, ``run_id``,
        ``setup_id``, ``flow_id``, ``data_id``, ``data_name``.

    Raises
    ------
    UsageError
        A required column (task, value, a mapped parameter) is not in the frame.
    """
    for col in ("task_id", "value"):
        if col not in frame.columns:
            raise UsageError(f"openml listing: no column {col!r} (expected the frame of "
                             "openml.evaluations.list_evaluations_setups)")
    rows = frame
    if "function" in rows.columns:
        rows = rows[rows["function"].astype(str) == flow.evaluation]
    if "flow_id" in rows.columns:
        rows = rows[pd.to_numeric(rows["flow_id"], errors="coerce") == flow.flow_id]
    rows = rows.reset_index(drop=True)
    if "parameters" in rows.columns:
        params = pd.DataFrame([dict(p) if isinstance(p, Mapping) else {}
                               for p in rows["parameters"]], index=rows.index)
    else:
        params = rows.drop(columns=[c for c in rows.columns
                                    if c in RUN_META_COLUMNS or c in (
                                        "flow_name", "function", "upload_time", "uploader",
                                        "uploader_name", "value", "values", "array_data")])
    out = pd.DataFrame(index=rows.index)
    missing = []
    for rule in flow.params:
        if rule.column in params.columns:
            out[rule.column] = params[rule.column].map(plain_value)
            continue
        found = [c for c in params.columns for spec in rule.openml
                 if _component_match(str(c), spec)]
        found = list(dict.fromkeys(found))
        if len(found) >= 1:
            # several setup parameters of one component class (two imputers in a pipeline
            # share their full name, so the client already keeps one): the first
            out[rule.column] = params[found[0]].map(plain_value)
        elif rule.rule != "ignore":
            missing.append(f"{rule.column} ({' or '.join(rule.openml) or 'no openml key'})")
    if missing:
        raise UsageError(f"openml listing of flow {flow.flow_id}: no column for {missing}")
    out[flow.evaluation] = pd.to_numeric(rows["value"], errors="coerce")
    for col in RUN_META_COLUMNS:
        if col in rows.columns:
            out[col] = rows[col].to_numpy()
    return out


def read_qualities(path: str | Path) -> dict[int, dict[str, Any]]:
    """``{task_id: {quality: value}}`` from a JSON file (NaN allowed)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the task qualities ({exc})") from None
    if not isinstance(doc, Mapping):
        raise UsageError(f"{path}: expected {{task_id: {{quality: value}}}}")
    return {int(k): dict(v or {}) for k, v in doc.items()}


def _float(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return f if math.isfinite(f) else float("nan")


def clean_qualities(qualities: Mapping[int, Mapping[str, Any]],
                    keep: Sequence[str] | None = None, *, drop_unreliable: bool = True
                    ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """OpenML's qualities as automl-meta's meta-features (see the module docstring).

    Parameters
    ----------
    qualities : mapping
        ``{task_id: {quality: value}}``.
    keep : sequence of str, optional
        The qualities to keep (default: every meta-feature automl-meta computes).
    drop_unreliable : bool
        Leave out the qualities named by :data:`UNRELIABLE_QUALITIES` (as the layer does);
        False keeps them, to compare them with ours.

    Returns
    -------
    (DataFrame, dict)
        One row per task id (index), one float column per kept quality; and what was
        changed: ``minus_one_to_missing`` (per quality), ``nominal_distinct_from_target``
        (tasks), ``fraction_to_percent`` (per quality), ``stored``, ``not_stored`` and
        ``not_stored_unreliable``.
    """
    from automl_meta.meta.builder.local import all_metafeature_names

    keep = list(keep) if keep is not None else all_metafeature_names()
    frame = pd.DataFrame.from_dict({int(t): {k: _float(v) for k, v in q.items()}
                                    for t, q in qualities.items()}, orient="index")
    frame = frame.astype(float) if len(frame) else frame
    fixes: dict[str, Any] = {"minus_one_to_missing": {}, "nominal_distinct_from_target": 0,
                             "fraction_to_percent": {}}
    # OpenML's -1: "not computed" (old characterizer versions), for qualities that cannot be
    # negative. Where the target is the only nominal attribute, its distinct-value
    # qualities are known: the classes (one attribute: standard deviation 0), as ours.
    if {"NumberOfSymbolicFeatures", "NumberOfClasses"} <= set(frame.columns):
        only_target = (frame["NumberOfSymbolicFeatures"] == 1) & (frame["NumberOfClasses"] >= 2)
        filled = pd.Series(False, index=frame.index)
        for name in _NOMINAL_DISTINCT:
            if name in frame.columns:
                hit = only_target & (frame[name] == -1)
                frame.loc[hit, name] = 0.0 if name.startswith("Stdv") else \
                    frame.loc[hit, "NumberOfClasses"]
                filled |= hit
        fixes["nominal_distinct_from_target"] = int(filled.sum())
    for name in frame.columns:
        if any(s in name for s in _SIGNED_QUALITIES):
            continue
        hit = frame[name] == -1
        if hit.any():
            frame.loc[hit, name] = np.nan
            fixes["minus_one_to_missing"][name] = int(hit.sum())
    for name, (num, dens) in _PERCENTAGES.items():
        if name not in frame.columns or num not in frame.columns or \
                any(d not in frame.columns for d in dens):
            continue
        den = np.prod([frame[d].to_numpy(dtype=float) for d in dens], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = frame[num].to_numpy(dtype=float) / den
        v = frame[name].to_numpy(dtype=float)
        tol = 1e-6 + 1e-4 * np.abs(100 * frac)
        is_fraction = (frac > 0) & (np.abs(v - frac) <= tol / 100) & \
            (np.abs(v - 100 * frac) > tol)
        if is_fraction.any():
            frame.loc[is_fraction, name] = v[is_fraction] * 100
            fixes["fraction_to_percent"][name] = int(is_fraction.sum())
    unreliable = sorted(k for k in keep if k in frame.columns and any(
        s in k for s in UNRELIABLE_QUALITIES)) if drop_unreliable else []
    keep = [k for k in keep if k not in unreliable]
    fixes["stored"] = len([k for k in keep if k in frame.columns])
    fixes["not_stored"] = sorted(c for c in frame.columns if c not in keep
                                 and c not in unreliable)
    fixes["not_stored_unreliable"] = unreliable
    return frame.reindex(columns=keep), fixes


# ------------------------------------------------------------------------------- mapping
def map_runs(runs: pd.DataFrame, flow: FlowMapping, qualities: pd.DataFrame,
             space: SearchSpace | None = None) -> tuple[pd.DataFrame, FlowReport]:
    """Map every run of a flow to a configuration of the search space.

    Parameters
    ----------
    runs : DataFrame
        Per-run frame: the flow's columns, its evaluation column and ``task_id``.
    flow : FlowMapping
    qualities : DataFrame
        Cleaned qualities indexed by task id (:func:`clean_qualities`): the task kind comes
        from ``NumberOfClasses``, the no-missing-values rules from ``NumberOfMissingValues``.
    space : SearchSpace, optional

    Returns
    -------
    (DataFrame, FlowReport)
        Mapped runs: ``task_id`` (OpenML task id), ``run`` (position among the task's runs
        of this flow), ``config`` (dict), ``config_id``, ``score``, ``flow_id``, ``task``
        (binary / multiclass); and the counts.
    """
    from automl_meta.meta.metabase import config_id

    space = space or load_space()
    report = FlowReport(flow.flow_id, flow.learner, flow.family, runs_read=len(runs))
    cols = ["task_id", "run", "config", "config_id", "score", "flow_id", "task"]
    if not len(runs):
        return pd.DataFrame(columns=cols), report
    task_ids = pd.to_numeric(runs["task_id"], errors="coerce")
    report.tasks_read = int(task_ids.nunique())
    known = set(flow.columns) | {flow.evaluation} | set(RUN_META_COLUMNS)
    report.ignored_columns = [str(c) for c in runs.columns if c not in known]
    if flow.family is None:
        report.dropped[f"flow {flow.flow_id} ({flow.learner}): no family in the search "
                       "space"] = len(runs)
        return pd.DataFrame(columns=cols), report
    fam = space.families[flow.family]
    params = {f"{flow.family}.{p.name}": p for p in fam.params}
    # decode each column once per distinct value
    decoded = {}
    for rule in flow.params:
        if rule.rule == "ignore" or rule.column not in runs.columns:
            continue
        codes, uniques = pd.factorize(runs[rule.column].astype(object), use_na_sentinel=True)
        plain = [plain_value(u) for u in uniques]
        decoded[rule.column] = [plain[c] if c >= 0 else None for c in codes]
    scores = pd.to_numeric(runs[flow.evaluation], errors="coerce").to_numpy(dtype=float)
    n_classes = qualities["NumberOfClasses"] if "NumberOfClasses" in qualities else \
        pd.Series(dtype=float)
    n_missing = qualities["NumberOfMissingValues"] if "NumberOfMissingValues" in qualities \
        else pd.Series(dtype=float)
    position: Counter = Counter()
    out = []
    for i, tid in enumerate(task_ids.to_numpy()):
        if not np.isfinite(tid):
            report.dropped["no task id"] += 1
            continue
        tid = int(tid)
        run = position[tid]
        position[tid] += 1
        k = _float(n_classes.get(tid))
        if math.isnan(k):
            report.dropped["no qualities for the task (number of classes unknown)"] += 1
            continue
        if k < 2:
            report.dropped["not a classification task (fewer than 2 classes)"] += 1
            continue
        task = "binary" if k == 2 else "multiclass"
        if not math.isfinite(scores[i]):
            report.dropped[f"no {flow.evaluation}"] += 1
            continue
        no_missing = _float(n_missing.get(tid)) == 0
        config: dict[str, Any] = {"family": flow.family}
        config.update(flow.fixed)
        reason = None
        clipped = False
        by_rule = []
        for rule in flow.params:
            if rule.rule == "ignore":
                continue
            value = decoded[rule.column][i]
            if rule.rule == "require":
                if not any(_same(value, a) for a in rule.allowed):
                    reason = (f"{rule.column}={value!r}: not expressible in the space "
                              f"(needs {list(rule.allowed)})")
                    break
                continue
            if rule.values is not None:
                if value in rule.values:
                    value = rule.values[value]
                elif value in rule.values_if_no_missing_values and no_missing:
                    by_rule.append(f"{rule.column}={value} -> "
                                   f"{rule.values_if_no_missing_values[value]} "
                                   "(no missing values)")
                    value = rule.values_if_no_missing_values[value]
                else:
                    reason = f"{rule.column}={value}: not in the space" + (
                        " (the task has missing values)"
                        if value in rule.values_if_no_missing_values else "")
                    break
            param = params[rule.to]
            if rule.rule == "clip":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    reason = f"{rule.column}={value!r}: not a number"
                    break
                new = param.clip(value)
                if new != value:
                    clipped = True
                    report.clipped_values[rule.column] += 1
                value = new
            else:
                if param.type == "float" and isinstance(value, int) and \
                        not isinstance(value, bool):
                    value = float(value)
                if not param.contains(value):
                    reason = f"{rule.column}={value!r}: outside {rule.to}'s domain"
                    break
            config[rule.to] = value
        if reason is None:
            problem = space.check_config(config, task)
            if problem:
                reason = f"not a valid configuration: {problem}"
        if reason is not None:
            report.dropped[reason] += 1
            continue
        if clipped:
            report.clipped += 1
        report.mapped_by_value_rule.update(by_rule)
        ordered = {"family": flow.family}
        ordered.update({k: config[k] for k in params if k in config})
        out.append((tid, run, ordered, config_id(ordered), float(scores[i]), flow.flow_id,
                    task))
    mapped = pd.DataFrame(out, columns=cols)
    report.mapped = len(mapped)
    report.tasks_mapped = int(mapped["task_id"].nunique()) if len(mapped) else 0
    return mapped, report


def summarise_runs(mapped: pd.DataFrame,
                   max_runs_per_task: int | None = DEFAULT_MAX_RUNS_PER_TASK) -> pd.DataFrame:
    """At most ``max_runs_per_task`` runs per task: the best ``ceil(max / 2)`` (50 of the
    default 100) plus ``floor(max / 2)`` (50) spread evenly over the remaining runs by score
    rank (from the best of the rest to the worst). Greater scores are better; ties keep the
    runs' order. ``None`` or 0 keeps every run.

    Parameters
    ----------
    mapped : DataFrame
        Mapped runs (:func:`map_runs`): ``task_id``, ``run``, ``score``, ...
    max_runs_per_task : int or None

    Returns
    -------
    DataFrame
        The kept rows, per task from the best score down.
    """
    if not len(mapped):
        return mapped
    ordered = mapped.sort_values(["task_id", "score", "flow_id", "run"],
                                 ascending=[True, False, True, True], kind="stable")
    if not max_runs_per_task:
        return ordered.reset_index(drop=True)
    n_best = (max_runs_per_task + 1) // 2
    n_spread = max_runs_per_task - n_best
    parts = []
    for _, grp in ordered.groupby("task_id", sort=True):
        if len(grp) <= max_runs_per_task:
            parts.append(grp)
            continue
        rest = len(grp) - n_best
        picks = np.unique(np.round(np.linspace(0, rest - 1, n_spread)).astype(int))
        parts.append(pd.concat([grp.iloc[:n_best], grp.iloc[n_best:].iloc[picks]]))
    return pd.concat(parts).reset_index(drop=True)


# ------------------------------------------------------------------------------- linking
def link_duplicates(tasks: pd.DataFrame, reference: pd.DataFrame
                    ) -> tuple[pd.Series, list[dict[str, Any]]]:
    """The reference task that is the same dataset as each layer task (see the module doc).

    Parameters
    ----------
    tasks : DataFrame
        The layer's tasks (``task_id`` and OpenML's qualities).
    reference : DataFrame
        An existing metabase's tasks (its ``task_id`` and meta-features); tasks of the layer's
        own source are ignored.

    Returns
    -------
    (Series, list of dict)
        ``linked_task_id`` per layer task (index of ``tasks``; None when unmatched), and the
        rejected near matches (same instances, classes and class sizes, but other feature
        counts): ``{"task_id", "candidate", "reason"}``.
    """
    linked = pd.Series([None] * len(tasks), index=tasks.index, dtype=object)
    rejected: list[dict[str, Any]] = []
    if not len(tasks) or not len(reference):
        return linked, rejected
    ref = reference
    if "source" in ref.columns:
        ref = ref[ref["source"].astype(str) != SOURCE]
    if "task" in ref.columns:
        ref = ref[ref["task"].astype(str).isin(["binary", "multiclass"])]

    def num(frame: pd.DataFrame, name: str) -> pd.Series:
        return pd.to_numeric(frame.get(name, pd.Series(np.nan, index=frame.index)),
                             errors="coerce")

    r = {n: num(ref, n) for n in ("NumberOfInstances", "NumberOfClasses", "MajorityClassSize",
                                  "MinorityClassSize", "NumberOfFeatures",
                                  "NumberOfSymbolicFeatures", "NumberOfNumericFeatures",
                                  "ClassEntropy")}
    for idx, row in tasks.iterrows():
        q = {n: _float(row.get(n)) for n in r}
        n_rows = q["NumberOfInstances"]
        if math.isnan(n_rows) or math.isnan(q["NumberOfClasses"]):
            continue
        same_data = (r["NumberOfClasses"] == q["NumberOfClasses"]) & \
            ((r["NumberOfInstances"] - n_rows).abs() <= LINK_ROWS_REL * n_rows)
        for n in ("MajorityClassSize", "MinorityClassSize"):
            if not math.isnan(q[n]):
                same_data &= (r[n] - q[n]).abs() <= max(1.0, LINK_CLASS_SIZE_REL * n_rows)
        matches, best_gap = [], math.inf
        for j in ref.index[same_data.to_numpy()]:
            problems, gap = [], 0.0
            for n in ("NumberOfFeatures", "NumberOfSymbolicFeatures",
                      "NumberOfNumericFeatures"):
                a, b = q[n], _float(r[n][j])
                if math.isnan(a) or math.isnan(b):
                    continue
                gap += abs(a - b) / max(abs(a), 1.0)
                if abs(a - b) > max(LINK_FEATURES_ABS, LINK_FEATURES_REL * abs(a)):
                    problems.append(f"{n} {a:g} vs {b:g}")
            a, b = q["ClassEntropy"], _float(r["ClassEntropy"][j])
            if not (math.isnan(a) or math.isnan(b)) and abs(a - b) > LINK_ENTROPY_ABS:
                problems.append(f"ClassEntropy {a:.4g} vs {b:.4g}")
            gap += abs(n_rows - _float(r["NumberOfInstances"][j])) / n_rows
            if problems:
                rejected.append({"task_id": str(row["task_id"]),
                                 "candidate": str(ref.loc[j, "task_id"]),
                                 "reason": "same instances, classes and class sizes, but "
                                           + "; ".join(problems)})
            elif gap < best_gap:
                matches.append(str(ref.loc[j, "task_id"]))
                best_gap = gap
        if matches:
            linked[idx] = matches[-1]
    return linked, rejected


# ---------------------------------------------------------------------------------- layer
@dataclass
class RunsLayer:
    """The layer: tasks, configurations and results in the metabase format, and the report."""

    tasks: pd.DataFrame
    configs: dict[str, dict[str, Any]]
    results: pd.DataFrame
    report: MappingReport
    files: dict[str, str] = field(default_factory=dict)  # file name -> SHA-256
    flows: dict[int, FlowMapping] = field(default_factory=dict)


def build_layer(runs: Iterable[tuple[FlowMapping, pd.DataFrame]],
                qualities: Mapping[int, Mapping[str, Any]], *,
                max_runs_per_task: int | None = DEFAULT_MAX_RUNS_PER_TASK,
                reference: pd.DataFrame | None = None, reference_name: str | None = None,
                space: SearchSpace | None = None) -> RunsLayer:
    """Map runs of one or more flows and assemble the layer.

    Parameters
    ----------
    runs : iterable of (FlowMapping, DataFrame)
        Each flow with its per-run frame (:func:`read_run_export` or
        :func:`runs_from_openml_frame`); a flow may come more than once.
    qualities : mapping
        ``{task_id: {quality: value}}`` (OpenML's names).
    max_runs_per_task : int or None
        See :func:`summarise_runs` (the 50 best plus 50 spread over the rest by default).
    reference : DataFrame, optional
        Tasks of an existing metabase to link duplicates to (:func:`link_duplicates`).
    reference_name : str, optional
        What ``reference`` is, for the report.
    space : SearchSpace, optional

    Returns
    -------
    RunsLayer
    """
    from automl_meta.meta.metabase import RESULT_COLUMNS, TASK_COLUMNS

    space = space or load_space()
    runs = list(runs)
    qual, fixes = clean_qualities(qualities)
    report = MappingReport(max_runs_per_task=max_runs_per_task or None, qualities=fixes)
    parts, names, flows = [], {}, {}
    for flow, frame in runs:
        flows[flow.flow_id] = flow
        mapped, rep = map_runs(frame, flow, qual, space)
        if flow.flow_id in report.flows:
            _merge_reports(report.flows[flow.flow_id], rep)
        else:
            report.flows[flow.flow_id] = rep
        parts.append(mapped)
        if "data_name" in frame.columns:
            for tid, name in zip(pd.to_numeric(frame["task_id"], errors="coerce"),
                                 frame["data_name"], strict=True):
                if pd.notna(tid) and isinstance(name, str) and name:
                    names[int(tid)] = name
    mapped = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["task_id", "run", "config", "config_id", "score", "flow_id", "task"])
    kept = summarise_runs(mapped, max_runs_per_task)
    report.runs_kept = len(kept)
    configs = {cid: cfg for cid, cfg in zip(kept["config_id"], kept["config"], strict=True)}
    rows = []
    read_per_task: Counter = Counter()
    for _, frame in runs:
        read_per_task.update(int(t) for t in pd.to_numeric(frame["task_id"],
                                                           errors="coerce").dropna())
    mapped_per_task = mapped.groupby("task_id").size() if len(mapped) else pd.Series(
        dtype=int)
    results = []
    for tid, grp in kept.groupby("task_id", sort=True):
        tid = int(tid)
        best = grp.iloc[0]  # kept runs are ordered from the best score down
        flow_ids = sorted(int(f) for f in grp["flow_id"].unique())
        first = flows[flow_ids[0]]
        q = qual.loc[tid] if tid in qual.index else pd.Series(dtype=float)
        n_rows = _float(q.get("NumberOfInstances"))
        n_feat = _float(q.get("NumberOfFeatures"))
        row = {"task_id": f"{TASK_PREFIX}{tid}", "name": names.get(tid, f"openml-task-{tid}"),
               "openml_id": tid, "source": SOURCE, "target": None, "task": best["task"],
               "status": "ok", "error": "",
               "n_rows": None if math.isnan(n_rows) else int(n_rows),
               "n_features": None if math.isnan(n_feat) else int(n_feat) - 1,
               "n_classes": int(_float(q.get("NumberOfClasses"))),
               "search_rows": None if math.isnan(n_rows) else int(n_rows), "n_folds": 10,
               "metric": first.metric, "greater_is_better": True,
               "n_trials": len(grp), "best_score": float(best["score"]),
               "best_config_id": best["config_id"], "search_seconds": None}
        row.update({k: float(v) for k, v in q.items()})
        row.update({"evaluation_protocol": first.evaluation_protocol,
                    "licence": first.licence, "citation": first.citation,
                    "openml_flows": ",".join(str(f) for f in flow_ids),
                    "runs_read": int(read_per_task[tid]),
                    "runs_mapped": int(mapped_per_task.get(tid, 0)), "linked_task_id": None})
        rows.append(row)
        for r in grp.itertuples(index=False):
            results.append({"task_id": row["task_id"], "config_id": r.config_id,
                            "trial": int(r.run), "state": "COMPLETE", "score": r.score,
                            "fit_seconds": None, "duration": None})
    cols = TASK_COLUMNS + [c for c in qual.columns if c not in TASK_COLUMNS] + \
        LAYER_TASK_COLUMNS
    tasks = pd.DataFrame(rows, columns=cols)
    report.tasks = len(tasks)
    if reference is not None:
        linked, rejected = link_duplicates(tasks, reference)
        tasks["linked_task_id"] = linked
        report.linked = {str(t): str(v) for t, v in zip(tasks["task_id"], linked, strict=True)
                         if v is not None}
        report.link_rejected = rejected
        report.linked_against = reference_name or "the given metabase"
    res = pd.DataFrame(results, columns=RESULT_COLUMNS)
    return RunsLayer(tasks, configs, res, report, flows=flows)


def _merge_reports(into: FlowReport, other: FlowReport) -> None:
    into.runs_read += other.runs_read
    into.tasks_read += other.tasks_read
    into.mapped += other.mapped
    into.tasks_mapped += other.tasks_mapped
    into.clipped += other.clipped
    into.clipped_values.update(other.clipped_values)
    into.mapped_by_value_rule.update(other.mapped_by_value_rule)
    into.dropped.update(other.dropped)
    into.ignored_columns = sorted(set(into.ignored_columns) | set(other.ignored_columns))


def run_files(folder: str | Path) -> list[Path]:
    """The run exports of a folder (ARFF / CSV, optionally gzipped), sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.name.lower().endswith(RUN_FILE_SUFFIXES))


def layer_from_folder(folder: str | Path, *,
                      max_runs_per_task: int | None = DEFAULT_MAX_RUNS_PER_TASK,
                      reference: pd.DataFrame | None = None,
                      reference_name: str | None = None,
                      flows: Mapping[int, FlowMapping] | None = None,
                      space: SearchSpace | None = None) -> RunsLayer:
    """The layer of a folder of run exports plus ``task_qualities.json``.

    Parameters
    ----------
    folder : str or Path
        E.g. ``../shared/openml-runs``: ``random_forest.arff.gz`` (flow 6969),
        ``adaboost.arff.gz`` (flow 6970), ``task_qualities.json``.
    max_runs_per_task, reference, reference_name, space :
        As in :func:`build_layer`.
    flows : mapping, optional
        Flow mappings by id (default: the shipped ``configs/flows``).

    Returns
    -------
    RunsLayer
        With ``files`` (name → SHA-256 of every file read).

    Raises
    ------
    UsageError
        Not a folder, no run file, no qualities file, a file of an unmapped flow.
    """
    from automl_meta.data import file_sha256

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    qpath = folder / QUALITIES_FILE
    if not qpath.exists():
        raise UsageError(f"{folder}: no {QUALITIES_FILE} (the tasks' OpenML qualities)")
    space = space or load_space()
    flows = dict(flows) if flows is not None else load_flows(space=space)
    files = run_files(folder)
    if not files:
        raise UsageError(f"{folder}: no run export (*.arff[.gz], *.csv[.gz])")
    pairs = []
    per_flow_files: dict[int, list[str]] = {}
    for path in files:
        frame, flow_id = read_run_export(path)
        flow = identify_flow(frame, flow_id, flows, where=str(path))
        pairs.append((flow, frame))
        per_flow_files.setdefault(flow.flow_id, []).append(path.name)
    layer = build_layer(pairs, read_qualities(qpath), max_runs_per_task=max_runs_per_task,
                        reference=reference, reference_name=reference_name, space=space)
    for fid, names in per_flow_files.items():
        layer.report.flows[fid].files = names
    layer.files = {p.name: file_sha256(p) for p in [*files, qpath]}
    return layer


def fetch_openml_runs(flow_ids: Sequence[int], task_ids: Sequence[int] | None = None, *,
                      flows: Mapping[int, FlowMapping] | None = None
                      ) -> tuple[list[tuple[FlowMapping, pd.DataFrame]],
                                 dict[int, dict[str, Any]]]:
    """Fetch a flow's runs and their tasks' qualities with the ``openml`` client (network).

    Parameters
    ----------
    flow_ids : sequence of int
        Flows with a mapping in ``configs/flows``.
    task_ids : sequence of int, optional
        Only these OpenML tasks (default: every task the flows were run on).
    flows : mapping, optional
        Flow mappings by id (default: the shipped ones).

    Returns
    -------
    (list of (FlowMapping, DataFrame), dict)
        Per-run frames (:func:`runs_from_openml_frame`) and ``{task_id: {quality: value}}``
        (each task's dataset qualities), ready for :func:`build_layer`.
    """
    import openml

    flows = dict(flows) if flows is not None else load_flows()
    pairs = []
    task_data: dict[int, int] = {}
    for fid in flow_ids:
        if fid not in flows:
            raise UsageError(f"OpenML flow {fid} has no mapping (add configs/flows/{fid}.yaml)")
        flow = flows[fid]
        try:
            listing = openml.evaluations.list_evaluations_setups(
                function=flow.evaluation, flows=[fid],
                tasks=list(task_ids) if task_ids else None,
                parameters_in_separate_columns=True)
        except Exception as exc:  # the client raises many kinds (network, server)
            raise UsageError(f"cannot list the runs of OpenML flow {fid}: "
                             f"{type(exc).__name__}: {exc}") from None
        frame = runs_from_openml_frame(listing, flow)
        pairs.append((flow, frame))
        if "data_id" in frame.columns:
            for t, d in zip(frame["task_id"], frame["data_id"], strict=True):
                task_data[int(t)] = int(d)
    qualities: dict[int, dict[str, Any]] = {}
    cache: dict[int, dict[str, Any]] = {}
    for tid, did in sorted(task_data.items()):
        if did not in cache:
            try:
                ds = openml.datasets.get_dataset(did, download_data=False,
                                                 download_qualities=True,
                                                 download_features_meta_data=False)
                cache[did] = dict(ds.qualities or {})
            except Exception as exc:
                raise UsageError(f"cannot fetch the qualities of OpenML dataset {did}: "
                                 f"{type(exc).__name__}: {exc}") from None
        qualities[tid] = cache[did]
    return pairs, qualities


# ---------------------------------------------------------------------------------- write
def layer_provenance(layer: RunsLayer, source: str, *, command: str = "") -> dict[str, Any]:
    """What ``manifest["layers"]["openml-runs"]`` records of a layer."""
    rep = layer.report
    flows = {}
    for fid, frep in sorted(rep.flows.items()):
        entry = layer.flows[fid].provenance() if fid in layer.flows else {}
        entry.update(frep.to_dict())
        flows[str(fid)] = entry

    def joined(key: str) -> str | None:
        values = dict.fromkeys(getattr(f, key) for _, f in sorted(layer.flows.items())
                               if getattr(f, key))
        return " | ".join(values) or None

    return {"task_source": SOURCE, "source": source, "files_sha256": dict(layer.files),
            "command": command, "date": pd.Timestamp.now("UTC").isoformat(),
            "flows": flows, "flows_without_family": rep.flows_without_family,
            "counts": rep.totals(), "summarising": summarising_rule(rep.max_runs_per_task),
            "qualities": rep.qualities, "linked": dict(sorted(rep.linked.items())),
            "linked_against": rep.linked_against, "link_rejected": rep.link_rejected,
            "evaluation_protocol": joined("evaluation_protocol"),
            "licence": joined("licence"), "citation": joined("citation")}


def write_layer(layer: RunsLayer, output: str | Path, provenance: Mapping[str, Any], *,
                command: str = "", space: SearchSpace | None = None) -> dict[str, Any]:
    """Write the layer into the metabase ``output``.

    If ``output`` holds a metabase, its tasks of source ``openml-run`` (with their results
    and the configurations only they used) are replaced by the layer, every other task is
    kept as it is; otherwise a metabase of just the layer is written. The statistics derived
    from the whole metabase (normalisation, portfolio) are recomputed, and the layer's
    provenance is recorded under ``manifest["layers"]["openml-runs"]``.

    Parameters
    ----------
    layer : RunsLayer
    output : str or Path
    provenance : mapping
        :func:`layer_provenance`.
    command : str
        Recorded as the command of a new metabase.
    space : SearchSpace, optional

    Returns
    -------
    dict
        The manifest as written.
    """
    from automl_meta._version import __version__
    from automl_meta.meta.builder.local import BuildState, all_metafeature_names
    from automl_meta.meta.metabase import MANIFEST_FILE, RESULT_COLUMNS, load_metabase

    output = Path(output)
    space = space or load_space()
    if (output / MANIFEST_FILE).exists():
        mb = load_metabase(output, space_version=space.version)
        old = mb.tasks["source"].astype(str) == SOURCE
        old_ids = set(mb.tasks.loc[old, "task_id"].astype(str))
        in_old = mb.results["task_id"].astype(str).isin(old_ids)
        kept_results = mb.results[~in_old]
        still_used = set(kept_results["config_id"])
        only_old = set(mb.results.loc[in_old, "config_id"]) - still_used
        configs = {c: p for c, p in mb.configs.items() if c not in only_old}
        base = {k: v for k, v in mb.manifest.items() if k not in ("files", "counts")}
        status = str(mb.manifest.get("status") or "complete")
        frames = [f for f in (mb.tasks[~old], layer.tasks) if len(f)]
        tasks = pd.concat(frames, ignore_index=True) if frames else layer.tasks
        results = pd.concat([kept_results[RESULT_COLUMNS], layer.results],
                            ignore_index=True)
    else:
        base = {"built_with": f"automl-meta {__version__}", "command": command,
                "source": {"type": LAYER, "path": provenance.get("source")},
                "search_space_version": space.version,
                "created": pd.Timestamp.now("UTC").isoformat()}
        status = "complete"
        configs = {}
        tasks, results = layer.tasks, layer.results
    configs.update(layer.configs)
    layers = dict(base.get("layers") or {})
    layers[LAYER] = dict(provenance)
    base["layers"] = layers
    state = BuildState(output, base, tasks, configs, results)
    return state.write(status, all_metafeature_names())
