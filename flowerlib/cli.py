"""The `flowerlib` command: the four steps of the notebooks, from a terminal.

    flowerlib download                 # step 1: fetch + verify + extract (or generate, --profile smoke)
    flowerlib prepare                  # step 2: write the split table
    flowerlib train                    # step 3: head phase + fine-tuning, artifacts in the run folder
    flowerlib evaluate [--tta]         # step 4: metrics on the held-out test split
    flowerlib predict IMAGE... [--top-k K] [--sure P] [--no-look-closer] [--model FILE] [--json]
    flowerlib run                      # steps 1-4 in order
    flowerlib clean-data [--yes]       # delete the data directory

Every subcommand calls the same library functions as the notebooks. The
configuration comes from flags, then `FLOWERS_*` environment variables, then
the profile's defaults (`Config.from_env(**flags)`).

Exit status: 0 on success; 2 on a user error (a bad flag or configuration value,
a missing dataset or model, an unusable image, a failed download), with one
line on stderr and no traceback (`--debug` or `FLOWERS_DEBUG=1` shows it);
130 on Ctrl-C (running the same command again resumes: finished steps are
reused and training continues after its last completed epoch). Anything else is
a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from flowerlib.artifacts import DiskWriteError, Layout
from flowerlib.config import Config
from flowerlib.errors import FlowerlibError

EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class CommandError(FlowerlibError):
    """The command cannot do what was asked (e.g. `clean-data` without confirmation)."""


class Partial(NamedTuple):
    """A command's result when part of the work failed: `main` prints it, then `error`, and exits 2."""

    result: Any
    error: str


#: What `main` reports in one line, exiting with status 2: every flowerlib error,
#: and a missing file (e.g. an image passed to `predict`).
USER_ERRORS = (FlowerlibError, FileNotFoundError)


# --- configuration from flags ------------------------------------------------------


def _weights(value: str) -> str | None:
    return None if value.lower() in ("none", "null", "random") else value


def _probability(value: str) -> float:
    """A threshold strictly between 0 and 1 (`--sure`)."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0.0 < number < 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"expected a probability strictly between 0 and 1 (e.g. 0.5), received {value!r}"
        )
    return number


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {value!r}")
    return number


# flag -> (Config field, type or None for an on/off switch, help)
CONFIG_FLAGS: dict[str, tuple[str, Callable[[str], Any] | None, str]] = {
    "--data-dir": ("data_dir", Path, "data directory (default: a per-user cache folder per profile)"),
    "--mirror": ("mirror", str, "base URL of a mirror of the three dataset files"),
    "--source": ("source", Path, "a local 102flowers.tgz or extracted folder, instead of downloading"),
    "--synthetic": ("synthetic", None, "generate the synthetic dataset instead of using the real one"),
    "--num-classes": ("num_classes", int, "number of classes (102 for the real dataset)"),
    "--backbone": ("backbone", str, "the pretrained network under the new head"),
    "--weights": ("weights", _weights, "'imagenet', 'none' (random init) or a local weights file"),
    "--image-size": ("image_size", int, "model input side in pixels"),
    "--batch-size": ("batch_size", int, "images per batch"),
    "--seed": ("seed", int, "seed for splits, augmentation and initialisation"),
    "--split": ("split", str, "official (1,020/1,020/6,149), trainval, or random (stratified)"),
    "--head-epochs": ("head_epochs", int, "epochs of the head-only phase"),
    "--head-learning-rate": ("head_learning_rate", float, "learning rate of the head-only phase"),
    "--fine-tune-epochs": ("fine_tune_epochs", int, "epochs of fine-tuning (0 skips it)"),
    "--fine-tune-learning-rate": ("fine_tune_learning_rate", float, "learning rate of fine-tuning"),
    "--fine-tune-stages": ("fine_tune_stages", int, "how many of the backbone's last stages to unfreeze"),
    "--augment": ("augment", None, "random flips, rotations and zooms of training images"),
    "--cache-features": ("cache_features", None, "train the head on cached backbone features"),
    "--cache-views": ("cache_views", int, "augmented views per training image in the feature cache"),
    "--dropout": ("dropout", float, "dropout rate before the softmax layer"),
    "--label-smoothing": ("label_smoothing", float, "share of each target spread over all classes (0: off)"),
    "--patience": ("patience", int, "early-stopping patience in epochs (validation loss)"),
    "--calibrate": ("calibrate", None, "fit a temperature on the validation images after training"),
    "--tensorboard": (
        "tensorboard",
        None,
        "also write TensorBoard logs to runs/RUN/logs/ (pip install -e '.[tensorboard]')",
    ),
    "--strategy": ("strategy", str, "auto: MirroredStrategy with several GPUs; default; mirrored"),
    "--mixed-precision": ("mixed_precision", str, "auto: float16 compute on a GPU, float32 on a CPU"),
    "--jit-compile": ("jit_compile", str, "XLA compilation (auto: off, it was slower on a CPU)"),
    "--run-name": ("run_name", str, "artifact folder under DATA_DIR/runs/ (default BACKBONE-SPLIT)"),
}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def config_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Config:
    """The configuration of a parsed command line: flags, then `FLOWERS_*` environment, then defaults.

    Args:
        args: the result of `build_parser().parse_args(...)`.
        environ: the environment to read (default `os.environ`).

    Returns:
        The validated `Config`.

    Raises:
        ConfigError: a flag or environment variable is not a valid value.
    """
    overrides: dict[str, Any] = {}
    if getattr(args, "profile", None):
        overrides["profile"] = args.profile
    for flag, (field, _, _) in CONFIG_FLAGS.items():
        value = getattr(args, _dest(flag), None)
        if value is not None or (field == "weights" and getattr(args, "weights_given", False)):
            overrides[field] = value
    return Config.from_env(environ, **overrides)


class _WeightsAction(argparse.Action):
    """Store `--weights` and remember that it was given (`none` stores None)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.weights_given = True


def _add_common_flags(parser: argparse.ArgumentParser, *, in_subcommand: bool) -> None:
    # In a subcommand the defaults are suppressed, so that `flowerlib --debug train`
    # and `flowerlib train --debug` both work.
    default: Any = argparse.SUPPRESS if in_subcommand else False
    parser.add_argument("--debug", action="store_true", default=default, help="show tracebacks of errors")
    parser.add_argument("--quiet", action="store_true", default=default, help="no progress bars")


_METAVARS: dict[Any, str] = {int: "N", float: "RATE", Path: "PATH"}


def _backbone_names() -> list[str]:
    from flowerlib.backbones import BACKBONES  # defines the registry; imports no TensorFlow

    return sorted(BACKBONES)


def _split_names() -> list[str]:
    from flowerlib.config import SPLITS

    return list(SPLITS)


# Fields whose values are checked by argparse (a typo is a usage error before any work).
_CHOICES: dict[str, Callable[[], list[str]]] = {
    "backbone": _backbone_names,
    "split": _split_names,
    "strategy": lambda: ["auto", "default", "mirrored"],
    "mixed_precision": lambda: ["auto", "on", "off"],
    "jit_compile": lambda: ["auto", "on", "off"],
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "configuration",
        "flags win over FLOWERS_* environment variables, which win over the profile's defaults",
    )
    group.add_argument(
        "--profile",
        choices=["full", "smoke"],
        help="full: the real dataset and ResNet50; smoke: synthetic data, a tiny network (env FLOWERS_PROFILE)",
    )
    for flag, (field, type_, help_) in CONFIG_FLAGS.items():
        help_ = f"{help_} [env FLOWERS_{field.upper()}]"
        if type_ is None:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif field == "weights":
            group.add_argument(flag, type=type_, action=_WeightsAction, metavar="WEIGHTS", help=help_)
        elif field in _CHOICES:
            group.add_argument(flag, choices=_CHOICES[field](), default=None, help=help_)
        else:
            metavar = "URL" if field == "mirror" else _METAVARS.get(type_, "NAME")
            group.add_argument(flag, type=type_, default=None, metavar=metavar, help=help_)


# --- output ------------------------------------------------------------------------


def _say(*lines: str) -> None:
    """Progress and status lines (stdout, or stderr under --json: see `_json_mode`)."""
    for line in lines:
        print(line, flush=True)


@contextlib.contextmanager
def _json_mode(enabled: bool) -> Iterator[Any]:
    """Under `--json`, send everything but the JSON (status lines, Keras progress) to stderr.

    Yields the real stdout, where the JSON goes.
    """
    out = sys.stdout
    if not enabled:
        yield out
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield out


def _keras_verbose(args: argparse.Namespace) -> int:
    """Keras `fit` verbosity: none with --quiet, bars on a terminal, one line per epoch otherwise."""
    if args.quiet:
        return 0
    return 1 if sys.stdout.isatty() else 2


@contextlib.contextmanager
def _short_warnings(command: str) -> Iterator[None]:
    """Show flowerlib's own warnings as one line (`flowerlib CMD: warning: ...`), others as usual."""
    package = str(Path(__file__).parent)
    with warnings.catch_warnings():
        default = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if str(filename).startswith(package) or category.__module__.startswith("flowerlib"):
                text = " ".join(str(message).split())
                print(f"flowerlib {command}: warning: {text}", file=sys.stderr)
            else:
                default(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def _percent(x: float) -> str:
    return f"{100 * x:5.1f}%"


# --- the steps ---------------------------------------------------------------------


def cmd_download(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Step 1: `download.fetch_dataset(cfg)`."""
    from flowerlib import download

    layout = download.fetch_dataset(cfg, progress=not args.quiet)
    info = download.dataset_info(layout) or {}
    images = info.get("num_images")
    origin = info.get("source", "unknown source")
    _say(f"dataset ready in {layout.root}" + (f": {images:,} images ({origin})" if images else ""))
    return {"data_dir": str(layout.root), "num_images": images, "source": origin}


def cmd_prepare(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Step 2: `splits.prepare_split(cfg)`."""
    from flowerlib import splits

    table = splits.prepare_split(cfg)
    counts = {part: int((table["split"] == part).sum()) for part in splits.PARTS}
    csv = Layout(cfg.data_dir).split_csv(cfg.split)
    _say(
        f"split {cfg.split!r} of {table['label'].nunique()} classes: "
        + ", ".join(f"{n:,} {part}" for part, n in counts.items())
        + f" -> {csv}"
    )
    return {"split": cfg.split, "counts": counts, "file": str(csv)}


def cmd_train(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Step 3: `train.train(cfg)`; each phase says whether it trained, resumed or was restored."""
    from flowerlib import train

    _say(f"training {cfg.backbone!r} on the {cfg.split!r} split, run {cfg.run!r}")
    result = train.train(cfg, restart=getattr(args, "restart", False), verbose=_keras_verbose(args))
    history = result.history
    summary: dict[str, Any] = {
        "model": str(result.run.model),
        "resumed": bool(result.resumed),
        "phases": result.info.get("phases", {}),
    }
    for phase, rows in history.groupby("phase", sort=False):
        best = float(rows["val_accuracy"].max())
        summary[f"{phase}_epochs"] = len(rows)
        summary[f"{phase}_best_val_accuracy"] = best
        if "val_top5" in rows:
            summary[f"{phase}_best_val_top5"] = float(rows["val_top5"].max())
        _say(f"{str(phase).replace('_', '-')}: {len(rows)} epochs, best validation accuracy {_percent(best)}")
    if "temperature" in result.info:
        info = result.info
        summary["temperature"] = info["temperature"]
        _say(
            f"calibrated: temperature {info['temperature']:.2f} (validation calibration error "
            f"{info['val_ece_before']:.3f} -> {info['val_ece_after']:.3f}; accuracy unchanged)"
        )
    _say(f"model {'unchanged' if result.info.get('loaded') else 'saved'}: {result.run.model}")
    return summary


def cmd_evaluate(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Step 4: `evaluate.evaluate` on the held-out test split, metrics saved beside the model."""
    from flowerlib import evaluate, splits

    model, names, run = evaluate.load_trained(cfg)
    table = splits.prepare_split(cfg)
    n_test = int((table["split"] == "test").sum())
    _say(f"evaluating {run.model} on {n_test:,} test images" + (" with TTA" if args.tta else ""))
    quiet = args.quiet or getattr(args, "json", False)
    result = evaluate.evaluate(model, table, cfg, tta=args.tta, class_names=names, progress=not quiet)
    m = result.metrics
    # Shown before they are saved: a full or read-only disk must not lose the computed work.
    _say(
        f"top-1 accuracy           {_percent(m['top1'])}",
        f"top-{m['top5_k']} accuracy           {_percent(m['top5'])}",
        f"mean per-class accuracy  {_percent(m['mean_per_class_accuracy'])}",
        f"macro F1                 {m['macro_f1']:.3f}",
        f"calibration error (ECE)  {m['ece']:.3f}",
        "worst classes: "
        + ", ".join(
            f"{row.class_name} {_percent(row.accuracy).strip()}"
            for row in result.per_class.head(3).itertuples()
        ),
    )
    try:
        path = evaluate.save_metrics(result, run)
    except DiskWriteError as e:
        raise CommandError(
            f"The metrics above were computed but could not be saved to {run.metrics}: {e}"
        ) from e
    _say(f"metrics written: {path}")
    return {**m, "metrics_file": str(path)}


def _check_model_file(path: Path) -> None:
    """Refuse a --model path that is not a `.keras` file, before anything is loaded."""
    if path.is_dir():
        raise CommandError(f"--model must be a .keras file, not a folder. Received {path}")
    if path.suffix != ".keras":
        raise CommandError(f"--model must be a .keras file written by `flowerlib train`. Received {path}")
    if not path.is_file():
        if path.exists():
            raise CommandError(f"--model must be a regular .keras file. Received {path}")
        raise FileNotFoundError(
            f"No model file at {path}. Check the path: `flowerlib train` writes the model to "
            "DATA_DIR/runs/RUN/model.keras (`flowerlib runs` lists the trained runs)."
        )


def _load_model_file(path: Path) -> tuple[Any, list[str] | None]:
    """A `.keras` model given with --model (checked by `_check_model_file`), and the class names
    of `labels.json` beside it."""
    from flowerlib.evaluate import read_labels
    from flowerlib.model import load_model

    model = load_model(path)  # a broken file is a ModelConfigError that names it
    labels = path.with_name("labels.json")
    if not labels.exists():
        from flowerlib.classes import NUM_CLASSES

        outputs = int(model.output_shape[-1])
        shown = (
            "Flowers-102 class names"
            if outputs == NUM_CLASSES
            else f"the first {outputs} Flowers-102 class names (right only if it was trained on those classes)"
            if outputs < NUM_CLASSES
            else "class numbers"
        )
        print(
            f"flowerlib predict: warning: no labels.json beside {path}; showing {shown}. Copy labels.json "
            "from the run folder the model came from to show its own class names",
            file=sys.stderr,
        )
        return model, None
    fix = (
        f"put the labels.json written with this model beside it, or delete {labels} "
        "to show Flowers-102 class names"
    )
    return model, read_labels(labels, int(model.output_shape[-1]), fix=fix)


def _load_models(paths: Sequence[Path]) -> tuple[list[Any], list[str] | None]:
    """The models of --model (one or more, to average) and their class names, which must agree."""
    seen: dict[Path, Path] = {}
    for path in paths:
        if path.resolve() in seen:
            raise CommandError(
                f"--model {path} is the same file as --model {seen[path.resolve()]}: give each model once "
                "(models to average are trained with different seeds, each in its own run)."
            )
        seen[path.resolve()] = path
    labelled = [path.with_name("labels.json").exists() for path in paths]
    if any(labelled) and not all(labelled):
        raise CommandError(
            f"{paths[labelled.index(False)]} has no labels.json beside it, so its classes cannot be checked "
            "against the other models': copy labels.json from the run folder it came from."
        )
    loaded = [_load_model_file(path) for path in paths]
    first, (model, names) = paths[0], loaded[0]
    size, classes = model.input_shape[1], int(model.output_shape[-1])
    for path, (other, other_names) in zip(paths[1:], loaded[1:], strict=True):
        if (other.input_shape[1], int(other.output_shape[-1])) != (size, classes):
            raise CommandError(
                f"{path} takes {other.input_shape[1]}-px images and has {int(other.output_shape[-1])} classes, "
                f"{first} {size}-px images and {classes} classes: only models trained with the same "
                "--image-size on the same classes can be averaged."
            )
        if other_names != names:
            raise CommandError(
                f"{path} names other classes than {first} (their labels.json differ): only models "
                "trained on the same classes can be averaged."
            )
    return [model for model, _ in loaded], names


def _reference_beside(model_file: Path) -> Any:
    """The `reference.npz` training wrote beside `model_file`, or None with a warning when there is none."""
    from flowerlib.novelty import load_reference

    path = model_file.with_name("reference.npz")
    if not path.is_file():
        print(
            f"flowerlib predict: warning: no reference.npz beside {model_file}; photos unlike every "
            "training photo are not flagged (copy it from the run folder the model came from, or train "
            "again to write it)",
            file=sys.stderr,
        )
        return None
    return load_reference(path)  # a broken file is a NoveltyError that says what to do


def _read_images(sources: Sequence[str], *, say_each: bool) -> tuple[list[Any], list[Exception | None]]:
    """Each image read and checked: the pictures that could be, and each source's error (None if read).

    With `say_each`, each error is printed as it is found (the others are still classified).
    """
    from flowerlib import prediction

    images: list[Any] = []
    errors: list[Exception | None] = []
    for source in sources:
        try:
            images.append(prediction.load_image(source))
            errors.append(None)
        except USER_ERRORS as e:
            errors.append(e)
            if say_each:
                print(f"flowerlib predict: error: {_one_line(e)}", file=sys.stderr)
    return images, errors


def _one_line(error: BaseException) -> str:
    """An error's message on one line, as `main` prints it."""
    return " ".join(str(error).split()) or type(error).__name__


def cmd_predict(cfg: Config, args: argparse.Namespace) -> list[dict[str, Any]] | Partial:
    """The answer and the top-k classes of each image (files or http(s) URLs).

    The answer is `prediction.verdict`'s sentence: the class alone when its
    calibrated probability reaches `--sure` and the photo is like the training
    photos (or, after looking closer, the crop that answered is), else "Not
    sure..." with the candidates; the photo is looked at closer in crops when the
    whole gives no sure answer (unless --no-look-closer). A not-sure answer is an
    answer: the exit status stays 0. An image that cannot be read is an error
    (exit status 2) after the others have been classified.
    """
    from flowerlib import evaluate, prediction

    sure = prediction.SURE_PROBABILITY if args.sure is None else args.sure
    if args.model:
        for path in args.model:
            _check_model_file(path)
    else:
        evaluate.trained_run(cfg)  # a missing model is said before any image is read
    single = len(args.images) == 1
    images, errors = _read_images(args.images, say_each=not single)  # before TensorFlow starts
    if not images:
        message = f"None of the {len(errors)} images could be read (each one's error is above)."
        if getattr(args, "json", False):  # still a list, each image with its error
            records = [{"image": s, "error": _one_line(e)} for s, e in zip(args.images, errors, strict=True)]
            return Partial(records, _one_line(errors[0]) if single else message)
        if single:
            raise errors[0]
        raise CommandError(message)
    if args.model:
        models, names = _load_models(args.model)
        files = args.model
    else:
        model, names, run = evaluate.load_trained(cfg)
        models, files = [model], [run.model]
    references = [_reference_beside(path) for path in files]
    if None in references and len(files) > 1:
        references = None
        print(
            "flowerlib predict: warning: the unfamiliar-photo warning is off, as one of the models has no "
            "reference.npz (above)",
            file=sys.stderr,
        )
    if len(models) > 1:
        _say(f"The mean of {len(models)} models' probabilities answers: {', '.join(map(str, files))}.", "")
    table = prediction.predict_many(
        models,
        images,
        top_k=args.top_k,
        class_names=names,
        look_closer=not args.no_look_closer,
        sure=sure,
        reference=references,
    )
    results, position = [], 0  # every image in its place; `position` counts the readable ones
    for source, error in zip(args.images, errors, strict=True):
        if error is not None:
            results.append({"image": source, "error": _one_line(error)})
            continue
        rows = table[table["source"] == position].drop(columns="source")
        position += 1
        answer = prediction.verdict(rows, sure)
        box = rows["box"].iloc[0]
        results.append(
            {
                "image": source,
                "predictions": rows[["rank", "index", "name", "probability"]].to_dict(orient="records"),
                "sure": answer.sure,
                "sentence": answer.sentence,
                "threshold": answer.threshold,
                "candidates": [c._asdict() for c in answer.candidates],
                "view": rows["view"].iloc[0],
                "box": None if box is None else dict(zip(("top", "left", "side"), box, strict=True)),
                "familiar": answer.familiar,
                "crop_familiar": answer.crop_familiar,
                "closer_skipped": answer.closer_skipped,
            }
        )
    failed = len(args.images) - position
    if not getattr(args, "json", False):  # the JSON on stdout says it all
        for number, result in enumerate(r for r in results if "error" not in r):
            _say(*([""] if number else []), result["image"], f"  {result['sentence']}")
            if result["box"] is not None:
                box = result["box"]
                _say(f"  (the {box['side']}-px square at left {box['left']}, top {box['top']} of the photo)")
            width = max(len(p["name"]) for p in result["predictions"])
            for p in result["predictions"]:
                bar = "#" * round(20 * p["probability"])
                _say(f"  {p['rank']:>2}. {p['name']:<{width}}  {_percent(p['probability'])}  {bar}".rstrip())
    if failed:
        return Partial(
            results,
            f"{failed} of {len(args.images)} images could not be read (each one's error is above); "
            f"the other {len(args.images) - failed} "
            f"{'was' if len(args.images) - failed == 1 else 'were'} classified.",
        )
    return results


def cmd_export(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    """The trained model as a TensorFlow SavedModel and a LiteRT (TFLite) file, with labels.json."""
    from flowerlib import evaluate
    from flowerlib.model import export_model

    if args.model is not None:
        model, names = _load_model_file(args.model)
        default = args.model.with_name("export")
    else:
        model, names, run = evaluate.load_trained(cfg)
        default = run.root / "export"
    folder = args.output or default
    _say(f"exporting to {folder} (SavedModel and LiteRT)")
    paths = export_model(model, folder, names)
    for kind, path in paths.items():
        _say(f"{kind:12} {path}")
    return {k: str(v) for k, v in paths.items()}


def cmd_runs(cfg: Config, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The runs in the data directory side by side (settings, validation and test accuracy)."""
    from flowerlib.artifacts import runs_table

    table = runs_table(cfg.data_dir)
    records = json.loads(table.to_json(orient="records")) if len(table) else []
    if getattr(args, "json", False):
        return records
    if not records:
        from flowerlib.evaluate import other_profile_hint

        _say(
            f"no runs in {cfg.data_dir / 'runs'} yet: train one with `flowerlib train`.{other_profile_hint(cfg)}"
        )
    else:
        _say(table.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.3g}"))
    return records


def cmd_run(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Steps 1-4 in order."""
    args.tta = False
    summary = {}
    steps = [("download", cmd_download), ("prepare", cmd_prepare), ("train", cmd_train)]
    steps.append(("evaluate", cmd_evaluate))
    for number, (name, step) in enumerate(steps, start=1):
        _say(f"== step {number}/4: {name} ==")
        summary[name] = step(cfg, args)
    return summary


#: What a data directory may hold for `clean-data` to delete it (see `flowerlib.artifacts`):
#: top-level name -> pattern of the names inside it (None: anything, e.g. a run's files).
_DATA_ENTRIES: dict[str, str | None] = {
    "downloads": r"(102flowers\.tgz|imagelabels\.mat|setid\.mat)(\.verified|\.part)?|tmp\w{8}",
    "jpg": r"image_\d{5}\.jpg",
    "imagelabels.mat": None,
    "setid.mat": None,
    "splits": r"\w+\.(csv|json)",
    "cache": r"features-\w+\.npz|activations-\w+\.npy",
    "runs": None,
    "dataset.json": None,
}
#: Hidden names flowerlib writes: the lock, atomic_path's temporary files, staging folders.
_OWN_HIDDEN = re.compile(
    r"\.flowerlib\.lock|\.extract-[0-9a-f]{8}|\.synthetic-[0-9a-f]{8}\.tmp|\..+\.[0-9a-f]{8}\.tmp(\.\w+)?"
)


def _foreign_entries(root: Path) -> list[str]:
    """Entries of a data directory that flowerlib did not write (relative names), hidden ones included."""
    foreign = []
    for entry in sorted(root.iterdir()):
        name = entry.name
        if _OWN_HIDDEN.fullmatch(name) and not entry.is_symlink():
            continue
        if name not in _DATA_ENTRIES or entry.is_symlink():
            foreign.append(name)
            continue
        pattern = _DATA_ENTRIES[name]
        if pattern is None or not entry.is_dir():
            continue
        for inner in sorted(entry.iterdir()):
            if not (re.fullmatch(pattern, inner.name) or _OWN_HIDDEN.fullmatch(inner.name)):
                foreign.append(f"{name}/{inner.name}")
    return foreign


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def cmd_clean_data(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Delete the data directory (dataset, splits, feature caches, trained models)."""
    root = Path(cfg.data_dir)
    if root.is_symlink():
        raise CommandError(
            f"{root} is a symbolic link (to {os.readlink(root)}); refusing to delete through it. "
            "Pass the folder it points to with --data-dir, or delete it yourself."
        )
    if not root.exists():
        _say(f"nothing to delete: {root} does not exist")
        return {"deleted": None}
    if not root.is_dir():
        raise CommandError(f"{root} is not a directory; refusing to delete it. Check --data-dir.")
    try:
        foreign = _foreign_entries(root)
    except OSError as e:
        raise CommandError(f"Cannot look inside {root} ({e.strerror or e}); refusing to delete it.") from None
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise CommandError(
            f"{root} holds files flowerlib did not write ({shown}); refusing to delete it. "
            "Check --data-dir / FLOWERS_DATA_DIR, or delete the folder yourself."
        )
    size = _size(root)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError(f"Not deleting {root} without confirmation: pass --yes.")
        answer = input(
            f"Delete {root} ({size / 1e6:,.1f} MB: dataset, splits, caches, trained models)? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            _say("nothing deleted")
            return {"deleted": None}
    from flowerlib.locks import data_dir_lock

    try:
        with data_dir_lock(root, "deleting the data directory"):  # not while another step writes there
            shutil.rmtree(root)
    except OSError as e:
        raise CommandError(
            f"Could not delete all of {root} ({e.strerror or type(e).__name__}: {e.filename}); "
            "what is left is flowerlib's and safe to delete by hand."
        ) from None
    _say(f"deleted {root} ({size / 1e6:,.1f} MB)")
    return {"deleted": str(root)}


# --- the parser and main -----------------------------------------------------------

_EPILOG = """\
examples:
  flowerlib run                                  # the whole job on the real data (ResNet50)
  flowerlib run --profile smoke                  # ~20 s on a CPU: synthetic data, a tiny network
  flowerlib predict photo.jpg https://example.org/rose.jpg --top-k 3
  flowerlib predict photo.jpg --sure 0.8         # answer only at 80 % or more, else "Not sure: ..."
  FLOWERS_DATA_DIR=/data/flowers flowerlib train --backbone mobilenet_v2 --head-epochs 5

exit status: 0 success, 2 user error (one line on stderr; --debug shows the traceback),
130 interrupted (run the same command again to resume).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `flowerlib` command (one subparser per step)."""
    parser = argparse.ArgumentParser(
        prog="flowerlib",
        description="Transfer learning on Oxford Flowers-102: download, prepare, train, evaluate, predict.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from flowerlib import __version__

    parser.add_argument("--version", action="version", version=f"flowerlib {__version__}")
    _add_common_flags(parser, in_subcommand=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[..., Any], help_: str, usage: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, usage=f"flowerlib {name} [options]{usage}")
        _add_common_flags(p, in_subcommand=True)
        p.set_defaults(func=func)
        return p

    def add_json(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")

    add("download", cmd_download, "step 1: download, verify and extract the dataset (or generate it)")
    add("prepare", cmd_prepare, "step 2: build the train/val/test split table")
    p = add("train", cmd_train, "step 3: train the head, then fine-tune the last stages (resumable)")
    p.add_argument("--restart", action="store_true", help="discard this run's saved state and start afresh")
    add_json(p, "a summary of the run")
    p = add("evaluate", cmd_evaluate, "step 4: metrics of the trained model on the held-out test split")
    p.add_argument(
        "--tta", action="store_true", help="test-time augmentation (average with the mirror image)"
    )
    add_json(p, "the metrics")
    p = add(
        "predict",
        cmd_predict,
        "the answer and the top-k classes of flower photos (files or http(s) URLs)",
        " IMAGE [IMAGE ...]",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="an image file or an http(s) URL")
    p.add_argument(
        "--top-k", type=_positive_int, default=5, metavar="K", help="classes per image (default 5)"
    )
    p.add_argument(
        "--sure",
        type=_probability,
        default=None,
        metavar="P",
        help="the calibrated top probability from which the answer is given as sure; below it the "
        "answer is 'Not sure' and the candidates (default 0.7, prediction.SURE_PROBABILITY; "
        "chosen on held-out pictures: benchmarks/unlike_accuracy.py --split half-val)",
    )
    p.add_argument(
        "--model",
        type=Path,
        action="append",
        metavar="FILE",
        help="a .keras model (class names from labels.json, the unfamiliar-photo reference from "
        "reference.npz beside it); default: the configured run's model. Given several times, the "
        "models' probabilities are averaged (models trained with other seeds: see the README)",
    )
    p.add_argument(
        "--no-look-closer",
        action="store_true",
        help="classify the whole photo only. By default, when the whole photo gives no sure answer, square "
        "crops of it are scored too (29 of a square photo, more of a wider or unfamiliar one, none of a photo "
        "too small or enlarged from a smaller one; see the README); if the most confident crop beats the "
        "whole photo, the answer's probabilities are the mean of that crop's and the whole photo's; it is "
        "given as sure only when that crop looks like a training photo (needs reference.npz) and the mean "
        "reaches --sure",
    )
    add_json(p, "the predictions and the answers")
    p = add("run", cmd_run, "all four steps in order: download, prepare, train, evaluate")
    add_json(p, "a summary of every step")
    p = add(
        "export", cmd_export, "write the trained model as a TensorFlow SavedModel and a LiteRT (.tflite) file"
    )
    p.add_argument(
        "--model", type=Path, default=None, metavar="FILE", help="a .keras model (default: the run's)"
    )
    p.add_argument(
        "--output", type=Path, default=None, metavar="DIR", help="default: export/ beside the model"
    )
    add_json(p, "the written paths")
    p = add("runs", cmd_runs, "list the trained runs of the data directory with their settings and metrics")
    add_json(p, "the table")
    p = add("clean-data", cmd_clean_data, "delete the data directory (dataset, splits, caches, models)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for p in sub.choices.values():
        _add_config_flags(p)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._subparsers._group_actions:  # argparse keeps subparsers here
        if command in action.choices:
            return action.choices[command]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `flowerlib` command.

    Args:
        argv: the arguments (default `sys.argv[1:]`).

    Returns:
        The exit status: 0 success, 2 user error, 130 interrupted. A usage error
        (unknown subcommand or flag) exits with 2 from argparse.
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # report it with the subcommand's usage, not the top-level one
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    debug = args.debug or os.environ.get("FLOWERS_DEBUG", "") in ("1", "true", "yes", "on")
    from flowerlib.runtime import quiet_tensorflow

    quiet_tensorflow()
    try:
        with _short_warnings(args.command), _json_mode(getattr(args, "json", False)) as stdout:
            cfg = config_from_args(args)
            result = args.func(cfg, args)
            partial = isinstance(result, Partial)
            if getattr(args, "json", False):
                value = result.result if partial else result
                print(json.dumps(value, indent=2, default=_json_default), file=stdout)
        if partial:
            print(f"flowerlib {args.command}: error: {result.error}", file=sys.stderr)
            return EXIT_USER_ERROR
        return EXIT_OK
    except KeyboardInterrupt:
        if debug:
            raise
        print(
            f"flowerlib {args.command}: interrupted. Run the same command again to resume "
            "(finished steps are reused; training continues after its last completed epoch).",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"flowerlib {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR


def _json_default(value: Any) -> Any:
    """NumPy scalars and paths in JSON output."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
