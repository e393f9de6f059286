"""Metrics on arrays, against values computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowerlib import metrics

# Six samples, four classes; class 3 is never the true class but is predicted once.
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
PROBS = np.array(
    [
        [0.8, 0.1, 0.05, 0.05],  # 0 -> 0 right
        [0.6, 0.3, 0.05, 0.05],  # 0 -> 0 right
        [0.1, 0.2, 0.1, 0.6],  # 0 -> 3 wrong
        [0.2, 0.7, 0.05, 0.05],  # 1 -> 1 right
        [0.5, 0.4, 0.05, 0.05],  # 1 -> 0 wrong
        [0.1, 0.1, 0.7, 0.1],  # 2 -> 2 right
    ]
)
NAMES = ["a", "b", "c", "d"]


def test_metrics_match_hand_computed_values():
    m = metrics.compute_metrics(Y_TRUE, PROBS, NAMES)
    assert m["n"] == 6 and m["num_classes"] == 4
    assert m["top1"] == pytest.approx(4 / 6)
    assert m["top5_k"] == 4 and m["top5"] == 1.0  # k = min(5, C)
    # per-class accuracy: a 2/3, b 1/2, c 1/1; d has no true samples and is left out
    assert m["mean_per_class_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # F1: a (p 2/3, r 2/3) 2/3; b (p 1, r 1/2) 2/3; c 1; d (predicted once, never right) 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 0) / 4)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.6, 0.1, 0.7, 0.4, 0.7])))
    assert m["ece"] == pytest.approx(0.25)
    json.dumps(m)  # JSON-friendly


def test_top_k_accuracy_breaks_ties_by_class_index():
    # sample 2: order 3, 1, then 0 before 2 (tie at 0.1) -> true class 0 not in the top 2
    assert metrics.top_k_accuracy(Y_TRUE, PROBS, 2) == pytest.approx(5 / 6)
    assert metrics.top_k_accuracy(Y_TRUE, PROBS, 3) == pytest.approx(1.0)
    # a constant output is not "right" for every class
    assert metrics.top_k_accuracy([0, 1, 2], np.full((3, 3), 1 / 3), 1) == pytest.approx(1 / 3)


def test_confusion_matrix_counts_and_normalised_rows():
    y_pred = PROBS.argmax(axis=1)
    counts = metrics.confusion_matrix(Y_TRUE, y_pred, 4, normalize=False)
    expected = np.array([[2, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(counts, expected)
    norm = metrics.confusion_matrix(Y_TRUE, y_pred, 4)
    np.testing.assert_allclose(norm[0], [2 / 3, 0, 0, 1 / 3])
    np.testing.assert_allclose(norm[3], 0.0)  # absent class: zeros, not NaN


def test_per_class_table_is_worst_first_with_precision_recall_f1():
    table = metrics.per_class_table(Y_TRUE, PROBS.argmax(axis=1), NAMES)
    assert list(table["class_name"]) == ["b", "a", "c", "d"]  # d has no support: last
    b = table.iloc[0]
    assert (b.support, b.accuracy, b.precision, b.recall) == (2, 0.5, 1.0, 0.5)
    assert b.f1 == pytest.approx(2 / 3)
    assert b.confused_with == "a"
    a = table.set_index("class_name").loc["a"]
    assert a.precision == pytest.approx(2 / 3) and a.confused_with == "d"
    assert {"label", "class_name", "support", "accuracy", "precision", "recall", "f1"} <= set(table.columns)


def test_most_confused_pairs_largest_first():
    cm = metrics.confusion_matrix(Y_TRUE, PROBS.argmax(axis=1), 4)
    pairs = metrics.most_confused_pairs(cm, 5, NAMES)
    assert list(zip(pairs["true"], pairs["pred"], strict=True)) == [(1, 0), (0, 3)]
    assert pairs["value"].tolist() == pytest.approx([0.5, 1 / 3])
    assert pairs["true_name"].tolist() == ["b", "a"] and pairs["pred_name"].tolist() == ["a", "d"]
    assert len(metrics.most_confused_pairs(cm, 1)) == 1


def test_reliability_table_and_ece():
    table, ece = metrics.reliability(Y_TRUE, PROBS, bins=10)
    assert ece == pytest.approx(0.25)
    assert len(table) == 10 and table["count"].sum() == 6
    row = table.iloc[5]  # (0.5, 0.6]: confidences 0.6 (right) and 0.6 (wrong)
    assert row["count"] == 2 and row["accuracy"] == 0.5 and row["confidence"] == pytest.approx(0.6)
    assert np.isnan(table.iloc[0]["accuracy"])  # empty bin
    perfect = np.eye(3)
    assert metrics.reliability([0, 1, 2], perfect).ece == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("y_true", "probs", "match"),
    [
        ([0, 1], np.ones((3, 2)) / 2, "shape"),
        ([0, 5], np.ones((2, 2)) / 2, "outside"),
        ([[0, 1]], np.ones((2, 2)) / 2, "1-D"),
        ([], np.zeros((0, 2)), "empty"),
    ],
)
def test_metrics_reject_inconsistent_inputs(y_true, probs, match):
    with pytest.raises(metrics.EvaluationError, match=match):
        metrics.compute_metrics(y_true, probs)


def test_metrics_import_no_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, flowerlib.metrics; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
