"""A hostile or unlucky user against step 1: downloads, extraction, source folders, the lock.

Each test is one row of docs/robustness.md ("what was tried -> what the user sees").
Downloads go to a small HTTP server on 127.0.0.1 (this module's, which honours
`Range` and can be told exactly what to answer); a full or read-only disk is
real where it can be (`/dev/full`) and an injected `OSError` where it cannot
(tests run as root here, and chmod does not stop root).
"""

from __future__ import annotations

import errno
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest

from flowerlib import cli, download, locks
from flowerlib.artifacts import DiskWriteError, Layout
from flowerlib.config import Config
from flowerlib.download import DownloadError, RemoteFile, Sources

NUM_IMAGES = 12
FAST = {"progress": False, "retries": 0, "retry_wait": 0.0, "timeout": 5.0}
ROOT = Path(__file__).resolve().parents[1]


from conftest import remote_file as _remote  # noqa: E402


class Server:
    """HTTP on 127.0.0.1 serving `root`, with `Range` support and scripted answers.

    `plan(name, *answers)` queues answers for the next requests of `name`; each
    is a dict with any of: `status`, `body` (bytes), `ctype`, `length` (the
    announced Content-Length), `cut` (send only that many bytes, then close),
    `range` (False: ignore a Range header), `location` (a redirect).
    `log` holds `(name, Range header)` of every request.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.log: list[tuple[str, str | None]] = []
        self._plans: dict[str, list[dict]] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.log.append((name, rng))
                plan = server._plans.get(name) or [{}]
                answer = plan.pop(0) if server._plans.get(name) else {}
                if "location" in answer:
                    self.send_response(302)
                    self.send_header("Location", answer["location"])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path = server.root / name
                if "body" in answer:
                    data = answer["body"]
                elif path.is_file():
                    data = path.read_bytes()
                else:
                    self.send_error(404)
                    return
                status, start = answer.get("status", 200), 0
                if rng and answer.get("range", True) and status == 200:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    status = 206
                if status >= 400:
                    self.send_error(status)
                    return
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Type", answer.get("ctype", "application/octet-stream"))
                self.send_header("Content-Length", str(answer.get("length", len(body))))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                self.wfile.write(body[: answer.get("cut", len(body))])
                self.wfile.flush()
                if "cut" in answer:
                    self.close_connection = True

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def plan(self, name: str, *answers: dict) -> None:
        self._plans[name] = list(answers)

    def requests_for(self, name: str) -> list[str | None]:
        return [rng for n, rng in self.log if n == name]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture()
def server(dataset, tmp_path, monkeypatch):
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root, _ = dataset
    srv = Server(tmp_path / "www")
    for name in ("102flowers.tgz", "imagelabels.mat", "setid.mat"):
        shutil.copy(root / name, srv.root / name)
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _short_lock_wait(monkeypatch):
    monkeypatch.setattr(locks, "DEFAULT_TIMEOUT", 0.3)


def _cfg(tmp_path, **kw) -> Config:
    return Config(data_dir=tmp_path / "data", **kw)


def _fetch(cfg, sources, **kw):
    return download.fetch_dataset(cfg, sources=sources, **{**FAST, **kw})


def _one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and "Traceback" not in text
    return text


def _nothing_half_written(layout: Layout) -> None:
    assert not layout.dataset_marker.exists()
    assert not list(layout.root.glob(".extract-*"))
    if layout.downloads.exists():
        assert not [p for p in layout.downloads.iterdir() if p.name.startswith("tmp")]


# --- item 12: classify failures: retry only what is transient ------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"\xef\xbb\xbf<!DOCTYPE html><html><body>Login</body></html>",
        b"<!-- proxy -->\n<html><body>Blocked</body></html>",
        b"\r\n\r\n  <HTML><HEAD><TITLE>Portal</TITLE></HEAD></HTML>",
    ],
    ids=["bom", "comment", "blank-lines"],
)
def test_html_page_sent_as_octet_stream_is_an_html_page_at_once(server, dataset, tmp_path, body):
    _, sources = dataset
    server.plan("102flowers.tgz", {"body": body})
    with pytest.raises(DownloadError, match="HTML page instead of 102flowers.tgz") as info:
        _fetch(_cfg(tmp_path, mirror=server.url), sources, retries=3)
    _one_line(info.value)
    assert len(server.requests_for("102flowers.tgz")) == 1


def test_content_type_html_is_an_html_page_whatever_the_body(server, dataset, tmp_path):
    _, sources = dataset
    server.plan("setid.mat", {"ctype": "text/html; charset=utf-8"})
    with pytest.raises(DownloadError, match="HTML page instead of setid.mat"):
        _fetch(_cfg(tmp_path, mirror=server.url), sources, retries=3)
    assert len(server.requests_for("setid.mat")) == 1


def test_complete_file_with_wrong_checksum_is_a_wrong_file_not_retried(server, dataset, tmp_path):
    root, sources = dataset
    data = bytearray((root / "102flowers.tgz").read_bytes())
    data[100] ^= 0xFF
    server.plan("102flowers.tgz", *[{"body": bytes(data)}] * 4)
    cfg = _cfg(tmp_path, mirror=server.url)
    with pytest.raises(DownloadError, match="Wrong file at .*checksum mismatch.*Nothing was kept"):
        _fetch(cfg, sources, retries=3)
    assert len(server.requests_for("102flowers.tgz")) == 1, "a complete wrong file is not retried"
    layout = Layout(cfg.data_dir)
    assert not layout.archive.exists() and not download.partial_file(layout.archive).exists()


def test_small_wrong_archive_is_a_wrong_file_not_an_incomplete_transfer(server, dataset, tmp_path):
    _, sources = dataset
    server.plan("102flowers.tgz", {"body": b"\x1f\x8b" + b"\0" * 200})
    with pytest.raises(DownloadError, match="Wrong file at .*announces 202 bytes, expected") as info:
        _fetch(_cfg(tmp_path, mirror=server.url), sources, retries=3)
    assert "incomplete" not in str(info.value)
    assert len(server.requests_for("102flowers.tgz")) == 1


def test_zero_byte_mat_file_from_the_server_is_a_wrong_file(server, dataset, tmp_path):
    _, sources = dataset
    server.plan("imagelabels.mat", {"body": b""})
    with pytest.raises(DownloadError, match="Wrong file .*imagelabels.mat.*announces 0 bytes"):
        _fetch(_cfg(tmp_path, mirror=server.url), sources, retries=3)
    assert len(server.requests_for("imagelabels.mat")) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_busy_server_is_retried(server, dataset, tmp_path, status):
    _, sources = dataset
    server.plan("setid.mat", {"status": status})
    layout = _fetch(_cfg(tmp_path, mirror=server.url), sources, retries=1)
    assert download.is_complete(layout) and len(server.requests_for("setid.mat")) == 2


def test_forbidden_is_not_retried(server, dataset, tmp_path):
    _, sources = dataset
    server.plan("setid.mat", {"status": 403})
    with pytest.raises(DownloadError, match="HTTP 403"):
        _fetch(_cfg(tmp_path, mirror=server.url), sources, retries=3)
    assert len(server.requests_for("setid.mat")) == 1


def test_redirect_to_a_local_file_is_refused_not_followed(server, dataset, tmp_path):
    _, sources = dataset
    server.plan("imagelabels.mat", {"location": "file:///etc/passwd"})
    with pytest.raises(DownloadError, match="not a valid download URL, or redirects to one") as info:
        _fetch(_cfg(tmp_path, mirror=server.url), sources, retries=3)
    _one_line(info.value)
    assert len(server.requests_for("imagelabels.mat")) == 1
    assert not (tmp_path / "data" / "imagelabels.mat").exists()


def test_file_url_as_base_url_is_refused(dataset, tmp_path):
    root, sources = dataset  # (Config refuses FLOWERS_MIRROR=file://... before this)
    with pytest.raises(DownloadError, match="not a valid download URL"):
        _fetch(_cfg(tmp_path), sources.with_base_url(root.as_uri() + "/"), retries=3)


# --- item 13: downloads resume ----------------------------------------------------------------


def test_broken_transfer_resumes_with_a_range_request(server, dataset, tmp_path):
    _, sources = dataset
    cut = sources.archive.size // 3
    server.plan("102flowers.tgz", {"cut": cut})
    layout = _fetch(_cfg(tmp_path, mirror=server.url), sources, retries=1)
    assert download.is_complete(layout)
    assert server.requests_for("102flowers.tgz") == [None, f"bytes={cut}-"]
    assert not download.partial_file(layout.archive).exists()


def test_rerun_after_a_kill_resumes_where_the_part_file_ends(server, dataset, tmp_path):
    root, sources = dataset
    cfg = _cfg(tmp_path, mirror=server.url)
    layout = Layout(cfg.data_dir)
    layout.downloads.mkdir(parents=True)
    # What `kill -9` mid-transfer leaves: the bytes so far in <name>.part, nothing else.
    download.partial_file(layout.archive).write_bytes((root / "102flowers.tgz").read_bytes()[:1000])
    assert download.is_complete(_fetch(cfg, sources))
    assert server.requests_for("102flowers.tgz") == ["bytes=1000-"]


def test_server_without_range_support_starts_again_from_byte_zero(server, dataset, tmp_path):
    root, sources = dataset
    cfg = _cfg(tmp_path, mirror=server.url)
    layout = Layout(cfg.data_dir)
    layout.downloads.mkdir(parents=True)
    download.partial_file(layout.archive).write_bytes((root / "102flowers.tgz").read_bytes()[:1000])
    server.plan("102flowers.tgz", {"range": False})
    assert download.is_complete(_fetch(cfg, sources))
    assert layout.archive.read_bytes() == (root / "102flowers.tgz").read_bytes()


def test_part_file_of_another_version_costs_one_fresh_attempt(server, dataset, tmp_path):
    _, sources = dataset
    cfg = _cfg(tmp_path, mirror=server.url)
    layout = Layout(cfg.data_dir)
    layout.downloads.mkdir(parents=True)
    download.partial_file(layout.archive).write_bytes(b"\x1f\x8b" + b"x" * 998)  # not these bytes
    assert download.is_complete(_fetch(cfg, sources, retries=1))
    assert server.requests_for("102flowers.tgz") == ["bytes=1000-", None]


def test_part_file_longer_than_the_file_is_discarded(server, dataset, tmp_path):
    _, sources = dataset
    cfg = _cfg(tmp_path, mirror=server.url)
    layout = Layout(cfg.data_dir)
    layout.downloads.mkdir(parents=True)
    download.partial_file(layout.archive).write_bytes(b"x" * (sources.archive.size + 10))
    assert download.is_complete(_fetch(cfg, sources))
    assert server.requests_for("102flowers.tgz") == [None]


# --- item 7: a full, read-only or forbidden disk ------------------------------------------


def test_full_disk_during_download_names_the_folder_and_keeps_nothing(server, dataset, tmp_path):
    _, sources = dataset
    cfg = _cfg(tmp_path, mirror=server.url)
    layout = Layout(cfg.data_dir)
    layout.downloads.mkdir(parents=True)
    # A real ENOSPC: the part file is a link to /dev/full, which refuses every write.
    download.partial_file(layout.archive).symlink_to("/dev/full")
    with pytest.raises(DiskWriteError, match=f"in {layout.downloads}: no space left on the device") as info:
        _fetch(cfg, sources, retries=3)
    assert info.value.errno == errno.ENOSPC and "checksum" not in _one_line(info.value)
    assert len(server.requests_for("102flowers.tgz")) == 1, "a full disk is not retried"
    _nothing_half_written(layout)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_disk_error_during_extraction_is_not_blamed_on_the_archive(dataset, tmp_path, monkeypatch, code):
    root, sources = dataset
    cfg = _cfg(tmp_path, source=root / "102flowers.tgz")

    def refuse(self, tarinfo, targetpath):
        raise OSError(code, os.strerror(code), targetpath)

    monkeypatch.setattr(tarfile.TarFile, "makefile", refuse)
    with pytest.raises(DiskWriteError) as info:
        _fetch(cfg, sources)
    message = _one_line(info.value)
    assert str(cfg.data_dir) in message and "archive" not in message and "download it again" not in message
    assert info.value.errno == code and isinstance(info.value, OSError)
    layout = Layout(cfg.data_dir)
    assert not layout.jpg_dir.exists()
    _nothing_half_written(layout)
    assert (root / "102flowers.tgz").is_file(), "the good archive is kept"


def test_full_disk_while_copying_a_source_folder_names_the_data_directory(dataset, tmp_path, monkeypatch):
    root, sources = dataset

    def no_links(src, dst, **kw):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def full(src, dst, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(shutil, "copyfile", full)
    cfg = _cfg(tmp_path, source=root / "extracted")
    with pytest.raises(DiskWriteError, match="no space left") as info:
        _fetch(cfg, sources)
    assert str(cfg.data_dir) in _one_line(info.value)
    _nothing_half_written(Layout(cfg.data_dir))


def test_read_only_data_directory_is_one_line(dataset, tmp_path, monkeypatch):
    root, sources = dataset
    data = tmp_path / "data"
    data.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kw):
        if str(path).startswith(str(data)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(DiskWriteError, match=f"in {data}: the file system is read-only"):
        _fetch(_cfg(tmp_path, source=root / "extracted"), sources)


def test_read_only_data_directory_with_a_complete_dataset_still_works(dataset, tmp_path, monkeypatch):
    root, sources = dataset
    cfg = _cfg(tmp_path, source=root / "extracted")
    _fetch(cfg, sources)

    def no_lock(*args, **kw):
        raise AssertionError("a complete dataset needs no lock and no write")

    monkeypatch.setattr(locks, "data_dir_lock", no_lock)
    assert download.is_complete(_fetch(cfg, sources))


def test_cli_prints_a_full_disk_as_one_line_and_exits_2(dataset, tmp_path, monkeypatch, capsys):
    root, sources = dataset
    monkeypatch.setattr(download, "OFFICIAL", sources)

    def full(self, tarinfo, targetpath):
        raise OSError(errno.ENOSPC, "No space left on device", targetpath)

    monkeypatch.setattr(tarfile.TarFile, "makefile", full)
    args = ["download", "--data-dir", str(tmp_path / "data"), "--source", str(root / "102flowers.tgz")]
    assert cli.main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no space left" in err and "Traceback" not in err


# --- item 8: the images of a source folder ------------------------------------------------


def _bad_folder(root: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    shutil.copytree(root / "extracted", folder)
    jpg = folder / "jpg"
    good = (jpg / "image_00002.jpg").read_bytes()
    (jpg / "image_00002.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (jpg / "image_00003.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(300))  # garbage after a JPEG start
    (jpg / "image_00004.jpg").unlink()
    (jpg / "image_00004.jpg").symlink_to("/etc/hostname")  # a link to a non-image
    buf = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    (jpg / "image_00005.jpg").write_bytes(buf.getvalue())  # a PNG named .jpg
    (jpg / "image_00006.jpg").write_bytes(b"")  # empty
    return folder


def test_bad_images_in_a_source_folder_are_left_out_by_name(dataset, tmp_path):
    root, sources = dataset
    folder = _bad_folder(root, tmp_path)
    with pytest.warns(UserWarning, match="holds 7 of the 12 .* 5 image.* not readable JPEGs") as warned:
        layout = _fetch(_cfg(tmp_path, source=folder), sources)
    text = " ".join(str(w.message) for w in warned)
    for i in (2, 3, 4, 5):
        assert f"image_0000{i}.jpg" in text
    present = sorted(p.name for p in layout.jpg_dir.iterdir())
    assert present == [f"image_{i:05d}.jpg" for i in (1, *range(7, NUM_IMAGES + 1))]
    info = download.dataset_info(layout)
    assert info["partial"] and info["num_images"] == 7 and len(info["rejected"]) == 5
    assert download.is_complete(layout)
    assert download.image_problem(folder / "jpg" / "image_00005.jpg") == "not a JPEG (PNG)"


def test_a_folder_of_nothing_but_bad_images_is_refused(dataset, tmp_path):
    root, sources = dataset
    folder = tmp_path / "bad"
    shutil.copytree(root / "extracted", folder)
    for path in (folder / "jpg").iterdir():
        path.write_bytes(b"not a jpeg")
    with pytest.raises(DownloadError, match="None of the images in .* is a readable JPEG"):
        _fetch(_cfg(tmp_path, source=folder), sources)


def test_image_check_costs_about_a_millisecond_per_photo(tmp_path):
    """8,189 photos of ~500 x 500 px: a few seconds (measured: docs/robustness.md)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(40):
        path = tmp_path / f"image_{i + 1:05d}.jpg"
        Image.fromarray(rng.integers(0, 255, (500, 500, 3), dtype=np.uint8)).save(path, quality=75)
        paths.append(path)
    start = time.perf_counter()
    assert download._bad_images(paths, progress=False) == {}
    per_image = (time.perf_counter() - start) / len(paths)
    assert per_image < 0.02, f"{per_image * 1e3:.1f} ms per image"


def test_source_folder_that_is_the_data_directory_itself(dataset, tmp_path):
    root, sources = dataset
    data = tmp_path / "data"
    shutil.copytree(root / "extracted", data)
    layout = _fetch(Config(data_dir=data, source=data), sources)
    assert download.is_complete(layout) and (data / "jpg" / "image_00001.jpg").is_file()


def test_source_folder_that_is_the_data_directory_with_bad_images_is_refused_untouched(dataset, tmp_path):
    root, sources = dataset
    data = _bad_folder(root, tmp_path)
    before = sorted(p.name for p in (data / "jpg").iterdir())
    with pytest.raises(DownloadError, match="is the data directory itself"):
        _fetch(Config(data_dir=data, source=data), sources)
    assert sorted(p.name for p in (data / "jpg").iterdir()) == before, "nothing of the user's is deleted"


def test_zero_byte_mat_file_in_a_source_folder(dataset, tmp_path):
    root, sources = dataset
    folder = tmp_path / "mine"
    shutil.copytree(root / "extracted", folder)
    (folder / "setid.mat").write_bytes(b"")
    with pytest.raises(DownloadError, match="setid.mat has 0 bytes"):
        _fetch(_cfg(tmp_path, source=folder), sources)


def test_source_folder_with_an_empty_jpg_folder(dataset, tmp_path):
    root, sources = dataset
    folder = tmp_path / "mine"
    shutil.copytree(root / "extracted", folder)
    shutil.rmtree(folder / "jpg")
    (folder / "jpg").mkdir()
    with pytest.raises(DownloadError, match="holds 0 of the 12 images"):
        _fetch(_cfg(tmp_path, source=folder), sources)


def test_pipeline_names_a_missing_or_non_jpeg_image_before_tensorflow_reads_it(dataset, tmp_path):
    from flowerlib import pipeline

    root, _ = dataset
    data = tmp_path / "data"
    shutil.copytree(root / "extracted", data)
    (data / "jpg" / "image_00003.jpg").write_bytes(b"GIF89a")
    (data / "jpg" / "image_00004.jpg").unlink()
    files = [f"jpg/image_{i:05d}.jpg" for i in range(1, 6)]
    with pytest.raises(
        pipeline.PipelineError, match="2 image.*image_00003.jpg \\(not a JPEG\\).*image_00004"
    ):
        pipeline._check_files(files, data)
    pipeline._check_files(files[:2], data)


# --- archives -------------------------------------------------------------------------------


def _archive_with(dataset_root: Path, path: Path, extra: tarfile.TarInfo, payload: bytes = b"") -> RemoteFile:
    with tarfile.open(dataset_root / "102flowers.tgz") as good, tarfile.open(path, "w:gz") as tar:
        for member in good:
            tar.addfile(member, good.extractfile(member) if member.isfile() else None)
        tar.addfile(extra, io.BytesIO(payload) if payload else None)
    return _remote(path)


@pytest.mark.parametrize("name", ["..", "jpg/..", "jpg/../../evil.jpg", "./../evil.jpg"])
def test_archive_member_with_dot_dot_is_refused(dataset, tmp_path, name):
    root, sources = dataset
    evil = tarfile.TarInfo(name)
    evil.size = 4 if name.endswith(".jpg") else 0
    if not evil.size:
        evil.type = tarfile.DIRTYPE
    archive = tmp_path / "src" / "102flowers.tgz"
    archive.parent.mkdir()
    remote = _archive_with(root, archive, evil, b"evil" if evil.size else b"")
    for mat in ("imagelabels.mat", "setid.mat"):
        shutil.copy(root / mat, archive.parent / mat)
    with pytest.raises(DownloadError, match="Refusing to extract.*unsafe"):
        _fetch(
            _cfg(tmp_path, source=archive),
            Sources(archive=remote, labels=sources.labels, setid=sources.setid),
        )
    assert not list(tmp_path.rglob("evil.jpg"))


def test_huge_archive_member_is_refused_before_it_is_written(dataset, tmp_path, monkeypatch):
    root, sources = dataset
    monkeypatch.setattr(download, "MAX_MEMBER_BYTES", 4000)
    big = tarfile.TarInfo("jpg/image_00001.jpg")
    big.size = 5000
    archive = tmp_path / "src" / "102flowers.tgz"
    archive.parent.mkdir()
    remote = _archive_with(root, archive, big, b"\0" * 5000)
    for mat in ("imagelabels.mat", "setid.mat"):
        shutil.copy(root / mat, archive.parent / mat)
    with pytest.raises(DownloadError, match="member of 5,000 bytes"):
        _fetch(
            _cfg(tmp_path, source=archive),
            Sources(archive=remote, labels=sources.labels, setid=sources.setid),
        )


def test_source_tgz_that_is_a_zip_is_a_checksum_mismatch(dataset, tmp_path):
    root, sources = dataset
    fake = tmp_path / "102flowers.tgz"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.write(root / "extracted" / "jpg" / "image_00001.jpg", "jpg/image_00001.jpg")
    with pytest.raises(DownloadError, match="has .* bytes but 102flowers.tgz has|Checksum mismatch"):
        _fetch(_cfg(tmp_path, source=fake), sources)


def test_zip_with_the_right_checksum_is_not_a_readable_tgz(dataset, tmp_path):
    root, sources = dataset
    fake = tmp_path / "src" / "102flowers.tgz"
    fake.parent.mkdir()
    with zipfile.ZipFile(fake, "w") as zf:
        zf.write(root / "extracted" / "jpg" / "image_00001.jpg", "jpg/image_00001.jpg")
    for mat in ("imagelabels.mat", "setid.mat"):
        shutil.copy(root / mat, fake.parent / mat)
    zipped = Sources(archive=_remote(fake), labels=sources.labels, setid=sources.setid)
    with pytest.raises(DownloadError, match="is not a readable .tgz archive"):
        _fetch(_cfg(tmp_path, source=fake), zipped)


def test_ctrl_c_mid_extraction_leaves_the_previous_images_and_no_half_folder(dataset, tmp_path, monkeypatch):
    root, sources = dataset
    cfg = _cfg(tmp_path, source=root / "102flowers.tgz")
    layout = _fetch(cfg, sources)
    layout.image_path(5).unlink()  # forces a re-extraction
    before = sorted(p.name for p in layout.jpg_dir.iterdir())
    calls = []
    real = download._extract_member

    def interrupt(tar, member, folder):
        calls.append(member.name)
        if len(calls) == 4:
            raise KeyboardInterrupt
        real(tar, member, folder)

    monkeypatch.setattr(download, "_extract_member", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _fetch(cfg, sources)
    assert sorted(p.name for p in layout.jpg_dir.iterdir()) == before
    _nothing_half_written(layout)
    with locks.data_dir_lock(layout.root, "checking", timeout=0):
        pass  # the lock was released
    monkeypatch.setattr(download, "_extract_member", real)
    assert download.is_complete(_fetch(cfg, sources))


def test_python_without_tarfile_filters_still_extracts_safely(dataset, tmp_path, monkeypatch):
    """Python 3.11.0-3.11.3 have no `filter=`: our own member checks still apply."""
    root, sources = dataset
    real = tarfile.TarFile.extract

    def old_extract(self, member, path="", set_attrs=True, *, numeric_owner=False, **kw):
        if kw:
            raise TypeError(f"extract() got an unexpected keyword argument {next(iter(kw))!r}")
        return real(self, member, path, set_attrs, numeric_owner=numeric_owner, filter="data")

    monkeypatch.setattr(tarfile.TarFile, "extract", old_extract)
    assert download.is_complete(_fetch(_cfg(tmp_path, source=root / "102flowers.tgz"), sources))


# --- the data directory itself ------------------------------------------------------------


def test_data_directory_that_is_a_file(dataset, tmp_path):
    root, sources = dataset
    (tmp_path / "data").write_text("I am a file")
    with pytest.raises(DownloadError, match="Cannot create the data directory .*data"):
        _fetch(_cfg(tmp_path, source=root / "extracted"), sources)
    assert (tmp_path / "data").read_text() == "I am a file"


def test_data_directory_below_a_file(dataset, tmp_path):
    root, sources = dataset
    (tmp_path / "file").write_text("x")
    with pytest.raises(DownloadError, match="Cannot create the data directory"):
        _fetch(Config(data_dir=tmp_path / "file" / "data", source=root / "extracted"), sources)


def test_permission_denied_on_the_data_directory(dataset, tmp_path, monkeypatch):
    root, sources = dataset
    real_mkdir = Path.mkdir

    def denied(self, *args, **kw):
        if self == tmp_path / "data":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kw)

    monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(DiskWriteError, match="permission denied") as info:
        _fetch(_cfg(tmp_path, source=root / "extracted"), sources)
    assert str(tmp_path) in _one_line(info.value)


# --- item 3: one process at a time per data directory ---------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    from flowerlib.locks import data_dir_lock
    with data_dir_lock(sys.argv[1], "training"):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def _hold_lock(data_dir: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_is_told_the_folder_is_busy(dataset, tmp_path):
    root, sources = dataset
    holder = _hold_lock(tmp_path / "data", 30)
    try:
        with pytest.raises(locks.BusyError, match="busy: another flowerlib process") as info:
            _fetch(_cfg(tmp_path, source=root / "extracted"), sources)
        assert "fetching the dataset" in _one_line(info.value) and str(tmp_path / "data") in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    # killed holder: the operating system released its lock; the lock file stays and harms nobody
    assert download.is_complete(_fetch(_cfg(tmp_path, source=root / "extracted"), sources))
    assert Layout(tmp_path / "data").lock.exists()


def test_second_process_waits_for_a_short_holder(dataset, tmp_path, monkeypatch):
    root, sources = dataset
    monkeypatch.setattr(locks, "DEFAULT_TIMEOUT", 20.0)
    holder = _hold_lock(tmp_path / "data", 0.5)
    try:
        assert download.is_complete(_fetch(_cfg(tmp_path, source=root / "extracted"), sources))
    finally:
        holder.wait()


def test_lock_is_reentrant_within_one_process(tmp_path):
    with (
        locks.data_dir_lock(tmp_path, "training", timeout=0),
        locks.data_dir_lock(tmp_path, "fetching", timeout=0),
    ):
        pass


TWO_DOWNLOADS = textwrap.dedent(
    """
    import json, sys
    from flowerlib import download
    from flowerlib.config import Config
    from flowerlib.download import RemoteFile, Sources
    s = json.loads(sys.argv[2])
    sources = Sources(**{k: RemoteFile(**v) for k, v in s["files"].items()})
    cfg = Config(data_dir=sys.argv[1], mirror=s["url"])
    layout = download.fetch_dataset(cfg, sources=sources, progress=False, retries=0, timeout=10)
    print(len(list(layout.jpg_dir.iterdir())))
    """
)


def test_two_downloads_into_one_data_directory_both_end_complete(server, dataset, tmp_path):
    _, sources = dataset
    # a slow archive: the first process holds the lock while the second starts
    server.plan("102flowers.tgz", {"cut": 10}, {})
    spec = json.dumps(
        {
            "url": server.url,
            "files": {k: vars(getattr(sources, k)) for k in ("archive", "labels", "setid")},
        }
    )
    args = [sys.executable, "-c", TWO_DOWNLOADS, str(tmp_path / "data"), spec]
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    ]
    procs.append(
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    )
    outs = [p.communicate(timeout=60) for p in procs]
    codes = [p.returncode for p in procs]
    # one got the broken transfer (and says so); whoever ran after it resumed or found it done
    assert any(c == 0 for c in codes), outs
    for code, (out, err) in zip(codes, outs, strict=True):
        if code == 0:
            assert out.strip() == str(NUM_IMAGES)
        else:
            assert "Downloading" in err and "failed after 1 attempt" in err
    assert download.is_complete(Layout(tmp_path / "data"))
