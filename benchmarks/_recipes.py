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
}


def build(name: str, seed: int | None):
    import keras

    def s(offset: int) -> int | None:
        return None if seed is None else seed + offset

    layers = [
        keras.layers.RandomFlip("horizontal", seed=s(0)),
        keras.layers.RandomRotation(0.1, fill_mode="reflect", seed=s(1)),
    ]
    zoom = {"crop": (-0.5, 0.0), "current": (-0.2, 0.0)}.get(name, (-0.2, 0.6))
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
    return keras.Sequential(layers, name="augment")


def use(name: str) -> None:
    """Make `flowerlib.pipeline.augmenter` build recipe `name` (all callers look it up at call time)."""
    if name not in RECIPES:
        raise SystemExit(f"--recipe must be one of {sorted(RECIPES)}. Received {name!r}")
    from flowerlib import pipeline

    pipeline.augmenter = lambda seed=None: build(name, seed)
