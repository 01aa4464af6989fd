"""The CLI's one error boundary: a user's mistake is one line and exit 2, a bug is a bug (exit 1).

`recotorch.cli.main()` runs every verb through `run`. `RecotorchError` and the built-in
exceptions the data and model layers still raise for bad input (ValueError, KeyError, missing
or unreadable files) become ``error: <message>`` on stderr and exit code 2. Anything else is
reported as an internal error with its type and message, exit code 1; `recotorch --debug ...`
prints the full traceback. Typer's own usage errors (bad int, missing option) keep their usage
block and exit code 2; Ctrl-C keeps click's behaviour (fit turns it into exit 130 itself).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from recotorch.errors import RecotorchError

USER_ERRORS: tuple[type[BaseException], ...] = (
    RecotorchError, ValueError, KeyError, FileNotFoundError, PermissionError, IsADirectoryError,
    NotADirectoryError, FileExistsError,
)

DEBUG = False  # set by the global --debug option (the Typer callback)


def message_of(exc: BaseException) -> str:
    """The exception as one line: KeyError unquoted, OSError as 'file: reason', newlines folded."""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, RecotorchError):
        where = exc.filename if exc.filename is not None else ""
        text = f"{where}: {exc.strerror}" if where else exc.strerror
    elif isinstance(exc, KeyError) and not isinstance(exc, RecotorchError) and exc.args:
        text = str(exc.args[0])
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def is_user_error(exc: BaseException) -> bool:
    """True for the user's mistakes (bad file, option, output path, model dir); False for bugs."""
    if isinstance(exc, USER_ERRORS):
        return True
    # an OS failure naming a file (disk full, read-only file system, ...) is not a bug in recotorch
    return isinstance(exc, OSError) and exc.filename is not None


def run(command: Callable[[], object]) -> int:
    """Call `command` (the Typer app) and turn what escapes it into a message and an exit code."""
    try:
        command()
    except SystemExit as exc:  # click's exits: usage errors (2), typer.Exit(n), --help (0)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as exc:
        if DEBUG:
            traceback.print_exc()
        if is_user_error(exc):
            _say(f"error: {message_of(exc)}")
            return 2
        _say(f"internal error (a bug in recotorch): {type(exc).__name__}: {message_of(exc)}; "
             "run again with --debug for the traceback (recotorch --debug COMMAND ...)")
        return 1
    return 0


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
