"""Honest evaluation of a trained classifier: metrics, per-class tables, calibration.

The metric functions take plain NumPy arrays (no scikit-learn needed) so they
can be checked by hand on small examples; `evaluate()` runs a model over one
subset of a split table (the held-out `"test"` subset by default) and returns
an `Evaluation` holding the probabilities beside the labels, in table order.

Typical use::

    model, names = evaluate.load_trained(cfg)
    table = splits.prepare_split(cfg)
    result = evaluate.evaluate(model, table, cfg)           # subset="test"
    result.metrics["top1"], result.per_class.head()
    evaluate.save_metrics(result, Layout(cfg.data_dir).run(cfg.run))
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from flowerlib import artifacts
from flowerlib.artifacts import Layout, RunLayout
from flowerlib.errors import FlowerlibError

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from flowerlib.config import Config

SUBSETS = ("train", "val", "test")


class ModelNotFoundError(FlowerlibError, FileNotFoundError):
    """The trained model (or its labels) is not in the run folder yet."""


class EvaluationError(FlowerlibError, ValueError):
    """The inputs of an evaluation do not fit together (shapes, labels, subset)."""


# --- metrics on arrays --------------------------------------------------------


def _as_labels(y: Any, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise EvaluationError(f"{name} must be a 1-D array of class indices. Received shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
        raise EvaluationError(f"{name} must hold integer class indices. Received dtype {y.dtype}")
    return y.astype(np.int64)


def _check_probs(y_true: np.ndarray, probs: Any) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != y_true.shape[0]:
        raise EvaluationError(
            f"probs must have shape (n, num_classes) with n = len(y_true) = {y_true.shape[0]}. "
            f"Received probs.shape={probs.shape}"
        )
    if y_true.size and (y_true.min() < 0 or y_true.max() >= probs.shape[1]):
        raise EvaluationError(
            f"y_true holds class indices outside 0..{probs.shape[1] - 1} "
            f"(min {y_true.min()}, max {y_true.max()}); do the labels belong to this model?"
        )
    return probs


def top_k_accuracy(y_true: Any, probs: Any, k: int) -> float:
    """Fraction of samples whose true class is among the `k` most probable.

    Ties are broken by class index (the lower index ranks first), as `argmax` does,
    so a model that outputs the same probability everywhere is not rewarded.

    Args:
        y_true: true class indices, shape `(n,)`.
        probs: predicted probabilities (or scores), shape `(n, num_classes)`.
        k: how many guesses count; clipped to `num_classes`.

    Returns:
        The top-k accuracy in [0, 1] (NaN for n = 0).
    """
    y_true = _as_labels(y_true, "y_true")
    probs = _check_probs(y_true, probs)
    if k < 1:
        raise EvaluationError(f"k must be >= 1. Received k={k}")
    if y_true.size == 0:
        return float("nan")
    k = min(int(k), probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == y_true[:, None], axis=1)))


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int, normalize: bool = True) -> np.ndarray:
    """The confusion matrix: row = true class, column = predicted class.

    Args:
        y_true: true class indices, shape `(n,)`.
        y_pred: predicted class indices, shape `(n,)`.
        num_classes: size of the matrix (classes absent from both arrays stay zero).
        normalize: divide each row by its count, so the diagonal is each class's
            accuracy (recall) and a row sums to 1; rows of absent classes stay 0.

    Returns:
        A `(num_classes, num_classes)` array: float64 if `normalize`, else int64 counts.
    """
    y_true = _as_labels(y_true, "y_true")
    y_pred = _as_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise EvaluationError(
            f"y_true and y_pred must have the same length. Received {y_true.shape} and {y_pred.shape}"
        )
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise EvaluationError(
                f"{name} holds class indices outside 0..{num_classes - 1}. "
                f"Received min {y.min()}, max {y.max()} with num_classes={num_classes}"
            )
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    if not normalize:
        return cm
    support = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, support, out=np.zeros(cm.shape, dtype=np.float64), where=support > 0)


def _precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, ...]:
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1, support, predicted


def compute_metrics(y_true: Any, probs: Any, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Headline metrics of a classifier on one subset.

    Args:
        y_true: true class indices, shape `(n,)`.
        probs: predicted probabilities, shape `(n, num_classes)`.
        class_names: optional names; only their count is checked against `probs`.

    Returns:
        A JSON-friendly dict:
        `top1` (accuracy), `top5` (top-k accuracy with `k = top5_k = min(5, num_classes)`),
        `mean_per_class_accuracy` (the mean over classes present in `y_true` of
        each class's accuracy: what Flowers-102 papers report), `macro_f1` (mean F1
        over the classes present in `y_true` or predicted; a class never right
        has F1 0), `log_loss` (mean negative log-probability of the true class),
        `ece` (expected calibration error, 10 bins), `n` and `num_classes`.
    """
    y_true = _as_labels(y_true, "y_true")
    probs = _check_probs(y_true, probs)
    num_classes = probs.shape[1]
    if class_names is not None and len(class_names) != num_classes:
        raise EvaluationError(
            f"Got {len(class_names)} class names for {num_classes} model outputs; "
            "pass the labels saved with this model (labels.json)."
        )
    n = int(y_true.size)
    if n == 0:
        raise EvaluationError("Cannot compute metrics on an empty subset (n=0).")
    y_pred = np.argmax(probs, axis=1)
    cm = confusion_matrix(y_true, y_pred, num_classes, normalize=False)
    _, recall, f1, support, predicted = _precision_recall_f1(cm)
    present = support > 0
    seen = present | (predicted > 0)
    k = min(5, num_classes)
    p_true = np.clip(probs[np.arange(n), y_true], 1e-12, 1.0)
    return {
        "n": n,
        "num_classes": int(num_classes),
        "top1": float(np.mean(y_pred == y_true)),
        "top5": top_k_accuracy(y_true, probs, k),
        "top5_k": int(k),
        "mean_per_class_accuracy": float(np.mean(recall[present])),
        "macro_f1": float(np.mean(f1[seen])),
        "log_loss": float(-np.mean(np.log(p_true))),
        "ece": reliability(y_true, probs).ece,
    }


def per_class_table(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> pd.DataFrame:
    """One row per class with support, accuracy, precision, recall and F1, worst first.

    A class's *accuracy* is the fraction of its images classified correctly (the
    per-class accuracy of the Flowers-102 literature); it equals its recall.

    Args:
        y_true: true class indices, shape `(n,)`.
        y_pred: predicted class indices, shape `(n,)`.
        class_names: one name per class (index = label).

    Returns:
        DataFrame with columns `label`, `class_name`, `support`, `accuracy`,
        `precision`, `recall`, `f1`, `confused_with` (the most frequent wrong
        prediction for this class, or "" if none), sorted by accuracy, then F1,
        then support (largest first), then label; classes without test images
        (support 0) come last.
    """
    names = list(class_names)
    cm = confusion_matrix(y_true, y_pred, len(names), normalize=False)
    precision, recall, f1, support, _ = _precision_recall_f1(cm)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    confused = [names[int(np.argmax(row))] if row.max() > 0 else "" for row in off]
    table = pd.DataFrame(
        {
            "label": np.arange(len(names)),
            "class_name": names,
            "support": support.astype(np.int64),
            "accuracy": recall,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "confused_with": confused,
        }
    )
    table["_absent"] = table["support"] == 0
    table = table.sort_values(
        ["_absent", "accuracy", "f1", "support", "label"], ascending=[True, True, True, False, True]
    )
    return table.drop(columns="_absent").reset_index(drop=True)


def most_confused_pairs(
    cm: np.ndarray, k: int = 10, class_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """The `k` largest off-diagonal cells of a confusion matrix.

    Args:
        cm: confusion matrix (counts or row-normalised), row = true class.
        k: how many pairs to return (fewer if fewer cells are non-zero).
        class_names: optional names to add as `true_name` / `pred_name` columns.

    Returns:
        DataFrame with columns `true`, `pred`, `value` (the cell: a count or the
        fraction of the true class predicted as `pred`) and, with names,
        `true_name`, `pred_name`; largest first, ties by (true, pred).
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise EvaluationError(f"cm must be a square matrix. Received shape {cm.shape}")
    if k < 0:
        raise EvaluationError(f"k must be >= 0. Received k={k}")
    off = cm.astype(np.float64).copy()
    np.fill_diagonal(off, 0.0)
    rows, cols = np.nonzero(off > 0)
    values = off[rows, cols]
    order = np.lexsort((cols, rows, -values))[:k]
    out = pd.DataFrame({"true": rows[order], "pred": cols[order], "value": values[order]})
    if class_names is not None:
        names = list(class_names)
        out["true_name"] = [names[i] for i in out["true"]]
        out["pred_name"] = [names[i] for i in out["pred"]]
    return out


class Reliability(NamedTuple):
    """A reliability table and its expected calibration error (`table, ece = ...`)."""

    table: pd.DataFrame
    ece: float


def reliability(y_true: Any, probs: Any, bins: int = 10) -> Reliability:
    """Calibration: is a prediction made with confidence p right a fraction p of the time?

    Each sample's confidence is its top probability; samples are grouped into
    `bins` equal-width confidence bins `(lo, hi]` (the first also holds 0).

    Args:
        y_true: true class indices, shape `(n,)`.
        probs: predicted probabilities, shape `(n, num_classes)`.
        bins: number of bins.

    Returns:
        `Reliability(table, ece)`: `table` has one row per bin with `lo`, `hi`,
        `count`, `confidence` (mean top probability), `accuracy` (fraction
        correct) and `gap` (`accuracy - confidence`; NaN for empty bins); `ece` is
        the count-weighted mean of `|gap|` (0 = perfectly calibrated).
    """
    y_true = _as_labels(y_true, "y_true")
    probs = _check_probs(y_true, probs)
    if bins < 1:
        raise EvaluationError(f"bins must be >= 1. Received bins={bins}")
    n = y_true.size
    confidence = probs.max(axis=1) if n else np.zeros(0)
    correct = (np.argmax(probs, axis=1) == y_true) if n else np.zeros(0, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        conf = float(confidence[mask].mean()) if count else float("nan")
        acc = float(correct[mask].mean()) if count else float("nan")
        if count:
            ece += count / n * abs(acc - conf)
        rows.append({"lo": edges[b], "hi": edges[b + 1], "count": count, "confidence": conf, "accuracy": acc})
    table = pd.DataFrame(rows)
    table["gap"] = table["accuracy"] - table["confidence"]
    return Reliability(table, float(ece) if n else float("nan"))


# --- running a model -------------------------------------------------------------


@dataclass
class Evaluation:
    """What `evaluate()` found, in the order of `table` (one row per image).

    Attributes:
        probs: predicted probabilities, shape `(n, num_classes)`.
        y_true: true labels from the split table, shape `(n,)`.
        y_pred: `argmax` of `probs`, shape `(n,)`.
        metrics: `compute_metrics()` plus `subset`, `split`, `tta`.
        per_class: `per_class_table()` (worst first).
        table: the rows of the split table that were evaluated (index reset).
        class_names: one name per model output.
        subset: `"test"`, `"val"` or `"train"`.
        split: the split's name (`cfg.split`).
        tta: whether test-time augmentation (horizontal flip) was used.
        data_dir: the data directory the images were read from.
        image_size: the side of the images the model saw.
    """

    probs: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    metrics: dict[str, Any]
    per_class: pd.DataFrame
    table: pd.DataFrame
    class_names: list[str]
    subset: str
    split: str
    tta: bool
    data_dir: Path
    image_size: int
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted class for each image."""
        return self.probs[np.arange(len(self.y_pred)), self.y_pred]

    def confusion(self, normalize: bool = True) -> np.ndarray:
        """The confusion matrix of this evaluation (row = true class)."""
        return confusion_matrix(self.y_true, self.y_pred, len(self.class_names), normalize=normalize)

    def reliability(self, bins: int = 10) -> Reliability:
        """The reliability table and ECE of this evaluation."""
        return reliability(self.y_true, self.probs, bins=bins)

    def most_confused(self, k: int = 10) -> pd.DataFrame:
        """The `k` most frequent (true, predicted) confusions, as fractions of the true class."""
        return most_confused_pairs(self.confusion(normalize=True), k, self.class_names)

    def mistakes(self) -> pd.DataFrame:
        """The misclassified images, most confident first.

        Returns:
            The evaluated table's rows (file, label, class_name, ...) that were
            wrong, with `pred`, `pred_name`, `confidence` and `p_true` columns.
        """
        out = self.table.copy()
        out["pred"] = self.y_pred
        out["pred_name"] = [self.class_names[i] for i in self.y_pred]
        out["confidence"] = self.confidence
        out["p_true"] = self.probs[np.arange(len(self.y_true)), self.y_true]
        wrong = out[out["pred"] != out["label"]]
        return wrong.sort_values("confidence", ascending=False, kind="stable")

    def image(self, row: int) -> np.ndarray:
        """The `row`-th evaluated image as the model saw it (resized, centre-cropped), 0..255."""
        from flowerlib import pipeline

        return pipeline.load_image(self.data_dir / self.table["file"].iloc[row], self.image_size)


def _class_names_for(table: pd.DataFrame, num_outputs: int) -> list[str]:
    from flowerlib.classes import CLASS_NAMES

    names = list(CLASS_NAMES[:num_outputs]) + [f"class {i}" for i in range(len(CLASS_NAMES), num_outputs)]
    if "class_name" in table.columns:
        for label, name in table[["label", "class_name"]].drop_duplicates().itertuples(index=False):
            if 0 <= int(label) < num_outputs:
                names[int(label)] = str(name)
    return names


def predict_dataset(
    model: keras.Model, dataset: Any, *, tta: bool = False, flip: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Run `model` over a `(images, labels)` dataset, keeping labels beside predictions.

    Each batch's labels are taken from the same element as its images, so the
    two can never be shuffled apart.

    Args:
        model: a classifier taking raw RGB images in 0..255.
        dataset: an iterable of `(images [B, H, W, 3], labels [B])` batches.
        tta: average the probabilities of each image and its horizontal flip.
        flip: predict the horizontally flipped images only.

    Returns:
        `(probs, labels)` as NumPy arrays.
    """
    if tta and flip:
        raise EvaluationError("Pass tta=True (image and flip averaged) or flip=True (flip only), not both.")
    probs, labels = [], []
    for images, batch_labels in dataset:
        images = np.asarray(images, dtype=np.float32)
        mirrored = images[:, :, ::-1, :]
        p = np.asarray(model.predict_on_batch(mirrored if flip else images), dtype=np.float64)
        if tta:
            p = 0.5 * (p + np.asarray(model.predict_on_batch(mirrored), dtype=np.float64))
        probs.append(p)
        labels.append(np.asarray(batch_labels))
    if not probs:
        num_outputs = int(model.output_shape[-1])
        return np.zeros((0, num_outputs)), np.zeros((0,), dtype=np.int64)
    return np.concatenate(probs), np.concatenate(labels).astype(np.int64)


def evaluate(
    model: keras.Model,
    table: pd.DataFrame,
    cfg: Config,
    *,
    subset: str = "test",
    tta: bool = False,
    class_names: Sequence[str] | None = None,
    batch_size: int | None = None,
) -> Evaluation:
    """Evaluate `model` on one subset of a split table (the held-out test subset by default).

    Images go through the same deterministic input pipeline as in training
    (`pipeline.make_dataset(..., training=False)`), in table order.

    Args:
        model: the trained classifier (raw RGB 0..255 in, softmax out).
        table: the split table from `splits.prepare_split(cfg)`.
        cfg: the configuration (data directory, image size, batch size, split).
        subset: which rows to evaluate: `"test"` (honest: never used for
            training or model selection), `"val"` or `"train"`.
        tta: test-time augmentation: average each image's prediction with its
            horizontal flip's.
        class_names: one name per model output (e.g. the run's `labels.json`);
            defaults to the names in `table`.
        batch_size: overrides `cfg.batch_size`.

    Returns:
        An `Evaluation` (probabilities, labels, predictions, metrics, per-class table).

    Raises:
        EvaluationError: unknown or empty subset, or labels outside the model's outputs.
    """
    from flowerlib import pipeline

    if subset not in SUBSETS:
        raise EvaluationError(f"subset must be one of {SUBSETS}. Received subset={subset!r}")
    if "split" not in table.columns or "label" not in table.columns:
        raise EvaluationError(
            "table must be a split table with 'split' and 'label' columns (from splits.prepare_split(cfg)). "
            f"Received columns {list(table.columns)}"
        )
    rows = table[table["split"] == subset].reset_index(drop=True)
    if rows.empty:
        raise EvaluationError(
            f"The split table has no {subset!r} rows (it has {sorted(table['split'].unique())}); "
            "choose another subset or split."
        )
    num_outputs = int(model.output_shape[-1])
    if rows["label"].max() >= num_outputs or rows["label"].min() < 0:
        raise EvaluationError(
            f"The table's labels go up to {rows['label'].max()} but the model has {num_outputs} outputs: "
            "this model was trained for a different number of classes (check cfg.num_classes and cfg.run)."
        )
    input_shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
    if input_shape[1] is not None and int(input_shape[1]) != cfg.image_size:
        raise EvaluationError(
            f"The model takes {input_shape[1]} px images but cfg.image_size={cfg.image_size}; "
            "evaluate with the configuration the model was trained with."
        )
    names = list(class_names) if class_names is not None else _class_names_for(rows, num_outputs)
    dataset = pipeline.make_dataset(
        rows,
        cfg.data_dir,
        image_size=cfg.image_size,
        batch_size=batch_size or cfg.batch_size,
        training=False,
    )
    probs, labels = predict_dataset(model, dataset, tta=tta)
    _check_alignment(labels, rows)
    return _evaluation(probs, rows, names, subset, cfg.split, tta, Path(cfg.data_dir), int(cfg.image_size))


def with_tta(model: keras.Model, evaluation: Evaluation, *, batch_size: int = 32) -> Evaluation:
    """The same evaluation with test-time augmentation, reusing the unflipped predictions.

    Averages `evaluation.probs` with the model's predictions of the horizontally
    flipped images: one more pass over the subset instead of the two that
    `evaluate(..., tta=True)` makes.

    Args:
        model: the model that produced `evaluation`.
        evaluation: an evaluation made without TTA.
        batch_size: images per forward pass.

    Returns:
        A new `Evaluation` with `tta=True`.

    Raises:
        EvaluationError: `evaluation` already used TTA.
    """
    from flowerlib import pipeline

    if evaluation.tta:
        raise EvaluationError("This evaluation already used TTA; pass one made with tta=False.")
    dataset = pipeline.make_dataset(
        evaluation.table,
        evaluation.data_dir,
        image_size=evaluation.image_size,
        batch_size=batch_size,
        training=False,
    )
    flipped, labels = predict_dataset(model, dataset, flip=True)
    _check_alignment(labels, evaluation.table)
    return _evaluation(
        0.5 * (evaluation.probs + flipped),
        evaluation.table,
        evaluation.class_names,
        evaluation.subset,
        evaluation.split,
        True,
        evaluation.data_dir,
        evaluation.image_size,
    )


def _check_alignment(labels: np.ndarray, rows: pd.DataFrame) -> None:
    y_true = rows["label"].to_numpy(dtype=np.int64)
    if labels.shape != y_true.shape or not np.array_equal(labels, y_true):
        raise EvaluationError(
            "The input pipeline returned labels in a different order than the split table "
            f"({labels.shape[0]} labels for {y_true.shape[0]} rows); evaluation needs a deterministic, "
            "unshuffled dataset (pipeline.make_dataset(..., training=False))."
        )


def _evaluation(
    probs: np.ndarray,
    rows: pd.DataFrame,
    names: list[str],
    subset: str,
    split: str,
    tta: bool,
    data_dir: Path,
    image_size: int,
) -> Evaluation:
    y_true = rows["label"].to_numpy(dtype=np.int64)
    metrics = compute_metrics(y_true, probs, names)
    metrics.update({"subset": subset, "split": split, "tta": bool(tta)})
    y_pred = np.argmax(probs, axis=1)
    return Evaluation(
        probs=probs,
        y_true=y_true,
        y_pred=y_pred,
        metrics=metrics,
        per_class=per_class_table(y_true, y_pred, names),
        table=rows,
        class_names=list(names),
        subset=subset,
        split=split,
        tta=bool(tta),
        data_dir=data_dir,
        image_size=image_size,
    )


def save_metrics(evaluation: Evaluation, run_layout: RunLayout) -> Path:
    """Write `metrics.json` and `per_class.csv` beside the model that produced them.

    Both files are written atomically. `metrics.json` names the model file, the
    subset, the split and whether TTA was used, so a number is never separated
    from what it measures.

    Args:
        evaluation: the result of `evaluate()`.
        run_layout: the run's folder (`Layout(cfg.data_dir).run(cfg.run)`).

    Returns:
        The path of `metrics.json`.
    """
    data = dict(evaluation.metrics)
    data.update(
        {
            "model": str(run_layout.model),
            "subset": evaluation.subset,
            "split": evaluation.split,
            "tta": evaluation.tta,
            "evaluated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
    )
    with artifacts.atomic_path(run_layout.per_class) as tmp:
        evaluation.per_class.to_csv(tmp, index=False)
    return artifacts.write_json(run_layout.metrics, data)


def load_metrics(run_layout: RunLayout) -> dict[str, Any]:
    """Read a run's `metrics.json` (see `save_metrics`)."""
    if not run_layout.metrics.is_file():
        raise ModelNotFoundError(
            f"No metrics at {run_layout.metrics}. Run 04_evaluate.ipynb (or `flowerlib evaluate`) first."
        )
    return artifacts.read_json(run_layout.metrics)


class TrainedModel(NamedTuple):
    """A trained model with its class names and run folder (`model, names, run = ...`)."""

    model: Any
    class_names: list[str]
    run: RunLayout


def load_trained(cfg: Config) -> TrainedModel:
    """Load the model and class names that training saved for `cfg.run`.

    The model is loaded with Keras's safe mode (no arbitrary code from the file).

    Args:
        cfg: the configuration of the training run (data directory and run name).

    Returns:
        `TrainedModel(model, class_names, run_layout)`.

    Raises:
        ModelNotFoundError: the run folder has no model or no labels yet.
        EvaluationError: the labels do not match the model's outputs.
    """
    run = Layout(cfg.data_dir).run(cfg.run)
    for path, what in ((run.model, "trained model"), (run.labels, "class names (labels.json)")):
        if not path.is_file():
            raise ModelNotFoundError(
                f"No {what} at {path}. Run 03_train.ipynb (or `flowerlib train`) first, with the same "
                f"configuration (data_dir={cfg.data_dir}, run={cfg.run!r})."
            )
    from flowerlib.model import load_model  # registers the custom Preprocess layer

    loaded = load_model(run.model)  # Keras safe mode
    names = artifacts.read_json(run.labels)
    if isinstance(names, dict):  # tolerate {"class_names": [...]}
        names = names.get("class_names", names.get("labels"))
    if not isinstance(names, list) or len(names) != int(loaded.output_shape[-1]):
        count = len(names) if isinstance(names, list) else "no list of"
        raise EvaluationError(
            f"{run.labels} holds {count} class names but the model has {loaded.output_shape[-1]} outputs; "
            "the run folder is inconsistent: re-run training."
        )
    return TrainedModel(loaded, [str(n) for n in names], run)
