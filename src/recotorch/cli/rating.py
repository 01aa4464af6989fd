"""`fit`, `predict`, `evaluate` and `lr-find`: models from files, answers into files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer

from recotorch.artifacts import load, save
from recotorch.cli import checks, targets, verbosity
from recotorch.cli.catalogue import (
    ItemsCategoryCol,
    ItemsFile,
    ItemsIdCol,
    ItemsNameCol,
    attached_features,
    read_items,
)
from recotorch.cli.common import (
    Header,
    InFormat,
    InputFormat,
    ItemCol,
    Overwrite,
    RatingCol,
    Sep,
    Strict,
    TimeCol,
    UserCol,
    console,
    model_schema,
    only_given,
    out,
    read_data,
    read_ids,
    read_table,
    reading,
    timed,
    training_pairs_in,
    unread_columns,
    warn,
)
from recotorch.data.implicit import DEFAULT_WEIGHTS
from recotorch.data.interactions import Interactions
from recotorch.data.schema import SCHEMA_FILE, FileSchema
from recotorch.errors import InputFileError, OptionError
from recotorch.models import MODELS, make_model
from recotorch.models.base import Estimator
from recotorch.models.config import options_help, parse_assignments
from recotorch.outputs import check_model_dir_target
from recotorch.train.distributed import is_main_process
from recotorch.train.progress import labelled

ModelName = Annotated[str, typer.Option("--model", "-m", help=f"One of: {', '.join(sorted(MODELS))}.")]
FitModelName = Annotated[str, typer.Option("--model", "-m", help=f"One of: {', '.join(sorted(MODELS))}; or auto: "
                                           "search models and settings on a validation split of TRAIN "
                                           "(`recotorch tune`; the search goes to OUT.tune/).")]


def fit(
    train: Annotated[Path, typer.Argument(help="Interactions file (CSV, TSV, other delimited text, Parquet or "
                                          "JSON Lines; .gz/.zst too).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    model: FitModelName = "mf",
    valid: Annotated[Path | None, typer.Option(help="Validation file for early stopping.")] = None,
    user_col: UserCol = None,
    item_col: ItemCol = None,
    rating_col: RatingCol = None,
    time_col: TimeCol = None,
    sep: Sep = None,
    header: Header = None,
    fmt: InFormat = None,
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
        help="adamw, rowwise_adagrad or sparse_adam (gradient models; the sparse ones for large logs). mf, bpr and "
             "bce default to rowwise_adagrad, their fused (compiled with Numba on CPU) step; adamw or sparse_adam, "
             "--amp or --set grad_accum=N switch them to the generic autograd path.")] = None,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="bfloat16 autocast (GPUs).")] = None,
    fast: Annotated[bool | None, typer.Option("--fast/--no-fast",
        help="mf only: --fast (the default) MatrixFactorization.fast()'s settings, row-wise Adagrad through the "
             "fused step; --no-fast the course's AdamW one-cycle recipe (MatrixFactorization.course()) through the "
             "generic autograd path. Other options override either.")] = None,
    implicit: Annotated[bool | None, typer.Option(
        "--implicit/--explicit", help="Treat the data as 0/1 feedback (default: as the model needs).")] = None,
    threshold: Annotated[float | None, typer.Option(help="With --implicit: ratings >= this are positives.")] = None,
    weights: Annotated[str | None, typer.Option(
        help="Implicit feedback: how strongly each (user, item) pair counts. binary: 1; count: its rows "
             "(repeat purchases, plays); sum: the sum of its --rating-col values (quantities, play counts); "
             f"log1p: log(1 + sum). Default: the model's, {DEFAULT_WEIGHTS} (als: count; "
             "benchmarks/results/weights.md).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its checkpoint.")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any option of the model as KEY=VALUE (repeatable; `recotorch options MODEL` lists them), "
                      "e.g. --set grad_accum=2 --set schedule=constant.")] = None,
    items: ItemsFile = None,
    items_id_col: ItemsIdCol = None,
    items_name_col: ItemsNameCol = None,
    items_category_col: ItemsCategoryCol = None,
    budget: Annotated[float | None, typer.Option(
        help="--model auto: seconds for the search and refit (default: sized to the data).")] = None,
) -> None:
    """Train a model on an interactions file and save it as a model directory.

    --out must be a new path, an empty folder or an existing recotorch model directory (which is
    replaced); an existing file, a folder of other files, the current folder or a folder holding
    an input is refused before anything is read.
    """
    from recotorch.data.implicit import WEIGHTS, to_implicit

    options = only_given(dim=dim, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                         patience=patience, seed=seed, device=device, reg=reg, alpha=alpha,
                         iterations=iterations, neighbours=neighbours, n_neg=n_neg, half_life=half_life,
                         optimizer=optimizer, amp=amp, max_len=max_len, n_last=n_last, cell=cell, loss=loss,
                         dropout=dropout)
    if model == "auto":
        from recotorch.cli.tune import fit_auto

        for flag, value in (("--sep", sep), ("--no-header" if header is False else "--header", header),
                            ("--format", fmt)):
            if value is not None:
                raise OptionError(flag, "is not taken by --model auto yet; convert the file to CSV with a header")

        chosen = {f"--{k.replace('_', '-')}": v for k, v in options.items() if k not in ("seed", "device")}
        return fit_auto(train, out_dir, budget=budget, seed=seed, device=device, implicit=implicit,
                        threshold=threshold, resume=resume, cols=(user_col, item_col, rating_col, time_col),
                        refused={**chosen, "--set": set_, "--valid": valid, "--items": items,
                                 "--fast" if fast is not False else "--no-fast": fast is not None})
    if budget is not None:
        raise OptionError("--budget", "is for --model auto (the search's seconds)")
    checks.check_model_takes(model, options, MODELS)
    checks.check_values(options)
    checks.check_model_values(model, options, MODELS)
    if set_:
        assigned = parse_assignments(model, set_)
        for key in sorted(set(assigned) & set(options)):
            raise OptionError(f"--set {key}", f"is also given as --{key.replace('_', '-')}; give it once")
        options = {**options, **assigned}
    if fast is not None and model != "mf":
        raise OptionError("--fast" if fast else "--no-fast", f"is for --model mf, not {model!r}")
    if options.get("patience") is not None and valid is None:
        raise OptionError("--patience", "early stopping watches the validation loss: give --valid too")
    settings = {}
    if fast is not None:
        from recotorch.models.mf import COURSE_SETTINGS, FAST_SETTINGS  # only MF's flags need MF's module

        settings = FAST_SETTINGS if fast else COURSE_SETTINGS
    estimator = make_model(model, **{**settings, **options})
    estimator.prepare_fit()  # compiled kernels load on a thread while the options are checked and the data read
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
    if weights is not None and weights not in WEIGHTS:
        raise OptionError("--weights", f"must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if not implicit and weights is not None:
        raise OptionError("--weights", f"sets the confidence of implicit feedback; model {model!r} learns ratings "
                                       "(--explicit): drop --weights")
    if implicit is False and estimator.task == "ranking" and not sequential:
        raise OptionError("--explicit", f"ranking model {model!r} learns from implicit feedback; choose how strongly "
                                        f"each pair counts with --weights ({'|'.join(WEIGHTS)})")
    if implicit and weights is not None and estimator.DEFAULT_WEIGHTS is None:
        raise OptionError("--weights", f"model {model!r} does not use weights (every pair counts the same): "
                                       "drop --weights")
    if implicit and weights is None:
        weights = estimator.DEFAULT_WEIGHTS or "binary"  # the model's own default, recorded in the schema
    gradient = estimator.supports("train_epochs")
    if resume and not gradient:
        raise OptionError("--resume", f"model {model!r} is not trained in epochs and has no checkpoint")
    check_model_dir_target(out_dir, inputs=[p for p in (train, valid, items) if p is not None])
    checkpoint = targets.checkpoint_target(out_dir)
    if resume and not targets.is_checkpoint_dir(checkpoint):
        raise OptionError("--resume", f"there is no checkpoint to resume from at {checkpoint}")
    train_reading = reading(train, {"user": user_col, "item": item_col, "rating": rating_col, "timestamp": time_col},
                            sep=sep, header=header, fmt=fmt)
    item_name = train_reading.columns["item"]
    catalogue = read_items(items, items_id_col, items_name_col, items_category_col,
                           item_col=item_name if isinstance(item_name, str) else "item")

    data = read_data(train_reading)
    if unread := unread_columns(train_reading):
        warn(f"note: {train}: column(s) {', '.join(map(repr, unread[:12]))}{', ...' if len(unread) > 12 else ''} "
             "not read (choose them with --rating-col / --time-col)")
    schema = train_reading.schema(data, implicit=implicit, threshold=threshold, weights=weights)
    valid_data = read_data(reading(valid, {"user": user_col, "item": item_col, "rating": rating_col,
                                           "timestamp": time_col}, sep=sep, header=header, fmt=fmt,
                                   schema=schema)) if valid else None
    if half_life is not None:
        checks.check_timestamps_for_half_life(data.timestamp, train)
    if implicit:
        if threshold is not None and data.rating is None:
            raise OptionError("--threshold", f"{train} has no rating column to threshold "
                                             f"(--rating-col {rating_col or repr('rating')})")
        data = to_implicit(data, threshold=threshold, weights=weights)
        if len(data) == 0:
            raise OptionError("--threshold", f"no rating in {train} is >= {threshold}: nothing to train on")
        if valid_data is not None:
            valid_data = to_implicit(valid_data, threshold=threshold, weights=weights)
    if sequential and data.timestamp is None:
        raise OptionError("--time-col", f"model {model!r} orders each user's items by time, but {train} has no "
                                        f"time column {time_col or 'timestamp'!r} (name it with --time-col)")
    if catalogue is not None:  # names and categories, stored with the model as its item features
        data = data.with_features(item_features=attached_features(catalogue, data.item_features, data.items))
    if gradient:
        estimator.progress = verbosity.progress_wanted() and is_main_process()
        if not resume and is_main_process():
            targets.remove_checkpoint(checkpoint)
        run = lambda: estimator.fit(data, valid_data, checkpoint_dir=checkpoint, resume=resume)  # noqa: E731
    else:
        run = lambda: estimator.fit(data, valid_data)  # noqa: E731
    try:
        with labelled(model):
            _, seconds = timed(run)
    except KeyboardInterrupt:
        warn(f"interrupted; the last finished epoch is saved in {checkpoint}; "
             "run the same command with --resume to continue")
        raise typer.Exit(130) from None
    if not is_main_process():  # under torchrun only rank 0 writes the model
        return
    save(estimator, out_dir, files={SCHEMA_FILE: schema.to_bytes()})
    targets.remove_checkpoint(checkpoint)
    what = f"{len(data):,} rows"
    if implicit:
        what = f"{len(data):,} (user, item) pairs, weights {weights}"
    out.print(f"fitted {model} on {what} ({data.n_users:,} users, {data.n_items:,} items) "
              f"in {seconds:.2f} s -> {out_dir}", highlight=False)


def predict(
    model_dir: Annotated[Path, typer.Argument(help="Model directory.")],
    pairs: Annotated[Path, typer.Argument(help="File of (user, item) pairs.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Table to write: user,item,prediction,known; a "
                                           "file (.csv, .parquet, .jsonl) or - for CSV on standard output.")],
    user_col: UserCol = None,
    item_col: ItemCol = None,
    fmt: Annotated[str | None, targets.FormatOption] = None,
    sep: Sep = None,
    header: Header = None,
    input_format: InputFormat = None,
    overwrite: Overwrite = False,
) -> None:
    """Predict a score for each (user, item) pair; unknown ids get the baseline and known=false.

    PAIRS is read with the columns and layout the model was fitted with, unless flags say otherwise.
    """
    target = targets.table_target(out_file, fmt, inputs=[pairs], overwrite=overwrite, models=[model_dir])
    assert target is not None  # --out is required
    model = load(model_dir)
    frame = read_ids(reading(pairs, {"user": user_col, "item": item_col}, sep=sep, header=header, fmt=input_format,
                             schema=model_schema(model, model_dir), format_flag="--input-format"))
    pred = model.predict(frame["user"], frame["item"])
    result = pl.DataFrame({"user": frame["user"], "item": frame["item"],
                           "prediction": pred.values, "known": pred.known})
    target.write(result)
    if pred.n_fallback:
        warn(f"warning: {pred.n_fallback:,} of {len(frame):,} pairs had a user or item "
             "unseen in training; they got the baseline prediction (known=false)")
    (console if target.to_stdout else out).print(f"wrote {len(frame):,} predictions -> {target}", highlight=False)


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
    user_col: UserCol = None,
    item_col: ItemCol = None,
    rating_col: RatingCol = None,
    time_col: TimeCol = None,
    sep: Sep = None,
    header: Header = None,
    fmt: InFormat = None,
    strict: Strict = False,
    include_seen: Annotated[bool, typer.Option(
        help="Ranking: training items may be recommended and count as hits (a shop's next purchases include "
             "repeat purchases), as recommend --include-seen; the overlap is then noted, not warned about.")] = False,
) -> None:
    """Score a saved model on a test file, beside the baselines when --train is given.

    Files are read with the columns and layout the model was fitted with, unless flags say
    otherwise. Test rows whose (user, item) pair the model was trained on are counted and
    warned about (--strict: refused), since they make any score look better than it is;
    with --include-seen they are repeat interactions that the ranking may hit.
    """
    from recotorch.data.implicit import to_implicit
    from recotorch.evaluate.protocol import Report, rating_metrics
    from recotorch.evaluate.ranking import ranking_metrics_for

    if task is not None and task not in ("rating", "ranking", "next"):
        raise OptionError("--task", f"must be 'rating', 'ranking' or 'next', got {task!r}")
    for cut in k or ():
        checks.positive("--k", cut)
    model = load(model_dir)
    task = task or model.task
    cols = (user_col, item_col, rating_col, time_col)
    layout = {"sep": sep, "header": header, "fmt": fmt, "schema": model_schema(model, model_dir)}
    if include_seen and task != "ranking":
        raise OptionError("--include-seen", f"is for --task ranking, not {task}")
    if include_seen and strict:
        raise OptionError("--strict", "refuses test pairs seen in training, which --include-seen scores: give one")
    if task == "next":
        if strict:
            raise OptionError("--strict", "is for --task rating or ranking (a next item may repeat a history's)")
        return _evaluate_next(model, test, train, threshold, k, cols, layout)
    if task == "rating" and threshold is not None:
        raise OptionError("--threshold", "is for --task ranking (relevant = rating >= threshold)")
    if task == "rating" and k:
        raise OptionError("--k", "is for --task ranking (cut-offs of the top-K lists)")
    test_data = read_table(test, *cols, rating_optional=task == "ranking", **layout)
    _check_overlap(model, test_data, test, strict, repeats=include_seen, ranking=task == "ranking")
    train_data = read_table(train, *cols, **layout) if train else None
    if threshold is not None and test_data.rating is None:
        raise OptionError("--threshold", f"{test} has no rating column to threshold")
    if task == "ranking" and threshold is None:
        threshold = _fitted_threshold(layout["schema"], test_data, test)
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
        score = lambda m: ranking_metrics_for(m, test_data, ks=tuple(k or (10, 20)),  # noqa: E731
                                              exclude_seen=not include_seen)[0]
    report.rows.append({"model": model.name, **score(model)})
    for name in baselines if train_data is not None else ():
        report.rows.append({"model": name, **score(make_model(name).fit(train_data))})
    out.print(report.to_rich())


def _fitted_threshold(schema: FileSchema | None, test_data: Interactions, test: Path) -> float | None:
    """The --threshold the model was fitted with, for a test file with ratings (said on stderr): a model
    trained on ratings >= 4 as positives is scored on the same relevance unless --threshold says otherwise."""
    fitted = schema.options.get("threshold") if schema is not None else None
    if fitted is None or test_data.rating is None:
        return None
    warn(f"note: relevant = {test.name} ratings >= {fitted:g}, the threshold the model was fitted with "
         "(--threshold to change)")
    return float(fitted)


def lr_find(
    train: Annotated[Path, typer.Argument(help="Interactions file.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="PNG of loss against learning rate.")],
    model: ModelName = "mf",
    user_col: UserCol = None,
    item_col: ItemCol = None,
    rating_col: RatingCol = None,
    time_col: TimeCol = None,
    sep: Sep = None,
    header: Header = None,
    fmt: InFormat = None,
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
    data = read_table(train, user_col, item_col, rating_col, time_col, sep=sep, header=header, fmt=fmt)
    result = estimator.find_lr(data)
    targets.write_drawn(out_file, result.plot)
    out.print(f"suggested lr {result.suggestion:.2e}; plot -> {out_file}", highlight=False)


def _evaluate_next(model: Estimator, test: Path, train: Path | None, threshold: float | None, k: list[int] | None,
                   cols: tuple[str | None, ...], layout: dict[str, Any]) -> None:
    """`evaluate --task next`: the leave-one-out protocol, beside transitions and knn_last fitted on --train."""
    from recotorch.evaluate.protocol import Report
    from recotorch.models.sequential.protocol import next_item_metrics

    if not model.supports("next_items"):
        raise OptionError("--task", f"next needs a next-item model (sasrec, gru4rec, transitions, knn_last), "
                                    f"not {model.name!r}")
    if threshold is not None:
        raise OptionError("--threshold", "is not used by --task next (the target is each user's next item)")
    test_data = read_table(test, *cols, **layout)
    if test_data.timestamp is None:
        raise OptionError("--time-col", f"--task next picks each user's earliest test item by time, but {test} "
                                        f"has no time column {cols[3] or 'timestamp'!r}")
    ks = tuple(k or (10, 20))
    report = Report(f"{model.name} on {test.name} ({len(test_data):,} rows), next item")
    report.rows.append({"model": model.name, **next_item_metrics(model, test_data, ks)})
    if train is not None:
        train_data = read_table(train, *cols, **layout)
        if train_data.timestamp is None:
            raise OptionError("--train", f"{train} has no time column {cols[3] or 'timestamp'!r} to order the "
                                         "baselines' histories")
        for name in ("transitions", "knn_last"):
            report.rows.append({"model": name, **next_item_metrics(make_model(name).fit(train_data), test_data, ks)})
    out.print(report.to_rich())


def _check_overlap(model: Estimator, test_data: Interactions, test: Path, strict: bool,
                   repeats: bool = False, ranking: bool = False) -> None:
    """Warn (--strict: refuse) when test rows are (user, item) pairs the model was trained on.

    repeats (--include-seen): they are repeat interactions the ranking may hit; a note says how many."""
    n_overlap = training_pairs_in(model, test_data)
    if not n_overlap:
        return
    share = n_overlap / len(test_data)
    what = (f"{n_overlap:,} of the {len(test_data):,} (user, item) pairs of {test} ({share:.1%}) are pairs the "
            "model was trained on")
    if repeats:
        warn(f"note: {what}: repeats, which --include-seen lets the ranking hit")
        return
    if strict:
        raise InputFileError(f"{what} (--strict); hold them out of training, e.g. with `recotorch split`")
    hint = ("; if they are repeat purchases, --include-seen lets the ranking hit them (else they are masked "
            "and never hit)") if ranking else ""
    warn(f"warning: {what}; scores on them are not a fair test (hold them out, e.g. with `recotorch split`; "
         f"--strict makes this an error{hint})")


def options(model: Annotated[str, typer.Argument(help=f"One of: {', '.join(sorted(MODELS))}.")]) -> None:
    """List a model's options (for `fit --set KEY=VALUE`): type, default, choices or range, help."""
    if model not in MODELS:
        raise OptionError("MODEL", f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    typer.echo(options_help(model))
