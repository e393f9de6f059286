"""Metrics of a classifier on NumPy arrays: accuracy, confusion, per-class tables, calibration.

No TensorFlow and no scikit-learn: each function can be checked by hand on a small
example. `flowerlib.evaluate` runs a model and hands its predictions to these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from flowerlib.errors import FlowerlibError


class EvaluationError(FlowerlibError, ValueError):
    """The inputs of an evaluation do not fit together (shapes, labels, parts)."""


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
    """Headline metrics of a classifier on a set of samples (e.g. one part of a split).

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
        The scikit-learn equivalents, which `tests/test_metrics_sklearn.py`
        checks these against: `accuracy_score`, `top_k_accuracy_score`,
        `balanced_accuracy_score`, `f1_score(average="macro", zero_division=0)`,
        `log_loss`; ECE is this project's own.
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
        raise EvaluationError("Cannot compute metrics on an empty set of samples (n=0).")
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
