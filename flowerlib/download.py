"""Step 1: put Oxford Flowers-102 into the data directory, verified.

Three files make the dataset, all published at
https://www.robots.ox.ac.uk/~vgg/data/flowers/102/:

- `102flowers.tgz` (344,862,509 bytes): the 8,189 images, `jpg/image_00001.jpg` ...
- `imagelabels.mat` (502 bytes): `labels`, the class (1..102) of every image.
- `setid.mat` (14,989 bytes): `trnid`, `valid`, `tstid`, the official split.

`fetch_dataset(cfg)` gets them from the first of these that applies:

1. `cfg.synthetic`: generate the procedurally drawn dataset (`flowerlib.synthetic`).
2. `cfg.source`: a local `102flowers.tgz` (with the two `.mat` files beside it,
   or downloaded) or an extracted folder holding `jpg/` and the two `.mat` files.
3. `cfg.mirror` (a base URL), else the official URL.

Every file is checked against its known size and sha256. Downloads go through
pooch (retries, a tqdm progress bar, a temporary file renamed into place only
once verified), so an interrupted or corrupted download never leaves a file a
later run would trust. The archive is extracted safely (no member may escape the
target, no links or devices: Python's `tarfile` "data" filter on top of our own
checks) and atomically (into a temporary folder, then renamed), and the image
count is checked against `imagelabels.mat`.

When everything is in place, a small `dataset.json` in the data directory
records what was verified, and the next `fetch_dataset` returns at once without
touching the network (a `<file>.verified` marker beside the archive likewise
spares re-hashing 345 MB). Every user-facing failure is one `DownloadError`
whose message says what was wrong and what to do.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tarfile
import time
import uuid
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowerlib.artifacts import (
    Layout,
    atomic_path,
    image_file,
    read_json,
    sha256_file,
    verified_marker,
    write_json,
)
from flowerlib.errors import FlowerlibError

if TYPE_CHECKING:
    from flowerlib.config import Config

logger = logging.getLogger(__name__)

OFFICIAL_BASE_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
NUM_IMAGES = 8189
MARKER_VERSION = 1
_IMAGE_RE = re.compile(r"^image_(\d{5})\.jpg$")
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")
_POOCH_TMP_RE = re.compile(r"^tmp[a-z0-9_]{8}$")  # tempfile.NamedTemporaryFile names


class DownloadError(FlowerlibError, RuntimeError):
    """The dataset cannot be fetched, verified or extracted; the message says what to do."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of the dataset and what it must look like.

    Args:
        name: file name, both at the base URL and on disk.
        size: exact size in bytes.
        sha256: hex SHA-256 of the content.
    """

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Sources:
    """Where the three files live and their checksums (the official ones by default).

    Tests pass their own (a loopback server and a synthetic archive); a mirror
    replaces only `base_url` (see `with_base_url`).

    Args:
        base_url: URL of the folder holding the three files.
        archive: the image archive, `102flowers.tgz`.
        labels: `imagelabels.mat`.
        setid: `setid.mat`.
    """

    base_url: str = OFFICIAL_BASE_URL
    archive: RemoteFile = RemoteFile(
        "102flowers.tgz", 344_862_509, "2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246"
    )
    labels: RemoteFile = RemoteFile(
        "imagelabels.mat", 502, "4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d"
    )
    setid: RemoteFile = RemoteFile(
        "setid.mat", 14_989, "46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd"
    )

    def url(self, file: RemoteFile) -> str:
        """Full URL of `file` under `base_url`."""
        return self.base_url.rstrip("/") + "/" + file.name

    def with_base_url(self, base_url: str) -> Sources:
        """The same files and checksums at another base URL (a mirror)."""
        return replace(self, base_url=base_url)


OFFICIAL = Sources()


# --- markers: what has been verified -----------------------------------------------------


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _is_trusted(path: Path, expected: RemoteFile) -> bool:
    """True when `path` has the expected size and a marker vouching for this very file."""
    marker = verified_marker(path)
    if not path.is_file() or path.stat().st_size != expected.size or not marker.is_file():
        return False
    try:
        record = read_json(marker)
    except (ValueError, OSError):
        return False
    return record == {"sha256": expected.sha256, **_stat_key(path)}


def _mark_verified(path: Path, expected: RemoteFile) -> None:
    write_json(verified_marker(path), {"sha256": expected.sha256, **_stat_key(path)})


def _forget(path: Path) -> None:
    """Delete a file and its marker: nothing a later run could trust is left."""
    verified_marker(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def verify_file(path: str | os.PathLike, expected: RemoteFile) -> None:
    """Check a local file's size and sha256.

    Args:
        path: the file.
        expected: its expected size and sha256.

    Raises:
        DownloadError: the file is missing or differs, with both values in the message.
    """
    path = Path(path)
    if not path.is_file():
        raise DownloadError(f"{path} does not exist: expected {expected.name} ({expected.size:,} bytes).")
    size = path.stat().st_size
    if size != expected.size:
        raise DownloadError(
            f"{path} has {size:,} bytes but {expected.name} has {expected.size:,}: it is incomplete or "
            "a different file. Download it again or point at the right file."
        )
    actual = sha256_file(path)
    if actual != expected.sha256:
        raise DownloadError(
            f"Checksum mismatch for {path}: sha256 {actual}, expected {expected.sha256} ({expected.name}). "
            "The file is corrupted or not the official one: download it again."
        )


# --- downloading ---------------------------------------------------------------------------


class _HtmlPage(Exception):
    """The server answered with an HTML page (error page, login portal, proxy)."""


class _WrongSize(Exception):
    """The transfer ended with a different number of bytes than expected."""


class _VerifyingDownloader:
    """pooch downloader: HTTP with a progress bar, then HTML sniffing and a size check.

    Runs inside pooch's temporary-file context, so a file that fails these
    checks (or pooch's sha256 check after them) is deleted, never renamed into place.
    """

    def __init__(self, expected: RemoteFile, *, progress: bool, timeout: float) -> None:
        self.expected = expected
        self.progress = progress
        self.timeout = timeout

    def __call__(self, url: str, output_file: str, pooch_instance: Any) -> None:
        import pooch
        from tqdm import tqdm

        bar: Any = False
        if self.progress:
            bar = tqdm(
                desc=self.expected.name,
                total=self.expected.size,
                unit="B",
                unit_scale=True,
                ncols=80,
                leave=True,
            )
        try:
            pooch.HTTPDownloader(progressbar=bar, chunk_size=1 << 16, timeout=self.timeout)(
                url, output_file, pooch_instance
            )
        finally:
            if bar is not False:
                bar.close()  # also when the transfer failed; closing twice is harmless
        with open(output_file, "rb") as f:
            head = f.read(512).lstrip().lower()
        if head.startswith(_HTML_STARTS):
            raise _HtmlPage()
        size = os.path.getsize(output_file)
        if size != self.expected.size:
            raise _WrongSize(f"received {size:,} bytes, expected {self.expected.size:,}")


def _clean_stale_temporaries(folder: Path) -> None:
    """Remove pooch temporaries (`tmp*`) that a killed process left behind."""
    if folder.is_dir():
        for path in folder.glob("tmp*"):
            if _POOCH_TMP_RE.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)


def download_file(
    url: str,
    target: str | os.PathLike,
    expected: RemoteFile,
    *,
    progress: bool = True,
    retries: int = 3,
    retry_wait: float = 1.0,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `target`, verified; do nothing when a verified copy is already there.

    A file already at `target` is trusted without hashing when its
    `<target>.verified` marker matches its size and modification time; a file
    without a valid marker is hashed once (no network) and kept if it matches.

    Args:
        url: where to download from.
        target: the final path of the file.
        expected: its size and sha256.
        progress: show a tqdm progress bar.
        retries: extra attempts after a network failure, a truncated transfer or
            a checksum mismatch (not after an HTTP 4xx or an HTML page).
        retry_wait: seconds to wait before the first retry, growing linearly.
        timeout: seconds without data before a connection attempt fails.

    Returns:
        `target` as a `Path`.

    Raises:
        DownloadError: the file could not be downloaded or does not match;
            nothing is left at `target` then.
    """
    import pooch
    import requests

    target = Path(target)
    if _is_trusted(target, expected):
        return target
    if target.is_file():
        try:
            verify_file(target, expected)
        except DownloadError:
            logger.info("%s is not the expected file; downloading it again", target)
        else:
            _mark_verified(target, expected)
            return target
    _forget(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temporaries(target.parent)

    offline = "or download the files yourself and set FLOWERS_SOURCE to the archive or the extracted folder."
    advice = f"Check the URL, FLOWERS_MIRROR and your network or proxy, {offline}"
    downloader = _VerifyingDownloader(expected, progress=progress, timeout=timeout)
    problem = ""
    for attempt in range(retries + 1):
        if attempt:
            logger.warning("Retrying %s (attempt %d of %d): %s", url, attempt + 1, retries + 1, problem)
            time.sleep(retry_wait * attempt)
        try:
            pooch.retrieve(
                url,
                known_hash=f"sha256:{expected.sha256}",
                fname=target.name,
                path=target.parent,
                downloader=downloader,
                progressbar=False,
            )
        except _HtmlPage:
            raise DownloadError(
                f"The server sent an HTML page instead of {expected.name} ({url}): check the URL/mirror/"
                f"proxy (FLOWERS_MIRROR), {offline}"
            ) from None
        except requests.HTTPError as e:
            status = e.response.status_code if e.response is not None else None
            problem = f"HTTP {status} {getattr(e.response, 'reason', '')}".strip()
            if status is not None and status < 500:
                raise DownloadError(
                    f"Downloading {url} failed: the server answered {problem}. {advice}"
                ) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as e:
            raise DownloadError(f"{url!r} is not a valid download URL ({e}). {advice}") from None
        except _WrongSize as e:
            problem = f"incomplete transfer ({e})"
        except requests.exceptions.ChunkedEncodingError as e:
            problem = f"the connection broke off mid-transfer ({e})"
        except requests.RequestException as e:
            problem = f"{type(e).__name__}: {e}"
        except ValueError as e:  # pooch's sha256 mismatch
            match = re.search(r"got:? *'?([0-9a-f]{64})", str(e))
            actual = match.group(1) if match else "a different value"
            problem = (
                f"checksum mismatch: sha256 {actual}, expected {expected.sha256}; the file on the server "
                "is corrupted or not the official one"
            )
        else:
            _mark_verified(target, expected)
            return target
        finally:
            _clean_stale_temporaries(target.parent)
    _forget(target)
    raise DownloadError(
        f"Downloading {url} failed after {retries + 1} attempt(s): {problem}. Nothing was kept. {advice}"
    )


# --- extraction ------------------------------------------------------------------------------


def _image_id(name: str) -> int | None:
    match = _IMAGE_RE.match(name)
    return int(match.group(1)) if match else None


def _check_member(member: tarfile.TarInfo, archive: Path) -> bool:
    """True for an image to extract, False to skip; raises for anything unsafe."""
    name = member.name
    parts = Path(name).parts
    unsafe = (
        name.startswith(("/", "\\"))
        or ".." in parts
        or not (member.isfile() or member.isdir())
        or not parts
        or parts[0] != "jpg"
        or len(parts) > 2
        or (len(parts) == 2 and member.isdir())
    )
    if unsafe:
        if member.issym() or member.islnk():
            kind = "link"
        elif not (member.isfile() or member.isdir()):
            kind = "device or special file"
        else:
            kind = "path"
        raise DownloadError(
            f"Refusing to extract {archive}: member {name!r} is an unsafe {kind} (only regular files "
            "directly under jpg/ are allowed). The archive is not the official 102flowers.tgz: delete it "
            "and download it again."
        )
    return member.isfile() and _image_id(parts[-1]) is not None


def extract_archive(
    archive: str | os.PathLike, layout: Layout, *, num_images: int, progress: bool = True
) -> None:
    """Safely and atomically extract the images of `archive` into `layout.jpg_dir`.

    Members must be the folder `jpg` or regular files directly under `jpg/`;
    links, devices, absolute paths and `..` are refused before anything reaches
    `jpg/`. Files not named `image_XXXXX.jpg` are skipped. Extraction goes to a
    temporary folder inside the data directory and is renamed into place only
    when exactly `image_00001.jpg` .. `image_{num_images}.jpg` are there.

    Args:
        archive: the `.tgz`.
        layout: the data directory.
        num_images: the number of images `imagelabels.mat` labels.
        progress: show a tqdm progress bar.

    Raises:
        DownloadError: an unsafe member, a corrupt archive or the wrong images.
    """
    from tqdm import tqdm

    archive = Path(archive)
    layout.root.mkdir(parents=True, exist_ok=True)
    for stale in layout.root.glob(".extract-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = layout.root / f".extract-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        try:
            with (
                tarfile.open(archive, "r:gz") as tar,
                tqdm(total=num_images, desc="extracting", unit="img", ncols=80, disable=not progress) as bar,
            ):
                for member in tar:
                    if _check_member(member, archive):
                        tar.extract(member, tmp, filter="data")
                        bar.update(1)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DownloadError(
                f"{archive} is not a readable .tgz archive ({type(e).__name__}: {e}). Delete it and "
                "download it again."
            ) from None
        _check_images(tmp / "jpg", num_images, f"{archive} (extracted)", allow_missing=False)
        _swap_in(tmp / "jpg", layout.jpg_dir, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _list_image_ids(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return sorted(i for e in entries if (i := _image_id(e.name)) is not None)


def _check_images(folder: Path, num_images: int, what: str, *, allow_missing: bool) -> list[int]:
    """The image ids in `folder`; raises unless they are 1..num_images (or a subset, if allowed)."""
    ids = _list_image_ids(folder)
    extra = [i for i in ids if not 1 <= i <= num_images]
    if extra:
        raise DownloadError(
            f"{what} holds {image_file(extra[0])} but imagelabels.mat labels only {num_images:,} images: the "
            "images and the .mat files do not belong together."
        )
    if not ids or (len(ids) != num_images and not allow_missing):
        missing = sorted(set(range(1, num_images + 1)) - set(ids))
        raise DownloadError(
            f"{what} holds {len(ids):,} of the {num_images:,} images imagelabels.mat labels "
            f"(missing e.g. {image_file(missing[0])}). The archive or folder is incomplete: get it again."
        )
    return ids


def _swap_in(new: Path, target: Path, scratch: Path) -> None:
    """Rename folder `new` onto `target`; an old `target` moves into `scratch` first."""
    if target.exists():
        os.replace(target, scratch / f"old-{uuid.uuid4().hex[:8]}")
    os.replace(new, target)


# --- the dataset as a whole ----------------------------------------------------------------


def _num_labels(path: Path) -> int:
    """Length of `labels` in `imagelabels.mat` (already checksum-verified)."""
    import scipy.io

    try:
        return int(scipy.io.loadmat(path)["labels"].size)
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise DownloadError(
            f"{path} is not a readable imagelabels.mat ({e}). Delete it and re-run."
        ) from None


def dataset_info(layout: Layout) -> dict[str, Any] | None:
    """What `fetch_dataset` verified in this data directory, or `None` if nothing.

    Returns:
        The contents of `dataset.json`: `source` (`"synthetic"`, `"download"`,
        `"archive"` or `"folder"`), `num_labels` (images labelled in
        `imagelabels.mat`), `num_images` (images present), `partial` (a local
        folder with only some of the images), the two `.mat` files' sha256 and
        size, and for synthetic data its parameters.
    """
    try:
        info = read_json(layout.dataset_marker)
    except (FileNotFoundError, ValueError, OSError):
        return None
    return info if isinstance(info, dict) and info.get("version") == MARKER_VERSION else None


def is_complete(layout: Layout) -> bool:
    """Whether the data directory holds a dataset `fetch_dataset` verified, still intact.

    Cheap enough to call every time (no network, no hashing of the images): the
    marker must exist, the two `.mat` files must match their recorded sha256,
    and `jpg/` must hold exactly the recorded images.

    Args:
        layout: the data directory.

    Returns:
        True when nothing needs to be fetched.
    """
    info = dataset_info(layout)
    if info is None:
        return False
    try:
        for key, path in (("labels", layout.labels_mat), ("setid", layout.setid_mat)):
            if not path.is_file() or path.stat().st_size != info[key]["size"]:
                return False
            if sha256_file(path) != info[key]["sha256"]:
                return False
        return len(_list_image_ids(layout.jpg_dir)) == info["num_images"]
    except (KeyError, TypeError, OSError):
        return False


def _record(layout: Layout, source: str, *, num_labels: int, num_images: int, **extra: Any) -> None:
    info = {
        "version": MARKER_VERSION,
        "source": source,
        "num_labels": num_labels,
        "num_images": num_images,
        "partial": num_images != num_labels,
        "labels": {"sha256": sha256_file(layout.labels_mat), "size": layout.labels_mat.stat().st_size},
        "setid": {"sha256": sha256_file(layout.setid_mat), "size": layout.setid_mat.stat().st_size},
        **extra,
    }
    write_json(layout.dataset_marker, info)


def _copy_verified(src: Path, dst: Path, expected: RemoteFile) -> None:
    verify_file(src, expected)
    if src.resolve() != dst.resolve():
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def _link_or_copy(paths: Iterable[Path], folder: Path) -> None:
    folder.mkdir(parents=True)
    for src in paths:
        dst = folder / src.name
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not allowed: copy instead
            shutil.copyfile(src, dst)


def _from_folder(folder: Path, layout: Layout, sources: Sources) -> None:
    src = Layout(folder)
    missing = [p.name for p in (src.jpg_dir, src.labels_mat, src.setid_mat) if not p.exists()]
    if missing:
        raise DownloadError(
            f"FLOWERS_SOURCE={str(folder)!r} lacks {missing}: a source folder must hold jpg/ (the extracted "
            "images), imagelabels.mat and setid.mat. Point at that folder or at 102flowers.tgz."
        )
    _copy_verified(src.labels_mat, layout.labels_mat, sources.labels)
    _copy_verified(src.setid_mat, layout.setid_mat, sources.setid)
    num_labels = _num_labels(layout.labels_mat)
    ids = _check_images(src.jpg_dir, num_labels, f"FLOWERS_SOURCE={str(folder)!r}", allow_missing=True)
    if src.jpg_dir.resolve() != layout.jpg_dir.resolve():
        for stale in layout.root.glob(".extract-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = layout.root / f".extract-{uuid.uuid4().hex[:8]}"
        try:
            _link_or_copy((src.image_path(i) for i in ids), tmp / "jpg")
            _swap_in(tmp / "jpg", layout.jpg_dir, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if len(ids) != num_labels:
        warnings.warn(
            f"{folder} holds {len(ids):,} of the {num_labels:,} labelled images; only those are used "
            "(the split tables skip the missing ones).",
            UserWarning,
            stacklevel=3,
        )
    _record(layout, "folder", num_labels=num_labels, num_images=len(ids), location=str(folder))


def _fetch_mat_files(layout: Layout, sources: Sources, beside: Path | None, **download_kw: Any) -> None:
    for expected, target in ((sources.labels, layout.labels_mat), (sources.setid, layout.setid_mat)):
        local = beside / expected.name if beside is not None else None
        if local is not None and local.is_file():
            _copy_verified(local, target, expected)
        else:
            download_file(sources.url(expected), target, expected, **download_kw)


def _synthetic(cfg: Config, layout: Layout) -> Layout:
    from flowerlib import synthetic

    params = {
        "num_classes": cfg.num_classes,
        "images_per_class": cfg.synthetic_images_per_class,
        "image_size": max(cfg.image_size, 64),
        "seed": cfg.seed,
    }
    info = dataset_info(layout)
    if info is not None and info.get("synthetic") == params and is_complete(layout):
        return layout
    if info is not None and info.get("source") != "synthetic":
        raise DownloadError(
            f"{layout.root} holds the real dataset (source {info.get('source')!r}); generating synthetic "
            "data there would replace it. Use another FLOWERS_DATA_DIR for synthetic data (the smoke "
            "profile's default is its own folder)."
        )
    layout.dataset_marker.unlink(missing_ok=True)
    synthetic.write_dataset(layout.root, **params)
    n = params["num_classes"] * params["images_per_class"]
    _record(layout, "synthetic", num_labels=n, num_images=n, synthetic=params)
    return layout


def fetch_dataset(
    cfg: Config,
    *,
    sources: Sources | None = None,
    progress: bool = True,
    retries: int = 3,
    retry_wait: float = 1.0,
    timeout: float = 60.0,
) -> Layout:
    """Make sure `cfg.data_dir` holds the complete, verified dataset; return its `Layout`.

    Returns at once, without network access, when a previous call completed
    (see `is_complete`). Otherwise, in this order: generate the synthetic
    dataset (`cfg.synthetic`); use `cfg.source` (a `.tgz`, whose `.mat` files are
    taken from beside it or downloaded, or an extracted folder, whose files are
    hard-linked or copied); download from `cfg.mirror` or the official URL.

    Args:
        cfg: the configuration (`data_dir`, `synthetic`, `source`, `mirror`,
            and for synthetic data `num_classes`, `synthetic_images_per_class`,
            `image_size`, `seed`).
        sources: file names, sizes and checksums (and base URL); the official
            ones by default. `cfg.mirror` replaces the base URL.
        progress: show progress bars.
        retries: extra download attempts after a transient failure.
        retry_wait: seconds before the first retry (then growing linearly).
        timeout: network timeout in seconds.

    Returns:
        The data directory's `Layout`.

    Raises:
        DownloadError: the dataset could not be fetched, verified or extracted;
            the message says what to do.
    """
    layout = Layout(cfg.data_dir)
    if cfg.synthetic:
        return _synthetic(cfg, layout)
    sources = sources or OFFICIAL
    if cfg.mirror:
        sources = sources.with_base_url(cfg.mirror)
    info = dataset_info(layout)
    if (
        info is not None
        and "synthetic" not in info
        and info["labels"]["sha256"] == sources.labels.sha256
        and is_complete(layout)
    ):
        return layout
    layout.dataset_marker.unlink(missing_ok=True)
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(
            f"Cannot create the data directory {layout.root} ({e}). Set FLOWERS_DATA_DIR to a writable folder."
        ) from None
    download_kw = {"progress": progress, "retries": retries, "retry_wait": retry_wait, "timeout": timeout}

    source = cfg.source
    if source is not None:
        if source.is_dir():
            _from_folder(source, layout, sources)
            return layout
        if not source.is_file():
            raise DownloadError(
                f"FLOWERS_SOURCE={str(source)!r} does not exist. Point it at 102flowers.tgz or at a folder "
                "holding jpg/, imagelabels.mat and setid.mat, or unset it to download."
            )
        verify_file(source, sources.archive)
        archive, origin = source, "archive"
        _fetch_mat_files(layout, sources, source.parent, **download_kw)
    else:
        _fetch_mat_files(layout, sources, None, **download_kw)
        archive = download_file(sources.url(sources.archive), layout.archive, sources.archive, **download_kw)
        origin = "download"
    num_labels = _num_labels(layout.labels_mat)
    extract_archive(archive, layout, num_images=num_labels, progress=progress)
    _record(
        layout, origin, num_labels=num_labels, num_images=num_labels, location=str(source or sources.base_url)
    )
    return layout


__all__ = [
    "NUM_IMAGES",
    "OFFICIAL",
    "OFFICIAL_BASE_URL",
    "DownloadError",
    "RemoteFile",
    "Sources",
    "dataset_info",
    "download_file",
    "extract_archive",
    "fetch_dataset",
    "is_complete",
    "verified_marker",
    "verify_file",
]
