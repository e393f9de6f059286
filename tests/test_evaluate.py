"""Evaluation: running a model, label alignment, saved artifacts, plots."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flowerlib import evaluate
from flowerlib.artifacts import Layout
from flowerlib.config import Config


def test_predict_dataset_tta_averages_image_and_its_flip():
    class LeftRight:  # "probability" of class 0 = brightness of the left column
        output_shape = (None, 2)

        def predict_on_batch(self, x):
            left = x[:, :, 0, 0].mean(axis=1) / 255.0
            return np.stack([left, 1 - left], axis=1)

    images = np.zeros((2, 4, 4, 3), np.float32)
    images[0, :, 0] = 255.0  # bright on the left
    batches = [(images, np.array([0, 1]))]
    plain, labels = evaluate.predict_dataset(LeftRight(), batches)
    np.testing.assert_allclose(plain[:, 0], [1.0, 0.0])
    tta, _ = evaluate.predict_dataset(LeftRight(), batches, tta=True)
    np.testing.assert_allclose(tta[:, 0], [0.5, 0.0])
    np.testing.assert_array_equal(labels, [0, 1])


# --- evaluate() on real files, through the real pipeline ----------------------

GREY_LEVELS = np.arange(10, 200, 20, dtype=np.float32)  # class k: a uniform grey of level 10 + 20 k


def _grey_classifier():
    """A tiny model that recognises the grey level of an image: class k <-> level 10 + 20 k.

    logit_k = a (2 v_k m - v_k^2) = -a (m - v_k)^2 + a m^2, so the softmax picks
    the level v_k nearest to the image mean m. Layer names follow the contract.
    """
    import keras

    size = 32
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1.0, name="preprocess")(inputs)
    b_in = keras.Input((size, size, 3))
    b_out = keras.layers.Conv2D(1, 1, use_bias=False, name="last_conv")(b_in)
    backbone = keras.Model(b_in, b_out, name="backbone")
    backbone.get_layer("last_conv").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32)])
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.0, name="dropout")(x)
    dense = keras.layers.Dense(len(GREY_LEVELS), activation="softmax", name="predictions")
    outputs = dense(x)
    a = 0.05
    dense.set_weights([(2 * a * GREY_LEVELS)[None, :], -a * GREY_LEVELS**2])
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def grey_data(tmp_path_factory):
    """Data dir with grey images whose level encodes the class; table rows in a shuffled order."""
    root = tmp_path_factory.mktemp("grey")
    (root / "jpg").mkdir()
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(10), 3))
    rows = []
    for i, label in enumerate(labels, start=1):
        file = f"jpg/image_{i:05d}.jpg"
        level = int(GREY_LEVELS[label])
        Image.new("RGB", (40 + i, 36), (level, level, level)).save(root / file, quality=95)
        rows.append((i, file, int(label), f"class {label}", "test" if i % 5 else "val"))
    table = pd.DataFrame(rows, columns=["image_id", "file", "label", "class_name", "split"])
    return root, table


def test_evaluate_predictions_line_up_with_labels(grey_data):
    root, table = grey_data
    cfg = Config.for_profile("smoke", data_dir=root, image_size=32, batch_size=4)
    result = evaluate.evaluate(_grey_classifier(), table, cfg)
    test_rows = table[table["split"] == "test"]
    assert len(result.y_true) == len(test_rows) == 24
    np.testing.assert_array_equal(result.y_true, test_rows["label"])
    np.testing.assert_array_equal(result.y_pred, result.y_true)  # shuffling would break this
    assert result.metrics["top1"] == 1.0 and result.metrics["part"] == "test"
    assert result.class_names[int(test_rows["label"].iloc[0])] == test_rows["class_name"].iloc[0]
    assert result.mistakes().empty
    # reversed table order -> reversed predictions
    reversed_result = evaluate.evaluate(_grey_classifier(), table.iloc[::-1], cfg, tta=True)
    np.testing.assert_allclose(reversed_result.probs, result.probs[::-1], atol=1e-5)
    assert reversed_result.metrics["tta"] is True
    # with_tta reuses the plain predictions and adds the flipped pass: same as tta=True
    added = evaluate.with_tta(_grey_classifier(), result)
    assert added.tta and added.metrics["tta"] is True
    np.testing.assert_allclose(added.probs, reversed_result.probs[::-1], atol=1e-5)
    with pytest.raises(evaluate.EvaluationError, match="already used TTA"):
        evaluate.with_tta(_grey_classifier(), added)
    # a random sample of the rows keeps each row's prediction, label and file together
    sample = result.sample(10, seed=3)
    assert len(sample.table) == sample.metrics["n"] == 10 and list(sample.table.index) == list(range(10))
    rows = test_rows.reset_index(drop=True)
    picked = [int(np.flatnonzero(rows["file"] == f)[0]) for f in sample.table["file"]]
    assert picked == sorted(picked) and len(set(picked)) == 10
    np.testing.assert_array_equal(sample.probs, result.probs[picked])
    np.testing.assert_array_equal(sample.y_true, rows["label"].to_numpy()[picked])
    assert result.sample(10, seed=3).table.equals(sample.table) and result.sample(100) is result
    sampled_tta = evaluate.with_tta(_grey_classifier(), sample)
    np.testing.assert_allclose(sampled_tta.probs, added.probs[picked], atol=1e-5)
    with pytest.raises(evaluate.EvaluationError, match="n=0"):
        result.sample(0)


def test_evaluate_rejects_bad_part_and_label_mismatch(grey_data):
    root, table = grey_data
    cfg = Config.for_profile("smoke", data_dir=root, image_size=32)
    model = _grey_classifier()
    with pytest.raises(evaluate.EvaluationError, match="part must be one of"):
        evaluate.evaluate(model, table, cfg, part="testing")
    with pytest.raises(evaluate.EvaluationError, match="no 'train' rows"):
        evaluate.evaluate(model, table, cfg, part="train")
    with pytest.raises(evaluate.EvaluationError, match="cfg.image_size=64"):
        evaluate.evaluate(model, table, cfg.replace(image_size=64))
    bad = table.assign(label=table["label"] + 10)
    with pytest.raises(evaluate.EvaluationError, match="different number of classes"):
        evaluate.evaluate(model, bad, cfg)


def test_save_metrics_writes_json_and_csv_atomically(grey_data, tmp_path):
    root, table = grey_data
    cfg = Config.for_profile("smoke", data_dir=root, image_size=32)
    result = evaluate.evaluate(_grey_classifier(), table, cfg)
    run = Layout(tmp_path).run("r")
    path = evaluate.save_metrics(result, run)
    data = json.loads(path.read_text())
    assert data["model"] == str(run.model) and data["part"] == "test" and data["tta"] is False
    assert data["split"] == cfg.split and data["top1"] == 1.0
    assert evaluate.load_metrics(run)["n"] == 24
    per_class = pd.read_csv(run.per_class)
    assert len(per_class) == 10 and per_class["support"].sum() == 24
    assert sorted(p.name for p in run.root.iterdir()) == ["metrics.json", "per_class.csv"]  # no temp files


def test_load_trained_says_what_to_run_first(tmp_path):
    cfg = Config.for_profile("smoke", data_dir=tmp_path)
    with pytest.raises(evaluate.ModelNotFoundError, match="03_train.ipynb"):
        evaluate.load_trained(cfg)


def test_load_trained_round_trip_and_label_check(tmp_path):
    from flowerlib import artifacts
    from flowerlib.model import build_classifier, save_model

    cfg = Config.for_profile("smoke", data_dir=tmp_path, num_classes=3, image_size=32)
    run = Layout(tmp_path).run(cfg.run)
    model = build_classifier(cfg)
    save_model(model, run.model)
    artifacts.write_json(run.labels, ["x", "y", "z"])
    loaded, names, layout = evaluate.load_trained(cfg)
    assert names == ["x", "y", "z"] and layout == run
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict_on_batch(images), model.predict_on_batch(images), atol=1e-5)
    artifacts.write_json(run.labels, ["x", "y"])
    with pytest.raises(evaluate.EvaluationError, match="2 class names"):
        evaluate.load_trained(cfg)


def test_step4_plots_draw(grey_data):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowerlib import plots

    root, table = grey_data
    cfg = Config.for_profile("smoke", data_dir=root, image_size=32)
    model = _grey_classifier()
    # make two classes look alike so there are mistakes to draw
    result = evaluate.evaluate(model, table.assign(label=table["label"].replace({3: 4})), cfg)
    assert not result.mistakes().empty
    figs = [
        plots.plot_confusion_matrix(result.confusion(), result.class_names),
        plots.plot_confusion_matrix(np.eye(102), None),
        plots.plot_per_class_accuracy(result.per_class),
        plots.plot_reliability(result.reliability()),
        plots.plot_misclassified(result, n=4),
        plots.plot_confused_pairs(result, k=2),
    ]
    for fig in figs:
        assert fig.axes
        plt.close(fig)


def test_predict_dataset_shows_a_progress_bar_only_when_asked(capsys):
    import keras

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    batches = [(np.zeros((3, 4, 4, 3), "float32"), np.array([0, 1, 0])) for _ in range(2)]
    from flowerlib.evaluate import predict_dataset

    predict_dataset(model, batches)
    assert "test images" not in capsys.readouterr().err
    probs, labels = predict_dataset(model, batches, progress="test images", total=6)
    err = capsys.readouterr().err
    assert "test images" in err and "/6 " in err  # a bar over the 6 images (it clears itself when done)
    assert probs.shape == (6, 2) and labels.tolist() == [0, 1, 0, 0, 1, 0]
