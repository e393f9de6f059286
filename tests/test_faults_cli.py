"""A battery of hostile and unlucky inputs on prediction, configuration, run files and the CLI.

Every case ends in exit status 2 with one line on stderr (or succeeds), touches
nothing outside its data directory, and loses no computed work. The cases that
need a model use one tiny untrained smoke classifier, built once for the module
and saved into a run folder; nothing is trained here. Full and read-only disks
are simulated by making the write raise `OSError(ENOSPC / EROFS)` (the tests run
as root, where `chmod` stops nothing).
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flowerlib import artifacts, cli, prediction
from flowerlib.artifacts import DiskWriteError
from flowerlib.backbones import ModelConfigError, resolve_weights
from flowerlib.config import Config, ConfigError
from flowerlib.prediction import PredictionError

NUM_CLASSES = 4
SMOKE = ["--profile", "smoke", "--num-classes", str(NUM_CLASSES), "--quiet"]


pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """(model, path of model.keras with a labels.json beside it): untrained, smoke-sized."""
    from flowerlib.model import build_classifier, save_model

    folder = tmp_path_factory.mktemp("model")
    cfg = Config.for_profile("smoke", data_dir=folder / "data", num_classes=NUM_CLASSES)
    model = build_classifier(cfg)
    path = save_model(model, folder / "model.keras")
    (folder / "labels.json").write_text(json.dumps([f"flower {i}" for i in range(NUM_CLASSES)]))
    return model, path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tiny_model):
    """A synthetic smoke dataset with the tiny model saved as its default run."""
    root = tmp_path_factory.mktemp("cli") / "data"
    assert cli.main(["download", "--data-dir", str(root), *SMOKE]) == 0
    assert cli.main(["prepare", "--data-dir", str(root), *SMOKE]) == 0
    run = root / "runs" / "tiny-official"
    run.mkdir(parents=True)
    shutil.copy(tiny_model[1], run / "model.keras")
    shutil.copy(tiny_model[1].with_name("labels.json"), run / "labels.json")
    return root


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(capsys, *argv: str) -> str:
    """Run the CLI, assert exit 2 with exactly one `flowerlib ...: error:` line; return it."""
    code, _, err = _run(capsys, *argv)
    lines = [line for line in err.splitlines() if ": error:" in line]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _png(width: int, height: int, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG", **kwargs)
    return buffer.getvalue()


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


# --- 1. run names stay inside runs/ ---------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "/some/folder",
        "../..",
        "..",
        ".",
        "",
        ".hidden",
        "a/b",
        "a\\b",
        "x\x00y",
        "tab\there",
        "-x",
        "n" * 101,
    ],
)
def test_a_run_name_must_be_one_plain_folder_name(name):
    with pytest.raises(ConfigError, match="run_name must be one plain folder name") as info:
        Config.for_profile("smoke", data_dir="/tmp/unused", run_name=name)
    assert f"run_name={name!r}" in str(info.value)


@pytest.mark.parametrize("name", ["tiny-official", "run_2.b", "été"])
def test_plain_run_names_are_accepted(name):
    assert Config.for_profile("smoke", data_dir="/tmp/unused", run_name=name).run == name


def test_train_with_an_escaping_run_name_touches_nothing(tmp_path, capsys):
    outside = tmp_path / "precious"
    (outside / "checkpoints").mkdir(parents=True)
    (outside / "history.csv").write_text("mine\n")
    before = _snapshot(outside)
    for name in (str(outside), "../../precious"):
        line = _one_line_error(capsys, "train", "--run-name", name, "--data-dir", str(tmp_path / "d"), *SMOKE)
        assert "run_name" in line and repr(name) in line
    assert _snapshot(outside) == before
    assert not (tmp_path / "d").exists()  # refused before anything was written


# --- 14. every float setting is finite; numbers are plain ASCII ------------------------


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"FLOWERS_SPLIT_FRACTIONS": "0.7,0.3,nan"}, "split_fractions"),
        ({"FLOWERS_SPLIT_FRACTIONS": "inf,0.5,0.5"}, "split_fractions"),
        ({"FLOWERS_DROPOUT": "nan"}, "dropout=nan"),
        ({"FLOWERS_LABEL_SMOOTHING": "inf"}, "label_smoothing=inf"),
        ({"FLOWERS_HEAD_LEARNING_RATE": "nan"}, "head_learning_rate=nan"),
        ({"FLOWERS_FINE_TUNE_LEARNING_RATE": "-inf"}, "fine_tune_learning_rate=-inf"),
        ({"FLOWERS_IMAGE_SIZE": "1e9"}, "FLOWERS_IMAGE_SIZE='1e9'"),
        ({"FLOWERS_IMAGE_SIZE": "1000000000"}, "image_size=1000000000"),
        ({"FLOWERS_IMAGE_SIZE": "\u0661\u0662\u0668"}, "ASCII digits"),  # Arabic-Indic 128
        ({"FLOWERS_BATCH_SIZE": "\uff13\uff12"}, "ASCII digits"),  # full-width 32
        ({"FLOWERS_BATCH_SIZE": "0"}, "batch_size=0"),
        ({"FLOWERS_BATCH_SIZE": "100000"}, "batch_size=100000"),
        ({"FLOWERS_SEED": "-1"}, "seed=-1"),
        ({"FLOWERS_SPLIT_FRACTIONS": "a,b,c"}, "FLOWERS_SPLIT_FRACTIONS='a,b,c'"),
    ],
)
def test_non_finite_huge_or_exotic_numbers_are_refused(env, fragment):
    with pytest.raises(ConfigError) as info:
        Config.from_env(env)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "changes",
    [{"dropout": "0.2"}, {"batch_size": 3.5}, {"image_size": True}, {"split_fractions": ("a", 1, 2)}],
)
def test_wrong_types_from_a_dict_are_config_errors(changes):
    data = {**Config.for_profile("smoke", data_dir="/tmp/unused").to_dict(), **changes}
    with pytest.raises(ConfigError):
        Config.from_dict(data)


def test_cli_config_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLOWERS_SPLIT_FRACTIONS", "0.7,0.3,nan")
    line = _one_line_error(capsys, "prepare", "--data-dir", str(tmp_path), *SMOKE)
    assert "split_fractions" in line
    monkeypatch.delenv("FLOWERS_SPLIT_FRACTIONS")
    assert "batch_size=0" in _one_line_error(
        capsys, "prepare", "--batch-size", "0", "--data-dir", str(tmp_path)
    )
    assert not any(tmp_path.iterdir())


# --- the command line itself -------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["predict", "x.jpg", "--top-k", "-1"],
        ["predict", "x.jpg", "--top-k", "two"],
        ["train", "--batch-size", "many"],
        ["train", "--head-learning-rate", "fast"],
    ],
)
def test_usage_errors_exit_2_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: flowerlib" in err and "Traceback" not in err


# --- 9, 10 and the rest of prediction ---------------------------------------------------


def test_a_tiny_but_very_wide_png_costs_little_memory(tmp_path):
    """1x6000 and 1x60000 PNGs (a few hundred bytes) once took 4 GB and tens of GB."""
    script = (
        "import io, resource, sys\n"
        "from PIL import Image\n"
        "from flowerlib import prediction\n"
        "for w, h in ((6000, 1), (1, 60000), (60000, 1)):\n"
        "    b = io.BytesIO(); Image.new('RGB', (w, h), (200, 30, 30)).save(b, 'PNG')\n"
        "    assert len(b.getvalue()) < 1000\n"
        "    out = prediction.prepare_image(b.getvalue(), 224)\n"
        "    assert out.shape == (224, 224, 3) and abs(out - [200, 30, 30]).max() < 1, out\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak_mb = int(done.stdout.split()[-1])
    assert peak_mb < 1500, f"peak memory {peak_mb} MB"  # TensorFlow itself is ~600 MB


def _resize_then_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The geometry before elongated images were cropped first: resize all of it, then crop."""
    import tensorflow as tf

    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = (max(int(np.ceil(side * scale - 1e-3)), size) for side in (h, w))
    resized = tf.image.resize(image, (nh, nw), method="bilinear", antialias=True)
    return tf.image.crop_to_bounding_box(resized, (nh - size) // 2, (nw - size) // 2, size, size).numpy()


@pytest.mark.parametrize("shape", [(40, 120), (90, 30), (7, 1000), (1000, 9)])
def test_cropping_first_keeps_what_the_model_sees(shape):
    """Up to 3:1 the geometry is unchanged exactly; beyond, a smooth image differs by under one level."""
    from flowerlib.pipeline import resize_and_crop

    h, w = shape
    ramp = np.linspace(0, 255, max(h, w), dtype=np.float32)
    image = np.broadcast_to(ramp[None, :, None] if w > h else ramp[:, None, None], (h, w, 3))
    image = np.ascontiguousarray(image)
    difference = np.abs(resize_and_crop(image, 32).numpy() - _resize_then_crop(image, 32)).max()
    assert difference == 0.0 if max(h, w) <= 3 * min(h, w) else difference < 1.0


def test_a_local_file_over_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    with open(path, "wb") as f:
        f.write(_png(8, 8))
        f.truncate(3 * 1024 * 1024)  # sparse: 3 MB on paper, nothing on disk

    def no_read(*args, **kwargs):
        raise AssertionError("read the whole file")

    monkeypatch.setattr(Path, "read_bytes", no_read)
    with pytest.raises(PredictionError, match="over the limit of 1,048,576 bytes"):
        prediction.load_image(path, max_file_bytes=1024 * 1024)
    assert prediction.MAX_FILE_BYTES >= 50 * 1024 * 1024  # room for a real camera's photo


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.jpg"
    os.mkfifo(path)
    return path


def _gif_animation(tmp_path: Path) -> Path:
    path = tmp_path / "anim.gif"
    frames = [Image.new("P", (20, 20), i) for i in (1, 2, 3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    return path


def _png16(tmp_path: Path) -> Path:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(path)
    return path


def _huge_exif(tmp_path: Path) -> Path:
    path = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif[0x010E] = "x" * 60000  # ImageDescription: 60 kB of text
    exif[0x0112] = 6  # orientation: rotated
    Image.new("RGB", (30, 20), (0, 90, 0)).save(path, "JPEG", exif=exif)
    return path


def _bad_orientation(tmp_path: Path) -> Path:
    path = tmp_path / "orient.jpg"
    exif = Image.Exif()
    exif[0x0112] = 99  # no such orientation
    Image.new("RGB", (30, 20)).save(path, "JPEG", exif=exif)
    return path


@pytest.mark.parametrize(
    "make",
    [_gif_animation, _png16, _huge_exif, _bad_orientation, lambda tmp: tmp / "x.jpg"],
    ids=["gif-animation", "16-bit-png", "huge-exif", "bad-orientation", "symlink-to-image"],
)
def test_unusual_but_valid_images_succeed(make, tmp_path, tiny_model):
    if make.__name__ == "<lambda>":
        target = tmp_path / "real.png"
        target.write_bytes(_png(12, 9))
        make(tmp_path).symlink_to(target)
    table = prediction.predict(tiny_model[0], make(tmp_path), top_k=2, class_names=list("abcd"))
    assert list(table["rank"]) == [1, 2]


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda tmp: tmp, "is not a file (a folder)"),
        (_fifo, "is not a file (a pipe"),
        (lambda tmp: Path("/dev/zero"), "is not a file"),
        (lambda tmp: _write(tmp / "empty.jpg", b""), "empty"),
        (
            lambda tmp: _write(
                tmp / "zero.png", _png(1, 1).replace(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00", 2)
            ),
            "",
        ),
        (lambda tmp: _write(tmp / "cut.png", _png(300, 300)[:60]), "truncated or corrupt"),
        (lambda tmp: _dangling(tmp), "No such file"),
        (lambda tmp: "https://", "no host given"),
        (lambda tmp: "x" * 5000, "File name too long"),
    ],
    ids=[
        "directory",
        "fifo",
        "dev-zero",
        "empty",
        "0x0-png",
        "truncated-png",
        "dangling-link",
        "bare-scheme",
        "long-name",
    ],
)
def test_unusable_sources_are_one_prediction_error(make, fragment, tmp_path, tiny_model):
    with pytest.raises(PredictionError, match=re.escape(fragment) if fragment else None) as info:
        prediction.predict(tiny_model[0], make(tmp_path))
    assert "\n" not in str(info.value) and len(str(info.value)) < 600


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _dangling(tmp: Path) -> Path:
    link = tmp / "gone.jpg"
    link.symlink_to(tmp / "never-there.jpg")
    return link


# --- URLs that lie ---------------------------------------------------------------------


class _LyingServer:
    """A raw socket server on 127.0.0.1 answering every request with fixed bytes, then closing."""

    def __init__(self, response: bytes):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/flower.png"
        self.response = response
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(self.response)

    def close(self):
        self.sock.close()


def _response(body: bytes, length: str | None, content_type: str = "image/png") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return head.encode() + b"\r\n" + body


@pytest.fixture()
def no_proxy(monkeypatch):
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.mark.parametrize(
    "length, fragment",
    [
        ("10", "not an image Pillow can read"),  # says less than it sends: cut short
        ("100000", None),  # says more than it sends: what came is a whole PNG
        ("abc", None),  # not a number: read to the end
        ("-5", None),
    ],
)
def test_a_url_whose_content_length_lies(length, fragment, no_proxy, tiny_model):
    server = _LyingServer(_response(_png(40, 30), length))
    try:
        if fragment is None:
            assert len(prediction.predict(tiny_model[0], server.url, top_k=1)) == 1
        else:
            with pytest.raises(PredictionError, match=fragment):
                prediction.predict(tiny_model[0], server.url)
    finally:
        server.close()


def test_a_url_cut_short_with_a_lying_length_is_one_error(no_proxy, tiny_model):
    server = _LyingServer(_response(_png(300, 200, compress_level=0)[:2000], "1000000"))
    try:
        with pytest.raises(PredictionError, match="truncated or corrupt|failed"):
            prediction.predict(tiny_model[0], server.url)
    finally:
        server.close()


def test_a_url_without_content_length_over_the_cap_is_cut_off(no_proxy, tiny_model):
    server = _LyingServer(_response(_png(40, 30) + b"\0" * 300_000, None))
    try:
        with pytest.raises(PredictionError, match="more than the limit of 100,000 bytes"):
            prediction.predict(tiny_model[0], server.url, max_bytes=100_000)
    finally:
        server.close()


def test_a_very_wide_png_by_url_is_fine(no_proxy, tiny_model):
    server = _LyingServer(_response(_png(6000, 1), None))
    try:
        table = prediction.predict(tiny_model[0], server.url, top_k=1)
        assert len(table) == 1
    finally:
        server.close()


# --- 5. broken model.keras and labels.json ------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage, not a zip", b"PK\x03\x04 truncated zip", "zip-without-config"],
    ids=["empty", "garbage", "truncated-zip", "zip-without-config"],
)
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_broken_model_in_the_run_folder_is_one_line(command, content, tmp_path, data_dir, capsys):
    root = tmp_path / "data"
    shutil.copytree(data_dir, root)
    model = root / "runs" / "tiny-official" / "model.keras"
    if content == "zip-without-config":
        import zipfile

        with zipfile.ZipFile(model, "w") as z:
            z.writestr("metadata.json", "{}")
    else:
        model.write_bytes(content)
    extra = [str(root / "jpg" / "image_00001.jpg")] if command == "predict" else []
    line = _one_line_error(capsys, command, *extra, "--data-dir", str(root), *SMOKE)
    assert str(model) in line and "flowerlib train" in line and "delete" in line


@pytest.mark.parametrize(
    "labels, fragment",
    [
        ("{not json", "is not valid JSON"),
        ('{"a": 1}', "JSON list of class names"),
        ("[[1], [2], [3], [4]]", "JSON list of class names"),
        ('"rose"', "JSON list of class names"),
        (
            json.dumps([f"name {i}" for i in range(1000)]),
            "holds 1000 class names but the model has 4 outputs",
        ),
        ('["a", "b"]', "holds 2 class names"),
        ("\udcff".encode("utf-8", "surrogateescape"), "labels.json"),
    ],
)
@pytest.mark.parametrize("where", ["run-folder", "beside-model"])
def test_a_bad_labels_json_is_one_line(where, labels, fragment, tmp_path, data_dir, tiny_model, capsys):
    image = str(data_dir / "jpg" / "image_00001.jpg")
    if where == "run-folder":
        root = tmp_path / "data"
        shutil.copytree(data_dir, root)
        path = root / "runs" / "tiny-official" / "labels.json"
        argv = ["predict", image, "--data-dir", str(root), *SMOKE]
        fix = "flowerlib train"
    else:
        model = tmp_path / "model.keras"
        shutil.copy(tiny_model[1], model)
        path = tmp_path / "labels.json"
        argv = ["predict", image, "--model", str(model), "--data-dir", str(tmp_path / "none")]
        fix = f"delete {path}"
    if isinstance(labels, bytes):
        path.write_bytes(labels)
    else:
        path.write_text(labels)
    line = _one_line_error(capsys, *argv)
    assert str(path) in line and fragment in line and fix in line


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda tmp, m: tmp, "not a folder"),
        (lambda tmp, m: _copy(m, tmp / "model.h5"), "must be a .keras file"),
        (lambda tmp, m: _mkdir(tmp / "dir.keras"), "not a folder"),
        (lambda tmp, m: _write(tmp / "photo.keras", _png(4, 4)), "is not a .keras archive"),
    ],
    ids=["directory", "h5-file", "directory-named-keras", "png-named-keras"],
)
def test_model_flag_pointing_at_the_wrong_thing(make, fragment, tmp_path, tiny_model, capsys):
    image = _write(tmp_path / "img.png", _png(10, 10))
    target = make(tmp_path, tiny_model[1])
    line = _one_line_error(capsys, "predict", str(image), "--model", str(target))
    assert fragment in line


def _copy(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("top_k, expected", [("1", 1), ("1000", NUM_CLASSES)])
def test_top_k_extremes(top_k, expected, tmp_path, tiny_model, capsys):
    image = _write(tmp_path / "img.png", _png(10, 10))
    code, out, _ = _run(
        capsys, "predict", str(image), "--model", str(tiny_model[1]), "--json", "--top-k", top_k
    )
    assert code == 0
    assert len(json.loads(out)[0]["predictions"]) == expected


def test_predict_classifies_the_good_image_and_names_the_folder(tmp_path, tiny_model, capsys):
    good = _write(tmp_path / "good.png", _png(10, 10))
    code, out, err = _run(capsys, "predict", str(good), str(tmp_path), "--model", str(tiny_model[1]))
    lines = [line for line in err.splitlines() if ": error:" in line]
    assert code == 2 and "Traceback" not in err
    assert out.splitlines()[0] == str(good)  # classified all the same
    assert len(lines) == 2 and "is not a file (a folder)" in lines[0] and "1 of 2 images" in lines[1]


# --- 7. full and read-only disks --------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_atomic_path_reports_disk_errors_and_never_hides_them(code, tmp_path, monkeypatch):
    target = tmp_path / "out" / "metrics.json"

    def refuse(self, *args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Path, "write_text", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)  # the cleanup fails as well, as on a read-only disk
    with pytest.raises(DiskWriteError) as info:
        artifacts.write_json(target, {"top1": 0.5})
    message = str(info.value)
    assert str(target.parent) in message and "metrics.json" in message
    assert info.value.errno == code and isinstance(info.value, OSError)
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == code


def test_atomic_path_passes_other_errors_through(tmp_path):
    with pytest.raises(KeyError), artifacts.atomic_path(tmp_path / "x.json"):
        raise KeyError("mine")
    with pytest.raises(OSError) as info, artifacts.atomic_path(tmp_path / "y.json"):
        raise OSError(errno.EIO, "I/O error")
    assert not isinstance(info.value, DiskWriteError)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_evaluate_on_a_full_or_read_only_disk_shows_the_metrics_first(code, data_dir, capsys, monkeypatch):
    real_replace = os.replace

    def refuse(src, dst, *args, **kwargs):
        if Path(dst).name in ("metrics.json", "per_class.csv"):
            raise OSError(code, os.strerror(code))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", refuse)
    run = data_dir / "runs" / "tiny-official"
    before = _snapshot(run)
    code_, out, err = _run(capsys, "evaluate", "--data-dir", str(data_dir), *SMOKE)
    assert code_ == 2, err
    assert "top-1 accuracy" in out and "macro F1" in out  # the work is shown, not lost
    lines = [line for line in err.splitlines() if ": error:" in line]
    assert len(lines) == 1 and "Traceback" not in err
    assert "could not be saved" in lines[0] and str(run) in lines[0]
    assert os.strerror(code).lower().split()[0] in lines[0].lower() or "read-only" in lines[0]
    assert _snapshot(run) == before  # no temporary file left behind


def test_evaluate_json_on_a_full_disk_still_shows_the_metrics(data_dir, capsys, monkeypatch):
    from flowerlib import evaluate

    def full(*args, **kwargs):
        raise DiskWriteError("Cannot write metrics.json in X: no space left on the device.")

    monkeypatch.setattr(evaluate, "save_metrics", full)
    code, out, err = _run(capsys, "evaluate", "--json", "--data-dir", str(data_dir), *SMOKE)
    assert code == 2 and out == ""
    assert "top-1 accuracy" in err and "no space left" in err


# --- 11. clean-data deletes only what flowerlib wrote ----------------------------------


def _flowerlib_folder(root: Path) -> Path:
    (root / "jpg").mkdir(parents=True)
    (root / "jpg" / "image_00001.jpg").write_bytes(b"x")
    (root / "splits").mkdir()
    (root / "splits" / "official.csv").write_text("a\n")
    (root / "runs" / "r1" / "checkpoints").mkdir(parents=True)
    (root / "dataset.json").write_text("{}")
    (root / ".flowerlib.lock").write_text("")
    (root / ".dataset.0123abcd.tmp.json").write_text("")
    return root


@pytest.mark.parametrize(
    "extra",
    [".git", ".env", "notes.txt", "jpg/holiday.png", "splits/mine.xlsx", "cache/model.bin", "link"],
)
def test_clean_data_refuses_anything_it_did_not_write(extra, tmp_path, capsys):
    root = _flowerlib_folder(tmp_path / "data")
    target = root / extra
    if extra == "link":
        (tmp_path / "elsewhere").mkdir()
        target.symlink_to(tmp_path / "elsewhere")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.mkdir() if extra.startswith(".git") else target.write_text("mine")
    before = _snapshot(root)
    line = _one_line_error(capsys, "clean-data", "--yes", "--data-dir", str(root))
    assert "refusing to delete" in line and extra.split("/")[-1] in line
    assert _snapshot(root) == before


def test_clean_data_deletes_its_own_hidden_files(tmp_path, capsys):
    root = _flowerlib_folder(tmp_path / "data")
    code, _, err = _run(capsys, "clean-data", "--yes", "--data-dir", str(root))
    assert code == 0, err
    assert not root.exists()


def test_clean_data_refuses_a_symlinked_data_dir(tmp_path, capsys):
    real = _flowerlib_folder(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    before = _snapshot(real)
    line = _one_line_error(capsys, "clean-data", "--yes", "--data-dir", str(link))
    assert "symbolic link" in line and str(real) in line
    assert _snapshot(real) == before and link.is_symlink()


# --- 15. a weights file that is not HDF5 -------------------------------------------------


@pytest.mark.parametrize(
    "content, kind",
    [
        (b"", "an empty file"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a JPEG image"),
        (b"\x89PNG\r\n\x1a\n....", "a PNG image"),
        (b"PK\x03\x04....", "a zip archive"),
        (b"\xef\xbb\xbf  <!DOCTYPE html><html>", "an HTML page"),
        (b"version https://git-lfs.github.com/spec/v1\n", "Git LFS pointer"),
        (b"random bytes", "not an HDF5 file"),
    ],
)
def test_a_weights_file_that_is_not_hdf5_says_what_it_is(content, kind, tmp_path):
    path = _write(tmp_path / "w.weights.h5", content)
    with pytest.raises(ModelConfigError, match=kind) as info:
        resolve_weights(path)
    assert "another backbone" not in str(info.value)


def _bad_weights_train(capsys, data_dir: Path, tmp_path: Path, weights: Path) -> str:
    root = tmp_path / "data"
    shutil.copytree(data_dir, root)
    before = _snapshot(root)
    argv = ["train", "--weights", str(weights), "--run-name", "w", "--data-dir", str(root), *SMOKE]
    line = _one_line_error(capsys, *argv)
    assert {k: v for k, v in _snapshot(root).items() if "runs/w" not in k} == before
    return line


def test_a_truncated_hdf5_weights_file_is_one_line(tmp_path, data_dir, capsys):
    shipped = Path(Config.for_profile("smoke", data_dir=tmp_path).weights)
    bad = _write(tmp_path / "cut.weights.h5", shipped.read_bytes()[:4096])
    line = _bad_weights_train(capsys, data_dir, tmp_path, bad)
    assert "cut.weights.h5" in line and "damaged or truncated" in line


def test_a_jpeg_as_weights_is_named_by_the_cli(tmp_path, data_dir, capsys):
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, "JPEG")
    weights = _write(tmp_path / "flower.jpg", jpeg.getvalue())
    line = _bad_weights_train(capsys, data_dir, tmp_path, weights)
    assert "a JPEG image" in line and "flower.jpg" in line


def test_clean_data_deletes_an_interrupted_download(tmp_path, capsys):
    root = _flowerlib_folder(tmp_path / "data")
    (root / "downloads").mkdir(exist_ok=True)
    (root / "downloads" / "102flowers.tgz.part").write_bytes(b"half an archive")
    code, _, err = _run(capsys, "clean-data", "--yes", "--data-dir", str(root))
    assert code == 0, err
    assert not root.exists()
