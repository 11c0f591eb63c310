"""Progress shown on stderr while searching (rich), or nothing at all.

Texts that come from the data (column and target names in notes and warnings) are printed
literally: rich markup in them (``[red]x[/red]``) is escaped, never interpreted.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn


class Reporter:
    """Receives progress events. The base class ignores them (quiet mode)."""

    def start(self, n_trials: int | None, time_budget: float | None, metric: str) -> None:
        """The search begins."""

    def trial(self, record: Any, result: Any) -> None:
        """A trial ended."""

    def phase(self, text: str) -> None:
        """A new phase (reading, refitting, writing)."""

    def warn(self, text: str) -> None:
        """Something the user should know (e.g. a cold start because of a bad metabase)."""

    def note(self, text: str) -> None:
        """A fact about the data (e.g. a dropped column), before the search."""

    def stop(self) -> None:
        """The search is over (called once, also on errors)."""


class RichReporter(Reporter):
    """A progress bar on stderr: trials done, best score so far, time left."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.task_id: Any = None
        self.deadline: float | None = None
        self.metric = ""

    def start(self, n_trials: int | None, time_budget: float | None, metric: str) -> None:
        self.metric = metric
        self.deadline = time.monotonic() + time_budget if time_budget else None
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                                 BarColumn(), TextColumn("{task.fields[status]}"),
                                 console=self.console, transient=True)
        self.progress.start()
        self.task_id = self.progress.add_task("search", total=n_trials,
                                              status=self._status(None, 0))

    def _status(self, best: float | None, done: int) -> str:
        parts = [f"{done} trials"]
        parts.append(f"best {self.metric} {best:.4f}" if best is not None else "no score yet")
        if self.deadline is not None:
            parts.append(f"{max(0.0, self.deadline - time.monotonic()):.0f} s left")
        return escape(" · ".join(parts))

    def trial(self, record: Any, result: Any) -> None:
        if self.progress is None:
            return
        best = result.best
        self.progress.update(self.task_id, advance=1, status=self._status(
            best.score if best else None, len(result.records)))

    def phase(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task_id, description=escape(text))
        else:
            self.console.print(f"[dim]{escape(text)}…[/dim]")

    def warn(self, text: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {escape(text)}")

    def note(self, text: str) -> None:
        self.console.print(f"[yellow]note:[/yellow] {escape(text)}")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
