"""`recotorch -v / -q`: how much the "recotorch" logger and the training progress say on stderr.

Default: INFO and up (downloads, reloads, duplicate and aggregation notes), and training
progress (a live bar on a terminal, one line per epoch otherwise). `-q`: warnings and errors
only, no progress. `-v`: DEBUG as well.
"""

from __future__ import annotations

import logging
import sys

LOGGER = "recotorch"
_state = {"level": logging.INFO}


class _StderrHandler(logging.Handler):
    """Writes each record as one plain line to the *current* sys.stderr (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # (a closed stream must not break the command)
            self.handleError(record)


def setup(verbose: int = 0, quiet: int = 0) -> int:
    """Set the "recotorch" logger's level from the -v/-q counts and give it one stderr handler."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    if quiet > 1:
        level = logging.ERROR
    _state["level"] = level
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return level


def progress_wanted() -> bool:
    """Training progress is shown unless -q was given."""
    return _state["level"] <= logging.INFO
