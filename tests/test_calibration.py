"""Temperature scaling: fitting, applying it to the model, and what it must not change."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from flowerlib.calibration import apply_temperature, fit_temperature, log_loss_at, scale_probabilities
from flowerlib.metrics import compute_metrics


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sample(n=4000, classes=10, seed=0):
    """Labels drawn from softmax(z): z itself is calibrated, z * s is not."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, (n, classes))
    p = softmax(z)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return z, labels


@pytest.mark.parametrize("sharpness", [3.0, 0.4])
def test_fit_recovers_the_temperature_that_undoes_over_and_underconfidence(sharpness):
    z, labels = sample()
    probs = softmax(z * sharpness)  # overconfident (3.0) or underconfident (0.4)
    t = fit_temperature(probs, labels)
    assert t == pytest.approx(sharpness, rel=0.1)
    assert log_loss_at(probs, labels, t) < log_loss_at(probs, labels, 1.0)
    ece = compute_metrics(labels, probs)["ece"]
    assert compute_metrics(labels, scale_probabilities(probs, t))["ece"] < ece / 2


def test_scaling_never_changes_the_predicted_class_and_calibrated_stays_near_one():
    z, labels = sample(seed=1)
    probs = softmax(z)
    assert fit_temperature(probs, labels) == pytest.approx(1.0, abs=0.1)
    for t in (0.3, 1.0, 5.0):
        scaled = scale_probabilities(probs, t)
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0, rtol=1e-9)
        np.testing.assert_array_equal(scaled.argmax(axis=1), probs.argmax(axis=1))


def test_bad_inputs_are_clear_errors_and_tiny_inputs_leave_the_model_alone():
    with pytest.raises(ValueError, match="probs"):
        fit_temperature(np.ones((3, 2)) / 2, np.array([0, 1]))
    with pytest.raises(ValueError, match="0..1"):
        fit_temperature(np.ones((2, 2)) / 2, np.array([0, 2]))
    assert fit_temperature(np.array([[0.9, 0.1]]), np.array([1])) == 1.0


def test_applied_to_the_softmax_layer_it_equals_dividing_the_logits():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(4, activation="softmax", name="predictions")(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    before = model.predict(x, verbose=0)
    apply_temperature(model, 2.5)
    np.testing.assert_allclose(model.predict(x, verbose=0), scale_probabilities(before, 2.5), atol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(model, 0.0)
    relu = keras.Model(inputs, keras.layers.Dense(4, activation="relu", name="predictions")(inputs))
    with pytest.raises(ValueError, match="softmax"):
        apply_temperature(relu, 2.0)
