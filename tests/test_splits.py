"""Split tables: official / trainval / random, validation, CSV storage and staleness."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from flowerlib import splits
from flowerlib.artifacts import Layout
from flowerlib.classes import class_names
from flowerlib.config import Config

# 10 classes x 12 images: synthetic setid gives 3 train / 3 val / 6 test per class.
C, PER_CLASS = 10, 12
REAL = Path(__file__).resolve().parents[2] / "shared" / "flowers102"


@pytest.fixture()
def data_root(synthetic_root, tmp_path):
    """A private copy of the synthetic dataset that a test may write splits into (or modify)."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    return root


def _cfg(root: Path, **kw) -> Config:
    return Config.for_profile("smoke", data_dir=root, **kw)


def _write_mats(root: Path, labels_1based, trnid, valid, tstid) -> Layout:
    """A hand-made dataset: only the two .mat files (no images)."""
    root.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "imagelabels.mat", {"labels": np.asarray(labels_1based, np.uint8)[None]})
    ids = {
        k: np.asarray(v, np.uint16)[None] for k, v in (("trnid", trnid), ("valid", valid), ("tstid", tstid))
    }
    scipy.io.savemat(root / "setid.mat", ids)
    return Layout(root)


def _per_class(table: pd.DataFrame, part: str) -> pd.Series:
    return table[table["split"] == part]["label"].value_counts()


def test_load_labels_and_setid_are_zero_based_and_one_based(synthetic_root):
    layout = Layout(synthetic_root)
    labels = splits.load_labels(layout)
    assert labels.shape == (C * PER_CLASS,) and labels.min() == 0 and labels.max() == C - 1
    setid = splits.load_setid(layout)
    assert set(setid) == {"trnid", "valid", "tstid"}
    assert sum(v.size for v in setid.values()) == C * PER_CLASS
    assert min(v.min() for v in setid.values()) == 1


def test_official_split_sizes_columns_and_order(synthetic_root):
    table = splits.official_split(Layout(synthetic_root))
    assert list(table.columns) == list(splits.COLUMNS)
    assert table["split"].value_counts().to_dict() == {"train": 30, "val": 30, "test": 60}
    assert (_per_class(table, "train") == 3).all() and (_per_class(table, "val") == 3).all()
    # sorted by split (train, val, test) then image id
    order = table["split"].map({"train": 0, "val": 1, "test": 2})
    assert (np.diff(order.to_numpy()) >= 0).all()
    for _, part in table.groupby("split"):
        assert part["image_id"].is_monotonic_increasing
    row = table.iloc[0]
    assert row["file"] == f"jpg/image_{row['image_id']:05d}.jpg"
    assert row["class_name"] == class_names(C)[row["label"]]
    assert table["image_id"].dtype == np.int64 and table["label"].dtype == np.int64


@pytest.mark.parametrize("name", ["official", "trainval", "random"])
def test_every_split_is_disjoint_complete_and_valid(synthetic_root, name):
    layout = Layout(synthetic_root)
    table = splits.make_split(_cfg(synthetic_root, split=name), layout)
    assert table["image_id"].is_unique
    assert sorted(table["image_id"]) == list(range(1, C * PER_CLASS + 1))
    splits.validate_split(table, layout)  # also: every file exists, every class in every part


def test_random_split_is_stratified_and_deterministic(synthetic_root):
    layout = Layout(synthetic_root)
    a = splits.random_split(layout, (0.5, 0.25, 0.25), seed=1)
    b = splits.random_split(layout, (0.5, 0.25, 0.25), seed=1)
    c = splits.random_split(layout, (0.5, 0.25, 0.25), seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    for part, expected in (("train", 6), ("val", 3), ("test", 3)):
        counts = _per_class(a, part)
        assert len(counts) == C and (counts == expected).all(), (part, counts.to_dict())


def test_random_split_gives_every_part_an_image_even_when_rounding_says_zero(tmp_path):
    # class 0 has 3 images: 3 * 0.15 rounds to 0, yet val and test each get one
    layout = _write_mats(tmp_path, [1, 1, 1, 2, 2, 2, 2, 2, 2, 2], [1], [2], [3, 4, 5, 6, 7, 8, 9, 10])
    table = splits.random_split(layout, (0.7, 0.15, 0.15), seed=0)
    assert _per_class(table, "val").to_dict() == {0: 1, 1: 1}
    assert _per_class(table, "test").to_dict() == {0: 1, 1: 1}


def test_random_split_with_too_few_images_in_a_class_says_which(tmp_path):
    layout = _write_mats(tmp_path, [1, 1, 2, 2, 2], [1, 3], [2, 4], [5])
    with pytest.raises(splits.SplitError, match=r"Class 0 \('pink primrose'\) has only 2 image"):
        splits.random_split(layout, (0.6, 0.2, 0.2), seed=0)


def test_random_split_rejects_bad_fractions(synthetic_root):
    with pytest.raises(splits.SplitError, match=r"fractions=\(0.5, 0.5\)"):
        splits.random_split(Layout(synthetic_root), (0.5, 0.5), seed=0)


def test_trainval_pools_train_and_val_and_keeps_the_official_test(synthetic_root):
    layout = Layout(synthetic_root)
    official = splits.official_split(layout)
    tv = splits.trainval_split(layout, seed=3)
    off_test = set(official.loc[official["split"] == "test", "image_id"])
    assert set(tv.loc[tv["split"] == "test", "image_id"]) == off_test
    assert set(tv.loc[tv["split"] != "test", "image_id"]) == set(official["image_id"]) - off_test
    # a small stratified held-out part: 10 % of the 6 train+val images per class, at least 1
    assert (_per_class(tv, "val") == 1).all() and len(_per_class(tv, "val")) == C
    assert (_per_class(tv, "train") == 5).all()
    pd.testing.assert_frame_equal(tv, splits.trainval_split(layout, seed=3))


def test_real_official_split_counts():
    if not (REAL / "setid.mat").is_file():
        pytest.skip(f"real dataset files not found at {REAL}")
    table = splits.official_split(Layout(REAL))
    assert table["split"].value_counts().to_dict() == {"train": 1020, "val": 1020, "test": 6149}
    assert (_per_class(table, "train") == 10).all() and len(_per_class(table, "train")) == 102
    assert (_per_class(table, "val") == 10).all() and len(_per_class(table, "val")) == 102
    assert table["image_id"].is_unique and len(table) == 8189
    splits.validate_split(table, Layout(REAL), check_files=False)


def test_csv_round_trip(data_root):
    layout = Layout(data_root)
    table = splits.official_split(layout)
    path = splits.save_split(table, layout, "official")
    assert path == layout.split_csv("official") and path.is_file()
    pd.testing.assert_frame_equal(splits.load_split(layout, "official"), table, check_dtype=True)


def test_prepare_split_reuses_a_valid_csv(data_root):
    cfg = _cfg(data_root, split="random", seed=5)
    first = splits.prepare_split(cfg)
    csv = Layout(data_root).split_csv("random")
    stamp = csv.stat().st_mtime_ns
    pd.testing.assert_frame_equal(splits.prepare_split(cfg), first)
    assert csv.stat().st_mtime_ns == stamp  # read back, not rewritten


@pytest.mark.parametrize(
    "change", [{"seed": 6}, {"split_fractions": (0.5, 0.25, 0.25)}], ids=["seed", "fractions"]
)
def test_prepare_split_regenerates_when_parameters_change(data_root, change):
    cfg = _cfg(data_root, split="random", seed=5)
    first = splits.prepare_split(cfg)
    second = splits.prepare_split(cfg.replace(**change))
    assert not first.equals(second)
    pd.testing.assert_frame_equal(second, splits.make_split(cfg.replace(**change)))
    pd.testing.assert_frame_equal(splits.load_split(Layout(data_root), "random"), second)


def test_prepare_split_regenerates_when_the_dataset_changes(data_root):
    cfg = _cfg(data_root, split="official")
    layout = Layout(data_root)
    splits.prepare_split(cfg)
    # move one training image to the test list: a different official split
    setid = {k: v.tolist() for k, v in splits.load_setid(layout).items()}
    moved = setid["trnid"].pop(0)
    setid["tstid"].append(moved)
    scipy.io.savemat(layout.setid_mat, {k: np.asarray(v, np.uint16)[None] for k, v in setid.items()})
    table = splits.prepare_split(cfg)
    assert table.set_index("image_id").loc[moved, "split"] == "test"


def test_prepare_split_regenerates_a_hand_edited_csv(data_root):
    cfg = _cfg(data_root, split="official")
    good = splits.prepare_split(cfg)
    csv = Layout(data_root).split_csv("official")
    csv.write_text(csv.read_text().replace(",train\n", ",test\n", 1))
    pd.testing.assert_frame_equal(splits.prepare_split(cfg), good)


def test_prepare_split_without_step_one_says_run_01_download(tmp_path):
    with pytest.raises(splits.DatasetNotReadyError, match="01_download"):
        splits.prepare_split(_cfg(tmp_path / "empty"))


def test_validate_split_names_a_missing_image(data_root):
    layout = Layout(data_root)
    table = splits.official_split(layout)
    victim = table["file"].iloc[7]
    (data_root / victim).unlink()
    with pytest.raises(
        splits.DatasetNotReadyError, match=rf"{victim} listed in the split is missing.*01_download"
    ):
        splits.validate_split(table, layout)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: pd.concat([t, t.iloc[:1]]), "not disjoint"),
        (lambda t: t.iloc[1:], "not complete"),
        (lambda t: t.assign(label=(t["label"] + 1) % C), "labels do not match"),
        (lambda t: t.assign(split=t["split"].replace("val", "dev")), "Unknown split values"),
        (lambda t: t.drop(columns="label"), "lacks columns"),
        (
            lambda t: t.assign(
                split=np.where((t["split"] == "val") & (t["label"] == 0), "train", t["split"])
            ),
            "every class must be in every part",
        ),
    ],
    ids=["duplicate", "incomplete", "labels", "part-name", "column", "class-missing-from-a-part"],
)
def test_validate_split_rejects_broken_tables(synthetic_root, edit, message):
    layout = Layout(synthetic_root)
    with pytest.raises(splits.SplitError, match=message):
        splits.validate_split(edit(splits.official_split(layout)), layout)


@pytest.mark.parametrize("num_classes", [5, 102])
def test_num_classes_different_from_the_data_is_an_error(synthetic_root, num_classes):
    with pytest.raises(splits.SplitError, match=rf"has 10 classes .* but num_classes={num_classes}"):
        splits.make_split(_cfg(synthetic_root, num_classes=num_classes))


def test_split_summary_counts_per_class_and_part(synthetic_root):
    summary = splits.split_summary(splits.official_split(Layout(synthetic_root)))
    assert list(summary.columns) == ["train", "val", "test", "total"]
    assert len(summary) == C and (summary["total"] == PER_CLASS).all()
    assert summary[["train", "val", "test"]].sum().to_dict() == {"train": 30, "val": 30, "test": 60}


@pytest.fixture()
def partial_root(data_root, monkeypatch):
    """The synthetic dataset without its official test images, recorded by step 1 as partial."""
    layout = Layout(data_root)
    for image_id in splits.load_setid(layout)["tstid"]:
        layout.image_path(int(image_id)).unlink()
    from flowerlib import download

    monkeypatch.setattr(download, "dataset_info", lambda layout: {"partial": True})
    return data_root


def test_partial_dataset_random_split_uses_the_images_present(partial_root):
    with pytest.warns(splits.PartialDatasetWarning, match="60 of the 120"):
        table = splits.prepare_split(_cfg(partial_root, split="random"))
    assert len(table) == 60 and table["split"].value_counts().to_dict() == {
        "train": 40,
        "val": 10,
        "test": 10,
    }
    with warnings.catch_warnings(record=True) as caught:  # read back: said once is enough
        warnings.simplefilter("always")
        pd.testing.assert_frame_equal(splits.prepare_split(_cfg(partial_root, split="random")), table)
    assert not [w for w in caught if issubclass(w.category, splits.PartialDatasetWarning)]


def test_partial_dataset_official_split_says_the_test_images_are_absent(partial_root):
    with (
        pytest.warns(splits.PartialDatasetWarning),
        pytest.raises(splits.SplitError, match=r"'test' part has images of 0 .*split='random'"),
    ):
        splits.prepare_split(_cfg(partial_root, split="official"))


def test_missing_images_without_a_partial_marker_are_an_error(data_root):
    layout = Layout(data_root)
    layout.image_path(int(splits.load_setid(layout)["tstid"][0])).unlink()
    with pytest.raises(splits.DatasetNotReadyError, match="listed in the split is missing"):
        splits.prepare_split(_cfg(data_root, split="random"))
