"""The search: carve the validation split, run trials (each a model family and its settings), prune
bad ones early, refit the best on all of the training data, write the record.

The first trials run every candidate at its defaults (queued in candidate order); then the TPE
sampler proposes a family (among those with something to search) and its settings. A trial of a
model trained in epochs (`model.supports("train_epochs")`) with at least eight epochs first fits a
quarter of them (with its own schedule) and is pruned there when that score is worse than the
median of the quarter scores of the same family's earlier trials (three or more). Defaults are never
pruned. Three slots in four go to each family in turn until each has had three sampled trials,
then to the three leading families in turn; the fourth goes to the sampler.
For ratings, once the families have run and time or trials remain for one more, a blend of each
leading family's best settings (`blend`, weights learnt on held-out rows) is tried as well.
The refitted trial is the best one, unless a family's defaults score within `TIE` (0.1%) of it: then
the best defaults trial (a validation split cannot tell such differences from noise).

Every trial is seeded (`--seed`) and the sampler is seeded by (seed, trial slot), so a search of N
trials in one worker is the same search every time; a budget in seconds ends wherever the
machine's speed puts it.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recotorch.data.interactions import Interactions
from recotorch.errors import OptionError, RecotorchError
from recotorch.models import MODELS, make_model
from recotorch.models.config import describe
from recotorch.tune import record, storage
from recotorch.tune.candidates import choose, distinct_times
from recotorch.tune.folder import MARKER, read_record
from recotorch.tune.measure import Measured
from recotorch.tune.protocol import Protocol, carve
from recotorch.tune.space import default_point, searchable, suggest
from recotorch.tune.storage import family

RUNG = 4  # the short fit runs epochs // RUNG epochs
MIN_RUNG_EPOCHS = 8  # fewer epochs: no short fit (a one-epoch run says little about a few-epoch one)
PRUNE_AFTER = 3  # same-family quarter scores needed before pruning
EXPLORE = 3  # sampled trials every family gets before the leaders share the scheduled slots
LEADERS = 3  # families that share the scheduled slots
STALE = 8  # a family whose last STALE sampled trials did not improve its best gives its turns to the next
FREE_EVERY = 4  # every fourth slot the sampler also picks the family
STACK = "blend"  # the model that blends the leading families (rating task)
STACK_SIZE = 5  # families blended
LONGEST = 0.25  # a sampled trial expected to take more than this share of --budget is skipped
TIE = 1e-3  # a tuned trial must beat the best defaults trial by more than this share of its score to be chosen
STUDY = "recotorch"


@dataclass
class Settings:
    """What one run of the search does (the CLI fills it from its options)."""

    task: str
    folder: Path  # the tune folder: study, record, report
    model_dir: Path | None  # where the refitted winner is saved (None: not refitted, e.g. a worker)
    budget: float | None = None  # seconds for this run, refit included
    trials: int | None = None  # trials in the whole study (all workers, all runs)
    seed: int = 0
    memory_limit: int = 8 << 30
    models: tuple[str, ...] | None = None
    device: str | None = None
    storage: str | None = None
    resume: bool = False
    worker: bool = False
    source: dict[str, Any] = field(default_factory=dict)  # the training file and how it was read
    echo: Callable[[str], None] = print


@dataclass
class SearchResult:
    """The chosen model and settings, its validation score, and where the refitted model went."""

    model: str
    params: dict[str, Any]
    value: float
    metric: str
    trial: int
    n_trials: int
    refit_seconds: float | None
    model_dir: Path | None


def fingerprint(data: Interactions) -> str:
    """SHA-256 of the interactions as read (indices, ratings, times, vocab sizes): the same file gives the same."""
    h = hashlib.sha256(f"{len(data)}:{data.n_users}:{data.n_items}".encode())
    for t in (data.user_idx, data.item_idx, data.rating, data.timestamp):
        if t is not None:
            h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def run_search(data: Interactions, settings: Settings) -> SearchResult | None:
    """Search, then (unless a worker) refit the best trial on all of `data`; None for a worker."""
    start = time.perf_counter()
    st = settings
    optuna = storage.optuna_module()
    digest = fingerprint(data)
    if st.resume or st.worker:
        previous = read_record(st.folder)
        _check_same(previous, st, digest)
        st.task, st.seed = previous["task"], previous["seed"]
        protocol = carve(st.task, data, st.seed)
        candidates, skipped = previous["candidates"], previous["skipped"]
    else:
        previous = None
        protocol = carve(st.task, data, st.seed)  # first: it names what the data lacks for the task
        candidates, skipped = choose(st.task, data, st.memory_limit, st.models)
    timestamps = distinct_times(data)
    store, described = storage.open_storage(st.storage, st.folder)
    n_startup = len(candidates) + 4
    nop = optuna.pruners.NopPruner()  # pruning is decided per family here (`_Runner.prune`)
    if previous is None:
        study = optuna.create_study(storage=store, study_name=STUDY, direction=protocol.direction,
                                    sampler=storage.sampler(st.seed, 0, n_startup), pruner=nop)
        for name in candidates:
            study.enqueue_trial(default_point(name, timestamps=timestamps), user_attrs={"defaults_of": name})
        rec = record.new(protocol, st, candidates, skipped, digest, described, data)
        record.write(st.folder, rec)
    else:
        study = optuna.load_study(storage=store, study_name=STUDY, pruner=nop,
                                  sampler=storage.sampler(st.seed, 0, n_startup))
        rec = previous
    if not st.worker:
        if st.resume:
            stale = storage.requeue_stale(study)
            if stale:
                st.echo(f"{stale} trial(s) left running by the earlier run queued again")
        rec = record.started(rec, st)
        record.write(st.folder, rec)
        st.echo(f"searching {', '.join(candidates)} for --task {st.task}; validation: {protocol.description}")
        for name, reason in skipped.items():
            st.echo(f"skipped {name}: {reason}")
    deadline = None if st.budget is None else start + st.budget
    runner = _Runner(study, protocol, st, candidates, timestamps, deadline, data)
    try:
        runner.loop(n_startup)
    except KeyboardInterrupt:
        runner.interrupted()
        if not st.worker:
            record.write_all(st.folder, record.finished(rec, study, protocol, None), study, protocol)
        raise
    if st.worker:
        st.echo(f"worker {_worker_name()} done: {runner.done} trial(s) run")
        return None
    runner.wait_for_others()
    best = _best(study)
    if best is None:
        record.write_all(st.folder, record.finished(rec, study, protocol, None), study, protocol)
        raise RecotorchError("no trial finished (all failed or were pruned): see the leaderboard in "
                             f"{st.folder}; give a larger --budget or --trials")
    chosen = _chosen(study)
    if chosen is not None and chosen.number != best.number:
        st.echo(f"trial {best.number} ({family(best)}, {protocol.metric} {best.value:.4f}) beats the defaults of "
                f"{family(chosen)} (trial {chosen.number}, {chosen.value:.4f}) by less than {TIE:.1%}: "
                "within the noise of the validation split, so the defaults are kept")
        best = chosen
    name, params = family(best), dict(best.user_attrs["settings"])
    st.echo(f"best: trial {best.number} {name} {_settings_text(params)} ({protocol.metric} {best.value:.4f})")
    refit_s = None
    if st.model_dir is not None:
        final = make_model(name, **params)
        with Measured() as m:
            final.fit(data)
        refit_s = m.seconds
        from recotorch.artifacts import save

        save(final, st.model_dir)
        st.echo(f"refitted {name} on all {len(data):,} rows in {m.seconds:.1f} s -> {st.model_dir}")
    result = SearchResult(name, params, float(best.value), protocol.metric, best.number,
                          len(storage.counted(study)), refit_s, st.model_dir)
    record.write_all(st.folder, record.finished(rec, study, protocol, result), study, protocol)
    return result


def _check_same(previous: dict[str, Any], st: Settings, digest: str) -> None:
    if previous.get("format") != MARKER:
        raise OptionError("--out", f"{st.folder} holds no recotorch search")
    if previous["train"]["sha256"] != digest:
        given = previous["train"]
        raise OptionError("TRAIN", f"is not the data the search in {st.folder} was started on ({given['path']}, "
                                   f"{given['rows']:,} rows as read with --threshold {given.get('threshold')}); "
                                   "read it with the same options")
    if st.models and list(dict.fromkeys(st.models)) != previous["candidates"]:
        raise OptionError("--models", f"the search in {st.folder} searches {previous['candidates']}; "
                                      "start a new search to change them")


def _fixed(name: str, st: Settings) -> dict[str, Any]:
    """Settings every trial of `name` gets: the search seed, and the device when given."""
    fields = {f.name for f in describe(name)}
    out: dict[str, Any] = {}
    if "seed" in fields:
        out["seed"] = st.seed
    if st.device is not None and "device" in fields:
        out["device"] = st.device
    return out


def _settings_text(params: dict[str, Any]) -> str:
    shown = {k: v for k, v in params.items() if k not in ("seed", "device")}
    return " ".join(f"{k}={_short(v)}" for k, v in shown.items()) or "(defaults)"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _complete(study: Any) -> list[Any]:
    state = storage.optuna_module().trial.TrialState
    return list(study.get_trials(deepcopy=False, states=(state.COMPLETE,)))


def _best(study: Any) -> Any | None:
    done = _complete(study)
    if not done:
        return None
    sign = 1 if study.direction.name == "MINIMIZE" else -1
    return min(done, key=lambda t: (sign * t.value, t.number))


def _chosen(study: Any) -> Any | None:
    """The trial whose settings are refitted: the best, unless a family's defaults score within `TIE` of it
    (then the best defaults trial). On a validation split of a few thousand rows such differences are
    noise (different seeds of one model move RMSE by about 0.1%), and the defaults were chosen on more data."""
    best = _best(study)
    defaults = [t for t in _complete(study) if "defaults_of" in t.user_attrs and not t.user_attrs.get("stack")]
    if best is None or not defaults or best.number in {t.number for t in defaults}:
        return best
    sign = 1 if study.direction.name == "MINIMIZE" else -1
    runner_up = min(defaults, key=lambda t: (sign * t.value, t.number))
    return runner_up if sign * (runner_up.value - best.value) <= TIE * abs(runner_up.value) else best


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Runner:
    """Claims and runs trials until the trial count or the budget is reached."""

    def __init__(self, study: Any, protocol: Protocol, st: Settings, candidates: list[str], timestamps: bool,
                 deadline: float | None, data: Interactions) -> None:
        self.study, self.protocol, self.st = study, protocol, st
        self.candidates, self.timestamps, self.deadline = candidates, timestamps, deadline
        self.searchable = searchable(candidates, timestamps=timestamps)
        self.scale = len(data) / max(1, len(protocol.fit_part))  # refit rows / trial rows
        self.current: Any | None = None
        self.done = 0
        self.optuna = storage.optuna_module()

    def remaining(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.perf_counter()

    def reserve(self) -> float:
        """Seconds kept for the refit: the best trial's fit time scaled to all rows (a worker keeps none)."""
        if self.st.worker:
            return 0.0
        best = _best(self.study)
        return 0.0 if best is None else float(best.user_attrs.get("fit_s", 0.0)) * self.scale * 1.2

    def queued(self) -> int:
        state = self.optuna.trial.TrialState
        return len(self.study.get_trials(deepcopy=False, states=(state.WAITING,)))

    def loop(self, n_startup: int) -> None:
        while self.remaining() > self.reserve():
            if not self.searchable and not self.queued():
                self.st.echo("every candidate has run (none has settings to search)")
                return
            trial = storage.claim(self.study, self.st.folder, self.st.trials, self.st.seed, n_startup,
                                  before=self.before_claim)
            if trial is None:
                return
            self.current = trial
            self.run(trial)
            self.current = None
            self.done += 1
        self.st.echo(f"budget reached ({self.st.budget:g} s, time for the refit kept)")

    def interrupted(self) -> None:
        """Ctrl-C: the running trial is failed and its parameters queued again for --resume."""
        trial = self.current
        if trial is None:
            return
        self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL, skip_if_finished=True)
        frozen = self.study.get_trials(deepcopy=False)[trial.number]
        self.study.enqueue_trial(dict(trial.params), user_attrs={**storage.queued_attrs(frozen),
                                                                 storage.REQUEUED: trial.number})

    # ---- the blend of the leading families (ratings) ----------------------------------------------
    def leaders(self) -> list[Any]:
        """The best complete trial of each family that a blend may hold, best first."""
        best: dict[str, Any] = {}
        sign = 1 if self.protocol.direction == "minimize" else -1
        for t in _complete(self.study):
            name = family(t)
            if name in (STACK, "bagged") or t.user_attrs.get("stack"):
                continue
            if name not in best or sign * t.value < sign * best[name].value:
                best[name] = t
        return sorted(best.values(), key=lambda t: sign * t.value)[:STACK_SIZE]

    def before_claim(self, index: int) -> None:
        """Under the claims lock, before slot `index` is asked for: queue the blend when its time has come,
        else (nothing queued) give the slot to a leading family (`schedule`)."""
        self.maybe_stack(index)
        if not self.queued():
            self.schedule(index)

    def schedule(self, index: int) -> None:
        """Three slots in four go first to the family with the fewest sampled trials until each has
        `EXPLORE`, then to the leading families in turn (the best three so far, passing over a family whose
        last `STALE` sampled trials did not improve it while others remain); the fourth slot is the
        sampler's free choice. So one cheap family cannot take every trial, nor one whose defaults are
        hard to beat (on ml-100k top-N, ALS at its defaults held a leader's turn for 70 trials while EASE
        with recency was better than its few tries); the settings are still the sampler's. Depends only
        on the history: a search stays reproducible."""
        if index % FREE_EVERY == FREE_EVERY - 1:
            return
        tried = {n: 0 for n in self.searchable}
        for t in self.study.get_trials(deepcopy=False):
            if t.state.is_finished() and family(t) in tried and "defaults_of" not in t.user_attrs:
                tried[family(t)] += 1
        fewest = min(tried, key=lambda n: (tried[n], self.searchable.index(n)))
        if tried[fewest] < EXPLORE:  # first every family gets a few settings of its own
            self.study.enqueue_trial({"model": fewest}, user_attrs={"scheduled": True})
            return
        best: dict[str, float] = {}
        sign = 1 if self.protocol.direction == "minimize" else -1
        for t in _complete(self.study):
            name = family(t)
            if name in self.searchable and not t.user_attrs.get("stack"):
                best[name] = min(best.get(name, math.inf), sign * t.value)
        ranked = sorted(best, key=lambda n: (best[n], self.searchable.index(n)))
        fresh = [n for n in ranked if not self.stale(n)]
        top = (fresh + [n for n in ranked if n not in fresh])[:LEADERS]
        if len(top) < 2:
            return
        turn = index - index // FREE_EVERY  # the scheduled slots so far
        self.study.enqueue_trial({"model": top[turn % len(top)]}, user_attrs={"scheduled": True})

    def stale(self, name: str) -> bool:
        """True when the last `STALE` sampled trials of family `name` (pruned, failed or skipped ones
        included) did not improve the family's best score."""
        sign = 1 if self.protocol.direction == "minimize" else -1
        best, since = math.inf, 0
        for t in self.study.get_trials(deepcopy=False):
            if family(t) != name or not t.state.is_finished() or t.user_attrs.get("stack"):
                continue
            sampled = "defaults_of" not in t.user_attrs
            if t.state == self.optuna.trial.TrialState.COMPLETE and sign * t.value < best:
                best, since = sign * t.value, 0
            elif sampled:
                since += 1
        return since >= STALE

    def maybe_stack(self, index: int) -> None:
        """Queue one blend of the leading families' best settings, in the last trial slot (`index`, under the
        claims lock) or the last time the budget allows one (rating task, `blend` registered)."""
        if self.protocol.task != "rating" or STACK not in MODELS or self.queued():
            return
        if any(t.user_attrs.get("stack") for t in self.study.get_trials(deepcopy=False)):
            return
        leaders = self.leaders()
        if len(leaders) < 2:
            return
        cost = 2.0 * sum(float(t.user_attrs.get("fit_s", 0.0)) for t in leaders)  # components fit twice
        left = self.remaining() - self.reserve()
        last_slot = self.st.trials is not None and index == self.st.trials - 1
        if not (last_slot or cost < left < 2.5 * cost):
            return
        if cost > left:
            return
        components = [family(t) for t in leaders]
        params = {family(t): {k: v for k, v in t.user_attrs["settings"].items() if k not in ("seed", "device")}
                  for t in leaders}
        self.study.enqueue_trial({}, user_attrs={"defaults_of": STACK, "stack": True,
                                                 "overrides": {"components": components, "params": params}})

    # ---- one trial --------------------------------------------------------------------------------
    def expected_seconds(self, name: str, params: dict[str, Any]) -> float | None:
        """A fit's likely seconds: the family's median seconds per epoch times this trial's epochs (models
        trained in epochs), else the family's median fit seconds; None before the family has run."""
        epochs = params.get("epochs")
        per, whole = [], []
        for t in _complete(self.study):
            if family(t) != name or "fit_s" not in t.user_attrs:
                continue
            whole.append(t.user_attrs["fit_s"])
            ran = t.user_attrs.get("settings", {}).get("epochs")
            if isinstance(ran, int) and ran > 0:
                per.append(t.user_attrs["fit_s"] / ran)
        if isinstance(epochs, int) and per:
            return statistics.median(per) * epochs
        return statistics.median(whole) if whole else None

    def allowed(self, defaults_of: str | None) -> float:
        """Seconds a trial's fit may take: the time left (the refit's kept), and for a sampled trial at most
        `LONGEST` of the budget, so one slow setting (60 epochs of 150 factors) cannot eat the search."""
        left = self.remaining() - self.reserve()
        if defaults_of is None and self.st.budget is not None:
            return min(left, LONGEST * self.st.budget)
        return left

    def prune(self, name: str, value: float) -> bool:
        """True when a quarter-fit score is worse than the median of the family's earlier quarter scores."""
        earlier = [t.intermediate_values[0] for t in self.study.get_trials(deepcopy=False)
                   if family(t) == name and 0 in t.intermediate_values and t.state.is_finished()]
        if len(earlier) < PRUNE_AFTER:
            return False
        return self.protocol.better(statistics.median(earlier), value)

    def run(self, trial: Any) -> None:
        state = self.optuna.trial.TrialState
        defaults_of = trial.user_attrs.get("defaults_of")
        name = defaults_of or trial.suggest_categorical("model", self.searchable)
        params = {**suggest(trial, name, timestamps=self.timestamps), **_fixed(name, self.st),
                  **trial.user_attrs.get("overrides", {})}
        trial.set_user_attr("model", name)
        trial.set_user_attr("settings", record.jsonable(params))
        trial.set_user_attr("worker", _worker_name())
        try:
            estimator = make_model(name, **params)
        except OptionError as exc:  # e.g. sampler='in_batch' with loss='bpr': the declaration refuses it, nothing ran
            self.refuse(trial, name, exc)
            return
        expected = self.expected_seconds(name, params)
        if not trial.user_attrs.get("stack") and expected is not None and expected > self.allowed(defaults_of):
            self.skip(trial, name, expected)
            return
        try:
            epochs = int(estimator.get_params().get("epochs", 0)) if estimator.supports("train_epochs") else 0
            if epochs >= MIN_RUNG_EPOCHS and defaults_of is None:
                short = make_model(name, **{**params, "epochs": epochs // RUNG})
                with Measured() as m0:
                    short.fit(self.protocol.fit_part)
                early = self.protocol.score(short)
                del short
                trial.set_user_attr("rung_s", m0.seconds)
                if m0.seconds * RUNG > self.allowed(defaults_of):  # the full fit would overrun
                    self.skip(trial, name, m0.seconds * RUNG)
                    return
                if math.isfinite(early):
                    trial.report(early, step=0)
                    if self.prune(name, early):
                        trial.set_user_attr("note", f"pruned after {epochs // RUNG} of {epochs} epochs")
                        self.study.tell(trial, state=state.PRUNED)
                        self.report(trial.number, name, f"pruned after {epochs // RUNG}/{epochs} epochs "
                                                        f"({self.protocol.metric} {early:.4f})")
                        return
            with Measured() as m:
                estimator.fit(self.protocol.fit_part)
            value = self.protocol.score(estimator)
        except Exception as exc:  # a bad trial, not a bad search: recorded, and the search goes on
            message = " ".join(str(exc).split())[:300]
            known = isinstance(exc, (RecotorchError, ValueError, RuntimeError, MemoryError))
            what = "failed" if known else "failed (a bug in recotorch, please report it)"
            trial.set_user_attr("note", f"{what}: {type(exc).__name__}: {message}")
            self.study.tell(trial, state=state.FAIL)
            self.report(trial.number, name, f"{what}: {type(exc).__name__}: {message}")
            return
        trial.set_user_attr("fit_s", m.seconds)
        trial.set_user_attr("cpu_s", m.cpu_seconds)
        trial.set_user_attr("peak_mb", m.peak_bytes / 2**20)
        if not math.isfinite(value):
            trial.set_user_attr("note", "failed: the validation score is not finite (training diverged)")
            self.study.tell(trial, state=state.FAIL)
            self.report(trial.number, name, "failed: training diverged")
            return
        self.study.tell(trial, value)
        self.report(trial.number, name, f"{self.protocol.metric} {value:.4f}  fit {m.seconds:.1f} s  "
                                        f"{m.peak_bytes / 2**20:.0f} MB  {_settings_text(params)}")

    def refuse(self, trial: Any, name: str, exc: OptionError) -> None:
        """A sampled combination the model's declaration refuses: recorded as pruned (no fit ran), with why."""
        trial.set_user_attr("note", f"skipped: not a valid combination ({exc})")
        self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
        self.report(trial.number, name, f"skipped: not a valid combination ({exc})")

    def skip(self, trial: Any, name: str, expected: float) -> None:
        """Stop a trial whose fit would take longer than the budget left (recorded as pruned, with why)."""
        why = "more than the budget left, or a quarter of --budget for a sampled trial"
        trial.set_user_attr("note", f"skipped: a fit would take ~{expected:.0f} s, {why}")
        self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
        self.report(trial.number, name, f"skipped (~{expected:.0f} s, {why})")

    def report(self, number: int, name: str, text: str) -> None:
        best = _best(self.study)
        tail = "" if best is None else f"  | best {best.value:.4f} ({family(best)} #{best.number})"
        limit = f"/{self.st.trials}" if self.st.trials else ""
        left = "" if self.deadline is None else f"  {max(0.0, self.remaining()):.0f} s left"
        self.st.echo(f"[{number + 1}{limit}] {name}: {text}{tail}{left}")

    def wait_for_others(self, poll: float = 0.5) -> None:
        """Wait for trials other workers are still running (up to 3x the longest trial, at least 60 s)."""
        state = self.optuna.trial.TrialState
        longest = max([float(t.user_attrs.get("fit_s", 0.0)) + float(t.user_attrs.get("rung_s", 0.0))
                       for t in self.study.get_trials(deepcopy=False)] + [0.0])
        limit = time.perf_counter() + max(60.0, 3 * longest)
        announced = False
        while True:
            running = self.study.get_trials(deepcopy=False, states=(state.RUNNING,))
            if not running:
                return
            if time.perf_counter() > limit:
                self.st.echo(f"{len(running)} trial(s) still running elsewhere; refitting the best finished one")
                return
            if not announced:
                self.st.echo(f"waiting for {len(running)} trial(s) other workers are running")
                announced = True
            time.sleep(poll)
