"""Photos unlike the dataset's: a benchmark built from validation images (never test images).

Oxford Flowers-102 photos show one flower, large, centred and sharp. Users
photograph flowers zoomed out in a garden, several in a bed, small in a corner,
as tiny compressed thumbnails, or with a thumb in front of the lens. This module
turns validation photos into such pictures, so a model's accuracy on them can be
compared with its accuracy on the photos themselves (`benchmarks/RESULTS.md`).

Every transformation is pure NumPy + Pillow, takes and returns uint8 RGB arrays
`(H, W, 3)`, and is deterministic given its `rng` (a `numpy.random.Generator`, or
a seed for `numpy.random.default_rng`):

=====================  =========================================================
kind                   what it does (defaults)
=====================  =========================================================
`zoom_out`             the photo, shrunk so its longer side is 35-60 % of the
                       background's shorter side, pasted at a random place
                       (edges feathered) onto a background
`field`                several photos of one class, each a random crop (60-100 %
                       of the largest crop of the cell's shape, randomly
                       mirrored), tiled into one picture: a flower bed
`small_off_centre`     the photo shrunk to 15-30 % of the side and pasted where it
                       does not overlap the middle third of the frame
`low_quality`          downscaled to a thumbnail (longer side 64-120 px), saved
                       as a JPEG of quality 10-30, decoded and enlarged back
`occlude`              25-45 % of the area covered by a flat-coloured rectangle
                       entering from one edge (a thumb, a leaf, a sign, a shadow)
=====================  =========================================================

Backgrounds (`background_from`) are made from the dataset without leaking the
label: the greenest corner (a third of the shorter side) of a validation photo
of *another* class, enlarged and heavily blurred. Corners of these photos are
mostly leaves, grass or soil; when a petal of the other class reaches the
corner it becomes a blurred colour patch, a distractor such as a real garden
has.

`make_unlike_set(val_rows, data_dir, seed)` draws the sources (class-balanced,
each image of a class used once before any is reused), applies the kinds and
returns one record per picture; it refuses rows of the `test` part. Sources are
first cut to the square the pipeline sees (shorter side resized to `size`,
centre crop), so every record is a `size` x `size` picture and the stated
fractions are fractions of what the model sees. Each picture draws its own
generator from `(seed, kind, index)`: the same seed gives the same set, and
leaving a kind out changes no other kind's pictures. `save_unlike_set` writes
the pictures as JPEGs with an `index.csv`; `load_unlike_set` reads them back::

    from flowerlib import prediction, splits, unlike
    table = splits.prepare_split(cfg)
    records = unlike.make_unlike_set(table[table["split"] == "val"], cfg.data_dir, seed=0)
    unlike.save_unlike_set(records, "unlike-seed0")        # inspect, reuse
    prediction.predict_many(model, records["image"], top_k=1)  # arrays are accepted

Limits, said plainly: a zoomed-out photo is a soft-edged rectangle of the
original photo (its own background included), not a flower cut out of it;
a field is a mosaic of crops, not one scene; the occluder is flat.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from flowerlib.artifacts import atomic_path

if TYPE_CHECKING:  # pandas is imported lazily, as in flowerlib.splits
    import pandas as pd

KINDS: tuple[str, ...] = ("zoom_out", "field", "small_off_centre", "low_quality", "occlude")
#: kinds that paste onto a background made from another class's photo
BACKGROUND_KINDS: tuple[str, ...] = ("zoom_out", "small_off_centre")
#: grids `make_unlike_set` draws for a field (rows, columns)
FIELD_GRIDS: tuple[tuple[int, int], ...] = ((2, 2), (2, 3), (3, 3))
#: what covers part of the photo in `occlude`: skin tones (a thumb), a dark leaf, grey, near black
OCCLUDER_COLOURS: tuple[tuple[int, int, int], ...] = (
    (224, 172, 105),
    (141, 85, 36),
    (255, 219, 172),
    (34, 85, 34),
    (128, 128, 128),
    (25, 25, 25),
)
DEFAULT_SIZE = 384
INDEX_NAME = "index.csv"
IMAGES_DIR = "images"
#: columns of `make_unlike_set`'s table (`load_unlike_set` adds `file`)
RECORD_COLUMNS = ("image", "label", "class_name", "kind", "sources", "background")
_SAVE_QUALITY = 95


# --- checks and small helpers -----------------------------------------------------------------


def _rng(rng: Any) -> np.random.Generator:
    if rng is None:
        raise ValueError("rng must be a numpy.random.Generator or a seed (not None: the result must repeat).")
    return np.random.default_rng(rng)


def _check_image(image: Any, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(
            f"{name} must be a uint8 RGB array of shape (H, W, 3). Received dtype {image.dtype}, "
            f"shape {image.shape}"
        )
    return image


def _check_range(name: str, value: Sequence[float], low: float, high: float) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high). Received {name}={value!r}") from None
    if not low <= a <= b <= high:
        raise ValueError(f"{name} must satisfy {low:g} <= low <= high <= {high:g}. Received {name}={value!r}")
    return a, b


def _resize(image: np.ndarray, height: int, width: int, box: tuple[float, ...] | None = None) -> np.ndarray:
    """Pillow's antialiased bicubic resize (of `box`, a crop in pixels, when given)."""
    pil = Image.fromarray(image)
    return np.asarray(pil.resize((int(width), int(height)), Image.Resampling.BICUBIC, box=box))


def _shrink(image: np.ndarray, longer_side: float) -> np.ndarray:
    """`image` resized (aspect kept) so its longer side is `longer_side` pixels (at least 1)."""
    h, w = image.shape[:2]
    factor = max(1.0, round(longer_side)) / max(h, w)
    return _resize(image, max(1, round(h * factor)), max(1, round(w * factor)))


def feather_mask(height: int, width: int, feather: float) -> np.ndarray:
    """Opacity of a pasted photo: 1 inside, ramping down to its edges.

    Args:
        height, width: size of the photo.
        feather: width of the ramp as a fraction of the photo's shorter side
            (0: a hard edge, every pixel opaque).

    Returns:
        float32 `(height, width)` in (0, 1]: the outermost pixels keep a little
        opacity, so the pasted rectangle is exactly the photo's size.
    """
    if feather <= 0:
        return np.ones((height, width), np.float32)
    ramp = max(1.0, feather * min(height, width))
    y = np.minimum(np.arange(height), np.arange(height)[::-1])
    x = np.minimum(np.arange(width), np.arange(width)[::-1])
    distance = np.minimum(y[:, None], x[None, :]).astype(np.float32)
    return np.clip((distance + 0.5) / ramp, 0.0, 1.0)


def _paste(canvas: np.ndarray, photo: np.ndarray, top: int, left: int, feather: float) -> np.ndarray:
    h, w = photo.shape[:2]
    alpha = feather_mask(h, w, feather)[:, :, None]
    region = canvas[top : top + h, left : left + w].astype(np.float32)
    out = canvas.copy()
    blended = region * (1.0 - alpha) + photo.astype(np.float32) * alpha
    out[top : top + h, left : left + w] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def square_view(image: np.ndarray, size: int) -> np.ndarray:
    """The pipeline's view of a photo: shorter side resized to `size`, centre square cropped.

    Pillow's bicubic resize stands in for the pipeline's antialiased bilinear one
    (`flowerlib.pipeline.resize_and_crop`); the geometry is the same.
    """
    image = _check_image(image)
    return np.asarray(ImageOps.fit(Image.fromarray(image), (size, size), Image.Resampling.BICUBIC))


def background_from(image: np.ndarray, size: int, rng: Any, blur: float = 0.03) -> np.ndarray:
    """A background made from the border of a photo: its greenest corner, enlarged and blurred.

    The four corner squares (a third of the shorter side each) are scored by
    how much green exceeds red and blue; the greenest one is rotated by a
    random multiple of 90 degrees, mirrored at random, resized to `size` x
    `size` and blurred with a Gaussian of radius `blur * size`. Pass a photo of
    another class than the one pasted on it, so the background says nothing
    about the label.

    Args:
        image: uint8 RGB `(H, W, 3)`.
        size: side of the square background, in pixels.
        rng: a `numpy.random.Generator` or a seed (rotation and mirroring).
        blur: Gaussian radius as a fraction of `size`.

    Returns:
        uint8 `(size, size, 3)`.
    """
    image = _check_image(image)
    rng = _rng(rng)
    if int(size) < 1 or blur < 0:
        raise ValueError(f"size must be >= 1 and blur >= 0. Received size={size}, blur={blur}")
    h, w = image.shape[:2]
    c = max(1, min(h, w) // 3)
    corners = [image[:c, :c], image[:c, w - c :], image[h - c :, :c], image[h - c :, w - c :]]

    def greenness(patch: np.ndarray) -> float:
        p = patch.astype(np.float32)
        return float(np.mean(p[:, :, 1] - np.maximum(p[:, :, 0], p[:, :, 2])))

    patch = max(corners, key=greenness)
    patch = np.rot90(patch, k=int(rng.integers(4)))
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    pil = Image.fromarray(np.ascontiguousarray(patch)).resize(
        (int(size), int(size)), Image.Resampling.BICUBIC
    )
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius=blur * size)))


# --- the transformations --------------------------------------------------------------------


def zoom_out(
    image: np.ndarray,
    background: np.ndarray,
    rng: Any,
    scale: tuple[float, float] = (0.35, 0.6),
    feather: float = 0.08,
) -> np.ndarray:
    """The photo shrunk and pasted onto a larger background: the flower seen from further away.

    Args:
        image: the photo, uint8 RGB `(h, w, 3)`.
        background: uint8 RGB `(H, W, 3)`; the result has its shape.
        rng: a `numpy.random.Generator` or a seed.
        scale: range of the pasted photo's longer side, as a fraction of the
            background's shorter side (drawn uniformly); aspect ratio kept.
        feather: edge ramp of the pasted photo (see `feather_mask`); 0 for a hard edge.

    Returns:
        uint8 `(H, W, 3)`: the background with the photo at a uniformly drawn
        position, wholly inside.
    """
    image, background = _check_image(image), _check_image(background, "background")
    low, high = _check_range("scale", scale, 0.0, 1.0)
    rng = _rng(rng)
    H, W = background.shape[:2]
    photo = _shrink(image, rng.uniform(low, high) * min(H, W))
    h, w = photo.shape[:2]
    top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    return _paste(background, photo, top, left, feather)


def small_off_centre(
    image: np.ndarray,
    background: np.ndarray,
    rng: Any,
    scale: tuple[float, float] = (0.15, 0.30),
    feather: float = 0.08,
) -> np.ndarray:
    """The photo small and away from the centre, the way a flower sits in a snapshot of a garden.

    The photo's longer side is `scale` of the background's shorter side, and its
    position is drawn uniformly among those where it does not overlap the middle
    third of the frame (rows H/3..2H/3 and columns W/3..2W/3 at once): it lies in
    a corner or along a side.

    Args:
        image: the photo, uint8 RGB `(h, w, 3)`.
        background: uint8 RGB `(H, W, 3)`; the result has its shape.
        rng: a `numpy.random.Generator` or a seed.
        scale: range of the photo's longer side over the background's shorter
            side, at most 1/3 (so it fits beside the middle third).
        feather: edge ramp of the pasted photo (see `feather_mask`).

    Returns:
        uint8 `(H, W, 3)`.
    """
    image, background = _check_image(image), _check_image(background, "background")
    low, high = _check_range("scale", scale, 0.0, 1.0 / 3.0)
    rng = _rng(rng)
    H, W = background.shape[:2]
    photo = _shrink(image, rng.uniform(low, high) * min(H, W))
    h, w = photo.shape[:2]
    tops, lefts = np.arange(H - h + 1), np.arange(W - w + 1)
    rows_overlap = (tops < 2 * H / 3) & (tops + h > H / 3)
    cols_overlap = (lefts < 2 * W / 3) & (lefts + w > W / 3)
    allowed = np.flatnonzero(~(rows_overlap[:, None] & cols_overlap[None, :]))
    if allowed.size == 0:
        raise ValueError(f"A {h}x{w} photo does not fit beside the middle third of a {H}x{W} background.")
    top, left = divmod(int(allowed[rng.integers(allowed.size)]), lefts.size)
    return _paste(background, photo, top, left, feather)


def _grid_for(n: int) -> tuple[int, int]:
    rows = max(1, int(np.floor(np.sqrt(n))))
    return rows, int(np.ceil(n / rows))


def field(
    images: Sequence[np.ndarray],
    rng: Any,
    grid: tuple[int, int] | None = None,
    size: int | None = None,
    zoom: tuple[float, float] = (0.6, 1.0),
) -> np.ndarray:
    """Several photos of one class tiled into one square picture: a bed or a bunch of flowers.

    The picture is cut into `grid` cells; the photos go into them in a random
    order, every photo before any repeats (so with at least as many cells as
    photos, every photo appears). Each cell shows a random crop of its photo:
    the largest crop of the cell's shape, scaled by a factor drawn from `zoom`,
    at a random place, mirrored left-right with probability 1/2.

    Args:
        images: photos of one class, uint8 RGB, any sizes (pass distinct photos).
        rng: a `numpy.random.Generator` or a seed.
        grid: (rows, columns); default: the squarest grid holding every photo
            (2 -> 1x2, 4 -> 2x2, 6 -> 2x3, 9 -> 3x3).
        size: side of the square picture; default: the first photo's longer side.
        zoom: range of the crop's side relative to the largest crop (1: all of it
            that fits the cell's shape; smaller: closer in).

    Returns:
        uint8 `(size, size, 3)`.
    """
    if len(images) == 0:
        raise ValueError("field needs at least one photo.")
    images = [_check_image(im, f"images[{i}]") for i, im in enumerate(images)]
    rows, cols = _grid_for(len(images)) if grid is None else (int(grid[0]), int(grid[1]))
    size = max(images[0].shape[:2]) if size is None else int(size)
    if rows < 1 or cols < 1 or size < max(rows, cols):
        raise ValueError(f"grid must be positive and fit in size. Received grid={grid!r}, size={size}")
    low, high = _check_range("zoom", zoom, 0.0, 1.0)
    if low <= 0:
        raise ValueError(f"zoom must be above 0. Received zoom={zoom!r}")
    rng = _rng(rng)
    cells = rows * cols
    order = np.concatenate([rng.permutation(len(images)) for _ in range(-(-cells // len(images)))])
    ys = np.linspace(0, size, rows + 1).round().astype(int)
    xs = np.linspace(0, size, cols + 1).round().astype(int)
    out = np.zeros((size, size, 3), np.uint8)
    for k in range(cells):
        r, c = divmod(k, cols)
        ch, cw = ys[r + 1] - ys[r], xs[c + 1] - xs[c]
        photo = images[order[k]]
        h, w = photo.shape[:2]
        if w * ch > h * cw:  # photo wider than the cell: full height
            crop_h, crop_w = float(h), h * cw / ch
        else:
            crop_h, crop_w = w * ch / cw, float(w)
        z = rng.uniform(low, high)
        crop_h, crop_w = max(1.0, crop_h * z), max(1.0, crop_w * z)
        top, left = rng.uniform(0, h - crop_h), rng.uniform(0, w - crop_w)
        tile = _resize(photo, ch, cw, box=(left, top, left + crop_w, top + crop_h))
        if rng.random() < 0.5:
            tile = tile[:, ::-1]
        out[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = tile
    return out


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """`image` encoded as a JPEG of `quality` (Pillow, in memory, 4:2:0 chroma) and decoded."""
    buffer = io.BytesIO()
    Image.fromarray(_check_image(image)).save(buffer, format="JPEG", quality=int(quality))
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def low_quality(
    image: np.ndarray,
    rng: Any,
    size: tuple[int, int] = (64, 120),
    quality: tuple[int, int] = (10, 30),
    upsample: bool = True,
) -> np.ndarray:
    """A thumbnail sent through a messenger: downscaled, heavily JPEG-compressed, enlarged again.

    Args:
        image: the photo, uint8 RGB `(H, W, 3)`.
        rng: a `numpy.random.Generator` or a seed.
        size: range of the thumbnail's longer side in pixels (integers, both
            ends included); a photo already smaller is not enlarged.
        quality: range of the JPEG quality (integers 1..95, both ends included).
        upsample: resize the decoded thumbnail back to `(H, W)` (bilinear), so
            every record has the size of its source; False returns the thumbnail.

    Returns:
        uint8 `(H, W, 3)`, or the thumbnail's shape when `upsample` is False.
    """
    image = _check_image(image)
    s_low, s_high = _check_range("size", size, 1, np.inf)
    q_low, q_high = _check_range("quality", quality, 1, 95)
    rng = _rng(rng)
    side = int(rng.integers(int(s_low), int(s_high) + 1))
    q = int(rng.integers(int(q_low), int(q_high) + 1))
    h, w = image.shape[:2]
    small = _shrink(image, side) if side < max(h, w) else image
    decoded = jpeg_roundtrip(small, q)
    if upsample and decoded.shape[:2] != (h, w):
        decoded = np.asarray(Image.fromarray(decoded).resize((w, h), Image.Resampling.BILINEAR))
    return decoded


def occlude(
    image: np.ndarray,
    rng: Any,
    fraction: tuple[float, float] = (0.25, 0.45),
    colours: Sequence[tuple[int, int, int]] = OCCLUDER_COLOURS,
) -> np.ndarray:
    """Part of the photo covered, as by a thumb, a leaf or a sign in front of the lens.

    A rectangle of one flat colour (drawn from `colours`) enters from a random
    edge of the frame: along that edge it spans 60-100 % of the side (at least
    the drawn fraction), at a random offset; its depth is chosen so that it
    covers the drawn fraction of the area (to within one row or column).

    Args:
        image: the photo, uint8 RGB `(H, W, 3)`.
        rng: a `numpy.random.Generator` or a seed.
        fraction: range of the covered fraction of the area (drawn uniformly).
        colours: RGB colours the occluder may have.

    Returns:
        uint8 `(H, W, 3)`.
    """
    image = _check_image(image)
    low, high = _check_range("fraction", fraction, 0.0, 1.0)
    if len(colours) == 0:
        raise ValueError("colours must hold at least one RGB colour.")
    rng = _rng(rng)
    H, W = image.shape[:2]
    f = rng.uniform(low, high)
    edge = int(rng.integers(4))  # 0 top, 1 bottom, 2 left, 3 right
    along, across = (W, H) if edge < 2 else (H, W)
    span = max(1, round(rng.uniform(max(0.6, f), 1.0) * along))
    depth = min(across, max(0, round(f * H * W / span)))
    offset = int(rng.integers(0, along - span + 1))
    colour = np.asarray(colours[int(rng.integers(len(colours)))], np.uint8)
    out = image.copy()
    if edge == 0:
        out[:depth, offset : offset + span] = colour
    elif edge == 1:
        out[H - depth :, offset : offset + span] = colour
    elif edge == 2:
        out[offset : offset + span, :depth] = colour
    else:
        out[offset : offset + span, W - depth :] = colour
    return out


# --- the benchmark set ------------------------------------------------------------------------


def load_photo(path: str | os.PathLike) -> np.ndarray:
    """A JPEG from disk as uint8 RGB, upright (EXIF orientation applied)."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def _check_rows(rows: Any) -> pd.DataFrame:
    import pandas as pd

    table = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    missing = [c for c in ("file", "label", "class_name") if c not in table.columns]
    if missing:
        raise ValueError(f"rows need the columns file, label, class_name (a split table). Missing: {missing}")
    if "split" in table.columns:
        parts = table["split"].astype(str)
        if (parts == "test").any():
            raise ValueError(
                f"{int((parts == 'test').sum())} of the rows are test images; the benchmark is made from "
                "validation images only, so the test set stays unseen. Pass table[table['split'] == 'val']."
            )
    if table.empty:
        raise ValueError("rows is empty: pass the validation part of a split table.")
    return table.reset_index(drop=True)


class _Cycle:
    """Row indices of one class in a fixed order, handed out in turn, wrapping around."""

    def __init__(self, order: np.ndarray) -> None:
        self.order, self.next = order, 0

    def take(self, n: int) -> list[int]:
        out = [int(self.order[(self.next + j) % self.order.size]) for j in range(n)]
        self.next += n
        return out


def make_unlike_set(
    rows: Any,
    data_dir: str | os.PathLike,
    seed: int,
    per_kind: int = 100,
    kinds: Sequence[str] = KINDS,
    *,
    size: int = DEFAULT_SIZE,
) -> pd.DataFrame:
    """Pictures unlike the dataset's, made from validation photos; the same seed gives the same set.

    For every kind, `per_kind` pictures are made. Their classes are
    balanced (a shuffled list of the classes, repeated); within a class the
    photos are used in a shuffled order, each once before any is used again.
    A field takes distinct photos of its class (as many as its grid has cells,
    or all the class has), its grid drawn from `FIELD_GRIDS`. Backgrounds of
    `BACKGROUND_KINDS` come from a random photo of another class
    (`background_from`). Every source is first cut to its `size` x `size`
    pipeline view (`square_view`).

    Args:
        rows: the validation part of a split table (`flowerlib.splits`):
            columns `file` (relative to `data_dir`), `label`, `class_name`, and
            `split` if present. A DataFrame or a list of row dicts.
        data_dir: the data directory the files are relative to.
        seed: the seed of the whole set.
        per_kind: pictures per kind.
        kinds: which of `KINDS`, in this order in the result.
        size: side of every picture, in pixels.

    Returns:
        DataFrame with one row per picture and the columns `image` (uint8
        `(size, size, 3)`), `label`, `class_name`, `kind`, `sources` (tuple of
        the source files) and `background` (the background's source file, ""
        for kinds without one).

    Raises:
        ValueError: a row is a test image, a column is missing, no rows, an
            unknown or repeated kind, `per_kind` or `size` below 1, or a
            background kind with only one class.
        FileNotFoundError: a listed image is not in `data_dir`.
    """
    import pandas as pd

    table = _check_rows(rows)
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or len(set(kinds)) != len(kinds) or not kinds:
        raise ValueError(f"kinds must be distinct names from {KINDS}. Received kinds={kinds!r}")
    if int(per_kind) < 1 or int(size) < 1:
        raise ValueError(f"per_kind and size must be at least 1. Received per_kind={per_kind}, size={size}")
    per_kind, size = int(per_kind), int(size)
    data_dir = Path(data_dir)
    labels = table["label"].astype(int).to_numpy()
    classes = np.unique(labels)
    if classes.size < 2 and any(k in BACKGROUND_KINDS for k in kinds):
        raise ValueError(
            f"Backgrounds come from another class, but the rows hold one class; drop {BACKGROUND_KINDS}."
        )
    members = {int(c): np.flatnonzero(labels == c) for c in classes}
    files = table["file"].astype(str).tolist()
    names = table["class_name"].astype(str).tolist()

    def view(i: int) -> np.ndarray:
        return square_view(load_photo(data_dir / files[i]), size)

    records = []
    for kind in kinds:
        kind_index = KINDS.index(kind)
        pick = np.random.default_rng([seed, kind_index])
        order = np.concatenate([pick.permutation(classes) for _ in range(-(-per_kind // classes.size))])
        queues = {c: _Cycle(pick.permutation(m)) for c, m in members.items()}
        for i in range(per_kind):
            c = int(order[i])
            rng = np.random.default_rng([seed, kind_index, i])
            background = ""
            if kind == "field":
                grid = FIELD_GRIDS[int(rng.integers(len(FIELD_GRIDS)))]
                chosen = queues[c].take(min(grid[0] * grid[1], members[c].size))
                image = field([view(j) for j in chosen], rng, grid=grid, size=size)
            else:
                chosen = queues[c].take(1)
                photo = view(chosen[0])
                if kind in BACKGROUND_KINDS:
                    others = np.flatnonzero(labels != c)
                    b = int(others[rng.integers(others.size)])
                    background = files[b]
                    canvas = background_from(load_photo(data_dir / files[b]), size, rng)
                    transform = zoom_out if kind == "zoom_out" else small_off_centre
                    image = transform(photo, canvas, rng)
                elif kind == "low_quality":
                    image = low_quality(photo, rng)
                else:
                    image = occlude(photo, rng)
            records.append((image, c, names[chosen[0]], kind, tuple(files[j] for j in chosen), background))
    return pd.DataFrame(records, columns=list(RECORD_COLUMNS))


def save_unlike_set(records: Any, folder: str | os.PathLike, quality: int = _SAVE_QUALITY) -> Path:
    """Write a set as JPEGs plus `index.csv`, all at once: the folder is complete or unchanged.

    Layout: `folder/images/00000_zoom_out.jpg ...` (JPEG `quality`, no chroma
    subsampling, so saving adds little to what the kind did) and
    `folder/index.csv` with the columns `file` (relative to `folder`),
    `label`, `class_name`, `kind`, `sources` (files joined by ";") and
    `background`. Everything is written into a temporary folder beside
    `folder`, then renamed into place; a previous set in `folder` is replaced.

    Args:
        records: `make_unlike_set`'s table (or a list of dicts with its columns).
        folder: where the set goes.
        quality: JPEG quality of the saved pictures.

    Returns:
        `folder` as a `Path`.

    Raises:
        FileExistsError: `folder` exists and is not empty, but holds no set (no
            `index.csv`): it is not overwritten.
        ValueError: a column is missing or a picture is not uint8 RGB.
        flowerlib.artifacts.DiskWriteError: the disk is full, read-only or not writable.
    """
    import pandas as pd

    table = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    missing = [c for c in RECORD_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"records need the columns {RECORD_COLUMNS}. Missing: {missing}")
    folder = Path(folder)
    if (
        folder.exists()
        and not (folder / INDEX_NAME).is_file()
        and (not folder.is_dir() or any(folder.iterdir()))
    ):
        raise FileExistsError(
            f"{folder} exists and holds no unlike set ({INDEX_NAME}); choose another folder."
        )
    index = []
    old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old")
    moved = False
    try:
        with atomic_path(folder) as tmp:
            (tmp / IMAGES_DIR).mkdir(parents=True)
            for i, row in enumerate(table.itertuples(index=False)):
                image = _check_image(row.image, f"records image {i}")
                name = f"{IMAGES_DIR}/{i:05d}_{row.kind}.jpg"
                Image.fromarray(image).save(tmp / name, format="JPEG", quality=int(quality), subsampling=0)
                sources = row.sources if isinstance(row.sources, str) else ";".join(row.sources)
                index.append((name, int(row.label), row.class_name, row.kind, sources, row.background or ""))
            columns = ["file", "label", "class_name", "kind", "sources", "background"]
            pd.DataFrame(index, columns=columns).to_csv(tmp / INDEX_NAME, index=False)
            if folder.exists():
                os.replace(folder, old)
                moved = True
    except BaseException:
        if moved and not folder.exists():
            os.replace(old, folder)  # the new set did not arrive: the previous one stays
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def load_unlike_set(folder: str | os.PathLike) -> pd.DataFrame:
    """A set written by `save_unlike_set`, with its pictures.

    Returns:
        DataFrame with `file` (relative to `folder`) and the columns of
        `make_unlike_set` (`sources` as tuples, `background` "" when none).

    Raises:
        FileNotFoundError: `folder` holds no `index.csv`.
    """
    import pandas as pd

    folder = Path(folder)
    if not (folder / INDEX_NAME).is_file():
        raise FileNotFoundError(f"No {INDEX_NAME} in {folder}: write the set with save_unlike_set first.")
    table = pd.read_csv(folder / INDEX_NAME, dtype={"sources": str, "background": str}, keep_default_na=False)
    table["sources"] = [tuple(s.split(";")) if s else () for s in table["sources"]]
    table.insert(0, "image", [load_photo(folder / f) for f in table["file"]])
    return table[["file", *RECORD_COLUMNS]]


__all__ = [
    "BACKGROUND_KINDS",
    "DEFAULT_SIZE",
    "FIELD_GRIDS",
    "INDEX_NAME",
    "KINDS",
    "OCCLUDER_COLOURS",
    "RECORD_COLUMNS",
    "background_from",
    "feather_mask",
    "field",
    "jpeg_roundtrip",
    "load_photo",
    "load_unlike_set",
    "low_quality",
    "make_unlike_set",
    "occlude",
    "save_unlike_set",
    "small_off_centre",
    "square_view",
    "zoom_out",
]
