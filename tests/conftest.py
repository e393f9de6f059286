"""Shared fixtures: a small synthetic dataset and the smoke configuration.

Every test is offline: downloads go to a real HTTP server on 127.0.0.1 serving
data the tests make, and models use `weights=None` or a local file.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiet TensorFlow start-up lines in test output

import pytest

from flowerlib.config import Config


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A synthetic dataset (10 classes x 12 images, 64 px) shared by read-only tests.

    Tests that modify a dataset must copy it or make their own.
    """
    from flowerlib import synthetic

    root = tmp_path_factory.mktemp("synthetic")
    synthetic.write_dataset(root, num_classes=10, images_per_class=12, image_size=64, seed=0)
    return root


@pytest.fixture()
def smoke_config(tmp_path):
    """The smoke profile with its data directory in a fresh temporary folder."""
    return Config.for_profile("smoke", data_dir=tmp_path / "data")


# --- step 1: a loopback HTTP server for the download tests -------------------------------


class LoopbackServer:
    """A real `http.server` on 127.0.0.1 serving the files of `root`, with injectable faults.

    Faults (`fail(name, fault, times)`), applied to the next `times` requests for
    `name` (every request when `times` is None):

    - `"truncate"`: announce the full Content-Length, send half the bytes, close.
    - `"short"`: send half the bytes with a matching (short) Content-Length.
    - `"html"`: answer 200 with an HTML error page.
    - `"404"` / `"500"`: answer that HTTP status.
    - `"corrupt"`: send the right number of bytes with one byte flipped.

    `requests` lists every path requested, so tests can assert "no network".
    """

    FAULTS = ("truncate", "short", "html", "404", "500", "corrupt")

    def __init__(self, root):
        import http.server
        import threading
        from pathlib import Path

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests: list[str] = []
        self._faults: dict[str, list] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/").split("?", 1)[0]
                fault = server._take_fault(name)
                with server._lock:
                    server.requests.append(name)
                if fault in ("404", "500"):
                    self.send_error(int(fault))
                    return
                if fault == "html":
                    body = b"<!DOCTYPE html>\n<html><body><h1>Access denied</h1></body></html>\n"
                    self._send(200, body, "text/html")
                    return
                path = server.root / name
                if not name or not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                if fault == "corrupt":
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                if fault == "short":
                    data = data[: len(data) // 2]
                if fault == "truncate":
                    self._send(200, data[: len(data) // 2], length=len(data))
                    self.close_connection = True
                    return
                self._send(200, data)

            def _send(self, status, body, content_type="application/octet-stream", length=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.running = True

    def fail(self, name: str, fault: str, times: int | None = None) -> None:
        """Make the next `times` requests for `name` fail with `fault` (all of them if None)."""
        if fault not in self.FAULTS:
            raise ValueError(f"fault must be one of {self.FAULTS}. Received fault={fault!r}")
        with self._lock:
            self._faults[name] = [fault, times]

    def _take_fault(self, name: str) -> str | None:
        with self._lock:
            entry = self._faults.get(name)
            if entry is None:
                return None
            fault, times = entry
            if times is not None:
                if times <= 0:
                    del self._faults[name]
                    return None
                entry[1] = times - 1
            return fault

    def shutdown(self) -> None:
        """Stop serving: later requests get 'connection refused'."""
        if self.running:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self.running = False


@pytest.fixture()
def http_server(tmp_path, monkeypatch):
    """A `LoopbackServer` serving `tmp_path / "www"` (copy files there); shut down afterwards."""
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = LoopbackServer(tmp_path / "www")
    yield server
    server.shutdown()


# --- shared by the download tests and the CLI tests ----------------------------------------


def remote_file(path):
    """The `RemoteFile` (name, size, sha256) describing a local file."""
    import hashlib

    from flowerlib.download import RemoteFile

    data = path.read_bytes()
    return RemoteFile(path.name, len(data), hashlib.sha256(data).hexdigest())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A tiny synthetic dataset (3 classes x 4 images), its archive, and matching `Sources`."""
    import shutil

    from flowerlib import synthetic
    from flowerlib.download import Sources

    root = tmp_path_factory.mktemp("tiny")
    layout = synthetic.write_dataset(
        root / "extracted", num_classes=3, images_per_class=4, image_size=64, seed=0
    )
    archive = synthetic.make_archive(layout.root, root / "102flowers.tgz")
    for path in (layout.labels_mat, layout.setid_mat):
        shutil.copy(path, root / path.name)
    sources = Sources(
        base_url="http://unused.invalid/",
        archive=remote_file(archive),
        labels=remote_file(layout.labels_mat),
        setid=remote_file(layout.setid_mat),
    )
    return root, sources


@pytest.fixture(scope="module")
def clean_environment():
    """No FLOWERS_* variable from the caller's shell; fewer synthetic images (read from the environment)."""
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("FLOWERS_"):
                mp.delenv(key)
        mp.setenv("FLOWERS_SYNTHETIC_IMAGES_PER_CLASS", "8")
        yield
