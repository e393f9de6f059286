"""The hand-written metrics (kept: their formulas teach) agree with scikit-learn's.

Test-only: flowerlib itself does not depend on scikit-learn. ECE is the project's own.
"""

from __future__ import annotations

import numpy as np
import pytest

from flowerlib import metrics

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def sample(seed: int, n: int = 200, classes: int = 12, missing: int = 2):
    """Random labels with some classes never true and a classifier that is right about half the time."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes - missing, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), y] += rng.uniform(0, 3, n)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_headline_metrics_match_scikit_learn(seed):
    y, probs = sample(seed)
    classes = np.arange(probs.shape[1])
    pred = probs.argmax(1)
    ours = metrics.compute_metrics(y, probs)
    assert ours["top1"] == pytest.approx(sklearn_metrics.accuracy_score(y, pred))
    assert ours["top5"] == pytest.approx(sklearn_metrics.top_k_accuracy_score(y, probs, k=5, labels=classes))
    assert ours["mean_per_class_accuracy"] == pytest.approx(sklearn_metrics.balanced_accuracy_score(y, pred))
    assert ours["macro_f1"] == pytest.approx(
        sklearn_metrics.f1_score(y, pred, average="macro", zero_division=0)
    )
    assert ours["log_loss"] == pytest.approx(sklearn_metrics.log_loss(y, probs, labels=classes), rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_confusion_matrix_and_per_class_table_match_scikit_learn(seed):
    y, probs = sample(seed)
    pred = probs.argmax(1)
    c = probs.shape[1]
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y, pred, c, normalize=False),
        sklearn_metrics.confusion_matrix(y, pred, labels=np.arange(c)),
    )
    names = [f"class {i}" for i in range(c)]
    table = metrics.per_class_table(y, pred, names).set_index("label").sort_index()
    precision, recall, f1, support = sklearn_metrics.precision_recall_fscore_support(
        y, pred, labels=np.arange(c), zero_division=0
    )
    present = table.index.to_numpy()
    np.testing.assert_allclose(table["accuracy"], recall[present])
    np.testing.assert_array_equal(table["support"], support[present])
    np.testing.assert_allclose(table["f1"], f1[present])
    np.testing.assert_allclose(table["precision"], precision[present])
