"""Where recotorch may write: checks that keep a user's files safe, and atomic file writes.

The rule: nothing recotorch writes may delete, overwrite or hide a file it did not write.

- A model directory (`--out` of `fit`) may be a new path, an empty folder, or an existing
  recotorch model directory (the one overwrite, done crash-safely by `recotorch.artifacts`).
  It may not be an existing file, a non-empty folder that is not a model directory, the
  current folder (or one above it), or a folder that holds an input file.
- An output file (CSV, PNG, report) may be a new path; an existing file only with
  `overwrite=True`, and never one of the inputs. Files are written beside the target and
  renamed over it, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from recotorch.errors import OutputPathError

MODEL_MARKERS = ("model.json", "CURRENT")  # a folder holding either is a recotorch model directory


def is_model_dir(path: Path) -> bool:
    """True when `path` is a folder that recotorch wrote as a model directory."""
    return path.is_dir() and any((path / name).is_file() for name in MODEL_MARKERS)


def _contains(folder: Path, other: Path) -> bool:
    """True when `other` is `folder` or lies below it (both resolved)."""
    return other == folder or folder in other.parents


def check_model_dir_target(path: str | Path, *, inputs: Sequence[str | Path] = ()) -> None:
    """Raise `OutputPathError` unless a model directory may be written at `path`."""
    path = Path(path)
    target = path.resolve()
    if path.exists() and not path.is_dir():
        raise OutputPathError(path, "exists and is not a folder; choose a new path for the model")
    if _contains(target, Path.cwd().resolve()):
        raise OutputPathError(path, "is the current folder (or holds it); choose a new folder for the model")
    for given in inputs:
        source = Path(given).resolve()
        if _contains(target, source):
            raise OutputPathError(path, f"holds the input {given}; choose a folder that holds no input")
    if path.is_dir() and not is_model_dir(path) and any(path.iterdir()):
        raise OutputPathError(path, "is a folder that is not empty and not a recotorch model; "
                                    "choose a new or empty folder")


def check_file_target(path: str | Path, *, inputs: Sequence[str | Path] = (), overwrite: bool = False) -> None:
    """Raise `OutputPathError` unless an output file may be written at `path`."""
    path = Path(path)
    target = path.resolve()
    for given in inputs:
        if Path(given).resolve() == target:
            raise OutputPathError(path, "is an input of this command; write the output elsewhere")
    if path.is_dir():
        raise OutputPathError(path, "is a folder; give a file name")
    if path.exists() and not overwrite:
        raise OutputPathError(path, "already exists; choose a new name or pass --overwrite")
    if not target.parent.exists():
        return  # the folder is created on write
    if not os.access(target.parent, os.W_OK):
        raise OutputPathError(path, f"cannot write in {target.parent} (permission denied)")


def write_file_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, flush it to disk, rename it over `path`.

    On any failure the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
