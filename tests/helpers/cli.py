"""Running `recotorch ARGS` in the test's own process, through the real entry point and error boundary."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def run_in_process(args: list[object], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                   cwd: Path | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `recotorch.cli.main` with `sys.argv` set to `recotorch ARGS`.

    `-v`/`-q` leave the "recotorch" logger's level set, as in a real process: `reset_logging` undoes it.
    A verb's imports are not frozen out of garbage collection here: the test process outlives the command.
    """
    import recotorch.cli
    from recotorch.cli import boundary, main

    monkeypatch.setattr(recotorch.cli, "freeze_verb_imports", lambda: None)

    if cwd is not None:
        monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["recotorch", *map(str, args)])
    monkeypatch.setattr(boundary, "DEBUG", False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def cli_fixture(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """The body of a `cli` fixture: `cli(*args, cwd=None)` runs `recotorch ARGS` in this process."""
    yield lambda *args, cwd=None: run_in_process(list(args), capsys, monkeypatch, cwd)
    reset_logging()


def reset_logging() -> None:
    logging.getLogger("recotorch").setLevel(logging.NOTSET)
