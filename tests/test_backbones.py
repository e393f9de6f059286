"""The backbone registry: names, stages, preprocessing, weights and bad configurations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowerlib.backbones import (
    BACKBONES,
    ModelConfigError,
    alpha_from_filename,
    get_backbone,
    resolve_weights,
    spec_of,
)

SHARED_WEIGHTS = Path("/work/shared/weights")


def test_registry_has_the_promised_backbones():
    assert {"resnet50", "mobilenet_v2", "mobilenet", "tiny"} <= set(BACKBONES)
    spec = get_backbone("resnet50")
    assert spec.preprocess == "caffe"
    assert spec.last_conv_layer == "conv5_block3_out"
    assert spec.stage_name(0) == "conv5"
    assert get_backbone("mobilenet_v2").preprocess == "tf"


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ModelConfigError, match="resnet5O") as e:
        get_backbone("resnet5O")
    assert "mobilenet_v2" in str(e.value) and "tiny" in str(e.value)


@pytest.mark.parametrize(
    ("backbone", "layer", "stage"),
    [
        ("resnet50", "conv5_block3_out", 0),
        ("resnet50", "conv4_block1_1_conv", 1),
        ("resnet50", "pool1_pool", 4),
        ("resnet50", "input_layer", None),
        ("mobilenet_v2", "block_16_project_BN", 0),
        ("mobilenet_v2", "Conv_1_bn", 0),
        ("mobilenet_v2", "block_13_expand", 0),
        ("mobilenet_v2", "block_12_expand", 1),
        ("mobilenet_v2", "block_6_depthwise", 1),
        ("mobilenet_v2", "block_1_expand", 3),
        ("mobilenet_v2", "block_16_expand", 0),  # not block_1's
        ("mobilenet_v2", "expanded_conv_project", 4),
        ("mobilenet", "conv_pw_13_relu", 0),
        ("mobilenet", "conv_pad_12", 0),
        ("mobilenet", "conv_dw_11_bn", 1),
        ("mobilenet", "conv_dw_1", 4),
        ("mobilenet", "conv1_bn", 4),
    ],
)
def test_stage_of_matches_whole_name_parts(backbone, layer, stage):
    assert get_backbone(backbone).stage_of(layer) == stage


def test_alpha_is_read_from_keras_weight_file_names():
    assert alpha_from_filename("mobilenet_2_5_224_tf_no_top.h5") == 0.25
    assert alpha_from_filename("mobilenet_7_5_224_tf_no_top.h5") == 0.75
    assert alpha_from_filename("mobilenet_v2_1.0_224_no_top.weights.h5") == 1.0
    assert alpha_from_filename("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5") == 0.35
    assert alpha_from_filename("my_weights.h5") is None


def test_image_size_below_minimum_is_a_clear_error():
    with pytest.raises(ModelConfigError, match="image_size=16"):
        get_backbone("resnet50").build(16, None)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere.weights.h5"
    with pytest.raises(ModelConfigError, match="not found"):
        resolve_weights(missing)
    with pytest.raises(ModelConfigError, match="nowhere"):
        get_backbone("mobilenet_v2").build(32, str(missing))


def test_weights_of_another_architecture_are_a_clear_error(tmp_path):
    path = tmp_path / "mobilenet_v1.weights.h5"
    get_backbone("mobilenet").build(32, None, alpha=0.25).save_weights(path)
    with pytest.raises(ModelConfigError, match="mobilenet_v2") as e:
        get_backbone("mobilenet_v2").build(32, str(path))
    assert "does not match" in str(e.value)
    assert "use --backbone mobilenet (FLOWERS_BACKBONE=mobilenet)" in str(e.value)  # its name says which
    assert str(e.value).endswith(".)")  # Keras's words come last, in brackets, not cut mid-sentence
    anonymous = tmp_path / "weights.h5"
    path.rename(anonymous)
    with pytest.raises(ModelConfigError, match=r"Pick the backbone the file was saved from \(known"):
        get_backbone("mobilenet_v2").build(32, str(anonymous))


def test_local_weights_file_round_trip(tmp_path):
    spec = get_backbone("tiny")
    original = spec.build(32, None)
    path = tmp_path / "tiny.weights.h5"
    original.save_weights(path)
    copy = spec.build(32, str(path))
    for a, b in zip(original.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert copy.name == "backbone"
    assert spec_of(copy) is spec


def test_tiny_has_no_imagenet_weights():
    with pytest.raises(ModelConfigError, match="no ImageNet weights"):
        get_backbone("tiny").build(32, "imagenet")


TINY_WEIGHTS = Path(__file__).resolve().parents[1] / "flowerlib" / "data" / "tiny_backbone.weights.h5"


def test_packaged_tiny_weights_exist_are_small_and_load_over_the_random_ones():
    import keras

    assert TINY_WEIGHTS.is_file(), "run python flowerlib/data/make_tiny_backbone.py"
    assert TINY_WEIGHTS.stat().st_size < 1_000_000
    spec = get_backbone("tiny")
    keras.utils.set_random_seed(0)
    random = spec.build(64, None)
    keras.utils.set_random_seed(0)
    pretrained = spec.build(64, str(TINY_WEIGHTS))
    assert spec_of(pretrained) is spec
    kernels = {w.path: w.numpy() for w in pretrained.weights}
    for w in random.weights:
        assert not np.array_equal(w.numpy(), kernels[w.path]), f"{w.path} was not loaded"
    # BatchNorm statistics were learnt in pretraining, not left at 0 / 1
    assert np.abs(pretrained.get_layer("block3_bn").moving_mean.numpy()).max() > 1e-3


def _pooled_features(backbone, images: np.ndarray) -> np.ndarray:
    import keras

    x = images.astype("float32") / 127.5 - 1.0  # "tf" preprocessing, as `Preprocess` does
    return keras.ops.convert_to_numpy(keras.ops.mean(backbone(x, training=False), axis=(1, 2)))


def _nearest_centroid_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out accuracy of the nearest class centroid on standardised features."""
    f = (features - features.mean(0)) / (features.std(0) + 1e-6)
    classes = np.unique(labels)
    hits = 0
    for i in range(len(f)):
        others = np.arange(len(f)) != i
        centroids = np.stack([f[others & (labels == c)].mean(0) for c in classes])
        hits += classes[np.argmin(((centroids - f[i]) ** 2).sum(1))] == labels[i]
    return hits / len(f)


def test_pretrained_tiny_features_separate_the_smoke_classes_better_than_random_ones():
    import keras

    from flowerlib import synthetic

    labels = np.repeat(np.arange(10), 6)  # the smoke profile's classes, never seen in pretraining
    images = np.stack(
        [
            np.asarray(synthetic.draw_flower(int(c), 64, np.random.default_rng([99, i])))
            for i, c in enumerate(labels)
        ]
    )
    spec = get_backbone("tiny")
    pretrained = _pooled_features(spec.build(64, str(TINY_WEIGHTS)), images)
    keras.utils.set_random_seed(0)
    random = _pooled_features(spec.build(64, None), images)
    assert pretrained.std(0).mean() > 0.1, "pretrained features are nearly constant"
    acc_pretrained = _nearest_centroid_accuracy(pretrained, labels)
    acc_random = _nearest_centroid_accuracy(random, labels)
    assert acc_pretrained >= 0.9 and acc_pretrained > acc_random + 0.1, (acc_pretrained, acc_random)


@pytest.mark.skipif(
    not (SHARED_WEIGHTS / "mobilenet_2_5_224_tf_no_top.h5").is_file(), reason="shared weights absent"
)
def test_shared_mobilenet_weights_load_with_alpha_from_the_file_name():
    path = SHARED_WEIGHTS / "mobilenet_2_5_224_tf_no_top.h5"
    spec = get_backbone("mobilenet")
    assert spec.alpha_for(str(path)) == 0.25
    backbone = spec.build(64, str(path))
    assert backbone.output.shape[-1] == 256  # 1024 x alpha
    with pytest.raises(ModelConfigError, match="mobilenet_v2"):
        get_backbone("mobilenet_v2").build(64, str(path))


def test_failed_imagenet_download_is_a_clear_error_that_says_how_to_work_offline(monkeypatch, tmp_path):
    import urllib.error

    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty Keras cache: the file must be fetched
    with pytest.raises(ModelConfigError) as info:
        get_backbone("mobilenet").build(64, "imagenet")
    message = str(info.value)
    assert "Could not download the ImageNet weights of mobilenet" in message
    assert "~/.keras/models/" in message and "FLOWERS_WEIGHTS" in message
    assert not list(tmp_path.rglob("*.h5"))  # nothing half-downloaded left behind


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "mobilenet"])
def test_every_layer_with_weights_is_in_a_stage_and_stages_are_resolutions(name):
    spec = get_backbone(name)
    backbone = spec.build(64, None)
    for layer in backbone.layers:
        if layer.weights:
            assert spec.stage_of(layer.name) is not None, layer.name
    # the last stage sees the smallest feature maps, the first the largest
    sides = {}
    for layer in backbone.layers:
        stage = spec.stage_of(layer.name)
        if stage is not None:
            sides.setdefault(stage, set()).add(int(layer.output.shape[1]))
    assert len(sides) == len(spec.stages) == 5
    assert max(sides[0]) < min(sides[2]) and max(sides[1]) < max(sides[3])
    assert [spec.stage_name(i) for i in range(5)][-1] in ("stem", "conv1")
