"""Augmentation recipes to compare (issue 12): `use(name)` makes `pipeline.augmenter` build that one.

The cache keys include the augmenter's configuration, so each recipe extracts
its own views; `--recipe` in `unlike_accuracy.py` and `real_accuracy.py` picks one.
"""

from __future__ import annotations

import numpy as np

RECIPES = {
    "current": "flip, rotation ±36°, zoom in ≤20 % (the default before this comparison)",
    "zoom-out": "flip, rotation ±36°, zoom in ≤20 % or out ≤60 % (reflected borders)",
    "zoom-out-colour": "zoom-out + colour jitter (brightness, contrast, saturation ±20 %, hue ±3 %)",
    "zoom-out-colour-blur": "zoom-out-colour + Gaussian blur (σ ≤ 2 px, half the views)",
    "crop": "flip, rotation ±36°, zoom in ≤50 %",
    "lowres": "flip, rotation ±36°, zoom in ≤20 % (the default), then half the views shrunk to "
    "64-160 px and enlarged back (bilinear): low resolution",
    "erase": "flip, rotation ±36°, zoom in ≤20 % (the default), then random erasing: half the views get "
    "a rectangle of noise over about 5-28 % of the image (keras.layers.RandomErasing)",
    "colour": "flip, rotation ±36°, zoom in ≤20 % (the default), then the colour jitter of zoom-out-colour",
    "cutmix": "the default's views, then CutMix on the cached feature maps while fine-tuning: half the maps "
    "get a box (area drawn uniformly) from another map of the batch, the labels mixed by area",
    "soup": "the default, but fine-tuned three times from the head phase's weights (view draws seeded seed, "
    "seed + 1, seed + 2) and the three fine-tuned weights averaged into one model (a uniform model soup)",
}


def low_resolution(rate: float = 0.5, low: int = 64, high: int = 160, seed: int | None = None):
    """A layer that shrinks `rate` of a batch's images to one random side in `low..high` px and enlarges them back."""
    import keras
    import tensorflow as tf

    class RandomLowResolution(keras.layers.Layer):
        def call(self, images, training=True):
            if not training:
                return images
            shape = tf.shape(images)
            side = tf.random.uniform((), low, high + 1, dtype=tf.int32, seed=seed)
            small = tf.image.resize(images, tf.stack([side, side]), method="bilinear", antialias=True)
            back = tf.image.resize(small, shape[1:3], method="bilinear")
            chosen = (
                tf.random.uniform(tf.stack([shape[0], 1, 1, 1]), seed=None if seed is None else seed + 1)
                < rate
            )
            return tf.where(chosen, back, images)

        def get_config(self):
            return {**super().get_config(), "rate": rate, "low": low, "high": high}

    return RandomLowResolution(name="random_low_resolution")


def build(name: str, seed: int | None):
    import keras

    def s(offset: int) -> int | None:
        return None if seed is None else seed + offset

    layers = [
        keras.layers.RandomFlip("horizontal", seed=s(0)),
        keras.layers.RandomRotation(0.1, fill_mode="reflect", seed=s(1)),
    ]
    # Zoom in up to 20 % (the default), 50 % for `crop`; the zoom-out recipes also zoom out up to 60 %.
    zoom = (-0.5, 0.0) if name == "crop" else (-0.2, 0.6) if name.startswith("zoom-out") else (-0.2, 0.0)
    layers.append(keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=s(2)))
    if "colour" in name:
        layers.append(
            keras.layers.RandomColorJitter(
                value_range=(0, 255),
                brightness_factor=0.2,
                contrast_factor=0.2,
                saturation_factor=(0.3, 0.7),
                hue_factor=0.03,
                seed=s(3),
            )
        )
    if "blur" in name:
        layers.append(
            keras.layers.RandomGaussianBlur(
                factor=0.5, kernel_size=7, sigma=(0.1, 2.0), value_range=(0, 255), seed=s(4)
            )
        )
    if name == "lowres":
        layers.append(low_resolution(seed=s(5)))
    if name == "erase":
        layers.append(keras.layers.RandomErasing(factor=(0.5, 0.5), value_range=(0, 255), seed=s(6)))
    return keras.Sequential(layers, name="augment")


def cutmix_views(rate: float = 0.5, num_classes: int = 102):
    """A `train.CachedViews` whose training batches get CutMix on the maps, with one-hot labels.

    For `rate` of a batch's maps a box of the map's area times u (u uniform) is copied
    from another map of the batch (a random pairing), and the label becomes
    (1 - share) * own + share * other, the share being the box's cells over the map's.
    Validation batches are unmixed, with one-hot labels too (the loss must take both).
    """
    from flowerlib import train

    class CutMixViews(train.CachedViews):
        def __getitem__(self, index):
            maps, labels = super().__getitem__(index)
            own = np.eye(num_classes, dtype="float32")[labels]
            if not self.training:
                return maps, own
            source, maps, onehot, n, (h, w) = maps, maps.copy(), own.copy(), len(maps), maps.shape[1:3]
            partner = self._rng.permutation(n)
            for i in np.flatnonzero(self._rng.random(n) < rate):
                cut = np.sqrt(self._rng.random())  # the box's side over the map's: area u
                bh, bw = max(1, round(h * cut)), max(1, round(w * cut))
                y, x = self._rng.integers(0, h - bh + 1), self._rng.integers(0, w - bw + 1)
                j = partner[i]
                maps[i, y : y + bh, x : x + bw] = source[j, y : y + bh, x : x + bw]
                share = bh * bw / (h * w)
                onehot[i] = (1 - share) * own[i] + share * own[j]
            return maps, onehot

    return CutMixViews


def use(name: str) -> None:
    """Make `flowerlib` train with recipe `name` (its callers look these names up at call time)."""
    if name not in RECIPES:
        raise SystemExit(f"--recipe must be one of {sorted(RECIPES)}. Received {name!r}")
    from flowerlib import pipeline

    if name in ("cutmix", "soup"):
        use_cutmix() if name == "cutmix" else use_soup()
        return
    pipeline.augmenter = lambda seed=None: build(name, seed)


def use_cutmix() -> None:
    """Fine-tune on `cutmix_views` batches, compiled with a categorical loss and metrics for one-hot labels."""
    import keras

    from flowerlib import model, train

    train.CachedViews = cutmix_views()
    compile_for_phase = model.compile_for_phase

    def compile_one_hot(tuned, phase, cfg, **kwargs):
        tuned = compile_for_phase(tuned, phase, cfg, **kwargs)
        if phase == "fine_tune":
            tuned.compile(
                optimizer=tuned.optimizer,
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                metrics=[
                    keras.metrics.CategoricalAccuracy(name="accuracy"),
                    keras.metrics.TopKCategoricalAccuracy(5, name="top5"),
                ],
                jit_compile=False,
            )
        return tuned

    model.compile_for_phase = compile_one_hot


def use_soup(members: int = 3) -> None:
    """Replace the fine-tuning phase by `members` fine-tunings from the same start, their weights averaged.

    Each member is an ordinary `fit` with a fresh optimizer and early stopping on the
    validation loss; member k draws its views and order with seed `cfg.seed + k`
    (member 0 as the default does). The averaged model's validation loss stands for the
    phase's history, so `keep_better` still compares it with the head phase.
    """
    import types

    import keras
    import pandas as pd

    from flowerlib import model, train

    fit_phase = train.fit_phase

    def soup_phase(tuned, run, phase, train_data, val_data, **kwargs):
        if phase != "fine_tune":
            return fit_phase(tuned, run, phase, train_data, val_data, **kwargs)
        start, members_weights = tuned.get_weights(), []
        for k in range(members):
            tuned.set_weights(start)
            model.compile_for_phase(tuned, "fine_tune", run.cfg, steps_per_epoch=run.steps_per_epoch)
            train_data._rng = np.random.default_rng(run.cfg.seed + k)
            train_data.on_epoch_end()
            stop = keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=run.cfg.patience, restore_best_weights=True
            )
            history = tuned.fit(
                train_data, validation_data=val_data, epochs=kwargs["epochs"], callbacks=[stop], verbose=2
            )
            members_weights.append(tuned.get_weights())
            print(f"Soup member {k}: validation loss {min(history.history['val_loss']):.4f}")
        tuned.set_weights(
            [
                np.mean(ws, axis=0).astype(ws[0].dtype) if np.issubdtype(ws[0].dtype, np.floating) else ws[-1]
                for ws in zip(*members_weights, strict=True)
            ]
        )
        loss = tuned.evaluate(val_data, verbose=0, return_dict=True)["loss"]
        print(f"The soup of {members}: validation loss {loss:.4f}")
        return types.SimpleNamespace(outcome="fresh", history=pd.DataFrame({"val_loss": [loss]}))

    train.fit_phase = soup_phase
