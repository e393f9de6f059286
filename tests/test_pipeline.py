"""The tf.data input pipeline: shapes, value range, order, centre crop, augmentation, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flowerlib import pipeline, splits
from flowerlib.artifacts import Layout
from flowerlib.config import Config

S = 32  # small images keep the tests fast


@pytest.fixture(scope="module")
def table(synthetic_root):
    return splits.official_split(Layout(synthetic_root))


def _collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_eval_dataset_shapes_dtypes_and_range(synthetic_root, table):
    val = table[table["split"] == "val"]
    ds = pipeline.make_dataset(val, synthetic_root, image_size=S, batch_size=8, training=False)
    assert ds.element_spec[0].shape.as_list() == [None, S, S, 3]
    assert ds.element_spec[0].dtype.name == "float32" and ds.element_spec[1].dtype.name == "int32"
    images, labels = _collect(ds)
    assert images.shape == (len(val), S, S, 3)
    assert images.min() >= 0.0 and images.max() <= 255.0 and images.max() > 100  # 0..255, not 0..1
    assert [len(y) for _, y in ds] == [8, 8, 8, 6]


def test_eval_order_equals_table_order_and_is_repeatable(synthetic_root, table):
    shuffled = table.sample(frac=1.0, random_state=0).iloc[:40]  # any order, not sorted by label
    ds = pipeline.make_dataset(shuffled, synthetic_root, image_size=S, batch_size=16, training=False)
    images1, labels1 = _collect(ds)
    images2, labels2 = _collect(ds)
    np.testing.assert_array_equal(labels1, shuffled["label"].to_numpy())
    np.testing.assert_array_equal(labels2, labels1)
    np.testing.assert_array_equal(images2, images1)
    first = pipeline.read_image(synthetic_root / shuffled["file"].iloc[0], S)
    np.testing.assert_array_equal(images1[0], first)


def test_training_dataset_shuffles_with_its_seed_and_keeps_every_image(synthetic_root, table):
    train = table[table["split"] == "train"]

    def labels(seed):
        ds = pipeline.make_dataset(
            train, synthetic_root, image_size=S, batch_size=64, training=True, augment=False, seed=seed
        )
        return _collect(ds)[1]

    a, b = labels(1), labels(1)
    np.testing.assert_array_equal(a, b)
    assert sorted(a) == sorted(train["label"])
    assert not np.array_equal(a, train["label"].to_numpy())


def _stripes(path, size, vertical):
    """A JPEG whose middle half (across the long side) is green and the outer quarters red."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[...] = (255, 0, 0)
    if vertical:  # long side is the width
        img[:, w // 4 : 3 * w // 4] = (0, 255, 0)
    else:
        img[h // 4 : 3 * h // 4, :] = (0, 255, 0)
    Image.fromarray(img).save(path, quality=95)


@pytest.mark.parametrize("size", [(200, 100), (100, 200)], ids=["wide", "tall"])
def test_centre_crop_of_a_non_square_image_keeps_the_centre(tmp_path, size):
    path = tmp_path / "stripes.jpg"
    _stripes(path, size, vertical=size[0] > size[1])
    image = pipeline.read_image(path, S)
    assert image.shape == (S, S, 3) and image.dtype == np.float32
    inner = image[2:-2, 2:-2]  # away from the red/green edges
    assert inner[..., 1].min() > 200 and inner[..., 0].max() < 60, "the crop must be the green centre"


def test_small_images_are_upscaled_to_the_requested_size(tmp_path):
    path = tmp_path / "small.jpg"
    Image.fromarray(np.full((10, 15, 3), 128, np.uint8)).save(path)
    assert pipeline.read_image(path, S).shape == (S, S, 3)


def test_augmentation_changes_pixels_but_not_shape_or_range(synthetic_root, table):
    image = pipeline.read_image(synthetic_root / table["file"].iloc[0], S)
    views = pipeline.augmented_views(image, 4, seed=0)
    assert views.shape == (4, S, S, 3) and views.dtype == np.float32
    assert views.min() >= 0.0 and views.max() <= 255.0
    assert all(np.abs(v - image).mean() > 1.0 for v in views)
    assert np.abs(views[0] - views[1]).mean() > 1.0
    np.testing.assert_allclose(pipeline.augmented_views(image, 4, seed=0), views)


def test_augmented_training_batches_keep_shape_and_range(synthetic_root, table):
    train = table[table["split"] == "train"]
    ds = pipeline.make_dataset(train, synthetic_root, image_size=S, batch_size=32, training=True, seed=0)
    images, labels = _collect(ds)
    assert images.shape == (len(train), S, S, 3) and labels.dtype == np.int32
    assert images.min() >= 0.0 and images.max() <= 255.0


def test_dataset_for_picks_the_part_and_the_config_settings(synthetic_root, table):
    cfg = Config.for_profile("smoke", data_dir=synthetic_root, image_size=S, batch_size=7)
    ds = pipeline.dataset_for(cfg, table, "test")
    images, labels = _collect(ds)
    np.testing.assert_array_equal(labels, table.loc[table["split"] == "test", "label"].to_numpy())
    assert images.shape[1:] == (S, S, 3)
    with pytest.raises(pipeline.PipelineError, match="part='dev'"):
        pipeline.dataset_for(cfg, table, "dev")


def test_cached_dataset_gives_the_same_images(synthetic_root, table):
    val = table[table["split"] == "val"]
    kw = {"image_size": S, "batch_size": 16, "training": False}
    plain = _collect(pipeline.make_dataset(val, synthetic_root, **kw))[0]
    ds = pipeline.make_dataset(val, synthetic_root, cache=True, **kw)
    np.testing.assert_array_equal(_collect(ds)[0], plain)
    np.testing.assert_array_equal(_collect(ds)[0], plain)


def test_clear_errors_for_bad_inputs(synthetic_root, table, tmp_path):
    kw = {"image_size": S, "batch_size": 4, "training": False}
    with pytest.raises(pipeline.PipelineError, match="empty"):
        pipeline.make_dataset(table.iloc[:0], synthetic_root, **kw)
    with pytest.raises(pipeline.PipelineError, match=r"lacks columns \['label'\]"):
        pipeline.make_dataset(table.drop(columns="label"), synthetic_root, **kw)
    with pytest.raises(pipeline.PipelineError, match="01_download"):
        pipeline.make_dataset(table, tmp_path / "nowhere", **kw)
    with pytest.raises(ValueError, match=r"shape \(4, 4\)"):
        pipeline.augmented_views(np.zeros((4, 4)), 2)
    empty = pd.DataFrame({"file": [], "label": [], "split": []})
    with pytest.raises(pipeline.PipelineError, match="no 'train' rows"):
        pipeline.dataset_for(Config.for_profile("smoke", data_dir=synthetic_root), empty, "train")
