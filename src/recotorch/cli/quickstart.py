"""`recotorch quickstart`: the whole course model on MovieLens-100k, start to finish."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recotorch.cli.common import out, progress_enabled, user_errors


def quickstart(
    data: Annotated[Path | None, typer.Option(help="Local ml-100k copy (directory or .zip).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where models and the report go.")] = Path(
        "runs/quickstart"),
    seed: Annotated[int, typer.Option(help="Seed of the split and the models.")] = 0,
) -> None:
    """Load ml-100k, train MF and NeuralCF, compare with baselines on a seeded 80/20 split, save all."""
    from recotorch.data import datasets, splits
    from recotorch.evaluate.protocol import compare_rating_models
    from recotorch.models import BiasBaseline, GlobalMean, MatrixFactorization, NeuralCF
    from recotorch.report import plot_learning_curves, write_report

    with user_errors():
        interactions = datasets.load("ml-100k", path=data)
    out.print(f"[bold]data[/]: {interactions}")
    out.print(f"[bold]origin[/]: {interactions.meta.get('origin', interactions.source)}")
    split = splits.random(interactions, test_frac=0.2, seed=seed)
    out.print(f"[bold]split[/]: random 80/20, seed {seed}: {split.summary()}")
    show = progress_enabled()
    mf = MatrixFactorization(seed=seed, progress=show)
    ncf = NeuralCF(seed=seed, progress=show)
    models = [("global mean", GlobalMean()), ("user+item bias", BiasBaseline()),
              ("MatrixFactorization", mf), ("NeuralCF", ncf)]
    report = compare_rating_models(models, split.train, split.test, valid=split.test,
                                   title="ml-100k, random 80/20 split: rating prediction on the test set")
    report.notes.append(f"{len(split.cold):,} test rows with a user or item unseen in training are "
                        "scored separately (not in this table).")
    out.print(report.to_rich())
    mf.save(out_dir / "model-mf")
    ncf.save(out_dir / "model-ncf")
    curves = plot_learning_curves({"MatrixFactorization": mf.history_, "NeuralCF": ncf.history_},
                                  out_dir / "learning_curves.png")
    page = write_report(
        out_dir / "report.md", "recotorch quickstart: MovieLens-100k",
        [f"Data: {interactions}", f"Origin: {interactions.meta.get('origin', interactions.source)}",
         f"Split: random 80/20 (seed {seed}): {split.summary()}",
         f"MF: `{mf!r}`", f"NeuralCF: `{ncf!r}`",
         "The validation curve is the test set itself, watched but not used for early stopping."],
        [report], {"Learning curves": curves.name})
    out.print(f"models -> {out_dir / 'model-mf'}, {out_dir / 'model-ncf'}; report -> {page}")
