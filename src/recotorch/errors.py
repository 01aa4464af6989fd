"""The exceptions recotorch raises for the user's mistakes, as opposed to its own bugs.

Everything here derives from `RecotorchError`. The command line prints such an error as one
line and exits 2; the HTTP layer maps each type to one 4xx status. Any other exception is a
bug: the CLI says so and exits 1 (`--debug` shows the traceback), the API answers 500.

Each class also derives from the built-in exception a Python caller would expect
(`ValueError`, `KeyError`, ...), so `except ValueError` keeps working in notebooks.

This module imports nothing from recotorch, so every layer (`data` and `train` included) may
raise these types.
"""

from __future__ import annotations

from pathlib import Path


class RecotorchError(Exception):
    """Base class of every expected failure; `str(err)` is the one line shown to the user."""


class InputFileError(RecotorchError, ValueError):
    """An input file cannot be used: missing, unreadable, wrong format, or bad content.

    `recotorch.data.errors.DataError` (which names file, line and column) is the main subclass.
    """


class OptionError(RecotorchError, ValueError):
    """An option or argument value, or a combination of them, that cannot be honoured.

    `option` is the name as the user typed it (`--dim`, or a Python keyword such as `dim`).
    """

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        self.message = message
        super().__init__(f"{option}: {message}")

    def __str__(self) -> str:
        return f"{self.option}: {self.message}"


class _PathError(RecotorchError):
    """An error about one path, shown as ``<path>: <message>``."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = Path(path)
        self.message = message
        super().__init__(f"{path}: {message}")

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class OutputPathError(_PathError, ValueError):
    """recotorch refuses to write where it could destroy or hide something it did not write."""


class CorruptModelError(_PathError, ValueError):
    """A model directory fails its checks on load; `path` is the file at fault."""


class UnknownIdError(RecotorchError, KeyError):
    """A raw user or item id the model does not know (HTTP 404)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown id"


class UnsupportedError(RecotorchError, NotImplementedError):
    """The model cannot do what was asked (no item vectors, no fold-in, ...; HTTP 501)."""


class ServiceUnavailableError(RecotorchError, RuntimeError):
    """A backing service (the feedback database) is down or busy; retry later (HTTP 503)."""
