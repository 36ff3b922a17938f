"""Rich progress bars that fall silent under ``--quiet`` or when output is not a terminal-friendly stream."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from affectkit.config import data_config_file

T = TypeVar("T")
# Logs (stderr not a terminal) get long lines rather than epoch summaries wrapped at Rich's default 80 columns.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def make_progress(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


def track(items: Iterable[T], total: int | None = None, description: str = "", enabled: bool = True) -> Iterator[T]:
    if not enabled:
        yield from items
        return
    with make_progress(transient=True) as progress:
        task = progress.add_task(description, total=total, info="")
        for item in items:
            yield item
            progress.advance(task)


def announce_data_config(data) -> None:
    """One line when a command takes its starting settings from the data folder's ``affectkit.yaml``."""
    card = data_config_file(data)
    if card is not None:
        console.print(f"[cyan]Settings from {card} (this data set's recommended profile); --config and options "
                      f"override them, deleting the file restores the defaults.[/cyan]")
