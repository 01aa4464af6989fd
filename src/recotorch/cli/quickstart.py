"""`recotorch quickstart`: the whole course model on MovieLens-100k, start to finish."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from recotorch.cli.common import Overwrite, out, progress_enabled
from recotorch.cli.targets import output_file, write_text
from recotorch.errors import OutputPathError
from recotorch.outputs import check_model_dir_target

MANIFEST = ".recotorch-quickstart.json"  # the files a quickstart run wrote in its folder
FILES = ("report.md", "learning_curves.png")
MODELS = ("model-mf", "model-ncf")


def check_run_folder(folder: Path, *, inputs: list[Path], overwrite: bool) -> None:
    """Refuse a run folder where quickstart could replace or hide something it did not write.

    The folder may be new, or hold anything; the models go to `model-*` (new, empty or recotorch
    model directories), and report.md / learning_curves.png may only replace files that an earlier
    quickstart wrote there (listed in its manifest) unless --overwrite is given.
    """
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(folder, "--out exists and is not a folder")
    for name in MODELS:
        check_model_dir_target(folder / name, inputs=inputs)
    ours = set(_manifest(folder))
    for name in (*FILES, MANIFEST):
        output_file(folder / name, inputs=inputs, overwrite=overwrite or name in ours)


def _manifest(folder: Path) -> list[str]:
    try:
        written = json.loads((folder / MANIFEST).read_text())["written"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [MANIFEST, *(name for name in written if name in FILES)]


def quickstart(
    data: Annotated[Path | None, typer.Option(help="Local ml-100k copy (directory or .zip).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where models and the report go.")] = Path(
        "runs/quickstart"),
    seed: Annotated[int, typer.Option(help="Seed of the split and the models.", min=0)] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Load ml-100k, train MF and NeuralCF, compare with baselines on a seeded 80/20 split, save all.

    Running it again over its own folder replaces what the earlier run wrote; any other existing
    report.md or learning_curves.png there is refused unless --overwrite is given.
    """
    from recotorch.data import datasets, splits
    from recotorch.evaluate.protocol import compare_rating_models
    from recotorch.models import BiasBaseline, GlobalMean, MatrixFactorization, NeuralCF
    from recotorch.report import plot_learning_curves, write_report

    check_run_folder(out_dir, inputs=[data] if data else [], overwrite=overwrite)
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
    write_text(json.dumps({"written": list(FILES)}), out_dir / MANIFEST)  # before the files: they are ours
    curves = plot_learning_curves({"MatrixFactorization": mf.history_, "NeuralCF": ncf.history_},
                                  out_dir / "learning_curves.png")
    page = write_report(
        out_dir / "report.md", "recotorch quickstart: MovieLens-100k",
        [f"Data: {interactions}", f"Origin: {interactions.meta.get('origin', interactions.source)}",
         f"Split: random 80/20 (seed {seed}): {split.summary()}",
         f"MF: `{mf!r}`", f"NeuralCF: `{ncf!r}`",
         "The validation curve is the test set itself, watched but not used for early stopping."],
        [report], {"Learning curves": curves.name})
    out.print(f"models -> {out_dir / 'model-mf'}, {out_dir / 'model-ncf'}; report -> {page}", highlight=False)
