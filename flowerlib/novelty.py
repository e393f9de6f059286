"""Does a photo look like the training photos? A warning by distance in feature space.

A classifier always names one of its classes, even for a photo of a cat, a
bouquet seen from across the room, or a blurred thumbnail. Its probability does
not say "I have never seen anything like this": it only compares classes. The
pooled backbone features do: photos like the training photos lie close to one
of them, photos unlike them lie far from all of them.

The test (Sun et al., 2022, "Out-of-distribution detection with deep nearest
neighbors"): the cosine distance from a photo's features to the *nearest*
training photo's features. The threshold is a quantile (`QUANTILE`, 95 %) of
the same distance for the validation photos, which the model did not train on:
about 1 validation photo in 20 is called unfamiliar, by construction.

    ref = fit_reference(train_features, val_features)     # training does this
    save_reference(ref, run.reference)                    # runs/<run>/reference.npz
    ref.familiar(features_of_new_photos)                   # True / False per photo

Measured with `benchmarks/unlike_accuracy.py` (`benchmarks/RESULTS.md`, "Unlike the
dataset's"), MobileNetV2: all of 40 pictures with no flower and about 60 % of the
"unlike" pictures are called unfamiliar, against 5 % of the validation photos.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowerlib.artifacts import atomic_path
from flowerlib.errors import FlowerlibError

#: Share of the validation photos that count as familiar (sets the threshold).
QUANTILE = 0.95
#: Format version of `reference.npz` (a change of meaning gets a new number).
FORMAT = 1


class NoveltyError(FlowerlibError, ValueError):
    """A reference file or feature array cannot be used."""


def _unit(features: np.ndarray, what: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise NoveltyError(
            f"{what} must be a non-empty 2-D array [photos, features]. Received shape {features.shape}"
        )
    if not np.all(np.isfinite(features)):
        raise NoveltyError(f"{what} contain NaN or infinite values; the model that made them is broken.")
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class Reference:
    """The training photos' features and the distance beyond which a photo is unfamiliar.

    Attributes:
        features: `[N, D]` float16, unit-length features of the training photos.
        threshold: cosine distance to the nearest training photo above which a
            photo is unfamiliar.
        quantile: the share of the validation photos within `threshold`.
    """

    features: np.ndarray
    threshold: float
    quantile: float

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Cosine distance (0..2) from each row of `features` `[M, D]` to its nearest training photo."""
        x = _unit(features, "The features")
        if x.shape[1] != self.features.shape[1]:
            raise NoveltyError(
                f"The features have {x.shape[1]} values per photo, the reference {self.features.shape[1]}: "
                "the reference belongs to another model. Use the reference.npz saved with this model."
            )
        reference = self.features.astype(np.float32)
        nearest = np.concatenate([(x[i : i + 256] @ reference.T).max(axis=1) for i in range(0, len(x), 256)])
        return (1.0 - nearest).astype(np.float64)

    def familiar(self, features: np.ndarray) -> np.ndarray:
        """True for each photo whose features lie within `threshold` of a training photo."""
        return self.within(self.distance(features))

    def within(self, distance: np.ndarray) -> np.ndarray:
        """True for each of `distance`'s values (from `distance`) within `threshold`: `familiar`
        for photos whose distances are already known."""
        return np.asarray(distance) <= self.threshold


def fit_reference(
    train_features: np.ndarray, val_features: np.ndarray, quantile: float = QUANTILE
) -> Reference:
    """The reference of a trained model: its training features, the threshold from its validation features.

    Args:
        train_features: `[N, D]` pooled features of the training photos (one view each).
        val_features: `[M, D]` pooled features of held-out photos of the same classes.
        quantile: share of the held-out photos to count as familiar (0.5..1).

    Raises:
        NoveltyError: empty, non-finite or mismatched arrays, or `quantile` out of range.
    """
    if not 0.5 <= float(quantile) <= 1.0:
        raise NoveltyError(f"quantile must lie in 0.5..1. Received quantile={quantile!r}")
    features = _unit(train_features, "The training features").astype(np.float16)
    partial = Reference(features, threshold=np.inf, quantile=float(quantile))
    threshold = float(np.quantile(partial.distance(val_features), quantile))
    return Reference(features, threshold=threshold, quantile=float(quantile))


def save_reference(reference: Reference, path: str | os.PathLike) -> Path:
    """Write `reference` to `path` (`.npz`), atomically: an interrupted write leaves the old file."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            features=reference.features,
            threshold=np.float64(reference.threshold),
            quantile=np.float64(reference.quantile),
            format=np.int64(FORMAT),
        )
    return path


def load_reference(path: str | os.PathLike) -> Reference:
    """Read a `reference.npz` written by `save_reference`.

    Raises:
        FileNotFoundError: there is no file at `path`.
        NoveltyError: the file is broken or of another format (the message says what to do).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No reference file at {path}. Training writes it beside model.keras: run `flowerlib train` "
            "(or notebook 03) again with the same settings; a finished run gets its reference without retraining."
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            version = int(data["format"])
            features = np.asarray(data["features"])
            threshold, quantile = float(data["threshold"]), float(data["quantile"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise NoveltyError(
            f"{path} is not a readable reference file ({type(e).__name__}: {e}). Delete it and train again."
        ) from None
    if version != FORMAT:
        raise NoveltyError(
            f"{path} has format {version}, this flowerlib reads {FORMAT}. Train again to rewrite it."
        )
    if features.ndim != 2 or features.shape[0] == 0 or not np.isfinite(threshold):
        raise NoveltyError(f"{path} holds no usable features or threshold. Delete it and train again.")
    return Reference(features.astype(np.float16), threshold=threshold, quantile=quantile)
