"""A procedurally drawn flower dataset in the on-disk layout of Oxford Flowers-102.

Every class is a fixed combination of traits a small network can learn: petal
colour, centre colour, petal count and petal shape. Every image draws one flower
of its class at a random position, scale and rotation on a random background,
so the classes are learnable but not trivially so. The dataset is written in
exactly the layout of the real one::

    root/jpg/image_00001.jpg ...   the images (classes interleaved over the ids)
    root/imagelabels.mat           `labels`: uint8, shape (1, N), 1-based
    root/setid.mat                 `trnid`, `valid`, `tstid`: uint16, shape (1, k)

Class names are invented from the traits (`class_name`, e.g. "synthetic red
oval-3, yellow eye"), never the names of real species; `flowerlib.splits` uses
them for data directories that `flowerlib.download` generated.

Per class, a quarter of the images go to `trnid`, a quarter to `valid` and the
rest to `tstid` (10/10/20 for 40 images per class). The same arguments always
give byte-identical files.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import shutil
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from flowerlib.artifacts import Layout, atomic_path

# Ten well-separated petal colours: at 64 px colour is what a tiny network sees first.
PETAL_COLOURS: tuple[tuple[int, int, int], ...] = (
    (220, 30, 40),  # red
    (250, 140, 20),  # orange
    (245, 220, 30),  # yellow
    (245, 245, 245),  # white
    (250, 130, 190),  # pink
    (130, 40, 170),  # purple
    (40, 80, 220),  # blue
    (220, 40, 200),  # magenta
    (40, 210, 220),  # cyan
    (110, 20, 30),  # dark red
)
CENTRE_COLOURS: tuple[tuple[int, int, int], ...] = (
    (250, 210, 0),  # yellow
    (90, 50, 20),  # brown
    (20, 20, 20),  # black
    (250, 250, 250),  # white
    (40, 160, 40),  # green
    (240, 100, 0),  # orange
)
PETAL_SHAPES: tuple[str, ...] = ("ellipse", "round", "pointed", "thin")
# Words for the traits in the invented class names (`class_name`), in the order above.
PETAL_COLOUR_NAMES: tuple[str, ...] = (
    "red", "orange", "yellow", "white", "pink", "purple", "blue", "magenta", "cyan", "dark red",
)  # fmt: skip
CENTRE_COLOUR_NAMES: tuple[str, ...] = ("yellow", "brown", "black", "white", "green", "orange")
PETAL_SHAPE_NAMES: dict[str, str] = {"ellipse": "oval", "round": "disc", "pointed": "star", "thin": "spike"}
PETAL_COUNTS: tuple[int, ...] = (3, 4, 5, 6, 7, 8)

_SUPERSAMPLE = 2  # draw at twice the size, then downscale: cheap anti-aliasing
_JPEG_QUALITY = 90
_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: flowerlib.synthetic, Created on: Thu Jan  1 00:00:00 1970"


@dataclass(frozen=True)
class FlowerTraits:
    """What makes a synthetic class recognisable.

    Args:
        petal_colour: RGB of the petals.
        centre_colour: RGB of the flower's centre disc.
        petal_count: number of petals.
        petal_shape: one of `PETAL_SHAPES`.
    """

    petal_colour: tuple[int, int, int]
    centre_colour: tuple[int, int, int]
    petal_count: int
    petal_shape: str


def class_traits(label: int) -> FlowerTraits:
    """The traits of class `label` (0-based); distinct labels below 120 differ.

    Petal colour cycles fastest, so any ten consecutive classes (the smoke
    profile uses classes 0..9) all have different petal colours.

    Args:
        label: 0-based class index.

    Returns:
        The class's `FlowerTraits`.

    Raises:
        ValueError: `label` is negative.
    """
    if label < 0:
        raise ValueError(f"label must be >= 0. Received label={label}")
    tens = label // 10
    return FlowerTraits(
        petal_colour=PETAL_COLOURS[label % 10],
        # 11 * tens mod 6 only repeats after 6 decades, so (petal, centre) is unique below 60.
        centre_colour=CENTRE_COLOURS[(label + tens) % len(CENTRE_COLOURS)],
        petal_count=PETAL_COUNTS[(label * 5 + tens) % len(PETAL_COUNTS)],
        # The high bit (label >= 60) keeps classes 60..119 apart from 0..59.
        petal_shape=PETAL_SHAPES[(label % 2) + 2 * ((label // 60) % 2)],
    )


def class_name(label: int) -> str:
    """An invented name for synthetic class `label`, e.g. `"synthetic red oval-3, yellow eye"`.

    It spells out the class's traits (petal colour, petal shape and count,
    centre colour), so it is unique wherever the traits are (labels below 120)
    and never the name of a real flower. The petal colour comes first, so the
    smoke profile's ten classes differ in their first words.

    Args:
        label: 0-based class index.

    Returns:
        The class name.

    Raises:
        ValueError: `label` is negative.
    """
    t = class_traits(label)
    petal = PETAL_COLOUR_NAMES[PETAL_COLOURS.index(t.petal_colour)]
    centre = CENTRE_COLOUR_NAMES[CENTRE_COLOURS.index(t.centre_colour)]
    return f"synthetic {petal} {PETAL_SHAPE_NAMES[t.petal_shape]}-{t.petal_count}, {centre} eye"


def _petal_outline(shape: str, length: float) -> np.ndarray:
    """Petal polygon in local coordinates: base at the origin, pointing along +x."""
    if shape == "pointed":
        w = 0.28 * length
        return np.array([(0.0, 0.0), (0.45 * length, w), (length, 0.0), (0.45 * length, -w)])
    half_width = {"ellipse": 0.22, "round": 0.38, "thin": 0.1}[shape] * length
    t = np.linspace(0.0, 2.0 * math.pi, 18, endpoint=False)
    return np.stack([length / 2 * (1 + np.cos(t)), half_width * np.sin(t)], axis=1)


def _jitter(colour: tuple[int, int, int], rng: np.random.Generator, amount: float) -> tuple[int, ...]:
    scale = 1.0 + rng.uniform(-amount, amount)
    return tuple(int(np.clip(c * scale, 0, 255)) for c in colour)


def draw_flower(label: int | FlowerTraits, image_size: int, rng: np.random.Generator) -> Image.Image:
    """Draw one random flower of class `label` on a random background.

    Args:
        label: 0-based class index (decides the traits), or the `FlowerTraits`
            to draw (e.g. a petal colour of your own, as
            `flowerlib/data/make_tiny_backbone.py` does).
        image_size: side of the square RGB image, in pixels.
        rng: source of the per-image randomness (position, scale, rotation,
            background, small colour jitter).

    Returns:
        A `PIL.Image.Image` in RGB mode, `image_size` x `image_size`.
    """
    traits = label if isinstance(label, FlowerTraits) else class_traits(label)
    size = image_size * _SUPERSAMPLE
    # Background: a muted vertical gradient (grass, soil, sky, stone) plus a few blurry leaves.
    top = rng.uniform(40, 170, size=3)
    bottom = rng.uniform(30, 140, size=3)
    grey = rng.uniform(0.3, 0.8)  # desaturate so petals stand out
    top = top * (1 - grey) + top.mean() * grey
    bottom = bottom * (1 - grey) + bottom.mean() * grey
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    background = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    image = Image.fromarray(np.broadcast_to(background, (size, size, 3)).copy(), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(0, size, size=2)
        r = rng.uniform(0.05, 0.18) * size
        leaf = tuple(int(v) for v in rng.uniform([20, 70, 20], [90, 150, 80]))
        draw.ellipse((cx - r, cy - r * 0.5, cx + r, cy + r * 0.5), fill=leaf)

    # The flower: random scale, position (fully or mostly inside), rotation.
    length = rng.uniform(0.22, 0.38) * size
    margin = length * 0.8
    cx, cy = rng.uniform(margin, size - margin, size=2)
    draw.line(
        (cx, cy, cx + rng.uniform(-0.2, 0.2) * size, size), fill=(40, 110, 40), width=max(2, size // 40)
    )
    outline = _petal_outline(traits.petal_shape, length)
    rotation = rng.uniform(0.0, 2.0 * math.pi)
    petal_colour = _jitter(traits.petal_colour, rng, 0.1)
    edge = tuple(int(c * 0.7) for c in petal_colour)
    for k in range(traits.petal_count):
        angle = rotation + 2.0 * math.pi * k / traits.petal_count
        c, s = math.cos(angle), math.sin(angle)
        points = outline @ np.array([[c, s], [-s, c]]) + (cx, cy)
        draw.polygon([tuple(p) for p in points], fill=petal_colour, outline=edge)
    r = length * rng.uniform(0.22, 0.3)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_jitter(traits.centre_colour, rng, 0.1))
    return image.resize((image_size, image_size), Image.Resampling.BOX)


def _labels_and_split(
    num_classes: int, images_per_class: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """1-based labels interleaved over ids 1..N, and the per-class quarter/quarter/rest split."""
    labels = np.repeat(np.arange(1, num_classes + 1), images_per_class)
    rng.shuffle(labels)
    n_train = n_val = images_per_class // 4
    parts: dict[str, list[np.ndarray]] = {"trnid": [], "valid": [], "tstid": []}
    for c in range(1, num_classes + 1):
        ids = rng.permutation(np.flatnonzero(labels == c) + 1)
        parts["trnid"].append(ids[:n_train])
        parts["valid"].append(ids[n_train : n_train + n_val])
        parts["tstid"].append(ids[n_train + n_val :])
    id_dtype = np.uint16 if labels.size <= np.iinfo(np.uint16).max else np.uint32
    setid = {k: np.sort(np.concatenate(v)).astype(id_dtype)[None, :] for k, v in parts.items()}
    label_dtype = np.uint8 if num_classes <= 255 else np.uint16
    return labels.astype(label_dtype)[None, :], setid


def _write_mat(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """`scipy.io.savemat`, with the header's creation time fixed so the bytes are reproducible."""
    import scipy.io

    buffer = io.BytesIO()
    scipy.io.savemat(buffer, arrays, format="5", do_compression=False, oned_as="row")
    data = bytearray(buffer.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")
    path.write_bytes(bytes(data))


def write_dataset(
    root: str | os.PathLike,
    *,
    num_classes: int,
    images_per_class: int,
    image_size: int = 128,
    seed: int = 0,
) -> Layout:
    """Write a synthetic dataset into `root`, in the layout of the real one.

    Everything is generated in a temporary folder inside `root` and then
    renamed into place, so an interrupted call leaves no half-written dataset.
    An existing `jpg/` and `.mat` files in `root` are replaced.

    Args:
        root: the data directory (created if missing).
        num_classes: number of classes, 1..255.
        images_per_class: images per class, at least 4 (so every class has
            at least one train, one validation and one test image).
        image_size: side of the square JPEGs, in pixels (at least 16).
        seed: the same seed gives byte-identical files.

    Returns:
        The `Layout` of `root`.

    Raises:
        ValueError: an argument is out of range.
    """
    if not 1 <= num_classes <= 255:
        raise ValueError(f"num_classes must be between 1 and 255. Received num_classes={num_classes}")
    if images_per_class < 4:
        raise ValueError(
            f"images_per_class must be at least 4 (a quarter each for train and validation). "
            f"Received images_per_class={images_per_class}"
        )
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels. Received image_size={image_size}")
    layout = Layout(Path(root))
    layout.root.mkdir(parents=True, exist_ok=True)
    labels, setid = _labels_and_split(num_classes, images_per_class, np.random.default_rng(seed))

    tmp = layout.root / f".synthetic-{uuid.uuid4().hex[:8]}.tmp"
    try:
        staged = Layout(tmp)
        staged.jpg_dir.mkdir(parents=True)
        for image_id, label in enumerate(labels.ravel().tolist(), start=1):
            rng = np.random.default_rng([seed, image_id])
            image = draw_flower(label - 1, image_size, rng)
            image.save(staged.image_path(image_id), format="JPEG", quality=_JPEG_QUALITY)
        _write_mat(staged.labels_mat, {"labels": labels})
        _write_mat(staged.setid_mat, setid)
        # Swap in: the old jpg/ (if any) moves aside first, so jpg/ is always whole or absent.
        if layout.jpg_dir.exists():
            old = tmp / "old-jpg"
            os.replace(layout.jpg_dir, old)
        os.replace(staged.jpg_dir, layout.jpg_dir)
        os.replace(staged.labels_mat, layout.labels_mat)
        os.replace(staged.setid_mat, layout.setid_mat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return layout


def make_archive(root: str | os.PathLike, archive_path: str | os.PathLike) -> Path:
    """Pack `root/jpg/` into a `.tgz` laid out like `102flowers.tgz` (members `jpg/image_XXXXX.jpg`).

    The archive is reproducible (fixed timestamps and owners, sorted members)
    and written atomically.

    Args:
        root: a data directory holding `jpg/` (e.g. from `write_dataset`).
        archive_path: where to write the archive.

    Returns:
        `archive_path` as a `Path`.

    Raises:
        FileNotFoundError: `root` has no `jpg/` folder.
    """
    layout = Layout(Path(root))
    if not layout.jpg_dir.is_dir():
        raise FileNotFoundError(
            f"No jpg/ folder in {layout.root}: run synthetic.write_dataset({str(layout.root)!r}, ...) first."
        )
    archive_path = Path(archive_path)

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    with (
        atomic_path(archive_path) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.add(layout.jpg_dir, arcname="jpg", recursive=False, filter=normalise)
        for path in sorted(layout.jpg_dir.iterdir()):
            tar.add(path, arcname=f"jpg/{path.name}", recursive=False, filter=normalise)
    return archive_path


__all__ = [
    "CENTRE_COLOURS",
    "CENTRE_COLOUR_NAMES",
    "PETAL_COLOURS",
    "PETAL_COLOUR_NAMES",
    "PETAL_COUNTS",
    "PETAL_SHAPES",
    "PETAL_SHAPE_NAMES",
    "FlowerTraits",
    "class_name",
    "class_traits",
    "draw_flower",
    "make_archive",
    "write_dataset",
]
