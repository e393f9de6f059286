"""novelty: the distance to the nearest training photo, the threshold from held-out photos, the file."""

from __future__ import annotations

import numpy as np
import pytest

from flowerlib import novelty
from flowerlib.novelty import NoveltyError, fit_reference, load_reference, save_reference


def _clusters(rng, n, centres, spread=0.05):
    picks = rng.integers(0, len(centres), n)
    return centres[picks] + spread * rng.normal(size=(n, centres.shape[1]))


def test_distance_is_the_cosine_distance_to_the_nearest_training_photo():
    train = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    ref = novelty.Reference(
        train / np.linalg.norm(train, axis=1, keepdims=True), threshold=0.5, quantile=0.95
    )
    d = ref.distance(np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(d, [0.0, 1.0, 1 - np.sqrt(0.5), 1.0], atol=1e-3)
    assert ref.familiar(np.array([[5.0, 0.1, 0.0], [0.0, 0.0, 1.0]])).tolist() == [True, False]
    assert ref.within(d).tolist() == [True, False, True, False]  # the same rule on distances known already


def test_the_threshold_lets_the_chosen_share_of_held_out_photos_through_and_stops_others():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16))
    ref = fit_reference(_clusters(rng, 200, centres), _clusters(rng, 400, centres), quantile=0.9)
    assert ref.quantile == 0.9 and ref.features.dtype == np.float16
    assert 0.85 <= ref.familiar(_clusters(rng, 1000, centres)).mean() <= 0.95
    assert ref.familiar(rng.normal(size=(200, 16))).mean() < 0.05  # far from every cluster


@pytest.mark.parametrize(
    ("train", "val", "quantile", "message"),
    [
        (np.zeros((0, 4)), np.ones((3, 4)), 0.95, "non-empty 2-D"),
        (np.ones(4), np.ones((3, 4)), 0.95, "non-empty 2-D"),
        (np.full((2, 4), np.nan), np.ones((3, 4)), 0.95, "NaN or infinite"),
        (np.ones((2, 4)), np.ones((3, 5)), 0.95, "belongs to another model"),
        (np.ones((2, 4)), np.ones((3, 4)), 0.2, "quantile must lie in 0.5..1"),
    ],
)
def test_bad_features_or_quantile_are_clear_errors(train, val, quantile, message):
    with pytest.raises(NoveltyError, match=message):
        fit_reference(train, val, quantile)


def test_the_reference_file_round_trips_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    ref = fit_reference(rng.normal(size=(30, 8)), rng.normal(size=(20, 8)))
    path = save_reference(ref, tmp_path / "reference.npz")
    back = load_reference(path)
    np.testing.assert_array_equal(back.features, ref.features)
    assert back.threshold == ref.threshold and back.quantile == ref.quantile
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        save_reference(fit_reference(rng.normal(size=(5, 8)), rng.normal(size=(5, 8))), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["reference.npz"], "no temporary file is left behind"


def test_a_missing_broken_or_foreign_reference_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="No reference file .* without retraining"):
        load_reference(tmp_path / "reference.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(NoveltyError, match="not a readable reference file.*train again"):
        load_reference(broken)
    other = tmp_path / "other.npz"
    np.savez(other, features=np.ones((2, 3), np.float16), threshold=0.3, quantile=0.95, format=99)
    with pytest.raises(NoveltyError, match="format 99"):
        load_reference(other)
