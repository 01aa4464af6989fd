"""Where a search writes: a tune folder holds the study, the search record, the report and (for
`recotorch tune`) the refitted model in `model/`.

The rules keep the user's files safe (`recotorch.outputs`): a new search needs a new path or an empty
folder; a folder holding an earlier search is only continued (`--resume`, `--worker`), never
replaced; anything else (a file, the current folder, a folder holding an input or other files) is
refused before any data is read. recotorch writes only the names in `OWNED` inside it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recotorch.errors import OutputPathError

RECORD = "search.json"
JOURNAL = "study.journal"
CLAIMS = ".claims.lock"
MARKER = "recotorch-tune"  # the record's "format" key: this folder is a search recotorch wrote
OWNED = (RECORD, JOURNAL, CLAIMS, "leaderboard.csv", "report.md", "history.png", "families.png", "model")


def is_tune_folder(path: Path) -> bool:
    """True when `path` holds a search record recotorch wrote."""
    record = path / RECORD
    if not record.is_file() or record.is_symlink():
        return False
    try:
        return json.loads(record.read_text()).get("format") == MARKER
    except (OSError, ValueError, AttributeError):
        return False


def check_tune_target(path: Path, *, inputs: Sequence[Path], resume: bool, option: str = "--out") -> bool:
    """Refuse (OutputPathError) a folder a search may not write to; True when it holds a search to continue."""
    target = path.resolve()
    if path.exists() and not path.is_dir():
        raise OutputPathError(path, f"{option} exists and is not a folder; choose a new folder for the search")
    if path.is_symlink():
        raise OutputPathError(path, f"{option} is a symbolic link; choose a real folder")
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise OutputPathError(path, f"{option} is the current folder (or holds it); choose a new folder")
    for given in inputs:
        source = Path(given).resolve()
        if source == target or target in source.parents:
            raise OutputPathError(path, f"{option} holds the input {given}; choose a folder that holds no input")
    existing = is_tune_folder(path)
    if existing and not resume:
        raise OutputPathError(path, f"{option} holds an earlier search; pass --resume to continue it, "
                                    "or choose a new folder")
    if resume and not existing:
        raise OutputPathError(path, f"{option} holds no search to resume (no {RECORD} written by recotorch tune)")
    if not existing and path.is_dir() and any(path.iterdir()):
        raise OutputPathError(path, f"{option} is a folder that is not empty and holds no search; "
                                    "choose a new or empty folder")
    return existing


def read_record(path: Path) -> dict[str, Any]:
    """The search record of tune folder `path`."""
    return json.loads((path / RECORD).read_text())
