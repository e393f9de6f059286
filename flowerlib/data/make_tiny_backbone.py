"""Pretrain the `tiny` backbone on other synthetic classes: the smoke profile's "ImageNet".

The smoke profile should be a miniature of the real run, where ResNet50 arrives
with features learnt on other images (ImageNet) and only the head and the last
stage adapt to the flowers. This script gives `tiny` such a past: it trains the
backbone, with a temporary pooling + softmax head (in training mode, an ordinary
Keras `fit`), on 138 other synthetic classes, then saves only the backbone's
weights as `tiny_backbone.weights.h5` next to this file. Re-create them with::

    python flowerlib/data/make_tiny_backbone.py

A pretraining class is a flower *form* (centre colour, petal count, petal
shape: `pretraining_forms`) whose petals come in any colour, like a species
with many colour varieties; the smoke classes 0..9 (each one form in one petal
colour) are left out. So the features know petals, centres and colours in
general, as ImageNet's know textures and parts, but were never trained to tell
the smoke classes apart: the head phase on the smoke data ends near, not at,
100 % validation accuracy, and fine-tuning the last stage has something to add.

Everything is seeded, the images are JPEG-compressed like the synthetic
dataset's, and the run takes a minute or two on a 2-core CPU. It prints the
accuracy on held-out images of the pretraining classes (low, about 0.2 of
138 classes: 7 and 8 petals are hard to tell apart at 64 px; the features
transfer all the same).
"""

from __future__ import annotations

import colorsys
import io
import itertools
import time
from pathlib import Path

import numpy as np
from PIL import Image

IMAGES_PER_CLASS = 30
HELD_OUT_PER_CLASS = 6
IMAGE_SIZE = 64  # the smoke profile's image size
EPOCHS = 12
BATCH_SIZE = 32
LEARNING_RATE = 2e-3
SEED = 2024  # images are drawn from [SEED, class, k]: never an image of the smoke dataset
JPEG_QUALITY = 90  # as `flowerlib.synthetic` writes its images
SMOKE_CLASSES = 10  # the smoke profile's classes 0..9, whose forms pretraining leaves out
OUTPUT = Path(__file__).with_name("tiny_backbone.weights.h5")


def pretraining_forms(smoke_classes: int = SMOKE_CLASSES) -> list[tuple[tuple[int, int, int], int, str]]:
    """The pretraining classes: every (centre colour, petal count, petal shape) no smoke class has.

    A pretraining class is a *form*; its petals come in any colour (see
    `draw_images`), like a species with many colour varieties. So the
    backbone learns shapes, counts and colours in general, but never the
    smoke classes themselves (whose petal colour is what sets them apart).

    Args:
        smoke_classes: the synthetic classes 0..smoke_classes-1 to leave out.

    Returns:
        `(centre_colour, petal_count, petal_shape)` tuples, in a fixed order.
    """
    from flowerlib.synthetic import CENTRE_COLOURS, PETAL_COUNTS, PETAL_SHAPES, class_traits

    smoke = {(t.centre_colour, t.petal_count, t.petal_shape) for t in map(class_traits, range(smoke_classes))}
    forms = itertools.product(CENTRE_COLOURS, PETAL_COUNTS, PETAL_SHAPES)
    return [form for form in forms if form not in smoke]


def random_petal_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A petal colour of any hue, fairly saturated and bright."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(0.35, 1.0), rng.uniform(0.45, 1.0))
    return tuple(int(round(255 * c)) for c in rgb)


def draw_images(
    forms: list[tuple[tuple[int, int, int], int, str]], images_per_class: int, image_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw `images_per_class` JPEG-compressed flowers of every form, each with a random petal colour.

    Args:
        forms: `(centre_colour, petal_count, petal_shape)` of each class.
        images_per_class: images drawn per class.
        image_size: side of the square images, in pixels.
        seed: base seed; image `k` of class `c` uses `[seed, c, k]`.

    Returns:
        `(images, targets)`: uint8 `[N, S, S, 3]` and int32 `[N]`, the index of each image's form.
    """
    from flowerlib.synthetic import FlowerTraits, draw_flower

    images, targets = [], []
    for target, (centre, count, shape) in enumerate(forms):
        for k in range(images_per_class):
            rng = np.random.default_rng([seed, target, k])
            traits = FlowerTraits(random_petal_colour(rng), centre, count, shape)
            image = draw_flower(traits, image_size, rng)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
            images.append(np.asarray(Image.open(buffer).convert("RGB")))
            targets.append(target)
    return np.stack(images), np.asarray(targets, dtype=np.int32)


def split_held_out(targets: np.ndarray, held_out_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training images and of `held_out_per_class` held-out images per class.

    Raises:
        ValueError: a class has no more than `held_out_per_class` images.
    """
    rng = np.random.default_rng(seed)
    train, held_out = [], []
    for c in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == c))
        if members.size <= held_out_per_class:
            raise ValueError(
                f"Class {c} has {members.size} images; holding out {held_out_per_class} leaves none "
                f"to train on. Received held_out_per_class={held_out_per_class}"
            )
        held_out.append(members[:held_out_per_class])
        train.append(members[held_out_per_class:])
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(held_out))


def pretraining_model(num_classes: int, image_size: int, seed: int):
    """`tiny` with a temporary head: raw RGB -> preprocess -> backbone -> pool -> softmax.

    The backbone runs in training mode (ordinary Keras `fit`: BatchNorm learns
    its statistics), as ImageNet pretraining did for the real backbones.

    Returns:
        `(model, backbone)`: the compiled classifier and its nested backbone.
    """
    import keras

    from flowerlib.backbones import get_backbone
    from flowerlib.model import Preprocess

    spec = get_backbone("tiny")
    keras.utils.set_random_seed(seed)
    backbone = spec.build(image_size, None)
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.RandomFlip("horizontal", seed=seed)(inputs)
    x = Preprocess(spec.preprocess, name="preprocess")(x)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="pretrain_predictions")(x)
    model = keras.Model(inputs, outputs, name="tiny_pretraining")
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model, backbone


def pretrain(output: Path = OUTPUT, *, epochs: int = EPOCHS, seed: int = SEED) -> float:
    """Pretrain `tiny` on `PRETRAIN_LABELS` and save its backbone weights to `output`.

    Args:
        output: the weights file to write (must end in `.weights.h5`).
        epochs: passes over the training images.
        seed: seed of the images, the held-out choice, the initial weights and the shuffling.

    Returns:
        The accuracy on the held-out images of the pretraining classes.
    """
    import keras

    start = time.perf_counter()
    forms = pretraining_forms()
    images, targets = draw_images(forms, IMAGES_PER_CLASS, IMAGE_SIZE, seed)
    train, held_out = split_held_out(targets, HELD_OUT_PER_CLASS, seed)
    print(
        f"Drew {len(images)} images of {len(forms)} synthetic flower forms ({IMAGE_SIZE} px, "
        f"petals of random colour; none is a smoke class): {len(train)} to train on, "
        f"{len(held_out)} held out."
    )
    model, backbone = pretraining_model(len(forms), IMAGE_SIZE, seed)
    model.fit(
        images[train].astype("float32"),
        targets[train],
        batch_size=BATCH_SIZE,
        epochs=epochs,
        validation_data=(images[held_out].astype("float32"), targets[held_out]),
        verbose=2,
    )
    _, accuracy = model.evaluate(images[held_out].astype("float32"), targets[held_out], verbose=0)
    backbone.save_weights(output)
    print(
        f"Pretrained tiny for {epochs} epochs in {time.perf_counter() - start:.0f} s: held-out accuracy "
        f"{accuracy:.3f} (chance {1 / len(forms):.3f}). Saved the backbone's weights "
        f"({sum(int(np.prod(w.shape)) for w in backbone.weights):,} values, "
        f"{output.stat().st_size / 1024:.0f} kB) to {output}."
    )
    keras.backend.clear_session()
    return float(accuracy)


if __name__ == "__main__":
    pretrain()
