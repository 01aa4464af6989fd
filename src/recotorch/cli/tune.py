"""`recotorch tune` and `recotorch fit --model auto`: search model families and settings on a validation
split carved from the training file, refit the winner on all of it (docs/tuning.md)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from recotorch.cli import verbosity
from recotorch.cli.common import ItemCol, RatingCol, TimeCol, UserCol, read_table, warn
from recotorch.data.interactions import Interactions
from recotorch.errors import OptionError
from recotorch.outputs import check_model_dir_target
from recotorch.tune.folder import check_tune_target, is_tune_folder, read_record

WORKER_WAIT_S = 120.0  # how long --worker waits for the search it joins to be created


def default_budget(rows: int) -> float:
    """Seconds for a search sized to the data: rows / 500, at least 2 minutes, at most an hour."""
    return float(min(3600.0, max(120.0, rows / 500)))


def default_memory_limit() -> int:
    """Half the machine's physical memory (the limit under which a model is thought able to fit)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _echo(line: str) -> None:
    if verbosity.progress_wanted():
        warn(line)


COUNT_MAX = 100  # whole numbers above this in the rating column are counts (plays, clicks), not a rating scale


def _infer_task(data: Interactions, implicit: bool | None, train: Path) -> str:
    """ranking for 0/1 data (--implicit, no rating column, or a column of counts), else rating; a column of
    counts is said, since the file named it a rating."""
    if implicit or data.rating is None:
        return "ranking"
    r = data.rating
    counts = len(r) > 0 and float(r.min()) >= 0 and float(r.max()) > COUNT_MAX and bool((r == r.round()).all())
    if implicit is None and counts:
        warn(f"{train}: the rating column holds whole numbers up to {float(r.max()):,.0f}, counts rather than a "
             "rating scale: searching --task ranking (as with --implicit: the counts weigh the pairs); "
             "give --explicit (tune: --task rating) to predict the numbers instead")
        return "ranking"
    return "rating"


def read_training(train: Path, cols: tuple[str, str, str, str], task: str | None, threshold: float | None,
                  implicit: bool | None) -> tuple[Interactions, str]:
    """The training file as the task needs it (0/1 rows for ranking, `--threshold` applied)."""
    from recotorch.data.implicit import to_implicit

    data = read_table(train, *cols)
    task = task or _infer_task(data, implicit, train)
    if threshold is not None and task != "ranking":
        raise OptionError("--threshold", "goes with --task ranking (ratings >= threshold become positives)")
    if task == "ranking" and (data.rating is not None or threshold is not None):
        if threshold is not None and data.rating is None:
            raise OptionError("--threshold", f"{train} has no rating column to threshold")
        data = to_implicit(data, threshold=threshold)
        if len(data) == 0:
            raise OptionError("--threshold", f"no rating in {train} is >= {threshold}: nothing to search on")
    return data, task


def run_tune(train: Path, folder: Path, model_dir: Path | None, *, task: str | None, budget: float | None,
             trials: int | None, seed: int, models: str | None, memory_gb: float | None, device: str | None,
             storage: str | None, resume: bool, worker: bool, threshold: float | None, implicit: bool | None,
             cols: tuple[str, str, str, str]) -> Any:
    """Check every option and path, read TRAIN, search, refit; shared by `tune` and `fit --model auto`."""
    from recotorch.tune import Settings, run_search

    if task is not None and task not in ("rating", "ranking", "next"):
        raise OptionError("--task", f"must be rating, ranking or next, got {task!r}")
    if budget is not None and not budget > 0:
        raise OptionError("--budget", f"must be a positive number of seconds, got {budget}")
    if trials is not None and trials < 1:
        raise OptionError("--trials", f"must be >= 1, got {trials}")
    if memory_gb is not None and not memory_gb > 0:
        raise OptionError("--memory-gb", f"must be positive, got {memory_gb}")
    if resume and worker:
        raise OptionError("--worker", "joins a running search; --resume continues a stopped one: give one")
    names = tuple(m.strip() for m in models.split(",") if m.strip()) if models else None
    if models is not None and not names:
        raise OptionError("--models", "give model names separated by commas, e.g. --models mf,bias")
    if worker:
        _wait_for(folder)
    existing = check_tune_target(folder, inputs=[train], resume=resume or worker)
    if model_dir is not None:
        check_model_dir_target(model_dir, inputs=[train])
    if existing:
        rec = read_record(folder)
        if task is not None and task != rec["task"]:
            raise OptionError("--task", f"the search in {folder} is for --task {rec['task']}")
        task = rec["task"]
        trials = trials if trials is not None else rec.get("trials_limit")
    data, task = read_training(train, cols, task, threshold, implicit)
    if budget is None and trials is None:
        budget = default_budget(len(data))
        _echo(f"budget {budget:.0f} s (sized to {len(data):,} rows; --budget or --trials to choose)")
    source = {"path": str(train), "user_col": cols[0], "item_col": cols[1], "rating_col": cols[2],
              "time_col": cols[3], "threshold": threshold}
    settings = Settings(task=task, folder=folder, model_dir=None if worker else model_dir, budget=budget,
                        trials=trials, seed=seed,
                        memory_limit=int(memory_gb * 2**30) if memory_gb else default_memory_limit(),
                        models=names, device=device, storage=storage, resume=resume, worker=worker,
                        source=source, echo=_echo)
    try:
        result = run_search(data, settings)
    except KeyboardInterrupt:
        warn(f"interrupted; the search so far is in {folder}: run the same command with --resume to continue")
        raise typer.Exit(130) from None
    if result is not None:
        shown = " ".join(f"{k}={v}" for k, v in result.params.items() if k not in ("seed", "device"))
        typer.echo(f"chosen {result.model} {shown or '(defaults)'}: validation {result.metric} {result.value:.4f} "
                   f"(best of {result.n_trials} trials) -> {result.model_dir}; report {folder / 'report.md'}")
    return result


def _wait_for(folder: Path) -> None:
    limit = time.monotonic() + WORKER_WAIT_S
    if not is_tune_folder(folder):
        _echo(f"worker: waiting for a search in {folder}")
    while not is_tune_folder(folder):
        if time.monotonic() > limit:
            raise OptionError("--worker", f"no search appeared in {folder} within {WORKER_WAIT_S:.0f} s; "
                                          "start it with `recotorch tune ... --out` first")
        time.sleep(0.5)


def tune(
    train: Annotated[Path, typer.Argument(help="Interactions file (CSV, TSV or Parquet); the only data read.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the search: study, search.json, "
                                          "leaderboard, report and plots, the refitted model in OUT/model.")],
    task: Annotated[str | None, typer.Option(help="rating (RMSE on a random 10%), ranking (NDCG@20 on each "
                                             "user's latest 20%, or a random 20% per user without timestamps) "
                                             "or next (NDCG@10 of each user's last item); default: rating when "
                                             "the file has ratings and --implicit is not given, else ranking "
                                             "(also for a rating column of whole numbers above 100: counts).")]
    = None,
    budget: Annotated[float | None, typer.Option(help="Seconds for this run, refit included (default: sized "
                                                 "to the data when --trials is not given).")] = None,
    trials: Annotated[int | None, typer.Option(help="Trials in the whole study (all workers and runs); the "
                                               "same seed and trials give the same search.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the validation split, the sampler and every model.")] = 0,
    models: Annotated[str | None, typer.Option(help="Model families to search, comma-separated (default: "
                                               "the task's candidates, docs/tuning.md).")] = None,
    memory_gb: Annotated[float | None, typer.Option(help="Skip models whose fit needs more memory than "
                                                    "this (default: half the machine's memory).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto, for models that take a device.")] = None,
    storage: Annotated[str | None, typer.Option(help="Where the study lives: a PostgreSQL/SQLite URL or a "
                                                "journal file on a disk every worker sees (default: "
                                                "OUT/study.journal).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the stopped search in --out.")] = False,
    worker: Annotated[bool, typer.Option(help="Join the search in --out as an extra worker: run trials "
                                         "until --trials are claimed or --budget ends; no refit.")] = False,
    implicit: Annotated[bool | None, typer.Option("--implicit/--explicit",
                                                  help="Treat the data as 0/1 feedback (--task ranking).")] = None,
    threshold: Annotated[float | None, typer.Option(help="--task ranking: ratings >= this are positives.")] = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    time_col: TimeCol = "timestamp",
) -> None:
    """Find the best model and settings for TRAIN: search model families and hyper-parameters with Optuna
    on a validation split carved from TRAIN, prune bad trials early, refit the winner on all of TRAIN.

    --out must be a new path or an empty folder (or, with --resume / --worker, a folder holding a search);
    the model is written to OUT/model. No test data is read: evaluate the model afterwards with
    `recotorch evaluate OUT/model test.csv`.
    """
    if implicit is False and task == "ranking":
        raise OptionError("--explicit", "contradicts --task ranking")
    if implicit and task not in (None, "ranking"):
        raise OptionError("--implicit", f"goes with --task ranking, not --task {task}")
    run_tune(train, out_dir, out_dir / "model", task=task, budget=budget, trials=trials, seed=seed, models=models,
             memory_gb=memory_gb, device=device, storage=storage, resume=resume, worker=worker,
             threshold=threshold, implicit=implicit, cols=(user_col, item_col, rating_col, time_col))


def fit_auto(train: Path, out_dir: Path, *, budget: float | None, seed: int | None, device: str | None,
             implicit: bool | None, threshold: float | None, resume: bool, cols: tuple[str, str, str, str],
             refused: dict[str, Any]) -> None:
    """`fit --model auto`: the search of `tune` with a budget sized to the data; the model goes to --out
    and the search to OUT.tune/ beside it."""
    for option, value in refused.items():
        if value not in (None, False, [], ()):
            raise OptionError(option, "is chosen by the search with --model auto; give a model name to set it, "
                                      "or use `recotorch tune --models ...`")
    folder = out_dir.with_name(out_dir.name + ".tune")
    run_tune(train, folder, out_dir, task="ranking" if implicit else None, budget=budget, trials=None,
             seed=seed or 0, models=None, memory_gb=None, device=device, storage=None, resume=resume,
             worker=False, threshold=threshold, implicit=implicit, cols=cols)
