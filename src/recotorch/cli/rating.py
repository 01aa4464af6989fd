"""`fit`, `predict`, `evaluate` and `lr-find`: models from files, answers into files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from recotorch.artifacts import load, save
from recotorch.cli import checks, targets
from recotorch.cli.common import (
    ItemCol,
    Overwrite,
    RatingCol,
    TimeCol,
    UserCol,
    only_given,
    out,
    progress_enabled,
    read_id_columns,
    read_table,
    timed,
    warn,
)
from recotorch.errors import OptionError
from recotorch.models import MODELS, make_model
from recotorch.models.base import Estimator
from recotorch.models.config import options_help, parse_assignments
from recotorch.models.mf import FAST_SETTINGS
from recotorch.outputs import check_model_dir_target
from recotorch.train.distributed import is_main_process

ModelName = Annotated[str, typer.Option("--model", "-m", help=f"One of: {', '.join(sorted(MODELS))}.")]


def fit(
    train: Annotated[Path, typer.Argument(help="Interactions file (CSV, TSV or Parquet).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    model: ModelName = "mf",
    valid: Annotated[Path | None, typer.Option(help="Validation file for early stopping.")] = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    time_col: TimeCol = "timestamp",
    dim: Annotated[int | None, typer.Option(help="Embedding size.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the data.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Rows per step.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Decoupled weight decay.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience (epochs).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto.")] = None,
    reg: Annotated[float | None, typer.Option(help="Regularisation (als, ease).")] = None,
    alpha: Annotated[float | None, typer.Option(help="Confidence scale (als).")] = None,
    iterations: Annotated[int | None, typer.Option(help="Alternating passes (als).")] = None,
    neighbours: Annotated[int | None, typer.Option(help="Neighbours kept per item (itemknn).")] = None,
    n_neg: Annotated[int | None, typer.Option(help="Sampled negatives per positive (bpr, bce).")] = None,
    half_life: Annotated[float | None, typer.Option(
        help="Recency weight of a user's items: half-life as a fraction of their history (itemknn, ease, rp3beta).",
    )] = None,
    max_len: Annotated[int | None, typer.Option(help="Latest items read per history (gru4rec, sasrec).")] = None,
    n_last: Annotated[int | None, typer.Option(help="Latest items summed over (knn_last).")] = None,
    cell: Annotated[str | None, typer.Option(help="gru or lstm (gru4rec).")] = None,
    loss: Annotated[str | None, typer.Option(
        help="Next-item loss (gru4rec, sasrec): softmax (full), sampled or gbce (with --n-neg negatives).")] = None,
    dropout: Annotated[float | None, typer.Option(help="Dropout (gru4rec, sasrec).")] = None,
    optimizer: Annotated[str | None, typer.Option(
        help="adamw, rowwise_adagrad or sparse_adam (gradient models; the sparse ones for large logs).")] = None,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="bfloat16 autocast (GPUs).")] = None,
    fast: Annotated[bool, typer.Option(
        help="mf only: the large-log settings of MatrixFactorization.fast() (other options override them).")] = False,
    implicit: Annotated[bool | None, typer.Option(
        "--implicit/--explicit", help="Treat the data as 0/1 feedback (default: as the model needs).")] = None,
    threshold: Annotated[float | None, typer.Option(help="With --implicit: ratings >= this are positives.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its checkpoint.")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any option of the model as KEY=VALUE (repeatable; `recotorch options MODEL` lists them), "
                      "e.g. --set grad_accum=2 --set schedule=constant.")] = None,
) -> None:
    """Train a model on an interactions file and save it as a model directory.

    --out must be a new path, an empty folder or an existing recotorch model directory (which is
    replaced); an existing file, a folder of other files, the current folder or a folder holding
    an input is refused before anything is read.
    """
    from recotorch.data.implicit import to_implicit

    options = only_given(dim=dim, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                         patience=patience, seed=seed, device=device, reg=reg, alpha=alpha,
                         iterations=iterations, neighbours=neighbours, n_neg=n_neg, half_life=half_life,
                         optimizer=optimizer, amp=amp, max_len=max_len, n_last=n_last, cell=cell, loss=loss,
                         dropout=dropout)
    checks.check_model_takes(model, options, MODELS)
    checks.check_values(options)
    if set_:
        assigned = parse_assignments(model, set_)
        for key in sorted(set(assigned) & set(options)):
            raise OptionError(f"--set {key}", f"is also given as --{key.replace('_', '-')}; give it once")
        options = {**options, **assigned}
    if fast and model != "mf":
        raise OptionError("--fast", f"is for --model mf, not {model!r}")
    if options.get("patience") is not None and valid is None:
        raise OptionError("--patience", "early stopping watches the validation loss: give --valid too")
    estimator = make_model(model, **({**FAST_SETTINGS, **options} if fast else options))
    if implicit is None:
        implicit = estimator.task == "ranking"
    if implicit and estimator.task == "rating":
        raise OptionError("--implicit", f"model {model!r} predicts ratings; use a ranking model with --implicit")
    sequential = estimator.supports("next_items")
    if implicit and valid is not None and not sequential:
        raise OptionError("--valid", f"is not used with 0/1 feedback (--implicit, or ranking model {model!r}); "
                                     "evaluate on a held-out file with `recotorch evaluate` instead")
    if not implicit and threshold is not None:
        raise OptionError("--threshold", "goes with --implicit (ratings >= threshold become positives)")
    gradient = estimator.supports("train_epochs")
    if resume and not gradient:
        raise OptionError("--resume", f"model {model!r} is not trained in epochs and has no checkpoint")
    check_model_dir_target(out_dir, inputs=[p for p in (train, valid) if p is not None])
    checkpoint = targets.checkpoint_target(out_dir)
    if resume and not targets.is_checkpoint_dir(checkpoint):
        raise OptionError("--resume", f"there is no checkpoint to resume from at {checkpoint}")

    data = read_table(train, user_col, item_col, rating_col, time_col)
    valid_data = read_table(valid, user_col, item_col, rating_col, time_col) if valid else None
    if half_life is not None:
        checks.check_timestamps_for_half_life(data.timestamp, train)
    if implicit:
        if threshold is not None and data.rating is None:
            raise OptionError("--threshold", f"{train} has no rating column to threshold "
                                             f"(--rating-col {rating_col or repr('')})")
        data = to_implicit(data, threshold=threshold)
        if len(data) == 0:
            raise OptionError("--threshold", f"no rating in {train} is >= {threshold}: nothing to train on")
        if valid_data is not None:
            valid_data = to_implicit(valid_data, threshold=threshold)
    if sequential and data.timestamp is None:
        raise OptionError("--time-col", f"model {model!r} orders each user's items by time, but {train} has no "
                                        f"time column {time_col!r}")
    if gradient:
        estimator.progress = progress_enabled() and is_main_process()
        if not resume and is_main_process():
            targets.remove_checkpoint(checkpoint)
        run = lambda: estimator.fit(data, valid_data, checkpoint_dir=checkpoint, resume=resume)  # noqa: E731
    else:
        run = lambda: estimator.fit(data, valid_data)  # noqa: E731
    try:
        _, seconds = timed(run)
    except KeyboardInterrupt:
        warn(f"interrupted; the last finished epoch is saved in {checkpoint}; "
             "run the same command with --resume to continue")
        raise typer.Exit(130) from None
    if not is_main_process():  # under torchrun only rank 0 writes the model
        return
    save(estimator, out_dir)
    targets.remove_checkpoint(checkpoint)
    out.print(f"fitted {model} on {len(data):,} rows ({data.n_users:,} users, {data.n_items:,} items) "
              f"in {seconds:.2f} s -> {out_dir}")


def predict(
    model_dir: Annotated[Path, typer.Argument(help="Model directory.")],
    pairs: Annotated[Path, typer.Argument(help="File of (user, item) pairs.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="CSV to write: user,item,prediction,known.")],
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    overwrite: Overwrite = False,
) -> None:
    """Predict a score for each (user, item) pair; unknown ids get the baseline and known=false."""
    targets.output_file(out_file, inputs=[pairs], overwrite=overwrite, models=[model_dir])
    model = load(model_dir)
    frame = read_id_columns(pairs, {user_col: "--user-col", item_col: "--item-col"})
    pred = model.predict(frame[user_col], frame[item_col])
    result = pl.DataFrame({"user": frame[user_col], "item": frame[item_col],
                           "prediction": pred.values, "known": pred.known})
    targets.write_csv(result, out_file)
    if pred.n_fallback:
        warn(f"warning: {pred.n_fallback:,} of {len(frame):,} pairs had a user or item "
             "unseen in training; they got the baseline prediction (known=false)")
    out.print(f"wrote {len(frame):,} predictions -> {out_file}", highlight=False)


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Model directory.")],
    test: Annotated[Path, typer.Argument(help="Held-out interactions.")],
    train: Annotated[Path | None, typer.Option(help="Training file: fits baselines to compare.")] = None,
    task: Annotated[str | None, typer.Option(help="'rating' (RMSE, MAE), 'ranking' (full-catalogue "
                                             "NDCG, Recall, ... @K) or 'next' (next-item leave-one-out: each test "
                                             "user's earliest test item, full ranking, history excluded; NDCG, HR, "
                                             "MRR @K); default: the model's task.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Ranking: test ratings >= this are relevant.")] = None,
    k: Annotated[list[int] | None, typer.Option("--k", help="Ranking cut-offs (repeatable).")] = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    time_col: TimeCol = "timestamp",
) -> None:
    """Score a saved model on a test file, beside the baselines when --train is given."""
    from recotorch.data.implicit import to_implicit
    from recotorch.evaluate.protocol import Report, rating_metrics
    from recotorch.evaluate.ranking import ranking_metrics_for

    if task is not None and task not in ("rating", "ranking", "next"):
        raise OptionError("--task", f"must be 'rating', 'ranking' or 'next', got {task!r}")
    for cut in k or ():
        checks.positive("--k", cut)
    model = load(model_dir)
    task = task or model.task
    if task == "next":
        return _evaluate_next(model, test, train, threshold, k, (user_col, item_col, rating_col, time_col))
    if task == "rating" and threshold is not None:
        raise OptionError("--threshold", "is for --task ranking (relevant = rating >= threshold)")
    if task == "rating" and k:
        raise OptionError("--k", "is for --task ranking (cut-offs of the top-K lists)")
    test_data = read_table(test, user_col, item_col, rating_col, time_col, rating_optional=task == "ranking")
    train_data = read_table(train, user_col, item_col, rating_col, time_col) if train else None
    if threshold is not None and test_data.rating is None:
        raise OptionError("--threshold", f"{test} has no rating column to threshold")
    report = Report(f"{model.name} on {test.name} ({len(test_data):,} rows), {task}")
    if task == "rating":
        baselines = ("mean", "bias")
        score = lambda m: rating_metrics(m, test_data)  # noqa: E731
    else:
        if threshold is not None:
            test_data = to_implicit(test_data, threshold=threshold)
        if train_data is not None and train_data.rating is not None and threshold is not None:
            train_data = to_implicit(train_data, threshold=threshold)
        baselines = ("pop",)
        score = lambda m: ranking_metrics_for(m, test_data, ks=tuple(k or (10, 20)))[0]  # noqa: E731
    report.rows.append({"model": model.name, **score(model)})
    for name in baselines if train_data is not None else ():
        report.rows.append({"model": name, **score(make_model(name).fit(train_data))})
    out.print(report.to_rich())


def lr_find(
    train: Annotated[Path, typer.Argument(help="Interactions file.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="PNG of loss against learning rate.")],
    model: ModelName = "mf",
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    time_col: TimeCol = "timestamp",
    overwrite: Overwrite = False,
) -> None:
    """Run the learning-rate finder and plot it; prints the suggested peak rate."""
    checks.check_model_takes(model, {}, MODELS)
    estimator = make_model(model)
    if not estimator.supports("train_epochs"):
        raise OptionError("--model", f"model {model!r} is not trained by gradient descent; no learning rate to find")
    targets.output_file(out_file, inputs=[train], overwrite=overwrite)
    if out_file.suffix.lower() not in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
        raise OptionError("--out", f"{out_file}: the plot's name must end in .png, .svg, .pdf or .jpg")
    data = read_table(train, user_col, item_col, rating_col, time_col)
    result = estimator.find_lr(data)
    targets.write_drawn(out_file, result.plot)
    out.print(f"suggested lr {result.suggestion:.2e}; plot -> {out_file}", highlight=False)


def _evaluate_next(model: Estimator, test: Path, train: Path | None, threshold: float | None, k: list[int] | None,
                   cols: tuple[str, str, str, str]) -> None:
    """`evaluate --task next`: the leave-one-out protocol, beside transitions and knn_last fitted on --train."""
    from recotorch.evaluate.protocol import Report
    from recotorch.models.sequential.protocol import next_item_metrics

    if not model.supports("next_items"):
        raise OptionError("--task", f"next needs a next-item model (sasrec, gru4rec, transitions, knn_last), "
                                    f"not {model.name!r}")
    if threshold is not None:
        raise OptionError("--threshold", "is not used by --task next (the target is each user's next item)")
    test_data = read_table(test, *cols)
    if test_data.timestamp is None:
        raise OptionError("--time-col", f"--task next picks each user's earliest test item by time, but {test} "
                                        f"has no time column {cols[3]!r}")
    ks = tuple(k or (10, 20))
    report = Report(f"{model.name} on {test.name} ({len(test_data):,} rows), next item")
    report.rows.append({"model": model.name, **next_item_metrics(model, test_data, ks)})
    if train is not None:
        train_data = read_table(train, *cols)
        if train_data.timestamp is None:
            raise OptionError("--train", f"{train} has no time column {cols[3]!r} to order the baselines' histories")
        for name in ("transitions", "knn_last"):
            report.rows.append({"model": name, **next_item_metrics(make_model(name).fit(train_data), test_data, ks)})
    out.print(report.to_rich())


def options(model: Annotated[str, typer.Argument(help=f"One of: {', '.join(sorted(MODELS))}.")]) -> None:
    """List a model's options (for `fit --set KEY=VALUE`): type, default, choices or range, help."""
    if model not in MODELS:
        raise OptionError("MODEL", f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    typer.echo(options_help(model))
