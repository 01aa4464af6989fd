"""Training progress on stderr, naming the model: a live Rich bar on a terminal, one line per epoch otherwise.

`labelled("mf")` names the model being trained for every bar opened inside it (the CLI wraps
`fit` in it); without a label the lines say "training".
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_label: list[str] = []


@contextlib.contextmanager
def labelled(name: str) -> Iterator[None]:
    """Progress opened inside this block names `name` (e.g. the model being fitted)."""
    _label.append(name)
    try:
        yield
    finally:
        _label.pop()


class EpochProgress:
    """Shows `NAME epoch e/E [bar] step/steps loss=...`, or a line per finished epoch off a terminal.

    Does nothing when disabled. `live=None` chooses the bar when stderr is a terminal.
    """

    def __init__(self, *, enabled: bool, total_epochs: int, steps: int, name: str | None = None,
                 live: bool | None = None) -> None:
        self.enabled = enabled
        self.total_epochs = total_epochs
        self.steps = steps
        self.name = name or (_label[-1] if _label else "training")
        self.live = live
        self._progress: Progress | None = None
        self._task = None
        self._started = 0.0

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            console = Console(stderr=True)
            if self.live is None:
                self.live = console.is_terminal
            if self.live:
                self._progress = Progress(
                    TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss={task.fields[loss]}"), TimeElapsedColumn(),
                    console=console, transient=False,
                )
                self._progress.__enter__()
        self._started = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)

    def step(self, epoch: int, done: int, loss: float) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task(f"{self.name} epoch {epoch + 1}/{self.total_epochs}",
                                                 total=self.steps, loss="-")
        self._progress.update(self._task, completed=done, loss=f"{loss:.4f}")

    def end_epoch(self, epoch: int, train_loss: float, valid_loss: float | None) -> None:
        valid = "" if valid_loss is None else f" valid={valid_loss:.4f}"
        if self.enabled and not self.live:
            now = time.perf_counter()
            seconds, self._started = now - self._started, now
            sys.stderr.write(f"{self.name} epoch {epoch + 1}/{self.total_epochs}: loss={train_loss:.4f}{valid} "
                             f"({seconds:.1f} s)\n")
            sys.stderr.flush()
            return
        if self._progress is None or self._task is None:
            return
        self._progress.update(self._task, loss=f"{train_loss:.4f}{valid}")
        self._task = None
