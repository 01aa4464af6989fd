"""The command line: one verb per user task (`recotorch --help`)."""

from __future__ import annotations

import atexit
import gc
import sys
from typing import Annotated

import typer

from recotorch.cli import boundary, verbosity
from recotorch.cli.lazy import freeze_verb_imports, verb_group
from recotorch.core import threads as thread_policy
from recotorch.core.allocator import keep_freed_memory

# verb -> (module in recotorch.cli, function): a verb's module is imported only when it runs
VERBS: dict[str, tuple[str, str]] = {
    "quickstart": ("quickstart", "quickstart"),
    "fit": ("rating", "fit"),
    "options": ("rating", "options"),
    "predict": ("rating", "predict"),
    "evaluate": ("rating", "evaluate"),
    "lr-find": ("rating", "lr_find"),
    "recommend": ("ranking", "recommend"),
    "similar": ("ranking", "similar"),
    "explain": ("explain", "explain"),
    "serve": ("serve", "serve"),
    "synth": ("synth", "synth"),
    "split": ("split", "split"),
    "tune": ("tune", "tune"),
    "items": ("catalogue", "items"),
}

app = typer.Typer(
    cls=verb_group(VERBS), add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Recommender systems in PyTorch: fit, evaluate, recommend, explain, serve.\n\n"
         "Output files are never overwritten unless you pass --overwrite, and never when they are "
         "an input; a model directory (--out of fit) may only be a new or empty folder or an "
         "existing recotorch model. A mistake in a file or option is one line naming it (exit 2); "
         "anything else is a bug (exit 1; run with --debug for the traceback).")


def _print_version(given: bool) -> None:
    if given:
        from recotorch import __version__

        typer.echo(f"recotorch {__version__}")
        raise typer.Exit(0)


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full Python traceback of an error.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="Also show DEBUG messages of the 'recotorch' logger.")] = 0,
    quiet: Annotated[int, typer.Option("--quiet", "-q", count=True,
                                       help="Only warnings and errors (-qq: errors only); no training progress. "
                                            "By default INFO messages (downloads, reloads, notes) and progress "
                                            "are shown on stderr.")] = 0,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, envvar="RECOTORCH_THREADS", show_default=False,
        help="CPU threads for torch and the compiled kernels (else OMP_NUM_THREADS when set). Default: every "
             "core for large computations, one for training steps and data preparation too small to split, "
             "which keeps fits fast on a busy machine.")] = None,
) -> None:
    boundary.DEBUG = debug
    thread_policy.set_threads(threads if threads is not None else thread_policy.threads_from_environment())
    if verbose and quiet:
        from recotorch.errors import OptionError

        raise OptionError("--quiet", "contradicts --verbose; give one")
    verbosity.setup(verbose, quiet)


def main() -> None:
    """Entry point of `recotorch` and `python -m recotorch`: every verb behind one error boundary."""
    thread_policy.prepare_process()  # before a verb imports torch
    keep_freed_memory()
    freeze_verb_imports()
    _skip_final_collection()
    sys.exit(boundary.run(app))


def _skip_final_collection() -> None:
    """At interpreter exit, leave the objects alive by then out of the last cyclic garbage collection.

    That collection walks every object of the imported modules (torch's alone are hundreds of
    thousands) and took 0.5-1 s of a one-second `fit`. Exit handlers, stream flushes and files
    closed by their owners are unaffected: freezing only keeps the collector from scanning.
    Registered once per process, so in-process callers (the tests) only change their own exit.
    """
    global _FREEZE_REGISTERED
    if not _FREEZE_REGISTERED:
        atexit.register(gc.freeze)
        _FREEZE_REGISTERED = True


_FREEZE_REGISTERED = False
