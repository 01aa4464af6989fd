"""Files a person reads after a run: learning-curve plots and a Markdown report."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from recotorch.evaluate.protocol import Report
from recotorch.outputs import write_file_atomic
from recotorch.train.trainer import History


def plot_learning_curves(histories: Mapping[str, History], path: str | Path) -> Path:
    """Training loss per step (left) and validation error per epoch (right), one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for name, history in histories.items():
        steps = history.step_losses
        per_epoch = max(1, len(steps) // max(1, len(history.epochs)))
        left.plot([s / per_epoch for s in range(len(steps))], steps, label=name, alpha=0.8)
        valid = [(e.epoch + 1, e.valid_loss) for e in history.epochs if e.valid_loss is not None]
        if valid:
            right.plot(*zip(*valid, strict=True), marker="o", label=name)
    left.set(title="Training loss (MSE, sampled steps)", xlabel="epoch", ylabel="loss")
    right.set(title="Validation RMSE per epoch", xlabel="epoch", ylabel="RMSE")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    path = Path(path)
    try:  # written beside the target and renamed over it: never half a file
        write_file_atomic(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)
    return path


def write_report(path: str | Path, title: str, intro: list[str], reports: list[Report],
                 images: Mapping[str, str]) -> Path:
    """A Markdown page: intro lines, each report's table, then the images (paths relative to it)."""
    lines = [f"# {title}", "", *intro, ""]
    for report in reports:
        lines.append(report.to_markdown())
    for caption, image in images.items():
        lines += [f"![{caption}]({image})", ""]
    path = Path(path)
    text = "\n".join(lines)
    write_file_atomic(path, lambda tmp: tmp.write_text(text))
    return path
