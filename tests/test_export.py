"""Export: the SavedModel and the LiteRT file answer like the Keras model; nothing foreign is replaced."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowerlib import cli
from flowerlib.backbones import ModelConfigError
from flowerlib.config import Config
from flowerlib.model import build_classifier, export_model, predictions_layer, save_model


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    model = build_classifier(
        Config.for_profile("smoke", data_dir=tmp_path_factory.mktemp("d"), num_classes=4)
    )
    kernel, bias = predictions_layer(model).get_weights()
    predictions_layer(model).set_weights([kernel * 20, bias])  # distinct, confident answers
    return model


def images(n=6):
    return np.random.default_rng(1).uniform(0, 255, (n, 64, 64, 3)).astype("float32")


@pytest.mark.slow
def test_the_exported_models_give_the_same_answers_as_keras(classifier, tmp_path):
    import tensorflow as tf

    paths = export_model(classifier, tmp_path / "export", ["a", "b", "c", "d"])
    assert json.loads(paths["labels"].read_text()) == ["a", "b", "c", "d"]
    x = images()
    expected = classifier.predict(x, verbose=0)
    saved = tf.saved_model.load(str(paths["saved_model"]))  # keep it referenced while serving
    served = np.asarray(saved.serve(x))
    interpreter = tf.lite.Interpreter(model_path=str(paths["tflite"]))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    lite = []
    for image in x:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        lite.append(interpreter.get_tensor(out["index"])[0])
    lite = np.stack(lite)
    # Stated tolerance: the same top-1, probabilities within 1e-4 (TFLite reorders float sums).
    for other in (served, lite):
        np.testing.assert_array_equal(other.argmax(1), expected.argmax(1))
        np.testing.assert_allclose(other, expected, atol=1e-4)


@pytest.mark.slow
def test_export_replaces_its_own_folder_but_not_a_foreign_one(classifier, tmp_path):
    folder = tmp_path / "export"
    export_model(classifier, folder)
    export_model(classifier, folder)  # its own files: replaced
    assert {p.name for p in folder.iterdir()} == {"saved_model", "model.tflite"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(ModelConfigError, match="holds other files"):
        export_model(classifier, foreign)
    assert (foreign / "notes.txt").read_text() == "keep"


@pytest.mark.slow
def test_the_export_command_writes_beside_the_model(classifier, tmp_path, capsys):
    model_file = save_model(classifier, tmp_path / "model.keras")
    (tmp_path / "labels.json").write_text(json.dumps(["a", "b", "c", "d"]))
    code = cli.main(["export", "--model", str(model_file), "--json"])
    written = json.loads(capsys.readouterr().out)
    assert code == 0 and written["tflite"] == str(tmp_path / "export" / "model.tflite")
    assert json.loads((tmp_path / "export" / "labels.json").read_text()) == ["a", "b", "c", "d"]
