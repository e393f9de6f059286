"""Classify any flower photo: a file, an http(s) URL, a PIL image or an array.

`predict(model, source)` is what a user calls (it is also `flowerlib.predict`):
it reads the image the way real photos come (JPEG, PNG, WebP, greyscale, RGBA,
CMYK, EXIF-rotated, any size), brings it to the model's input exactly as the
evaluation pipeline does (aspect-preserving resize, then a centre crop), and
returns the top-k classes as a small table::

    >>> predict(model, "my_flower.jpg", class_names=names)
       rank  index            name  probability
    0     1     53       sunflower        0.912
    ...

(plus the columns `view`, `box`, `familiar`, `crop_familiar` and `closer_skipped`,
below). `verdict(top)` turns
that table into an honest answer: the class alone when its calibrated
probability reaches `SURE_PROBABILITY`, otherwise "not sure" and the few classes
it hesitates between::

    >>> print(verdict(top).sentence)
    sunflower (91 %)
    >>> print(verdict(top_of_a_blurry_photo).sentence)
    Not sure: sunflower (41 %), black-eyed susan (30 %) or barbeton daisy (20 %)

Two more things serve photos unlike the dataset's close-ups. When the whole
photo gives no sure answer, `predict` *looks closer*: it also scores square
crops of it (`closer_boxes`, none under half the model's input side, a quarter
for an unfamiliar photo, none of a photo that `looks_enlarged`); if the most confident crop
beats the whole photo, the answer's probabilities are the mean of that crop's and the whole
photo's (`view` is `"closer"`, `box` the crop). With
`reference=` (the `reference.npz` training saves beside the model,
`flowerlib.novelty`) it marks a photo that looks unlike every training photo
(`familiar` False), and a crop that itself looks like a training photo comes
before those that do not. `verdict` never calls an unfamiliar photo's whole-photo
answer sure, nor a looked-closer answer unless its crop looks like a training photo.

Anything that is not a usable image is refused with one clear `PredictionError`
(a `ValueError`): not an image, an empty or truncated file, a decompression
bomb, a file or download over the size limit (checked before reading), a URL of
another scheme, too slow, or an HTTP error. Downloads are held in memory
(bounded); nothing is written to disk. A very elongated image costs no more
memory than a square one (see `flowerlib.pipeline.resize_and_crop`).
"""

from __future__ import annotations

import http.client
import io
import math
import os
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from flowerlib.errors import FlowerlibError

if TYPE_CHECKING:  # pragma: no cover
    import keras

#: Largest download `predict` accepts from a URL (bytes).
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
#: Largest local image file `predict` reads (bytes); checked before reading.
MAX_FILE_BYTES = 100 * 1024 * 1024
#: Total time a URL download may take (seconds), and the limit on each wait for data.
DOWNLOAD_TIMEOUT = 20.0
_USER_AGENT = "flowerlib (https://github.com/; image classification example)"
_CHUNK = 64 * 1024
EXAMPLE_PHOTO = "example_flower.jpg"
#: The calibrated top probability from which `verdict` gives an answer as sure.
#: The models are calibrated (training ends by fitting a temperature on the
#: validation images), so a top probability of 0.7 means "right about 70 % of the
#: time on pictures like the validation photos": the threshold trades how often
#: the model answers against how often its answers are right. Chosen on held-out
#: pictures, never on the test images: `benchmarks/unlike_accuracy.py --split
#: half-val` sweeps it on validation photos that neither training nor the
#: temperature saw, and on "unlike" pictures made from them (MobileNetV2, RESULTS.md).
#: From 0.7 up, the sure answers were right 94 % of the time on those photos (77 %
#: answered) and 87 % on the unlike pictures (26 % answered); from 0.5 up, 89 % and
#: 80 % (85 % and 31 % answered).
SURE_PROBABILITY = 0.7
#: The candidates `verdict` names: the most probable classes until together they
#: reach this share of the probability (at most the rows of the table given).
CANDIDATE_MASS = 0.9


class PredictionError(FlowerlibError, ValueError):
    """The source cannot be turned into an image the model can classify."""


# --- reading images ----------------------------------------------------------------


def _describe(source: Any) -> str:
    text = repr(source) if isinstance(source, str | os.PathLike) else type(source).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class _NoOtherSchemes(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s) URLs (never ftp: or file:)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise PredictionError(
                f"{req.full_url} redirects to {newurl!r}; only http:// and https:// URLs are followed."
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_url(url: str, *, max_bytes: int = MAX_DOWNLOAD_BYTES, timeout: float = DOWNLOAD_TIMEOUT) -> bytes:
    """Download `url` into memory, refusing anything too large or too slow.

    Args:
        url: an `http://` or `https://` URL.
        max_bytes: the most bytes accepted (checked against `Content-Length`
            first, then while reading, so an endless response is cut off).
        timeout: seconds the whole download may take; also the limit on each
            wait for data.

    Returns:
        The response body.

    Raises:
        PredictionError: another scheme, an HTTP error, unreachable host,
            too large, or too slow.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise PredictionError(
            f"Only http:// and https:// URLs can be downloaded. Received url={url!r}; "
            "for a local file pass its path instead."
        )
    if max_bytes < 1 or timeout <= 0:
        raise PredictionError(f"max_bytes and timeout must be positive. Received {max_bytes=}, {timeout=}")
    opener = urllib.request.build_opener(_NoOtherSchemes)
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept": "image/*"})
    deadline = time.monotonic() + timeout
    too_slow = PredictionError(
        f"Downloading {url} took longer than {timeout:g} s; try again, or download the image and pass the file."
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise PredictionError(
                    f"{url} is {int(length):,} bytes, over the limit of {max_bytes:,} bytes "
                    "(raise max_bytes if you trust it)."
                )
            content_type = response.headers.get_content_type()
            buffer = bytearray()
            while True:
                if time.monotonic() > deadline:
                    raise too_slow
                chunk = response.read1(_CHUNK) if hasattr(response, "read1") else response.read(_CHUNK)
                if not chunk:
                    break
                buffer += chunk
                if len(buffer) > max_bytes:
                    raise PredictionError(
                        f"{url} sent more than the limit of {max_bytes:,} bytes; stopped reading "
                        "(raise max_bytes if you trust it)."
                    )
    except urllib.error.HTTPError as e:
        raise PredictionError(
            f"Downloading {url} failed: HTTP {e.code} {e.reason}. {_http_advice(e.code)}"
        ) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise too_slow from None
        raise PredictionError(
            f"Could not reach {url}: {e.reason}. Check the address and your connection."
        ) from None
    except TimeoutError:
        raise too_slow from None
    except (OSError, http.client.HTTPException) as e:
        raise PredictionError(f"Downloading {url} failed: {type(e).__name__}: {e}.") from None
    if content_type == "text/html":
        raise PredictionError(
            f"{url} returned an HTML page, not an image; use the address of the image itself "
            "(right-click the picture, 'Copy image address')."
        )
    return bytes(buffer)


def _http_advice(code: int) -> str:
    """What to do about an HTTP error status when downloading an image."""
    if code in (404, 410):
        return "Check the address (open it in a browser), or download the image and pass the file."
    if code in (401, 403):
        return "The server refuses it without a login: download the image in a browser and pass the file."
    if code == 429 or code >= 500:
        return "The server is busy or failing: try again later, or download the image and pass the file."
    return "Download the image in a browser and pass the file instead."


def _open_bytes(data: bytes, what: str, max_pixels: int | None) -> Image.Image:
    if not data:
        raise PredictionError(f"{what} is empty (0 bytes); pass a JPEG, PNG or WebP image.")
    with warnings.catch_warnings():
        # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; we refuse both (below).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise PredictionError(f"{what} is refused as a possible decompression bomb: {e}") from None
        except UnidentifiedImageError:
            raise PredictionError(
                f"{what} is not an image Pillow can read (starts with {data[:16]!r}); "
                "pass a JPEG, PNG or WebP image."
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise PredictionError(
                f"{what} is truncated or corrupt ({e}); download or export it again."
            ) from None
    _check_pixels(image, what, max_pixels)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise PredictionError(f"{what} is truncated or corrupt ({e}); download or export it again.") from None
    return image


def _check_pixels(image: Image.Image, what: str, max_pixels: int | None) -> None:
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if limit is not None and image.width * image.height > limit:
        raise PredictionError(
            f"{what} is {image.width}x{image.height} = {image.width * image.height:,} pixels, over the limit "
            f"of {int(limit):,} (a possible decompression bomb); resize it first or raise max_pixels."
        )


def _to_rgb(image: Image.Image, what: str) -> np.ndarray:
    """Any Pillow mode -> HxWx3 uint8 RGB; transparency is composited on white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values / top * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    try:
        if has_alpha:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        rgb = image.convert("RGB")
    except (ValueError, OSError) as e:
        raise PredictionError(
            f"{what} has colour mode {image.mode!r}, which cannot be converted to RGB: {e}"
        ) from None
    return np.asarray(rgb, dtype=np.uint8)


def _array_to_rgb(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise PredictionError(f"{what} must hold numbers. Received dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise PredictionError(
            f"{what} must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). Received shape {array.shape}"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise PredictionError(f"{what} is empty. Received shape {array.shape}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise PredictionError(f"{what} contains NaN or infinite values.")
    if array.min() < 0 or array.max() > 255:
        raise PredictionError(
            f"{what} values must lie in 0..255 (raw RGB pixels). Received min {array.min():g}, max {array.max():g}"
        )
    if array.shape[2] == 4:
        alpha = array[:, :, 3:] / 255.0
        array = array[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
    return array


def _read_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file, refused before reading when over `max_bytes`."""
    shown = repr(str(path))
    if len(str(path)) > 200:
        shown = repr(str(path)[:197] + "...")
    try:
        if not path.exists():
            raise PredictionError(
                f"No such file: {shown}. Check the path (relative paths start at {os.getcwd()})."
            )
        if not path.is_file():  # a folder, a FIFO, a device: never opened
            kind = "a folder" if path.is_dir() else "a pipe, socket or device"
            raise PredictionError(f"{shown} is not a file ({kind}); pass the path of one image.")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise PredictionError(
                    f"The file {shown} is {size:,} bytes, over the limit of {max_bytes:,} bytes for one "
                    "image; export a smaller JPEG or PNG (or raise max_file_bytes if you trust it)."
                )
            data = f.read(max_bytes + 1)  # bounded even if the file grows meanwhile
    except OSError as e:
        raise PredictionError(f"Cannot read the file {shown}: {e.strerror or type(e).__name__}.") from None
    if len(data) > max_bytes:
        raise PredictionError(
            f"The file {shown} grew past the limit of {max_bytes:,} bytes while being read; try again."
        )
    return data


def _upright(image: Image.Image, what: str) -> Image.Image:
    """`ImageOps.exif_transpose`, with a broken EXIF block refused in one line."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error) as e:
        raise PredictionError(
            f"{what} has a broken EXIF block ({type(e).__name__}); export the image again."
        ) from None


def load_image(
    source: Any,
    *,
    max_pixels: int | None = None,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    max_file_bytes: int = MAX_FILE_BYTES,
    timeout: float = DOWNLOAD_TIMEOUT,
) -> np.ndarray:
    """Read an image from any supported source as an RGB array, upright, at its own size.

    Args:
        source: a file path (`str` or `Path`), an `http(s)://` URL, raw bytes of
            an encoded image, a `PIL.Image.Image`, or an array of shape `(H, W)`,
            `(H, W, 1)`, `(H, W, 3)` or `(H, W, 4)` with values in 0..255.
        max_pixels: refuse larger images (default: `PIL.Image.MAX_IMAGE_PIXELS`).
        max_bytes: the largest URL download accepted.
        max_file_bytes: the largest local file accepted (checked before reading).
        timeout: seconds a URL download may take.

    Returns:
        float32 array `(H, W, 3)` in 0..255. EXIF orientation is applied, colour
        modes (greyscale, palette, CMYK, 16-bit) are converted, transparency is
        composited on white.

    Raises:
        PredictionError: the source is not a usable image (see module docstring).
    """
    what = _describe(source)
    if isinstance(source, Image.Image):
        _check_pixels(source, "The image", max_pixels)
        try:
            source.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise PredictionError(f"The PIL image is truncated or corrupt ({e}).") from None
        image = _upright(source, "The PIL image")
        return _to_rgb(image, "The PIL image").astype(np.float32)
    if isinstance(source, bytes | bytearray | memoryview):
        image = _open_bytes(bytes(source), "The image bytes", max_pixels)
    elif isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        scheme = urllib.parse.urlsplit(text).scheme.lower() if "://" in text else ""
        if scheme in ("http", "https"):
            data = fetch_url(text, max_bytes=max_bytes, timeout=timeout)
            image = _open_bytes(data, f"The download from {text}", max_pixels)
        elif scheme:
            raise PredictionError(
                f"Only http:// and https:// URLs (or local file paths) are accepted. Received {text!r}"
            )
        else:
            path = Path(text).expanduser()
            data = _read_file(path, max_file_bytes)
            image = _open_bytes(data, f"The file {str(path)!r}", max_pixels)
    elif hasattr(source, "__array__") or isinstance(source, list | tuple):
        array = np.asarray(source.numpy() if hasattr(source, "numpy") else source)
        return _array_to_rgb(array, "The array").astype(np.float32)
    else:
        raise PredictionError(
            "source must be a file path, an http(s) URL, image bytes, a PIL image or a NumPy array. "
            f"Received {what}"
        )
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)  # animated GIF/WebP: the first frame
    image = _upright(image, what)
    return _to_rgb(image, what).astype(np.float32)


def prepare_image(source: Any, image_size: int, **load_kwargs: Any) -> np.ndarray:
    """`load_image` followed by the pipeline's resize and centre crop: the model's view of `source`.

    The geometry is the input pipeline's (`flowerlib.pipeline.resize_and_crop`),
    so a photo looks the same to the model here as in training and evaluation.

    Args:
        source: anything `load_image` accepts.
        image_size: side of the model's square input.
        **load_kwargs: `max_pixels`, `max_bytes`, `max_file_bytes`, `timeout` (see `load_image`).

    Returns:
        float32 array `(image_size, image_size, 3)` in 0..255.
    """
    from flowerlib.pipeline import resize_and_crop

    return resize_and_crop(load_image(source, **load_kwargs), image_size).numpy()


# --- classifying -----------------------------------------------------------------


def _model_input_size(model: keras.Model) -> int:
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
        raise PredictionError(
            f"The model must take square RGB images (None, S, S, 3). Received input_shape={shape}"
        )
    return int(shape[1])


def _names(model: keras.Model, class_names: Sequence[str] | None) -> list[str]:
    num_outputs = int(model.output_shape[-1])
    if class_names is None:
        from flowerlib.classes import CLASS_NAMES

        if num_outputs > len(CLASS_NAMES):
            return [f"class {i}" for i in range(num_outputs)]
        return list(CLASS_NAMES[:num_outputs])
    names = [str(n) for n in class_names]
    if len(names) != num_outputs:
        raise PredictionError(
            f"Got {len(names)} class names for a model with {num_outputs} outputs; pass the labels saved "
            "with this model (evaluate.load_trained(cfg) returns them)."
        )
    return names


def _top_table(probs: np.ndarray, top_k: int, names: list[str]) -> pd.DataFrame:
    order = np.argsort(-probs, kind="stable")[:top_k]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "index": order.astype(np.int64),
            "name": [names[i] for i in order],
            "probability": probs[order].astype(np.float64),
        }
    )


def _check_top_k(top_k: Any) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise PredictionError(f"top_k must be a positive integer. Received top_k={top_k!r}")
    return int(top_k)


#: Look closer: when the whole photo gives no sure answer, square crops of these sizes (a
#: fraction of the photo's shorter side) are scored too, on a grid of this many positions along
#: the shorter side (more along the longer one): 1 + 4 + 9 + 16 = 30 views of a square photo.
#: Measured with `benchmarks/unlike_accuracy.py` (RESULTS.md, "Unlike the dataset's"): with
#: MobileNetV2 trained on the official split, the unlike pictures went from 0.41 to 0.60.
LOOK_CLOSER_GRID: tuple[tuple[float, int], ...] = ((0.7, 2), (0.5, 3), (0.35, 4))
#: An unfamiliar photo (see `predict_many`'s `reference`) is also looked at in these finer crops:
#: its flower may be small in the frame. 25 more views of a square photo, only where they are
#: wide enough (`UNFAMILIAR_MIN_CROP_SHARE`: a shorter side of about 224 px for a 224-px
#: model). On unlike pictures of 768 px, with three trained models, small off-centre flowers
#: went from 0.53 to 0.70 named right and all the unlike pictures from 0.64 to 0.67; held-out
#: photos lost one of 612 and web thumbnails nothing (`benchmarks/look_closer_rules.py --size
#: 768`, RESULTS.md). A familiar photo shows its flower large, as the training photos do: it
#: keeps the coarser grid.
UNFAMILIAR_GRID: tuple[tuple[float, int], ...] = LOOK_CLOSER_GRID + ((0.25, 5),)
#: The most confident crop answers only if its class is among the whole photo's this many most
#: probable classes, or the photo is unfamiliar. A crop of a close-up that names a new class was
#: more often wrong than right: letting any class answer cost 1.6 points on the validation
#: photos (0.856 -> 0.840, unlike_accuracy.py before this rule); with it, 0.856 -> 0.854.
CLOSER_CANDIDATES = 3
#: No crop of a familiar photo narrower than this share of the model's input side (112 px for
#: 224) is scored: enlarged more than twice, it shows only blur the model never saw in training.
#: On 240-px web thumbnails such crops made looking closer cost 3.4 points against the whole
#: photo (0.892 -> 0.858; without them 0.887), and, before crops that look like a training photo
#: came first, leaving them out of every photo changed nothing on the held-out photos or the
#: unlike pictures (`benchmarks/look_closer_rules.py`, RESULTS.md). So a familiar photo under
#: 160 px (112 / 0.7) is never looked at closer.
MIN_CROP_SHARE = 0.5
#: An unfamiliar photo's crops may be smaller: down to this share of the model's input (56 px
#: for 224). Its flower may be small, and among its crops those that look like a training photo
#: come first, so a blurred crop of background seldom answers. With three trained models on two
#: sets of unlike pictures at each of 256, 320 and 384 px (their finest crops 64 to 96 px), all
#: the pictures went from 0.637 to 0.665 named right (17 of 18 model-and-set pairs up) and
#: small off-centre flowers from 0.25-0.51 to 0.49-0.64; partly covered ones lost 0-3 points,
#: 240-px web thumbnails 4 of 612, held-out photos none (`benchmarks/look_closer_rules.py
#: --size S`, RESULTS.md). A familiar photo keeps `MIN_CROP_SHARE`.
UNFAMILIAR_MIN_CROP_SHARE = 0.25
#: A photo enlarged from a much smaller one (a thumbnail blown up, a messenger's copy) has
#: fewer details than pixels, and its crops are blur however many pixels they span. Such a
#: photo is recognised by `looks_enlarged`: halved and enlarged back, no part of it changes by
#: this many grey levels (RMS). Chosen to pass the dataset's own photos: 0.5-1 % of training
#: photos saved as JPEG of quality 90 look enlarged, against 45 % of the same enlarged 4x and
#: 80 % enlarged 6x. On the unlike pictures' compressed thumbnails (enlarged 3-6x) looking
#: closer had cost 10 points against the whole photo on all three trained models; not looking
#: closer at enlarged photos gains 0.5-2 points on the unlike pictures and changes nothing on
#: the held-out photos or the web thumbnails (`benchmarks/look_closer_rules.py`, RESULTS.md).
ENLARGED_LEVELS = 2.5


def looks_enlarged(image: np.ndarray, levels: float = ENLARGED_LEVELS, tiles: int = 4) -> bool:
    """True if `image` (RGB, 0..255) holds no more detail than a copy of half its size.

    The image is shrunk to half (box filter) and enlarged back (bilinear); it looks
    enlarged when that changes none of its `tiles` x `tiles` parts by `levels` grey
    levels (RMS) or more. Checking each part, not the whole, keeps a sharp flower in
    front of a blurred background from passing for enlarged. A flat picture (no
    detail at all) also looks enlarged; one under `2 * tiles` pixels never does.
    """
    grey = np.asarray(image, np.float32)[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    h, w = grey.shape
    if min(h, w) < 2 * tiles:
        return False
    half = Image.fromarray(grey).resize((max(1, round(w / 2)), max(1, round(h / 2))), Image.Resampling.BOX)
    lost = grey - np.asarray(half.resize((w, h), Image.Resampling.BILINEAR), np.float32)
    parts = (part for band in np.array_split(lost, tiles) for part in np.array_split(band, tiles, axis=1))
    return all(np.sqrt(np.mean(part**2)) < levels for part in parts)


def crop_resolutions(size: int) -> tuple[int, int]:
    """`(keep, detail)` for a model of input side `size`: the shorter side a photo is shrunk to
    before cropping (enough for `UNFAMILIAR_GRID`'s finest crops), and the one at which it is
    judged `looks_enlarged` (what `LOOK_CLOSER_GRID`'s finest crops need: at the larger size a
    flower small and sharp in a large, blurred frame could pass for a blown-up thumbnail)."""
    keep, detail = (
        math.ceil(size / min(scale for scale, _ in g)) for g in (UNFAMILIAR_GRID, LOOK_CLOSER_GRID)
    )
    return keep, detail


def closer_boxes(
    height: int, width: int, grid: Sequence[tuple[float, int]] = LOOK_CLOSER_GRID, *, min_side: int = 1
) -> list[tuple[int, int, int]]:
    """The look-closer crops of an image `height` x `width`: `(top, left, side)` squares, in pixels.

    For each `(scale, k)` of `grid`: squares of side `scale` x the shorter side, at
    `k` evenly spaced positions along the shorter side and proportionally more
    along the longer one, from edge to edge. Repeated boxes are listed once, and
    squares narrower than `min_side` pixels not at all (a small photo may have none).
    """
    short = min(int(height), int(width))
    if short < 1:
        raise PredictionError(f"The image has no pixels: height={height}, width={width}")
    boxes: list[tuple[int, int, int]] = []
    for scale, k in grid:
        side = max(1, round(float(scale) * short))
        if side < min_side:
            continue
        tops = np.linspace(0, height - side, max(int(k), round(k * height / short))).round().astype(int)
        lefts = np.linspace(0, width - side, max(int(k), round(k * width / short))).round().astype(int)
        for box in ((int(t), int(left), side) for t in tops for left in lefts):
            if box not in boxes:
                boxes.append(box)
    return boxes


def _models_and_references(model: Any, reference: Any) -> tuple[list[Any], list[Any]]:
    """`predict_many`'s models as a list, and one reference (loaded, or None) per model, checked."""
    models = list(model) if isinstance(model, list | tuple) else [model]
    if not models:
        raise PredictionError("No model given: pass a trained classifier, or a list of them to average.")
    outputs, size = int(models[0].output_shape[-1]), _model_input_size(models[0])
    for other in models[1:]:
        if int(other.output_shape[-1]) != outputs or _model_input_size(other) != size:
            raise PredictionError(
                "The models to average must have the same classes and input size. Received "
                f"{outputs} classes at {size} px and {int(other.output_shape[-1])} at {_model_input_size(other)} px."
            )
    if isinstance(reference, list | tuple):
        references = list(reference)
    else:  # one reference serves one model; None serves any number
        references = [reference] * (len(models) if reference is None or len(models) == 1 else 1)
    if len(references) != len(models):
        raise PredictionError(
            f"Pass one reference per model, each its own run's reference.npz, or None. Received "
            f"{len(references)} for {len(models)} models."
        )
    if any(r is None for r in references) and any(r is not None for r in references):
        raise PredictionError(
            "Pass a reference for every model or for none: a photo's familiarity is the models' vote."
        )
    from flowerlib.novelty import load_reference

    return models, [r if r is None or hasattr(r, "familiar") else load_reference(r) for r in references]


def _with_features(model: keras.Model) -> keras.Model:
    """image -> [probabilities, pooled features] of a flowerlib classifier (layers shared)."""
    import keras

    names = {layer.name for layer in model.layers}
    if "pool" not in names:
        raise PredictionError(
            "A reference (the unfamiliar-photo warning) needs a flowerlib classifier with a 'pool' layer; "
            f"{model.name!r} has none. Pass reference=None."
        )
    return keras.Model(model.inputs, [model.output, model.get_layer("pool").output], name="with_features")


def _score(
    scorers: Sequence[keras.Model], references: Sequence[Any], batch: np.ndarray, batch_size: int
) -> tuple[np.ndarray, list[bool | None], np.ndarray]:
    """The models' mean probabilities for `batch`, whether each image is familiar, and how far.

    `scorers`: each model, or with a reference its `_with_features` (built once per call of
    `predict_many`: a new Keras model traces its graph again). An image is familiar when more
    than half of the models' references find it so (None for every image when `references`
    are None). How far: each image's distance to the nearest training photo over its
    reference's threshold (familiar up to 1), the mean over the models (NaN without references).
    """
    probs, votes, far = [], [], []
    for scorer, reference in zip(scorers, references, strict=True):
        outputs = _run(scorer, batch, batch_size)
        probs.append(outputs[0])
        if reference is not None:
            distance = reference.distance(outputs[1])
            votes.append(reference.within(distance))
            far.append(distance / max(reference.threshold, 1e-12))
    familiar = [bool(f) for f in np.mean(votes, axis=0) > 0.5] if votes else [None] * len(batch)
    return np.mean(probs, axis=0), familiar, np.mean(far, axis=0) if far else np.full(len(batch), np.nan)


def _run(model: keras.Model, batch: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """The model's outputs for `batch`, batch by batch, as float64 arrays (one per output)."""
    parts = []
    for i in range(0, len(batch), batch_size):
        out = model.predict_on_batch(batch[i : i + batch_size])
        parts.append([np.asarray(o) for o in (out if isinstance(out, list | tuple) else [out])])
    return [np.concatenate(column).astype(np.float64) for column in zip(*parts, strict=True)]


def _bounded(image: np.ndarray, shorter: int) -> np.ndarray:
    """`image` shrunk (antialiased) so its shorter side is at most `shorter`: enough for the crops."""
    import tensorflow as tf

    h, w = image.shape[:2]
    if min(h, w) <= shorter:
        return image
    scale = shorter / min(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return tf.image.resize(image, size, method="bilinear", antialias=True).numpy()


def predict_many(
    model: keras.Model | Sequence[keras.Model],
    sources: Iterable[Any],
    top_k: int = 5,
    class_names: Sequence[str] | None = None,
    *,
    look_closer: bool = True,
    sure: float = SURE_PROBABILITY,
    reference: Any = None,
    batch_size: int = 16,
    **load_kwargs: Any,
) -> pd.DataFrame:
    """Classify several images; every source is read (and checked) before any is classified.

    Each photo is first classified whole (resized and centre-cropped like the test
    images). When that answer is not sure (top probability below `sure`, or the
    photo unfamiliar), the model looks closer: it also scores the crops of
    `closer_boxes` (with finer ones added, `UNFAMILIAR_GRID`, for an unfamiliar
    photo: its flower may be small). The most confident crop answers, together with the
    whole photo (the mean of their probabilities), if it is more confident than the whole
    photo and names one of the whole photo's `CLOSER_CANDIDATES`
    most probable classes (any class when the photo is unfamiliar); with a
    `reference`, only the crops that are themselves familiar compete when there
    are any, else only those nearer a training photo than the whole photo (none:
    the whole photo answers). Nearer: a smaller distance to the nearest training
    photo over the reference's threshold (with several models, the mean of theirs). Crops narrower
    than `MIN_CROP_SHARE` of the model's input (`UNFAMILIAR_MIN_CROP_SHARE` for an
    unfamiliar photo) are left out, so a familiar photo under 160 px (for a 224 px
    model) keeps its whole-photo answer, as does a photo that `looks_enlarged` (a
    blown-up thumbnail: its crops are blur). A crop's
    probability is not calibrated: the most confident of dozens of views is confident
    by selection, hence the mean with the whole photo. `verdict` calls an answer
    found this way sure only when that crop looks like a training photo
    (`crop_familiar`, with a `reference`).

    Several models (trained with other seeds, each its own run) answer together:
    every view's probabilities are the mean of theirs (each calibrated by its own
    temperature), so a looked-closer crop is chosen on the mean too; a photo is
    familiar when more than half of them find it so (with two, both must).
    Three averaged models named 1-2 points more of the held-out photos right than one
    (1-3 points more of the unlike pictures, about the spread of training seeds), for
    2.2-2.8 times the time (`benchmarks/RESULTS.md`).

    Args:
        model: a trained classifier (raw RGB 0..255 in, probabilities out), or a
            list of them (the same classes and input size) to average.
        sources: file paths, URLs, PIL images or arrays (see `load_image`).
        top_k: how many classes to list per image (clipped to the number of classes).
        class_names: one name per model output (e.g. from `evaluate.load_trained`);
            defaults to the Flowers-102 names.
        look_closer: score the crops when the whole photo gives no sure answer.
        sure: the top probability below which the model looks closer (use the
            threshold you pass to `verdict`).
        reference: a `flowerlib.novelty.Reference`, or the path of the
            `reference.npz` training wrote beside the model: each photo is then
            marked familiar or not (its features near a training photo's). With
            several models, a list of one reference per model, or None.
        batch_size: images per forward pass.
        **load_kwargs: `max_pixels`, `max_bytes`, `max_file_bytes`, `timeout` (see `load_image`).

    Returns:
        DataFrame with columns `source` (position in `sources`), `rank`, `index`,
        `name`, `probability`, `view` (`"whole"`, or `"closer"` when a crop gave
        the answer), `box` (that crop's `(top, left, side)` in the photo's
        pixels, else None), `familiar` (True/False, None without a
        reference), `crop_familiar` (whether that crop itself looks like a
        training photo: True/False, None for a whole-photo answer or without a
        reference) and `closer_skipped` (why a not-sure photo was not looked at
        closer: `"small"` or `"enlarged"`, else None): `top_k` rows per image.

    Raises:
        PredictionError: a source is not a usable image (the message names it),
            or `top_k` / `class_names` / `sure` / `reference` do not fit the model.
    """
    from flowerlib.pipeline import resize_and_crop

    top_k = _check_top_k(top_k)
    models, references = _models_and_references(model, reference)
    names = _names(models[0], class_names)
    size = _model_input_size(models[0])
    sure = _check_fraction(sure, "sure", allow_one=False, meaning="below it the model looks closer")
    sources = list(sources)
    if not sources:
        raise PredictionError("No images given: pass at least one file path, URL, PIL image or array.")
    keep, detail = crop_resolutions(size)
    batch, photos = [], []  # the whole views; for looking closer, each photo and its scale
    for source in sources:
        image = load_image(source, **load_kwargs)
        batch.append(resize_and_crop(image, size).numpy())
        small = _bounded(image, keep) if look_closer else image[:0]
        photos.append((small, image.shape[0] / max(1, small.shape[0])))
    scorers = [m if r is None else _with_features(m) for m, r in zip(models, references, strict=True)]
    probs, familiar, far = _score(scorers, references, np.stack(batch), batch_size)
    views: list[str] = ["whole"] * len(sources)
    skipped: list[str | None] = [None] * len(sources)
    boxes: list[tuple[int, int, int] | None] = [None] * len(sources)
    crop_familiar: list[bool | None] = [None] * len(sources)  # of the crop that answered
    for i, (photo, scale) in enumerate(photos):
        if not look_closer or (probs[i].max() >= sure and familiar[i] is not False):
            continue
        unfamiliar = familiar[i] is False
        grid, share = (
            (UNFAMILIAR_GRID, UNFAMILIAR_MIN_CROP_SHARE) if unfamiliar else (LOOK_CLOSER_GRID, MIN_CROP_SHARE)
        )
        crops = closer_boxes(*photo.shape[:2], grid, min_side=math.ceil(share * size))
        if not crops or looks_enlarged(_bounded(photo, detail)):  # too small, or enlarged: all blur
            skipped[i] = "enlarged" if crops else "small"
            continue
        views_i = np.stack([resize_and_crop(photo[t : t + s, x : x + s], size).numpy() for t, x, s in crops])
        closer, near, crop_far = _score(scorers, references, views_i, batch_size)
        # Crops that look like a training photo come first: the most confident crop was often
        # background or half a flower. With three trained models on 4 sets of 200 unlike
        # pictures: 0.676 -> 0.692 named right, no kind losing; held-out photos 0.929 -> 0.934
        # (`benchmarks/look_closer_rules.py`, RESULTS.md). Never letting an unfamiliar crop
        # answer lost small flowers: a tight crop of one on its background is often unfamiliar.
        # So when no crop is familiar, the crops nearer a training photo than the whole photo
        # compete, and none when none is: a blurred crop of a blown-up thumbnail is farther.
        # Three models x 8 sets of unlike pictures (256-768 px): 0.678 -> 0.692, 20 pairs up
        # and none down (compressed thumbnails up to +8.7); held-out photos 0.934 -> 0.936.
        if references[0] is not None:
            competing = np.asarray(near, bool) if any(near) else crop_far < far[i]
            closer = np.where(competing[:, None], closer, 0.0)
        best = int(closer.max(axis=1).argmax())
        # A crop may settle between the whole photo's leading candidates; it may name another
        # class only when the photo is unfamiliar (the flower may be too small to tell in it).
        candidates = np.argsort(-probs[i], kind="stable")[:CLOSER_CANDIDATES]
        allowed = unfamiliar or int(closer[best].argmax()) in candidates
        if allowed and closer[best].max() > probs[i].max():
            # The answer is the mean of that crop's and the whole photo's probabilities: the
            # most confident of dozens of crops is confident by selection. With three trained
            # models (held-out photos, web thumbnails, 24 sets of unlike pictures), a crop's
            # answers stated 0.94, 0.83 and 0.89 on average and were right 0.69, 0.57 and 0.76
            # of the time; the mean states 0.67, 0.60 and 0.56, names the right class as often
            # (0.936, 0.879 -> 0.882, 0.692), and a not-sure answer's candidates hold it more
            # often (0.79 -> 0.87, 0.73 -> 0.87, 0.72 -> 0.73; 2.2-3.0 -> 3.3-4.3 of them named)
            # (`benchmarks/look_closer_rules.py`, RESULTS.md).
            probs[i], views[i], crop_familiar[i] = (closer[best] + probs[i]) / 2, "closer", near[best]
            t, x, s = crops[best]
            boxes[i] = (round(t * scale), round(x * scale), round(s * scale))
    tables = []
    for position, p in enumerate(probs):
        table = _top_table(p, min(top_k, len(names)), names)
        table.insert(0, "source", position)
        table["view"] = views[position]
        table["box"] = [boxes[position]] * len(table)
        table["familiar"] = familiar[position]
        table["crop_familiar"] = crop_familiar[position]
        table["closer_skipped"] = skipped[position]
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def predict(
    model: keras.Model | Sequence[keras.Model],
    source: Any,
    top_k: int = 5,
    class_names: Sequence[str] | None = None,
    *,
    look_closer: bool = True,
    sure: float = SURE_PROBABILITY,
    reference: Any = None,
    **load_kwargs: Any,
) -> pd.DataFrame:
    """Classify one image and return its `top_k` classes.

    Args:
        model: a trained classifier (raw RGB 0..255 in, probabilities out), e.g.
            `evaluate.load_trained(cfg).model`, or a list of them to average (see
            `predict_many`).
        source: a file path, an `http(s)://` URL, image bytes, a `PIL.Image.Image`
            or an array `(H, W)`, `(H, W, 3)`, `(H, W, 4)` in 0..255. Any size:
            it is resized and centre-cropped like the test images.
        top_k: how many classes to list (clipped to the number of classes).
        class_names: one name per model output (e.g. from `evaluate.load_trained`);
            defaults to the Flowers-102 names.
        look_closer, sure, reference: see `predict_many`.
        **load_kwargs: `max_pixels`, `max_bytes`, `max_file_bytes`, `timeout` (see `load_image`).

    Returns:
        DataFrame with columns `rank` (1 = most probable), `index` (class
        index), `name`, `probability`, and `view`, `box`, `familiar`,
        `crop_familiar`, `closer_skipped` (see `predict_many`).

    Raises:
        PredictionError: the source is not a usable image, or `top_k` /
            `class_names` do not fit the model.
    """
    table = predict_many(
        model,
        [source],
        top_k,
        class_names,
        look_closer=look_closer,
        sure=sure,
        reference=reference,
        **load_kwargs,
    )
    return table.drop(columns="source")


# --- an honest answer ----------------------------------------------------------------


class Candidate(NamedTuple):
    """One class a `Verdict` names: its class `index`, `name` and `probability`."""

    index: int
    name: str
    probability: float


@dataclass(frozen=True)
class Verdict:
    """What the model answers about one picture, in words (`verdict` makes it).

    Attributes:
        sure: the top probability reached the threshold, for a familiar whole photo
            or a looked-closer answer from a familiar crop: the answer is `name`.
        name: the most probable class (the answer when `sure`).
        probability: its calibrated probability.
        candidates: the most probable classes, most probable first, until together
            they reach `CANDIDATE_MASS` (at most the rows of the table given);
            always starts with `name`.
        sentence: one plain line: ``"sunflower (97 %)"`` when sure (``"sunflower (82 %),
            after a closer look at part of the photo"`` from a crop), else
            ``"Not sure: sunflower (41 %), black-eyed susan (30 %) or barbeton daisy (20 %)"``
            (``"Not sure; the whole photo and a closer look at part of it say: ..."``
            from a crop)
            (ending with ``"or other classes (N %)"`` when the candidates listed
            fall short of `CANDIDATE_MASS`). `str(verdict)` is this sentence.
        threshold: the `sure` threshold that was applied.
        looked_closer: the answer came from looking closer (`predict_many`'s
            `view` is `"closer"`), said in the sentence; sure only when the crop
            looks like a training photo.
        familiar: False when the photo looks unlike every training photo (then
            never sure, unless a familiar crop answered, and a not-sure sentence
            warns); None when not checked.
        closer_skipped: `"small"` or `"enlarged"` when the model could not look
            closer at a not-sure photo (its crops would be blur; the sentence says
            so and what may help), else None.
        crop_familiar: for a looked-closer answer, whether the crop that answered
            looks like a training photo; None for a whole-photo answer or without a
            reference.
    """

    sure: bool
    name: str
    probability: float
    candidates: tuple[Candidate, ...]
    sentence: str
    threshold: float
    looked_closer: bool = False
    familiar: bool | None = None
    closer_skipped: str | None = None
    crop_familiar: bool | None = None

    def __str__(self) -> str:
        return self.sentence


def _check_fraction(value: Any, what: str, *, allow_one: bool, meaning: str) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
    if ok:
        value = float(value)
        ok = 0.0 < value < 1.0 or (allow_one and value == 1.0)
    if not ok:
        bounds = "above 0 and at most 1" if allow_one else "strictly between 0 and 1"
        raise PredictionError(f"{what} must be a probability {bounds} ({meaning}). Received {what}={value!r}")
    return value


#: Sums of probabilities within this of `mass` reach it (0.6 + 0.3 is 0.8999999999999999
#: in floating point, and a float32 softmax sums to 1 only within about 1e-7).
_ROUNDING = 1e-6


def _in_words(probability: float) -> str:
    """A probability as a whole percentage, never rounded to a false 0 % or 100 %."""
    percent = round(100 * probability)
    if percent == 0 and probability > 0:
        return "<1 %"
    if percent == 100 and probability < 1:
        return ">99 %"
    return f"{percent} %"


def _listed(parts: list[str], separator: str) -> str:
    return parts[0] if len(parts) == 1 else separator.join(parts[:-1]) + " or " + parts[-1]


def verdict(top: pd.DataFrame, sure: float = SURE_PROBABILITY, *, mass: float = CANDIDATE_MASS) -> Verdict:
    """The model's answer about one picture, saying "not sure" when its top probability is low.

    Read the top probability as a probability: the models are calibrated, so
    answers given at 80 % are right about 80 % of the time (on pictures like the
    validation photos; less on pictures unlike them). Below `sure` the model does
    not pick one class but names the candidates it hesitates between. An answer
    about a photo unlike every training photo (`familiar` False) is never sure
    either, unless it was found by looking closer in a crop that itself looks like
    a training photo (`view == "closer"`, `crop_familiar` True: its probabilities
    are the mean of that crop's and the whole photo's). A looked-closer answer from
    an unfamiliar crop (when no crop looks like a training photo), or without a
    reference, is never sure: only the answers from a familiar crop were measured to
    be right as often as the whole photo's sure answers. With three trained models,
    looked-closer answers from a familiar crop at `SURE_PROBABILITY` and up were
    right 469 of 499 times on unlike pictures (0.94), 19 of 20 on held-out photos, 15
    of 16 on web thumbnails; giving them as sure raised the sure answers from 0.263 to
    0.367 of the unlike pictures, right 0.892 -> 0.906. A weaker model (the official
    split), on photos nothing in its training saw: about 37 of 46 right (RESULTS.md).

    Args:
        top: one picture's table from `predict` (columns `index`, `name`,
            `probability`; `rank` and a single-valued `source` may be there too),
            e.g. `verdict(predict(model, "photo.jpg"))`. The candidates come from
            its rows, so a larger `top_k` can name more of them.
        sure: the calibrated top probability from which the answer is given as
            sure (strictly between 0 and 1; default `SURE_PROBABILITY`). Choose
            it on held-out pictures (see `SURE_PROBABILITY`).
        mass: the candidates are the most probable classes until together they
            reach this share of the probability (above 0, at most 1).

    Returns:
        A `Verdict`: `sure`, `name`, `probability`, `candidates`, `sentence`,
        `threshold`, `looked_closer`, `familiar`, `closer_skipped`, `crop_familiar`.

    Raises:
        PredictionError: `sure` or `mass` is not a probability in range, or `top`
            is not one picture's table of probabilities.
    """
    sure = _check_fraction(
        sure, "sure", allow_one=False, meaning="the calibrated top probability from which an answer is sure"
    )
    mass = _check_fraction(
        mass, "mass", allow_one=True, meaning="the share of probability the candidates together reach"
    )
    if not isinstance(top, pd.DataFrame) or not {"index", "name", "probability"} <= set(top.columns):
        raise PredictionError(
            "verdict needs the table `predict` returns (columns index, name, probability). "
            f"Received {_describe(top)}"
        )
    if "source" in top.columns and top["source"].nunique() > 1:
        raise PredictionError(
            f"The table holds the predictions of {top['source'].nunique()} pictures; pass one picture's rows, "
            "e.g. table[table['source'] == 0], or use predict for one picture."
        )
    if len(top) == 0:
        raise PredictionError("The table is empty: there is no prediction to judge.")
    probs = top["probability"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1 or probs.sum() > 1 + 1e-4:
        raise PredictionError(
            "The table's probabilities must lie in 0..1 and sum to at most 1 (one picture's softmax output). "
            f"Received {probs.round(4).tolist()}"
        )
    order = np.argsort(-probs, kind="stable")
    rows = top.iloc[order]
    candidates: list[Candidate] = []
    total = 0.0
    for index, name, probability in zip(rows["index"], rows["name"], rows["probability"], strict=True):
        candidates.append(Candidate(int(index), str(name), float(probability)))
        total += float(probability)
        if total >= mass - _ROUNDING:
            break
    best = candidates[0]
    closer = _single(top, "view", "whole") == "closer"
    # whether the photo, and the crop that answered, look like a training photo (None: not known)
    familiar, crop_familiar = (
        None if f is None else bool(f) for f in (_single(top, c, None) for c in ("familiar", "crop_familiar"))
    )
    skipped = _single(top, "closer_skipped", None)
    # A looked-closer answer may be sure only from a crop that looks like a training photo.
    trusted = crop_familiar is True if closer else familiar is not False
    is_sure = best.probability >= sure and trusted
    if is_sure:
        sentence = f"{best.name} ({_in_words(best.probability)})"
        if closer:
            sentence += ", after a closer look at part of the photo"
    else:
        parts = [f"{c.name} ({_in_words(c.probability)})" for c in candidates]
        if total < mass - _ROUNDING:  # the table ran out before the candidates reached `mass`
            parts.append(f"other classes ({_in_words(max(0.0, 1.0 - total))})")
        # Names with commas in them (the synthetic classes' do) are listed with semicolons.
        separator = "; " if any("," in c.name for c in candidates) else ", "
        lead = "Not sure; the whole photo and a closer look at part of it say: " if closer else "Not sure: "
        sentence = lead + _listed(parts, separator)
        unlike = [
            w
            for w, known in (("the photo", familiar), ("the part looked at", crop_familiar))
            if known is False
        ]
        if unlike:
            verb = "looks" if len(unlike) == 1 else "look"
            sentence += f". {' and '.join(unlike).capitalize()} {verb} unlike every training photo, so this may well be wrong"
        if skipped is not None:
            sentence += ". " + _NO_CLOSER_LOOK.get(skipped, f"It was not looked at closer ({skipped})")
    return Verdict(
        sure=bool(is_sure),
        name=best.name,
        probability=best.probability,
        candidates=tuple(candidates),
        sentence=sentence,
        threshold=sure,
        looked_closer=closer,
        familiar=familiar,
        closer_skipped=skipped if not is_sure else None,
        crop_familiar=crop_familiar,
    )


#: What a not-sure answer adds when `predict_many` could not look closer (`closer_skipped`).
_NO_CLOSER_LOOK = {
    "small": "It is too small for a closer look: a larger photo may help",
    "enlarged": "It has too little detail for a closer look (blurred, or enlarged from a smaller photo): "
    "a sharper photo may help",
}


def _single(top: pd.DataFrame, column: str, default: Any) -> Any:
    """The one value of `column` in one picture's table (`default` when the column is absent or empty)."""
    if column not in top.columns:
        return default
    values = top[column].tolist()
    if any(v != values[0] and not (pd.isna(v) and pd.isna(values[0])) for v in values):
        raise PredictionError(f"The table's {column!r} column differs between rows; pass one picture's rows.")
    return default if pd.isna(values[0]) else values[0]


def example_photo() -> Path:
    """Path of a small flower picture shipped with flowerlib that is not in the dataset.

    It is drawn procedurally (see `flowerlib/data/README.md`), so the project is
    free to use and redistribute it.
    """
    path = resources.files("flowerlib") / "data" / EXAMPLE_PHOTO
    return Path(str(path))
