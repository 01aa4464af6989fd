"""Where the CLI writes: every output checked before any work, written atomically after it.

The rule (README, `recotorch --help`): an output file may be a new path; an existing one only
with --overwrite, and never an input (a data file, or a file of a model directory being read).
Tables (`recommend`, `similar`, `predict`) go through `table_target`: `--out -` is standard
output (CSV or JSON Lines), else a file in the format of `--format` or of its suffix
(.csv, .parquet/.pq, .jsonl/.ndjson).
A model directory (`fit --out`) is checked by `recotorch.outputs.check_model_dir_target`.
The training checkpoint folder `OUT.checkpoint` is only reused or removed when it holds
nothing but recotorch's checkpoint files.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import typer

from recotorch.errors import OptionError, OutputPathError
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


FORMATS = ("csv", "parquet", "jsonl")
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
STDOUT = "-"
FormatOption = typer.Option("--format", help="Table format: csv, parquet or jsonl (default: from the --out "
                                             "suffix; csv for --out -).")
_CHUNK = 200_000  # rows per write to standard output (bounds the text held at once)


@dataclass(frozen=True)
class TableTarget:
    """Where a table goes: a file (written atomically) or standard output, and in which format."""

    path: Path | None  # None: standard output
    format: str

    @property
    def to_stdout(self) -> bool:
        return self.path is None

    def __str__(self) -> str:
        return "standard output" if self.path is None else str(self.path)

    def write(self, frame: pl.DataFrame) -> None:
        """Write `frame`; list columns become "a|b" text in CSV."""
        if self.format == "csv":
            frame = _flat(frame)
        if self.path is None:
            _to_stdout(frame, self.format)
        elif self.format == "csv":
            write_csv(frame, self.path)
        elif self.format == "parquet":
            write_file_atomic(self.path, lambda tmp: frame.write_parquet(tmp))
        else:
            write_file_atomic(self.path, lambda tmp: frame.write_ndjson(tmp))


def table_target(out: Path | None, fmt: str | None, *, inputs: Sequence[Path] = (), overwrite: bool = False,
                 models: Sequence[Path] = (), option: str = "--out") -> TableTarget | None:
    """Check a table output before any work: None when `out` is None (the caller prints to the terminal).

    `--out -` is standard output (csv or jsonl); a file takes `fmt`, else the format of its suffix,
    and is checked by `output_file` (never an input, never inside a model read, --overwrite).
    """
    if fmt is not None and fmt not in FORMATS:
        raise OptionError("--format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if out is None:
        if fmt is not None:
            raise OptionError("--format", f"goes with {option} (a file, or - for standard output)")
        return None
    if str(out) == STDOUT:
        if fmt == "parquet":
            raise OptionError("--format", f"parquet is binary: write it to a file, not {option} -")
        return TableTarget(None, fmt or "csv")
    by_suffix = SUFFIXES.get(out.suffix.lower())
    if fmt is None and by_suffix is None:
        raise OptionError("--format", f"cannot tell the format of {out} from its suffix: give --format "
                                      f"{'|'.join(FORMATS)} or end the name in .csv, .parquet or .jsonl")
    if fmt is not None and by_suffix is not None and by_suffix != fmt:
        raise OptionError("--format", f"{fmt} contradicts the suffix of {out} ({by_suffix}); give one")
    output_file(out, inputs=inputs, overwrite=overwrite, models=models, option=option)
    return TableTarget(out, fmt or by_suffix)  # type: ignore[arg-type]


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(c).cast(pl.List(pl.Utf8)).list.join("|")
                              for c, t in frame.schema.items() if isinstance(t, pl.List))


def _to_stdout(frame: pl.DataFrame, fmt: str) -> None:
    """CSV or JSON Lines on standard output in chunks; a closed pipe (`| head`) ends quietly."""
    try:
        for start in range(0, max(frame.height, 1), _CHUNK):
            part = frame.slice(start, _CHUNK)
            text = part.write_csv(include_header=start == 0) if fmt == "csv" else part.write_ndjson()
            sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):  # no more output: point stdout at nothing
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None


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
