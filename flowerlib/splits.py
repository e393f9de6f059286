"""Split tables: which image is used for training, validation and testing.

A split is a pandas DataFrame with one row per image, sorted by split
(`train`, `val`, `test`) then `image_id`:

=========  =====  ==============================================================
column     dtype  meaning
=========  =====  ==============================================================
image_id   int    1-based id of `imagelabels.mat` / `setid.mat`
file       str    path relative to the data directory, `jpg/image_00001.jpg`
label      int    0-based class index, 0..C-1 (label `k + 1` of `imagelabels.mat`)
class_name str    `class_names(C)[label]` (invented ones for synthetic data)
split      str    `"train"`, `"val"` or `"test"`
=========  =====  ==============================================================

Three splits are available (`Config.split`):

- `official`: `setid.mat` as published: `trnid` -> train, `valid` -> val,
  `tstid` -> test (1,020 / 1,020 / 6,149 images on the real data, 10 + 10 per
  class for training and validation).
- `trainval`: what papers report. The official train and validation images are
  pooled for training and the official test set is the test set. Early
  stopping and model selection still need *something* held out, so a small
  stratified `val` part (`TRAINVAL_VAL_FRACTION` = 10 % of each class, at least
  one image: 2 per class, 204 images on the real data) is carved from the pool
  with `Config.seed`. The model is therefore trained on 1,836 of the 2,040
  train+val images; the test set is untouched.
- `random`: a stratified random split of *all* labelled images with
  `Config.split_fractions` (e.g. 70/15/15) and `Config.seed`; every class is in
  every part.

`prepare_split(cfg)` builds the table, checks it (`validate_split`) and writes it
to `splits/<split>.csv` with a small JSON sidecar recording the parameters and
a fingerprint of the labels and official split; the next call reads the CSV back
unless the split name, its parameters or the dataset changed.

Every image a split lists must be on disk, except in a dataset that step 1
recorded as *partial* (a local `FLOWERS_SOURCE` folder holding only some
images, such as the official train+val images without the test images): its
splits cover the images present. `random` works there; `official` and
`trainval` stop with a clear message when a part has no images.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowerlib.artifacts import Layout, atomic_path, read_json, sha256_file, write_json
from flowerlib.classes import NUM_CLASSES, class_names
from flowerlib.config import SPLITS
from flowerlib.errors import FlowerlibError

if TYPE_CHECKING:  # pandas is imported lazily: importing flowerlib stays light
    import pandas as pd

    from flowerlib.config import Config

PARTS = ("train", "val", "test")
COLUMNS = ("image_id", "file", "label", "class_name", "split")
SETID_KEYS = {"trnid": "train", "valid": "val", "tstid": "test"}
TRAINVAL_VAL_FRACTION = 0.1
# Bumped when the way tables are built changes, so old CSVs are regenerated
# (2: synthetic data directories get the synthetic classes' invented names).
FORMAT_VERSION = 2


class SplitError(FlowerlibError, ValueError):
    """A split cannot be built, or a split table is inconsistent with the dataset."""


class DatasetNotReadyError(FlowerlibError, FileNotFoundError):
    """The files step 1 (`01_download.ipynb`) writes are missing or unreadable."""


class PartialDatasetWarning(UserWarning):
    """The data directory holds only some of the labelled images; splits use those present."""


# --- reading the dataset's .mat files -------------------------------------------


def _load_mat(path: Path, key: str) -> np.ndarray:
    import scipy.io

    if not path.is_file():
        raise DatasetNotReadyError(
            f"{path} does not exist. Run notebooks/01_download.ipynb (or `flowerlib download`) first."
        )
    try:
        data = scipy.io.loadmat(path)
    except (ValueError, OSError, TypeError) as e:  # scipy's errors for a broken file
        raise DatasetNotReadyError(
            f"{path} is not a readable .mat file ({e}). Delete it and re-run 01_download."
        ) from None
    if key not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise DatasetNotReadyError(
            f"{path} has no variable {key!r} (found {found}). Delete it and re-run 01_download."
        )
    return np.asarray(data[key]).ravel().astype(np.int64)


def load_labels(layout: Layout) -> np.ndarray:
    """0-based class labels of every image, from `imagelabels.mat`.

    Args:
        layout: the data directory's `Layout`.

    Returns:
        int64 array of shape `(N,)`; entry `image_id - 1` is the label of
        `image_id` (8,189 labels in 0..101 on the real data).

    Raises:
        DatasetNotReadyError: the file is missing, unreadable or has no `labels`.
    """
    labels = _load_mat(layout.labels_mat, "labels")
    if labels.size == 0 or labels.min() < 1 or labels.max() > NUM_CLASSES:
        raise DatasetNotReadyError(
            f"{layout.labels_mat}: labels must be 1..{NUM_CLASSES}. Received "
            f"{labels.size} labels in [{labels.min(initial=0)}, {labels.max(initial=0)}]. "
            "Delete it and re-run 01_download."
        )
    return labels - 1


def load_setid(layout: Layout) -> dict[str, np.ndarray]:
    """The official split from `setid.mat`.

    Args:
        layout: the data directory's `Layout`.

    Returns:
        `{"trnid": ids, "valid": ids, "tstid": ids}`: int64 arrays of 1-based
        image ids, in the file's order.

    Raises:
        DatasetNotReadyError: the file is missing, unreadable or lacks a key.
    """
    return {key: _load_mat(layout.setid_mat, key) for key in SETID_KEYS}


def dataset_fingerprint(layout: Layout) -> str:
    """sha256 of the labels and the official split (their values, not the file bytes)."""
    h = hashlib.sha256()
    h.update(load_labels(layout).astype("<i8").tobytes())
    for key, ids in load_setid(layout).items():
        h.update(key.encode())
        h.update(ids.astype("<i8").tobytes())
    return h.hexdigest()


# --- building tables --------------------------------------------------------------


def _num_classes(labels: np.ndarray, num_classes: int | None) -> int:
    found = int(labels.max()) + 1
    if num_classes is None:
        return found
    if found != num_classes:
        raise SplitError(
            f"The dataset has {found} classes (labels 0..{found - 1}) but num_classes={num_classes}. "
            "Set num_classes to match the data (102 for the real dataset; FLOWERS_NUM_CLASSES), or point "
            "data_dir at the dataset you meant (a full-profile run on a synthetic data directory, or "
            "the reverse, gives this error)."
        )
    return num_classes


def dataset_class_names(layout: Layout, num_classes: int) -> list[str]:
    """The class names of the dataset in `layout`: the Flowers-102 species, or invented ones.

    A data directory that `flowerlib.download` filled with the procedurally
    drawn dataset (its `dataset.json` says `source: synthetic`) gets the
    synthetic classes' invented names (`flowerlib.synthetic.class_name`): they
    are not flowers, so they do not borrow the species' names.

    Args:
        layout: the data directory.
        num_classes: number of classes.

    Returns:
        One name per class, index = 0-based label.
    """
    from flowerlib.download import dataset_info

    info = dataset_info(layout)
    synthetic = isinstance(info, dict) and info.get("source") == "synthetic"
    return class_names(num_classes, synthetic=synthetic)


def _table(
    layout: Layout, ids: np.ndarray, parts: np.ndarray, labels: np.ndarray, num_classes: int
) -> pd.DataFrame:
    import pandas as pd

    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 1 or ids.max() > labels.size):
        bad = ids[(ids < 1) | (ids > labels.size)]
        raise SplitError(
            f"Image ids {bad[:5].tolist()} are outside 1..{labels.size} (the images of imagelabels.mat). "
            "setid.mat and imagelabels.mat do not belong together: re-run 01_download."
        )
    names = np.asarray(dataset_class_names(layout, num_classes), dtype=object)
    lab = labels[ids - 1]
    order = np.lexsort((ids, np.array([PARTS.index(p) for p in parts], dtype=np.int64)))
    ids, lab, parts = ids[order], lab[order], np.asarray(parts, dtype=object)[order]
    return pd.DataFrame(
        {
            "image_id": ids.astype(np.int64),
            "file": [layout.image_path(i).relative_to(layout.root).as_posix() for i in ids],
            "label": lab.astype(np.int64),
            "class_name": names[lab].astype(str) if lab.size else np.array([], dtype=str),
            "split": parts.astype(str),
        },
        columns=list(COLUMNS),
    )


def _allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Split `n` into len(fractions) counts >= 1 close to n * fraction (largest remainder)."""
    raw = np.asarray(fractions, dtype=float) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in np.flatnonzero(counts == 0):  # every part gets at least one image
        donor = int(np.argmax(counts))
        counts[donor] -= 1
        counts[i] += 1
    return counts.tolist()


def _stratified(
    ids: np.ndarray,
    labels: np.ndarray,
    fractions: Sequence[float],
    parts: Sequence[str],
    seed: int,
    num_classes: int,
    names: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted `ids` and the part of each, drawn class by class so every class is in every part."""
    rng = np.random.default_rng(seed)
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    lab = labels[ids - 1]
    out = np.empty(ids.size, dtype=object)
    for c in range(num_classes):
        members = np.flatnonzero(lab == c)
        if members.size == 0:
            continue
        if members.size < len(parts):
            raise SplitError(
                f"Class {c} ({names[c]!r}) has only {members.size} image(s); a stratified split into "
                f"{list(parts)} with fractions {list(fractions)} needs at least {len(parts)} per class. "
                "Use more images per class or another split."
            )
        counts = _allocate(members.size, fractions)
        members = rng.permutation(members)
        out[members] = np.repeat(np.asarray(parts, dtype=object), counts)
    return ids, out


def official_split(
    layout: Layout, num_classes: int | None = None, *, image_ids: np.ndarray | None = None
) -> pd.DataFrame:
    """The split published with the dataset (`setid.mat`).

    Args:
        layout: the data directory's `Layout`.
        num_classes: number of classes for the class names; defaults to the
            largest label + 1.
        image_ids: keep only these images (a partial dataset, see
            `available_image_ids`); default: every labelled image.

    Returns:
        The split table (1,020 train, 1,020 val, 6,149 test images on the real data).

    Raises:
        DatasetNotReadyError: the `.mat` files are missing or broken.
        SplitError: the lists overlap or name images without a label.
    """
    labels = load_labels(layout)
    num_classes = _num_classes(labels, num_classes)
    setid = load_setid(layout)
    ids = np.concatenate(list(setid.values()))
    parts = np.concatenate([[SETID_KEYS[k]] * v.size for k, v in setid.items()])
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise SplitError(
            f"{layout.setid_mat} lists image ids {uniq[counts > 1][:5].tolist()} in more than one part. "
            "Delete it and re-run 01_download."
        )
    if image_ids is not None:
        keep = np.isin(ids, image_ids)
        ids, parts = ids[keep], parts[keep]
    return _table(layout, ids, parts, labels, num_classes)


def trainval_split(
    layout: Layout,
    seed: int = 42,
    val_fraction: float = TRAINVAL_VAL_FRACTION,
    num_classes: int | None = None,
    *,
    image_ids: np.ndarray | None = None,
) -> pd.DataFrame:
    """Official train+val for training, official test for testing, as papers report.

    A small stratified `val` part (`val_fraction` of each class, at least one
    image) is held out of the pooled train+val images, chosen with `seed`, so
    early stopping and model selection never look at the test set.

    Args:
        layout: the data directory's `Layout`.
        seed: seed of the held-out choice.
        val_fraction: fraction of each class's train+val images held out, in (0, 1).
        num_classes: number of classes; defaults to the largest label + 1.
        image_ids: keep only these images (a partial dataset); default: all.

    Returns:
        The split table (1,836 train, 204 val, 6,149 test images on the real data).

    Raises:
        SplitError: `val_fraction` is out of range, or a class has fewer than 2
            train+val images.
    """
    if not 0.0 < val_fraction < 1.0:
        raise SplitError(f"val_fraction must be in (0, 1). Received val_fraction={val_fraction}")
    official = official_split(layout, num_classes, image_ids=image_ids)
    labels = load_labels(layout)
    num_classes = _num_classes(labels, num_classes)
    is_test = (official["split"] == "test").to_numpy()
    pool = official["image_id"].to_numpy()[~is_test]
    test = official["image_id"].to_numpy()[is_test]
    ids, parts = _stratified(
        pool,
        labels,
        (1.0 - val_fraction, val_fraction),
        ("train", "val"),
        seed,
        num_classes,
        dataset_class_names(layout, num_classes),
    )
    return _table(
        layout,
        np.concatenate([ids, test]),
        np.concatenate([parts, ["test"] * test.size]),
        labels,
        num_classes,
    )


def random_split(
    layout: Layout,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 42,
    num_classes: int | None = None,
    *,
    image_ids: np.ndarray | None = None,
) -> pd.DataFrame:
    """A stratified random split of all labelled images (or of `image_ids`).

    Each class is split on its own (largest-remainder rounding, at least one
    image per part), so every class is in every part and the class balance of
    the parts matches the dataset's. The same `seed` gives the same table.

    Args:
        layout: the data directory's `Layout`.
        fractions: train, val and test fractions: three positive numbers summing to 1.
        seed: seed of the shuffle.
        num_classes: number of classes; defaults to the largest label + 1.
        image_ids: split only these images (a partial dataset); default: all.

    Returns:
        The split table.

    Raises:
        SplitError: bad fractions, or a class with fewer images than parts.
    """
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or min(fr) <= 0 or abs(sum(fr) - 1.0) > 1e-6:
        raise SplitError(
            f"fractions must be three positive numbers (train, val, test) summing to 1. Received fractions={fractions}"
        )
    labels = load_labels(layout)
    num_classes = _num_classes(labels, num_classes)
    pool = np.arange(1, labels.size + 1) if image_ids is None else np.asarray(image_ids, dtype=np.int64)
    names = dataset_class_names(layout, num_classes)
    ids, parts = _stratified(pool, labels, fr, PARTS, seed, num_classes, names)
    return _table(layout, ids, parts, labels, num_classes)


def split_params(cfg: Config) -> dict[str, Any]:
    """The parameters that determine `cfg.split`'s table (recorded in the sidecar JSON)."""
    params: dict[str, Any] = {"split": cfg.split, "num_classes": cfg.num_classes, "format": FORMAT_VERSION}
    if cfg.split == "trainval":
        params.update(seed=cfg.seed, val_fraction=TRAINVAL_VAL_FRACTION)
    elif cfg.split == "random":
        params.update(seed=cfg.seed, fractions=list(cfg.split_fractions))
    return params


def make_split(
    cfg: Config, layout: Layout | None = None, *, image_ids: np.ndarray | None = None
) -> pd.DataFrame:
    """Build `cfg.split`'s table (no disk writes; see `prepare_split`).

    Args:
        cfg: the configuration (`split`, `seed`, `split_fractions`, `num_classes`).
        layout: the data directory; defaults to `Layout(cfg.data_dir)`.
        image_ids: use only these images (a partial dataset); default: all.

    Returns:
        The split table.

    Raises:
        SplitError: unknown split name, or a split that cannot be built.
        DatasetNotReadyError: the `.mat` files are missing.
    """
    layout = layout or Layout(cfg.data_dir)
    if cfg.split == "official":
        return official_split(layout, cfg.num_classes, image_ids=image_ids)
    if cfg.split == "trainval":
        return trainval_split(layout, cfg.seed, TRAINVAL_VAL_FRACTION, cfg.num_classes, image_ids=image_ids)
    if cfg.split == "random":
        return random_split(layout, cfg.split_fractions, cfg.seed, cfg.num_classes, image_ids=image_ids)
    raise SplitError(f"Unknown split. Expected one of {SPLITS}. Received split={cfg.split!r}")


# --- checking ---------------------------------------------------------------------


def validate_split(
    table: pd.DataFrame,
    layout: Layout,
    *,
    check_files: bool = True,
    require_all_classes: bool = True,
    image_ids: np.ndarray | None = None,
) -> None:
    """Check a split table against the dataset; raise on the first problem found.

    Checks: the columns; no image twice (disjoint parts); every labelled image
    (or every id of `image_ids`) present, nothing else (complete); only `train`/`val`/`test`; labels equal to
    `imagelabels.mat` and within 0..C-1; file names as `Layout` writes them;
    (optionally) every class in every part and every file on disk.

    Args:
        table: a split table.
        layout: the data directory it belongs to.
        check_files: also check that every listed image file exists.
        require_all_classes: also check that every class is in every part.
        image_ids: the images the split must cover, for a partial dataset;
            default: every image of `imagelabels.mat`.

    Raises:
        SplitError: the table is inconsistent with the dataset.
        DatasetNotReadyError: images listed in the table are missing on disk.
    """
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise SplitError(f"The split table lacks columns {missing}. Expected columns {list(COLUMNS)}.")
    labels = load_labels(layout)
    ids = table["image_id"].to_numpy(dtype=np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise SplitError(
            f"The split is not disjoint: image ids {uniq[counts > 1][:5].tolist()} appear more than once."
        )
    everything = np.arange(1, labels.size + 1)
    expected = everything if image_ids is None else np.unique(np.asarray(image_ids, dtype=np.int64))
    if uniq.size != expected.size or not np.array_equal(uniq, expected):
        lost = np.setdiff1d(expected, uniq)
        extra = np.setdiff1d(uniq, expected)
        raise SplitError(
            f"The split is not complete: {lost.size} of the {expected.size} images it must cover are "
            f"missing from it (e.g. {lost[:5].tolist()}) and it lists {extra.size} other ids "
            f"(e.g. {extra[:5].tolist()}). Delete {layout.splits_dir} and re-run 02_prepare."
        )
    bad_parts = sorted(set(table["split"]) - set(PARTS))
    if bad_parts:
        raise SplitError(f"Unknown split values {bad_parts}. Expected only {list(PARTS)}.")
    lab = table["label"].to_numpy(dtype=np.int64)
    num_classes = int(labels.max()) + 1
    if lab.min() < 0 or lab.max() >= num_classes or not np.array_equal(lab, labels[ids - 1]):
        raise SplitError(
            f"The split's labels do not match {layout.labels_mat} (labels must be 0..{num_classes - 1}). "
            f"Delete {layout.splits_dir} and re-run 02_prepare."
        )
    files = [layout.image_path(i).relative_to(layout.root).as_posix() for i in ids]
    if table["file"].tolist() != files:
        raise SplitError(
            "The split's file column does not match its image ids (expected jpg/image_XXXXX.jpg)."
        )
    if require_all_classes:
        present = table.groupby("split")["label"].nunique()
        partial = (
            ""
            if expected.size == everything.size
            else (
                f" Only {expected.size:,} of the {everything.size:,} labelled images are in {layout.jpg_dir} "
                "(a partial dataset): use split='random' (FLOWERS_SPLIT=random), which splits the images "
                "present, or get the complete dataset with 01_download."
            )
        )
        for part in PARTS:
            n = int(present.get(part, 0))
            if n != num_classes:
                raise SplitError(
                    f"The {part!r} part has images of {n} of the {num_classes} classes; every class "
                    f"must be in every part.{partial}"
                )
    if check_files:
        absent = [f for f in files if not (layout.root / f).is_file()]
        if absent:
            raise DatasetNotReadyError(
                f"Image {absent[0]} listed in the split is missing from {layout.root} "
                f"({len(absent)} of {len(files)} images missing): re-run 01_download."
            )


def split_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Images per class and part, for a quick look (and the step-2 plot).

    Args:
        table: a split table.

    Returns:
        DataFrame indexed by (`label`, `class_name`) with integer columns
        `train`, `val`, `test` (the parts present) and `total`.
    """
    import pandas as pd

    counts = pd.crosstab([table["label"], table["class_name"]], table["split"])
    counts = counts.reindex(columns=[p for p in PARTS if p in counts.columns], fill_value=0)
    counts.columns.name = None
    counts["total"] = counts.sum(axis=1)
    return counts.astype(int)


def available_image_ids(layout: Layout) -> np.ndarray:
    """Ids of the labelled images whose file is in `jpg/` (all of them unless the dataset is partial).

    Args:
        layout: the data directory.

    Returns:
        Sorted int64 array of 1-based image ids.
    """
    n = load_labels(layout).size
    return np.array([i for i in range(1, n + 1) if layout.image_path(i).is_file()], dtype=np.int64)


# --- storage ----------------------------------------------------------------------


def save_split(table: pd.DataFrame, layout: Layout, name: str, params: dict[str, Any] | None = None) -> Path:
    """Write a split table to `splits/<name>.csv` (atomically), plus its sidecar JSON.

    Args:
        table: the split table.
        layout: the data directory.
        name: the split's name (`"official"`, `"trainval"`, `"random"`).
        params: the parameters that built it (see `split_params`); stored with
            the dataset's fingerprint so `prepare_split` can tell a stale file.

    Returns:
        The CSV's path.
    """
    csv = layout.split_csv(name)
    with atomic_path(csv) as tmp:
        table.loc[:, list(COLUMNS)].to_csv(tmp, index=False)
    meta = {
        "name": name,
        "params": params or {},
        "dataset": dataset_fingerprint(layout),
        "rows": len(table),
        "csv_sha256": sha256_file(csv),
    }
    write_json(layout.split_meta(name), meta)
    return csv


def load_split(layout: Layout, name: str) -> pd.DataFrame:
    """Read `splits/<name>.csv` back, with the column types of a fresh table.

    Raises:
        FileNotFoundError: the CSV does not exist (run `prepare_split` / 02_prepare).
        SplitError: the CSV lacks columns.
    """
    import pandas as pd

    csv = layout.split_csv(name)
    if not csv.is_file():
        raise FileNotFoundError(f"{csv} does not exist. Run notebooks/02_prepare.ipynb first.")
    table = pd.read_csv(
        csv, dtype={"image_id": "int64", "label": "int64", "file": str, "class_name": str, "split": str}
    )
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise SplitError(f"{csv} lacks columns {missing}. Delete it and re-run 02_prepare.")
    return table.loc[:, list(COLUMNS)]


def _stored_is_current(layout: Layout, name: str, params: dict[str, Any]) -> bool:
    csv, meta_path = layout.split_csv(name), layout.split_meta(name)
    if not (csv.is_file() and meta_path.is_file()):
        return False
    try:
        meta = read_json(meta_path)
    except ValueError:
        return False
    return (
        isinstance(meta, dict)
        and meta.get("name") == name
        and meta.get("params") == json.loads(json.dumps(params))
        and meta.get("dataset") == dataset_fingerprint(layout)
        and meta.get("csv_sha256") == sha256_file(csv)
    )


def is_partial(layout: Layout) -> bool:
    """Whether step 1 recorded this data directory as a deliberately partial dataset.

    A local folder given as `FLOWERS_SOURCE` may hold only some of the images
    (e.g. the official train and validation images without the 6,149 test
    images); `flowerlib.download` records that in its marker. Splits of such a
    dataset use only the images present. Any other missing image is an error.
    """
    from flowerlib.download import dataset_info

    info = dataset_info(layout)
    return bool(isinstance(info, dict) and info.get("partial"))


def prepare_split(cfg: Config) -> pd.DataFrame:
    """The split table of `cfg.split`, read from disk when still valid, else built and written.

    The CSV at `splits/<cfg.split>.csv` is reused when its sidecar JSON records
    the same split name and parameters (seed, fractions, number of classes), the
    same labels and official split, and the CSV's own checksum; otherwise the
    table is built again and overwritten. Either way it is checked with
    `validate_split` (including that every image file exists).

    A dataset that step 1 recorded as partial (`is_partial`: a local folder
    holding only some images) is split over the images present, with a
    `PartialDatasetWarning` when the split is built (not each time it is read back); the official and trainval splits then fail with a
    clear message if a part (typically the official test set) has no images.

    Args:
        cfg: the configuration.

    Returns:
        The split table.

    Raises:
        DatasetNotReadyError: step 1's files are missing (run 01_download first).
        SplitError: the split cannot be built or is inconsistent with the data.
    """
    layout = Layout(cfg.data_dir)
    params = split_params(cfg)
    image_ids = None
    if is_partial(layout):
        image_ids = available_image_ids(layout)
        params["images"] = hashlib.sha256(image_ids.astype("<i8").tobytes()).hexdigest()
    if _stored_is_current(layout, cfg.split, params):
        table = load_split(layout, cfg.split)
        validate_split(table, layout, image_ids=image_ids)
        return table
    if image_ids is not None:  # said once, when the split is built; later steps just read it
        warnings.warn(
            f"{layout.root} holds {image_ids.size:,} of the {load_labels(layout).size:,} labelled "
            f"images (a partial dataset): the {cfg.split!r} split uses only the images present.",
            PartialDatasetWarning,
            stacklevel=2,
        )
    table = make_split(cfg, layout, image_ids=image_ids)
    validate_split(table, layout, image_ids=image_ids)
    save_split(table, layout, cfg.split, params)
    return table
