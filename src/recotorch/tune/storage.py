"""The study's storage, shared by every worker, and exact claims of trial slots.

`--storage` may be a PostgreSQL / MySQL / SQLite URL (Optuna's RDB storage) or the path of an Optuna
journal file (on a disk all workers see); by default the journal file `study.journal` in the tune
folder. A worker claims a trial under an exclusive lock on `.claims.lock` in the tune folder: it
counts the trials already claimed and asks for a new one only while fewer than `--trials`, so
workers sharing the folder finish exactly that many, none lost or run twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from recotorch.errors import OptionError

URL_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")
REQUEUED = "requeued_from"  # user attr of a trial queued again for one whose worker stopped
QUEUED_ATTRS = ("defaults_of", "overrides", "stack", "scheduled")  # user attrs a queued trial carries into its run


def optuna_module() -> Any:
    """Optuna, quiet (warnings only, no experimental-feature notes); `OptionError` when it is not installed."""
    try:
        import optuna
    except ImportError as exc:  # the `tune` extra is not installed
        raise OptionError("--model auto / tune", "needs Optuna: pip install 'recotorch[tune]'") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_storage(spec: str | None, folder: Path) -> tuple[Any, str]:
    """(Optuna storage, how it is described in the record) for `--storage` (None: the folder's journal)."""
    optuna = optuna_module()
    from recotorch.tune.folder import JOURNAL

    if spec and spec.split(":", 1)[0].split("+", 1)[0] in URL_SCHEMES and "://" in spec:
        try:
            return optuna.storages.RDBStorage(spec), spec.split("@")[-1] if "@" in spec else spec
        except Exception as exc:  # a driver missing, a server not answering: the user's setting
            raise OptionError("--storage", f"cannot open {spec.split('@')[-1]}: {exc}") from None
    path = Path(spec) if spec else folder / JOURNAL
    if path.is_dir():
        raise OptionError("--storage", f"{path} is a folder; give a journal file name or a database URL")
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(path))), f"journal file {path}"


def sampler(seed: int, index: int, n_startup: int) -> Any:
    """TPE seeded by (search seed, claim index): the same history gives the same next trial, also after --resume."""
    optuna = optuna_module()
    return optuna.samplers.TPESampler(seed=(seed * 1_000_003 + index) % 2**32, n_startup_trials=n_startup,
                                      multivariate=True, group=True, constant_liar=True)


def counted(study: Any) -> list[Any]:
    """Trials that take a slot: claimed ones (running or finished), not queued ones, and not those whose
    worker stopped (their parameters were queued again)."""
    state = optuna_module().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    replaced = {t.user_attrs[REQUEUED] for t in trials if REQUEUED in t.user_attrs}
    return [t for t in trials if t.state != state.WAITING and t.number not in replaced]


@contextlib.contextmanager
def claims_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on the folder's claims file (flock; held by one worker at a time)."""
    from recotorch.tune.folder import CLAIMS

    fd = os.open(folder / CLAIMS, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def claim(study: Any, folder: Path, limit: int | None, seed: int, n_startup: int,
          before: Callable[[int], None] | None = None) -> Any | None:
    """A new trial of `study`, or None once `limit` trials are claimed (exact across workers sharing `folder`).

    `before(index)` runs under the same lock just before the trial is asked for (it may queue one)."""
    with claims_lock(folder):
        index = len(counted(study))
        if limit is not None and index >= limit:
            return None
        if before is not None:
            before(index)
        study.sampler = sampler(seed, index, n_startup)
        return study.ask()


def family(trial: Any) -> str:
    """The model family of a trial (recorded when it ran; else its queued defaults, else its sampled choice)."""
    return trial.user_attrs.get("model") or trial.user_attrs.get("defaults_of") or trial.params.get("model", "?")


def queued_attrs(trial: Any) -> dict[str, Any]:
    """What a queued trial was given beyond its parameters (its family's defaults, a blend's components)."""
    return {k: v for k, v in trial.user_attrs.items() if k in QUEUED_ATTRS}


def requeue_stale(study: Any) -> int:
    """Mark trials left running by a stopped search as failed (interrupted) and queue their parameters again."""
    state = optuna_module().trial.TrialState
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == state.RUNNING]
    for t in stale:
        study.tell(t.number, state=state.FAIL, skip_if_finished=True)
        study.enqueue_trial(dict(t.params), user_attrs={**queued_attrs(t), REQUEUED: t.number})
    return len(stale)
