"""Augmentation recipes to compare (issue 12): `use(name)` makes `pipeline.augmenter` build that one.

The cache keys include the augmenter's configuration, so each recipe extracts
its own views; `--recipe` in `unlike_accuracy.py` and `real_accuracy.py` picks one.
"""

from __future__ import annotations

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


def use(name: str) -> None:
    """Make `flowerlib.pipeline.augmenter` build recipe `name` (all callers look it up at call time)."""
    if name not in RECIPES:
        raise SystemExit(f"--recipe must be one of {sorted(RECIPES)}. Received {name!r}")
    from flowerlib import pipeline

    pipeline.augmenter = lambda seed=None: build(name, seed)
