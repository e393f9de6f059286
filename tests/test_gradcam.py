"""Grad-CAM: heatmap shape and range, and that it follows what the model responds to."""

from __future__ import annotations

import numpy as np
import pytest

from flowerlib import gradcam

SIZE = 48


def _red_detector():
    """Classifier (contract layer names, nested backbone) whose class 0 means "red is present".

    The backbone's only feature is relu(R - G - B) pooled 4x4, so a red flower
    lights up its feature map exactly where it is; class 0's logit rises with the
    pooled feature and class 1's falls.
    """
    import keras

    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="preprocess")(inputs)
    b_in = keras.Input((SIZE, SIZE, 3))
    red = keras.layers.Conv2D(1, 1, activation="relu", name="red")(b_in)
    b_out = keras.layers.AveragePooling2D(4, name="last_conv")(red)
    backbone = keras.Model(b_in, b_out, name="backbone")
    backbone.get_layer("red").set_weights([np.array([1.0, -1.0, -1.0]).reshape(1, 1, 3, 1), np.zeros(1)])
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    dense = keras.layers.Dense(2, activation="softmax", name="predictions")
    outputs = dense(x)
    dense.set_weights([np.array([[20.0, -20.0]]), np.zeros(2)])
    return keras.Model(inputs, outputs)


def _flower(cx: int, cy: int) -> np.ndarray:
    """Green background with a red disc of radius 8 at (cx, cy)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    image = np.zeros((SIZE, SIZE, 3), np.float32)
    image[...] = (40, 140, 50)
    image[(xx - cx) ** 2 + (yy - cy) ** 2 <= 64] = (230, 20, 30)
    return image


@pytest.fixture(scope="module")
def model():
    return _red_detector()


def test_heatmap_shape_range_and_location(model):
    image = _flower(12, 34)
    heatmap = gradcam.gradcam(model, image)  # predicted class: 0 ("red")
    assert heatmap.shape == (SIZE, SIZE) and heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() == pytest.approx(1.0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    inside = (xx - 12) ** 2 + (yy - 34) ** 2 <= 64
    assert heatmap[inside].mean() > 3 * heatmap[~inside].mean()
    peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert abs(peak[0] - 34) <= 8 and abs(peak[1] - 12) <= 8


def test_heatmap_responds_to_the_image(model):
    a = gradcam.gradcam(model, _flower(12, 12), class_index=0)
    b = gradcam.gradcam(model, _flower(36, 36), class_index=0)
    assert np.abs(a - b).mean() > 0.1
    blank = gradcam.gradcam(model, np.full((SIZE, SIZE, 3), 128.0, np.float32), class_index=0)
    np.testing.assert_array_equal(blank, 0.0)  # nothing raised the score: zeros, not NaN
    against = gradcam.gradcam(model, _flower(12, 12), class_index=1)  # red lowers class 1
    np.testing.assert_array_equal(against, 0.0)


def test_any_size_input_is_cropped_like_a_test_image(model):
    wide = np.concatenate([np.full((SIZE, 24, 3), (40, 140, 50), np.float32), _flower(24, 24)], axis=1)
    heatmap = gradcam.gradcam(model, wide.astype(np.uint8))  # 48 x 72: the centre square is kept
    assert heatmap.shape == (SIZE, SIZE)


def test_real_backbone_and_layer_choice():
    from flowerlib.config import Config
    from flowerlib.model import build_classifier

    cfg = Config.for_profile("smoke", image_size=32, num_classes=3)
    model = build_classifier(cfg)
    assert gradcam.last_conv_layer(model.get_layer("backbone")) == "block3_relu"
    image = np.random.default_rng(0).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    heatmap = gradcam.gradcam(model, image, class_index=2)
    assert heatmap.shape == (32, 32) and np.all(np.isfinite(heatmap))
    assert gradcam.gradcam(model, image, layer_name="block2_relu").shape == (32, 32)
    with pytest.raises(gradcam.GradCAMError, match="no layer 'nope'"):
        gradcam.gradcam(model, image, layer_name="nope")
    with pytest.raises(ValueError, match="class_index must be in 0..2"):
        gradcam.gradcam(model, image, class_index=3)


def test_overlay_blends_heatmap_over_image():
    image = np.zeros((8, 8, 3), np.float32)
    heat = np.zeros((4, 4), np.float32)
    heat[:2, :2] = 1.0
    out = gradcam.overlay(image, heat, alpha=0.5)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] > out[0, 0, 2] and out[7, 7, 2] > out[7, 7, 0]  # jet: red hot, blue cold
    np.testing.assert_array_equal(gradcam.overlay(image, heat, alpha=0.0), 0)
    with pytest.raises(ValueError, match="alpha"):
        gradcam.overlay(image, heat, alpha=2.0)


def test_model_without_nested_backbone_is_refused():
    import keras

    inputs = keras.Input((32, 32, 3))
    flat = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs)))
    with pytest.raises(gradcam.GradCAMError, match="nested"):
        gradcam.gradcam(flat, np.zeros((32, 32, 3), np.float32))


def test_a_saturated_prediction_still_gets_a_heat_map():
    # With weights this large the softmax says p = 1.0 exactly in float32: its gradient is
    # zero, and Grad-CAM on the probability would be all zeros. On the logit it is not.
    saturated = _red_detector()
    dense = saturated.get_layer("predictions")
    dense.set_weights([np.array([[5000.0, -5000.0]]), np.zeros(2)])
    image = _flower(30, 16)
    assert float(saturated.predict(image[None], verbose=0)[0, 0]) == 1.0
    heatmap = gradcam.gradcam(saturated, image)
    assert heatmap.max() == pytest.approx(1.0)
    peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert abs(peak[0] - 16) <= 8 and abs(peak[1] - 30) <= 8


def test_the_classifier_of_build_classifier_works_with_its_nested_head(tmp_path):
    from flowerlib.config import Config
    from flowerlib.model import build_classifier

    model = build_classifier(Config.for_profile("smoke", data_dir=tmp_path, num_classes=3))
    heatmap = gradcam.gradcam(model, np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype("float32"))
    assert heatmap.shape == (64, 64) and np.isfinite(heatmap).all()
