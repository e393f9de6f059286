"""The feature cache: hits, misses on every key input, no stale reuse, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from flowerlib import cache
from flowerlib.artifacts import Layout
from flowerlib.config import Config
from flowerlib.model import backbone_of, build_classifier, feature_extractor


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from flowerlib import synthetic

    root = tmp_path_factory.mktemp("cache-data")
    synthetic.write_dataset(root, num_classes=3, images_per_class=8, image_size=32, seed=0)
    return root


@pytest.fixture(scope="module")
def table(data_dir):
    from flowerlib.splits import official_split

    return official_split(Layout(data_dir))


@pytest.fixture()
def cfg(data_dir):
    return Config.for_profile(
        "smoke", data_dir=data_dir, num_classes=3, image_size=32, batch_size=4, cache_views=1
    )


@pytest.fixture(scope="module")
def model(data_dir):
    import keras

    keras.utils.set_random_seed(0)
    return build_classifier(Config.for_profile("smoke", data_dir=data_dir, num_classes=3, image_size=32))


def key_of(cfg, model, rows, views=0):
    inputs = cache.key_inputs(
        cfg, rows, views=views, backbone_fingerprint=cache.weights_fingerprint(backbone_of(model))
    )
    return cache.make_key(inputs)


def test_second_call_is_a_hit_with_the_same_features(cfg, model, table):
    first = cache.cached_features(cfg, model, table, "train")
    assert first.path.is_file() and first.path.parent == Layout(cfg.data_dir).cache_dir
    assert first.features.shape == (2 * 6, 128)  # 6 train images x (image + 1 augmented view)
    assert list(first.views) == [0] * 6 + [1] * 6
    np.testing.assert_array_equal(first.labels[:6], table[table.split == "train"]["label"])
    second = cache.cached_features(cfg, model, table, "train")
    assert (first.from_cache, second.from_cache) == (False, True)
    np.testing.assert_array_equal(first.features, second.features)
    # View 0 is the un-augmented image: exactly what the model's feature extractor computes.
    from flowerlib.pipeline import make_dataset

    ds = make_dataset(
        table[table.split == "train"], cfg.data_dir, image_size=32, batch_size=4, training=False
    )
    expected = feature_extractor(model).predict(ds, verbose=0)
    np.testing.assert_allclose(first.features[:6], expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(first.features[:6], first.features[6:])  # the augmented view differs


@pytest.mark.parametrize(
    "change",
    [
        {"image_size": 48},
        {"backbone": "mobilenet_v2"},
        {"seed": 1},
        {"augment": False},
    ],
)
def test_any_key_input_changes_the_key(cfg, model, table, change):
    rows = table[table.split == "train"]
    base = key_of(cfg, model, rows, views=1)
    changed = cfg.replace(**change)
    views = cache.views_for(changed, "train")
    assert key_of(changed, model, rows, views=views) != base


def test_views_weights_and_rows_change_the_key(cfg, model, table, tmp_path):
    import keras

    rows = table[table.split == "train"]
    base = key_of(cfg, model, rows, views=1)
    assert key_of(cfg, model, rows, views=2) != base
    mobilenet = cfg.replace(backbone="mobilenet_v2")
    narrow = cfg.replace(backbone="mobilenet_v2", extra={"alpha": 0.5})
    assert key_of(mobilenet, model, rows, views=1) != key_of(narrow, model, rows, views=1)
    assert key_of(cfg, model, rows.iloc[:-1], views=1) != base
    relabelled = rows.assign(label=rows["label"].to_numpy()[::-1])
    assert key_of(cfg, model, relabelled, views=1) != base
    keras.utils.set_random_seed(123)  # the same architecture with other (random) weights
    other = build_classifier(cfg.replace(weights=None))
    assert key_of(cfg, other, rows, views=1) != base
    # One weights file, rewritten with other values: another key.
    path = tmp_path / "tiny.weights.h5"
    backbone_of(model).save_weights(path)
    first = build_classifier(cfg.replace(weights=str(path)))
    backbone_of(other).save_weights(path)
    second = build_classifier(cfg.replace(weights=str(path)))
    assert key_of(cfg.replace(weights=str(path)), first, rows) != key_of(
        cfg.replace(weights=str(path)), second, rows
    )


def test_the_same_weight_values_from_two_sources_share_the_cache(cfg, model, table, tmp_path):
    """Weights are identified by content: an instructor's cache stays valid for a learner whose
    weights come from another place (Keras's cache vs `FLOWERS_WEIGHTS`, any file name)."""
    shipped = tmp_path / "keras-cache" / "tiny_notop.weights.h5"
    copied = tmp_path / "usb-stick" / "my copy.weights.h5"
    for path in (shipped, copied):
        path.parent.mkdir()
        backbone_of(model).save_weights(path)
    rows = table[table.split == "val"]
    instructor = cfg.replace(weights=str(shipped))
    learner = cfg.replace(weights=str(copied))
    first_model, second_model = build_classifier(instructor), build_classifier(learner)
    assert key_of(instructor, first_model, rows) == key_of(learner, second_model, rows)
    assert key_of(instructor, first_model, rows) == key_of(cfg, model, rows)  # and the in-memory weights
    written = cache.cached_features(instructor, first_model, table, "val")
    reused = cache.cached_features(learner, second_model, table, "val")
    assert (written.from_cache, reused.from_cache) == (False, True) and reused.path == written.path


def test_changed_split_table_is_never_served_stale(cfg, model, table):
    old = cache.cached_features(cfg, model, table, "val")
    moved = table.copy()
    first_val = moved.index[moved.split == "val"][0]
    moved.loc[first_val, "split"] = "train"
    new = cache.cached_features(cfg, model, moved, "val")
    assert not new.from_cache and new.key != old.key
    assert len(new) == len(old) - 1


def test_interrupted_write_leaves_no_file(cfg, model, table, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    fresh = cfg.replace(seed=99)
    monkeypatch.setattr(cache.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.cached_features(fresh, model, table, "test")
    assert not [p for p in Layout(cfg.data_dir).cache_dir.iterdir() if "tmp" in p.name]
    monkeypatch.undo()
    result = cache.cached_features(fresh, model, table, "test")
    assert not result.from_cache


def test_corrupt_cache_file_is_recomputed(cfg, model, table):
    first = cache.cached_features(cfg, model, table, "test", views=0)
    first.path.write_bytes(first.path.read_bytes()[:100])
    again = cache.cached_features(cfg, model, table, "test", views=0)
    assert not again.from_cache
    np.testing.assert_allclose(again.features, first.features)


def test_xla_extraction_pads_the_last_batch_and_agrees(cfg, model, table):
    from flowerlib.pipeline import make_dataset

    ds = make_dataset(table[table.split == "test"], cfg.data_dir, image_size=32, batch_size=4, training=False)
    plain, labels = cache.extract_features(feature_extractor(model), ds)
    jit, jit_labels = cache.extract_features(feature_extractor(model), ds, jit_compile=True, batch_size=4)
    assert plain.shape == (len(table[table.split == "test"]), 128)
    np.testing.assert_array_equal(labels, jit_labels)
    np.testing.assert_allclose(plain, jit, rtol=1e-4, atol=1e-4)


def test_empty_part_is_a_clear_error(cfg, model, table):
    with pytest.raises(ValueError, match="no 'val' rows"):
        cache.cached_features(cfg, model, table[table.split != "val"], "val")


def test_one_trace_serves_every_extraction_call_and_dies_with_its_model(cfg, model, table):
    import gc
    import weakref

    from flowerlib.pipeline import make_dataset

    ds = make_dataset(table[table.split == "test"], cfg.data_dir, image_size=32, batch_size=4, training=False)
    extractor = feature_extractor(model)
    first, _ = cache.extract_features(extractor, ds)
    forward = cache._forward_function(extractor, False)
    traces = forward.experimental_get_tracing_count()
    again, _ = cache.extract_features(extractor, ds)  # e.g. the next augmented view
    assert cache._forward_function(extractor, False) is forward
    assert forward.experimental_get_tracing_count() == traces
    np.testing.assert_array_equal(first, again)
    alive = weakref.ref(extractor)
    del extractor, forward
    gc.collect()
    assert alive() is None  # the cached function does not keep the model alive


# --- feature maps for fine-tuning -------------------------------------------------------


def test_feature_maps_come_with_the_features_and_are_read_back_memory_mapped(cfg, model, table):
    from flowerlib.model import fine_tune_cut

    cut = fine_tune_cut(model, 1)
    plain = cache.cached_features(cfg, model, table, "val", views=0)  # features only
    first = cache.cached_features(cfg, model, table, "val", views=0, activations=cut)
    assert not first.from_cache, "asking for the maps extracts again (one pass gives both)"
    np.testing.assert_allclose(first.features, plain.features, rtol=1e-4, atol=1e-5)
    assert first.activations.dtype == np.float16 and len(first.activations) == len(first)
    # The maps are what the classifier's frozen part computes at the cut (float16 rounding).
    images = np.stack([pipeline_image(cfg, f) for f in table[table.split == "val"]["file"]])
    inner = backbone_of(model)
    import keras

    upto = keras.Model(inner.input, inner.get_layer(cut).output)
    expected = np.asarray(upto(model.get_layer("preprocess")(images)))
    np.testing.assert_allclose(first.activations, expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max())
    second = cache.cached_features(cfg, model, table, "val", views=0, activations=cut)
    assert second.from_cache and isinstance(second.activations, np.memmap)
    assert second.activations_key == first.activations_key != first.key
    np.testing.assert_array_equal(second.activations, first.activations)


def pipeline_image(cfg, file):
    from flowerlib.pipeline import read_image

    return read_image(cfg.data_dir / file, cfg.image_size)


def test_a_missing_or_truncated_map_file_is_recomputed(cfg, model, table):
    from flowerlib.model import fine_tune_cut

    cut = fine_tune_cut(model, 1)
    good = cache.cached_features(cfg, model, table, "train", activations=cut)
    path = cache.activations_path(cfg, good.activations_key)
    expected = np.array(good.activations)
    del good
    path.write_bytes(path.read_bytes()[:200])  # truncated
    again = cache.cached_features(cfg, model, table, "train", activations=cut)
    assert not again.from_cache
    np.testing.assert_allclose(again.activations, expected, rtol=1e-3, atol=1e-3)
    path.unlink()
    third = cache.cached_features(cfg, model, table, "train", activations=cut)
    assert not third.from_cache and path.is_file()
    # another cut is another file
    other = cache.cached_features(cfg, model, table, "train", activations=fine_tune_cut(model, 2))
    assert (
        other.activations_key != third.activations_key and other.activations.shape[1:] != expected.shape[1:]
    )


def test_only_the_most_recently_used_feature_map_files_are_kept(tmp_path, capsys):
    import os

    cfg = Config.for_profile("smoke", data_dir=tmp_path)
    folder = Layout(tmp_path).cache_dir
    folder.mkdir(parents=True)
    for i in range(6):
        (folder / f"activations-{i}.npy").write_bytes(b"x" * 1000)
        os.utime(folder / f"activations-{i}.npy", (1000 + i, 1000 + i))
    (folder / "features-0.npz").write_bytes(b"small")
    deleted = cache.prune_activations(cfg, keep=4, verbose=True)
    assert sorted(p.name for p in deleted) == ["activations-0.npy", "activations-1.npy"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "activations-2.npy",
        "activations-3.npy",
        "activations-4.npy",
        "activations-5.npy",
        "features-0.npz",
    ]
    assert capsys.readouterr().out.count("Deleted the older feature-map cache") == 2
