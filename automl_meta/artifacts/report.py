"""``report.html``: a self-contained page describing one run directory.

The page is rendered from the files a fit already wrote (``report.json``, ``leaderboard.csv``,
``manifest.json``) and from nothing else, so ``automl-meta report RUN_DIR`` can regenerate it at
any time and the same files always give the same page. Rendering fits no model: it formats
numbers and draws a handful of small plots (matplotlib, Agg, SVG), which costs about a second.

Self-contained means it opens from disk without a network: CSS is inline, plots are SVG
embedded as ``data:`` URIs, there is no external font, script, stylesheet or link. Sections
whose inputs are missing (an older run directory, diagnostics switched off, a cold start) say
"not available" instead of failing.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import functools
import html
import io
import json
import math
import numbers
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_meta.errors import UsageError
from automl_meta.search.families import family_label

if TYPE_CHECKING:  # pandas and matplotlib are imported lazily (CLI start-up time)
    import pandas as pd
    from matplotlib.figure import Figure

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
LEADERBOARD_CSV = "leaderboard.csv"
MANIFEST_JSON = "manifest.json"

#: how trials of each origin group are drawn in the optimisation history
ORIGIN_STYLE = {
    "tpe": ("TPE", "#1f77b4", "o"),
    "neighbour": ("warm start: nearest prior task", "#ff7f0e", "s"),
    "portfolio": ("warm start: portfolio", "#2ca02c", "^"),
    "learned": ("warm start: performance model", "#d62728", "v"),
    "history": ("warm start: your earlier fit", "#8c564b", "P"),
    "default": ("warm start: family defaults", "#17becf", "X"),
    "user": ("user configuration", "#9467bd", "D"),
}
TOP_N = 10
MAX_IMPORTANCE_BARS = 20
MAX_CONFUSION_CLASSES = 25
MAX_CLASS_ROWS = 30
NA = '<p class="na">Not available{}.</p>'


# ---------------------------------------------------------------------------- public API
def write_report(run_dir: str | Path) -> Path:
    """Render ``report.html`` in a run directory from the files already there.

    Parameters
    ----------
    run_dir : str or Path
        A run directory written by ``AutoML.save`` / ``automl-meta fit``. It must hold
        ``report.json``; ``leaderboard.csv`` and ``manifest.json`` are used when present.

    Returns
    -------
    Path
        The path of the written ``report.html`` (replaced atomically when it exists).

    Raises
    ------
    UsageError
        When ``run_dir`` is not a directory or has no readable ``report.json``.

    Notes
    -----
    A plot that cannot be drawn is replaced by a note on the page and a warning line on
    stderr; the rest of the page is written.
    """
    path, errors = _write_report(run_dir)
    for error in errors:
        _warn(f"report.html: {error}")
    return path


def finalize_report(run_dir: str | Path) -> str | None:
    """Render ``report.html`` for a run being saved; never raises an ``Exception``.

    The page is an extra of the run directory: when rendering fails (or a plot cannot be
    drawn) the reason goes to stderr as one warning line and into ``report.json`` and
    ``manifest.json`` as ``report_error``, and the run directory is saved all the same.

    Parameters
    ----------
    run_dir : str or Path
        The directory being written (``report.json`` and ``manifest.json`` already there).

    Returns
    -------
    str or None
        The recorded ``report_error``, or None when the page was rendered completely.
    """
    run_dir = Path(run_dir)
    try:
        _, errors = _write_report(run_dir)
    except Exception as exc:  # the report must never cost the run
        errors = [f"not written ({_one_line(exc)})"]
    if not errors:
        return None
    for error in errors:
        _warn(f"report.html: {error}; the run directory is saved")
    error = "; ".join(errors)
    for name in (REPORT_JSON, MANIFEST_JSON):
        with contextlib.suppress(Exception):
            _record_report_error(run_dir / name, error)
    return error


def _record_report_error(path: Path, error: str) -> None:
    """Add ``report_error`` to a JSON file of the run directory (replaced atomically)."""
    if not path.exists():
        return
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        return
    doc["report_error"] = error
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumps_json(doc, indent=2))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _warn(text: str) -> None:
    with contextlib.suppress(Exception):  # a closed stderr must not turn into an error
        print(f"warning: {text}", file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 300 characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:299] + "…"


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: every NaN or infinity becomes None, recursively.

    numpy scalars and arrays become Python numbers and lists, tuples and sets become lists,
    dict keys that are not JSON keys become strings; other objects are left to the
    serialiser's ``default``.

    Parameters
    ----------
    value : Any
        A document to serialise (dicts, lists, numbers, strings, numpy values).

    Returns
    -------
    Any
        The same document, serialisable with ``json.dumps(..., allow_nan=False)``.
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)  # numpy integers and numpy booleans' int values alike
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_json_key(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    kind = type(value)
    if kind.__module__ == "numpy":
        if kind.__name__ == "ndarray":
            return json_safe(value.tolist())
        if kind.__name__ in ("bool", "bool_"):
            return bool(value)
    if kind.__name__ in ("NAType", "NaTType"):  # pandas' missing values
        return None
    return value


def _json_key(key: Any) -> Any:
    if key is None or isinstance(key, (str, bool)):
        return key
    if isinstance(key, numbers.Integral):
        return int(key)
    if isinstance(key, numbers.Real):
        return float(key)
    return str(key)


def dumps_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that always yields valid JSON (no NaN / Infinity tokens).

    Parameters
    ----------
    value : Any
        The document (see :func:`json_safe` for what is converted).
    **kwargs
        Passed on to :func:`json.dumps` (e.g. ``indent``).

    Returns
    -------
    str
        The JSON text; objects JSON does not know are written as their ``str``.
    """
    return json.dumps(json_safe(value), allow_nan=False, default=_json_fallback, **kwargs)


def _json_fallback(value: Any) -> Any:
    return json_safe(value.tolist()) if hasattr(value, "tolist") else str(value)


def _write_report(run_dir: str | Path) -> tuple[Path, list[str]]:
    """``write_report``, also returning what could not be drawn (one text per plot)."""
    import pandas as pd

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    report = _read_json(run_dir / REPORT_JSON, required=True)
    manifest = _read_json(run_dir / MANIFEST_JSON, required=False)
    lb_path = run_dir / LEADERBOARD_CSV
    if lb_path.exists():
        try:
            leaderboard = pd.read_csv(lb_path, dtype={"error": str, "config": str,
                                                      "origin": str, "family": str})
        except pd.errors.EmptyDataError:  # a search that completed no trial
            leaderboard = pd.DataFrame()
        except (ValueError, pd.errors.ParserError) as exc:
            raise UsageError(f"{lb_path}: unreadable leaderboard ({exc})") from None
    else:  # an older / partial directory: the report's top-10 is better than nothing
        leaderboard = pd.DataFrame(report.get("leaderboard_top") or [])
    page, errors = _render_collecting(report, leaderboard, manifest)
    out = run_dir / REPORT_HTML
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=run_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out, errors


def render_report(report: dict[str, Any], leaderboard: pd.DataFrame,
                  manifest: dict[str, Any] | None) -> str:
    """The HTML text of the report (a pure function of its three inputs).

    Parameters
    ----------
    report : dict
        The contents of ``report.json`` (``AutoML.summary()`` plus ``leaderboard_top`` and,
        when the fit computed them, ``target_distribution`` and ``diagnostics``).
    leaderboard : DataFrame
        ``leaderboard.csv``: one row per trial (trial, state, score, score_std, family,
        origin, fit_seconds, duration, started, error, config as JSON text).
    manifest : dict or None
        The contents of ``manifest.json`` (versions, checksums, feature schema).

    Returns
    -------
    str
        A complete HTML document with inline CSS and plots; it references no external
        resource.
    """
    return _render_collecting(report, leaderboard, manifest)[0]


#: the texts of the plots that could not be drawn while a page renders
_PLOT_ERRORS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "automl_meta_report_plot_errors", default=None)


def _render_collecting(report: dict[str, Any], leaderboard: pd.DataFrame,
                       manifest: dict[str, Any] | None) -> tuple[str, list[str]]:
    """The page, and a text per plot that could not be drawn (the page notes them)."""
    errors: list[str] = []
    token = _PLOT_ERRORS.set(errors)
    try:
        return _render_page(report, leaderboard, manifest), errors
    finally:
        _PLOT_ERRORS.reset(token)


def _render_page(report: dict[str, Any], leaderboard: pd.DataFrame,
                 manifest: dict[str, Any] | None) -> str:
    import pandas as pd

    manifest = manifest or {}
    lb = _normalise_leaderboard(leaderboard if leaderboard is not None else pd.DataFrame())
    gib = bool(report.get("greater_is_better", manifest.get("greater_is_better", True)))
    ctx = _Context(report=report, manifest=manifest, lb=lb, gib=gib)
    with _plot_style():
        sections = _sections(ctx)
    target = report.get("target", manifest.get("target", "?"))
    task = report.get("task", manifest.get("task", "?"))
    title = f"automl-meta report: {target} ({task})"
    nav = "".join(f'<a href="#{sid}">{_e(name)}</a>' for sid, name, _ in sections)
    body = "\n".join(f'<section id="{sid}">\n<h2>{_e(name)}</h2>\n{content}\n</section>'
                     for sid, name, content in sections)
    status = manifest.get("status") or ("interrupted" if report.get("interrupted")
                                        else "complete")
    banner = ""
    if report.get("interrupted") or status == "interrupted":
        banner = ('<div class="callout warn"><b>Interrupted run.</b> The search was stopped '
                  "before its end; the final model is the best configuration found until "
                  "then.</div>")
    subtitle = (f"target <code>{_e(target)}</code> · task {_e(task)} · metric "
                f"{_e(report.get('metric', manifest.get('metric', '?')))}"
                f" ({'higher' if gib else 'lower'} is better) · {_e(status)}")
    created = manifest.get("created")
    if created:
        subtitle += f" · created {_e(str(created)[:19].replace('T', ' '))} UTC"
    return _PAGE.format(title=_e(title), css=_CSS, script=_SCRIPT, heading=_e(title),
                        subtitle=subtitle, banner=banner, nav=nav, body=body)


# ---------------------------------------------------------------------------- inputs
def _read_json(path: Path, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise UsageError(f"{path.parent}: not a run directory (no {path.name})")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        if required:
            raise UsageError(f"{path}: unreadable ({exc})") from None
        return {}
    return data if isinstance(data, dict) else {}


def _normalise_leaderboard(lb: pd.DataFrame) -> pd.DataFrame:
    """Leaderboard with every expected column, numeric where numeric."""
    import pandas as pd

    lb = lb.copy()
    defaults = {"trial": None, "state": "", "score": None, "score_std": None, "n_folds": None,
                "family": "", "origin": "tpe", "fit_seconds": None, "duration": None,
                "started": None, "error": "", "config": "{}"}
    for col, value in defaults.items():
        if col not in lb:
            lb[col] = value
    for col in ("trial", "score", "score_std", "n_folds", "fit_seconds", "duration", "started"):
        lb[col] = pd.to_numeric(lb[col], errors="coerce")
    for col in ("state", "family", "origin", "error", "config"):
        lb[col] = lb[col].astype(object).where(lb[col].notna(), defaults[col]).astype(str)
    lb["config"] = lb["config"].replace("", "{}")
    lb["state"] = lb["state"].str.upper()
    lb = lb[lb["trial"].notna()] if len(lb) else lb
    return lb.reset_index(drop=True)


class _Context:
    """What every section needs: the three inputs and a few derived facts."""

    def __init__(self, report: dict[str, Any], manifest: dict[str, Any], lb: pd.DataFrame,
                 gib: bool):
        self.report, self.manifest, self.lb, self.gib = report, manifest, lb, gib
        self.metric = str(report.get("metric", manifest.get("metric", "score")))
        self.task = str(report.get("task", manifest.get("task", "")))
        self.is_classification = self.task != "regression"
        done = lb[(lb["state"] == "COMPLETE") & lb["score"].notna()] if len(lb) else lb
        self.ranked = done.sort_values(["score", "trial"],
                                       ascending=[not gib, True]) if len(done) else done

    def rank_of(self, trial: Any) -> int | None:
        """1-based rank of a trial among completed trials (None if it did not complete)."""
        if not len(self.ranked):
            return None
        hits = [i for i, t in enumerate(self.ranked["trial"]) if t == trial]
        return hits[0] + 1 if hits else None


# ---------------------------------------------------------------------------- formatting
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _isnum(value: Any) -> bool:
    """A finite real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and \
        math.isfinite(float(value))


def _num(value: Any, digits: int = 4) -> str:
    """A number for a person: thousands separators, ``digits`` decimals, "—" when absent."""
    if value is None or isinstance(value, bool) or not _isnum(value):
        return "—" if value is None or _is_nan(value) else _e(value)
    value = float(value)
    if value == int(value) and abs(value) < 1e15 and digits == 0:
        return f"{int(value):,}"
    if abs(value) >= 1e5 or (0 < abs(value) < 1e-3):
        return f"{value:.{max(digits - 1, 1)}e}"
    return f"{value:,.{digits}f}"


def _int(value: Any) -> str:
    return _num(value, 0) if _isnum(value) else "—"


def _is_nan(value: Any) -> bool:
    try:
        return value != value  # NaN (float or numpy)
    except (TypeError, ValueError):
        return False


def _short(value: Any) -> str:
    """A configuration value: 3 significant digits for floats."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}"
    if value is None:
        return "none"
    return str(value)


def _seconds(value: Any) -> str:
    if not _isnum(value):
        return "—"
    value = float(value)
    if value < 60:
        return f"{value:.2f} s" if value < 1 else f"{value:.1f} s" if value < 10 \
            else f"{value:.0f} s"
    minutes, sec = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "—"


def _origin_group(origin: str) -> str:
    origin = str(origin)
    if origin == "tpe" or not origin:
        return "tpe"
    if origin.startswith(("neighbour", "neighbor")):
        return "neighbour"
    if origin.startswith("portfolio"):
        return "portfolio"
    if origin.startswith("learned"):
        return "learned"
    if origin.startswith("history:"):
        return "history"
    if origin.startswith("default:"):
        return "default"
    return "user"


def _origin_label(origin: str) -> str:
    origin = str(origin)
    group = _origin_group(origin)
    if group == "neighbour":
        task_id = origin.split(":", 1)[1] if ":" in origin else origin
        return f"warm start · {task_id.rsplit('/', 1)[-1]}"
    if group == "portfolio":
        return "warm start · portfolio"
    if group == "learned":
        task_id = origin.split(":", 1)[1] if ":" in origin else ""
        return "warm start · model" + (f" ({task_id.rsplit('/', 1)[-1]})" if task_id else "")
    if group == "history":
        return f"warm start · your fit {origin.split(':', 1)[1]}"
    if group == "default":
        return f"warm start · {origin.split(':', 1)[1]} defaults"
    if group == "tpe":
        return "TPE"
    return f"user · {origin}" if origin != "user" else "user"


def _family_label(family: Any) -> str:
    return family_label(family)


def _parse_config(config: Any) -> dict[str, Any]:
    if isinstance(config, dict):
        return config
    try:
        parsed = json.loads(str(config))
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _config_html(config: Any, with_family: bool = False) -> str:
    """A configuration as chips ``name value`` with the family prefix stripped."""
    cfg = _parse_config(config)
    family = str(cfg.get("family", ""))
    chips = []
    if with_family and family:
        chips.append(f'<span class="kv fam">{_e(_family_label(family))}</span>')
    for key in sorted(k for k in cfg if k != "family"):
        name = key[len(family) + 1:] if family and key.startswith(family + ".") else key
        chips.append(f'<span class="kv"><b>{_e(name)}</b> {_e(_short(cfg[key]))}</span>')
    return f'<div class="cfg">{"".join(chips)}</div>' if chips else '<span class="na">—</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "",
           numeric: Sequence[int] = ()) -> str:
    """An HTML table; ``rows`` hold HTML already escaped; ``numeric`` columns align right."""
    head = "".join(f'<th{" class=num" if i in numeric else ""}>{_e(h)}</th>'
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{c}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return (f'<div class="tablewrap"><table class="{cls}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _cards(items: Sequence[tuple[str, str]]) -> str:
    """Key figures as cards: (label, HTML value)."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="label">{_e(label)}</div>'
        f'<div class="value">{value}</div></div>' for label, value in items) + "</div>"


def _na(why: str = "") -> str:
    return NA.format(f": {_e(why)}" if why else "")


# ---------------------------------------------------------------------------- plots
@contextlib.contextmanager
def _plot_style() -> Iterator[None]:
    """matplotlib's default style whatever the user's matplotlibrc (same files, same page)."""
    import matplotlib
    import matplotlib.style

    with matplotlib.style.context("default"), matplotlib.rc_context(
            {"svg.hashsalt": "automl-meta", "svg.fonttype": "path",
             "font.family": "DejaVu Sans", "axes.titlesize": 9,
             # labels hold column and target names: "$" and "\\" are drawn as written,
             # never parsed as math text
             "text.parse_math": False, "text.usetex": False}):
        yield


def _guarded(what: str) -> Callable[[Callable[..., str]], Callable[..., str]]:
    """A plot that fails becomes a note on the page (and a text in ``_PLOT_ERRORS``)."""
    def decorate(draw: Callable[..., str]) -> Callable[..., str]:
        @functools.wraps(draw)
        def guarded(*args: Any, **kwargs: Any) -> str:
            try:
                return draw(*args, **kwargs)
            except Exception as exc:  # one plot never costs the page
                errors = _PLOT_ERRORS.get()
                if errors is not None:
                    errors.append(f"the {what} was not drawn ({_one_line(exc)})")
                return _na(f"the {what} could not be drawn ({_one_line(exc)})")
        return guarded
    return decorate


#: values at or beyond this magnitude are drawn in units of a power of ten, so that the
#: ranges, margins and ticks matplotlib computes from them stay finite
HUGE = 1e100


def _axis_unit(*arrays: Any) -> tuple[float, str]:
    """(divisor, label suffix) for an axis showing ``arrays`` (finite values only)."""
    import numpy as np

    peak = max((float(np.max(np.abs(a))) for a in arrays if np.size(a)), default=0.0)
    if not peak < HUGE:
        exponent = int(math.floor(math.log10(peak)))
        return 10.0 ** exponent, f" (× 1e{exponent})"
    return 1.0, ""


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig


def _svg_img(fig: Figure, alt: str, cls: str = "plot") -> str:
    """The figure as an ``<img>`` holding an SVG ``data:`` URI (deterministic bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.05,
                metadata={"Date": None, "Creator": None}, dpi=150)
    svg = buf.getvalue()
    data = base64.b64encode(svg).decode("ascii")
    width, height = fig.get_size_inches() * 96  # before "tight" cropping; refined below
    head = re.search(rb'<svg[^>]*?width="([0-9.]+)pt"[^>]*?height="([0-9.]+)pt"', svg[:2000])
    if head:
        width, height = float(head.group(1)) * 96 / 72, float(head.group(2)) * 96 / 72
    return (f'<img class="{cls}" alt="{_e(alt)}" width="{width:.0f}" height="{height:.0f}" '
            f'src="data:image/svg+xml;base64,{data}">')


def _style_axes(ax: Any) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)


@_guarded("histogram of the target")
def _plot_histogram(edges: Sequence[float], counts: Sequence[float],
                    quantiles: dict[str, Any], target: str) -> str:
    import numpy as np

    edges_a = np.asarray([np.nan if e is None else e for e in edges], dtype=float)
    counts_a = np.asarray([0.0 if c is None else c for c in counts], dtype=float)
    if not (np.isfinite(edges_a).all() and np.isfinite(counts_a).all()):
        return _na("histogram not drawn: its bin edges or counts are not finite numbers")
    unit, suffix = _axis_unit(edges_a)
    edges_a = edges_a / unit
    fig = _figure(6.0, 2.8)
    ax = fig.add_subplot()
    ax.bar(edges_a[:-1], counts_a, width=np.diff(edges_a),
           align="edge", color="#9ecae1", edgecolor="#3182bd", linewidth=0.6)
    for key, style in (("q1", ":"), ("median", "--"), ("q3", ":")):
        if _isnum(quantiles.get(key)):
            ax.axvline(float(quantiles[key]) / unit, color="#333333", linestyle=style,
                       linewidth=1, label=key)
    _style_axes(ax)
    ax.set_xlabel(target + suffix, fontsize=9)
    ax.set_ylabel("rows", fontsize=9)
    if any(_isnum(quantiles.get(k)) for k in ("q1", "median", "q3")):
        ax.legend(fontsize=8, frameon=False)
    return _svg_img(fig, f"histogram of the target {target}")


def _outlier_floor(scores: Any, gib: bool) -> float | None:
    """A y-limit that keeps a few catastrophic trials from flattening the rest (or None)."""
    import numpy as np

    s = np.asarray(scores, dtype=float)
    if len(s) < 5:
        return None
    oriented = s if gib else -s
    best = oriented.max()
    p25 = np.percentile(oriented, 25)
    span = best - p25
    if span <= 0:
        return None
    floor = p25 - 1.5 * span
    if oriented.min() >= floor:
        return None
    return float(floor if gib else -floor)


@_guarded("optimisation history")
def _plot_history(ctx: _Context) -> str:
    import numpy as np

    lb = ctx.lb
    fig = _figure(10.0, 3.9)
    ax = fig.add_subplot()
    started = lb["started"].fillna(0.0).to_numpy(dtype=float)
    duration = lb["duration"].fillna(0.0).to_numpy(dtype=float)
    use_time = bool(np.nanmax(started + duration) > 0) if len(lb) else False
    x_all = started + duration if use_time else lb["trial"].to_numpy(dtype=float)
    scores = lb["score"].to_numpy(dtype=float)
    has_score = np.isfinite(scores)  # an infinite score is drawn like a missing one
    unit, suffix = _axis_unit(scores[has_score])
    scores = scores / unit
    complete = (lb["state"] == "COMPLETE").to_numpy() & has_score
    floor = _outlier_floor(scores[complete], ctx.gib) if complete.any() else None
    clipped_n = 0
    y_all = scores.copy()
    if floor is not None:
        low = (y_all < floor) if ctx.gib else (y_all > floor)
        clipped_n = int((low & has_score).sum())
        y_all = np.where(low, floor, y_all)
    groups = lb["origin"].map(_origin_group).to_numpy()
    for group, (label, color, marker) in ORIGIN_STYLE.items():
        m = (groups == group) & complete
        if m.any():
            ax.scatter(x_all[m], y_all[m], s=42, marker=marker, color=color, alpha=0.85,
                       edgecolors="white", linewidths=0.5, label=label, zorder=3)
        p = (groups == group) & has_score & (lb["state"] == "PRUNED").to_numpy()
        if p.any():
            ax.scatter(x_all[p], y_all[p], s=42, marker=marker, facecolors="none",
                       edgecolors=color, linewidths=1, zorder=3)
    if (has_score & (lb["state"] == "PRUNED").to_numpy()).any():
        ax.scatter([], [], s=42, marker="o", facecolors="none", edgecolors="#555555",
                   label="hollow: pruned (partial score)")
    failed = ~has_score | (lb["state"] == "FAIL").to_numpy()
    if failed.any():
        ax.scatter(x_all[failed], np.full(int(failed.sum()), 0.03), marker="x", s=28,
                   color="#d62728", transform=ax.get_xaxis_transform(), zorder=4,
                   label="failed (no score)", clip_on=False)
    if complete.any():
        order = np.argsort(x_all[complete], kind="stable")
        xs, ys = x_all[complete][order], scores[complete][order]
        best = np.maximum.accumulate(ys) if ctx.gib else np.minimum.accumulate(ys)
        if floor is not None:
            best = np.maximum(best, floor) if ctx.gib else np.minimum(best, floor)
        x_end = max(float(np.nanmax(x_all)), float(xs[-1]))
        ax.step(np.append(xs, x_end), np.append(best, best[-1]), where="post",
                color="#222222", linewidth=1.6, label="best so far", zorder=2)
    if floor is not None:
        ax.axhline(floor, color="#999999", linewidth=0.8, linestyle=":")
        where = "below" if ctx.gib else "above"
        ax.annotate(f"{clipped_n} trial(s) {where} this line, drawn on it", (0.01, floor),
                    xycoords=("axes fraction", "data"), fontsize=8, color="#666666",
                    va="bottom" if ctx.gib else "top")
    _style_axes(ax)
    ax.margins(x=0.03, y=0.08)
    ax.set_xlabel("seconds since the search began (trial end)" if use_time else "trial",
                  fontsize=9)
    ax.set_ylabel(f"CV {ctx.metric}{suffix}", fontsize=9)
    if not ctx.gib:
        ax.set_title("lower is better", fontsize=8, loc="right", color="#666666")
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _svg_img(fig, "optimisation history: CV score of each trial over time, with the "
                         "best score so far", cls="plot wide")


@_guarded("plot of predicted versus true values")
def _plot_scatter_pair(y_true: Sequence[float], y_pred: Sequence[float], target: str) -> str:
    import numpy as np

    yt = np.asarray([np.nan if v is None else v for v in y_true], dtype=float)
    yp = np.asarray([np.nan if v is None else v for v in y_pred], dtype=float)
    ok = np.isfinite(yt) & np.isfinite(yp)
    yt, yp = yt[ok], yp[ok]
    if not len(yt):
        return _na("plot not drawn: no pair of finite true and predicted values")
    unit, suffix = _axis_unit(yt, yp)
    yt, yp = yt / unit, yp / unit
    raster = len(yt) > 600
    fig = _figure(10.0, 3.9)
    ax1, ax2 = fig.subplots(1, 2)
    lo = float(min(yt.min(), yp.min()))
    hi = float(max(yt.max(), yp.max()))
    pad = 0.03 * (hi - lo or 1.0)
    ax1.scatter(yt, yp, s=9, alpha=0.5, color="#1f77b4", linewidths=0, rasterized=raster)
    ax1.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#d62728", linewidth=1,
             label="perfect prediction")
    ax1.set_xlim(lo - pad, hi + pad)
    ax1.set_ylim(lo - pad, hi + pad)
    ax1.set_xlabel(f"true {target}{suffix}", fontsize=9)
    ax1.set_ylabel(f"predicted (out of fold){suffix}", fontsize=9)
    ax1.legend(fontsize=8, frameon=False, loc="upper left")
    resid = yt - yp
    ax2.scatter(yp, resid, s=9, alpha=0.5, color="#1f77b4", linewidths=0, rasterized=raster)
    ax2.axhline(0.0, color="#d62728", linewidth=1)
    ax2.set_xlabel(f"predicted (out of fold){suffix}", fontsize=9)
    ax2.set_ylabel(f"residual (true − predicted){suffix}", fontsize=9)
    for ax in (ax1, ax2):
        _style_axes(ax)
    fig.subplots_adjust(wspace=0.3)
    return _svg_img(fig, "predicted versus true values and residuals, out of fold",
                    cls="plot wide")


@_guarded("importance plot")
def _plot_importance(items: list[dict[str, Any]], score_name: str) -> str:
    import numpy as np

    shown = items[:MAX_IMPORTANCE_BARS][::-1]
    names = [_ellipsis(str(d.get("column", "?")), 40) for d in shown]
    means = np.array([float(d["mean"]) if _isnum(d.get("mean")) else 0.0 for d in shown])
    stds = np.array([float(d["std"]) if _isnum(d.get("std")) else 0.0 for d in shown])
    fig = _figure(8.0, 0.8 + 0.27 * len(shown))
    ax = fig.add_subplot()
    colors = ["#3182bd" if m > 0 else "#bdbdbd" for m in means]
    ax.barh(np.arange(len(shown)), means, xerr=stds, color=colors, height=0.7,
            error_kw={"elinewidth": 0.8, "ecolor": "#555555", "capsize": 2})
    ax.set_yticks(np.arange(len(shown)), labels=names, fontsize=8)
    ax.axvline(0.0, color="#555555", linewidth=0.8)
    _style_axes(ax)
    ax.grid(False, axis="y")
    ax.set_xlabel(f"drop in {score_name} when the column is shuffled", fontsize=9)
    return _svg_img(fig, "permutation importance of the original columns")


def _ellipsis(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------- sections
def _sections(ctx: _Context) -> list[tuple[str, str, str]]:
    """(anchor, heading, HTML) of every section, in reading order."""
    return [
        ("summary", "Summary", _section_summary(ctx)),
        ("dataset", "Dataset", _section_dataset(ctx)),
        ("neighbours", "Nearest prior tasks", _section_neighbours(ctx)),
        ("history", "Optimisation history", _section_history(ctx)),
        ("leaderboard", "Leaderboard (top 10)", _section_leaderboard(ctx)),
        ("final-model", "Final model", _section_final(ctx)),
        ("holdout", "Final comparison on held-out rows", _section_holdout(ctx)),
        ("ensemble", "Ensemble selection", _section_ensemble(ctx)),
        ("diagnostics", "Out-of-fold diagnostics", _section_diagnostics(ctx)),
        ("importance", "Permutation importance", _section_importance(ctx)),
        ("run", "Run details", _section_run(ctx)),
    ]


def _section_summary(ctx: _Context) -> str:
    r = ctx.report
    best = r.get("best") or {}
    final = r.get("final_model") or {}
    trials = r.get("trials") or {}
    total = trials.get("total", len(ctx.lb))
    budget = r.get("time_budget")
    elapsed = r.get("elapsed_seconds")
    cards = [
        (f"best CV {ctx.metric}",
         f"{_num(best.get('cv_score'))}"
         + (f' <small>± {_num(best.get("cv_std"))}</small>' if _isnum(best.get("cv_std"))
            else "")),
        ("best model", _e(_family_label(best.get("family"))) if best else "—"),
        ("final model", _e(_family_label((final.get("config") or {}).get("family")))
         if final.get("config") else "—"),
        ("trials", _int(total)),
        ("time", _seconds(elapsed) + (f" <small>of {_seconds(budget)}</small>"
                                      if _isnum(budget) else "")),
        ("stopped by", _e(r.get("stop_reason") or "—")),
    ]
    parts = [_cards(cards)]
    if best:
        parts.append(f'<p>Best trial: <b>#{_int(best.get("trial"))}</b> '
                     f'({_e(_origin_label(best.get("origin", "tpe")))}), '
                     f'{_e(r.get("n_folds", "?"))}-fold cross-validation on '
                     f'{_int(r.get("search_rows"))} rows.</p>')
    warnings = [str(w) for w in r.get("warnings") or []]
    if warnings:
        parts.append('<div class="callout warn"><b>Warnings</b><ul>'
                     + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul></div>")
    return "\n".join(parts)


def _section_dataset(ctx: _Context) -> str:
    r, m = ctx.report, ctx.manifest
    rows, used = r.get("rows"), r.get("rows_used")
    dropped_rows = r.get("rows_dropped_missing_target")
    search_rows = r.get("search_rows")
    facts = [("rows read", _int(rows)), ("rows used", _int(used)),
             ("rows without target (dropped)", _int(dropped_rows)),
             ("rows in the search", _int(search_rows)
              + (" <small>(subsample)</small>" if _isnum(search_rows) and _isnum(used)
                 and search_rows < used else ""))]
    left: list[str] = []
    # columns by type, with their names from the manifest's feature schema
    columns = r.get("columns") or {}
    by_kind: dict[str, list[str]] = {}
    for col in (m.get("feature_schema") or {}).get("columns") or []:
        if isinstance(col, dict):
            by_kind.setdefault(str(col.get("kind", "?")), []).append(str(col.get("name", "?")))
    kinds = list(columns) + [k for k in by_kind if k not in columns]
    left.append("<h3>Columns by type</h3>")
    if kinds:
        rows_html = []
        for kind in kinds:
            names = by_kind.get(kind, [])
            shown = ", ".join(f"<code>{_e(n)}</code>" for n in names[:12])
            if len(names) > 12:
                shown += (f' <details class="inline"><summary>and {len(names) - 12} more'
                          f'</summary>{", ".join(f"<code>{_e(n)}</code>" for n in names[12:])}'
                          "</details>")
            rows_html.append((_e(kind), _int(columns.get(kind, len(names))), shown or "—"))
        left.append(_table(["type", "columns", "names"], rows_html, numeric=[1]))
    else:
        left.append(_na())
    dropped = r.get("dropped_columns")
    if dropped is None:
        dropped = (m.get("feature_schema") or {}).get("dropped")
    left.append("<h3>Dropped columns</h3>")
    items = []
    if dropped:
        items = list(dropped.items()) if isinstance(dropped, dict) else \
            [(d, "") for d in dropped]
        left.append(_table(["column", "why"], [(f"<code>{_e(c)}</code>", _e(why))
                                               for c, why in items]))
    elif dropped is None:
        left.append(_na())
    else:
        left.append("<p>None: every column is used.</p>")
    # notes that only restate a dropped column and its reason are in the table already
    notes = [str(n) for n in r.get("notes") or []
             if not any(str(c) in str(n) and str(why) in str(n) for c, why in items)]
    if notes:
        left.append('<div class="callout"><b>Notes on the data</b><ul>'
                    + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul></div>")
    right = (f"<h3>Target distribution: <code>{_e(r.get('target', '?'))}</code></h3>"
             + _target_distribution(ctx))
    return (_cards(facts) + '\n<div class="twocol">\n<div>' + "\n".join(left)
            + "</div>\n<div>" + right + "</div>\n</div>")


def _target_distribution(ctx: _Context) -> str:
    dist = ctx.report.get("target_distribution")
    if not isinstance(dist, dict):
        return _na("this run directory does not record it")
    if dist.get("kind") == "classes":
        counts = dist.get("counts") or {}
        total = sum(float(v) for v in counts.values() if _isnum(v))
        peak = max([float(v) for v in counts.values() if _isnum(v)] or [1.0]) or 1.0
        items = list(counts.items())
        rows = [(f"<code>{_e(label)}</code>", _int(n), _pct(float(n), total),
                 f'<div class="bar"><span style="width:{100.0 * float(n) / peak:.1f}%">'
                 "</span></div>")
                for label, n in items[:MAX_CLASS_ROWS] if _isnum(n)]
        out = _table(["class", "rows", "share", ""], rows, cls="classes", numeric=[1, 2])
        if len(items) > MAX_CLASS_ROWS:
            out += f"<p class=muted>{len(items) - MAX_CLASS_ROWS} more classes not shown.</p>"
        return out
    if dist.get("kind") == "numeric":
        q = dist.get("quantiles") or {}
        table = _table(["min", "Q1", "median", "Q3", "max"],
                       [[_num(q.get(k)) for k in ("min", "q1", "median", "q3", "max")]],
                       numeric=range(5))
        hist = dist.get("histogram") or {}
        edges, counts = hist.get("edges") or [], hist.get("counts") or []
        plot = ""
        if len(edges) == len(counts) + 1 and counts:
            plot = _plot_histogram(edges, counts, q, str(ctx.report.get("target", "target")))
        if _isnum(dist.get("non_finite")) and dist["non_finite"]:
            plot += (f'<p class="muted">{_int(dist["non_finite"])} row(s) with an infinite '
                     "target are not counted here.</p>")
        return table + plot
    return _na(f"unknown kind {dist.get('kind')!r}")


def _section_neighbours(ctx: _Context) -> str:
    ws = ctx.report.get("warm_start")
    if not isinstance(ws, dict):
        return _na("this run directory does not record the warm start")
    requested = ws.get("requested")
    neighbours = [n for n in ws.get("neighbors") or [] if isinstance(n, dict)]
    parts = []
    if not requested:
        parts.append("<p>Cold start: the search was not warm-started (plain TPE), so no "
                     "prior task was consulted.</p>")
    elif not neighbours:
        portfolio = int((ctx.lb["origin"].map(_origin_group) == "portfolio").sum()) \
            if len(ctx.lb) else 0
        parts.append("<p>The warm start found no prior task of this kind in the metabase"
                     + (f"; the portfolio alone seeded the search ({portfolio} trial(s))"
                        if portfolio else "") + ".</p>")
    tried: dict[str, list[Any]] = {}
    for row in ctx.lb.itertuples(index=False):
        origin = str(row.origin)
        if _origin_group(origin) in ("neighbour", "learned") and ":" in origin:
            tried.setdefault(origin.split(":", 1)[1], []).append(row)
        elif _origin_group(origin) == "history":
            tried.setdefault(origin, []).append(row)
    mine = [n for n in neighbours if str(n.get("task_id", "")).startswith("history:")]
    neighbours = [n for n in neighbours if n not in mine]
    if neighbours or mine:
        parts.append(f"<p>The {len(neighbours)} prior tasks of the metabase closest to this "
                     "dataset in meta-feature space (smaller distance = more similar), what "
                     "worked best on each, and how that configuration did here when it was "
                     f"tried ({_int(requested)} warm-start configuration(s) requested).</p>")
    for title, group in (("", neighbours), ("From your history", mine)):
        if not group:
            continue
        if title:
            parts.append(f"<h3>{title}</h3><p>Your own earlier fits among the nearest tasks "
                         "(the history: <code>automl-meta history list</code>).</p>")
        rows = []
        for i, n in enumerate(group, 1):
            here = []
            for t in tried.get(str(n.get("task_id")), []):
                rank = ctx.rank_of(t.trial)
                if t.state == "COMPLETE" and _isnum(t.score):
                    here.append(f"#{_int(t.trial)}: {_num(t.score)} (rank {rank})")
                else:
                    here.append(f"#{_int(t.trial)}: {_e(t.state.lower())}")
            oml = n.get("openml_id")
            rows.append((
                str(i), f"<b>{_e(n.get('name', n.get('task_id', '?')))}</b>"
                + (f' <small class="muted">OpenML {_int(oml)}</small>' if _isnum(oml) else ""),
                _e(n.get("task", "")), _int(n.get("n_rows")), _int(n.get("n_features")),
                _num(n.get("distance"), 3),
                f"{_e(_family_label(n.get('best_family')))}",
                f"{_num(n.get('best_score'))} <small>{_e(n.get('metric', ''))}</small>",
                "<br>".join(here) or '<span class="muted">not tried</span>'))
        parts.append(_table(["#", "prior task", "task", "rows", "features", "distance",
                             "best family there", "best score there", "tried here"], rows,
                            numeric=[0, 3, 4, 5, 7]))
    same = sorted({o for o in tried if o.startswith("history:")})
    if same:
        runs = ", ".join(o.split(":", 1)[1] for o in same)
        here = [f"#{_int(t.trial)}: " + (_num(t.score) if t.state == "COMPLETE" else
                                         _e(t.state.lower()))
                for o in same for t in tried[o]]
        parts.append(f"<p>Evaluated first: the best configurations of your earlier fit(s) on "
                     f"a table with the same schema ({_e(runs)}): {', '.join(here)}.</p>")
    log = [str(x) for x in ws.get("log") or []]
    if log:
        parts.append('<details><summary>Warm-start log</summary><ul>'
                     + "".join(f"<li>{_e(x)}</li>" for x in log) + "</ul></details>")
    if ws.get("metabase"):
        parts.append(f'<p class="muted">Metabase: <code>{_e(ws["metabase"])}</code></p>')
    return "\n".join(parts)


def _section_history(ctx: _Context) -> str:
    lb = ctx.lb
    if not len(lb):
        return _na("no trial recorded")
    states = lb["state"].value_counts()
    groups = lb["origin"].map(_origin_group).value_counts()
    by_origin = lb["origin"].value_counts()
    state_rows = [(_e(s), _int(int(states.get(s, 0))))
                  for s in ("COMPLETE", "PRUNED", "FAIL") if s in states]
    state_rows += [(_e(s), _int(int(n))) for s, n in states.items()
                   if s not in ("COMPLETE", "PRUNED", "FAIL")]
    origin_rows = [(_e(ORIGIN_STYLE[g][0]), _int(int(groups.get(g, 0))))
                   for g in ORIGIN_STYLE if g in groups]
    parts = [
        f"<p>Each point is one trial's mean {ctx.report.get('n_folds', 'K')}-fold CV "
        f"{_e(ctx.metric)}. Warm-start trials (configurations that worked on similar prior "
        "tasks, or from the portfolio) are evaluated first and drawn apart from the trials "
        "the TPE sampler proposed; the line is the best score so far. Pruned trials (hollow) "
        "were stopped after a few folds.</p>",
        _plot_history(ctx),
        '<div class="twocol">',
        "<div><h3>Trials by state</h3>" + _table(["state", "trials"], state_rows,
                                                  numeric=[1]) + "</div>",
        "<div><h3>Trials by origin</h3>" + _table(["origin", "trials"], origin_rows,
                                                   numeric=[1])
        + ('<details><summary>by exact origin</summary>'
           + _table(["origin", "trials"], [(f"<code>{_e(o)}</code>", _int(int(n)))
                                            for o, n in by_origin.items()], numeric=[1])
           + "</details>" if len(by_origin) > len(origin_rows) else "") + "</div>",
        "</div>",
    ]
    failed = lb[lb["state"] == "FAIL"]
    if len(failed):
        rows = [(f"#{_int(t.trial)}", _e(_family_label(t.family)),
                 _e(_origin_label(t.origin)), _e(_ellipsis(str(t.error), 300)) or "—")
                for t in failed.itertuples(index=False)]
        parts.append(f"<details><summary>{len(failed)} failed trial(s) and why</summary>"
                     + _table(["trial", "family", "origin", "error"], rows) + "</details>")
    return "\n".join(parts)


def _section_leaderboard(ctx: _Context) -> str:
    top = ctx.ranked.head(TOP_N) if len(ctx.ranked) else ctx.ranked
    if not len(top):
        return _na("no trial completed")
    rows = []
    best_trial = (ctx.report.get("final_model") or {}).get("trial")
    weights = _ensemble_weights(ctx)
    for rank, t in enumerate(top.itertuples(index=False), 1):
        if weights:  # the final model is an ensemble: mark its members with their weight
            mark = (f' <span class="tag">ensemble × {weights[t.trial]:.2f}</span>'
                    if t.trial in weights else "")
        else:
            mark = ' <span class="tag">final</span>' if best_trial is not None and \
                _isnum(best_trial) and t.trial == best_trial else ""
        rows.append((str(rank), f"#{_int(t.trial)}{mark}",
                     f"<b>{_num(t.score)}</b>"
                     + (f" <small>± {_num(t.score_std)}</small>" if _isnum(t.score_std)
                        else ""),
                     _e(_family_label(t.family)), _e(_origin_label(t.origin)),
                     _seconds(t.fit_seconds), _config_html(t.config)))
    total = int((ctx.lb["state"] == "COMPLETE").sum())
    note = (f"<p>The {len(top)} best of {total} completed trials by mean CV "
            f"{_e(ctx.metric)} (± standard deviation over folds). Fit time is per fold."
            + (" The final model's members are marked with their ensemble weight."
               if weights else "") + "</p>")
    return note + _table(["rank", "trial", f"CV {ctx.metric}", "model", "origin",
                          "fit time", "configuration"], rows, cls="leaderboard",
                         numeric=[0, 2, 5])


def _section_final(ctx: _Context) -> str:
    final = ctx.report.get("final_model")
    if not isinstance(final, dict) or not final.get("config"):
        cfg = ctx.manifest.get("final_config")
        if not cfg:
            return _na()
        final = {"config": cfg}
    reason = str(final.get("reason") or "")
    if final["config"].get("family") == "ensemble":
        return (_cards([("model", _e(reason or "ensemble")),
                        ("best trial", f"#{_int(final.get('trial'))}"
                         if _isnum(final.get("trial")) else "—"),
                        (f"best trial's CV {ctx.metric}", _num(final.get("cv_score"))),
                        ("refit on all rows", _seconds(final.get("fit_seconds")))])
                + ('<p>A weighted average of models chosen on held-out rows: see <a '
                   'href="#holdout">Final comparison on held-out rows</a>.</p>'
                   if _holdout_info(ctx) else
                   '<p>A weighted average of trials: see <a href="#ensemble">Ensemble '
                   "selection</a>.</p>"))
    facts = [("model", _e(_family_label(final["config"].get("family")))),
             ("chosen as", _e(reason or "—")),
             ("from trial", f"#{_int(final.get('trial'))}" if _isnum(final.get("trial"))
              else "—"),
             (f"CV {ctx.metric}", _num(final.get("cv_score"))),
             ("refit on all rows", _seconds(final.get("fit_seconds")))]
    parts = [_cards(facts), _config_html(final["config"], with_family=True)]
    if reason and reason != "best trial":
        parts.append('<div class="callout warn">The final model is not the best trial\'s '
                     f"configuration: {_e(reason)}.</div>")
    skipped = [str(s) for s in final.get("skipped") or []]
    if skipped:
        parts.append("<p>Configurations tried before it, which could not be refitted:</p><ul>"
                     + "".join(f"<li>{_e(s)}</li>" for s in skipped) + "</ul>")
    return "\n".join(parts)


def _final_model_part(ctx: _Context, key: str) -> dict[str, Any] | None:
    """``final_model[key]`` of report.json when it is a dict (None otherwise)."""
    part = (ctx.report.get("final_model") or {}).get(key)
    return part if isinstance(part, dict) else None


def _ensemble_info(ctx: _Context) -> dict[str, Any] | None:
    return _final_model_part(ctx, "ensemble")


def _holdout_info(ctx: _Context) -> dict[str, Any] | None:
    return _final_model_part(ctx, "holdout")


def _section_holdout(ctx: _Context) -> str:
    hold = _holdout_info(ctx)
    if hold is None:
        return _na("no comparison on held-out rows in this run (the search saw every row, "
                   "or too few were left outside it)")
    parts = [f"<p>The search ranked configurations on a subsample. The best trial of each "
             f"family and default configurations were fitted on {_int(hold.get('fit_rows'))} "
             "rows (a trial on fewer, down to the search's, when the time left did not "
             f"allow all) and compared on {_int(hold.get('rows'))} rows the search did not "
             "see; the final model is the best of them (or their ensemble selected on those "
             "rows), refitted on all rows where there was time.</p>"]
    rows = [(_e(c.get("label")), _e(_family_label(c.get("family"))), _num(c.get("cv_score")),
             f"<b>{_num(c.get('holdout_score'))}</b>" if _isnum(c.get("holdout_score"))
             else "—", _int(c.get("fit_rows")), _seconds(c.get("fit_seconds")),
             _e(c.get("skipped") or ""))
            for c in hold.get("candidates") or [] if isinstance(c, dict)]
    parts.append(_table(["candidate", "model", f"CV {ctx.metric}",
                         f"held-out {ctx.metric}", "rows fitted", "fit", "not fitted"], rows,
                        numeric=[2, 3, 4, 5]))
    members = [m for m in hold.get("members") or [] if isinstance(m, dict)]
    if members:
        rows = [(_e(m.get("label")), _num(m.get("weight"), 3),
                 "yes" if m.get("all_rows") else _e(f"no: {m.get('why_not_all_rows')}"),
                 _seconds(m.get("fit_seconds"))) for m in members]
        parts.append(_table(["chosen", "weight", "refitted on all rows", "fit"], rows,
                            numeric=[1, 3]))
    if hold.get("reason") and not members:
        parts.append(f'<div class="callout warn">{_e(hold.get("reason"))}.</div>')
    return "\n".join(parts)


def _ensemble_weights(ctx: _Context) -> dict[Any, float]:
    """Trial number → weight of the final ensemble's members (empty: no ensemble)."""
    hold = _holdout_info(ctx)
    if hold and len(hold.get("members") or []) > 1:
        return {m.get("trial"): float(m.get("weight") or 0.0) for m in hold["members"]
                if isinstance(m, dict) and m.get("trial") is not None}
    ens = _ensemble_info(ctx)
    if not ens or not ens.get("used"):
        return {}
    return {m.get("trial"): float(m.get("weight") or 0.0) for m in ens.get("members") or []
            if isinstance(m, dict)}


def _section_ensemble(ctx: _Context) -> str:
    ens = _ensemble_info(ctx)
    if ens is None and _holdout_info(ctx):
        return ('<p>The selection ran on the held-out predictions of the final candidates: '
                'see <a href="#holdout">Final comparison on held-out rows</a>.</p>')
    if ens is None:
        return _na("no ensemble selection in this run (ensemble size 1, or an older version)")
    single = ens.get("best_single") or {}
    parts = []
    if ens.get("used"):
        parts.append(_cards([
            (f"ensemble {ctx.metric} (out of fold)", _num(ens.get("oof_score"))),
            (f"best trial {ctx.metric} (out of fold)", _num(single.get("oof_score"))),
            ("members", _int(len(ens.get("members") or []))),
            ("refit on all rows", _seconds(ens.get("refit_seconds")))]))
        rows = [(f"#{_int(m.get('trial'))}", _e(_family_label(m.get("family"))),
                 _num(m.get("weight"), 3), _seconds(m.get("refit_seconds")))
                for m in ens.get("members") or [] if isinstance(m, dict)]
        parts.append(_table(["trial", "model", "weight", "refit"], rows, numeric=[2, 3]))
    else:
        parts.append('<div class="callout warn">The final model is the single best trial: '
                     f"{_e(ens.get('reason') or 'no ensemble')}.</div>")
        if _isnum(single.get("oof_score")) and _isnum(ens.get("selected_oof_score")):
            parts.append(f"<p>The selection scored {_num(ens.get('selected_oof_score'))} out "
                         f"of fold, the best trial alone {_num(single.get('oof_score'))}.</p>")
    dropped = [d for d in ens.get("dropped") or [] if isinstance(d, dict)]
    if dropped:
        parts.append("<p>Selected members left out of the final model (the weights of the "
                     "others were re-normalised):</p><ul>"
                     + "".join(f"<li>#{_int(d.get('trial'))} "
                               f"({_e(_family_label(d.get('family')))}): {_e(d.get('why'))}"
                               "</li>" for d in dropped) + "</ul>")
    parts.append(f"<p>Greedy forward selection with replacement (Caruana et al., 2004) "
                 f"over the out-of-fold predictions of {_int(ens.get('candidates'))} complete "
                 f"trial(s) (at most {_int(ens.get('oof_bound'))} are kept in memory), "
                 f"{_int(ens.get('size'))} rounds starting from the best trial; the weights "
                 "count how often each trial was picked.</p>")
    if ens.get("not_in_memory"):
        parts.append(f"<p>{_e(ens['not_in_memory'])}.</p>")
    return "\n".join(parts)


def _diagnostics(ctx: _Context) -> dict[str, Any] | None:
    diag = ctx.report.get("diagnostics")
    return diag if isinstance(diag, dict) else None


def _section_diagnostics(ctx: _Context) -> str:
    diag = _diagnostics(ctx)
    if diag is None:
        return _na("this run directory has no diagnostics (fitted without them, or by an "
                   "older version)")
    oof = diag.get("oof")
    if not isinstance(oof, dict):
        return _na("the best trial left no out-of-fold predictions")
    best = ctx.report.get("best") or {}
    final = ctx.report.get("final_model") or {}
    intro = ("<p>From the out-of-fold predictions of the best trial"
             + (f" (#{_int(best.get('trial'))})" if _isnum(best.get("trial")) else "")
             + ": every row in the search was predicted by a model that did not see it "
             "during its cross-validation.")
    if _isnum(final.get("trial")) and _isnum(best.get("trial")) and \
            final.get("trial") != best.get("trial"):
        intro += (f" Note: the final model comes from trial #{_int(final.get('trial'))}, "
                  "not from the best trial.")
    intro += "</p>"
    if oof.get("kind") == "classification":
        return intro + _classification_diagnostics(oof)
    if oof.get("kind") == "regression":
        return intro + _regression_diagnostics(oof, str(ctx.report.get("target", "target")))
    return _na(f"unknown kind {oof.get('kind')!r}")


def _classification_diagnostics(oof: dict[str, Any]) -> str:
    labels = [str(x) for x in oof.get("labels") or []]
    matrix = oof.get("confusion") or []
    parts = [_cards([("accuracy (out of fold)", _num(oof.get("score")))])]
    if labels and len(matrix) == len(labels) and len(labels) <= MAX_CONFUSION_CLASSES:
        head = "".join(f'<th class="pred">{_e(_ellipsis(lab, 16))}</th>' for lab in labels)
        body = []
        for label, row in zip(labels, matrix, strict=False):
            total = sum(float(v) for v in row) or 1.0
            cells = []
            for j, v in enumerate(row):
                share = float(v) / total
                diag = j == labels.index(label)
                color = "49,130,189" if diag else "214,39,40"
                fg = "#fff" if share > 0.55 else "#222"
                cells.append(f'<td class="num" style="background:rgba({color},'
                             f'{0.08 + 0.85 * share:.2f});color:{fg}" '
                             f'title="{share * 100:.1f} % of true {_e(label)}">'
                             f"{_int(v)}</td>")
            body.append(f"<tr><th>{_e(_ellipsis(label, 24))}</th>{''.join(cells)}</tr>")
        parts.append('<h3>Confusion matrix</h3><p class="muted">Rows: true class; columns: '
                     "predicted class. Shading: share of the row.</p>"
                     f'<div class="tablewrap"><table class="confusion"><thead><tr>'
                     f'<th class="corner">true ↓ / predicted →</th>{head}</tr></thead>'
                     f"<tbody>{''.join(body)}</tbody></table></div>")
    elif labels:
        parts.append(f"<p>Confusion matrix not shown: {len(labels)} classes "
                     f"(more than {MAX_CONFUSION_CLASSES}).</p>")
    per_class = [p for p in oof.get("per_class") or [] if isinstance(p, dict)]
    if per_class:
        rows = [(f"<code>{_e(p.get('label'))}</code>", _num(p.get("precision"), 3),
                 _num(p.get("recall"), 3), _num(p.get("f1"), 3), _int(p.get("support")))
                for p in per_class]
        keys = ("precision", "recall", "f1")
        macro = [sum(float(p.get(k) or 0.0) for p in per_class) / len(per_class)
                 for k in keys]
        rows.append(("<i>macro average</i>", *(f"<i>{_num(v, 3)}</i>" for v in macro),
                     _int(sum(int(p.get("support") or 0) for p in per_class))))
        table = _table(["class", "precision", "recall", "F1", "support"], rows,
                       numeric=[1, 2, 3, 4])
        if len(per_class) > MAX_CLASS_ROWS:
            table = f"<details><summary>{len(per_class)} classes</summary>{table}</details>"
        parts.append("<h3>Per-class scores</h3>" + table)
    return "\n".join(parts)


def _regression_diagnostics(oof: dict[str, Any], target: str) -> str:
    cards = _cards([("R² (out of fold)", _num(oof.get("r2"))), ("RMSE", _num(oof.get("rmse"))),
                    ("MAE", _num(oof.get("mae")))])
    yt, yp = oof.get("y_true") or [], oof.get("y_pred") or []
    if not yt or len(yt) != len(yp):
        return cards + _na("no predictions recorded")
    note = f'<p class="muted">{len(yt):,} rows shown.</p>'
    return cards + _plot_scatter_pair(yt, yp, target) + note


def _section_importance(ctx: _Context) -> str:
    diag = _diagnostics(ctx)
    if diag is None:
        return _na("this run directory has no diagnostics")
    items = [d for d in diag.get("permutation_importance") or [] if isinstance(d, dict)]
    if not items:
        why = diag.get("permutation_importance_error") or \
            "it did not fit in the time allowed for diagnostics"
        return _na(str(why))
    items = sorted(items, key=lambda d: -float(d.get("mean") or 0.0))
    score_name = str(diag.get("permutation_scorer")
                     or ("accuracy" if ctx.is_classification else "R²"))
    parts = [f"<p>How much the final model's {_e(score_name)} drops when one original column's "
             "values are shuffled (mean ± standard deviation over repeats). Columns near zero "
             "or below carry little the model relies on.</p>",
             _plot_importance(items, score_name)]
    if len(items) > MAX_IMPORTANCE_BARS:
        parts.append(f"<p class=muted>The {MAX_IMPORTANCE_BARS} most important of "
                     f"{len(items)} columns are drawn.</p>")
    rows = [(str(i), f"<code>{_e(d.get('column'))}</code>", _num(d.get("mean")),
             _num(d.get("std"))) for i, d in enumerate(items, 1)]
    parts.append("<details><summary>All columns</summary>"
                 + _table(["rank", "column", "mean drop", "std"], rows, numeric=[0, 2, 3])
                 + "</details>")
    if _isnum(diag.get("seconds")):
        parts.append(f'<p class="muted">Diagnostics took {_seconds(diag["seconds"])} '
                     "at fit time.</p>")
    return "\n".join(parts)


def _section_run(ctx: _Context) -> str:
    m, r = ctx.manifest, ctx.report
    if not m:
        return _na("no manifest.json")
    data = m.get("data") or {}
    rows = [
        ("status", _e(m.get("status", "—"))),
        ("created", _e(m.get("created", "—"))),
        ("seed", _e(m.get("seed", "—"))),
        ("time budget", _seconds(m.get("time_budget")) if _isnum(m.get("time_budget"))
         else "none"),
        ("trial limit", _e(m.get("n_trials")) if m.get("n_trials") is not None else "none"),
        ("elapsed", _seconds(r.get("elapsed_seconds"))),
        ("search-space version", f"<code>{_e(m.get('search_space_version', '—'))}</code>"),
        ("data", f"<code>{_e(data.get('file') or '—')}</code>, {_int(data.get('rows'))} rows"),
        ("data SHA-256", f"<code>{_e(data.get('sha256') or '—')}</code>"),
        ("model file", f"<code>{_e(m.get('model_file', '—'))}</code> "
                       f"({_e(m.get('model_format', '—'))})"),
        ("model SHA-256", f"<code>{_e(m.get('model_sha256', '—'))}</code>"),
    ]
    versions = m.get("versions") or {}
    if versions:
        rows.append(("versions", ", ".join(f"{_e(k)} {_e(v)}" for k, v in versions.items())))
    return _table(["", ""], rows, cls="kvtable")


# ---------------------------------------------------------------------------- page
_CSS = """
:root { --fg:#1f2328; --muted:#656d76; --line:#d0d7de; --bg:#fff; --soft:#f6f8fa;
        --accent:#0969da; --warn:#9a6700; --warnbg:#fff8c5; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto,
       "Helvetica Neue", Arial, "Noto Sans", "DejaVu Sans", sans-serif; color:var(--fg);
       background:var(--bg); }
header { background:var(--soft); border-bottom:1px solid var(--line); padding:14px 0 8px; }
header .wrap { max-width:1240px; margin:0 auto; padding:0 24px; }
header h1 { margin:0; font-size:21px; }
header .sub { color:var(--muted); margin-top:2px; }
nav { margin-top:8px; display:flex; flex-wrap:wrap; gap:4px 14px; font-size:13px; }
nav a { color:var(--accent); text-decoration:none; }
nav a:hover { text-decoration:underline; }
main { max-width:1240px; margin:0 auto; padding:6px 24px 40px; }
section { border-bottom:1px solid var(--line); padding:6px 0 16px; }
h2 { font-size:18px; margin:14px 0 8px; }
h3 { font-size:14px; margin:14px 0 6px; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono",
       monospace; background:var(--soft); padding:0 3px; border-radius:3px; }
small, .muted { color:var(--muted); }
.na { color:var(--muted); font-style:italic; }
.cards { display:flex; flex-wrap:wrap; gap:10px; margin:6px 0 10px; }
.card { border:1px solid var(--line); border-radius:6px; padding:6px 12px; min-width:130px;
        background:#fff; }
.card .label { color:var(--muted); font-size:12px; }
.card .value { font-size:18px; font-weight:600; }
.card .value small { font-size:12px; font-weight:400; }
.tablewrap { overflow-x:auto; }
table { border-collapse:collapse; margin:4px 0 8px; font-size:13px; }
th, td { border-bottom:1px solid var(--line); padding:4px 10px 4px 6px; text-align:left;
         vertical-align:top; }
th { background:var(--soft); font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; white-space:nowrap; }
table.kvtable thead { display:none; }
table.kvtable td:first-child { color:var(--muted); white-space:nowrap; }
table.confusion td { min-width:56px; text-align:center; border:1px solid #fff; }
table.confusion th.pred { text-align:center; }
table.confusion th.corner { font-weight:400; color:var(--muted); font-size:12px; }
table.leaderboard td:last-child { min-width:320px; }
.cfg { display:flex; flex-wrap:wrap; gap:3px 4px; }
.kv { background:var(--soft); border:1px solid var(--line); border-radius:10px;
      padding:0 7px; font-size:12px; white-space:nowrap; }
.kv b { font-weight:600; color:#57606a; }
.kv.fam { background:#ddf4ff; border-color:#b6e3ff; font-weight:600; }
.tag { background:#dafbe1; border:1px solid #aceebb; border-radius:8px; font-size:11px;
       padding:0 5px; }
.bar { width:180px; background:var(--soft); height:10px; border-radius:2px; margin-top:5px; }
.bar span { display:block; height:10px; background:#6baed6; border-radius:2px; }
.callout { border:1px solid var(--line); border-left:4px solid var(--accent);
           background:var(--soft); padding:6px 12px; margin:8px 0; border-radius:4px; }
.callout.warn { border-left-color:var(--warn); background:var(--warnbg); }
.callout ul { margin:4px 0; padding-left:20px; }
img.plot { display:block; max-width:100%; height:auto; margin:6px 0; }
img.broken { outline:2px dashed #d62728; }
.twocol { display:grid; grid-template-columns:repeat(auto-fit, minmax(300px, 1fr)); gap:0 24px; }
details { margin:6px 0; }
details summary { cursor:pointer; color:var(--accent); }
details.inline { display:inline; }
details.inline summary { display:inline; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:12px; }
@media print { nav { display:none; } section { break-inside:avoid-page; } }
"""

# Marks images the browser could not decode (a visible outline, and a count on <body> that the
# browser test reads); the page is complete without it.
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, broken = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (!(imgs[i].complete && imgs[i].naturalWidth > 0)) {
      broken++; imgs[i].className += " broken";
    }
  }
  document.body.setAttribute("data-images", imgs.length + " " + broken);
});
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="automl-meta">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header><div class="wrap">
<h1>{heading}</h1>
<div class="sub">{subtitle}</div>
<nav>{nav}</nav>
</div></header>
<main>
{banner}
{body}
</main>
<footer>Generated by automl-meta from report.json, leaderboard.csv and manifest.json;
regenerate with <code>automl-meta report RUN_DIR</code>.</footer>
<script>{script}</script>
</body>
</html>
"""
