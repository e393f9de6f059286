"""One frozen configuration object for every step, with profiles and `from_env()`.

Everything else in flowerlib takes a `Config` (or plain arguments) and never reads
the environment itself: `Config.from_env()` is the one place that does.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from flowerlib.errors import FlowerlibError

PROFILES = ("full", "smoke")
SPLITS = ("official", "trainval", "random")
ENV_PREFIX = "FLOWERS_"
#: Largest accepted `image_size` and `batch_size` (beyond them memory runs out long before any result).
MAX_IMAGE_SIZE = 1024
MAX_BATCH_SIZE = 4096


class ConfigError(FlowerlibError, ValueError):
    """A configuration value is invalid (bad type, out of range, unknown name)."""


class ConfigWarning(UserWarning):
    """A `FLOWERS_*` environment variable that no setting reads (probably a typo), or a relative path."""


# FLOWERS_* variables read elsewhere than by a Config field.
_OTHER_ENV = {"FLOWERS_PROFILE", "FLOWERS_DEBUG"}

#: A run name: one plain folder name inside `data_dir/runs/` (letters, digits, `_`, `-`, `.`;
#: starting with a letter, digit or `_`; at most 100 characters). No separators, no `..`.
RUN_NAME_PATTERN = re.compile(r"[^\W][\w.-]{0,99}")
_INT_FIELDS = (
    "num_classes",
    "synthetic_images_per_class",
    "image_size",
    "batch_size",
    "seed",
    "head_epochs",
    "fine_tune_epochs",
    "fine_tune_stages",
    "cache_views",
    "patience",
)
_FLOAT_FIELDS = (
    "dropout",
    "head_learning_rate",
    "fine_tune_learning_rate",
    "label_smoothing",
)


def default_cache_root() -> Path:
    """Per-user cache folder for flowerlib (e.g. `~/.cache/flowerlib` on Linux).

    Independent of the folder Jupyter was started in, so every notebook and the
    command line find the same files.
    """
    import pooch  # light import; knows the per-OS cache conventions

    return Path(pooch.os_cache("flowerlib"))


def _profile_defaults(profile: str) -> dict[str, Any]:
    if profile == "full":
        # The model to ship learns from every labelled non-test image (what papers report):
        # measured on held-out photos, 0.887 -> 0.931 top-1 and 0.42 -> 0.48 on the "unlike"
        # pictures against training on the official 10 per class (benchmarks/RESULTS.md).
        return {"split": "trainval"}
    if profile == "smoke":
        # A miniature of the real run: synthetic data, a handful of classes, tiny
        # images and short training, with the same transfer-learning rules. The
        # "tiny" backbone arrives pretrained on other synthetic classes (weights
        # shipped with flowerlib, made by flowerlib/data/make_tiny_backbone.py),
        # as ResNet50 arrives with ImageNet's; nothing is downloaded.
        return {
            "synthetic": True,
            "num_classes": 10,
            "synthetic_images_per_class": 40,
            "image_size": 64,  # the size "tiny" was pretrained at
            "batch_size": 32,
            "backbone": "tiny",
            "weights": str(Path(__file__).with_name("data") / "tiny_backbone.weights.h5"),
            "head_epochs": 20,
            "fine_tune_epochs": 10,
            # As the full profile: the head at 1e-3, then the last stage only,
            # BatchNorm frozen, at a rate ten times lower.
            "head_learning_rate": 1e-3,
            "fine_tune_learning_rate": 1e-4,
            "fine_tune_stages": 1,
            "patience": 10,
        }
    raise ConfigError(f"Unknown profile. Expected one of {PROFILES}. Received profile={profile!r}")


@dataclass(frozen=True)
class Config:
    """Every knob of the project, with defaults for the real job.

    Args:
        profile: `"full"` (real data, 224 px, ResNet50 with ImageNet weights) or
            `"smoke"` (synthetic data, 10 classes, 64 px, the small `"tiny"`
            network with the weights flowerlib ships for it, pretrained on
            other synthetic classes; short training, the same two phases).
        data_dir: where downloads, splits, feature caches and trained models
            live. Defaults to a per-user cache, one folder per profile.
        mirror: base URL that replaces the official download location.
        source: a local `102flowers.tgz` or an extracted folder (with `jpg/`
            and the two `.mat` files) to use instead of downloading.
        synthetic: generate the procedurally drawn dataset instead of the real one.
        num_classes: number of classes (102 for the real dataset).
        synthetic_images_per_class: images per class for the synthetic dataset.
        image_size: side of the square model input, in pixels.
        batch_size: images per batch.
        seed: one seed for Python, NumPy, TensorFlow, splits and synthetic data.
        split: `"official"`, `"trainval"` or `"random"` (the `full` profile
            defaults to `"trainval"`, the `smoke` profile to `"official"`).
        split_fractions: train/validation/test fractions of the random split.
        backbone: name in `flowerlib.backbones.BACKBONES`.
        weights: `"imagenet"`, `None` (random init) or a path to a weights file.
        dropout: dropout rate before the classification layer.
        head_epochs: epochs of the head-only phase.
        head_learning_rate: Adam learning rate of the head-only phase.
        fine_tune_epochs: epochs of the fine-tuning phase (0 skips it).
        fine_tune_learning_rate: learning rate of fine-tuning (low!).
        fine_tune_stages: how many of the backbone's last stages to unfreeze.
        calibrate: after training, fit a temperature on the validation images
            so the model's confidence matches its accuracy (`flowerlib.calibration`);
            accuracy is unchanged.
        label_smoothing: share of each target spread evenly over all classes
            (both phases). Keeps the head from saturating on the few training
            images, so fine-tuning still gets a gradient; 0 disables it.
        augment: random flip/rotation/zoom on training images.
        cache_features: train the head on cached backbone features (fast path).
        cache_views: augmented views per training image in the feature cache
            (0 = only the un-augmented image).
        patience: early-stopping patience in epochs (validation loss).
        jit_compile: XLA-compile extraction and training: `"auto"` (no: it was
            slower on a CPU, see benchmarks/RESULTS.md), `"on"`, `"off"`.
        mixed_precision: `"auto"` (on with a GPU, off on a CPU), `"on"`, `"off"`.
        strategy: `"auto"` (MirroredStrategy with several GPUs), `"default"`, `"mirrored"`.
        tensorboard: also write TensorBoard logs.
        run_name: folder under `data_dir/runs/` for this run's artifacts;
            defaults to `"{backbone}-{split}"`.
    """

    profile: str = "full"
    data_dir: Path | None = None
    mirror: str | None = None
    source: Path | None = None
    synthetic: bool = False
    num_classes: int = 102
    synthetic_images_per_class: int = 40
    image_size: int = 224
    batch_size: int = 32
    seed: int = 42
    split: str = "official"
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    backbone: str = "resnet50"
    weights: str | None = "imagenet"
    dropout: float = 0.2
    head_epochs: int = 20
    head_learning_rate: float = 1e-3
    fine_tune_epochs: int = 10
    fine_tune_learning_rate: float = 1e-4
    fine_tune_stages: int = 1
    label_smoothing: float = 0.1
    calibrate: bool = True
    augment: bool = True
    cache_features: bool = True
    cache_views: int = 2
    patience: int = 5
    jit_compile: str = "auto"
    mixed_precision: str = "auto"
    strategy: str = "auto"
    tensorboard: bool = False
    run_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(
                f"Unknown profile. Expected one of {PROFILES}. Received profile={self.profile!r}"
            )
        if self.data_dir is None:
            folder = "flowers102" if not self.synthetic else f"synthetic-{self.num_classes}"
            object.__setattr__(self, "data_dir", default_cache_root() / folder)
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if self.source is not None:
            object.__setattr__(self, "source", Path(self.source).expanduser())
        if isinstance(self.weights, Path):
            object.__setattr__(self, "weights", str(self.weights))
        try:
            object.__setattr__(self, "split_fractions", tuple(float(f) for f in self.split_fractions))
        except (TypeError, ValueError):
            raise ConfigError(
                "split_fractions must be three numbers (train, val, test). "
                f"Received split_fractions={self.split_fractions!r}"
            ) from None
        self._validate()

    def _validate(self) -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"{name} must be {expected}. Received {name}={getattr(self, name)!r}")

        # Types first, so the range checks below never meet a string, a bool or a NaN.
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(name, "an integer")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise bad(name, "a finite number")
        if not all(math.isfinite(f) for f in self.split_fractions):
            raise bad("split_fractions", "three finite fractions summing to 1 (train, val, test)")
        if self.run_name is not None:
            if not isinstance(self.run_name, str) or not RUN_NAME_PATTERN.fullmatch(self.run_name):
                raise bad(
                    "run_name",
                    "one plain folder name inside runs/ (letters, digits, '_', '-' and '.', not starting "
                    "with '.' or '-', at most 100 characters; no '/', '\\' or '..')",
                )
        elif not RUN_NAME_PATTERN.fullmatch(self.run):
            raise bad("backbone", "a plain name (it names the run folder unless run_name is set)")
        if self.split not in SPLITS:
            raise bad("split", f"one of {SPLITS}")
        if not 2 <= self.num_classes <= 102:
            raise bad("num_classes", "between 2 and 102")
        if self.synthetic_images_per_class < 4:
            raise bad("synthetic_images_per_class", "at least 4")
        if not 32 <= self.image_size <= MAX_IMAGE_SIZE:
            raise bad("image_size", f"between 32 (the backbones downsample 32x) and {MAX_IMAGE_SIZE} pixels")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise bad("batch_size", f"between 1 and {MAX_BATCH_SIZE}")
        if not 0 <= self.seed < 2**32:
            raise bad("seed", "between 0 and 2**32 - 1")
        for name in ("head_epochs", "fine_tune_epochs", "patience"):
            if getattr(self, name) < 0:
                raise bad(name, ">= 0")
        if self.fine_tune_stages < 1:
            raise bad("fine_tune_stages", ">= 1")
        if self.cache_views < 0:
            raise bad("cache_views", ">= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "in [0, 1)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad("label_smoothing", "in [0, 1)")
        for name in ("head_learning_rate", "fine_tune_learning_rate"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise bad(name, "in (0, 1)")
        fr = self.split_fractions
        if len(fr) != 3 or min(fr) <= 0 or abs(sum(fr) - 1.0) > 1e-6:
            raise bad("split_fractions", "three positive fractions summing to 1 (train, val, test)")
        for name in ("jit_compile", "mixed_precision"):
            if getattr(self, name) not in ("auto", "on", "off"):
                raise bad(name, "'auto', 'on' or 'off'")
        if self.strategy not in ("auto", "default", "mirrored"):
            raise bad("strategy", "'auto', 'default' or 'mirrored'")
        if self.mirror is not None and not self.mirror.startswith(("http://", "https://")):
            raise bad("mirror", "an http:// or https:// base URL")

    # -- construction -----------------------------------------------------

    @classmethod
    def for_profile(cls, profile: str = "full", **overrides: Any) -> Config:
        """The configuration of a profile, with keyword overrides on top."""
        return cls(**{"profile": profile, **_profile_defaults(profile), **overrides})

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Config:
        """Read `FLOWERS_*` environment variables on top of the profile defaults.

        `FLOWERS_PROFILE` picks the profile; every other field `x` is read from
        `FLOWERS_X` (e.g. `FLOWERS_DATA_DIR`, `FLOWERS_IMAGE_SIZE`,
        `FLOWERS_WEIGHTS=none`). Keyword `overrides` win over the environment
        (the command line passes its flags this way).

        Raises:
            ConfigError: a variable is not a valid value for its field.
        """
        env = os.environ if environ is None else environ
        profile = overrides.get("profile") or env.get(ENV_PREFIX + "PROFILE", "full")
        known = _OTHER_ENV | {ENV_PREFIX + f.name.upper() for f in fields(cls) if f.name != "extra"}
        unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)
        if unknown:
            warnings.warn(
                f"Ignoring unknown environment variable(s) {', '.join(unknown)}: no setting reads them. "
                f"Known: {', '.join(sorted(known))}.",
                ConfigWarning,
                stacklevel=2,
            )
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in ("profile", "extra"):
                continue
            key = ENV_PREFIX + f.name.upper()
            if key in env and env[key] != "":
                values[f.name] = _parse(f.name, f.type, env[key], key)
        relative = [
            f"{ENV_PREFIX}{name.upper()}={env[ENV_PREFIX + name.upper()]}"
            for name in ("data_dir", "source", "weights")
            if isinstance(values.get(name), str | Path)
            and values[name] != "imagenet"
            and not Path(values[name]).expanduser().is_absolute()
        ]
        if relative:
            warnings.warn(
                f"{', '.join(relative)} is a relative path, read from the current folder ({Path.cwd()}): "
                "a notebook runs in notebooks/, a command where you type it, so they would use different "
                "folders. Give an absolute path.",
                ConfigWarning,
                stacklevel=2,
            )
        from flowerlib.backbones import BACKBONES

        if "backbone" in values and "backbone" not in overrides and values["backbone"] not in BACKBONES:
            raise ConfigError(
                f"Environment variable {ENV_PREFIX}BACKBONE={values['backbone']!r} names no backbone: "
                f"use one of {sorted(BACKBONES)}, or unset it."
            )
        from_env = {name for name in values if name not in overrides}
        if "profile" not in overrides and env.get(ENV_PREFIX + "PROFILE"):
            from_env.add("profile")
        values.update({k: v for k, v in overrides.items() if k != "profile"})
        try:
            return cls.for_profile(profile, **values)
        except ConfigError as e:  # say which variable holds the bad value
            named = [name for name in sorted(from_env) if f"{name}=" in str(e)]
            if not named:
                raise
            raise ConfigError(
                f"Environment variable {ENV_PREFIX}{named[0].upper()}: {str(e).rstrip('.')}. Change or unset it."
            ) from None

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (the object itself is frozen)."""
        return dataclasses.replace(self, **changes)

    # -- derived values ----------------------------------------------------

    @property
    def run(self) -> str:
        """Name of this run's artifact folder under `data_dir/runs/`."""
        return self.run_name or f"{self.backbone}-{self.split}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of every field (paths as strings)."""
        out = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            out[f.name] = str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Inverse of `to_dict`; unknown keys raise a clear error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown configuration keys {unknown}. Known keys: {sorted(known)}")
        data = dict(data)
        if "split_fractions" in data:
            data["split_fractions"] = tuple(data["split_fractions"])
        return cls(**data)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(name: str, type_: Any, raw: str, key: str) -> Any:
    t = str(type_)
    if (t.startswith(("int", "float")) or name == "split_fractions") and not raw.isascii():
        raise ConfigError(
            f"Environment variable {key}={raw!r} is not valid for {name}: write the number with ASCII digits."
        )
    try:
        if name == "weights":
            return None if raw.lower() in ("none", "null", "random") else raw
        if name == "split_fractions":
            return tuple(float(x) for x in raw.replace("/", ",").split(","))
        if t.startswith("bool"):
            low = raw.lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
        if t.startswith("int"):
            if not re.fullmatch(r"\s*[+-]?\d+\s*", raw):
                raise ValueError("write a whole number, e.g. 32")
            return int(raw)
        if t.startswith("float"):
            try:
                return float(raw)
            except ValueError:
                raise ValueError("write a number, e.g. 0.0001 or 1e-4") from None
        if t.startswith("Path"):
            return Path(raw)
        return raw
    except ValueError as e:
        raise ConfigError(f"Environment variable {key}={raw!r} is not valid for {name}: {e}") from None
