"""The input pipeline: split table -> `tf.data.Dataset` of (images, labels).

Images are decoded in parallel, resized so the shorter side equals the model's
input size (aspect ratio kept), centre-cropped to a square, batched and
prefetched. They stay raw RGB floats in 0..255: the backbone's own
`preprocess_input` is a layer of the model (see `flowerlib.model`), so the same
model accepts plain photos at prediction time.

Training datasets are shuffled (seeded) and augmented with Keras preprocessing
layers (`augmenter`); evaluation datasets keep the table's order exactly, so
predictions line up with `table["label"]`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flowerlib.errors import FlowerlibError
from flowerlib.splits import COLUMNS, PARTS

if TYPE_CHECKING:  # TensorFlow and pandas are imported when a function runs
    import keras
    import pandas as pd
    import tensorflow as tf

    from flowerlib.config import Config

# Augmentation strengths: small, plausible changes of a flower photo.
ROTATION_FACTOR = 0.1  # up to +-10 % of a full turn (+-36 degrees)
ZOOM_FACTOR = 0.2  # zoom *in* by up to 20 % (a random crop, no padded borders)


class PipelineError(FlowerlibError, ValueError):
    """A split table or data directory cannot be turned into a dataset."""


def resize_and_crop(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize an `(H, W, 3)` image so its shorter side is `image_size`, crop the centre square.

    Bilinear and antialiased, aspect ratio kept; the one geometry shared by the
    input pipeline and `flowerlib.predict`, so a photo looks the same to the model
    in training and at prediction time. An image longer than 3:1 is first cut
    to its central 3:1 part, so memory stays bounded however elongated it is.

    Args:
        image: RGB image tensor or array `(H, W, 3)`, values in 0..255, any dtype.
        image_size: side of the output square, in pixels.

    Returns:
        float32 tensor `[image_size, image_size, 3]`, values clipped to 0..255.
    """
    import tensorflow as tf

    # Crop a very elongated image (a 1x6000 strip) to its central part first: resizing all
    # of it would take gigabytes for pixels the centre crop throws away. Up to 3:1 this is a
    # no-op, so ordinary photos are resized exactly as before.
    image = tf.convert_to_tensor(image)
    hw = tf.shape(image)[:2]
    keep = tf.minimum(hw, 3 * tf.reduce_min(hw))
    start = (hw - keep) // 2
    image = image[start[0] : start[0] + keep[0], start[1] : start[1] + keep[1]]
    image = tf.cast(image, tf.float32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = float(image_size) / tf.reduce_min(shape)
    # ceil(), then at least image_size: rounding never leaves a side too short to crop.
    new_hw = tf.maximum(tf.cast(tf.math.ceil(shape * scale - 1e-3), tf.int32), image_size)
    image = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
    top = (new_hw[0] - image_size) // 2
    left = (new_hw[1] - image_size) // 2
    image = tf.image.crop_to_bounding_box(image, top, left, image_size, image_size)
    return tf.clip_by_value(image, 0.0, 255.0)


def decode_and_resize(path: tf.Tensor | str, image_size: int) -> tf.Tensor:
    """Read a JPEG, resize its shorter side to `image_size`, crop the centre square.

    Args:
        path: path of a JPEG file (a scalar string tensor inside `tf.data`).
        image_size: side of the output square, in pixels.

    Returns:
        float32 tensor `[image_size, image_size, 3]`, RGB values in 0..255.
    """
    import tensorflow as tf

    data = tf.io.read_file(path)
    image = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_FAST")
    image = resize_and_crop(image, image_size)
    image.set_shape([image_size, image_size, 3])
    return image


def augmenter(seed: int | None = None) -> keras.Sequential:
    """The training-time augmentation: random horizontal flip, rotation and zoom-in.

    Keras preprocessing layers, active only when called with `training=True`
    (which `tf.data` and Keras fit do). Values stay in 0..255 (bilinear
    interpolation, reflected borders).

    Args:
        seed: seed of the random transformations (`None`: not reproducible).

    Returns:
        A `keras.Sequential` named `augment`, applied to batches `[B, S, S, 3]`.
    """
    import keras

    def s(offset: int) -> int | None:
        return None if seed is None else seed + offset

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=s(0)),
            keras.layers.RandomRotation(ROTATION_FACTOR, fill_mode="reflect", seed=s(1)),
            keras.layers.RandomZoom((-ZOOM_FACTOR, 0.0), fill_mode="reflect", seed=s(2)),
        ],
        name="augment",
    )


def _check_table(table: pd.DataFrame, data_dir: Path) -> None:
    if not data_dir.is_dir():
        raise PipelineError(
            f"The data directory {data_dir} does not exist. Run notebooks/01_download.ipynb first "
            "(or set FLOWERS_DATA_DIR to where the dataset is)."
        )
    missing = [c for c in ("file", "label") if c not in table.columns]
    if missing:
        raise PipelineError(
            f"The split table lacks columns {missing}. Expected a table from flowerlib.splits "
            f"with columns {list(COLUMNS)}. Received columns {list(table.columns)}"
        )
    if len(table) == 0:
        raise PipelineError(
            "The split table is empty: there are no images to load. Check the part you selected."
        )
    _check_files(table["file"], data_dir)


def _check_files(files: Iterable[str], data_dir: Path) -> None:
    """Every file must be there and start like a JPEG: TensorFlow's error would not name it.

    Reads three bytes a file (a fraction of a second for 8,189 images); the
    download step decoded each image once already (`download.image_problem`).
    """
    bad = []
    for name in files:
        try:
            with open(data_dir / name, "rb") as f:
                if f.read(3) != b"\xff\xd8\xff":
                    bad.append(f"{name} (not a JPEG)")
        except OSError as e:
            bad.append(f"{name} ({e.strerror or type(e).__name__})")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5:,} more" if len(bad) > 5 else "")
        raise PipelineError(
            f"{len(bad):,} image(s) of the split table in {data_dir} cannot be read: {shown}. Delete "
            "them and run the download step again (notebook 01 or `flowerlib download`): it restores them "
            "from the archive, or leaves them out of a folder source."
        )


def make_dataset(
    table: pd.DataFrame,
    data_dir: str | Path,
    *,
    image_size: int,
    batch_size: int,
    training: bool,
    augment: bool | None = None,
    seed: int = 0,
    cache: bool = False,
) -> tf.data.Dataset:
    """A batched, prefetched `tf.data.Dataset` of the table's images and labels.

    Args:
        table: split table rows to load (use `table[table.split == "train"]` etc.).
        data_dir: the data directory the `file` column is relative to.
        image_size: side of the square images, in pixels.
        batch_size: images per batch (the last batch may be smaller).
        training: `True` shuffles (with `seed`, reshuffled every epoch) and,
            by default, augments; `False` keeps the table's order exactly.
        augment: apply `augmenter(seed)`; defaults to `training`.
        seed: seed of the shuffle and the augmentation.
        cache: keep decoded images in memory after the first pass (small
            datasets only: 1,020 images at 224 px take about 600 MB).

    Returns:
        Dataset of `(images float32 [B, S, S, 3] in 0..255, labels int32 [B])`.

    Raises:
        PipelineError: empty table, missing columns, missing data directory, or
            an image that is missing or not a JPEG (named in the message).
    """
    import tensorflow as tf

    data_dir = Path(data_dir)
    _check_table(table, data_dir)
    if image_size < 1 or batch_size < 1:
        raise PipelineError(
            f"image_size and batch_size must be positive. Received image_size={image_size}, batch_size={batch_size}"
        )
    augment = training if augment is None else augment
    paths = [str(data_dir / f) for f in table["file"]]
    labels = table["label"].to_numpy(dtype=np.int32)
    n = len(paths)
    autotune = tf.data.AUTOTUNE

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if training and not cache:  # shuffling file names is cheap; decoded images are not
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(
        lambda path, label: (decode_and_resize(path, image_size), label),
        num_parallel_calls=autotune,
        deterministic=True,
    )
    if cache:
        ds = ds.cache()
        if training:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment:
        aug = augmenter(seed)
        # The random layers draw from one seed generator: batches augmented in parallel would
        # draw in thread order, so a seeded pipeline augments one batch at a time (reproducible).
        parallel = autotune if seed is None else None
        order = {} if parallel is None else {"deterministic": True}  # a sequential map keeps order anyway
        ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=parallel, **order)
    return ds.prefetch(autotune)


def dataset_for(cfg: Config, table: pd.DataFrame, part: str, training: bool | None = None) -> tf.data.Dataset:
    """The dataset of one part of a split, with the configuration's settings.

    Args:
        cfg: the configuration (`data_dir`, `image_size`, `batch_size`,
            `augment`, `seed`).
        table: the whole split table (from `flowerlib.splits.prepare_split`).
        part: `"train"`, `"val"` or `"test"`.
        training: shuffle and augment; defaults to `part == "train"`.
            Augmentation also needs `cfg.augment`.

    Returns:
        See `make_dataset`.

    Raises:
        PipelineError: unknown part, or no rows in it.
    """
    if part not in PARTS:
        raise PipelineError(f"part must be one of {PARTS}. Received part={part!r}")
    if "split" not in table.columns:
        raise PipelineError(
            f"The split table lacks the 'split' column. Received columns {list(table.columns)}"
        )
    training = part == "train" if training is None else training
    rows = table[table["split"] == part]
    if len(rows) == 0:
        raise PipelineError(
            f"The split table has no {part!r} rows. Parts present: {sorted(set(table['split']))}"
        )
    return make_dataset(
        rows,
        cfg.data_dir,
        image_size=cfg.image_size,
        batch_size=cfg.batch_size,
        training=training,
        augment=training and cfg.augment,
        seed=cfg.seed,
    )


def read_image(path: str | Path, image_size: int) -> np.ndarray:
    """One image as the pipeline sees it (resized, centre-cropped), as a NumPy array.

    Returns:
        float32 array `[image_size, image_size, 3]` in 0..255.

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    return decode_and_resize(str(path), image_size).numpy()


def augmented_views(image: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`n` random augmentations of one image (for the notebook's plot).

    Args:
        image: `[S, S, 3]` array in 0..255 (e.g. from `read_image`).
        n: number of views.
        seed: seed of the augmentation.

    Returns:
        float32 array `[n, S, S, 3]` in 0..255.

    Raises:
        ValueError: `image` is not `[S, S, 3]`, or `n < 1`.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape [height, width, 3]. Received shape {image.shape}")
    if n < 1:
        raise ValueError(f"n must be >= 1. Received n={n}")
    batch = np.repeat(image[None], n, axis=0)
    return np.asarray(augmenter(seed)(batch, training=True), dtype=np.float32)
