"""One place for progress and terminal output, on stderr.

On a terminal, rich draws bars. Anywhere else (a log file, CI, a pipe) a bar would print
once, when it ends, so progress goes out instead as plain timestamped lines through the
standard ``logging`` module (logger ``modelprint``): when a job starts, then at most every
``MODELPRINT_PROGRESS_EVERY`` seconds (default 10) with its step and ETA, and when it ends.
``MODELPRINT_QUIET=1`` (``--quiet``) silences both.

A library is quiet unless its caller asks: progress shows only when the ``modelprint``
logger passes INFO to a handler, as the command line arranges (:func:`configure_logging`) and
``logging.basicConfig(level=logging.INFO)`` does in a script. Warnings go through the same
logger, so Python shows them even where nothing is configured.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

log = logging.getLogger("modelprint")


def _is_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


# In a log, a message is one line however long: no wrapping at 80 columns.
console = Console(stderr=True, soft_wrap=not _is_terminal(), width=None if _is_terminal() else 200)


def _quiet() -> bool:
    """No progress: ``--quiet``, or a caller that has not asked for INFO lines of the ``modelprint`` logger."""
    if os.environ.get("MODELPRINT_QUIET", "") not in ("", "0"):
        return True
    return not (log.isEnabledFor(logging.INFO) and log.hasHandlers())


def _interval() -> float:
    try:
        return max(0.5, float(os.environ.get("MODELPRINT_PROGRESS_EVERY", "10")))
    except ValueError:
        return 10.0


def configure_logging(verbosity: int = 0) -> None:
    """Plain ``TIME LEVEL message`` lines on stderr for the ``modelprint`` logger:
    verbosity -1 warnings only (``--quiet``), 0 progress and info, 1 debug (``-v``)."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _NullBar:
    def update(self, advance: float = 1, description: str | None = None) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task: int) -> None:
        self._progress, self._task = progress, task

    def update(self, advance: float = 1, description: str | None = None) -> None:
        kw = {"description": description} if description is not None else {}
        self._progress.update(self._task, advance=advance, **kw)


class LogBar:
    """Progress as log lines: the job, its step of the total, elapsed time and ETA. A line
    goes out at least every ``every`` seconds even while one step runs long (a heartbeat)."""

    def __init__(self, total: float, description: str, every: float | None = None) -> None:
        self.total, self.description, self.done = total, _plain(description), 0.0
        self.job = self.description
        self.every = _interval() if every is None else every
        self.started = self.last = time.monotonic()
        log.info("%s: started, %s steps", description, _count(total))
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="modelprint-progress")
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.every / 4):
            if time.monotonic() - self.last >= self.every:
                self.last = time.monotonic()
                log.info("%s", self.line())

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        share = self.done / self.total if self.total else 1.0
        eta = f", ETA {_clock(elapsed * (1 - share) / share)}" if 0 < share < 1 else ""
        done = f"{_count(self.done)}/{_count(self.total)} ({share:.0%})"
        return f"{self.description}: {done}, {_clock(elapsed)} elapsed{eta}"

    def update(self, advance: float = 1, description: str | None = None) -> None:
        self.done += advance
        if description is not None:
            self.description = _plain(description)
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            log.info("%s", self.line())

    def finish(self) -> None:
        self._stop.set()
        log.info("%s: done, %s steps in %s", self.job, _count(self.done), _clock(time.monotonic() - self.started))


class Steps:
    """An overall step counter for a long command: ``steps.start(title)`` opens step i of n
    with the time so far and an ETA from the steps done (a rule on a terminal, a log line
    elsewhere)."""

    def __init__(self, total: int, job: str) -> None:
        self.total, self.job, self.i = total, job, 0
        self.started = time.monotonic()

    def start(self, title: str) -> None:
        elapsed = time.monotonic() - self.started
        eta = f", ETA {_clock(elapsed / self.i * (self.total - self.i))}" if self.i else ""
        self.i += 1
        if _quiet():
            return
        if _is_terminal():
            console.rule(f"{self.i}/{self.total}  {title}")
        else:
            log.info("%s step %d/%d: %s (%s elapsed%s)", self.job, self.i, self.total, title, _clock(elapsed), eta)


def note(text: str) -> None:
    """One progress message: as it is on a terminal, a timestamped log line elsewhere (so a log
    holds one format), nothing when quiet (see the module docstring)."""
    if _quiet():
        return
    if _is_terminal():
        console.print(text, markup=False)
        return
    log.info("%s", text)


@contextmanager
def timed(into: dict[str, Any], key: str) -> Iterator[None]:
    """Time the block into ``into[key]``: seconds, to the millisecond (left as it was if the block fails)."""
    started = time.perf_counter()
    yield
    into[key] = round(time.perf_counter() - started, 3)


def _plain(text: str) -> str:
    """A bar's description without rich markup (a log shows ``cnn[width=8]``, not ``cnn\\[width=8]``)."""
    return Text.from_markup(text).plain


def _count(v: float) -> str:
    return f"{v:g}" if v != int(v) else str(int(v))


@contextmanager
def progress_bar(total: float, description: str, enabled: bool = True) -> Iterator[_Bar | _NullBar | LogBar]:
    """A progress bar on a terminal, log lines elsewhere; silent with ``enabled=False`` or when quiet."""
    if not enabled or _quiet():
        yield _NullBar()
        return
    if not _is_terminal():
        bar = LogBar(total, description)
        try:
            yield bar
        except BaseException:
            bar._stop.set()  # no "done" for a job that failed
            raise
        bar.finish()
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
