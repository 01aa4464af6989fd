"""Where the CLI writes: every output checked before any work, written atomically after it.

The rule (README, `recotorch --help`): an output file may be a new path; an existing one only
with --overwrite, and never an input (a data file, or a file of a model directory being read).
A model directory (`fit --out`) is checked by `recotorch.outputs.check_model_dir_target`.
The training checkpoint folder `OUT.checkpoint` is only reused or removed when it holds
nothing but recotorch's checkpoint files.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from recotorch.errors import OutputPathError
from recotorch.outputs import check_file_target, write_file_atomic

_CHECKPOINT_FILE = re.compile(r"^checkpoint\.(pt|tmp\d+)$")  # what train.Trainer writes there


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def output_file(path: Path, *, inputs: Sequence[Path] = (), overwrite: bool = False,
                models: Sequence[Path] = (), option: str = "--out") -> Path:
    """Refuse (OutputPathError) an output file that could destroy or hide something; else return it.

    `models` are model directories the command reads: nothing is written inside them.
    """
    for model in models:
        if _inside(path, model):
            raise OutputPathError(path, f"{option} lies inside the model directory {model}; write it elsewhere")
    if path.is_symlink() and not path.exists():
        raise OutputPathError(path, f"{option} is a dangling symbolic link; choose another name")
    for parent in path.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise OutputPathError(path, f"{option}: {parent} is a file, not a folder")
    check_file_target(path, inputs=list(inputs), overwrite=overwrite)
    return path


def write_csv(frame: pl.DataFrame, path: Path) -> Path:
    """Write a CSV beside `path` and rename it over, so readers never see half a file."""
    return write_file_atomic(path, lambda tmp: frame.write_csv(tmp))


def write_text(text: str, path: Path) -> Path:
    return write_file_atomic(path, lambda tmp: tmp.write_text(text))


def write_drawn(path: Path, draw: Callable[[Path], object]) -> Path:
    """Atomic write for functions that pick the file format from the name (matplotlib's savefig)."""
    def write(tmp: Path) -> None:
        named = tmp.with_name(tmp.name + path.suffix)
        try:
            draw(named)
            os.replace(named, tmp)
        finally:
            named.unlink(missing_ok=True)

    return write_file_atomic(path, write)


def is_checkpoint_dir(path: Path) -> bool:
    """True when `path` is a folder holding only files recotorch's trainer writes (and at least one)."""
    if not path.is_dir() or path.is_symlink():
        return False
    names = [p.name for p in path.iterdir()]
    return bool(names) and all(_CHECKPOINT_FILE.match(n) and (path / n).is_file() for n in names)


def checkpoint_target(out_dir: Path) -> Path:
    """`OUT.checkpoint`, refused when something there is not recotorch's checkpoint."""
    checkpoint = out_dir.with_name(out_dir.name + ".checkpoint")
    if checkpoint.is_symlink() or (checkpoint.exists() and not checkpoint.is_dir()):
        raise OutputPathError(checkpoint, "exists and is not a recotorch checkpoint folder; fit writes its "
                                          "checkpoint there: move it or choose another --out")
    # an empty folder is accepted: an interrupted run can leave one, and it holds nothing to lose
    if checkpoint.is_dir() and any(checkpoint.iterdir()) and not is_checkpoint_dir(checkpoint):
        raise OutputPathError(checkpoint, "is a folder that is not a recotorch checkpoint; fit writes its "
                                          "checkpoint there: move it or choose another --out")
    return checkpoint


def remove_checkpoint(checkpoint: Path) -> None:
    """Delete recotorch's checkpoint files in `checkpoint` and the folder once empty; nothing else."""
    if not checkpoint.is_dir() or checkpoint.is_symlink():
        return
    for entry in checkpoint.iterdir():
        if _CHECKPOINT_FILE.match(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something else is in it: not ours to remove
        checkpoint.rmdir()
