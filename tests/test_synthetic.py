"""flowerlib.synthetic: layout, determinism, labels/split consistency, learnable traits."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import scipy.io
from PIL import Image

from flowerlib import synthetic
from flowerlib.artifacts import Layout


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_matches_the_real_dataset(synthetic_root):
    layout = Layout(synthetic_root)
    names = sorted(p.name for p in layout.jpg_dir.iterdir())
    assert names == [f"image_{i:05d}.jpg" for i in range(1, 121)]
    with Image.open(layout.image_path(1)) as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (64, 64)
    labels = scipy.io.loadmat(layout.labels_mat)["labels"]
    assert labels.dtype == np.uint8 and labels.shape == (1, 120)
    setid = scipy.io.loadmat(layout.setid_mat)
    for key, count in (("trnid", 30), ("valid", 30), ("tstid", 60)):
        assert setid[key].dtype == np.uint16 and setid[key].shape == (1, count)


def test_labels_are_one_based_balanced_and_interleaved(synthetic_root):
    labels = scipy.io.loadmat(Layout(synthetic_root).labels_mat)["labels"].ravel()
    assert sorted(set(labels.tolist())) == list(range(1, 11))
    assert np.bincount(labels)[1:].tolist() == [12] * 10
    first_block = labels[:12]
    assert len(set(first_block.tolist())) > 1, "classes must be interleaved over the ids, not blocked"


def test_split_is_disjoint_complete_and_a_quarter_per_class(synthetic_root):
    layout = Layout(synthetic_root)
    labels = scipy.io.loadmat(layout.labels_mat)["labels"].ravel()
    setid = scipy.io.loadmat(layout.setid_mat)
    parts = {k: set(setid[k].ravel().tolist()) for k in ("trnid", "valid", "tstid")}
    assert not parts["trnid"] & parts["valid"]
    assert not parts["trnid"] & parts["tstid"]
    assert not parts["valid"] & parts["tstid"]
    assert parts["trnid"] | parts["valid"] | parts["tstid"] == set(range(1, 121))
    for key, per_class in (("trnid", 3), ("valid", 3), ("tstid", 6)):
        counts = np.bincount(labels[np.array(sorted(parts[key])) - 1], minlength=11)[1:]
        assert counts.tolist() == [per_class] * 10, key


def test_forty_per_class_splits_ten_ten_twenty(tmp_path):
    layout = synthetic.write_dataset(tmp_path, num_classes=2, images_per_class=40, image_size=16, seed=3)
    setid = scipy.io.loadmat(layout.setid_mat)
    assert [setid[k].size for k in ("trnid", "valid", "tstid")] == [20, 20, 40]


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    kwargs = dict(num_classes=3, images_per_class=4, image_size=32)
    a = synthetic.write_dataset(tmp_path / "a", seed=7, **kwargs)
    b = synthetic.write_dataset(tmp_path / "b", seed=7, **kwargs)
    c = synthetic.write_dataset(tmp_path / "c", seed=8, **kwargs)
    assert _files(a.root) == _files(b.root)
    assert _files(a.root) != _files(c.root)
    synthetic.make_archive(a.root, tmp_path / "a.tgz")
    synthetic.make_archive(b.root, tmp_path / "b.tgz")
    assert (tmp_path / "a.tgz").read_bytes() == (tmp_path / "b.tgz").read_bytes()


def test_regenerating_replaces_the_dataset_and_leaves_no_temporary_files(tmp_path):
    synthetic.write_dataset(tmp_path, num_classes=3, images_per_class=8, image_size=16, seed=0)
    synthetic.write_dataset(tmp_path, num_classes=2, images_per_class=4, image_size=16, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imagelabels.mat", "jpg", "setid.mat"]
    assert len(list((tmp_path / "jpg").iterdir())) == 8


def test_archive_holds_jpg_members_like_the_real_one(synthetic_root, tmp_path):
    archive = synthetic.make_archive(synthetic_root, tmp_path / "102flowers.tgz")
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
    files = sorted(m.name for m in members if m.isfile())
    assert files == [f"jpg/image_{i:05d}.jpg" for i in range(1, 121)]
    assert all(m.isfile() or (m.isdir() and m.name == "jpg") for m in members)


def test_distinct_classes_have_distinct_traits():
    traits = [synthetic.class_traits(i) for i in range(102)]
    assert len(set(traits)) == 102
    assert len({t.petal_colour for t in traits[:10]}) == 10, "the smoke profile's 10 classes differ by colour"
    assert len({t.petal_count for t in traits}) > 1 and len({t.petal_shape for t in traits}) > 1


def test_petal_colour_dominates_each_class(tmp_path):
    # The mean colour of the pixels closest to the class's petal colour tells classes apart.
    layout = synthetic.write_dataset(tmp_path, num_classes=10, images_per_class=4, image_size=64, seed=1)
    labels = scipy.io.loadmat(layout.labels_mat)["labels"].ravel() - 1
    palette = np.array(synthetic.PETAL_COLOURS, dtype=float)
    for image_id, label in enumerate(labels, start=1):
        pixels = np.asarray(Image.open(layout.image_path(image_id)), dtype=float).reshape(-1, 3)
        nearest = np.argmin(((pixels[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)
        close = np.min(((pixels[:, None, :] - palette[None]) ** 2).sum(-1), axis=1) < 40**2
        votes = np.bincount(nearest[close], minlength=len(palette))
        assert votes.argmax() == label, f"image {image_id}: petal colour of class {label} not dominant"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_classes=0, images_per_class=4), "num_classes"),
        (dict(num_classes=2, images_per_class=3), "images_per_class"),
        (dict(num_classes=2, images_per_class=4, image_size=8), "image_size"),
    ],
)
def test_bad_arguments_are_rejected_with_the_value(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic.write_dataset(tmp_path, **kwargs)


def test_make_archive_without_images_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="write_dataset"):
        synthetic.make_archive(tmp_path, tmp_path / "x.tgz")


def test_step1_plots_show_one_class_per_sample_and_every_class_count(synthetic_root):
    import matplotlib.pyplot as plt

    from flowerlib import class_names, plots

    labels = scipy.io.loadmat(Layout(synthetic_root).labels_mat)["labels"].ravel() - 1
    names = class_names(10)
    grid = plots.sample_grid(synthetic_root, labels, names, n=6, cols=3, seed=1)
    titles = [ax.get_title() for ax in grid.axes if ax.get_title()]
    assert len(titles) == 6 and len(set(titles)) == 6, "six images of six different classes"
    assert all(any(name.startswith(t.rstrip("…")) for name in names) for t in titles)
    bars = plots.class_counts(labels, names)
    heights = [p.get_height() for p in bars.axes[0].patches]
    assert heights == [12] * 10
    plt.close("all")


def test_a_class_drawn_from_its_traits_is_the_class_drawn_from_its_label():
    traits = synthetic.class_traits(3)
    by_label = synthetic.draw_flower(3, 32, np.random.default_rng(5))
    by_traits = synthetic.draw_flower(traits, 32, np.random.default_rng(5))
    assert by_label.tobytes() == by_traits.tobytes()


def test_classes_beyond_the_smoke_ten_have_distinct_traits():
    traits = [synthetic.class_traits(i) for i in range(120)]
    assert len(set(traits)) == 120
    assert len({synthetic.class_name(i) for i in range(120)}) == 120


def test_synthetic_class_names_are_invented_not_real_species():
    from flowerlib.classes import CLASS_NAMES, class_names

    names = class_names(102, synthetic=True)
    assert len(set(names)) == 102 and not set(names) & set(CLASS_NAMES)
    assert all(name.startswith("synthetic ") for name in names)
    assert names[0] == "synthetic red oval-3, yellow eye"
    assert class_names(3) == ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]
    assert len({name[:20] for name in names[:10]}) == 10, "plot titles (20 characters) tell them apart"


def test_a_generated_synthetic_data_directory_splits_with_the_invented_names(tmp_path):
    from flowerlib import download, splits
    from flowerlib.classes import CLASS_NAMES
    from flowerlib.config import Config

    cfg = Config.for_profile("smoke", data_dir=tmp_path, num_classes=3, synthetic_images_per_class=4)
    download.fetch_dataset(cfg)
    table = splits.prepare_split(cfg)
    names = dict(zip(table["label"], table["class_name"], strict=True))
    assert names == {label: synthetic.class_name(label) for label in range(3)}
    assert not set(names.values()) & set(CLASS_NAMES)
