"""Protocols: run models on a split and report them beside the baselines."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from recotorch.data.interactions import Interactions
from recotorch.evaluate.metrics import mae, rmse
from recotorch.models.base import Estimator


@dataclass
class Report:
    """One row per model; columns are metric names. Renders as a Rich table or Markdown."""

    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows)

    def to_markdown(self) -> str:
        if not self.rows:
            return f"### {self.title}\n\n(no rows)\n"
        cols = list(self.rows[0])
        lines = [f"### {self.title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in self.rows]
        lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines) + "\n"

    def to_rich(self) -> Any:
        """A Rich table; with many metrics, models become columns so it fits a terminal."""
        from rich.table import Table

        table = Table(title=self.title)
        cols = list(self.rows[0]) if self.rows else []
        if len(cols) > 7:
            table.add_column("metric")
            for r in self.rows:
                table.add_column(str(r.get("model")), justify="right")
            for c in cols[1:]:
                table.add_row(c, *(_fmt(r.get(c)) for r in self.rows))
            return table
        for c in cols:
            table.add_column(c, justify="left" if c == "model" else "right")
        for r in self.rows:
            table.add_row(*(_fmt(r.get(c)) for c in cols))
        return table


def rating_metrics(model: Estimator, test: Interactions) -> dict[str, Any]:
    """RMSE and MAE of `model` on `test` (raw ids matched to the model's vocabularies)."""
    if test.rating is None:
        raise ValueError("rating evaluation needs test ratings")
    frame = test.to_frame()
    pred = model.predict(frame["user"], frame["item"])
    target = frame["rating"].to_numpy()
    return {"RMSE": rmse(pred.values, target), "MAE": mae(pred.values, target),
            "fallback": pred.n_fallback}


def compare_rating_models(models: Sequence[tuple[str, Estimator]], train: Interactions, test: Interactions,
                          *, valid: Interactions | None = None, title: str = "Rating prediction") -> Report:
    """Fit each model on `train`, score it on `test`; report RMSE, MAE and fit seconds."""
    report = Report(title)
    for label, model in models:
        tic = time.perf_counter()
        model.fit(train, valid)
        seconds = time.perf_counter() - tic
        report.rows.append({"model": label, **rating_metrics(model, test), "fit s": seconds})
    return report


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return "" if value is None else str(value)
