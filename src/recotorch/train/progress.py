"""A Rich progress bar for training: one bar per epoch with the live loss."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class EpochProgress:
    """Shows `epoch e/E [bar] step/steps loss=...`; does nothing when disabled."""

    def __init__(self, *, enabled: bool, total_epochs: int, steps: int) -> None:
        self.enabled = enabled
        self.total_epochs = total_epochs
        self.steps = steps
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss={task.fields[loss]}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)

    def step(self, epoch: int, done: int, loss: float) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task(f"epoch {epoch + 1}/{self.total_epochs}",
                                                 total=self.steps, loss="-")
        self._progress.update(self._task, completed=done, loss=f"{loss:.4f}")

    def end_epoch(self, epoch: int, train_loss: float, valid_loss: float | None) -> None:
        if self._progress is None or self._task is None:
            return
        valid = "" if valid_loss is None else f" valid={valid_loss:.4f}"
        self._progress.update(self._task, loss=f"{train_loss:.4f}{valid}")
        self._task = None
