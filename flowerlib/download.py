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

Every file is checked against its known size and sha256. Downloads arrive in
`<file>.part`, resumed with HTTP `Range` requests after a break (or a killed
run); only transient failures are retried (a complete wrong file, an HTML page
or an HTTP 4xx fail at once); a complete part goes through pooch (a temporary
file renamed into place only once its checksum matches), so an interrupted or
corrupted download never leaves a file a later run would trust. Images from a
local folder are decoded once (`image_problem`); bad ones are left out by name.
All of it runs under the data directory's lock (`flowerlib.locks`). The archive is extracted safely (no member may escape the
target, no links or devices: Python's `tarfile` "data" filter on top of our own
checks) and atomically (into a temporary folder, then renamed), and the image
count is checked against `imagelabels.mat`.

When everything is in place, a small `dataset.json` in the data directory
records what was verified, and the next `fetch_dataset` returns at once without
touching the network (a `<file>.verified` marker beside the archive likewise
spares re-hashing 345 MB). Every user-facing failure is one `DownloadError`
(`DiskWriteError` for a full or read-only disk, `BusyError` for a busy folder)
whose message says what was wrong and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
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

from flowerlib import locks
from flowerlib.artifacts import (
    DiskWriteError,
    Layout,
    atomic_path,
    disk_write_error,
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
MAX_MEMBER_BYTES = 50 << 20  # the largest official image has well under 1 MB
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


class _WrongFile(Exception):
    """A complete answer that is not the expected file (wrong size or checksum): never retried."""


class _Incomplete(Exception):
    """The transfer stopped early; the bytes so far are kept for a resumed attempt."""


def partial_file(target: str | os.PathLike) -> Path:
    """`<target>.part`: the bytes received so far, kept so that a later attempt resumes there."""
    target = Path(target)
    return target.with_name(target.name + ".part")


def _looks_like_html(head: bytes) -> bool:
    """True for the start of a web page, also behind a byte-order mark, spaces or a comment."""
    head = head.lstrip(b"\xef\xbb\xbf\xff\xfe\x00 \t\r\n").replace(b"\x00", b"").lower()
    if head.startswith(_HTML_STARTS):
        return True
    return head.startswith(b"<!--") and any(tag in head for tag in _HTML_STARTS)


class _ResumingDownloader:
    """pooch downloader: HTTP with Range resume, Content-Type and HTML sniffing, size checks.

    The bytes go to `<target>.part`, resumed with an HTTP `Range` request when
    an earlier attempt (or a killed process) left some; only a part of exactly
    the expected size is moved to pooch's temporary file, which pooch then
    checks against the sha256 and renames into place.
    """

    def __init__(self, expected: RemoteFile, part: Path, *, progress: bool, timeout: float) -> None:
        self.expected = expected
        self.part = part
        self.progress = progress
        self.timeout = timeout
        self.resumed = False

    def __call__(self, url: str, output_file: str, pooch_instance: Any) -> None:
        import requests
        from tqdm.auto import tqdm

        expected = self.expected
        start = self.part.stat().st_size if self.part.is_file() else 0
        if start >= expected.size:
            self.part.unlink()
            start = 0
        headers = {"Range": f"bytes={start}-", "Accept-Encoding": "identity"} if start else {}
        with requests.get(url, stream=True, timeout=self.timeout, headers=headers) as response:
            response.raise_for_status()
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type in ("text/html", "application/xhtml+xml"):
                raise _HtmlPage()
            resumed = response.status_code == 206 and response.headers.get("Content-Range", "").startswith(
                f"bytes {start}-"
            )
            if not resumed:
                start = 0  # the server sends the whole file (no Range support): start again
            self.resumed = self.resumed or resumed
            chunks = response.raw.stream(1 << 16, decode_content=False)
            first = next(chunks, b"")
            if not start and _looks_like_html(first[:1024]):
                raise _HtmlPage()
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and start + int(length) != expected.size:
                raise _WrongFile(
                    f"the server announces {start + int(length):,} bytes, expected {expected.size:,}"
                )
            if start:
                logger.info("Resuming %s at byte %d", expected.name, start)
            bar = tqdm(
                desc=expected.name,
                total=expected.size,
                initial=start,
                unit="B",
                unit_scale=True,
                ncols=80,
                disable=not self.progress,
            )
            size = start
            try:
                with open(self.part, "ab" if start else "wb") as f:
                    for chunk in itertools.chain([first], chunks):
                        size += len(chunk)
                        if size > expected.size:
                            raise _WrongFile(
                                f"the server sends more than the expected {expected.size:,} bytes"
                            )
                        try:
                            f.write(chunk)
                        except OSError as e:
                            raise _write_error(e, self.part) from None
                        bar.update(len(chunk))
            finally:
                bar.close()
        if size != expected.size:
            raise _Incomplete(f"received {size:,} of {expected.size:,} bytes")
        os.replace(self.part, output_file)


def _write_error(e: OSError, target: Path) -> OSError:
    """`e` as a one-line `DiskWriteError` when the disk is full, read-only or forbidden."""
    error = disk_write_error(e, target)
    return e if error is None else error


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
    The bytes arrive in `<target>.part` (`partial_file`); an interrupted
    transfer, in this call or an earlier (killed) one, resumes there with an
    HTTP `Range` request when the server supports it.

    Failures are classified: a network error, a server error (HTTP 5xx, 408,
    429) or a transfer that stops early is retried; an HTML page, an HTTP 4xx,
    an invalid URL or a redirect to one, and a complete answer that is the wrong
    file (announced or received size, or checksum) fail at once.

    Args:
        url: where to download from.
        target: the final path of the file.
        expected: its size and sha256.
        progress: show a tqdm progress bar.
        retries: extra attempts after a transient failure.
        retry_wait: seconds to wait before the first retry, growing linearly.
        timeout: seconds without data before a connection attempt fails.

    Returns:
        `target` as a `Path`.

    Raises:
        DownloadError: the file could not be downloaded or does not match;
            nothing a later run would trust is left at `target` then.
        DiskWriteError: the folder is full, read-only or forbidden.
    """
    import pooch
    import requests
    import urllib3

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
    part = partial_file(target)
    try:
        _forget(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale_temporaries(target.parent)
    except OSError as e:
        raise _write_error(e, target) from None

    offline = (
        "or download the files yourself and set FLOWERS_SOURCE to the archive or the extracted folder. "
        "To try the project without the dataset, use synthetic data: --profile smoke (FLOWERS_PROFILE=smoke)."
    )
    advice = f"Check the URL, FLOWERS_MIRROR and your network or proxy, {offline}"
    wrong = f"Nothing was kept: the server or mirror sends the wrong file. {advice}"
    downloader = _ResumingDownloader(expected, part, progress=progress, timeout=timeout)
    problem = ""
    for attempt in range(retries + 1):
        if attempt:
            logger.warning("Retrying %s (attempt %d of %d): %s", url, attempt + 1, retries + 1, problem)
            time.sleep(retry_wait * attempt)
        try:
            with _pooch_says(progress):
                pooch.retrieve(
                    url,
                    known_hash=f"sha256:{expected.sha256}",
                    fname=target.name,
                    path=target.parent,
                    downloader=downloader,
                    progressbar=False,
                )
        except DiskWriteError:
            raise
        except _HtmlPage:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"The server sent an HTML page instead of {expected.name} ({url}): check the URL/mirror/"
                f"proxy (FLOWERS_MIRROR), {offline}"
            ) from None
        except _WrongFile as e:
            part.unlink(missing_ok=True)
            raise DownloadError(f"Wrong file at {url}: {e}, so it is not {expected.name}. {wrong}") from None
        except requests.HTTPError as e:
            status = e.response.status_code if e.response is not None else None
            problem = f"HTTP {status} {getattr(e.response, 'reason', '')}".strip()
            if status == 416:  # the part cannot be resumed: start again
                part.unlink(missing_ok=True)
            elif status is not None and status < 500 and status not in (408, 429):
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"Downloading {url} failed: the server answered {problem}. {advice}"
                ) from None
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            requests.exceptions.TooManyRedirects,
        ) as e:
            raise DownloadError(
                f"{url!r} is not a valid download URL, or redirects to one ({e}). {advice}"
            ) from None
        except _Incomplete as e:
            problem = f"incomplete transfer ({e}; the next attempt resumes there)"
        except (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError) as e:
            problem = f"the connection broke off mid-transfer ({e})"
        except requests.RequestException as e:
            problem = f"{type(e).__name__}: {e}"
        except ValueError as e:  # pooch's sha256 mismatch of a complete file
            match = re.search(r"got:? *'?([0-9a-f]{64})", str(e))
            actual = match.group(1) if match else "a different value"
            problem = f"checksum mismatch: sha256 {actual}, expected {expected.sha256}"
            part.unlink(missing_ok=True)
            if not downloader.resumed:
                raise DownloadError(
                    f"Wrong file at {url}: {problem}; the file on the server is corrupted or not the "
                    f"official {expected.name}. {wrong}"
                ) from None
            downloader.resumed = False  # a resumed file may mix two versions: one fresh attempt
        except OSError as e:
            raise _write_error(e, target) from None
        else:
            _mark_verified(target, expected)
            return target
        finally:
            _clean_stale_temporaries(target.parent)
    _forget(target)
    received = part.stat().st_size if part.is_file() else 0
    kept = (
        f"The {received:,} bytes received so far are kept in {part.name} and the next run resumes there."
        if received
        else "Nothing was received."
    )
    raise DownloadError(
        f"Downloading {url} failed after {retries + 1} attempt(s): {problem}. {kept} {advice}"
    )


@contextlib.contextmanager
def _pooch_says(enabled: bool):
    """Silence pooch's own "Downloading data from ..." lines unless progress is wanted (--quiet)."""
    import pooch

    log = pooch.get_logger()
    level = log.level
    if not enabled:
        log.setLevel("WARNING")
    try:
        yield
    finally:
        log.setLevel(level)


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
        or member.size > MAX_MEMBER_BYTES
    )
    if unsafe:
        if member.issym() or member.islnk():
            kind = "link"
        elif not (member.isfile() or member.isdir()):
            kind = "device or special file"
        elif member.size > MAX_MEMBER_BYTES:
            kind = f"member of {member.size:,} bytes (the limit for an image is {MAX_MEMBER_BYTES:,})"
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
    from tqdm.auto import tqdm

    archive = Path(archive)
    tmp = _scratch_folder(layout)
    try:
        try:
            with (
                tarfile.open(archive, "r:gz") as tar,
                tqdm(total=num_images, desc="extracting", unit="img", ncols=80, disable=not progress) as bar,
            ):
                for member in tar:
                    if _check_member(member, archive):
                        _extract_member(tar, member, tmp)
                        bar.update(1)
        except OSError as e:
            if (error := disk_write_error(e, layout.jpg_dir)) is not None:
                raise error from None  # the disk, not the archive: keep the archive
            raise _unreadable(archive, e) from None
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise _unreadable(archive, e) from None
        _check_images(tmp / "jpg", num_images, f"{archive} (extracted)", allow_missing=False)
        _swap_in(tmp / "jpg", layout.jpg_dir, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, folder: Path) -> None:
    """Extract one checked member with the "data" filter (Python >= 3.11.4; our checks cover older)."""
    try:
        tar.extract(member, folder, filter="data")
    except TypeError as e:  # Python 3.11.0-3.11.3: no `filter` argument
        if "filter" not in str(e):
            raise
        tar.extract(member, folder)


def _unreadable(archive: Path, e: BaseException) -> DownloadError:
    return DownloadError(
        f"{archive} is not a readable .tgz archive ({type(e).__name__}: {e}). Delete it and download it again."
    )


def _scratch_folder(layout: Layout) -> Path:
    """A fresh `.extract-*` folder in the data directory (stale ones of killed runs are removed)."""
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        for stale in layout.root.glob(".extract-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = layout.root / f".extract-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as e:
        raise _write_error(e, layout.jpg_dir) from None
    return tmp


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
        except OSError as e:  # another file system, or links not allowed: copy instead
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            shutil.copyfile(src, dst)


def image_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a readable JPEG (in words), or `None` when it is.

    Decodes the whole entropy-coded stream at 1/8 scale (libjpeg's DCT scaling),
    so a truncated or damaged file fails here rather than later in TensorFlow,
    at about a millisecond per photo.

    Args:
        path: the image file (a link is followed).

    Returns:
        `None` for a good JPEG, else a short reason such as `"not a JPEG (PNG)"`.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.format != "JPEG":
                return f"not a JPEG ({image.format})"
            if image.mode not in ("RGB", "L"):
                return f"a JPEG in {image.mode} colours (RGB or greyscale needed)"
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return f"unreadable ({e})"
    return None


def _bad_images(paths: list[Path], progress: bool) -> dict[str, str]:
    """`{file name: problem}` for the files of `paths` that are not readable JPEGs."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    workers = min(4, os.cpu_count() or 1)  # PIL decodes without holding the GIL
    with ThreadPoolExecutor(workers) as pool:
        problems = list(
            tqdm(
                pool.map(image_problem, paths, chunksize=64),
                total=len(paths),
                desc="checking images",
                unit="img",
                ncols=80,
                disable=not progress,
            )
        )
    return {p.name: problem for p, problem in zip(paths, problems, strict=True) if problem is not None}


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit:,} more" if len(names) > limit else "")


def _from_folder(folder: Path, layout: Layout, sources: Sources, progress: bool = True) -> None:
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
    rejected = ""
    bad = _bad_images([src.image_path(i) for i in ids], progress)
    if bad:
        ids = [i for i in ids if image_file(i) not in bad]
        first = next(iter(bad.items()))
        if not ids:
            raise DownloadError(
                f"None of the images in {src.jpg_dir} is a readable JPEG (e.g. {first[0]}: {first[1]}). "
                "Point FLOWERS_SOURCE at the extracted 102flowers.tgz."
            )
        rejected = (
            f" {len(bad):,} image(s) are not readable JPEGs and are left out: {_names(sorted(bad))} "
            f"(e.g. {first[0]}: {first[1]}); replace them from 102flowers.tgz to use them."
        )
    if src.jpg_dir.resolve() != layout.jpg_dir.resolve():
        tmp = _scratch_folder(layout)
        try:
            _link_or_copy((src.image_path(i) for i in ids), tmp / "jpg")
            _swap_in(tmp / "jpg", layout.jpg_dir, tmp)
        except OSError as e:
            raise _write_error(e, layout.jpg_dir) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    elif bad:
        raise DownloadError(
            f"FLOWERS_SOURCE={str(folder)!r} is the data directory itself, and {len(bad):,} of its images "
            f"are not readable JPEGs ({_names(sorted(bad))}). Replace or delete them, or import from "
            "another folder."
        )
    if len(ids) != num_labels:
        warnings.warn(
            f"{folder} holds {len(ids):,} of the {num_labels:,} labelled images; only those are used "
            "(the split tables skip the missing ones)." + rejected,
            UserWarning,
            stacklevel=3,
        )
    _record(
        layout,
        "folder",
        num_labels=num_labels,
        num_images=len(ids),
        location=str(folder),
        rejected=sorted(bad),
    )


def _fetch_mat_files(layout: Layout, sources: Sources, beside: Path | None, **download_kw: Any) -> None:
    for expected, target in ((sources.labels, layout.labels_mat), (sources.setid, layout.setid_mat)):
        local = beside / expected.name if beside is not None else None
        if local is not None and local.is_file():
            _copy_verified(local, target, expected)
        else:
            download_file(sources.url(expected), target, expected, **download_kw)


def _synthetic_params(cfg: Config) -> dict[str, int]:
    return {
        "num_classes": cfg.num_classes,
        "images_per_class": cfg.synthetic_images_per_class,
        "image_size": max(cfg.image_size, 64),
        "seed": cfg.seed,
    }


def _synthetic_done(cfg: Config, layout: Layout) -> bool:
    info = dataset_info(layout)
    return info is not None and info.get("synthetic") == _synthetic_params(cfg) and is_complete(layout)


def _synthetic(cfg: Config, layout: Layout) -> Layout:
    from flowerlib import synthetic

    params = _synthetic_params(cfg)
    info = dataset_info(layout)
    if _synthetic_done(cfg, layout):
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
        BusyError: another flowerlib process is writing into the data directory
            (`flowerlib.locks.data_dir_lock`, held for the whole call).
        DiskWriteError: the data directory is full, read-only or forbidden.
    """
    layout = Layout(cfg.data_dir)
    ignored = [
        f"{name}={value}"
        for name, value in (("FLOWERS_SOURCE", cfg.source), ("FLOWERS_MIRROR", cfg.mirror))
        if value
    ]
    if cfg.synthetic and ignored:
        warnings.warn(
            f"The {cfg.profile} profile draws its own synthetic data: {', '.join(ignored)} is not used. "
            "For the real dataset, use the full profile.",
            UserWarning,
            stacklevel=2,
        )
    sources = sources or OFFICIAL
    if cfg.mirror:
        sources = sources.with_base_url(cfg.mirror)
    if _synthetic_done(cfg, layout) if cfg.synthetic else _is_done(layout, sources):
        return layout  # no lock needed: a read-only data directory with a complete dataset works
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if (error := disk_write_error(e, layout.root)) is not None:
            raise error from None
        raise DownloadError(
            f"Cannot create the data directory {layout.root} ({e}). Set FLOWERS_DATA_DIR to a writable folder."
        ) from None
    what = "generating the synthetic dataset" if cfg.synthetic else "fetching the dataset"
    try:
        with locks.data_dir_lock(layout.root, what, timeout=locks.DEFAULT_TIMEOUT):
            if cfg.synthetic:
                return _synthetic(cfg, layout)
            if _is_done(layout, sources):  # another process finished it while this one waited
                return layout
            _fetch(
                cfg,
                layout,
                sources,
                progress=progress,
                retries=retries,
                retry_wait=retry_wait,
                timeout=timeout,
            )
    except DiskWriteError:
        raise
    except OSError as e:
        if (error := disk_write_error(e, layout.root)) is None:
            raise
        raise error from None
    return layout


def _is_done(layout: Layout, sources: Sources) -> bool:
    info = dataset_info(layout)
    return (
        info is not None
        and "synthetic" not in info
        and info.get("labels", {}).get("sha256") == sources.labels.sha256
        and is_complete(layout)
    )


def _fetch(cfg: Config, layout: Layout, sources: Sources, *, progress: bool, **download_kw: Any) -> None:
    """Everything `fetch_dataset` does for a real dataset, under the data directory's lock."""
    info = dataset_info(layout)
    if info is not None and info.get("source") == "synthetic":
        raise DownloadError(
            f"{layout.root} holds synthetic data (the smoke profile's); fetching the real dataset there would "
            "mix the two. Use another FLOWERS_DATA_DIR for the real dataset (by default each profile has its "
            "own folder), or delete this one with `flowerlib clean-data --data-dir ...` first."
        )
    layout.dataset_marker.unlink(missing_ok=True)
    download_kw["progress"] = progress
    source = cfg.source
    if source is not None:
        if source.is_dir():
            _from_folder(source, layout, sources, progress)
            return
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
    "image_problem",
    "is_complete",
    "partial_file",
    "verified_marker",
    "verify_file",
]
