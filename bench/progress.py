"""Progress bars, one per phase, with counts and ETA (rich), or nothing in tests.

Strategies never import rich: they receive a `PhaseFactory` through `Budget.progress`
(or a plain `progress(n)` callable in `predict`) and call it; `phase()` turns a
missing factory into a no-op, so the same code runs quietly under test."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Protocol


class Phase(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def note(self, text: str) -> None: ...


PhaseFactory = Callable[[str, int | None], "contextlib.AbstractContextManager[Phase]"]


class _Quiet:
    def advance(self, n: int = 1) -> None:
        pass

    def note(self, text: str) -> None:
        pass


@contextlib.contextmanager
def phase(factory: PhaseFactory | None, description: str, total: int | None) -> Iterator[Phase]:
    if factory is None:
        yield _Quiet()
    else:
        with factory(description, total) as bar:
            yield bar


class _RichPhase:
    def __init__(self, progress, task_id, description: str) -> None:
        self._progress, self._id, self._description = progress, task_id, description

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._id, n)

    def note(self, text: str) -> None:
        self._progress.update(self._id, description=f"{self._description} [dim]{text}[/]")


class RichPhases:
    """A rich Progress whose bars are opened per phase by `RichPhases.open`."""

    def __init__(self, console=None) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 console=console, transient=False)

    def __enter__(self) -> "RichPhases":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    @contextlib.contextmanager
    def open(self, description: str, total: int | None) -> Iterator[Phase]:
        task_id = self.progress.add_task(description, total=total)
        try:
            yield _RichPhase(self.progress, task_id, description)
        finally:
            task = self.progress.tasks[task_id] if task_id < len(self.progress.tasks) else None
            if task is not None and task.total is None:
                self.progress.update(task_id, total=task.completed or 1, completed=task.completed or 1)
