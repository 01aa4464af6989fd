"""What a search leaves in its folder: `search.json` (the record), `leaderboard.csv`, `report.md`,
`history.png` (the metric of every trial and the best so far) and `families.png` (the metric by model
family). Every file is written beside its name and renamed over it (`outputs.write_file_atomic`).
"""

from __future__ import annotations

import json
import math
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from recotorch.data.interactions import Interactions
from recotorch.outputs import write_file_atomic
from recotorch.tune.folder import MARKER, RECORD
from recotorch.tune.protocol import Protocol
from recotorch.tune.storage import family, optuna_module

if TYPE_CHECKING:
    from recotorch.tune.search import SearchResult, Settings


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new(protocol: Protocol, st: Settings, candidates: list[str], skipped: dict[str, str], digest: str,
        storage: str, data: Interactions) -> dict[str, Any]:
    """The record of a search just created."""
    return {
        "format": MARKER, "version": 1, "created": _now(), "status": "searching",
        "task": st.task, "metric": protocol.metric, "direction": protocol.direction, "seed": st.seed,
        "train": {**jsonable(st.source), "rows": len(data), "users": data.n_users, "items": data.n_items,
                  "sha256": digest},
        "protocol": protocol.to_dict(), "candidates": candidates, "skipped": skipped,
        "trials_limit": st.trials, "memory_limit_gb": st.memory_limit / 2**30,
        "study": {"storage": storage, "name": "recotorch"}, "runs": [], "best": None, "refit": None,
    }


def started(rec: dict[str, Any], st: Settings) -> dict[str, Any]:
    """The record with this run added (budget, trial limit, machine)."""
    run = {"started": _now(), "budget_s": st.budget, "trials_limit": st.trials, "resume": st.resume,
           "machine": f"{platform.node()} ({platform.machine()}, {platform.system()})"}
    return {**rec, "runs": [*rec.get("runs", []), run], "trials_limit": st.trials, "status": "searching"}


def finished(rec: dict[str, Any], study: Any, protocol: Protocol, result: SearchResult | None) -> dict[str, Any]:
    """The record after a run: counts, the best trial, the refit, the equivalent `fit` command."""
    rows = leaderboard_rows(study)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    out = {**rec, "updated": _now(), "trials": counts, "status": "done" if result is not None else "stopped"}
    if result is not None:
        sets = " ".join(f"--set {k}={_cli_value(v)}" for k, v in result.params.items())
        out["best"] = {"trial": result.trial, "model": result.model, "params": jsonable(result.params),
                       "value": result.value, "metric": result.metric}
        out["refit"] = None if result.model_dir is None else {
            "model_dir": str(result.model_dir), "seconds": result.refit_seconds, "rows": rec["train"]["rows"]}
        out["fit_command"] = f"recotorch fit TRAIN --model {result.model} {sets}".strip()
    return out


def _cli_value(value: Any) -> str:
    """A value as `fit --set KEY=VALUE` reads it (lists comma-separated, dicts as quoted JSON)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return "'" + json.dumps(jsonable(value)) + "'"
    return "none" if value is None else str(value)


def write(folder: Path, rec: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_file_atomic(folder / RECORD, lambda tmp: tmp.write_text(json.dumps(jsonable(rec), indent=2) + "\n"))


def leaderboard_rows(study: Any) -> list[dict[str, Any]]:
    """One row per claimed trial: model, settings, state, metric, fit seconds, peak memory, note."""
    state = optuna_module().trial.TrialState
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state in (state.WAITING, state.RUNNING):
            continue
        settings = {k: v for k, v in t.user_attrs.get("settings", {}).items() if k not in ("seed", "device")}
        early = t.intermediate_values.get(0)
        rows.append({
            "trial": t.number, "model": family(t),
            "settings": " ".join(f"{k}={_fmt(v)}" for k, v in settings.items()) or "(defaults)",
            "state": t.state.name.lower(), "value": t.value if t.state == state.COMPLETE else None,
            "quarter_value": early, "fit_s": t.user_attrs.get("fit_s"), "peak_mb": t.user_attrs.get("peak_mb"),
            "worker": t.user_attrs.get("worker", ""), "note": t.user_attrs.get("note", ""),
        })
    return rows


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _ranked(rows: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    sign = 1 if direction == "minimize" else -1
    done = sorted((r for r in rows if r["value"] is not None), key=lambda r: (sign * r["value"], r["trial"]))
    return done + [r for r in rows if r["value"] is None]


def write_all(folder: Path, rec: dict[str, Any], study: Any, protocol: Protocol) -> None:
    """The record, the leaderboard, the report and its two plots."""
    write(folder, rec)
    rows = _ranked(leaderboard_rows(study), protocol.direction)
    schema = {"trial": pl.Int64, "model": pl.String, "settings": pl.String, "state": pl.String,
              "value": pl.Float64, "quarter_value": pl.Float64, "fit_s": pl.Float64, "peak_mb": pl.Float64,
              "worker": pl.String, "note": pl.String}
    frame = pl.DataFrame(rows, schema=schema).rename({"value": protocol.metric})
    write_file_atomic(folder / "leaderboard.csv", lambda tmp: frame.write_csv(tmp))
    _plot_history(folder / "history.png", rows, protocol)
    _plot_families(folder / "families.png", rows, protocol)
    write_file_atomic(folder / "report.md", lambda tmp: tmp.write_text(report_text(rec, rows, protocol)))


def report_text(rec: dict[str, Any], rows: list[dict[str, Any]], protocol: Protocol, top: int = 25) -> str:
    best = rec.get("best")
    lines = [f"# Search: --task {rec['task']} on {rec['train'].get('path', 'the training data')}", "",
             f"Validation split carved from the training file: {rec['protocol']['description']} "
             f"({rec['protocol']['fit_rows']:,} rows fitted, {rec['protocol']['valid_rows']:,} scored). "
             f"Metric: {protocol.metric} ({'lower' if protocol.direction == 'minimize' else 'higher'} is better). "
             f"Seed {rec['seed']}.", "",
             f"Candidates: {', '.join(rec['candidates'])}."]
    for name, reason in rec.get("skipped", {}).items():
        lines.append(f"Skipped {name}: {reason}.")
    counts = ", ".join(f"{v} {k}" for k, v in rec.get("trials", {}).items())
    lines += ["", f"Trials: {counts or 'none'}.", ""]
    if best:
        settings = " ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items() if k not in ("seed", "device"))
        lines += [f"**Chosen: {best['model']}** {settings or '(defaults)'}: validation {best['metric']} "
                  f"{best['value']:.4f} (trial {best['trial']}).", ""]
        if rec.get("refit"):
            lines += [f"Refitted on all {rec['refit']['rows']:,} training rows in {rec['refit']['seconds']:.1f} s: "
                      f"`{rec['refit']['model_dir']}`. The same model by hand: `{rec.get('fit_command')}`.", ""]
    lines += [f"## Leaderboard (best {min(top, len(rows))} of {len(rows)}; all in leaderboard.csv)", "",
              f"| trial | model | settings | {protocol.metric} | fit s | peak MB | state |",
              "|---:|---|---|---:|---:|---:|---|"]
    for r in rows[:top]:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        fit = "" if r["fit_s"] is None else f"{r['fit_s']:.1f}"
        mem = "" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        state = r["state"] + (f" ({r['note']})" if r["note"] else "")
        lines.append(f"| {r['trial']} | {r['model']} | {r['settings']} | {value} | {fit} | {mem} | {state} |")
    lines += ["", "Fit seconds and peak memory (resident set above the start of the fit) are of the trial's "
              "fit on the validation split's training part, on the machine named in search.json.", "",
              "![optimisation history](history.png)", "", "![metric by model family](families.png)", ""]
    return "\n".join(lines)


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_history(path: Path, rows: list[dict[str, Any]], protocol: Protocol) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4))
    done = sorted((r for r in rows if r["value"] is not None), key=lambda r: r["trial"])
    pruned = [r for r in rows if r["state"] == "pruned" and r["quarter_value"] is not None]
    if done:
        ax.scatter([r["trial"] for r in done], [r["value"] for r in done], s=18, label="trial")
        best, line = None, []
        for r in done:
            if best is None or protocol.better(r["value"], best):
                best = r["value"]
            line.append(best)
        ax.step([r["trial"] for r in done], line, where="post", color="C3", label="best so far")
    if pruned:
        ax.scatter([r["trial"] for r in pruned], [r["quarter_value"] for r in pruned], marker="x", color="grey",
                   s=18, label="pruned (quarter-epoch score)")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {protocol.metric}")
    ax.set_title("Optimisation history")
    if done or pruned:
        ax.legend(fontsize=8)
    fig.tight_layout()
    write_file_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _plot_families(path: Path, rows: list[dict[str, Any]], protocol: Protocol) -> None:
    plt = _figure()
    families = sorted({r["model"] for r in rows if r["value"] is not None})
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(families):
        values = [r["value"] for r in rows if r["model"] == name and r["value"] is not None]
        ax.scatter([i] * len(values), values, s=18, alpha=0.7)
        ax.hlines(min(values) if protocol.direction == "minimize" else max(values), i - 0.3, i + 0.3, color="C3")
    ax.set_xticks(range(len(families)), families, rotation=30, ha="right")
    ax.set_ylabel(f"validation {protocol.metric}")
    ax.set_title("Metric by model family (red: the family's best)")
    fig.tight_layout()
    write_file_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
