"""Every figure of the project, one function each, returning the matplotlib Figure.

Importing this module does not change matplotlib's global state; call
`set_style()` once (the notebooks do) for the project's plot defaults.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

_MARK = {"text": None}


def set_style(*, synthetic: bool = False) -> None:
    """Project-wide plot defaults; an explicit call, never done at import.

    Args:
        synthetic: stamp "synthetic data" on every figure made by this module
            afterwards, so no picture of drawn flowers passes for a real result.
    """
    _MARK["text"] = "synthetic data (drawn flowers, not real photos)" if synthetic else None
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
        }
    )


def _marked(fig: plt.Figure) -> plt.Figure:
    if _MARK["text"]:
        fig.text(
            0.995, 0.005, _MARK["text"], ha="right", va="bottom", fontsize=8, color="firebrick", alpha=0.8
        )
    return fig


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
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.3 * rows), squeeze=False)
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
    return _marked(fig)


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
    return _marked(fig)


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
    return _marked(fig)


def plot_augmented_views(original, views, *, ncols: int = 4, title: str | None = None) -> plt.Figure:
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
    return _marked(fig)


# --- step 3: train (learning curves) ---------------------------------------


def learning_curves(history, *, title: str | None = None) -> plt.Figure:
    """Loss and accuracy over the epochs of both phases, the fine-tuning start marked.

    Args:
        history: the history table of `flowerlib.train` (`TrainResult.history`
            or `history.csv`): columns `phase`, `loss`, `val_loss`, `accuracy`,
            `val_accuracy`, one row per epoch, head phase first.
        title: figure title.

    Returns:
        The figure: loss on the left, accuracy on the right, x = epoch over both phases.

    Raises:
        ValueError: the table lacks a needed column or has no rows.
    """
    needed = {"phase", "loss", "val_loss", "accuracy", "val_accuracy"}
    missing = sorted(needed - set(history.columns))
    if missing or len(history) == 0:
        raise ValueError(
            f"learning_curves needs a non-empty history with columns {sorted(needed)}. "
            f"Missing {missing}, rows: {len(history)}"
        )
    epochs = list(range(1, len(history) + 1))
    phases = list(history["phase"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        ax.plot(epochs, history[metric], "o-", ms=3, label=f"train {label}")
        ax.plot(epochs, history[f"val_{metric}"], "o-", ms=3, label=f"validation {label}")
        if "fine_tune" in phases and phases.index("fine_tune") > 0:
            boundary = phases.index("fine_tune") + 0.5
            ax.axvline(boundary, color="grey", linestyle="--", linewidth=1)
            top = ax.get_xaxis_transform()  # x in data units, y in axes units
            ax.text(boundary, 0.98, "  fine-tuning ->", transform=top, va="top", fontsize=8)
            ax.text(0.01, 0.98, "head only", transform=ax.transAxes, va="top", fontsize=8)
        ax.set_xlabel("epoch (both phases)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8, loc="best")
    axes[1].set_ylim(0, 1.02)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _marked(fig)


# --- step 4: evaluate (confusion matrix, galleries, reliability, Grad-CAM) --


def _images_grid(n: int, cols: int, cell: float = 2.4, extra_h: float = 0.6):
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, (cell + extra_h) * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def _show(ax, image, title: str | None = None, colour: str = "black", fontsize: float = 8) -> None:
    import numpy as np

    ax.imshow(np.clip(np.asarray(image), 0, 255).astype("uint8"))
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=fontsize, color=colour)


def plot_confusion_matrix(cm, class_names=None, *, sort: bool = True, max_labels: int = 30, ax=None):
    """The row-normalised confusion matrix, readable even at 102 x 102.

    Rows are true classes, columns predicted classes. With `sort`, classes are
    ordered by accuracy (best first), so the diagonal fades towards the bottom
    right where the hard classes are; the colour scale is a square root, so a
    few stray confusions stay visible. Class names are drawn only up to
    `max_labels` classes (above that, tick marks every 10 classes; use
    `Evaluation.most_confused()` for the names).

    Args:
        cm: `(C, C)` confusion matrix (counts or row-normalised).
        class_names: optional names, one per class.
        sort: order classes by their accuracy (the diagonal).
        max_labels: the most classes whose names are written on the axes.
        ax: an existing Axes to draw into.

    Returns:
        The matplotlib Figure.
    """
    import numpy as np
    from matplotlib.colors import PowerNorm

    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1, keepdims=True)
    if cm.max() > 1.0:  # counts: normalise rows
        cm = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    c = cm.shape[0]
    order = np.argsort(-np.diag(cm), kind="stable") if sort else np.arange(c)
    shown = cm[np.ix_(order, order)]
    if ax is None:
        side = 4.5 if c <= 12 else min(11.0, 4.5 + c * 0.06)
        fig, ax = plt.subplots(figsize=(side + 1.0, side))
    else:
        fig = ax.figure
    im = ax.imshow(
        shown, cmap="viridis", norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0), interpolation="nearest"
    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="fraction of the true class")
    if class_names is not None and c <= max_labels:
        names = [class_names[i] for i in order]
        ax.set_xticks(range(c), names, rotation=90, fontsize=7)
        ax.set_yticks(range(c), names, fontsize=7)
    else:
        ticks = np.arange(0, c, 10 if c > 20 else 1)
        ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)
        ax.set_yticks(ticks, [str(t) for t in ticks], fontsize=7)
    named = class_names is not None and c <= max_labels
    unit = "" if named else (", ranked by accuracy" if sort else ", by index")
    ax.set_xlabel(f"predicted class{unit}")
    ax.set_ylabel(f"true class{unit}")
    ax.set_title(f"Normalised confusion matrix ({c} classes)")
    fig.tight_layout()
    return _marked(fig)


def plot_per_class_accuracy(per_class, *, ax=None):
    """Per-class accuracy as a sorted horizontal bar chart (worst class on top).

    Args:
        per_class: the table from `metrics.per_class_table` (or `Evaluation.per_class`).
        ax: an existing Axes to draw into.

    Returns:
        The matplotlib Figure.
    """
    import numpy as np

    table = per_class[per_class["support"] > 0].sort_values(["accuracy", "label"], ascending=[False, True])
    c = len(table)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.0, max(2.5, 0.14 * c + 1.0)))
    else:
        fig = ax.figure
    colours = plt.get_cmap("RdYlGn")(table["accuracy"].to_numpy())
    ax.barh(np.arange(c), table["accuracy"], color=colours, height=0.8)
    ax.set_yticks(np.arange(c), table["class_name"], fontsize=7 if c > 30 else 9)
    ax.set_ylim(-0.6, c - 0.4)
    mean = float(table["accuracy"].mean()) if c else float("nan")
    ax.axvline(mean, color="black", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("accuracy (fraction of the class's test images classified correctly)")
    ax.set_title(f"Per-class accuracy, worst on top (dashed: mean {mean:.3f})")
    fig.tight_layout()
    return _marked(fig)


def plot_reliability(reliability, ece: float | None = None):
    """Reliability diagram: is a prediction made with 90% confidence right 90% of the time?

    Bars are the accuracy of the predictions in each confidence bin; the dashed
    diagonal is perfect calibration. Bars below it mean over-confidence. The
    lower panel shows how many predictions fall in each bin.

    Args:
        reliability: `metrics.reliability(...)` (a `Reliability`) or its table.
        ece: the expected calibration error (taken from `reliability` if it has one).

    Returns:
        The matplotlib Figure.
    """
    import numpy as np

    table = getattr(reliability, "table", reliability)
    ece = getattr(reliability, "ece", ece)
    width = (table["hi"] - table["lo"]).to_numpy()
    centres = ((table["hi"] + table["lo"]) / 2).to_numpy()
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.0, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    acc = np.nan_to_num(table["accuracy"].to_numpy())
    conf = table["confidence"].to_numpy()
    top.bar(centres, acc, width=width * 0.95, color="tab:blue", edgecolor="navy", label="accuracy")
    has = ~np.isnan(conf)
    top.bar(
        centres[has], (conf - acc)[has], bottom=acc[has], width=width[has] * 0.95,
        color="none", edgecolor="tab:red", hatch="//", label="gap to confidence",
    )  # fmt: skip
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_xlim(0, 1)
    top.set_ylabel("accuracy")
    title = "Reliability diagram" + (f" (ECE = {ece:.3f})" if ece is not None else "")
    top.set_title(title)
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, table["count"], width=width * 0.95, color="grey")
    bottom.set_xlabel("confidence (top predicted probability)")
    bottom.set_ylabel("images")
    fig.tight_layout()
    return _marked(fig)


def plot_misclassified(evaluation, n: int = 12, *, cols: int = 4):
    """A gallery of misclassified images, the most confidently wrong first.

    Each title gives the true class, the predicted class and the model's
    confidence in its (wrong) prediction.

    Args:
        evaluation: the `evaluate.Evaluation` to draw from.
        n: the most images to show.
        cols: images per row.

    Returns:
        The matplotlib Figure (a note instead of images when nothing is wrong).
    """
    wrong = evaluation.mistakes().head(n)
    if wrong.empty:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "No misclassified images.", ha="center", va="center")
        return _marked(fig)
    fig, axes = _images_grid(len(wrong), cols)
    for ax, (row, item) in zip(axes.flat, wrong.iterrows(), strict=False):
        title = f"true: {item['class_name']}\npred: {item['pred_name']} ({item['confidence']:.0%})"
        _show(ax, evaluation.image(row), title, colour="firebrick")
    fig.suptitle(f"Misclassified {evaluation.part} images, most confident first")
    fig.tight_layout()
    return _marked(fig)


def plot_confused_pairs(evaluation, k: int = 4):
    """The most-confused class pairs, with an example of each class side by side.

    Row i: on the left an image of class A that the model took for class B; on
    the right an image of class B (one the model got right, if any), so a
    reader can judge whether the two species really look alike.

    Args:
        evaluation: the `evaluate.Evaluation` to draw from.
        k: how many pairs (rows).

    Returns:
        The matplotlib Figure.
    """
    import numpy as np

    pairs = evaluation.most_confused(k)
    if pairs.empty:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "No confusions: every image was classified correctly.", ha="center", va="center")
        return _marked(fig)
    y_true, y_pred, conf = evaluation.y_true, evaluation.y_pred, evaluation.confidence
    fig, axes = plt.subplots(len(pairs), 2, figsize=(5.6, 2.9 * len(pairs)), squeeze=False)
    for (left, right), pair in zip(axes, pairs.itertuples(index=False), strict=False):
        wrong = np.flatnonzero((y_true == pair.true) & (y_pred == pair.pred))
        a = int(wrong[np.argmax(conf[wrong])])
        _show(
            left, evaluation.image(a),
            f"{pair.true_name}\ntaken for {pair.pred_name} ({pair.value:.0%} of its images)",
            colour="firebrick",
        )  # fmt: skip
        right_rows = np.flatnonzero((y_true == pair.pred) & (y_pred == pair.pred))
        if right_rows.size == 0:
            right_rows = np.flatnonzero(y_true == pair.pred)
        if right_rows.size:
            b = int(right_rows[np.argmax(conf[right_rows])])
            _show(right, evaluation.image(b), f"a real {pair.pred_name}", colour="darkgreen")
        else:
            right.axis("off")
            right.text(
                0.5, 0.5, f"no {pair.pred_name}\nimage in this part", ha="center", va="center", fontsize=8
            )
    fig.suptitle("Most-confused pairs: left taken for right")
    fig.tight_layout()
    return _marked(fig)


def plot_gradcam(images, heatmaps, titles=None, *, alpha: float = 0.45, cols: int = 4, colours=None):
    """Grad-CAM overlays: each image above its heatmap blended over it.

    Args:
        images: RGB images `(S, S, 3)` in 0..255 (what the model saw).
        heatmaps: Grad-CAM heatmaps in [0, 1], one per image (`gradcam.gradcam`).
        titles: optional title per image (e.g. true / predicted class).
        alpha: weight of the heatmap in the overlay.
        cols: images per row.
        colours: optional title colour per image (e.g. green right, red wrong).

    Returns:
        The matplotlib Figure.
    """
    from flowerlib.gradcam import overlay

    images, heatmaps = list(images), list(heatmaps)
    if len(images) != len(heatmaps):
        raise ValueError(
            f"Need one heatmap per image. Received {len(images)} images, {len(heatmaps)} heatmaps"
        )
    n = len(images)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(2.5 * cols, 5.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (image, heatmap) in enumerate(zip(images, heatmaps, strict=True)):
        r, c = divmod(i, cols)
        colour = colours[i] if colours is not None else "black"
        _show(axes[2 * r, c], image, titles[i] if titles is not None else None, colour=colour)
        _show(axes[2 * r + 1, c], overlay(image, heatmap, alpha=alpha))
    fig.suptitle("Grad-CAM: where the network looked (red = raised the class score most)")
    fig.tight_layout()
    return _marked(fig)


def plot_topk(image, top, *, title: str | None = None):
    """An image beside a bar chart of its top-k predicted classes.

    Args:
        image: the image (RGB array in 0..255 or a PIL image).
        top: the table from `flowerlib.predict` (`rank`, `name`, `probability`).
        title: optional title over the image.

    Returns:
        The matplotlib Figure.
    """
    import numpy as np

    top = top.sort_values("rank")
    k = len(top)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(9.0, max(3.0, 0.45 * k + 1.5)), gridspec_kw={"width_ratios": [1, 1.3]}
    )
    _show(left, np.asarray(image, dtype=np.float32), title, fontsize=10)
    y = np.arange(k)[::-1]
    bars = right.barh(y, top["probability"], color=["tab:green"] + ["tab:blue"] * (k - 1))
    right.set_yticks(y, top["name"])
    right.set_xlim(0, 1.08)
    right.set_xlabel("probability")
    right.set_title(f"Top-{k} predictions")
    for bar, p in zip(bars, top["probability"], strict=True):
        right.text(
            bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, f"{p:.1%}", va="center", fontsize=8
        )
    fig.tight_layout()
    return _marked(fig)


def plot_answers(images, tables, titles=None, *, cols: int = 3):
    """Photos with the model's answer: the sentence of `prediction.verdict`, the crop it looked closer at.

    Args:
        images: the photos (RGB arrays in 0..255, any size).
        tables: one `predict` table per photo (with `view`, `box`, `familiar`, `crop_familiar`).
        titles: a first title line per photo (e.g. what the picture is); optional.
        cols: photos per row.

    Returns:
        The matplotlib Figure. The crop that gave a look-closer answer is outlined
        in orange; the title is green for a sure answer, else orange.
    """
    import textwrap

    import numpy as np
    from matplotlib.patches import Rectangle

    from flowerlib.prediction import verdict

    fig, axes = _images_grid(len(images), cols, cell=3.2, extra_h=1.1)
    for i, (ax, image, top) in enumerate(zip(axes.flat, images, tables, strict=False)):
        answer = verdict(top)
        lines = ([titles[i]] if titles else []) + textwrap.wrap(answer.sentence, 42)
        _show(
            ax,
            np.asarray(image, dtype=np.float32),
            "\n".join(lines),
            "darkgreen" if answer.sure else "darkorange",
        )
        box = top["box"].iloc[0] if "box" in top.columns else None
        if box is not None:
            t, x, s = box
            ax.add_patch(Rectangle((x, t), s, s, fill=False, edgecolor="orange", linewidth=2.5))
    fig.tight_layout()
    return _marked(fig)
