"""Temperature scaling: make the model's confidence mean what it says.

A classifier trained with label smoothing (or on few images) outputs
probabilities that are systematically too low or too high: label smoothing
leaves it far less confident than it is accurate (measured in
benchmarks/RESULTS.md, "calibration").
Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural
Networks") divides the logits by one number `T`, fitted on held-out
validation images by minimising the log loss. It never changes which class
wins, so accuracy stays exactly the same; only the confidence moves.

The model's last layer is `Dense(softmax)`, so dividing its logits by `T` is
the same as dividing its kernel and bias by `T`: the calibrated model has the
same layers as before, and nothing new to save or load.

    probs = model.predict(val_images)
    t = fit_temperature(probs, val_labels)
    apply_temperature(model, t)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

T_MIN, T_MAX = 0.05, 20.0
_TINY = 1e-12


def _scaled_log_probs(probs: np.ndarray, t: float) -> np.ndarray:
    """log softmax(log(p) / t): the log-probabilities after dividing the logits by `t`."""
    z = np.log(np.clip(probs, _TINY, 1.0)) / t
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def scale_probabilities(probs: np.ndarray, t: float) -> np.ndarray:
    """The probabilities a model would give with its logits divided by `t`."""
    return np.exp(_scaled_log_probs(np.asarray(probs, dtype=np.float64), float(t)))


def log_loss_at(probs: np.ndarray, labels: np.ndarray, t: float) -> float:
    """Mean negative log-likelihood of `labels` after temperature `t`."""
    logp = _scaled_log_probs(np.asarray(probs, dtype=np.float64), float(t))
    return float(-logp[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)].mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the log loss of `labels` under `probs`.

    Args:
        probs: `[N, C]` softmax outputs of the model on held-out images.
        labels: `[N]` their true classes.

    Returns:
        `T` in [0.05, 20]: above 1 the model was overconfident, below 1
        underconfident. 1.0 when there is nothing to fit (fewer than 2 images).

    Raises:
        ValueError: shapes that do not match, or labels outside `0..C-1`.
    """
    from scipy.optimize import minimize_scalar

    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(
            f"Expected probs [N, C] and labels [N]. Received probs {probs.shape}, labels {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(
            f"Labels must be in 0..{probs.shape[1] - 1}. Received {labels.min()}..{labels.max()}"
        )
    if len(labels) < 2:
        return 1.0
    # The log loss is smooth and unimodal in log T: a bounded 1-D search is enough.
    result = minimize_scalar(
        lambda log_t: log_loss_at(probs, labels, float(np.exp(log_t))),
        bounds=(np.log(T_MIN), np.log(T_MAX)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    t = float(np.exp(result.x))
    # Never return something worse than leaving the model alone.
    return t if log_loss_at(probs, labels, t) <= log_loss_at(probs, labels, 1.0) else 1.0


def apply_temperature(model: keras.Model, t: float, *, layer: str = "predictions") -> keras.Model:
    """Divide the logits of the model's softmax layer by `t` (in place).

    Args:
        model: a classifier whose layer `layer` (directly, or inside its `head`;
            else the head's last layer) is a `Dense` with softmax.
        t: the temperature (> 0).
        layer: name of that layer.

    Returns:
        The model.

    Raises:
        ValueError: `t` not positive, or the layer is not a softmax `Dense` with a bias.
    """
    import keras

    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"The temperature must be a positive number. Received t={t!r}")
    owner = model.get_layer("head") if "head" in [la.name for la in model.layers] else model
    names = [la.name for la in owner.layers]
    if layer not in names and isinstance(owner, keras.Sequential) and owner.layers:
        layer = names[-1]  # an edited head: its last layer is the output
    dense = owner.get_layer(layer)
    activation = getattr(dense, "activation", None)
    if not isinstance(dense, keras.layers.Dense) or activation is not keras.activations.softmax:
        raise ValueError(f"Layer {layer!r} must be a Dense layer with a softmax activation.")
    weights = dense.get_weights()
    if len(weights) != 2:
        raise ValueError(f"Layer {layer!r} must have a bias (kernel and bias weights).")
    dense.set_weights([w / t for w in weights])
    return model
