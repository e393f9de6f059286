"""Grad-CAM: where in the picture did the network look to decide on a class?

Grad-CAM (Selvaraju et al., 2017) weighs each channel of the backbone's last
convolutional feature map by the gradient of the class score with respect to
that channel (averaged over the map), sums the channels, keeps the positive
part and scales it to [0, 1]. Upsampled to the image, it is a heatmap of the
regions that raised the class's score.

The classifier nests its backbone as one layer (`image -> preprocess ->
backbone -> pool -> dropout -> predictions`), so the last conv stage is not
reachable from the outer model's graph. `gradcam_model()` therefore builds a
model from the backbone's input to `[last conv output, backbone output]`, and
`gradcam()` applies the outer model's own layers before (preprocessing) and
after (the head) it under one `GradientTape`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from flowerlib.errors import FlowerlibError

if TYPE_CHECKING:  # pragma: no cover
    import keras


class GradCAMError(FlowerlibError, ValueError):
    """The model or layer does not fit Grad-CAM (no nested backbone, unknown layer)."""


def _backbone(model: keras.Model) -> Any:
    import keras

    try:
        backbone = model.get_layer("backbone")
    except ValueError:
        nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        if len(nested) != 1:
            raise GradCAMError(
                "Grad-CAM needs the classifier built by flowerlib.model.build_classifier: a nested "
                f"keras.Model layer named 'backbone'. Layers of this model: {[la.name for la in model.layers]}"
            ) from None
        backbone = nested[0]
    if not isinstance(backbone, keras.Model):
        raise GradCAMError(
            f"The layer 'backbone' must be a nested keras.Model. Received {type(backbone).__name__}"
        )
    return backbone


def last_conv_layer(backbone: keras.Model) -> str:
    """Name of the backbone's last convolutional feature map.

    The registered spec's `last_conv_layer` when the backbone is one of
    `flowerlib.backbones.BACKBONES` (for ResNet50 `conv5_block3_out`), otherwise
    the last layer with a 4-D (spatial) output.
    """
    from flowerlib import backbones

    try:
        return backbones.spec_of(backbone).last_conv_layer
    except backbones.ModelConfigError:
        pass
    for layer in reversed(backbone.layers):
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4:
            return layer.name
    raise GradCAMError(f"The backbone {backbone.name!r} has no layer with a spatial (4-D) output.")


def gradcam_model(model: keras.Model, layer_name: str | None = None) -> tuple[Any, list[Any], list[Any]]:
    """Split a classifier for Grad-CAM.

    Args:
        model: the classifier (`image -> preprocess -> backbone -> head`).
        layer_name: the backbone layer whose output to explain; defaults to the
            last layer with a spatial output (`last_conv_layer`).

    Returns:
        `(inner, before, after)`: `inner` maps the backbone's input to
        `[conv output, backbone output]`; `before` and `after` are the outer
        model's layers that come before and after the backbone, in order.

    Raises:
        GradCAMError: no nested backbone, or `layer_name` is not one of its layers.
    """
    import keras

    backbone = _backbone(model)
    name = layer_name or last_conv_layer(backbone)
    try:
        conv = backbone.get_layer(name)
    except ValueError:
        candidates = [la.name for la in backbone.layers if "conv" in la.name or "out" in la.name][-5:]
        raise GradCAMError(
            f"The backbone {backbone.name!r} has no layer {name!r}. Its last conv-like layers: {candidates}"
        ) from None
    if len(conv.output.shape) != 4:
        raise GradCAMError(f"Layer {name!r} must have a spatial (4-D) output. Received {conv.output.shape}")
    inner = keras.Model(backbone.inputs, [conv.output, backbone.output], name="gradcam_inner")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    position = layers.index(backbone)
    return inner, layers[:position], layers[position + 1 :]


def _class_scores(after: list[Any], features: Any) -> Any:
    """The class scores *before* the softmax (Selvaraju et al.; the Keras Grad-CAM example).

    The softmax probability of a confident prediction is saturated: its gradient
    vanishes and the heat map would be all zeros. So the last `Dense` layer with a
    softmax is applied as `features @ kernel + bias`.
    """
    import keras
    from keras import ops

    flat: list[Any] = []
    for layer in after:
        flat += layer.layers if isinstance(layer, keras.Sequential) else [layer]
    y = features
    for i, layer in enumerate(flat):
        last = i == len(flat) - 1
        if last and isinstance(layer, keras.layers.Dense) and layer.activation is keras.activations.softmax:
            return ops.matmul(y, layer.kernel) + (layer.bias if layer.use_bias else 0.0)
        y = layer(y, training=False)
    return y


def gradcam(
    model: keras.Model,
    image: Any,
    class_index: int | None = None,
    layer_name: str | None = None,
) -> np.ndarray:
    """The Grad-CAM heatmap of one image for one class.

    Args:
        model: the classifier (raw RGB 0..255 in, probabilities out).
        image: an RGB image in 0..255 of the model's input size, or anything
            `prediction.load_image` accepts (path, URL, PIL image, array of
            any size), which is then resized and centre-cropped like a test image.
        class_index: the class to explain; defaults to the predicted class.
        layer_name: the backbone layer to explain (default: its last conv output).

    Returns:
        float32 heatmap `(S, S)` in [0, 1] over the model's `S x S` input (all
        zeros when nothing in the image raised the class's score).

    Raises:
        GradCAMError: the model has no nested backbone or `layer_name` is unknown.
        ValueError: `class_index` is out of range.
    """
    import tensorflow as tf

    from flowerlib import prediction

    size = prediction._model_input_size(model)
    array = np.asarray(image, dtype=np.float32) if isinstance(image, np.ndarray) else None
    if array is None or array.shape != (size, size, 3):
        array = prediction.prepare_image(image, size)
    inner, before, after = gradcam_model(model, layer_name)
    x = tf.convert_to_tensor(array[None])
    for layer in before:
        x = layer(x, training=False)
    with tf.GradientTape() as tape:
        conv, features = inner(x, training=False)
        tape.watch(conv)
        logits = tf.cast(_class_scores(after, features), tf.float32)
        num_classes = int(logits.shape[-1])
        if class_index is None:
            class_index = int(tf.argmax(logits[0]))
        elif not 0 <= int(class_index) < num_classes:
            raise ValueError(
                f"class_index must be in 0..{num_classes - 1}. Received class_index={class_index}"
            )
        score = logits[:, int(class_index)]
    grads = tape.gradient(score, conv)
    if grads is None:
        raise GradCAMError("The class score does not depend on the chosen layer; pick an earlier layer_name.")
    conv = tf.cast(conv, tf.float32)[0]
    weights = tf.reduce_mean(tf.cast(grads, tf.float32)[0], axis=(0, 1))
    cam = tf.nn.relu(tf.reduce_sum(conv * weights, axis=-1))
    peak = float(tf.reduce_max(cam))
    cam = cam / peak if peak > 0 else tf.zeros_like(cam)
    heatmap = tf.image.resize(cam[:, :, None], (size, size), method="bilinear")[:, :, 0]
    return np.clip(heatmap.numpy(), 0.0, 1.0).astype(np.float32)


def overlay(image: Any, heatmap: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a heatmap, coloured by `cmap`, over an RGB image.

    Args:
        image: `(H, W, 3)` RGB in 0..255.
        heatmap: `(h, w)` values in [0, 1]; resized to `(H, W)` if needed.
        alpha: weight of the heatmap's colour (0 = image only, 1 = heatmap only).
        cmap: a matplotlib colour map name.

    Returns:
        uint8 `(H, W, 3)` image.
    """
    import matplotlib
    from PIL import Image

    image = np.asarray(image, dtype=np.float32)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3). Received shape {image.shape}")
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must have shape (h, w). Received shape {heatmap.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]. Received alpha={alpha}")
    if heatmap.shape != image.shape[:2]:
        resized = Image.fromarray(heatmap).resize((image.shape[1], image.shape[0]), Image.Resampling.BILINEAR)
        heatmap = np.asarray(resized, dtype=np.float32)
    colours = matplotlib.colormaps[cmap](np.clip(heatmap, 0.0, 1.0))[:, :, :3] * 255.0
    return np.clip((1.0 - alpha) * image + alpha * colours, 0, 255).astype(np.uint8)
