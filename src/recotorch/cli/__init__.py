"""The command line: one verb per user task (`recotorch --help`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from recotorch.cli import boundary, catalogue, explain, quickstart, ranking, rating, serve, split, synth, verbosity

app = typer.Typer(
    add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
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
) -> None:
    boundary.DEBUG = debug
    if verbose and quiet:
        from recotorch.errors import OptionError

        raise OptionError("--quiet", "contradicts --verbose; give one")
    verbosity.setup(verbose, quiet)


app.command("quickstart")(quickstart.quickstart)
app.command("fit")(rating.fit)
app.command("options")(rating.options)
app.command("predict")(rating.predict)
app.command("evaluate")(rating.evaluate)
app.command("lr-find")(rating.lr_find)
app.command("recommend")(ranking.recommend)
app.command("similar")(ranking.similar)
app.command("explain")(explain.explain)
app.command("serve")(serve.serve)
app.command("synth")(synth.synth)
app.command("split")(split.split)
app.command("items")(catalogue.items)


def main() -> None:
    """Entry point of `recotorch` and `python -m recotorch`: every verb behind one error boundary."""
    sys.exit(boundary.run(app))
