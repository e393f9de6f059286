"""Every figure of the project, one function each, returning the matplotlib Figure.

Importing this module does not change matplotlib's global state; call
`set_style()` once (the notebooks do) for the project's plot defaults.
"""

from __future__ import annotations

import matplotlib.pyplot as plt


def set_style() -> None:
    """Project-wide plot defaults; an explicit call, never done at import."""
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
        }
    )


# --- step 1: download (sample grid, images per class) ---------------------


# --- step 2: prepare (class counts per split, augmented views) ------------


def split_counts(table, *, title: str | None = None) -> plt.Figure:
    """Stacked bars: images per class in each part of a split (`train`, `val`, `test`).

    Args:
        table: a split table (`flowerlib.splits`) or its `split_summary`.
        title: figure title; defaults to the totals per part.

    Returns:
        The matplotlib Figure.
    """
    import numpy as np

    from flowerlib.splits import PARTS, split_summary

    summary = split_summary(table) if "split" in getattr(table, "columns", ()) else table
    parts = [p for p in PARTS if p in summary.columns]
    n = len(summary)
    width = 3.0 + 0.5 * n if n <= 20 else min(14.0, 3.0 + 0.11 * n)
    fig, ax = plt.subplots(figsize=(width, 3.6))
    x = np.arange(n)
    bottom = np.zeros(n)
    for part, colour in zip(parts, ("tab:blue", "tab:orange", "tab:green"), strict=False):
        values = summary[part].to_numpy()
        ax.bar(x, values, bottom=bottom, width=0.85, color=colour, label=f"{part} ({values.sum():,})")
        bottom += values
    names = summary.index.get_level_values(-1) if summary.index.nlevels > 1 else summary.index
    if n <= 20:
        ax.set_xticks(x, [str(s) for s in names], rotation=45, ha="right")
    else:
        ax.set_xlabel(f"class (label 0..{n - 1}, sorted by label)")
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylabel("images")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    totals = ", ".join(f"{p} {summary[p].sum():,}" for p in parts)
    ax.set_title(title or f"Images per class and part: {totals}")
    fig.tight_layout()
    return fig


def augmented_views(original, views, *, ncols: int = 4, title: str | None = None) -> plt.Figure:
    """The original image followed by its augmented versions, in a grid.

    Args:
        original: `[S, S, 3]` image in 0..255 (as the pipeline loads it).
        views: `[n, S, S, 3]` augmented versions (`flowerlib.pipeline.augmented_views`).
        ncols: images per row.
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    import numpy as np

    images = [np.asarray(original)] + list(np.asarray(views))
    nrows = -(-len(images) // ncols)
    size = (2.2 * ncols, 2.2 * nrows + (0.3 if title else 0.0))
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(np.clip(images[i], 0, 255).astype("uint8"))
            ax.set_title("original" if i == 0 else f"augmented {i}", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- step 3: train (learning curves) ---------------------------------------


# --- step 4: evaluate (confusion matrix, galleries, reliability, Grad-CAM) --
