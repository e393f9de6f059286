"""The feature cache: the frozen backbone's pooled features, computed once per image.

While the backbone is frozen, every epoch of head training would push each
image through the same ~25 million frozen ResNet50 weights again, only to get
the same 2,048 numbers. The fast path computes those numbers once (plus
`cfg.cache_views` randomly augmented views of each training image, so the head
still sees some augmentation), stores them on disk and trains the head on them:
seconds per epoch instead of minutes.

A cache file is named by a hash (`cache/features-<key>.npz`) of everything that
determines its content:

- the backbone (name, width `alpha`, preprocessing, image size, dtype policy),
- the weights, by content only: a SHA-256 over the backbone's weight values, so
  the same ImageNet weights give the same key whether Keras loaded them from its
  own cache (`weights="imagenet"`) or from a copy in `FLOWERS_WEIGHTS`, whatever
  the copy's name or file format,
- the rows of the split table it covers (ids, files, labels, in order),
- the augmentation settings, seed and number of views,
- a format version.

Change any of them and the key changes, so a stale file is never reused (for
example after the split table changes). Files are written atomically and
checked on reading; an unreadable or inconsistent file is recomputed.

For fine-tuning, the same forward pass can also keep an inner feature map: the
input of the stages that fine-tuning unfreezes (`model.fine_tune_cut`; for
ResNet50, `conv4`'s 14 x 14 x 1,024 output). Everything before it stays frozen,
so it is the same in every epoch: stored once, in float16, as
`cache/activations-<key>.npy` (memory-mapped when read), each fine-tuning
epoch runs only the last stage (`train.CachedViews`, `model.top_model`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import weakref
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowerlib.artifacts import Layout, atomic_path

if TYPE_CHECKING:
    import keras
    import pandas as pd
    import tensorflow as tf

    from flowerlib.config import Config

FORMAT_VERSION = 1
ACTIVATIONS_DTYPE = "float16"  # half the memory of float32; post-ReLU maps fit its range
ACTIVATIONS_KEEP = 4  # feature-map files kept per data directory (train + val of two settings)
VIEW_SEED_STRIDE = 101  # augmented view v uses augmenter(seed + v * stride)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSet:
    """Pooled backbone features of one part of a split.

    Attributes:
        features: float32 `[N, D]`.
        labels: int32 `[N]`.
        image_ids: int `[N]`, the table's `image_id` of each row.
        views: int `[N]`; 0 is the image itself, `v >= 1` its v-th augmented view.
        key: the cache key.
        path: the cache file.
        from_cache: True when read from disk, False when computed now.
        seconds: time spent (reading, or extracting and writing).
        activations: float16 `[N, H, W, C]` feature maps at `activations_layer`
            (memory-mapped from the cache), or None when not asked for.
        activations_layer: the backbone layer they come from.
        activations_key: the key of their cache file (it includes `key`).
    """

    features: np.ndarray
    labels: np.ndarray
    image_ids: np.ndarray
    views: np.ndarray
    key: str
    path: Path
    from_cache: bool
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    activations: np.ndarray | None = field(default=None, repr=False)
    activations_layer: str | None = None
    activations_key: str | None = None

    def __len__(self) -> int:
        return len(self.labels)


# --- keys ---------------------------------------------------------------------


def weights_fingerprint(model: keras.Model) -> str:
    """SHA-256 over a model's weight values (which exact network computed the features).

    This identifies the weights by content: a weights file and Keras's own copy
    of the same ImageNet weights give the same fingerprint.
    """
    h = hashlib.sha256()
    for w in model.weights:
        a = np.ascontiguousarray(w.numpy())
        h.update(f"{w.path}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def table_fingerprint(rows: pd.DataFrame) -> str:
    """SHA-256 of the rows' `image_id`, `file`, `label` and `split` (those present), in order."""
    cols = [c for c in ("image_id", "file", "label", "split") if c in rows.columns]
    text = rows[cols].to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(text.encode()).hexdigest()


def views_for(cfg: Config, part: str) -> int:
    """Augmented views per image cached for `part`: `cfg.cache_views` for train (with augmentation), else 0."""
    return cfg.cache_views if part == "train" and cfg.augment else 0


def key_inputs(
    cfg: Config, rows: pd.DataFrame, *, views: int, backbone_fingerprint: str, policy: str = "float32"
) -> dict[str, Any]:
    """Everything that determines the cached features, as a JSON-friendly dict."""
    from flowerlib.backbones import get_backbone

    spec = get_backbone(cfg.backbone)
    augmentation: dict[str, Any] | None = None
    if views:
        from flowerlib.pipeline import augmenter

        augmentation = {
            "seed": cfg.seed,
            "stride": VIEW_SEED_STRIDE,
            "layers": without_names(json.loads(json.dumps(augmenter(cfg.seed).get_config(), default=str))),
        }
    return {
        "version": FORMAT_VERSION,
        "backbone": spec.name,
        "alpha": spec.alpha_for(cfg.weights, cfg.extra.get("alpha")),
        "preprocess": spec.preprocess,
        "image_size": cfg.image_size,
        "policy": policy,
        "weights_fingerprint": backbone_fingerprint,
        "rows": table_fingerprint(rows),
        "n_rows": len(rows),
        "views": views,
        "augmentation": augmentation,
    }


def without_names(obj: Any) -> Any:
    """A layer config without its auto-numbered `name` fields (they change on every build)."""
    if isinstance(obj, dict):
        return {k: without_names(v) for k, v in obj.items() if k != "name"}
    if isinstance(obj, list):
        return [without_names(v) for v in obj]
    return obj


def make_key(inputs: Any) -> str:
    """The short hash of JSON-able `inputs`: names a cache file, fingerprints a checkpoint."""
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_path(cfg: Config, key: str) -> Path:
    """`<data_dir>/cache/features-<key>.npz`."""
    return Layout(cfg.data_dir).feature_cache(key)


def activations_key(key: str, layer: str) -> str:
    """The key of the feature maps at `layer` extracted with the features of `key`."""
    return make_key({"features": key, "layer": layer, "dtype": ACTIVATIONS_DTYPE})


def activations_path(cfg: Config, key: str) -> Path:
    """`<data_dir>/cache/activations-<key>.npy`."""
    return Layout(cfg.data_dir).cache_dir / f"activations-{key}.npy"


def prune_activations(cfg: Config, keep: int = ACTIVATIONS_KEEP, *, verbose: bool = False) -> list[Path]:
    """Delete all but the `keep` most recently used feature-map files of the data directory.

    They are large (ResNet50: about 1.6 GiB for the official split) and every
    change of weights, views or unfrozen stages writes new ones; the features
    (`features-*.npz`, small) are kept. A deleted file is recomputed when
    needed again. Files still open elsewhere are left alone where the system
    refuses (Windows).

    Returns:
        The deleted files.
    """
    files = sorted(
        Layout(cfg.data_dir).cache_dir.glob("activations-*.npy"),
        key=lambda f: f.stat().st_mtime,
        reverse=True,
    )
    deleted = []
    for path in files[keep:]:
        size = path.stat().st_size
        try:
            path.unlink()
        except OSError:
            continue
        deleted.append(path)
        if verbose:
            print(
                f"Deleted the older feature-map cache {path.name} ({size / 2**20:,.0f} MiB): only the {keep} most recently used are kept."
            )
    return deleted


# --- extraction ---------------------------------------------------------------


# One traced forward function per extractor and XLA setting, reused by every
# call (the train part, each augmented view, the val part): tracing a backbone
# costs seconds, and a fresh `tf.function` per call would trace again.
_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _forward_function(extractor: keras.Model, jit_compile: bool):
    import tensorflow as tf

    per_model = _FORWARD.setdefault(extractor, {})
    if jit_compile not in per_model:
        model = weakref.ref(extractor)  # a strong reference would keep the key alive forever

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def forward(images):
            return model()(images, training=False)

        per_model[jit_compile] = forward
    return per_model[jit_compile]


def extract_features(
    extractor: keras.Model,
    dataset: tf.data.Dataset,
    *,
    jit_compile: bool = False,
    batch_size: int | None = None,
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run a frozen feature extractor over a dataset of `(images, labels)` batches.

    The forward pass runs as one compiled function (`training=False`), with XLA
    when `jit_compile`; a short last batch is padded to `batch_size` so XLA
    compiles only once.

    Args:
        extractor: image -> pooled features (`flowerlib.model.feature_extractor`).
        dataset: batched `(images, labels)`.
        jit_compile: compile with XLA.
        batch_size: the dataset's batch size (for padding the last batch).
        progress: a label for a progress bar; `None` shows none.

    Returns:
        `(features float32 [N, D], labels int32 [N])`; for an extractor with an
        `activations` output (`feature_extractor(..., activations=...)`), the
        features are the pair `(activations float16 [N, H, W, C], features)`.
    """
    import tensorflow as tf

    forward = _forward_function(extractor, jit_compile)
    features, maps, labels = [], [], []
    bar = None
    if progress is not None:
        from tqdm.auto import tqdm

        cardinality = int(dataset.cardinality())
        bar = tqdm(total=cardinality if cardinality > 0 else None, desc=progress, unit="batch", leave=False)
    for images, y in dataset:
        n = int(images.shape[0])
        if jit_compile and batch_size and n < batch_size:
            pad = tf.zeros((batch_size - n, *images.shape[1:]), images.dtype)
            images = tf.concat([images, pad], axis=0)
        out = forward(images)
        if isinstance(out, (list, tuple)):
            maps.append(np.asarray(out[0][:n], dtype=ACTIVATIONS_DTYPE))
            out = out[1]
        features.append(np.asarray(out, dtype=np.float32)[:n])
        labels.append(np.asarray(y, dtype=np.int32))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if maps:
        return (np.concatenate(maps), np.concatenate(features)), np.concatenate(labels)
    return np.concatenate(features), np.concatenate(labels)


def _read(path: Path, key: str) -> FeatureSet | None:
    """The cache file if it is whole and made for `key`, else None."""
    t0 = time.perf_counter()
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in ("features", "labels", "image_ids", "views")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        logger.warning("Ignoring unreadable feature cache %s (%s); recomputing it.", path, e)
        return None
    n = len(arrays["labels"])
    if meta.get("key") != key or any(len(a) != n for a in arrays.values()) or arrays["features"].ndim != 2:
        logger.warning("Ignoring inconsistent feature cache %s; recomputing it.", path)
        return None
    return FeatureSet(
        **arrays, key=key, path=path, from_cache=True, seconds=time.perf_counter() - t0, meta=meta
    )


def _read_activations(path: Path, n: int) -> np.ndarray | None:
    """The cached feature maps, memory-mapped, if the file is whole and holds `n` of them."""
    try:
        maps = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        logger.warning("Ignoring unreadable activation cache %s (%s); recomputing it.", path, e)
        return None
    if maps.ndim != 4 or len(maps) != n or maps.dtype != np.dtype(ACTIVATIONS_DTYPE):
        logger.warning("Ignoring inconsistent activation cache %s; recomputing it.", path)
        return None
    return maps


def _write(path: Path, key: str, inputs: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    meta = json.dumps({"key": key, "inputs": inputs}, sort_keys=True, default=str)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, meta=np.array(meta), **arrays)


def cached_features(
    cfg: Config,
    model: keras.Model,
    table: pd.DataFrame,
    part: str,
    *,
    views: int | None = None,
    activations: str | None = None,
    verbose: bool = False,
) -> FeatureSet:
    """Pooled features of `part`'s images under `model`'s frozen backbone, from the cache when possible.

    Args:
        cfg: the configuration (data directory, image size, batch size, seed,
            augmentation, `jit_compile`).
        model: the classifier (`flowerlib.model.build_classifier`); its
            preprocess + backbone + pool compute the features.
        table: the whole split table.
        part: `"train"`, `"val"` or `"test"`.
        views: augmented views per image on top of the image itself; defaults
            to `views_for(cfg, part)`.
        activations: also keep the feature map of this backbone layer
            (`model.fine_tune_cut(model, stages)`), from the same forward pass,
            for fine-tuning from cached activations.
        verbose: show a progress bar while extracting, or say that the cache was read.

    Returns:
        A `FeatureSet`: rows grouped by view (all images for view 0, then all
        for view 1, ...), each in table order.

    Raises:
        ValueError: no rows in `part`.
    """
    from flowerlib.model import backbone_of, feature_extractor
    from flowerlib.pipeline import make_dataset
    from flowerlib.runtime import use_jit

    rows = table[table["split"] == part]
    if len(rows) == 0:
        raise ValueError(
            f"The split table has no {part!r} rows. Parts present: {sorted(set(table['split']))}"
        )
    views = views_for(cfg, part) if views is None else int(views)
    if views < 0:
        raise ValueError(f"views must be >= 0. Received views={views}")
    inputs = key_inputs(
        cfg,
        rows,
        views=views,
        backbone_fingerprint=weights_fingerprint(backbone_of(model)),
        policy=str(backbone_of(model).dtype_policy.name),
    )
    key = make_key(inputs)
    path = cache_path(cfg, key)
    maps_key = activations_key(key, activations) if activations else None
    maps_path = activations_path(cfg, maps_key) if maps_key else None
    n = len(rows) * (views + 1)
    hit = _read(path, key) if path.is_file() else None
    maps = None
    if hit is not None and maps_path is not None:
        maps = _read_activations(maps_path, n) if maps_path.is_file() else None
        if maps is None:
            hit = None  # extract again: the features come with the maps in the same pass
        else:
            with contextlib.suppress(OSError):  # recently used: `prune_activations` keeps it
                os.utime(maps_path)
    if hit is not None:
        if verbose:
            what = "features and feature maps" if maps is not None else "features"
            print(
                f"{part.capitalize()} {what}: read from the cache {path.name} (same weights, images and views)."
            )
        if maps is None:
            return hit
        return replace(hit, activations=maps, activations_layer=activations, activations_key=maps_key)

    t0 = time.perf_counter()
    # frozen: BatchNorm folded into the convs; with `activations`, two outputs of one pass
    extractor = feature_extractor(model, fold_batchnorm=True, activations=activations)
    jit = use_jit(cfg)
    parts: dict[str, list[np.ndarray]] = {"features": [], "labels": [], "image_ids": [], "views": []}
    with contextlib.ExitStack() as stack:
        out = None
        if maps_path is not None:
            tmp = stack.enter_context(atomic_path(maps_path))
            shape = (n, *extractor.output[0].shape[1:])
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=ACTIVATIONS_DTYPE, shape=shape)
        for v in range(views + 1):
            ds = make_dataset(
                rows,
                cfg.data_dir,
                image_size=cfg.image_size,
                batch_size=cfg.batch_size,
                training=False,  # table order: features line up with image ids
                augment=v > 0,
                seed=cfg.seed + v * VIEW_SEED_STRIDE,
            )
            label = f"{part} features" + (f" (view {v})" if views else "") if verbose else None
            feats, labels = extract_features(
                extractor, ds, jit_compile=jit, batch_size=cfg.batch_size, progress=label
            )
            if out is not None:
                out[v * len(rows) : (v + 1) * len(rows)] = feats[0]
                feats = feats[1]
            parts["features"].append(feats)
            parts["labels"].append(labels)
            parts["image_ids"].append(rows["image_id"].to_numpy(dtype=np.int64))
            parts["views"].append(np.full(len(labels), v, dtype=np.int16))
        if out is not None:
            out.flush()
            del out  # closes the file before it is renamed into place
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    _write(path, key, inputs, arrays)
    if maps_path is not None:
        prune_activations(cfg, verbose=verbose)
        maps = _read_activations(maps_path, n)
        if verbose:
            print(
                f"{part.capitalize()} feature maps at {activations!r} cached for fine-tuning: "
                f"{maps.shape[1:]} per image and view, {maps.nbytes / 2**20:,.0f} MiB in {maps_path.name}."
            )
    return FeatureSet(
        **arrays,
        key=key,
        path=path,
        from_cache=False,
        seconds=time.perf_counter() - t0,
        meta={"key": key, "inputs": inputs},
        activations=maps,
        activations_layer=activations,
        activations_key=maps_key,
    )
