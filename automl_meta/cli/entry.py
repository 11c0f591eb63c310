"""The ``automl-meta`` typer application, its entry point and the exit-code mapping.

Exit codes: 0 ok · 1 quality gate failed (``evaluate --fail-under``) · 2 bad input or usage
(one line on stderr) · 3 internal error · 130 interrupted · 141 stdout was closed by its
reader (e.g. ``automl-meta predict run/ new.csv | head -1``): the command stops writing,
prints nothing on stderr, and exits like a Unix tool killed by SIGPIPE (128 + 13).

Every JSON document printed on stdout is valid JSON: NaN and infinities are written as
``null``. The commands themselves live in the sibling modules (one per command group) and
register on :data:`app` when :mod:`automl_meta.cli` is imported.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from automl_meta.budget import process_age
from automl_meta.errors import AutoMLError

#: where --storage is read from when it is not given (keeps a password out of `ps`)
STORAGE_ENV = "AUTOML_META_STORAGE"

app = typer.Typer(
    name="automl-meta",
    help="AutoML for tabular data, warm-started from searches on similar datasets.\n\n"
         "Typical use: `automl-meta fit data.csv --target y --output run/`, then "
         "`automl-meta predict run/ new.csv` and `automl-meta evaluate run/ test.csv`.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode=None)


class GateFailed(Exception):
    """``evaluate --fail-under`` threshold not met (exit 1)."""


class StdoutClosed(Exception):
    """The reader of stdout went away (a broken pipe): exit 141, quietly."""


EXIT_STDOUT_CLOSED = 141


@contextlib.contextmanager
def writing_stdout() -> Iterator[None]:
    """Write (and flush) stdout inside: a broken pipe becomes :class:`StdoutClosed`."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


def check_budget_options(time_budget: float | None, n_trials: int | None,
                         memory_limit: float | None) -> None:
    """Usage errors of the ``--time-budget``, ``--n-trials`` and ``--memory-limit`` options,
    named by their flags, before any work is done (the library names its parameters).

    Raises
    ------
    UsageError
        When a value is out of range.
    """
    from automl_meta.errors import UsageError

    if time_budget is not None and not (math.isfinite(time_budget) and time_budget > 0):
        raise UsageError("--time-budget must be a finite positive number")
    if memory_limit is not None and not (math.isfinite(memory_limit) and memory_limit > 0):
        raise UsageError("--memory-limit must be a finite positive number (GiB)")
    if n_trials is not None and n_trials < 1:
        raise UsageError("--n-trials must be at least 1")


def emit_json(doc: Any) -> None:
    """Print ``doc`` as one JSON document on stdout (NaN and infinities as ``null``)."""
    from automl_meta.artifacts.report import dumps_json

    text = dumps_json(doc, indent=2) + "\n"
    with writing_stdout():
        sys.stdout.write(text)


def _version_callback(value: bool) -> None:
    if value:
        from automl_meta._version import __version__

        typer.echo(f"automl-meta {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_version_callback, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """AutoML for tabular data, warm-started from searches on similar datasets."""



def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM is handled like Ctrl-C: stop, keep the best so far


@contextlib.contextmanager
def _command_logging() -> Iterator[None]:
    """The logging of the command's process: its output is its own, so log records below
    WARNING (Optuna announces studies and trials at INFO) are dropped while it runs. Done with
    :func:`logging.disable`, which needs no import of Optuna (only the commands that search
    load it) and holds whatever level Optuna gives its logger when it is imported; the
    previous setting is restored afterwards (``main`` also runs inside test processes)."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


_command_started: float | None = None


def command_started() -> float:
    """The ``time.monotonic()`` value the running command's time budget counts from.

    For the console script (``main()`` without arguments) that is the start of the process,
    interpreter start-up included; for ``main(argv)`` called from Python, the call.
    """
    return time.monotonic() if _command_started is None else _command_started


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; maps errors to exit codes (see module docstring).

    Called without ``argv`` (the ``automl-meta`` script, ``python -m automl_meta``) it ends
    the process itself once the command is done (:func:`_end_process`); with ``argv`` (from
    Python, tests) it returns the exit code.
    """
    code = _run(argv)
    if argv is None:
        _end_process(code)
    return code


def _end_process(code: int) -> None:
    """End the process as the interpreter would, minus its teardown of every loaded module.

    Other threads that are not daemons are waited for, the exit handlers run (those of
    ``multiprocessing`` and of temporary files among them), the standard streams are
    flushed; then ``os._exit``. Freeing scikit-learn, pandas and the fitted models object
    by object would otherwise run after the command is over, inside a fit's time budget.
    """
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _run(argv: list[str] | None) -> int:
    """Run one command; its exit code (see the module docstring)."""
    import signal
    import threading

    global _command_started
    _command_started = time.monotonic() - (process_age() if argv is None else 0.0)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    stdout = sys.stdout
    try:
        with _command_logging():
            result = app(args=argv, standalone_mode=False)
        return _exit(result if isinstance(result, int) else 0)
    except (StdoutClosed, BrokenPipeError):
        return _stdout_closed()
    except SystemExit:
        if _click_saw_broken_pipe(stdout):
            return _stdout_closed()
        raise
    except GateFailed as exc:
        print(f"quality gate failed: {exc}", file=sys.stderr)
        return _exit(1)
    except AutoMLError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)  # always one line
        return _exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return _exit(130)
    except typer.Exit as exc:
        return _exit(exc.exit_code)
    except Exception as exc:  # usage errors of the argument parser, and the unexpected
        abort, click_exception, no_args_help = _parser_exceptions()
        if isinstance(exc, abort):
            print("interrupted", file=sys.stderr)
            return _exit(130)
        if isinstance(exc, no_args_help):
            exc.show()
            return _exit(2)
        if isinstance(exc, click_exception):
            first = (argv if argv is not None else sys.argv[1:])[:1]
            known = {c.name or c.callback.__name__ for c in app.registered_commands}
            known |= {g.name for g in app.registered_groups}
            command = first[0] if first and first[0] in known else ""
            hint = f"automl-meta {command} --help" if command else "automl-meta --help"
            message = " ".join(exc.format_message().split())
            print(f"error: {message} (see {hint})", file=sys.stderr)
            return _exit(2)
        if os.environ.get("AUTOML_META_DEBUG"):
            raise
        from automl_meta.search.study import redact

        message = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))
        print(f"internal error: {message} (set AUTOML_META_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return _exit(3)


def _parser_exceptions() -> tuple[type, type, type]:
    """Abort / ClickException / NoArgsIsHelpError of whichever click typer uses (typer ≥ 0.20
    bundles its own copy as typer._click; older versions use the click package)."""
    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
        from typer.exceptions import Abort
    except ImportError:  # pragma: no cover - depends on the typer version
        from click.exceptions import Abort, ClickException, NoArgsIsHelpError
    return Abort, ClickException, NoArgsIsHelpError


def _exit(code: int) -> int:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    return code


def _click_saw_broken_pipe(stdout: Any) -> bool:
    """Whether click ended the command because stdout was closed (it wraps the streams in
    its ``PacifyFlushWrapper`` and raises ``SystemExit(1)``); the streams are unwrapped."""
    if sys.stdout is stdout or type(sys.stdout).__name__ != "PacifyFlushWrapper":
        return False
    sys.stdout = getattr(sys.stdout, "wrapped", stdout)
    if type(sys.stderr).__name__ == "PacifyFlushWrapper":
        sys.stderr = getattr(sys.stderr, "wrapped", sys.__stderr__)
    return True


def _stdout_closed() -> int:
    """Exit code 141 for a closed stdout; file descriptor 1 is pointed at the null device so
    that the interpreter's final flush of what is still buffered does not fail again."""
    with contextlib.suppress(OSError, ValueError):  # ValueError: stdout has no descriptor
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    return EXIT_STDOUT_CLOSED

