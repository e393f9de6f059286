"""predict(): every kind of image a user may pass, every bad input refused clearly, URLs offline;
verdict(): "not sure" below the threshold, with the candidates."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import io
import threading
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flowerlib import prediction
from flowerlib.prediction import SURE_PROBABILITY, PredictionError, verdict

SIZE = 32
NAMES = ["red", "green", "blue"]


def _colour_model(scale: float = 20.0, classes: int = 3):
    """Classifier with the contract's layer names: class = dominant colour channel (R, G, B).

    `scale` sets how confident it is; `classes` other than 3 gives extra classes that are never named.
    """
    import keras

    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="preprocess")(inputs)
    b_in = keras.Input((SIZE, SIZE, 3))
    backbone = keras.Model(b_in, keras.layers.Identity(name="last_conv")(b_in), name="backbone")
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.0, name="dropout")(x)
    dense = keras.layers.Dense(classes, activation="softmax", name="predictions")
    outputs = dense(x)
    dense.set_weights([np.eye(3, classes, dtype=np.float32) * scale, np.zeros(classes, np.float32)])
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def model():
    return _colour_model()


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


RED = (220, 30, 30)
BLUE = (30, 40, 220)


# --- good inputs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make", "top"),
    [
        ("photo.jpg", lambda: _encode(Image.new("RGB", (300, 200), RED), "JPEG"), "red"),
        ("photo.png", lambda: _encode(Image.new("RGB", (64, 64), BLUE), "PNG"), "blue"),
        ("photo.webp", lambda: _encode(Image.new("RGB", (50, 80), RED), "WEBP"), "red"),
        ("grey.png", lambda: _encode(Image.new("L", (40, 40), 200), "PNG"), None),
        ("cmyk.jpg", lambda: _encode(Image.new("RGB", (40, 40), BLUE).convert("CMYK"), "JPEG"), "blue"),
        ("grey16.png", lambda: _encode(Image.new("I;16", (40, 40), 60000), "PNG"), None),
        ("palette.gif", lambda: _encode(Image.new("RGB", (40, 40), RED).convert("P"), "GIF"), "red"),
        ("huge.png", lambda: _encode(Image.new("RGB", (4000, 3000), BLUE), "PNG"), "blue"),
        ("tiny.png", lambda: _encode(Image.new("RGB", (3, 5), RED), "PNG"), "red"),
    ],
)
def test_predict_image_files(model, tmp_path, name, make, top):
    path = tmp_path / name
    path.write_bytes(make())
    table = prediction.predict(model, path, top_k=2, class_names=NAMES)
    assert list(table.columns) == [
        "rank",
        "index",
        "name",
        "probability",
        "view",
        "box",
        "familiar",
        "crop_familiar",
        "closer_skipped",
    ]
    assert table["rank"].tolist() == [1, 2] and len(table) == 2
    assert table["probability"].is_monotonic_decreasing and table["probability"].between(0, 1).all()
    if top is not None:
        assert table["name"].iloc[0] == top
    assert prediction.predict(model, str(path), class_names=NAMES)["probability"].sum() == pytest.approx(1.0)


def test_greyscale_becomes_three_equal_channels(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (10, 10), 77).save(path)
    image = prediction.load_image(path)
    assert image.shape == (10, 10, 3) and np.all(image == 77)
    Image.new("I;16", (4, 4), 65535).save(path)
    assert np.all(prediction.load_image(path) == 255)  # 16-bit scaled, not clipped


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (20, 10), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 10, 10))  # left half opaque blue, right half transparent
    image = prediction.load_image(_encode(rgba, "PNG"))
    np.testing.assert_array_equal(image[0, 0], [0, 0, 255])
    np.testing.assert_array_equal(image[0, 15], [255, 255, 255])
    arr = np.zeros((2, 2, 4))
    arr[..., 3] = 0  # fully transparent black
    np.testing.assert_array_equal(prediction.load_image(arr), 255)


def test_exif_orientation_is_applied(model, tmp_path):
    upright = Image.new("RGB", (40, 60), RED)
    upright.paste(BLUE, (0, 30, 40, 60))  # red on top, blue below
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone writes...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with "rotate 90 clockwise to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, quality=95, exif=exif.tobytes())
    image = prediction.load_image(path)
    assert image.shape == (60, 40, 3)
    assert image[5, 20, 0] > 150 and image[55, 20, 2] > 150  # red top, blue bottom again
    assert np.argmax(prediction.load_image(Image.open(path))[5, 20]) == 0  # PIL images too


def test_pil_images_arrays_and_bytes(model):
    red = Image.new("RGB", (50, 50), RED)
    assert prediction.predict(model, red, class_names=NAMES)["name"].iloc[0] == "red"
    blue = np.zeros((40, 70, 3), np.uint8)
    blue[..., 2] = 200
    for source in (blue, blue[..., 2], blue.astype(np.float32), np.dstack([blue, np.full((40, 70), 255)])):
        top = prediction.predict(model, source, top_k=1, class_names=NAMES)
        assert len(top) == 1
    assert prediction.predict(model, blue, class_names=NAMES)["name"].iloc[0] == "blue"
    assert prediction.predict(model, _encode(red, "PNG"), class_names=NAMES)["name"].iloc[0] == "red"


def test_top_k_is_clipped_and_names_default(model):
    table = prediction.predict(model, Image.new("RGB", (8, 8), RED), top_k=10)
    assert len(table) == 3  # only three classes
    assert table["name"].iloc[0] == "pink primrose"  # Flowers-102 name of class 0


def test_predict_many_keeps_sources_apart(model):
    images = [Image.new("RGB", (20, 20), RED), Image.new("RGB", (20, 20), BLUE)]
    table = prediction.predict_many(model, images, top_k=1, class_names=NAMES, batch_size=1)
    assert table["source"].tolist() == [0, 1] and table["name"].tolist() == ["red", "blue"]


def test_prepare_image_agrees_with_the_pipeline(tmp_path):
    from flowerlib import pipeline

    rng = np.random.default_rng(0)
    for shape in ((300, 200), (41, 97), (16, 16), (24, 64)):
        array = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        path = tmp_path / f"{shape[0]}x{shape[1]}.png"  # lossless: both see the same pixels
        Image.fromarray(array).save(path)
        ours = prediction.prepare_image(path, SIZE)
        theirs = pipeline.read_image(path, SIZE)
        assert ours.shape == theirs.shape == (SIZE, SIZE, 3)
        np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_example_photo_is_shipped_small_and_upright():
    path = prediction.example_photo()
    assert path.is_file() and path.stat().st_size < 100_000
    with Image.open(path) as raw:
        assert raw.getexif().get(0x0112) == 6  # stored rotated: exercises EXIF handling
    image = prediction.load_image(path)
    assert image.shape[0] == image.shape[1] >= 256


# --- bad inputs ------------------------------------------------------------------


def _jpeg_bytes() -> bytes:
    rng = np.random.default_rng(1)
    return _encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"name,label\nrose,1\n", "not an image"),
        (b"<!DOCTYPE html><html></html>", "not an image"),
        (_jpeg_bytes()[:400], "truncated or corrupt"),
    ],
)
def test_bad_files_are_refused(model, tmp_path, content, match):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(PredictionError, match=match):
        prediction.predict(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jpg"]  # nothing written


def test_missing_path_directory_and_other_schemes(model, tmp_path):
    with pytest.raises(PredictionError, match="No such file"):
        prediction.predict(model, tmp_path / "nope.jpg")
    with pytest.raises(PredictionError, match="not a file"):
        prediction.predict(model, tmp_path)
    for url in ("ftp://example.com/rose.jpg", "file:///etc/passwd", "data://x"):
        with pytest.raises(PredictionError, match="http:// and https://"):
            prediction.predict(model, url)


def test_decompression_bomb_is_an_error_never_a_warning(model, tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (200, 100)).save(path)  # 20,000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 15_000)  # between 1x and 2x: Pillow would only warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PredictionError, match="decompression bomb"):
            prediction.predict(model, path)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)  # over 2x: Pillow raises
        with pytest.raises(PredictionError, match="decompression bomb"):
            prediction.predict(model, path)
        with pytest.raises(PredictionError, match="decompression bomb"):
            prediction.predict(model, Image.new("L", (200, 100)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 15_000)
    assert len(prediction.predict(model, path, max_pixels=30_000)) == 3


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (np.zeros((4, 4, 2)), "shape"),
        (np.zeros((0, 4, 3)), "empty"),
        (np.full((4, 4, 3), 300.0), "0..255"),
        (np.full((4, 4, 3), np.nan), "NaN"),
        (np.array([["a"]]), "numbers"),
        (12345, "source must be"),
    ],
)
def test_bad_arrays_and_objects_are_refused(model, source, match):
    with pytest.raises(PredictionError, match=match):
        prediction.predict(model, source)


def test_bad_top_k_and_class_names(model):
    image = Image.new("RGB", (8, 8))
    with pytest.raises(PredictionError, match="top_k"):
        prediction.predict(model, image, top_k=0)
    with pytest.raises(PredictionError, match="2 class names"):
        prediction.predict(model, image, class_names=["a", "b"])
    assert issubclass(PredictionError, ValueError)


# --- verdict: an honest answer ---------------------------------------------------------


def _top(*probabilities: float, names: list[str] | None = None) -> pd.DataFrame:
    """A table like `predict`'s, in the order given (not necessarily sorted)."""
    names = names or [f"class {i}" for i in range(len(probabilities))]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(probabilities) + 1),
            "index": np.arange(len(probabilities)) + 10,
            "name": names[: len(probabilities)],
            "probability": probabilities,
        }
    )


def test_sure_from_the_threshold_up_not_sure_just_below():
    assert SURE_PROBABILITY == 0.7
    assert verdict(_top(0.7, 0.2, 0.1)).sure  # the default threshold, reached exactly
    assert not verdict(_top(0.6999, 0.2, 0.1001)).sure
    assert verdict(_top(0.5, 0.3, 0.2), sure=0.5).sure
    assert not verdict(_top(0.5, 0.3, 0.2), sure=0.6).sure
    assert verdict(_top(0.35, 0.33, 0.32), sure=0.3).sure
    answer = verdict(_top(0.7, 0.2, 0.1), sure=0.7)
    assert answer.sure and answer.threshold == 0.7
    assert (answer.name, answer.probability) == ("class 0", 0.7)


def test_a_sure_answer_names_one_class():
    names = ["sunflower", "black-eyed susan", "barbeton daisy"]
    answer = verdict(_top(0.97, 0.02, 0.01, names=names))
    assert answer.sentence == "sunflower (97 %)" and str(answer) == answer.sentence
    assert [c.name for c in answer.candidates] == ["sunflower"]  # 97 % reach the 90 % alone
    assert verdict(_top(0.996, 0.004, names=names)).sentence == "sunflower (>99 %)"  # never a false 100 %
    assert verdict(_top(1.0, 0.0, names=names)).sentence == "sunflower (100 %)"


def test_not_sure_names_the_candidates_in_order():
    names = ["sunflower", "black-eyed susan", "barbeton daisy", "english marigold", "buttercup"]
    answer = verdict(_top(0.41, 0.30, 0.20, 0.05, 0.04, names=names))
    assert not answer.sure and answer.name == "sunflower" and answer.probability == 0.41
    assert answer.sentence == "Not sure: sunflower (41 %), black-eyed susan (30 %) or barbeton daisy (20 %)"
    assert [(c.index, c.name) for c in answer.candidates] == [
        (10, "sunflower"),
        (11, "black-eyed susan"),
        (12, "barbeton daisy"),
    ]


@pytest.mark.parametrize(
    ("probabilities", "mass", "expected"),
    [
        ((0.41, 0.30, 0.12, 0.08, 0.05), 0.9, 4),  # 0.83 after three, 0.91 after four
        ((0.6, 0.3, 0.1), 0.9, 2),  # 0.6 + 0.3 == 0.8999999999999999 still reaches 0.9
        ((0.45, 0.44, 0.11), 0.9, 3),
        ((0.45, 0.44, 0.11), 0.5, 2),
        ((0.2, 0.2, 0.2, 0.2, 0.2), 1.0, 5),
    ],
)
def test_candidates_are_the_fewest_that_reach_the_mass(probabilities, mass, expected):
    answer = verdict(_top(*probabilities), sure=0.99, mass=mass)  # not sure: every candidate is named
    chosen = [c.probability for c in answer.candidates]
    assert len(chosen) == expected
    assert chosen == sorted(chosen, reverse=True)
    assert sum(chosen) >= mass - 1e-6 and sum(chosen[:-1]) < mass
    for c in answer.candidates:
        assert c.name in answer.sentence


def test_candidates_are_sorted_whatever_the_order_of_the_rows():
    answer = verdict(_top(0.2, 0.45, 0.35))
    assert [c.name for c in answer.candidates] == ["class 1", "class 2", "class 0"]
    assert answer.name == "class 1" and answer.sentence.startswith("Not sure: class 1 (45 %)")


def test_when_the_rows_run_out_the_rest_is_named():
    answer = verdict(_top(0.41, 0.30, names=["rose", "tulip"]))  # e.g. top_k=2: 71 % listed
    assert answer.sentence == "Not sure: rose (41 %), tulip (30 %) or other classes (29 %)"
    assert len(answer.candidates) == 2
    assert verdict(_top(0.45, names=["rose"])).sentence == "Not sure: rose (45 %) or other classes (55 %)"


def test_names_with_commas_are_listed_with_semicolons():
    names = ["synthetic pink oval-5, green eye", "synthetic purple disc-4, orange eye"]
    answer = verdict(_top(0.48, 0.47, names=names))
    assert answer.sentence == (
        "Not sure: synthetic pink oval-5, green eye (48 %) or synthetic purple disc-4, orange eye (47 %)"
    )
    answer = verdict(_top(0.4, 0.3, 0.25, names=[*names, "synthetic red star-6, black eye"]))
    assert answer.sentence.count("; ") == 1 and " or " in answer.sentence


@pytest.mark.parametrize("bad", [0, 0.0, 1, 1.0, -0.1, 1.5, float("nan"), float("inf"), True, "0.5", None])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(PredictionError, match=r"sure must be a probability strictly between 0 and 1"):
        verdict(_top(0.6, 0.4), sure=bad)


@pytest.mark.parametrize("bad", [0, -0.5, 1.01, float("nan"), "all"])
def test_bad_masses_are_refused(bad):
    with pytest.raises(PredictionError, match=r"mass must be a probability above 0 and at most 1"):
        verdict(_top(0.6, 0.4), mass=bad)


def test_only_one_pictures_table_is_judged():
    with pytest.raises(PredictionError, match="2 pictures"):
        verdict(pd.concat([_top(0.6, 0.4).assign(source=0), _top(0.9, 0.1).assign(source=1)]))
    assert verdict(_top(0.8, 0.2).assign(source=3)).sure  # one picture's rows of predict_many
    with pytest.raises(PredictionError, match="empty"):
        verdict(_top(0.6).iloc[:0])
    with pytest.raises(PredictionError, match="columns index, name, probability"):
        verdict([0.6, 0.4])
    with pytest.raises(PredictionError, match="0..1"):
        verdict(_top(0.9, 0.8))  # not one softmax output


def test_a_verdict_cannot_be_changed():
    answer = verdict(_top(0.6, 0.4))
    with pytest.raises(dataclasses.FrozenInstanceError):
        answer.sure = False


def test_verdict_of_real_predictions(model):
    red = verdict(prediction.predict(model, Image.new("RGB", (20, 20), RED), class_names=NAMES))
    assert red.sure and red.sentence.startswith("red (")
    grey = prediction.predict(model, Image.new("RGB", (20, 20), (128, 128, 128)), class_names=NAMES)
    answer = verdict(grey)  # every colour equally likely: one third each
    assert not answer.sure and answer.probability == pytest.approx(1 / 3, abs=1e-3)
    assert sorted(c.name for c in answer.candidates) == sorted(NAMES)
    assert answer.sentence.startswith("Not sure: ") and all(name in answer.sentence for name in NAMES)
    assert verdict(grey, sure=0.3).sure  # the same picture: the threshold decides
    many = prediction.predict_many(model, [Image.new("RGB", (8, 8), BLUE)], class_names=NAMES)
    assert verdict(many).name == "blue"


# --- URLs against a real HTTP server on 127.0.0.1 -------------------------------------


class _ImageServer:
    """Loopback server: `/ok.jpg`, `/big` (lies about nothing, just big), `/endless`
    (no Content-Length, never ends), `/stall` (headers, then silence), `/drip`
    (one byte at a time, forever), `/page` (HTML), `/missing` (404), `/broken` (500),
    `/redirect` (to /ok.jpg), `/to-ftp` (redirect to ftp://)."""

    def __init__(self, image: bytes):
        self.stop = threading.Event()
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _head(self, status, ctype, length=None, extra=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()

            def do_GET(self):
                outer.requests.append(self.path)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                    self._route()

            def _route(self):
                if self.path == "/ok.jpg":
                    self._head(200, "image/jpeg", len(image))
                    self.wfile.write(image)
                elif self.path == "/big":
                    self._head(200, "image/jpeg", 50_000_000)
                    self.wfile.write(image)
                elif self.path in ("/endless", "/drip"):
                    self._head(200, "image/jpeg")
                    self.close_connection = True
                    chunk = b"\xff" * (65536 if self.path == "/endless" else 1)
                    while not outer.stop.is_set():
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        if self.path == "/drip":
                            outer.stop.wait(0.05)
                elif self.path == "/stall":
                    self._head(200, "image/jpeg", len(image))
                    self.wfile.flush()
                    outer.stop.wait(30)
                elif self.path == "/page":
                    body = b"<html><body>Not here</body></html>"
                    self._head(200, "text/html; charset=utf-8", len(body))
                    self.wfile.write(body)
                elif self.path == "/redirect":
                    self._head(302, "text/plain", 0, [("Location", "/ok.jpg")])
                elif self.path == "/to-ftp":
                    self._head(302, "text/plain", 0, [("Location", "ftp://127.0.0.1/ok.jpg")])
                elif self.path == "/broken":
                    self.send_error(500)
                else:
                    self.send_error(404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def image_server(monkeypatch):
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = _ImageServer(_encode(Image.new("RGB", (120, 90), BLUE), "JPEG"))
    yield server
    server.close()


def test_url_prediction_writes_nothing_to_disk(model, image_server, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for path in ("/ok.jpg", "/redirect"):
        table = prediction.predict(model, image_server.url + path, class_names=NAMES)
        assert table["name"].iloc[0] == "blue"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("path", "kwargs", "match"),
    [
        ("/big", {}, "over the limit"),
        ("/endless", {"max_bytes": 200_000}, "more than the limit"),
        ("/stall", {"timeout": 0.5}, "longer than 0.5 s"),
        ("/drip", {"timeout": 0.5}, "longer than 0.5 s"),
        ("/page", {}, "HTML page"),
        ("/missing", {}, "HTTP 404.*Check the address"),
        ("/broken", {}, "HTTP 500.*try again later"),
        ("/to-ftp", {}, "only http:// and https://"),
    ],
)
def test_bad_urls_are_refused(model, image_server, path, kwargs, match):
    with pytest.raises(PredictionError, match=match):
        prediction.predict(model, image_server.url + path, **kwargs)


def test_unreachable_host_is_a_clear_error(model, image_server):
    url = image_server.url + "/ok.jpg"
    image_server.close()
    with pytest.raises(PredictionError, match="Could not reach|failed"):
        prediction.predict(model, url, timeout=2)


# --- looking closer, and the unfamiliar-photo warning ----------------------------------


def _grey_with_red_corner(side=300, patch=50):
    """A grey photo (no sure answer) with a small red square near the bottom-left corner."""
    image = np.full((side, side, 3), 128, np.uint8)
    image[side - patch - 20 : side - 20, 10 : 10 + patch] = RED
    return image


def test_closer_boxes_cover_the_photo_with_squares_of_each_scale_inside_it():
    boxes = prediction.closer_boxes(100, 100)
    assert len(boxes) == 4 + 9 + 16 == len(set(boxes))
    assert sorted({s for _, _, s in boxes}) == [35, 50, 70]
    assert all(t >= 0 and x >= 0 and t + s <= 100 and x + s <= 100 for t, x, s in boxes)
    assert {(0, 0, 35), (65, 65, 35), (0, 65, 35), (65, 0, 35)} <= set(boxes)  # the corners too
    wide = prediction.closer_boxes(100, 200)
    assert all(t + s <= 100 and x + s <= 200 for t, x, s in wide)
    assert max(x for _, x, _ in wide) == 200 - 35 and len(wide) > len(boxes)  # more positions along the width
    with pytest.raises(PredictionError, match="no pixels"):
        prediction.closer_boxes(0, 10)
    assert sorted({s for _, _, s in prediction.closer_boxes(100, 100, min_side=50)}) == [50, 70]
    assert prediction.closer_boxes(100, 100, min_side=71) == []


def test_crops_narrower_than_half_the_input_are_not_scored_and_a_tiny_photo_keeps_its_whole_answer(
    model, monkeypatch
):
    listed = []
    real = prediction.closer_boxes
    monkeypatch.setattr(
        prediction, "closer_boxes", lambda *a, **k: listed.append(real(*a, **k)) or listed[-1]
    )
    prediction.predict(model, _grey_with_red_corner(side=40, patch=8), class_names=NAMES)
    assert {s for _, _, s in listed[-1]} == {20, 28}  # 0.5 and 0.7 of 40 px; 0.35 (14 px) < SIZE / 2
    tiny = prediction.predict(model, np.full((20, 20, 3), 128, np.uint8), class_names=NAMES)  # not sure
    assert listed[-1] == [] and tiny["view"].iloc[0] == "whole" and tiny["box"].iloc[0] is None
    answer = verdict(tiny)  # the answer says why it did not look closer, and what may help
    assert answer.closer_skipped == "small" and not answer.sure
    assert answer.sentence.endswith(". It is too small for a closer look: a larger photo may help")


def _textured(side, seed=0):
    """A grey photo with grain (a real photo's detail), values 98..158."""
    return (
        (128 + np.random.default_rng(seed).integers(-30, 31, (side, side, 1)))
        .repeat(3, axis=2)
        .astype(np.uint8)
    )


def _enlarged(image, factor):
    """`image` shrunk `factor` times and enlarged back (bilinear): the pixels of a thumbnail blown up."""
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((w // factor, h // factor), Image.Resampling.BILINEAR)
    return np.array(small.resize((w, h), Image.Resampling.BILINEAR))


def test_looks_enlarged_tells_a_blown_up_thumbnail_from_a_photo_with_detail():
    photo = _textured(200)
    assert not prediction.looks_enlarged(photo)
    assert prediction.looks_enlarged(_enlarged(photo, 4)) and prediction.looks_enlarged(_enlarged(photo, 3))
    background = _enlarged(photo, 8)  # blurred everywhere ...
    background[150:190, 10:50] = photo[150:190, 10:50]  # ... but a sharp flower in one corner
    assert not prediction.looks_enlarged(background)
    assert prediction.looks_enlarged(np.full((50, 50, 3), 128, np.uint8))  # no detail at all
    assert not prediction.looks_enlarged(np.full((7, 7, 3), 128, np.uint8))  # too small to tell
    assert not prediction.looks_enlarged(_enlarged(photo, 4), levels=0.1)


def test_an_enlarged_photo_is_not_looked_at_closer(model):
    # 88 px: under the resolution the enlarged check looks at for this 32-px model (32 / 0.35),
    # so the check sees the photo's own pixels, as it sees a real photo's for a 224-px model.
    sharp = _textured(88)
    sharp[64:80, 4:20] = RED  # a small red flower near the corner; grey grain elsewhere
    assert prediction.predict(model, sharp, class_names=NAMES)["view"].iloc[0] == "closer"
    blown_up = _enlarged(sharp, 4)  # the same picture from a 22-px thumbnail
    assert prediction.looks_enlarged(blown_up)
    table = prediction.predict(model, blown_up, class_names=NAMES)
    assert table["view"].iloc[0] == "whole" and table["probability"].iloc[0] < SURE_PROBABILITY
    assert table["closer_skipped"].iloc[0] == "enlarged"
    assert verdict(table).sentence.startswith("Not sure: ")
    assert verdict(table).sentence.endswith(
        ". It has too little detail for a closer look (blurred, or enlarged from a smaller photo): a sharper photo may help"
    )
    off = prediction.predict(model, blown_up, class_names=NAMES, look_closer=False)
    assert off["closer_skipped"].iloc[0] is None  # not looking closer by request is not a skip
    assert verdict(off).closer_skipped is None and "closer" not in verdict(off).sentence


def test_looking_closer_finds_a_small_flower_off_centre_and_is_never_sure_of_it(model):
    photo = _grey_with_red_corner()
    whole = prediction.predict(model, photo, class_names=NAMES, look_closer=False)
    assert whole["view"].iloc[0] == "whole" and whole["probability"].iloc[0] < SURE_PROBABILITY
    closer = prediction.predict(model, photo, class_names=NAMES)
    assert closer["view"].iloc[0] == "closer" and closer["name"].iloc[0] == "red"
    # The answer is the mean of the whole photo's probabilities and the crop's: the crop's are
    # then 2 * answer - whole, a distribution that is surer of red than the answer says.
    crop = (
        2 * closer.sort_values("index")["probability"].to_numpy()
        - whole.sort_values("index")["probability"].to_numpy()
    )
    assert crop.min() > -1e-6 and crop.sum() == pytest.approx(1.0, abs=1e-5)
    assert (
        crop.argmax() == 0 and crop.max() > 0.9 > closer["probability"].iloc[0] > whole["probability"].max()
    )
    top, left, side = closer["box"].iloc[0]
    assert top <= 255 <= top + side and left <= 35 <= left + side  # the red square's centre is inside
    answer = verdict(closer)
    assert not answer.sure and answer.looked_closer and answer.name == "red"
    assert answer.sentence.startswith("Not sure; the whole photo and a closer look at part of it say: red (")


def test_a_sure_whole_photo_is_not_looked_at_closer(model, monkeypatch):
    calls = []
    monkeypatch.setattr(prediction, "closer_boxes", lambda *a, **k: calls.append(a) or [(0, 0, 10)])
    table = prediction.predict(model, np.full((60, 60, 3), RED, np.uint8), class_names=NAMES)
    assert table["view"].iloc[0] == "whole" and table["box"].iloc[0] is None and not calls
    assert table["closer_skipped"].iloc[0] is None and verdict(table).sentence.startswith("red (")
    prediction.predict(model, _grey_with_red_corner(), class_names=NAMES)
    assert calls, "the grey photo was looked at closer"


def test_crops_come_from_the_photo_at_its_own_resolution_and_boxes_in_its_pixels(model):
    big = np.kron(_grey_with_red_corner(), np.ones((4, 4, 1), np.uint8))  # 1200 x 1200, same picture
    table = prediction.predict(model, big, class_names=NAMES)
    top, left, side = table["box"].iloc[0]
    assert table["name"].iloc[0] == "red" and top <= 1020 <= top + side and left <= 140 <= left + side


def _reference_of_reds_and_blues():
    from flowerlib.novelty import fit_reference

    rng = np.random.default_rng(0)
    centres = np.array([[0.86, 0.12, 0.12], [0.12, 0.16, 0.86]])  # pooled features: mean colour / 255
    return fit_reference(centres[rng.integers(0, 2, 40)] + 0.02 * rng.normal(size=(40, 3)), centres + 0.03)


def _knowing(feature, threshold=0.05):
    """A reference of one training photo whose pooled features (mean colour / 255) point along `feature`."""
    from flowerlib.novelty import Reference

    unit = np.asarray([feature], np.float32) / np.linalg.norm(feature)
    return Reference(unit.astype(np.float16), threshold=threshold, quantile=0.95)


#: Knows red flowers: a grey photo is unfamiliar (cosine distance 0.28), a crop holding some red is not.
KNOWS_RED = _knowing(np.array(RED, float), threshold=0.25)


def test_a_photo_unlike_every_training_photo_is_marked_and_never_sure(model, tmp_path):
    from flowerlib.novelty import save_reference

    reference = _reference_of_reds_and_blues()
    path = save_reference(reference, tmp_path / "reference.npz")
    green = np.full((40, 40, 3), (30, 200, 30), np.uint8)
    red = np.full((40, 40, 3), RED, np.uint8)
    table = prediction.predict_many(model, [red, green], class_names=NAMES, reference=path)
    assert table.groupby("source")["familiar"].first().tolist() == [True, False]
    answers = [verdict(table[table["source"] == i]) for i in (0, 1)]
    assert answers[0].sure and answers[0].familiar is True and answers[0].sentence.startswith("red (")
    assert answers[1].name == "green" and answers[1].probability > 0.9 and not answers[1].sure
    assert answers[1].familiar is False
    assert answers[1].sentence.startswith(  # a flat picture also has too little detail to look closer
        "Not sure: green (>99 %). The photo looks unlike every training photo, so this may well be wrong. "
        "It has too little detail for a closer look"
    )
    no_reference = prediction.predict(model, green, class_names=NAMES)
    assert no_reference["familiar"].iloc[0] is None and verdict(no_reference).sure


def test_a_looked_closer_answer_is_sure_only_from_a_crop_that_looks_like_a_training_photo(model):
    # A grey photo with a red square in a corner: the whole photo is unsure (and, to a model that
    # knows red flowers, unfamiliar); a crop of the red square is confident. To a model that knows
    # only pure red (a tiny threshold) no crop is familiar, but the red crops are nearer to its
    # training photo than the whole photo is, so one still answers.
    photo = _grey_with_red_corner(side=300, patch=70)
    answers = {
        name: prediction.predict(model, photo, class_names=NAMES, reference=reference)
        for name, reference in (
            ("knows red", KNOWS_RED),
            ("knows pure red", _knowing(np.array(RED, float), threshold=0.01)),
            ("no reference", None),
        )
    }
    for name, table in answers.items():
        assert table["view"].iloc[0] == "closer" and table["name"].iloc[0] == "red", name
        assert table["probability"].iloc[0] >= SURE_PROBABILITY, name  # the mean with the whole photo
    assert answers["knows red"]["familiar"].iloc[0] == False  # noqa: E712 (a NumPy bool)
    assert answers["knows red"]["crop_familiar"].iloc[0] == True  # noqa: E712
    assert answers["knows pure red"]["crop_familiar"].iloc[0] == False  # noqa: E712
    assert answers["no reference"]["crop_familiar"].iloc[0] is None
    sure = verdict(answers["knows red"])
    assert sure.sure and sure.looked_closer and sure.familiar is False and sure.name == "red"
    assert sure.crop_familiar is True and verdict(answers["knows pure red"]).crop_familiar is False
    assert verdict(answers["no reference"]).crop_familiar is None
    assert sure.sentence.startswith("red (") and sure.sentence.endswith(
        ", after a closer look at part of the photo"
    )
    for name in ("knows pure red", "no reference"):  # an unfamiliar crop, or none known: never sure
        answer = verdict(answers[name])
        assert not answer.sure and answer.sentence.startswith(
            "Not sure; the whole photo and a closer look at part of it say: red ("
        ), name
    assert verdict(answers["knows pure red"]).sentence.endswith(
        ". The photo and the part looked at look unlike every training photo, so this may well be wrong"
    )
    assert "unlike" not in verdict(answers["no reference"]).sentence
    assert not verdict(answers["knows red"], sure=0.9).sure  # the threshold still applies
    whole = prediction.predict(model, photo, class_names=NAMES, reference=KNOWS_RED, look_closer=False)
    assert whole["crop_familiar"].iloc[0] is None and not verdict(whole).sure


def test_a_reference_needs_a_classifier_with_a_pool_layer_and_the_right_features(model):
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    flat = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(PredictionError, match="'pool' layer"):
        prediction.predict(flat, np.zeros((8, 8, 3)), reference=_reference_of_reds_and_blues())
    from flowerlib.novelty import NoveltyError, fit_reference

    other = fit_reference(np.ones((4, 5)), np.ones((4, 5)))
    with pytest.raises(NoveltyError, match="belongs to another model"):
        prediction.predict(model, np.zeros((8, 8, 3)), class_names=NAMES, reference=other)


def test_an_unfamiliar_photo_is_also_looked_at_in_finer_crops(model):
    photo = _grey_with_red_corner(side=300, patch=40)  # greyish: familiar to the first, not the second
    answers = {}
    for name, reference in (("familiar", _knowing([1.0, 1.0, 1.0])), ("unfamiliar", KNOWS_RED)):
        table = prediction.predict(model, photo, class_names=NAMES, reference=reference)
        assert bool(table["familiar"].iloc[0]) == (name == "familiar") and table["view"].iloc[0] == "closer"
        answers[name] = table
    # the crops are taken from the photo shrunk for this 32-px model: sides within a few pixels
    assert abs(answers["familiar"]["box"].iloc[0][2] - 0.35 * 300) < 4  # LOOK_CLOSER_GRID's finest
    assert abs(answers["unfamiliar"]["box"].iloc[0][2] - 0.25 * 300) < 4  # UNFAMILIAR_GRID's finest
    # the smaller crop holds more of the small red flower, so its answer is more confident
    assert answers["unfamiliar"]["probability"].iloc[0] > answers["familiar"]["probability"].iloc[0]
    top, left, side = answers["unfamiliar"]["box"].iloc[0]
    assert top <= 260 <= top + side and left <= 30 <= left + side  # the red square's centre is inside


def test_an_unfamiliar_photo_may_be_looked_at_in_smaller_crops_than_a_familiar_one(model, monkeypatch):
    listed = []
    real = prediction.closer_boxes
    monkeypatch.setattr(
        prediction, "closer_boxes", lambda *a, **k: listed.append(real(*a, **k)) or listed[-1]
    )
    photo = _grey_with_red_corner(side=40, patch=8)
    familiar = prediction.predict(model, photo, class_names=NAMES, reference=_knowing([1.0, 1.0, 1.0]))
    assert bool(familiar["familiar"].iloc[0]) and {s for _, _, s in listed[-1]} == {20, 28}  # >= SIZE / 2
    unfamiliar = prediction.predict(model, photo, class_names=NAMES, reference=KNOWS_RED)
    assert not unfamiliar["familiar"].iloc[0]
    assert {s for _, _, s in listed[-1]} == {10, 14, 20, 28}  # 0.25 and 0.35 of 40 px: >= SIZE / 4
    # the smallest crops hold the most of the small red flower: one of them answers
    assert unfamiliar["view"].iloc[0] == "closer" and unfamiliar["box"].iloc[0][2] == 10
    tiny = prediction.predict(model, photo[::4, ::4], class_names=NAMES, reference=KNOWS_RED)  # 10 px
    assert tiny["closer_skipped"].iloc[0] == "small"  # its largest crop, 7 px, is under SIZE / 4


def test_whether_a_photo_looks_enlarged_is_judged_at_the_resolution_of_the_coarser_crops(model, monkeypatch):
    # The finer crops of an unfamiliar photo are cut from a larger copy (SIZE / 0.25 = 128 px);
    # at that size a small sharp flower in a large blurred frame could pass for a blown-up
    # thumbnail, so the check sees the copy the coarser crops need (SIZE / 0.35 = 92 px).

    seen, real = [], prediction.looks_enlarged
    monkeypatch.setattr(
        prediction,
        "looks_enlarged",
        lambda image, *a, **k: seen.append(image.shape[:2]) or real(image, *a, **k),
    )
    table = prediction.predict(model, _grey_with_red_corner(side=300), class_names=NAMES, reference=KNOWS_RED)
    assert not table["familiar"].iloc[0] and abs(table["box"].iloc[0][2] - 0.25 * 300) < 4  # finer crops
    assert seen == [(92, 92)]


def test_several_models_answer_with_their_mean_probabilities(model):
    timid = _colour_model(scale=2.0)
    photos = [np.full((40, 40, 3), RED, np.uint8), np.full((40, 40, 3), BLUE, np.uint8)]
    alone = [
        prediction.predict_many(m, photos, top_k=3, class_names=NAMES, look_closer=False)
        for m in (model, timid)
    ]
    both = prediction.predict_many([model, timid], photos, top_k=3, class_names=NAMES, look_closer=False)
    for source, name in enumerate(("red", "blue")):
        probs = [t[t["source"] == source].set_index("name")["probability"] for t in (*alone, both)]
        assert probs[0][name] > 0.99 and probs[1][name] < 0.9  # the two models differ...
        pd.testing.assert_series_equal(
            probs[2], ((probs[0] + probs[1]) / 2).loc[probs[2].index]
        )  # ...and are averaged
    assert both.groupby("source")["name"].first().tolist() == ["red", "blue"]
    # a tuple works too, and looking closer averages the crops as well: the small red flower is found
    closer = prediction.predict((model, timid), _grey_with_red_corner(), class_names=NAMES)
    assert closer["view"].iloc[0] == "closer" and closer["name"].iloc[0] == "red"


def test_several_models_call_a_photo_familiar_when_more_than_half_of_them_do(model):
    red = np.full((40, 40, 3), RED, np.uint8)
    knows, not_red = _knowing(np.array(RED, float)), _knowing([0.0, 0.0, 1.0])
    for references, familiar in (
        ([knows, knows, not_red], True),  # two of three
        ([knows, not_red, not_red], False),  # one of three
        ([knows, not_red], False),  # one of two is not more than half
        ([knows, knows], True),
    ):
        table = prediction.predict([model] * len(references), red, class_names=NAMES, reference=references)
        assert bool(table["familiar"].iloc[0]) is familiar, references


def test_models_that_cannot_be_averaged_are_refused(model):
    from flowerlib.novelty import Reference

    known = Reference(np.array([[1.0, 0.0, 0.0]], np.float16), threshold=0.05, quantile=0.95)
    photo = np.full((40, 40, 3), RED, np.uint8)
    with pytest.raises(PredictionError, match="same classes and input size"):
        prediction.predict([model, _colour_model(classes=4)], photo)
    with pytest.raises(PredictionError, match="No model given"):
        prediction.predict([], photo)
    with pytest.raises(PredictionError, match="one reference per model.*1 for 2 models"):
        prediction.predict([model, model], photo, class_names=NAMES, reference=known)
    with pytest.raises(PredictionError, match="one reference per model.*3 for 2 models"):
        prediction.predict([model, model], photo, class_names=NAMES, reference=[known] * 3)
    with pytest.raises(PredictionError, match="for every model or for none"):
        prediction.predict([model, model], photo, class_names=NAMES, reference=[known, None])


def test_verdict_rejects_a_table_mixing_views(model):
    table = prediction.predict(model, np.full((40, 40, 3), RED, np.uint8), class_names=NAMES)
    table.loc[1, "view"] = "closer"
    with pytest.raises(PredictionError, match="'view' column differs"):
        verdict(table)


def test_a_crop_may_name_a_class_the_whole_photo_did_not_consider_only_when_the_photo_is_unfamiliar(
    model, monkeypatch
):
    photo = _grey_with_red_corner()
    photo[..., 1] = np.where(photo[..., 0] == 128, 134, photo[..., 1])  # greenish grey: green leads, unsure
    whole = prediction.predict(model, photo, class_names=NAMES, look_closer=False)
    assert whole["name"].iloc[0] == "green" and whole["probability"].iloc[0] < SURE_PROBABILITY
    assert prediction.predict(model, photo, class_names=NAMES)["name"].iloc[0] == "red"  # red is a candidate
    monkeypatch.setattr(prediction, "CLOSER_CANDIDATES", 1)  # now only green may be confirmed by a crop
    kept = prediction.predict(model, photo, class_names=NAMES)
    assert kept["view"].iloc[0] == "whole" and kept["name"].iloc[0] == "green"
    unfamiliar = prediction.predict(model, photo, class_names=NAMES, reference=KNOWS_RED)
    assert not unfamiliar["familiar"].iloc[0]
    assert unfamiliar["view"].iloc[0] == "closer" and unfamiliar["name"].iloc[0] == "red"


def test_crops_that_look_like_a_training_photo_come_first(model):
    # A grey photo with a large red square and a smaller blue one: the most confident crop shows
    # red. A model that was trained on blue flowers only finds the blue crops familiar, so one of
    # them answers; without a reference every crop competes.
    photo = _grey_with_red_corner()
    photo[20:50, 250:280] = BLUE
    knows_blue = _knowing(np.array(BLUE, float), threshold=0.22)
    answers = {
        name: prediction.predict(model, photo, class_names=NAMES, reference=reference)
        for name, reference in (("blue", knows_blue), ("red", KNOWS_RED), ("none", None))
    }
    assert not answers["blue"]["familiar"].iloc[0] and not answers["red"]["familiar"].iloc[0]
    assert {name: table["name"].iloc[0] for name, table in answers.items()} == {
        "blue": "blue",
        "red": "red",
        "none": "red",
    }
    assert all(table["view"].iloc[0] == "closer" for table in answers.values())
    top, left, side = answers["blue"]["box"].iloc[0]
    assert top <= 35 <= top + side and left <= 265 <= left + side  # the blue square's centre is inside
    # No crop familiar: the crops nearer a training photo than the whole photo compete, and none
    # when none is (a blurred crop of a blown-up thumbnail is farther than the whole photo).
    nearly_red = _knowing(np.array(RED, float), threshold=0.01)  # no crop is this close to red
    nearer = prediction.predict(model, photo, class_names=NAMES, reference=nearly_red)
    assert nearer["view"].iloc[0] == "closer" and nearer["name"].iloc[0] == "red"
    green = _knowing([0.0, 1.0, 0.0], threshold=0.01)  # the crops with red are farther from green
    red_corner = _grey_with_red_corner()  # without a reference, a crop of its red square answers
    fallback = prediction.predict(model, red_corner, class_names=NAMES, reference=green)
    assert not fallback["familiar"].iloc[0]
    assert fallback["view"].iloc[0] == "whole" and fallback["box"].iloc[0] is None
