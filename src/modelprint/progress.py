"""One place for progress bars and terminal output (rich, on stderr)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def _quiet() -> bool:
    return os.environ.get("MODELPRINT_QUIET", "") not in ("", "0")


class _NullBar:
    def update(self, advance: float = 1, description: str | None = None) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task: int) -> None:
        self._progress, self._task = progress, task

    def update(self, advance: float = 1, description: str | None = None) -> None:
        kw = {"description": description} if description is not None else {}
        self._progress.update(self._task, advance=advance, **kw)


@contextmanager
def progress_bar(total: float, description: str, enabled: bool = True) -> Iterator[_Bar | _NullBar]:
    """A progress bar on stderr; silent with ``enabled=False`` or MODELPRINT_QUIET=1."""
    if not enabled or _quiet():
        yield _NullBar()
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield _Bar(progress, progress.add_task(description, total=total))
