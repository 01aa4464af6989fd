"""Pictures of a model: the 2-D map of item embeddings."""

from __future__ import annotations

from pathlib import Path

from recotorch.explain.embeddings import PCAMap
from recotorch.outputs import write_file_atomic

MAP_SIZE = (1200, 900)  # pixels of the PCA map PNG


def plot_pca_map(result: PCAMap, path: str | Path, *, labels: int = 30, title: str = "Item embeddings") -> Path:
    """Scatter of items on the first two components; the `labels` most-rated items are named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpi = 100
    fig, ax = plt.subplots(figsize=(MAP_SIZE[0] / dpi, MAP_SIZE[1] / dpi), dpi=dpi)
    coords = result.coords
    sizes = 8 + 40 * (coords["ratings"] / max(1, coords["ratings"].max())).to_numpy()
    ax.scatter(coords["pc1"].to_numpy(), coords["pc2"].to_numpy(), s=sizes, alpha=0.35, color="tab:blue")
    named = coords.sort("ratings", descending=True).head(labels)
    for name, x, y in zip(named["title"], named["pc1"], named["pc2"], strict=True):
        ax.annotate(_short(name), (x, y), fontsize=7, alpha=0.9, xytext=(3, 3), textcoords="offset points")
    ev = result.explained
    ax.set_xlabel(f"PC1 ({ev[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ev[1]:.0%} of variance)" if len(ev) > 1 else "PC2")
    ax.set_title(f"{title}: first two principal components ({len(coords)} most-rated items; "
                 f"dot size = number of ratings)")
    ax.grid(alpha=0.2)
    fig.tight_layout()
    path = Path(path)
    try:  # written beside the target and renamed over it: never half a file
        write_file_atomic(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi))
    finally:
        plt.close(fig)
    return path


def _short(title: str, limit: int = 28) -> str:
    return title if len(title) <= limit else title[: limit - 1] + "…"
