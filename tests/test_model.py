"""The classifier: structure, phases (BatchNorm always frozen), preprocessing, saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from flowerlib.backbones import ModelConfigError
from flowerlib.config import Config
from flowerlib.model import (
    Preprocess,
    SparseSmoothedCrossentropy,
    backbone_of,
    build_classifier,
    compile_for_phase,
    feature_extractor,
    load_model,
    loss_for,
    predictions_layer,
    save_model,
    set_trainable,
    trainable_summary,
)


def make_cfg(tmp_path, **overrides) -> Config:
    values = {"data_dir": tmp_path, "backbone": "resnet50", "weights": None, "image_size": 32, "dropout": 0.0}
    return Config.for_profile("smoke", **{**values, **overrides})


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    keras.utils.set_random_seed(0)
    return build_classifier(make_cfg(tmp_path_factory.mktemp("m"), num_classes=5))


def images(n=4, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def imagenet_like_batchnorm(model, seed: int = 0) -> None:
    """Give every BatchNorm layer of the backbone non-trivial statistics, as after ImageNet training."""
    rng = np.random.default_rng(seed)
    for layer in backbone_of(model).layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, shape),
                    rng.normal(0, 0.1, shape),
                    rng.normal(0, 0.1, shape),
                    rng.uniform(0.5, 2.0, shape),
                ]
            )


def count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def test_layers_follow_the_contract(resnet):
    names = [layer.name for layer in resnet.layers]
    assert names == ["image", "preprocess", "backbone", "pool", "head"]
    assert [layer.name for layer in resnet.get_layer("head").layers] == ["dropout", "predictions"]
    assert isinstance(resnet.get_layer("preprocess"), Preprocess)
    assert isinstance(backbone_of(resnet), keras.Model)
    assert predictions_layer(resnet).units == 5
    assert predictions_layer(resnet).dtype_policy.name == "float32"
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in resnet.layers)
    # The backbone is called with training=False, recorded in the graph (and so in a saved model).
    node = backbone_of(resnet)._inbound_nodes[0]
    assert node.arguments.kwargs.get("training") is False


def test_head_phase_freezes_the_whole_backbone(resnet):
    set_trainable(resnet, "head")
    head = resnet.get_layer("head")
    assert count(resnet.trainable_weights) == count(head.trainable_weights) == 2048 * 5 + 5
    summary = trainable_summary(resnet)
    assert summary.loc["head", "trainable"] == 2048 * 5 + 5
    assert summary.loc["total", "trainable"] + summary.loc["total", "frozen"] == resnet.count_params()


def test_fine_tune_unfreezes_last_stages_but_never_batchnorm(resnet):
    for stages, trainable_stages in ((1, {"conv5"}), (2, {"conv5", "conv4"})):
        set_trainable(resnet, "fine_tune", stages)
        backbone = backbone_of(resnet)
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                assert not layer.trainable and not layer.trainable_weights, layer.name
            elif layer.weights:
                assert layer.trainable == (layer.name.split("_")[0] in trainable_stages), layer.name
        summary = trainable_summary(resnet)
        expected = sum(
            count(layer.weights)
            for layer in backbone.layers
            if layer.name.split("_")[0] in trainable_stages
            and not isinstance(layer, keras.layers.BatchNormalization)
        )
        assert summary.loc[[f"backbone:{s}" for s in trainable_stages], "trainable"].sum() == expected
        assert summary.loc["backbone:conv1", "trainable"] == 0
        assert count(resnet.trainable_weights) == expected + 2048 * 5 + 5
    set_trainable(resnet, "head")


def test_bad_phase_and_stage_counts_are_clear_errors(resnet):
    with pytest.raises(ModelConfigError, match="phase='all'"):
        set_trainable(resnet, "all")
    with pytest.raises(ModelConfigError, match="stages=9"):
        set_trainable(resnet, "fine_tune", 9)


def test_batchnorm_statistics_do_not_move_while_fine_tuning(tmp_path):
    keras.utils.set_random_seed(1)
    cfg = make_cfg(tmp_path, backbone="tiny", num_classes=3)
    model = build_classifier(cfg)
    set_trainable(model, "fine_tune", 4)
    compile_for_phase(model, "fine_tune", cfg, steps_per_epoch=2)
    bn = [layer for layer in backbone_of(model).layers if isinstance(layer, keras.layers.BatchNormalization)]
    before = [w.numpy() for layer in bn for w in layer.weights]
    conv_before = backbone_of(model).get_layer("stem_conv").kernel.numpy()
    x = images(8) * 0.5 + 60.0  # inputs whose batch statistics are far from the stored ones
    model.fit(x, np.arange(8) % 3, epochs=1, batch_size=4, verbose=0)
    after = [w.numpy() for layer in bn for w in layer.weights]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(conv_before, backbone_of(model).get_layer("stem_conv").kernel.numpy())
    # training=True on the outer model still runs the backbone in inference mode (dropout=0 here).
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), rtol=1e-5, atol=1e-6)


def test_fine_tune_compiles_with_low_decaying_learning_rate(tmp_path):
    cfg = make_cfg(tmp_path, backbone="tiny", fine_tune_learning_rate=1e-4, fine_tune_epochs=3)
    model = build_classifier(cfg)
    compile_for_phase(model, "head", cfg)
    assert float(model.optimizer.learning_rate) == pytest.approx(cfg.head_learning_rate)
    set_trainable(model, "fine_tune", 1)
    compile_for_phase(model, "fine_tune", cfg, steps_per_epoch=10)
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert float(schedule(0)) == pytest.approx(1e-4)
    assert float(schedule(30)) < 1e-4 / 5


@pytest.mark.parametrize(
    ("mode", "reference"),
    [
        ("caffe", keras.applications.resnet50.preprocess_input),
        ("tf", keras.applications.mobilenet_v2.preprocess_input),
    ],
)
def test_preprocessing_inside_the_model_equals_keras_preprocess_input(mode, reference):
    x = images(3, 8)
    np.testing.assert_allclose(Preprocess(mode)(x), reference(x.copy()), rtol=1e-6, atol=1e-4)


def test_unknown_preprocess_mode_is_a_clear_error():
    with pytest.raises(ModelConfigError, match="mode='bgr'"):
        Preprocess("bgr")


def test_save_and_load_give_identical_predictions(tmp_path, resnet):
    x = images(4)
    path = save_model(resnet, tmp_path / "model.keras")
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed away
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), resnet.predict(x, verbose=0))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in resnet.layers]
    assert loaded.get_layer("preprocess").mode == "caffe"
    with pytest.raises(FileNotFoundError, match="Train one first"):
        load_model(tmp_path / "absent.keras")


def test_training_the_head_on_features_trains_the_classifiers_head(tmp_path):
    cfg = make_cfg(tmp_path, backbone="tiny", num_classes=4)
    model = build_classifier(cfg)
    head = model.get_layer("head")  # one object: the classifier's head and the feature-cache model
    x = images(6)
    features = feature_extractor(model).predict(x, verbose=0)
    before = model.predict(x, verbose=0)
    head.compile(optimizer=keras.optimizers.Adam(0.1), loss="sparse_categorical_crossentropy")
    head.fit(features, np.array([0, 1, 2, 3, 0, 1]), epochs=3, verbose=0)
    after = model.predict(x, verbose=0)
    assert np.abs(after - before).max() > 1e-3  # the classifier changed with the head
    np.testing.assert_allclose(head.predict(features, verbose=0), after, rtol=1e-5, atol=1e-6)
    trainable = {id(w) for w in model.trainable_weights}
    assert trainable == {id(w) for w in head.weights}  # the backbone stayed frozen


def test_smoothed_loss_matches_the_formula_and_plain_sparse_crossentropy_at_zero():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=6).astype("float32")
    labels = np.array([0, 1, 2, 3, 4, 0])
    plain = keras.losses.SparseCategoricalCrossentropy()(labels, probs)
    np.testing.assert_allclose(SparseSmoothedCrossentropy(0.0)(labels, probs), plain, rtol=1e-5)
    s = 0.2
    targets = np.full((6, 5), s / 5) + (1 - s) * np.eye(5)[labels]
    expected = np.mean(-np.sum(targets * np.log(probs), axis=1))
    got = SparseSmoothedCrossentropy(s)(labels.reshape(-1, 1).astype("float32"), probs)  # (N, 1) labels too
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert float(got) > float(plain) * 0.5  # smoothing changes the value: the check can fail


def test_loss_for_follows_the_config(tmp_path):
    assert loss_for(make_cfg(tmp_path, label_smoothing=0.0)) == "sparse_categorical_crossentropy"
    loss = loss_for(make_cfg(tmp_path, label_smoothing=0.1))
    assert isinstance(loss, SparseSmoothedCrossentropy) and loss.label_smoothing == pytest.approx(0.1)


def test_model_compiled_with_the_smoothed_loss_saves_and_loads_in_safe_mode(tmp_path):
    cfg = make_cfg(tmp_path, backbone="tiny", num_classes=3, label_smoothing=0.1)
    model = compile_for_phase(build_classifier(cfg), "head", cfg)
    x, y = images(6), np.array([0, 1, 2, 0, 1, 2])
    model.fit(x, y, epochs=1, verbose=0)
    loaded = load_model(save_model(model, tmp_path / "m.keras"), compile=True)
    assert isinstance(loaded.loss, SparseSmoothedCrossentropy)
    assert loaded.loss.label_smoothing == pytest.approx(0.1)
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5)


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenet_v2"])
def test_folded_batchnorm_extractor_gives_the_same_features_without_batchnorm_layers(tmp_path, backbone):
    from flowerlib.model import fold_batchnorm_layers

    keras.utils.set_random_seed(0)
    model = build_classifier(make_cfg(tmp_path, backbone=backbone, num_classes=3))
    imagenet_like_batchnorm(model)
    x = images(3)
    folded = feature_extractor(model, fold_batchnorm=True)
    plain = feature_extractor(model).predict(x, verbose=0)
    np.testing.assert_allclose(
        folded.predict(x, verbose=0), plain, rtol=1e-4, atol=1e-4 * np.abs(plain).max()
    )
    copy = fold_batchnorm_layers(backbone_of(model))
    assert not [layer for layer in copy.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert not copy.trainable
    # A copy: changing the classifier afterwards does not reach it.
    conv = next(layer for layer in backbone_of(model).layers if isinstance(layer, keras.layers.Conv2D))
    conv.set_weights([w * 0 for w in conv.get_weights()])
    assert not np.allclose(feature_extractor(model).predict(x, verbose=0), folded.predict(x, verbose=0))


@pytest.mark.parametrize("call_training", [False, True])
def test_in_keras_3_a_frozen_batchnorm_never_moves_and_a_trainable_one_does(call_training):
    # The fact notebook 03 relies on: `trainable=False`, not `training=False` at the call,
    # keeps BatchNorm in inference mode inside fit (keras-team/keras#20285).
    moved = {}
    for bn_trainable in (False, True):
        keras.utils.set_random_seed(0)
        inner_in = keras.Input((8, 8, 3))
        inner = keras.Model(inner_in, keras.layers.BatchNormalization(name="bn")(inner_in), name="backbone")
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.GlobalAveragePooling2D()(inner(inputs, training=call_training))
        model = keras.Model(inputs, keras.layers.Dense(2)(x))
        inner.get_layer("bn").trainable = bn_trainable
        model.compile("adam", "mse")
        before = inner.get_layer("bn").moving_mean.numpy().copy()
        model.fit(images(8, 8) / 10.0, np.zeros((8, 2)), epochs=1, verbose=0)
        moved[bn_trainable] = float(np.abs(inner.get_layer("bn").moving_mean.numpy() - before).max())
    assert moved[False] == 0.0
    assert moved[True] > 0.0


@pytest.mark.parametrize(
    ("backbone", "stages", "cut"),
    [
        ("resnet50", 1, "conv4_block6_out"),
        ("resnet50", 2, "conv3_block4_out"),
        ("mobilenet_v2", 1, "block_12_add"),
        ("mobilenet", 1, "conv_pw_11_relu"),
        ("tiny", 1, "block2_pool"),
    ],
)
def test_the_top_model_from_the_cut_is_the_classifier_and_shares_its_weights(tmp_path, backbone, stages, cut):
    from flowerlib.model import fine_tune_cut, fold_batchnorm_layers, top_model

    keras.utils.set_random_seed(0)
    model = build_classifier(make_cfg(tmp_path, backbone=backbone, num_classes=3, image_size=64))
    assert fine_tune_cut(model, stages) == cut
    x = images(2, 64)
    maps, features = feature_extractor(model, fold_batchnorm=True, activations=cut).predict(x, verbose=0)
    top = top_model(model, stages)
    np.testing.assert_allclose(
        top.predict(maps, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-5
    )
    # Building the top model adds graph nodes to the shared layers; the cut, a second top
    # model and the BatchNorm folding must not be misled by them.
    assert (
        fine_tune_cut(model, stages) == cut and top_model(model, stages).count_params() == top.count_params()
    )
    folded = fold_batchnorm_layers(backbone_of(model))
    assert not [layer for layer in folded.layers if isinstance(layer, keras.layers.BatchNormalization)]
    np.testing.assert_allclose(features, feature_extractor(model).predict(x, verbose=0), rtol=1e-3, atol=1e-4)
    # Unfreezing the classifier unfreezes the top model: the same weight objects.
    set_trainable(model, "fine_tune", stages)
    assert top.trainable_weights and {id(w) for w in top.trainable_weights} == {
        id(w) for w in model.trainable_weights
    }
    # Training the top model trains the classifier (nothing to copy back).
    before = model.predict(x, verbose=0)
    top.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    top.fit(maps, np.array([0, 1]), epochs=1, verbose=0)
    assert not np.allclose(model.predict(x, verbose=0), before)
    np.testing.assert_allclose(
        top.predict(maps, verbose=0), model.predict(x, verbose=0), rtol=1e-3, atol=1e-5
    )


def test_all_stages_have_no_cut_and_the_top_model_says_why(tmp_path):
    from flowerlib.model import fine_tune_cut, top_model

    model = build_classifier(make_cfg(tmp_path, backbone="tiny", num_classes=3, image_size=32))
    assert fine_tune_cut(model, 4) is None  # every stage trains: no frozen part to cache
    with pytest.raises(ModelConfigError, match="cache_features=False"):
        top_model(model, 4)


def test_the_inference_copy_predicts_the_same_and_shares_the_head(tmp_path):
    from flowerlib.calibration import apply_temperature
    from flowerlib.model import inference_copy

    keras.utils.set_random_seed(0)
    model = build_classifier(make_cfg(tmp_path, backbone="mobilenet_v2", num_classes=3))
    imagenet_like_batchnorm(model)
    x = images(3)
    fast = inference_copy(model)
    inner = next(layer for layer in fast.layers if isinstance(layer, keras.Model))
    assert not [layer for layer in inner.layers if isinstance(layer, keras.layers.BatchNormalization)]
    np.testing.assert_allclose(fast.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    apply_temperature(model, 0.5)  # the head is shared: the copy follows
    np.testing.assert_allclose(fast.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert inference_copy(other) is other
