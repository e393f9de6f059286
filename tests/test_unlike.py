"""flowerlib.unlike: each transformation does what it says, repeats for a seed, and the set never uses test images."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from flowerlib import splits, unlike
from flowerlib.artifacts import Layout

RED, BLUE, BLACK = (220, 30, 40), (40, 80, 220), (0, 0, 0)


def _flat(h, w, colour):
    return np.broadcast_to(np.asarray(colour, np.uint8), (h, w, 3)).copy()


def _noise(h, w, seed=0):
    """A photo with detail at every scale: a gradient plus pixel noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 160, w)[None, :, None] + np.linspace(0, 60, h)[:, None, None]
    return np.clip(ramp + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


def _apply(kind, rng, image=None):
    image = _noise(96, 128) if image is None else image
    background = _noise(160, 160, seed=1)
    if kind == "zoom_out":
        return unlike.zoom_out(image, background, rng)
    if kind == "small_off_centre":
        return unlike.small_off_centre(image, background, rng)
    if kind == "field":
        return unlike.field([image, _noise(80, 80, seed=2), _noise(120, 90, seed=3)], rng, size=150)
    if kind == "low_quality":
        return unlike.low_quality(_noise(256, 200), rng)
    return unlike.occlude(image, rng)


EXPECTED_SHAPE = {
    "zoom_out": (160, 160, 3),
    "small_off_centre": (160, 160, 3),
    "field": (150, 150, 3),
    "low_quality": (256, 200, 3),
    "occlude": (96, 128, 3),
}


@pytest.mark.parametrize("kind", unlike.KINDS)
def test_every_kind_returns_uint8_rgb_of_the_documented_shape(kind):
    out = _apply(kind, 0)
    assert out.dtype == np.uint8 and out.shape == EXPECTED_SHAPE[kind]


@pytest.mark.parametrize("kind", unlike.KINDS)
def test_same_seed_same_picture_other_seed_another(kind):
    first = _apply(kind, np.random.default_rng(7))
    assert np.array_equal(first, _apply(kind, np.random.default_rng(7)))
    assert np.array_equal(first, _apply(kind, 7)), "an int seed means default_rng(seed)"
    assert not np.array_equal(first, _apply(kind, 8))


def test_inputs_are_not_modified():
    image, background = _noise(96, 128), _noise(160, 160, seed=1)
    before = (image.copy(), background.copy())
    unlike.zoom_out(image, background, 0)
    unlike.small_off_centre(image, background, 0)
    unlike.occlude(image, 0)
    assert np.array_equal(image, before[0]) and np.array_equal(background, before[1])


@pytest.mark.parametrize("feather", [0.0, 0.08])
def test_zoom_out_pastes_the_whole_photo_at_the_drawn_scale(feather):
    photo, background = _flat(100, 150, RED), _flat(400, 400, BLACK)
    sides = []
    for seed in range(20):
        out = unlike.zoom_out(photo, background, seed, feather=feather)
        top, bottom, left, right = _bbox(out.any(axis=2))
        h, w = bottom - top, right - left
        assert 0.35 * 400 - 1 <= w <= 0.6 * 400 + 1, "the longer side is 35-60 % of the background"
        assert abs(w / h - 1.5) < 0.05, "aspect ratio kept"
        core = out[top + h // 4 : bottom - h // 4, left + w // 4 : right - w // 4]
        assert (core == RED).all(), "the photo itself, not a blend, inside"
        assert not out[:top].any() and not out[bottom:].any(), "background untouched elsewhere"
        sides.append((w, top, left))
    assert len(set(sides)) == 20, "scale and position are drawn"


def test_small_off_centre_is_small_and_never_overlaps_the_middle_third():
    photo, background = _flat(120, 120, RED), _flat(300, 300, BLACK)
    places = set()
    for seed in range(40):
        out = unlike.small_off_centre(photo, background, seed)
        top, bottom, left, right = _bbox(out.any(axis=2))
        assert 0.15 * 300 - 1 <= bottom - top <= 0.30 * 300 + 1
        overlaps_rows = top < 200 and bottom > 100
        overlaps_cols = left < 200 and right > 100
        assert not (overlaps_rows and overlaps_cols), (seed, top, bottom, left, right)
        places.add((top < 150, left < 150))
    assert len(places) == 4, "it goes to every quadrant over seeds"


def test_small_off_centre_refuses_a_scale_that_cannot_avoid_the_centre():
    with pytest.raises(ValueError, match="scale"):
        unlike.small_off_centre(_flat(10, 10, RED), _flat(90, 90, BLACK), 0, scale=(0.3, 0.5))


def test_field_tiles_every_distinct_photo_of_the_list():
    colours = [RED, BLUE, (30, 200, 40), (240, 220, 30)]
    photos = [_flat(60 + 10 * i, 80, c) for i, c in enumerate(colours)]
    out = unlike.field(photos, 0, grid=(2, 2), size=100)
    assert out.shape == (100, 100, 3)
    for colour in colours:
        share = np.all(out == colour, axis=2).mean()
        assert 0.2 <= share <= 0.3, (colour, share)
    # More cells than photos: every photo still appears before any repeats.
    out = unlike.field(photos, 1, grid=(3, 3), size=90)
    shares = [np.all(out == c, axis=2).mean() for c in colours]
    assert all(s >= 1 / 9 - 0.02 for s in shares) and abs(sum(shares) - 1) < 1e-9


def test_field_default_grid_holds_every_photo():
    photos = [_flat(50, 50, c) for c in (RED, BLUE, (30, 200, 40), (240, 220, 30), (250, 250, 250), BLACK)]
    out = unlike.field(photos, 3)  # 6 photos -> 2 x 3, size = first photo's side
    assert out.shape == (50, 50, 3)
    assert all(np.all(out == np.asarray(p[0, 0]), axis=2).any() for p in photos)


def _blockiness(image):
    """Mean luminance step across 8x8 JPEG block borders over the mean step elsewhere."""
    y = image.astype(np.float64) @ [0.299, 0.587, 0.114]
    ratios = []
    for d in (np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0)).T):
        border = (np.arange(d.shape[1]) % 8) == 7
        ratios.append(d[:, border].mean() / d[:, ~border].mean())
    return float(np.mean(ratios))


def _png_bytes(image):
    """Lossless size: how much information a picture still holds."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return len(buffer.getvalue())


def test_low_quality_shrinks_to_a_thumbnail_and_compresses_it_heavily():
    photo = _noise(300, 240)
    for seed in range(5):
        thumb = unlike.low_quality(photo, seed, upsample=False)
        assert 64 <= max(thumb.shape[:2]) <= 120
        assert abs(thumb.shape[0] / thumb.shape[1] - 300 / 240) < 0.05
        assert _blockiness(thumb) > 1.4, "8x8 JPEG blocks show"
        # Quality 10-30 throws away far more than quality 90 would at the same size.
        clean = np.asarray(Image.fromarray(photo).resize(thumb.shape[1::-1], Image.Resampling.BICUBIC))
        assert _blockiness(clean) < 1.1, "the measure sees no blocks without JPEG"
        assert _png_bytes(thumb) < 0.5 * _png_bytes(unlike.jpeg_roundtrip(clean, 90))


def test_low_quality_upsampled_back_has_only_thumbnail_detail():
    photo = _noise(256, 256)
    out = unlike.low_quality(photo, 0)
    assert out.shape == photo.shape

    def detail_lost_at_120(image):
        small = Image.fromarray(image).resize((120, 120), Image.Resampling.BICUBIC)
        back = np.asarray(small.resize((256, 256), Image.Resampling.BILINEAR)).astype(float)
        return np.abs(back - image).mean()

    assert detail_lost_at_120(out) < 0.3 * detail_lost_at_120(photo)


def test_low_quality_never_enlarges_a_small_photo():
    thumb = unlike.low_quality(_noise(40, 50), 0, upsample=False)
    assert thumb.shape == (40, 50, 3)


def test_occlude_covers_the_drawn_fraction_with_one_rectangle_from_an_edge():
    photo = _flat(90, 120, BLUE)
    fractions, edges = [], set()
    for seed in range(40):
        out = unlike.occlude(photo, seed)
        covered = ~np.all(out == BLUE, axis=2)
        top, bottom, left, right = _bbox(covered)
        assert covered.sum() == (bottom - top) * (right - left), "one filled rectangle"
        colour = tuple(int(v) for v in out[top, left])
        assert colour in unlike.OCCLUDER_COLOURS and np.all(out[covered] == colour)
        touching = [top == 0, bottom == 90, left == 0, right == 120]
        assert any(touching), "it enters from an edge"
        edges.add(touching.index(True))
        fraction = covered.mean()
        assert 0.25 - 0.01 <= fraction <= 0.45 + 0.01, (seed, fraction)
        fractions.append(fraction)
    assert max(fractions) - min(fractions) > 0.1, "the fraction is drawn"
    assert edges == {0, 1, 2, 3}
    exact = unlike.occlude(photo, 0, fraction=(0.3, 0.3))
    assert abs((~np.all(exact == BLUE, axis=2)).mean() - 0.3) < 0.01


def test_background_is_the_blurred_greenest_corner():
    photo = _flat(150, 150, RED)
    photo[100:, :50] = (30, 160, 40)  # bottom-left corner: leaves
    background = unlike.background_from(photo, 120, 0)
    assert background.shape == (120, 120, 3) and background.dtype == np.uint8
    mean = background.reshape(-1, 3).mean(axis=0)
    assert mean[1] > 120 and mean[0] < 60, "the green corner, not the red flower"
    detail = _noise(150, 150)
    blurred = unlike.background_from(detail, 120, 0).astype(float)
    assert np.abs(np.diff(blurred, axis=1)).mean() < 1.0, "heavily blurred"


@pytest.mark.parametrize(
    "call",
    [
        lambda: unlike.occlude(np.zeros((8, 8, 3), np.float32), 0),
        lambda: unlike.occlude(np.zeros((8, 8), np.uint8), 0),
        lambda: unlike.occlude(_flat(8, 8, RED), 0, fraction=(0.5, 0.2)),
        lambda: unlike.zoom_out(_flat(8, 8, RED), _flat(20, 20, BLACK), 0, scale=(0.5, 1.5)),
        lambda: unlike.low_quality(_flat(8, 8, RED), 0, quality=(0, 30)),
        lambda: unlike.field([], 0),
        lambda: unlike.occlude(_flat(8, 8, RED), None),
    ],
)
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


# --- the benchmark set on a synthetic dataset ---------------------------------------------------


@pytest.fixture(scope="module")
def table(synthetic_root):
    return splits.official_split(Layout(synthetic_root))


@pytest.fixture(scope="module")
def val(table):
    return table[table["split"] == "val"]


@pytest.fixture(scope="module")
def unlike_set(synthetic_root, val):
    return unlike.make_unlike_set(val, synthetic_root, seed=0, per_kind=10, size=48)


def test_set_has_per_kind_pictures_balanced_over_classes(unlike_set, val):
    assert list(unlike_set.columns) == list(unlike.RECORD_COLUMNS)
    assert unlike_set["kind"].tolist() == [k for k in unlike.KINDS for _ in range(10)]
    for image in unlike_set["image"]:
        assert image.dtype == np.uint8 and image.shape == (48, 48, 3)
    for _, part in unlike_set.groupby("kind"):
        assert sorted(part["label"]) == list(range(10)), "10 pictures of 10 classes: one each"
    label_of = dict(zip(val["file"], val["label"], strict=True))
    name_of = dict(zip(val["file"], val["class_name"], strict=True))
    for row in unlike_set.itertuples():
        assert all(label_of[f] == row.label for f in row.sources), "sources are val images of its class"
        assert name_of[row.sources[0]] == row.class_name
        if row.kind in unlike.BACKGROUND_KINDS:
            assert label_of[row.background] != row.label, "the background comes from another class"
        else:
            assert row.background == ""


def test_field_pictures_use_several_distinct_photos_of_one_class(unlike_set):
    fields = unlike_set[unlike_set["kind"] == "field"]
    for sources in fields["sources"]:
        assert len(sources) == len(set(sources)) == 3, "every val image of the class (3 here), no repeats"


def test_single_photo_kinds_use_every_photo_once_before_reusing(synthetic_root, val):
    records = unlike.make_unlike_set(val, synthetic_root, seed=1, per_kind=30, kinds=["occlude"], size=32)
    assert sorted(f for s in records["sources"] for f in s) == sorted(val["file"])


def test_set_repeats_for_a_seed_and_kinds_are_independent(synthetic_root, val, unlike_set):
    again = unlike.make_unlike_set(val, synthetic_root, seed=0, per_kind=10, size=48)
    assert all(np.array_equal(a, b) for a, b in zip(unlike_set["image"], again["image"], strict=True))
    assert unlike_set.drop(columns="image").equals(again.drop(columns="image"))
    other = unlike.make_unlike_set(val, synthetic_root, seed=1, per_kind=10, size=48)
    assert not all(np.array_equal(a, b) for a, b in zip(unlike_set["image"], other["image"], strict=True))
    # Leaving kinds out changes nothing in the others.
    alone = unlike.make_unlike_set(val, synthetic_root, seed=0, per_kind=10, kinds=["occlude"], size=48)
    part = unlike_set[unlike_set["kind"] == "occlude"]
    assert all(np.array_equal(a, b) for a, b in zip(part["image"], alone["image"], strict=True))


def test_test_images_are_refused(synthetic_root, table):
    with pytest.raises(ValueError, match="test images"):
        unlike.make_unlike_set(table, synthetic_root, seed=0, per_kind=1)
    one_test_row = table[table["split"] == "test"].head(1).to_dict("records")
    with pytest.raises(ValueError, match="validation images only"):
        unlike.make_unlike_set(one_test_row, synthetic_root, seed=0, per_kind=1)


def test_set_arguments_are_checked(synthetic_root, val):
    with pytest.raises(ValueError, match="kinds"):
        unlike.make_unlike_set(val, synthetic_root, seed=0, kinds=["blur"])
    with pytest.raises(ValueError, match="columns"):
        unlike.make_unlike_set(val.drop(columns="label"), synthetic_root, seed=0)
    with pytest.raises(ValueError, match="another class"):
        one_class = val[val["label"] == 0]
        unlike.make_unlike_set(one_class, synthetic_root, seed=0, kinds=["zoom_out"])


def test_save_writes_the_jpegs_and_index_it_lists(unlike_set, tmp_path):
    folder = unlike.save_unlike_set(unlike_set, tmp_path / "unlike")
    index = (folder / unlike.INDEX_NAME).read_text().splitlines()
    assert index[0] == "file,label,class_name,kind,sources,background"
    files = sorted(p.relative_to(folder).as_posix() for p in (folder / "images").iterdir())
    assert len(files) == len(unlike_set) == len(index) - 1
    loaded = unlike.load_unlike_set(folder)
    assert sorted(loaded["file"]) == files
    for column in ("label", "class_name", "kind", "sources", "background"):
        assert loaded[column].tolist() == unlike_set[column].tolist(), column
    with Image.open(folder / loaded["file"][0]) as image:
        assert image.format == "JPEG" and image.size == (48, 48)
    for saved, made in zip(loaded["image"], unlike_set["image"], strict=True):
        assert np.abs(saved.astype(float) - made).mean() < 3, "quality 95: close to what was made"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unlike"], "no temporary folder left behind"


def test_save_replaces_a_previous_set_but_not_another_folder(unlike_set, tmp_path):
    folder = tmp_path / "unlike"
    unlike.save_unlike_set(unlike_set, folder)
    unlike.save_unlike_set(unlike_set.head(3), folder)
    assert len(list((folder / "images").iterdir())) == 3
    assert len(unlike.load_unlike_set(folder)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unlike"]
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "mine.jpg").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="holds no unlike set"):
        unlike.save_unlike_set(unlike_set, foreign)
    assert [p.name for p in foreign.iterdir()] == ["mine.jpg"]


def test_a_failed_save_leaves_the_previous_set(unlike_set, tmp_path):
    folder = unlike.save_unlike_set(unlike_set.head(2), tmp_path / "unlike")
    broken = unlike_set.head(4).copy()
    broken.at[3, "image"] = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="uint8 RGB"):
        unlike.save_unlike_set(broken, folder)
    assert len(unlike.load_unlike_set(folder)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unlike"]


def test_importing_the_module_imports_no_tensorflow():
    code = (
        "import sys, flowerlib.unlike; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
