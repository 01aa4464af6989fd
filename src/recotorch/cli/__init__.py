"""The command line: one verb per user task (`recotorch --help`)."""

from __future__ import annotations

import typer

from recotorch.cli import explain, quickstart, ranking, rating, serve, synth

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Recommender systems in PyTorch: fit, evaluate, recommend, explain, serve.")
app.command("quickstart")(quickstart.quickstart)
app.command("fit")(rating.fit)
app.command("predict")(rating.predict)
app.command("evaluate")(rating.evaluate)
app.command("lr-find")(rating.lr_find)
app.command("recommend")(ranking.recommend)
app.command("similar")(ranking.similar)
app.command("explain")(explain.explain)
app.command("serve")(serve.serve)
app.command("synth")(synth.synth)


def main() -> None:
    app()
