"""The `flowerlib` command: the four steps of the notebooks, from a terminal.

    flowerlib download            # step 1: fetch + verify + extract (or generate, --profile smoke)
    flowerlib prepare             # step 2: write the split table
    flowerlib train               # step 3: head phase + fine-tuning, artifacts in the run folder
    flowerlib evaluate [--tta]    # step 4: metrics on the held-out test split
    flowerlib predict IMAGE...    # top-k classes of any flower photo (file or URL)
    flowerlib run                 # steps 1-4 in order

Configuration comes from flags, then `FLOWERS_*` environment variables, then the
profile's defaults. User errors exit with status 2 and one line on stderr
(`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flowerlib.config import Config, ConfigError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# flag name -> (Config field, type, help)
_CONFIG_FLAGS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--data-dir": ("data_dir", Path, "data directory (default: a per-user cache; env FLOWERS_DATA_DIR)"),
    "--mirror": ("mirror", str, "base URL of a mirror of the dataset files (env FLOWERS_MIRROR)"),
    "--source": ("source", Path, "local 102flowers.tgz or extracted folder to use instead of downloading"),
    "--backbone": ("backbone", str, "resnet50 (default), mobilenet_v2, mobilenet, tiny"),
    "--weights": ("weights", str, "'imagenet', 'none' or a local weights file (env FLOWERS_WEIGHTS)"),
    "--image-size": ("image_size", int, "model input side in pixels"),
    "--batch-size": ("batch_size", int, "images per batch"),
    "--seed": ("seed", int, "seed for splits, augmentation and initialisation"),
    "--split": ("split", str, "official, trainval or random"),
    "--head-epochs": ("head_epochs", int, "epochs of the head-only phase"),
    "--fine-tune-epochs": ("fine_tune_epochs", int, "epochs of fine-tuning (0 skips it)"),
    "--fine-tune-stages": ("fine_tune_stages", int, "how many last backbone stages to unfreeze"),
    "--run-name": ("run_name", str, "artifact folder under DATA_DIR/runs/"),
}


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the user must change something', imported lazily."""
    errors: list[type[BaseException]] = [ConfigError, FileNotFoundError]
    for module, name in [
        ("flowerlib.download", "DownloadError"),
        ("flowerlib.splits", "SplitError"),
        ("flowerlib.pipeline", "PipelineError"),
        ("flowerlib.backbones", "ModelConfigError"),
        ("flowerlib.model", "ModelConfigError"),
        ("flowerlib.train", "TrainError"),
        ("flowerlib.evaluate", "EvaluationError"),
        ("flowerlib.prediction", "PredictionError"),
    ]:
        try:
            mod = __import__(module, fromlist=[name])
        except ImportError:
            continue
        if isinstance(getattr(mod, name, None), type):
            errors.append(getattr(mod, name))
    return tuple(errors)


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if args.profile:
        overrides["profile"] = args.profile
    for flag, (field, _, _) in _CONFIG_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            if field == "weights" and str(value).lower() in ("none", "random"):
                value = None
            overrides[field] = value
    return Config.from_env(**overrides)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (flags > FLOWERS_* environment > profile defaults)")
    group.add_argument("--profile", choices=["full", "smoke"], help="full (real data) or smoke (synthetic)")
    for flag, (_, type_, help_) in _CONFIG_FLAGS.items():
        group.add_argument(flag, type=type_, default=None, help=help_)


# -- the steps ---------------------------------------------------------------


def cmd_download(cfg: Config, args: argparse.Namespace) -> int:
    from flowerlib import download

    layout = download.fetch_dataset(cfg, progress=not args.quiet)
    print(f"dataset ready: {layout.root}")
    return 0


def cmd_prepare(cfg: Config, args: argparse.Namespace) -> int:
    from flowerlib import splits

    table = splits.prepare_split(cfg)
    counts = table["split"].value_counts().reindex(["train", "val", "test"]).fillna(0).astype(int)
    print(f"split {cfg.split!r}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"written: {_layout(cfg).split_csv(cfg.split)}")
    return 0


def cmd_train(cfg: Config, args: argparse.Namespace) -> int:
    from flowerlib import train

    result = train.train(cfg)
    print(f"model saved: {result.run.model}")
    return 0


def cmd_evaluate(cfg: Config, args: argparse.Namespace) -> int:
    from flowerlib import evaluate

    model, _ = evaluate.load_trained(cfg)
    from flowerlib import splits

    table = splits.prepare_split(cfg)
    result = evaluate.evaluate(model, table, cfg, tta=args.tta)
    evaluate.save_metrics(result, _layout(cfg).run(cfg.run))
    if args.json:
        print(json.dumps(result.metrics, indent=2, default=float))
    else:
        for key, value in result.metrics.items():
            print(f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}")
        print(f"metrics written: {_layout(cfg).run(cfg.run).metrics}")
    return 0


def cmd_predict(cfg: Config, args: argparse.Namespace) -> int:
    from flowerlib import evaluate, prediction

    if args.model is not None:
        from flowerlib import model as model_lib

        model = model_lib.load_model(args.model)
        labels_file = Path(args.model).with_name("labels.json")
        names = json.loads(labels_file.read_text()) if labels_file.is_file() else None
    else:
        model, names = evaluate.load_trained(cfg)
    rows = []
    for source in args.images:
        table = prediction.predict(model, source, top_k=args.top_k, class_names=names)
        rows.append({"source": source, "predictions": table.to_dict(orient="records")})
        if not args.json:
            print(f"\n{source}")
            for rec in table.itertuples():
                print(f"  {rec.rank}. {rec.name:<28} {rec.probability:6.1%}")
    if args.json:
        print(json.dumps(rows, indent=2, default=float))
    return 0


def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    args.tta = False
    for step in (cmd_download, cmd_prepare, cmd_train, cmd_evaluate):
        step(cfg, args)
    return 0


def cmd_clean_data(cfg: Config, args: argparse.Namespace) -> int:
    import shutil

    root = cfg.data_dir
    if not root.exists():
        print(f"nothing to delete: {root} does not exist")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"Refusing to delete {root} without confirmation: pass --yes.")
        answer = input(f"Delete {root} (downloaded data, splits, caches, trained models)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept")
            return 0
    shutil.rmtree(root)
    print(f"deleted {root}")
    return 0


def _layout(cfg: Config):
    from flowerlib.artifacts import Layout

    return Layout(cfg.data_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowerlib",
        description="Transfer learning on Oxford Flowers-102: download, prepare, train, evaluate, predict.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _add_config_flags(p)
        p.set_defaults(func=func)
        return p

    add("download", cmd_download, "step 1: download, verify and extract the dataset")
    add("prepare", cmd_prepare, "step 2: build the train/val/test split table")
    add("train", cmd_train, "step 3: train the head, then fine-tune the last stages")
    p = add("evaluate", cmd_evaluate, "step 4: metrics of the trained model on the held-out test split")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (horizontal flip)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p = add("predict", cmd_predict, "classify flower photos (files or http(s) URLs)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file or http(s) URL")
    p.add_argument("--top-k", type=int, default=5, help="how many classes to show (default 5)")
    p.add_argument("--model", type=Path, default=None, help="a .keras model file (default: the run's model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = add("run", cmd_run, "all four steps in order")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p = add("clean-data", cmd_clean_data, "delete the data directory (dataset, caches, models)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("FLOWERS_DEBUG") == "1"
    user_errors: tuple[type[BaseException], ...] = (ConfigError,)
    try:
        cfg = _config(args)
        user_errors = _user_errors()
        return args.func(cfg, args)
    except KeyboardInterrupt:
        print("flowerlib: interrupted (a rerun resumes where training stopped)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except user_errors as e:
        if debug:
            raise
        print(f"flowerlib {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
