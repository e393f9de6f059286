"""The `flowerlib` command: subcommands end to end on synthetic data, exit codes, --json, clean-data.

The CLI runs in-process through `cli.main([...])` (one trained smoke run is
shared by the module); one test runs the installed entry point in a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from flowerlib import cli
from flowerlib.config import Config, ConfigError

SUBCOMMANDS = ["download", "prepare", "train", "evaluate", "predict", "run", "clean-data"]
# Tiny but complete: 10 classes x 8 images, 2 head epochs and 1 fine-tuning epoch.
SMOKE = ["--profile", "smoke", "--head-epochs", "2", "--fine-tune-epochs", "1", "--quiet"]


pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`flowerlib run --json` once on synthetic data: (data_dir, parsed JSON summary)."""
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["run", "--json", "--data-dir", str(data_dir), *SMOKE])
    assert code == 0
    return data_dir, json.loads(out.getvalue())


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("flowerlib")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- help, parsing, configuration ----------------------------------------------------


def test_installed_command_shows_help():
    script = Path(sys.executable).with_name("flowerlib")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "flowerlib.cli"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in SUBCOMMANDS:
        assert name in result.stdout


def test_python_dash_m_flowerlib_runs_the_cli(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["flowerlib", "--version"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("flowerlib", run_name="__main__")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("flowerlib ")


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: flowerlib {name}" in out
    assert "--data-dir" in out and "FLOWERS_DATA_DIR" in out


@pytest.mark.parametrize(
    "argv", [["bogus"], ["train", "--bogus"], ["predict"], ["predict", "x.jpg", "--top-k", "0"]]
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "usage: flowerlib" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2", "nan", "half", "50%"])
def test_a_bad_sure_threshold_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", "x.jpg", "--sure", value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "usage: flowerlib predict" in err and "probability strictly between 0 and 1" in err


def test_sure_help_states_the_librarys_default(capsys):
    from flowerlib.prediction import SURE_PROBABILITY

    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--sure P" in help_text and f"(default {SURE_PROBABILITY:g}," in help_text


@pytest.mark.parametrize(
    "argv, usage, fragment",
    [
        (["predict", "x.jpg", "--topk", "3"], "usage: flowerlib predict", "unrecognized arguments: --topk 3"),
        (["train", "--backbone", "resnet5"], "usage: flowerlib train", "invalid choice: 'resnet5'"),
        (["prepare", "--split", "kfold"], "usage: flowerlib prepare", "invalid choice: 'kfold'"),
    ],
)
def test_typos_are_usage_errors_of_the_subcommand(argv, usage, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and usage in err and fragment in err


def test_flags_win_over_environment_which_wins_over_defaults():
    parser = cli.build_parser()
    env = {"FLOWERS_PROFILE": "smoke", "FLOWERS_HEAD_EPOCHS": "7", "FLOWERS_SEED": "3"}
    cfg = cli.config_from_args(parser.parse_args(["train", "--head-epochs", "1", "--data-dir", "/x"]), env)
    assert (cfg.profile, cfg.head_epochs, cfg.seed, cfg.data_dir) == ("smoke", 1, 3, Path("/x"))
    assert cfg.image_size == 64  # the smoke profile's default
    cfg = cli.config_from_args(parser.parse_args(["train", "--profile", "full", "--no-augment"]), env)
    assert (cfg.profile, cfg.augment, cfg.head_epochs) == ("full", False, 7)


@pytest.mark.parametrize("argv", [["--quiet", "--debug", "train"], ["train", "--quiet", "--debug"]])
def test_common_flags_work_before_and_after_the_subcommand(argv):
    args = cli.build_parser().parse_args(argv)
    assert args.quiet and args.debug


def test_weights_none_flag_means_random_initialisation():
    parser = cli.build_parser()
    env = {"FLOWERS_WEIGHTS": "/some/file.h5"}
    assert cli.config_from_args(parser.parse_args(["train", "--weights", "none"]), env).weights is None
    assert cli.config_from_args(parser.parse_args(["train"]), env).weights == "/some/file.h5"


def test_every_flowerlib_error_is_a_user_error():
    assert issubclass(ConfigError, cli.USER_ERRORS) and issubclass(cli.CommandError, cli.USER_ERRORS)
    assert FileNotFoundError in cli.USER_ERRORS


def test_bad_flag_value_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = _run(capsys, "prepare", "--data-dir", str(tmp_path), "--image-size", "8")
    assert code == 2
    _assert_one_line_error(err, "flowerlib prepare: error:", "image_size=8")


def test_bad_environment_value_names_the_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLOWERS_SEED", "abc")
    code, _, err = _run(capsys, "prepare", "--data-dir", str(tmp_path))
    assert code == 2
    _assert_one_line_error(err, "FLOWERS_SEED='abc'")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ConfigError, match="image_size"):
        cli.main(["--debug", "prepare", "--data-dir", str(tmp_path), "--image-size", "8"])


def test_mirror_with_another_scheme_is_refused(tmp_path, capsys):
    code, _, err = _run(capsys, "download", "--data-dir", str(tmp_path), "--mirror", "ftp://example.org/")
    assert code == 2
    _assert_one_line_error(err, "mirror", "http://")


def test_download_from_a_bad_mirror_is_one_line_exit_2(http_server, tmp_path, capsys):
    # The loopback server serves an empty folder: every file is a 404.
    data_dir = tmp_path / "data"
    code, _, err = _run(
        capsys,
        "download",
        "--profile",
        "full",
        "--data-dir",
        str(data_dir),
        "--mirror",
        http_server.url,
        "--quiet",
    )
    assert code == 2
    assert http_server.requests, "the mirror was never asked"
    _assert_one_line_error(err, "flowerlib download: error:", "404")
    assert not (data_dir / "dataset.json").exists()


def test_prepare_without_a_dataset_says_to_download(tmp_path, capsys):
    code, _, err = _run(capsys, "prepare", "--profile", "full", "--data-dir", str(tmp_path))
    assert code == 2
    _assert_one_line_error(err, "flowerlib download")


def test_ctrl_c_exits_130_and_says_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    from flowerlib import splits

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(splits, "prepare_split", interrupted)
    code, _, err = _run(capsys, "prepare", "--data-dir", str(tmp_path))
    assert code == 130
    assert "resume" in err and "Traceback" not in err


def test_library_warnings_are_one_line(tmp_path, monkeypatch, capsys):
    from flowerlib import splits

    def partial(cfg):
        warnings.warn("only 3 of 5 images are present", splits.PartialDatasetWarning, stacklevel=2)
        raise splits.SplitError("the 'test' part is empty")

    monkeypatch.setattr(splits, "prepare_split", partial)
    code, _, err = _run(capsys, "prepare", "--data-dir", str(tmp_path))
    assert code == 2
    assert err.splitlines() == [
        "flowerlib prepare: warning: only 3 of 5 images are present",
        "flowerlib prepare: error: the 'test' part is empty",
    ]


# --- end to end on synthetic data ----------------------------------------------------


def test_run_does_all_four_steps(trained):
    data_dir, summary = trained
    assert list(summary) == ["download", "prepare", "train", "evaluate"]
    assert summary["download"]["num_images"] == 10 * 8  # FLOWERS_SYNTHETIC_IMAGES_PER_CLASS was read
    assert summary["prepare"]["counts"]["test"] > 0
    assert summary["train"]["head_epochs"] == 2 and summary["train"]["fine_tune_epochs"] == 1
    assert summary["train"]["temperature"] > 0  # the confidence was calibrated on the validation images
    metrics = summary["evaluate"]
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
    run = data_dir / "runs" / "tiny-official"
    assert (run / "model.keras").is_file() and (run / "labels.json").is_file()
    assert json.loads((run / "metrics.json").read_text())["top1"] == metrics["top1"]


def test_evaluate_with_tta_writes_metrics(trained, capsys):
    data_dir, _ = trained
    code, out, _ = _run(capsys, "evaluate", "--tta", "--json", "--data-dir", str(data_dir), *SMOKE)
    assert code == 0
    metrics = json.loads(out)
    assert metrics["tta"] is True and metrics["part"] == "test"
    assert json.loads(Path(metrics["metrics_file"]).read_text())["tta"] is True


def test_predict_prints_the_answer_and_a_table(trained, capsys):
    data_dir, _ = trained
    image = data_dir / "jpg" / "image_00001.jpg"
    argv = ["predict", str(image), "--top-k", "3", "--data-dir", str(data_dir), *SMOKE]
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == str(image), out
    (result,) = json.loads(_run(capsys, *argv, "--json")[1])
    assert lines[1] == "  " + result["sentence"]  # the answer in words, then the table
    top = result["predictions"][0]
    if result["sure"]:
        assert lines[1].startswith(f"  {top['name']} (") and lines[1].endswith(" %)")
    elif result["view"] == "closer":
        assert lines[1].startswith(
            f"  Not sure; the whole photo and a closer look at part of it say: {top['name']} ("
        )
    else:
        assert lines[1].startswith(f"  Not sure: {top['name']} (")
    if result["view"] == "closer":  # which part of the photo answered
        box = result["box"]
        assert (
            lines.pop(2)
            == f"  (the {box['side']}-px square at left {box['left']}, top {box['top']} of the photo)"
        )
    assert [line.split(".")[0].strip() for line in lines[2:]] == ["1", "2", "3"]
    assert all("%" in line for line in lines[2:])


def test_predict_says_which_crop_answered(trained, capsys, monkeypatch):
    import pandas as pd

    from flowerlib import prediction

    data_dir, _ = trained
    names = json.loads((data_dir / "runs" / "tiny-official" / "labels.json").read_text())

    crop_familiar = [False]

    def looked_closer(
        model, sources, top_k=5, class_names=None, **kwargs
    ):  # a crop's answer, as the library gives it
        return pd.DataFrame(
            {
                "source": 0,
                "rank": [1, 2],
                "index": [3, 1],
                "name": [names[3], names[1]],
                "probability": [0.8, 0.1],
                "view": "closer",
                "box": [(10, 20, 130)] * 2,
                "familiar": False,
                "crop_familiar": crop_familiar[0],
                "closer_skipped": None,
            }
        )

    monkeypatch.setattr(prediction, "predict_many", looked_closer)
    image = str(data_dir / "jpg" / "image_00001.jpg")
    argv = ("predict", image, "--top-k", "2", "--data-dir", str(data_dir), *SMOKE)
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    lines = out.splitlines()
    assert lines[1].startswith(
        f"  Not sure; the whole photo and a closer look at part of it say: {names[3]} (80 %)"
    )
    assert lines[2] == "  (the 130-px square at left 20, top 10 of the photo)"
    crop_familiar[0] = True  # the crop looks like a training photo: its answer may be sure
    lines = _run(capsys, *argv)[1].splitlines()
    assert lines[1:3] == [
        f"  {names[3]} (80 %), after a closer look at part of the photo",
        "  (the 130-px square at left 20, top 10 of the photo)",
    ]
    (result,) = json.loads(_run(capsys, *argv, "--json")[1])
    assert result["sure"] is True and result["familiar"] is False and result["crop_familiar"] is True


def test_predict_classifies_the_readable_images_and_reports_the_others(trained, tmp_path, capsys):
    data_dir, _ = trained
    good = [str(data_dir / "jpg" / "image_00001.jpg"), str(data_dir / "jpg" / "image_00002.jpg")]
    bad = _write(tmp_path / "notes.jpg", b"not an image at all")
    common = ["--top-k", "2", "--data-dir", str(data_dir), *SMOKE]
    code, out, err = _run(capsys, "predict", good[0], bad, good[1], *common)
    assert code == 2  # an unreadable image is an error, after the others were classified
    assert [line for line in out.splitlines() if line and not line.startswith(" ")] == good
    errors = [line for line in err.splitlines() if line.startswith("flowerlib predict: error:")]
    assert len(errors) == 2 and "Traceback" not in err
    assert "notes.jpg" in errors[0] and "not an image" in errors[0]
    assert "1 of 3 images could not be read" in errors[1] and "the other 2 were classified" in errors[1]
    code, out, _ = _run(capsys, "predict", good[0], bad, good[1], "--json", *common)
    assert code == 2
    results = json.loads(out)  # every image in its place, the unreadable one with its error
    assert [r["image"] for r in results] == [good[0], bad, good[1]]
    assert set(results[1]) == {"image", "error"} and "not an image" in results[1]["error"]
    assert all(len(r["predictions"]) == 2 for r in (results[0], results[2]))


def test_predict_with_no_readable_image_says_so_for_each(trained, tmp_path, capsys):
    data_dir, _ = trained
    bad = [_write(tmp_path / "notes.jpg", b"not an image at all"), _write(tmp_path / "empty.png", b"")]
    code, out, err = _run(capsys, "predict", *bad, "--data-dir", str(data_dir), *SMOKE)
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("flowerlib predict: error:")]
    assert len(errors) == 3 and "not an image" in errors[0] and "empty" in errors[1]
    assert "None of the 2 images could be read" in errors[2]
    for images in (bad, bad[:1]):  # under --json still a list, each image with its error
        code, out, err = _run(capsys, "predict", *images, "--json", "--data-dir", str(data_dir), *SMOKE)
        assert code == 2 and "Traceback" not in err
        results = json.loads(out)
        assert [r["image"] for r in results] == images and all(set(r) == {"image", "error"} for r in results)
        assert "not an image" in results[0]["error"]


def test_predict_json_parses_and_respects_top_k(trained, capsys):
    data_dir, _ = trained
    images = [str(data_dir / "jpg" / "image_00001.jpg"), str(data_dir / "jpg" / "image_00002.jpg")]
    code, out, err = _run(
        capsys, "predict", *images, "--json", "--top-k", "2", "--data-dir", str(data_dir), *SMOKE
    )
    assert code == 0
    assert "#" not in err  # the table is for humans; under --json only the JSON is printed
    results = json.loads(out)
    assert [r["image"] for r in results] == images
    names = json.loads((data_dir / "runs" / "tiny-official" / "labels.json").read_text())
    for result in results:
        preds = result["predictions"]
        assert [p["rank"] for p in preds] == [1, 2]
        assert preds[0]["probability"] >= preds[1]["probability"]
        assert all(p["name"] == names[p["index"]] for p in preds)
        # The answer: sure from the default threshold 0.7 up, for the whole photo of a familiar kind;
        # the candidates are the top rows.
        assert result["threshold"] == 0.7 and isinstance(
            result["familiar"], bool
        )  # training wrote a reference
        whole = result["view"] == "whole"
        trusted = result["familiar"] if whole else result["crop_familiar"]  # a crop's answer: the crop's
        assert result["crop_familiar"] is None if whole else isinstance(result["crop_familiar"], bool)
        assert result["sure"] is (preds[0]["probability"] >= 0.7 and trusted)
        assert (result["box"] is None) is whole
        assert result["closer_skipped"] in (None, "small", "enlarged")
        assert result["closer_skipped"] is None or (whole and not result["sure"])
        candidates = result["candidates"]
        assert 1 <= len(candidates) <= 2
        assert candidates == [
            {k: p[k] for k in ("index", "name", "probability")} for p in preds[: len(candidates)]
        ]
        assert result["sentence"].startswith("Not sure" if not result["sure"] else candidates[0]["name"])


def test_sure_changes_the_answer_for_the_same_image_and_exit_stays_0(trained, tmp_path, capsys):
    from PIL import Image

    data_dir, _ = trained
    common = ["--data-dir", str(data_dir), *SMOKE]
    images = [str(data_dir / "jpg" / f"image_{i:05d}.jpg") for i in range(1, 21)]
    for name, pixels in [("grey", 128), ("dark", 30)]:  # no flower at all: likely among the least sure
        Image.new("RGB", (64, 64), (pixels,) * 3).save(tmp_path / f"{name}.png")
        images.append(str(tmp_path / f"{name}.png"))
    common.append("--no-look-closer")  # the threshold alone decides here
    code, out, _ = _run(capsys, "predict", *images, "--json", *common)
    assert code == 0
    # The least confident of the familiar pictures: its top probability is well inside (0, 1).
    familiar = [r for r in json.loads(out) if r["familiar"]]
    assert all(r["view"] == "whole" for r in json.loads(out)) and familiar
    result = min(familiar, key=lambda r: r["predictions"][0]["probability"])
    image, top = result["image"], result["predictions"][0]
    assert 0.0 < top["probability"] < 0.999, top
    above, below = (1 + top["probability"]) / 2, top["probability"] / 2

    code, out, err = _run(capsys, "predict", image, "--sure", f"{above:.6f}", *common)
    assert code == 0 and "flowerlib predict: error" not in err  # "not sure" is an answer, not a failure
    sentence = out.splitlines()[1]
    assert sentence.startswith(f"  Not sure: {top['name']} (")
    (json_result,) = json.loads(
        _run(capsys, "predict", image, "--sure", f"{above:.6f}", "--json", *common)[1]
    )
    assert json_result["sure"] is False and json_result["threshold"] == pytest.approx(above, abs=1e-6)
    assert json_result["candidates"][0]["name"] == top["name"]
    reached = sum(c["probability"] for c in json_result["candidates"]) >= 0.9 - 1e-6
    assert reached or len(json_result["candidates"]) == 5  # 90 % of the probability, or all top-5 rows

    code, out, _ = _run(capsys, "predict", image, "--sure", f"{below:.6f}", *common)
    assert code == 0
    assert out.splitlines()[1].startswith(f"  {top['name']} (")  # the class alone
    (json_result,) = json.loads(
        _run(capsys, "predict", image, "--sure", f"{below:.6f}", "--json", *common)[1]
    )
    assert json_result["sure"] is True and json_result["sentence"].startswith(top["name"])


def test_predict_flags_an_unfamiliar_photo_and_warns_when_the_model_has_no_reference(
    trained, tmp_path, capsys
):
    import shutil

    import numpy as np
    from PIL import Image

    data_dir, _ = trained
    run = data_dir / "runs" / "tiny-official"
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")  # nothing like the synthetic flowers
    flower = str(data_dir / "jpg" / "image_00001.jpg")
    code, out, err = _run(
        capsys, "predict", flower, str(tmp_path / "noise.png"), "--json", "--data-dir", str(data_dir), *SMOKE
    )
    assert code == 0 and "warning" not in err
    results = json.loads(out)
    assert results[1]["familiar"] is False and results[1]["sure"] is False
    unlike = "The photo looks" if results[1]["view"] == "whole" else "The photo and the part looked at look"
    assert results[1]["sentence"].endswith(f"{unlike} unlike every training photo, so this may well be wrong")
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(run / "model.keras", copy / "model.keras")
    shutil.copy(run / "labels.json", copy / "labels.json")
    code, out, err = _run(capsys, "predict", flower, "--model", str(copy / "model.keras"), "--json")
    assert code == 0 and "no reference.npz beside" in err and "not flagged" in err
    assert json.loads(out)[0]["familiar"] is None


def test_predict_with_a_model_file_and_no_labels_says_which_names_it_shows(trained, tmp_path, capsys):
    import shutil

    from flowerlib.classes import CLASS_NAMES

    data_dir, _ = trained
    shutil.copy(data_dir / "runs" / "tiny-official" / "model.keras", tmp_path / "model.keras")
    image = str(data_dir / "jpg" / "image_00003.jpg")
    code, out, err = _run(capsys, "predict", image, "--model", str(tmp_path / "model.keras"), "--json")
    assert code == 0
    assert "no labels.json beside" in err
    assert "the first 10 Flowers-102 class names (right only if it was trained on those classes)" in err
    assert {p["name"] for p in json.loads(out)[0]["predictions"]} <= set(CLASS_NAMES[:10])


def test_predict_with_a_model_file_uses_its_labels(trained, tmp_path, capsys):
    data_dir, _ = trained
    model = data_dir / "runs" / "tiny-official" / "model.keras"
    image = data_dir / "jpg" / "image_00003.jpg"
    # The configured data directory has no model: --model alone decides.
    code, out, _ = _run(
        capsys, "predict", str(image), "--model", str(model), "--json", "--data-dir", str(tmp_path)
    )
    assert code == 0
    (result,) = json.loads(out)
    names = json.loads(model.with_name("labels.json").read_text())
    assert len(result["predictions"]) == 5
    assert {p["name"] for p in result["predictions"]} <= set(names)


def test_predict_averages_several_model_files(trained, tmp_path, capsys):
    import shutil

    data_dir, _ = trained
    run = data_dir / "runs" / "tiny-official"
    image = str(data_dir / "jpg" / "image_00003.jpg")

    def copy(name: str, files=("model.keras", "labels.json", "reference.npz")) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for file in files:
            shutil.copy(run / file, folder / file)
        return folder / "model.keras"

    code, out, _ = _run(capsys, "predict", image, "--model", str(run / "model.keras"), "--json")
    assert code == 0
    (alone,) = json.loads(out)
    # A copy of the same model: its own probabilities, the two references' votes agreeing.
    twin = copy("twin")
    code, out, err = _run(capsys, "predict", image, "--model", str(run / "model.keras"), "--model", str(twin))
    assert code == 0 and "warning" not in err
    assert out.startswith("The mean of 2 models' probabilities answers: ")
    assert alone["sentence"] in out
    bare = copy("bare", ("model.keras", "labels.json"))  # no reference.npz: no unfamiliar-photo warning
    code, out, err = _run(
        capsys, "predict", image, "--model", str(run / "model.keras"), "--model", str(bare), "--json"
    )
    assert code == 0 and "no reference.npz beside" in err and "the unfamiliar-photo warning is off" in err
    (both,) = json.loads(out)
    assert both["familiar"] is None and both["predictions"][0]["name"] == alone["predictions"][0]["name"]
    assert both["predictions"][0]["probability"] == pytest.approx(
        alone["predictions"][0]["probability"], abs=1e-6
    )


def test_predict_refuses_models_that_cannot_be_averaged(trained, tmp_path, capsys):
    import shutil

    data_dir, _ = trained
    run = data_dir / "runs" / "tiny-official"
    model = str(run / "model.keras")
    image = str(data_dir / "jpg" / "image_00003.jpg")
    code, _, err = _run(
        capsys, "predict", image, "--model", model, "--model", str(run / ".." / run.name / "model.keras")
    )
    assert code == 2
    _assert_one_line_error(err, "is the same file as --model", "give each model once")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(run / "model.keras", other / "model.keras")
    code, _, err = _run(capsys, "predict", image, "--model", model, "--model", str(other / "model.keras"))
    assert code == 2
    _assert_one_line_error(err, "other/model.keras has no labels.json beside it", "copy labels.json")
    names = json.loads((run / "labels.json").read_text())
    import keras

    inputs = keras.Input((48, 48, 3))  # a model of other input size, with the same labels
    small = tmp_path / "small"
    small.mkdir()
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    keras.Model(inputs, keras.layers.Dense(len(names), activation="softmax")(pooled)).save(
        small / "model.keras"
    )
    shutil.copy(run / "labels.json", small / "labels.json")
    code, _, err = _run(capsys, "predict", image, "--model", model, "--model", str(small / "model.keras"))
    assert code == 2
    _assert_one_line_error(err, "small/model.keras takes 48-px images", "the same --image-size")
    (other / "labels.json").write_text(json.dumps(names[::-1]))  # the same classes in another order
    code, _, err = _run(capsys, "predict", image, "--model", model, "--model", str(other / "model.keras"))
    assert code == 2
    _assert_one_line_error(err, "names other classes than", "same classes")


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_missing_model_says_what_to_run(command, tmp_path, capsys):
    extra = ["some.jpg"] if command == "predict" else []
    code, _, err = _run(capsys, command, *extra, "--data-dir", str(tmp_path), *SMOKE)
    assert code == 2
    _assert_one_line_error(err, f"flowerlib {command}: error:", "flowerlib train", "model.keras")


def test_missing_model_names_the_runs_that_have_one(tmp_path, capsys):
    for run in ("mnv2", "tiny-official"):  # two trained runs (their files need only exist here)
        folder = tmp_path / "runs" / run
        folder.mkdir(parents=True)
        (folder / "model.keras").write_bytes(b"")
        (folder / "labels.json").write_text("[]")
    (tmp_path / "runs" / "half").mkdir()  # a run that never finished: not offered
    code, _, err = _run(capsys, "predict", "x.jpg", "--data-dir", str(tmp_path), *SMOKE, "--run-name", "mine")
    assert code == 2
    _assert_one_line_error(
        err, "runs/mine/model.keras", "trained runs: mnv2, tiny-official.", "--run-name NAME"
    )
    assert "half" not in err


def test_predict_with_a_missing_model_file(tmp_path, capsys):
    code, _, err = _run(capsys, "predict", "x.jpg", "--model", str(tmp_path / "nope.keras"))
    assert code == 2
    _assert_one_line_error(err, "nope.keras", "flowerlib train")


@pytest.mark.parametrize(
    ("make_source", "expected"),
    [
        (lambda tmp: _write(tmp / "notes.jpg", b"not an image at all"), "not an image"),
        (lambda tmp: _write(tmp / "empty.png", b""), "empty"),
        (lambda tmp: "ftp://example.org/rose.jpg", "http"),
        (lambda tmp: str(tmp / "missing.jpg"), "No such file"),
    ],
    ids=["not-an-image", "empty-file", "ftp-url", "missing-file"],
)
def test_predict_refuses_bad_images(trained, tmp_path, capsys, make_source, expected):
    data_dir, _ = trained
    source = make_source(tmp_path)
    code, out, err = _run(capsys, "predict", str(source), "--data-dir", str(data_dir), *SMOKE)
    assert code == 2
    assert out == ""
    _assert_one_line_error(err, "flowerlib predict: error:", expected)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


# --- clean-data ------------------------------------------------------------------------


def _fake_data_dir(root: Path) -> Path:
    (root / "splits").mkdir(parents=True)
    (root / "splits" / "official.csv").write_text("image_id\n1\n")
    (root / "dataset.json").write_text("{}")
    return root


def test_clean_data_with_yes_deletes(tmp_path, capsys):
    root = _fake_data_dir(tmp_path / "data")
    code, out, _ = _run(capsys, "clean-data", "--yes", "--data-dir", str(root))
    assert code == 0 and not root.exists()
    assert "deleted" in out


def test_clean_data_without_yes_and_no_terminal_refuses(tmp_path, monkeypatch, capsys):
    root = _fake_data_dir(tmp_path / "data")
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # not a terminal
    code, _, err = _run(capsys, "clean-data", "--data-dir", str(root))
    assert code == 2 and root.exists()
    _assert_one_line_error(err, "--yes")


def test_clean_data_asks_on_a_terminal(tmp_path, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    root = _fake_data_dir(tmp_path / "data")
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    assert cli.main(["clean-data", "--data-dir", str(root)]) == 0
    assert root.exists()
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    assert cli.main(["clean-data", "--data-dir", str(root)]) == 0
    assert not root.exists()


def test_clean_data_refuses_a_folder_it_did_not_fill(tmp_path, capsys):
    root = _fake_data_dir(tmp_path / "data")
    (root / "thesis.tex").write_text("years of work")
    code, _, err = _run(capsys, "clean-data", "--yes", "--data-dir", str(root))
    assert code == 2 and (root / "thesis.tex").exists()
    _assert_one_line_error(err, "thesis.tex")


def test_clean_data_knows_every_file_training_wrote(trained):
    data_dir, _ = trained  # downloaded, split, trained (feature and feature-map caches), evaluated
    assert any((data_dir / "cache").glob("activations-*.npy"))
    assert cli._foreign_entries(data_dir) == []


def test_clean_data_of_a_missing_folder_is_fine(tmp_path, capsys):
    code, out, _ = _run(capsys, "clean-data", "--yes", "--data-dir", str(tmp_path / "none"))
    assert code == 0 and "nothing to delete" in out


def test_runs_lists_every_run_side_by_side_and_names_what_is_missing(tmp_path, capsys):
    import json as json_

    root = tmp_path / "data"
    code, out, _ = _run(capsys, "runs", "--data-dir", str(root))
    assert code == 0 and "no runs" in out
    good = root / "runs" / "good"
    good.mkdir(parents=True)
    (good / "config.json").write_text(
        json_.dumps({"backbone": "tiny", "image_size": 64, "seed": 7, "dropout": 0.2})
    )
    (good / "history.csv").write_text("phase,epoch,val_accuracy\nhead,1,0.5\nfine_tune,1,0.75\n")
    (good / "metrics.json").write_text(json_.dumps({"top1": 0.7, "top5": 0.9, "ece": 0.05}))
    broken = root / "runs" / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text("{not json")
    code, out, _ = _run(capsys, "runs", "--json", "--data-dir", str(root))
    rows = {r["run"]: r for r in json_.loads(out)}
    assert code == 0 and set(rows) == {"good", "broken"}
    assert rows["good"]["best_val_accuracy"] == 0.75 and rows["good"]["test_top1"] == 0.7
    assert rows["good"]["seed"] == 7  # models trained with other seeds, to average, are told apart
    assert rows["good"]["note"] == ""
    assert "no config.json" in rows["broken"]["note"] and "metrics.json unreadable" in rows["broken"]["note"]


def test_runs_and_predict_point_to_the_other_profiles_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the profiles' default data directories
    smoke_run = Config.for_profile("smoke").data_dir / "runs" / "tiny-official"
    assert tmp_path in smoke_run.parents
    code, out, _ = _run(capsys, "runs")
    assert code == 0 and "no runs" in out and "--profile" not in out  # nothing anywhere: nothing to point to
    smoke_run.mkdir(parents=True)
    (smoke_run / "model.keras").write_bytes(b"PK")
    code, out, _ = _run(capsys, "runs")
    assert code == 0 and "The smoke profile's data directory has trained runs: add --profile smoke." in out
    code, _, err = _run(capsys, "predict", str(tmp_path / "photo.jpg"))
    assert code != 0 and "add --profile smoke" in err
    code, out, _ = _run(capsys, "runs", "--data-dir", str(tmp_path / "mine"))
    assert "--profile" not in out  # a data directory of one's own is not a profile's default


def test_train_json_prints_only_the_summary_and_says_the_run_was_loaded(trained, capsys):
    data_dir, _ = trained
    loud = [a for a in SMOKE if a != "--quiet"]
    code, out, err = _run(
        capsys, "train", "--json", "--strategy", "default", "--data-dir", str(data_dir), *loud
    )
    summary = json.loads(out)  # nothing but the JSON on stdout
    assert code == 0 and summary["resumed"] is True
    assert "already finished" in err  # the sentence about saved state goes to stderr under --json
