"""Live progress (rich) for long stages: steps, rate and time left; plain log lines when quiet."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger("rarelearn")

StepCallback = Callable[[int, int], None]


class StageProgress:
    """One bar per stage; ``stage(name)`` returns a callback ``(done, total)`` for the stage."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None

    def __enter__(self) -> StageProgress:
        if not self.quiet:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def message(self, text: str) -> None:
        """A line above the bars (or a log line when quiet)."""
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            log.info(text)

    @contextmanager
    def stage(self, name: str, total: int, unit: str = "steps") -> Iterator[StepCallback]:
        """Track one stage; yields the callback dynamics and labeling report into."""
        started = time.perf_counter()
        if self._progress is None:
            log.info("%s: started (%d %s)", name, total, unit)
            yield lambda done, total_now: None
            log.info("%s: done in %.1f s", name, time.perf_counter() - started)
            return
        task = self._progress.add_task(name, total=total, rate="")

        def update(done: int, total_now: int) -> None:
            elapsed = time.perf_counter() - started
            rate = f"{done / elapsed:.0f} {unit}/s" if elapsed > 0 and done else ""
            self._progress.update(task, completed=done, total=total_now, rate=rate)

        yield update
        task_info = self._progress.tasks[task]
        self._progress.update(task, completed=task_info.total)
