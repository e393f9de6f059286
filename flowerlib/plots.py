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


def sample_grid(
    data_dir,
    labels,
    class_names,
    *,
    n: int = 24,
    cols: int = 8,
    seed: int = 0,
    image_ids=None,
    thumbnail: int = 160,
) -> plt.Figure:
    """A grid of sample images, each titled with its class name, one class per image.

    Picks `n` images from `n` different classes (random classes when there
    are more than `n`), so a reader sees the variety of the dataset at a glance.

    Args:
        data_dir: the data directory (holding `jpg/`) or its `Layout`.
        labels: 0-based label of every image, entry `image_id - 1`
            (`flowerlib.splits.load_labels`).
        class_names: the name of every class (`flowerlib.class_names(C)`).
        n: how many images.
        cols: images per row.
        seed: which classes and images are picked.
        image_ids: the ids to pick from; default: every image present in `jpg/`.
        thumbnail: longest side, in pixels, the images are shrunk to before drawing.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: no image to show (`n < 1` or no `image_ids`).
    """
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from flowerlib.artifacts import Layout

    layout = data_dir if isinstance(data_dir, Layout) else Layout(Path(data_dir))
    labels = np.asarray(labels)
    if image_ids is None:
        image_ids = sorted(
            int(p.stem.split("_")[1]) for p in layout.jpg_dir.glob("image_*.jpg") if p.stem[6:].isdigit()
        )
    image_ids = np.asarray(image_ids, dtype=np.int64)
    if n < 1 or image_ids.size == 0:
        raise ValueError(
            f"Nothing to show: n={n}, {image_ids.size} images in {layout.jpg_dir}. Run 01_download first."
        )
    rng = np.random.default_rng(seed)
    by_class = {c: image_ids[labels[image_ids - 1] == c] for c in np.unique(labels[image_ids - 1])}
    chosen_classes = sorted(rng.choice(sorted(by_class), size=min(n, len(by_class)), replace=False))
    picks = [(int(rng.choice(by_class[c])), int(c)) for c in chosen_classes]
    cols = max(1, min(cols, len(picks)))
    rows = -(-len(picks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.15 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image_id, label) in zip(axes.flat, picks, strict=False):
        with Image.open(layout.image_path(image_id)) as image:
            image = image.convert("RGB")
            image.thumbnail((thumbnail, thumbnail))
            ax.imshow(np.asarray(image))
        name = str(class_names[label])
        ax.set_title(name if len(name) <= 22 else name[:20] + "…", fontsize=8)
    fig.suptitle(f"{len(picks)} sample images from {len(picks)} of {len(by_class)} classes")
    fig.tight_layout()
    return fig


def class_counts(labels, class_names, *, image_ids=None, title: str | None = None) -> plt.Figure:
    """Bar chart of the number of images per class, most frequent first.

    Args:
        labels: 0-based label of every image (`flowerlib.splits.load_labels`).
        class_names: the name of every class.
        image_ids: count only these images (e.g. those present in a partial
            dataset); default: every labelled image.
        title: figure title; defaults to a summary of the counts.

    Returns:
        The matplotlib Figure.
    """
    import numpy as np

    labels = np.asarray(labels)
    if image_ids is not None:
        labels = labels[np.asarray(image_ids, dtype=np.int64) - 1]
    c = len(class_names)
    counts = np.bincount(labels, minlength=c)[:c]
    order = np.argsort(-counts, kind="stable")
    width = 3.0 + 0.45 * c if c <= 20 else min(15.0, 3.0 + 0.12 * c)
    fig, ax = plt.subplots(figsize=(width, 4.2 if c > 20 else 3.4))
    x = np.arange(c)
    ax.bar(x, counts[order], width=0.85, color="tab:green")
    ax.axhline(counts.mean(), color="black", linestyle="--", linewidth=1, label=f"mean {counts.mean():.1f}")
    ax.set_xticks(x, [str(class_names[i]) for i in order], rotation=90, fontsize=6 if c > 20 else 8)
    ax.set_xlim(-0.6, c - 0.4)
    ax.set_ylabel("images")
    ax.legend(frameon=False, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    spread = f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()} to {counts.max()}"
    ax.set_title(title or f"Images per class: {counts.sum():,} images, {c} classes, {spread} per class")
    fig.tight_layout()
    return fig


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
