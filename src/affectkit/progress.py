"""Progress and notes of long library calls, behind one reporter set for a run.

Library code never prints: it reports to the current :class:`Reporter`, which is silent unless the caller sets
another for the duration of a call with :func:`reporting` (the command line sets a console reporter; ``--quiet``
keeps its notes and drops the progress). Reporting travels with the call, not through every function's
parameters.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, ContextManager, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
# Logs (stderr not a terminal) get long lines rather than epoch summaries wrapped at Rich's default 80 columns.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _make_progress(out: Console) -> Progress:
    """Bars that vanish when done: a log keeps the notes and per-epoch lines, not a trail of finished bars."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=out,
        transient=True,
    )


class Reporter:
    """Where a run's output goes: ``notes`` (a line worth keeping in a log: the data's layout, a model's starting
    weights) to ``out`` when there is one, and progress (bars, per-epoch lines, tables as a run goes) too when
    ``progress`` is on."""

    def __init__(self, out: Console | None = None, progress: bool = True):
        self.out = out
        self.progress = out is not None and progress
        # Bars redraw in place: where the output is not a terminal (a log, CI) they would leave blank lines and
        # final frames among the notes and per-epoch lines, which say the same.
        self.bars = self.progress and out.is_terminal

    def note(self, message: str, style: str | None = None) -> None:
        """``message`` as written: data in it (a file name with brackets, a regex) is never read as Rich markup."""
        if self.out is not None:
            self.out.print(escape(message), style=style)

    def show(self, renderable: Any) -> None:
        """Progress: a table, or a line printed as written (as ``note`` prints it)."""
        if self.progress:
            self.out.print(escape(renderable) if isinstance(renderable, str) else renderable)

    def rule(self, title: str) -> None:
        if self.progress:
            self.out.rule(title)

    def track(self, items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
        if not self.bars:
            yield from items
            return
        with _make_progress(self.out) as bar:
            task = bar.add_task(description, total=total, info="")
            for item in items:
                yield item
                bar.advance(task)

    def bar(self) -> ContextManager[Progress]:
        """A progress display to add tasks to and advance; nothing is drawn without bars."""
        if self.bars:
            return _make_progress(self.out)
        return nullcontext(_make_progress(Console(quiet=True)))


SILENT = Reporter()
_current: ContextVar[Reporter] = ContextVar("affectkit_reporter", default=SILENT)


def reporter() -> Reporter:
    """The reporter of the call in progress (silent unless one was set with :func:`reporting`)."""
    return _current.get()


@contextmanager
def reporting(to: Reporter) -> Iterator[Reporter]:
    """Report to ``to`` until the block ends."""
    token = _current.set(to)
    try:
        yield to
    finally:
        _current.reset(token)


def to_console(progress: bool = True) -> Reporter:
    return Reporter(console, progress=progress)


def silenced(silent: bool) -> ContextManager[Any]:
    """For the library's entry points, which keep a ``quiet`` (or ``progress=False``) keyword for callers outside
    the command line: it silences the call, notes included; otherwise the caller's reporter stays."""
    return reporting(SILENT) if silent else nullcontext()


LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
# Lightning's and PyTorch's remarks on a training that is as meant: phase 1's frozen backbone in eval mode (its
# BatchNorm statistics frozen on purpose), few loader workers on a small machine, a cloud-logging tip, a deprecation
# inside Lightning itself.
LIGHTNING_NOISE = (".*module\\(s\\) in eval mode.*", ".*LeafSpec.*", ".*does not have many workers.*",
                   ".*litlogger.*")


@contextmanager
def lightning_quieted() -> Iterator[None]:
    """Lightning's banners and tips (its INFO lines: devices found, a cloud-logging tip, why fit stopped) and its
    remarks in :data:`LIGHTNING_NOISE` left out until the block ends; its other warnings stay. Around every
    training, from the command line or the Python API; the caller's logging is as it was afterwards."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for pattern in LIGHTNING_NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
