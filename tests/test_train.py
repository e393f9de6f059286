"""Training: both phases, artifacts, resume after a crash, strategy, reproducibility."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from flowerlib.artifacts import Layout, read_json
from flowerlib.config import Config
from flowerlib.model import load_model, predictions_layer
from flowerlib.train import TrainError, read_history, train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from flowerlib import synthetic

    root = tmp_path_factory.mktemp("train-data")
    synthetic.write_dataset(root, num_classes=4, images_per_class=8, image_size=32, seed=0)
    return root


def make_cfg(data_dir, run_name, **overrides) -> Config:
    values = {
        "data_dir": data_dir,
        "num_classes": 4,
        "image_size": 32,
        "batch_size": 4,
        "head_epochs": 3,
        "fine_tune_epochs": 2,
        "cache_views": 1,
        "run_name": run_name,
    }
    return Config.for_profile("smoke", **{**values, **overrides})


class SimulatedCrash(Exception):
    pass


class CrashAfter(keras.callbacks.Callback):
    """Raise at the end of epoch `epoch` (1-based) of `phase`, like a crash or Ctrl-C."""

    def __init__(self, phase: str, epoch: int):
        super().__init__()
        self.phase, self.epoch = phase, epoch

    def on_epoch_end(self, epoch, logs=None):
        phase = "head" if self.model.name == "head" or len(self.model.trainable_weights) <= 2 else "fine_tune"
        if phase == self.phase and epoch + 1 == self.epoch:
            raise SimulatedCrash(f"{phase} epoch {self.epoch}")


class CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.count = 0

    def on_epoch_end(self, epoch, logs=None):
        self.count += 1


def test_both_phases_write_a_model_that_loads_and_predicts_the_same(data_dir):
    cfg = make_cfg(data_dir, "both")
    result = train(cfg, verbose=0)
    history = result.history
    assert list(history["phase"]) == ["head"] * 3 + ["fine_tune"] * 2
    assert list(history["epoch"]) == [1, 2, 3, 1, 2]
    assert {"loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "learning_rate"} <= set(
        history.columns
    )
    assert (history["val_top5"] >= history["val_accuracy"]).all()
    fine = history[history.phase == "fine_tune"]["learning_rate"]
    assert fine.iloc[-1] < fine.iloc[0] <= cfg.fine_tune_learning_rate  # the cosine schedule
    assert result.info["cache_hit"] is False and result.info["replicas"] == 1
    run = result.run
    assert run == Layout(data_dir).run("both")
    from flowerlib.splits import prepare_split

    names = prepare_split(cfg).drop_duplicates("label").sort_values("label")["class_name"].tolist()
    assert read_json(run.labels) == names and len(names) == 4
    assert Config.from_dict(read_json(run.config)) == cfg
    assert (
        read_history(run)[["phase", "epoch"]].values.tolist() == history[["phase", "epoch"]].values.tolist()
    )
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        load_model(run.model).predict(x, verbose=0), result.model.predict(x, verbose=0)
    )
    # Starting it again finds the finished run: nothing is retrained.
    counter = CountEpochs()
    again = train(cfg, callbacks=[counter], verbose=0)
    assert again.resumed and counter.count == 0
    assert again.history.equals(history)
    assert result.info["phases"] == {"head": "fresh", "fine_tune": "fresh"}


def test_fine_tuning_from_cached_maps_changes_the_saved_classifiers_last_stage_only(data_dir):
    from flowerlib.model import backbone_of

    head_only = train(make_cfg(data_dir, "maps-head", fine_tune_epochs=0), verbose=0)
    tuned = train(make_cfg(data_dir, "maps-both", fine_tune_learning_rate=1e-2), verbose=0)
    maps = sorted(Layout(data_dir).cache_dir.glob("activations-*.npy"))
    assert len(maps) == 2, "one file of feature maps for train, one for val"
    before, after = backbone_of(load_model(head_only.run.model)), backbone_of(load_model(tuned.run.model))
    changed = {
        layer.name
        for layer in after.layers
        if layer.weights
        and not all(
            np.array_equal(a, b)
            for a, b in zip(layer.get_weights(), before.get_layer(layer.name).get_weights(), strict=True)
        )
    }
    assert tuned.info["kept"] == "fine_tune"
    assert changed and all(name.startswith("block3") for name in changed), sorted(changed)
    assert not any(isinstance(after.get_layer(n), keras.layers.BatchNormalization) for n in changed)


def test_plain_path_fine_tunes_through_the_pipeline_without_feature_maps(tmp_path):
    from flowerlib import synthetic

    synthetic.write_dataset(tmp_path, num_classes=4, images_per_class=8, image_size=32, seed=0)
    result = train(
        make_cfg(tmp_path, "plain-both", cache_features=False, head_epochs=1, fine_tune_epochs=1), verbose=0
    )
    assert list(result.history["phase"]) == ["head", "fine_tune"]
    assert not list(Layout(tmp_path).cache_dir.glob("*")), "nothing is cached on the plain path"


@pytest.mark.parametrize(
    "overrides",
    [
        {"fine_tune_epochs": 0},  # temperature from the cached features
        {"fine_tune_stages": 4, "fine_tune_learning_rate": 1e-2},  # no cut: fine-tuned through the pipeline
        {},  # from the cached maps
    ],
)
def test_the_temperature_and_the_reference_come_from_what_the_model_computes(
    tmp_path, monkeypatch, overrides
):
    from flowerlib import synthetic
    from flowerlib import train as training
    from flowerlib.model import feature_extractor
    from flowerlib.novelty import load_reference
    from flowerlib.pipeline import dataset_for

    seen = {}

    def calibrate(model, run, probs=None):  # record what the temperature is fitted on
        seen["fitted on"], seen["run"] = probs, run
        seen["model predicts"] = model.predict(
            dataset_for(run.cfg, run.table, "val", training=False), verbose=0
        )
        return original(model, run, probs)

    original = training.calibrate
    monkeypatch.setattr(training, "calibrate", calibrate)
    synthetic.write_dataset(tmp_path, num_classes=4, images_per_class=8, image_size=32, seed=0)
    result = train(make_cfg(tmp_path, "calibrated", **overrides), verbose=0)
    assert result.info.get("kept", "fine_tune") == "fine_tune"
    # From the cache or not, what the temperature is fitted on is the model's own prediction...
    np.testing.assert_allclose(seen["fitted on"], seen["model predicts"], atol=2e-3)
    # ...and the reference holds the saved model's own features of the training images (unit length).
    run = seen["run"]
    extractor = feature_extractor(result.model)
    train_features = extractor.predict(dataset_for(run.cfg, run.table, "train", training=False), verbose=0)
    reference = load_reference(result.run.reference)
    unit = train_features / np.linalg.norm(train_features, axis=1, keepdims=True)
    np.testing.assert_allclose(reference.features.astype(np.float32), unit, atol=3e-3)
    val_features = extractor.predict(dataset_for(run.cfg, run.table, "val", training=False), verbose=0)
    assert reference.familiar(val_features).mean() >= 0.85  # the threshold is their 95th percentile
    assert result.info["unfamiliar_distance"] == pytest.approx(reference.threshold, abs=1e-4)


class _Features:  # the fields of a cache.FeatureSet that CachedViews reads
    def __init__(self, n_images, n_views):
        self.views = np.repeat(np.arange(n_views), n_images)
        self.labels = np.tile(np.arange(n_images), n_views)
        # map of image i, view v: every value equal to 100 * v + i
        base = (100 * self.views + np.tile(np.arange(n_images), n_views)).astype(np.float16)
        self.activations = base[:, None, None, None] + np.zeros((1, 2, 3, 1), np.float16)


def test_cached_views_give_every_image_once_per_epoch_in_a_random_view_and_order():
    from flowerlib.train import CachedViews

    feats = _Features(n_images=10, n_views=3)
    data = CachedViews(feats, batch_size=4, seed=0)
    assert len(data) == 3
    seen_views, orders = set(), []
    for _ in range(6):
        batches = [data[i] for i in range(len(data))]
        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        assert x.dtype == np.float16 and x.shape == (10, 2, 3, 1)  # as stored: the model casts
        assert sorted(y) == list(range(10)), "each image exactly once per epoch"
        ids = np.round(x[:, 0, 0, 0]).astype(int)
        np.testing.assert_array_equal(ids % 100, y)  # labels stay with their maps
        seen_views |= set(ids // 100)
        orders.append(tuple(y))
        data.on_epoch_end()
    assert seen_views == {0, 1, 2} and len(set(orders)) > 1
    val = CachedViews(_Features(n_images=5, n_views=1), batch_size=2, training=False)
    y = np.concatenate([val[i][1] for i in range(len(val))])
    x = np.concatenate([val[i][0] for i in range(len(val))])
    assert list(y) == [0, 1, 2, 3, 4] and list(np.round(x[:, 0, 0, 0])) == [0, 1, 2, 3, 4], (
        "validation: view 0 of every image, in table order"
    )


def test_cached_views_shift_each_training_map_by_at_most_one_cell_repeating_the_edge():
    from flowerlib.train import CachedViews

    feats = _Features(n_images=40, n_views=1)
    feats.activations = np.broadcast_to(
        np.arange(25, dtype=np.float16).reshape(1, 5, 5, 1), (40, 5, 5, 1)
    ).copy()
    data = CachedViews(feats, batch_size=40, seed=1)
    x = data[0][0][..., 0]
    grid = np.arange(25).reshape(5, 5)
    seen = set()
    for m in x:
        centre = int(m[2, 2])  # the cell now at the centre came from (2 + dy, 2 + dx)
        dy, dx = centre // 5 - 2, centre % 5 - 2
        assert abs(dy) <= 1 and abs(dx) <= 1
        expected = np.pad(grid, 1, mode="edge")[1 + dy : 6 + dy, 1 + dx : 6 + dx]
        np.testing.assert_array_equal(m, expected)
        seen.add((dy, dx))
    assert len(seen) >= 7, "all nine shifts occur"
    unshifted = CachedViews(feats, batch_size=40, training=False)[0][0][..., 0]
    assert all(np.array_equal(m, grid) for m in unshifted), "validation maps are not moved"
    assert all(
        np.array_equal(m, grid) for m in CachedViews(feats, batch_size=40, seed=1, shift=0)[0][0][..., 0]
    )


def test_cached_views_without_maps_is_a_clear_error():
    from flowerlib.train import CachedViews

    feats = _Features(2, 1)
    feats.activations = None
    with pytest.raises(TrainError, match="activations="):
        CachedViews(feats, batch_size=2)


def test_plain_head_path_trains_the_frozen_backbone_inside_fit(data_dir):
    cfg = make_cfg(data_dir, "plain", cache_features=False, head_epochs=2, fine_tune_epochs=0)
    result = train(cfg, verbose=0)
    assert list(result.history["phase"]) == ["head", "head"]
    assert "cache_hit" not in result.info
    assert result.run.model.is_file()


def test_tensorboard_without_the_package_is_a_clear_error(data_dir):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed")
    with pytest.raises(TrainError, match="pip install tensorboard"):
        train(make_cfg(data_dir, "tb", tensorboard=True), verbose=0)


@pytest.mark.parametrize(("phase", "epoch"), [("head", 2), ("fine_tune", 1)])
def test_a_crashed_run_resumes_after_its_last_completed_epoch(data_dir, phase, epoch):
    cfg = make_cfg(data_dir, f"crash-{phase}")
    with pytest.raises(SimulatedCrash):
        train(cfg, callbacks=[CrashAfter(phase, epoch)], verbose=0)
    run = Layout(data_dir).run(cfg.run)
    assert not run.model.exists()
    crashed = read_history(run)
    assert crashed["phase"].tolist()[-1] == phase and crashed["epoch"].tolist()[-1] == epoch

    counter = CountEpochs()
    result = train(cfg, callbacks=[counter], verbose=0)
    assert result.resumed
    done_before = len(crashed)
    assert counter.count == 5 - done_before  # only the remaining epochs ran
    keys = result.history[["phase", "epoch"]].values.tolist()
    assert keys == [["head", 1], ["head", 2], ["head", 3], ["fine_tune", 1], ["fine_tune", 2]]
    assert result.history.iloc[:done_before][["loss", "val_loss"]].equals(crashed[["loss", "val_loss"]])
    x = np.zeros((2, 32, 32, 3), "float32")
    np.testing.assert_allclose(
        load_model(run.model).predict(x, verbose=0), result.model.predict(x, verbose=0)
    )
    assert not [p for p in run.root.rglob("*") if ".tmp" in p.name]


def test_a_changed_head_does_not_resume_stale_state_and_says_so(data_dir, capsys):
    cfg = make_cfg(data_dir, "changed", fine_tune_epochs=0)
    with pytest.raises(SimulatedCrash):
        train(cfg, callbacks=[CrashAfter("head", 2)], verbose=0)
    result = train(cfg.replace(dropout=0.5), verbose=2)
    said = capsys.readouterr().out
    assert "written for a different model architecture; it is discarded" in said
    assert result.info["phases"]["head"] == "discarded" and not result.resumed
    assert result.history["epoch"].tolist() == [1, 2, 3]


def test_more_epochs_continue_an_interrupted_phase_of_the_same_model(data_dir, capsys):
    cfg = make_cfg(data_dir, "more-epochs", fine_tune_epochs=0)
    with pytest.raises(SimulatedCrash):
        train(cfg, callbacks=[CrashAfter("head", 2)], verbose=0)
    result = train(cfg.replace(head_epochs=4), verbose=2)
    assert "The head phase: resuming after epoch 2 of 3" in capsys.readouterr().out
    assert result.info["phases"]["head"] == "resumed"
    assert result.history["epoch"].tolist() == [1, 2, 3, 4]


def test_same_seed_gives_the_same_head_on_cpu(data_dir):
    cfg = make_cfg(data_dir, "seeded", fine_tune_epochs=0)
    first = predictions_layer(train(cfg, restart=True, verbose=0).model).get_weights()
    second = predictions_layer(train(cfg, restart=True, verbose=0).model).get_weights()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_split_without_validation_images_is_a_clear_error(data_dir):
    from flowerlib.splits import official_split

    table = official_split(Layout(data_dir))
    with pytest.raises(TrainError, match="no 'val' images"):
        train(make_cfg(data_dir, "noval"), table[table.split != "val"], verbose=0)


def test_mirrored_strategy_on_two_logical_cpu_devices(data_dir, tmp_path):
    # Logical devices must be configured before TensorFlow starts: a fresh process.
    script = textwrap.dedent(
        f"""
        import json
        from flowerlib.runtime import split_cpu
        split_cpu(2)
        from flowerlib.config import Config
        from flowerlib.train import train
        cfg = Config.for_profile(
            "smoke", data_dir={str(data_dir)!r}, num_classes=4, image_size=32, batch_size=4,
            head_epochs=2, fine_tune_epochs=1, strategy="mirrored", run_name="mirrored",
        )
        result = train(cfg, verbose=0)
        print(json.dumps({{"replicas": result.info["replicas"], "strategy": result.info["strategy"],
                          "epochs": len(result.history), "model": result.run.model.is_file()}}))
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts == {"replicas": 2, "strategy": "MirroredStrategy", "epochs": 3, "model": True}


def test_runtime_choices_follow_the_config(tmp_path):
    from flowerlib import runtime

    cfg = Config.for_profile("smoke", data_dir=tmp_path)
    assert runtime.use_jit(cfg) is False  # measured slower on the CPU
    assert runtime.use_jit(cfg.replace(jit_compile="on")) is True
    assert runtime.use_mixed_precision(cfg) is (runtime.gpu_count() > 0)
    before = keras.mixed_precision.global_policy().name
    with runtime.precision_policy(cfg.replace(mixed_precision="on")) as policy:
        assert policy == keras.mixed_precision.global_policy().name == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == before
    assert runtime.select_strategy(cfg).num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="seed=-1"):
        runtime.seed_everything(-1)


def test_fine_tuning_that_does_not_help_keeps_the_head_phase_weights(data_dir, capsys):
    head_only = train(make_cfg(data_dir, "head-only", fine_tune_epochs=0), verbose=0)
    harmful = train(make_cfg(data_dir, "harmful", fine_tune_learning_rate=0.9), verbose=2)
    assert "the head phase's weights are kept" in capsys.readouterr().out
    assert harmful.info["kept"] == "head"
    history = harmful.history
    assert (
        history[history.phase == "fine_tune"]["val_loss"].min()
        >= history[history.phase == "head"]["val_loss"].min()
    )
    # Equal up to the calibration temperature, fitted on validation probabilities that the two
    # runs compute along different paths (pooled features; cached maps through the last stage),
    # equal to float rounding: 1e-3 relative, far below what a fine-tuning step changes.
    for kept, expected in zip(harmful.model.get_weights(), head_only.model.get_weights(), strict=True):
        np.testing.assert_allclose(kept, expected, rtol=1e-3, atol=1e-6)
    saved = load_model(harmful.run.model)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(saved.predict(x, verbose=0), head_only.model.predict(x, verbose=0), atol=1e-4)


def test_same_seed_gives_the_same_head_in_separate_processes(tmp_path):
    # Two fresh processes, two fresh data directories (no shared feature cache): the
    # synthetic data, split, cached augmented views and trained head must all agree.
    script = textwrap.dedent(
        """
        import hashlib, sys
        from flowerlib import synthetic
        from flowerlib.config import Config
        from flowerlib.model import predictions_layer
        from flowerlib.train import train
        root = sys.argv[1]
        synthetic.write_dataset(root, num_classes=4, images_per_class=8, image_size=32, seed=0)
        cfg = Config.for_profile(
            "smoke", data_dir=root, num_classes=4, image_size=32, batch_size=4,
            head_epochs=3, fine_tune_epochs=0, cache_views=1,
        )
        weights = predictions_layer(train(cfg, verbose=0).model).get_weights()
        print(hashlib.sha256(b"".join(w.tobytes() for w in weights)).hexdigest())
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    digests = []
    for name in ("first", "second"):
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / name)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        digests.append(out.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1]


def test_run_fingerprint_changes_when_only_the_split_assignment_changes(data_dir):
    from flowerlib import splits
    from flowerlib.train import run_fingerprint

    cfg = make_cfg(data_dir, "fingerprint")
    table = splits.prepare_split(cfg)
    moved = table.copy()
    first_val = moved.index[moved["split"] == "val"][0]
    moved.loc[first_val, "split"] = "train"  # same rows, same order: only the assignment differs
    assert run_fingerprint(cfg, moved) != run_fingerprint(cfg, table)


def test_training_ends_with_a_temperature_fitted_on_validation_built_into_the_saved_model(data_dir):
    from flowerlib.calibration import scale_probabilities

    plain = train(make_cfg(data_dir, "uncalibrated", calibrate=False), verbose=0)
    calibrated = train(make_cfg(data_dir, "calibrated"), verbose=0)
    assert "temperature" not in plain.info
    info = calibrated.info
    assert abs(info["temperature"] - 1) > 0.05  # label smoothing left it underconfident
    assert info["val_log_loss_after"] <= info["val_log_loss_before"]
    x = np.random.default_rng(2).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    expected = scale_probabilities(plain.model.predict(x, verbose=0), info["temperature"])
    np.testing.assert_allclose(load_model(calibrated.run.model).predict(x, verbose=0), expected, atol=1e-4)
    np.testing.assert_array_equal(  # the same weights up to the temperature: the same predictions
        calibrated.model.predict(x, verbose=0).argmax(1), plain.model.predict(x, verbose=0).argmax(1)
    )
    assert train(make_cfg(data_dir, "calibrated"), verbose=0).info["temperature"] == info["temperature"]


def test_unreadable_or_foreign_run_state_is_set_aside_with_a_message(data_dir, capsys):
    cfg = make_cfg(data_dir, "broken-state", fine_tune_epochs=0)
    run = Layout(data_dir).run(cfg.run)
    run.checkpoints.mkdir(parents=True)
    run.state.write_text("{not json")
    result = train(cfg, verbose=2)
    assert "cannot be used" in capsys.readouterr().out and result.run.model.is_file()

    state = read_json(run.state)
    state["finished"] = None
    state["phases"]["head"]["best_file"] = "../../../../etc/passwd"
    run.state.write_text(json.dumps(state))
    outside = data_dir.parent / "keep-me.txt"
    outside.write_text("not flowerlib's")
    again = train(cfg, verbose=2)
    said = capsys.readouterr().out
    assert "not a checkpoint flowerlib writes" in said and "it is discarded" in said
    assert again.info["phases"]["head"] == "discarded" and outside.read_text() == "not flowerlib's"


def test_a_garbage_checkpoint_file_is_discarded_with_a_message(data_dir, capsys):
    cfg = make_cfg(data_dir, "garbage-weights", fine_tune_epochs=0)
    with pytest.raises(SimulatedCrash):
        train(cfg, callbacks=[CrashAfter("head", 2)], verbose=0)
    run = Layout(data_dir).run(cfg.run)
    for p in run.checkpoints.glob("*.weights.h5"):
        p.write_bytes(b"garbage")
    result = train(cfg, verbose=2)
    assert "cannot be read" in capsys.readouterr().out
    assert result.history["epoch"].tolist() == [1, 2, 3]


def test_a_mistyped_weights_path_loses_nothing_of_a_finished_run(data_dir):
    from flowerlib.backbones import ModelConfigError

    cfg = make_cfg(data_dir, "typo", fine_tune_epochs=0)
    train(cfg, verbose=0)
    run = Layout(data_dir).run(cfg.run)
    before = {p.name: p.read_bytes() for p in run.root.rglob("*") if p.is_file()}
    with pytest.raises(ModelConfigError, match="Weights file not found"):
        train(cfg.replace(weights=str(data_dir / "no-such-file.h5")), verbose=0)
    after = {p.name: p.read_bytes() for p in run.root.rglob("*") if p.is_file()}
    assert after == before  # checkpoints, history, model: all still there, unchanged
    counter = CountEpochs()
    assert train(cfg, callbacks=[counter], verbose=0).resumed and counter.count == 0


def test_an_unreadable_model_of_a_finished_run_is_rebuilt_from_its_checkpoints(data_dir, capsys):
    cfg = make_cfg(data_dir, "broken-model", fine_tune_epochs=1)
    first = train(cfg, verbose=0)
    first.run.model.write_bytes(b"PK\x03\x04 not really a zip")
    counter = CountEpochs()
    again = train(cfg, callbacks=[counter], verbose=2)
    assert "cannot be read" in capsys.readouterr().out
    assert counter.count == 0 and again.info["phases"] == {"head": "restored", "fine_tune": "restored"}
    x = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        load_model(again.run.model).predict(x, verbose=0), first.model.predict(x, verbose=0), atol=1e-5
    )


def test_a_bad_weights_setting_is_reported_before_the_data_is_looked_at(tmp_path):
    from flowerlib.backbones import ModelConfigError

    cfg = Config.for_profile("smoke", data_dir=tmp_path / "empty", weights=str(tmp_path / "typo.h5"))
    with pytest.raises(ModelConfigError, match="Weights file not found"):
        train(cfg, verbose=0)
    assert not (tmp_path / "empty").exists()


def test_a_second_training_in_the_same_data_directory_says_it_is_busy(data_dir, monkeypatch):
    import functools

    from flowerlib import locks

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from flowerlib.locks import data_dir_lock\n"
            f"with data_dir_lock({str(data_dir)!r}, 'holding'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(locks, "data_dir_lock", functools.partial(locks.data_dir_lock, timeout=0.5))
        with pytest.raises(locks.BusyError, match="cannot start training run 'busy'"):
            train(make_cfg(data_dir, "busy", fine_tune_epochs=0), verbose=0)
    finally:
        holder.kill()
        holder.wait()
    assert not Layout(data_dir).run("busy").root.exists()  # nothing was written while it was busy


def test_retraining_a_run_removes_the_evaluation_of_the_model_it_replaces(data_dir, capsys):
    cfg = make_cfg(data_dir, "re-evaluate", fine_tune_epochs=0)
    run = train(cfg, verbose=0).run
    run.metrics.write_text("{}")
    run.per_class.write_text("class,accuracy\n")
    train(cfg.replace(dropout=0.4), verbose=2)
    assert "Removed the evaluation of the model this run replaces" in capsys.readouterr().out
    assert not run.metrics.exists() and not run.per_class.exists()


def test_raising_the_epochs_of_a_finished_phase_says_it_trains_on(data_dir, capsys):
    cfg = make_cfg(data_dir, "more-after-finish", patience=50, fine_tune_epochs=0)
    train(cfg, verbose=0)
    counter = CountEpochs()
    result = train(cfg.replace(head_epochs=5), callbacks=[counter], verbose=2)
    said = capsys.readouterr().out
    assert "epochs was raised to 5, so training continues from epoch 4 after all" in said
    assert counter.count == 2 and result.history["epoch"].tolist() == [1, 2, 3, 4, 5]


def test_a_finished_run_without_a_reference_gets_one_and_says_so(data_dir, capsys):
    from flowerlib.novelty import load_reference

    cfg = make_cfg(data_dir, "no-reference", fine_tune_epochs=0)
    run = train(cfg, verbose=0).run
    written = load_reference(run.reference)
    run.reference.unlink()  # as a run finished before training wrote one
    train(cfg, verbose=1)
    out = capsys.readouterr().out
    assert "already finished" in out and "It has no reference.npz" in out
    again = load_reference(run.reference)
    np.testing.assert_allclose(
        again.features.astype(np.float32), written.features.astype(np.float32), atol=3e-3
    )
    assert again.threshold == pytest.approx(written.threshold, abs=3e-3)
    train(cfg, verbose=1)
    assert "It has no reference.npz" not in capsys.readouterr().out
