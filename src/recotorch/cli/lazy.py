"""Verbs whose module is imported only when the verb runs.

`recotorch --help`, `--version` and a mistyped verb import no verb module, and so neither
torch nor the serving, plotting or tuning libraries. The list of verbs in `--help` takes each
one's help from its function's docstring, read from the module's source without importing it.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
import importlib
import importlib.util
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

PACKAGE = "recotorch.cli"


def verb_group(verbs: Mapping[str, tuple[str, str]]) -> type[TyperGroup]:
    """A Typer group class whose commands `verbs` maps (name -> (module in recotorch.cli, function))."""

    class Verbs(TyperGroup):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for name, (module, function) in verbs.items():
                self.commands.setdefault(name, _Unloaded(name, module, function))
            self._listing = 0

        def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            self._listing += 1  # the list of verbs needs their help texts only
            try:
                super().format_help(ctx, formatter)
            finally:
                self._listing -= 1

        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            command = self.commands.get(cmd_name)
            if isinstance(command, _Unloaded) and not self._listing:
                command = self.commands[cmd_name] = command.load()
            return command

    return Verbs


class _Unloaded(click.Command):
    """A verb's name and help, standing in for its command until the verb is run."""

    def __init__(self, name: str, module: str, function: str) -> None:
        self._where = (module, function)
        super().__init__(name)

    @property  # type: ignore[override]
    def help(self) -> str:
        return _docstring(*self._where)

    @help.setter
    def help(self, value: str | None) -> None:  # click's __init__ sets it; the docstring is the help
        pass

    def load(self) -> click.Command:
        module, function = self._where
        with _uncollected():
            callback = getattr(importlib.import_module(f"{PACKAGE}.{module}"), function)
        single = typer.Typer(add_completion=False)
        single.command(self.name)(callback)
        return typer.main.get_command(single)


_FREEZE_IMPORTS = False


def freeze_verb_imports() -> None:
    """For a process that ends with its command (the `recotorch` entry point): after a verb's imports,
    move every object alive to the collector's permanent generation, so that the collections during
    the command no longer walk torch's modules (~0.1 s of a fit or recommend). Not for in-process
    callers: frozen objects are never collected, so a long-lived process would keep its garbage."""
    global _FREEZE_IMPORTS
    _FREEZE_IMPORTS = True


@contextlib.contextmanager
def _uncollected() -> Iterator[None]:
    """No cyclic garbage collection while a verb's modules are imported: torch's import alone creates
    hundreds of thousands of long-lived objects, and the collections they set off cost ~10% of it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _FREEZE_IMPORTS:
            gc.freeze()
        if enabled:
            gc.enable()


@functools.cache
def _docstring(module: str, function: str) -> str:
    spec = importlib.util.find_spec(f"{PACKAGE}.{module}")
    if spec is None:  # not installed: the verb says so when run
        return ""
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))  # type: ignore[union-attr, arg-type]
    except (AttributeError, TypeError, OSError, SyntaxError):  # no source to read: import it after all
        return (getattr(importlib.import_module(f"{PACKAGE}.{module}"), function).__doc__ or "").strip()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return ast.get_docstring(node) or ""
    return ""
