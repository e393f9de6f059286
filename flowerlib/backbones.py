"""The backbone registry: which pretrained networks the classifier can sit on.

Each `BackboneSpec` knows how to build its network without the ImageNet
classification top, which preprocessing its weights expect, the input sizes it
accepts, where its stages begin (for fine-tuning "the last N stages"), and the
layer Grad-CAM should look at.

    >>> from flowerlib.backbones import BACKBONES, get_backbone
    >>> sorted(BACKBONES)
    ['mobilenet', 'mobilenet_v2', 'resnet50', 'tiny']
    >>> get_backbone("resnet50").last_conv_layer
    'conv5_block3_out'

Weights are `"imagenet"` (Keras downloads them once), `None` (random init) or a
path to a local weights file (`FLOWERS_WEIGHTS=/path/to/file.h5`), for users
without internet access.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flowerlib.errors import FlowerlibError

if TYPE_CHECKING:
    import keras

PREPROCESS_MODES = ("caffe", "tf", "torch")
BACKBONE_LAYER_NAME = "backbone"


class ModelConfigError(FlowerlibError, ValueError):
    """The model cannot be built as configured (unknown backbone, bad weights, too small input)."""


@dataclass(frozen=True)
class BackboneSpec:
    """What flowerlib needs to know about one backbone.

    Attributes:
        name: registry key, e.g. `"resnet50"`.
        constructor: `f(input_shape, weights, alpha) -> keras.Model` building the
            network without its top; `weights` is `"imagenet"` or `None` here
            (local files are loaded by `build`).
        preprocess: the `preprocess_input` mode its weights were trained with:
            `"caffe"` (RGB->BGR, ImageNet mean subtracted: ResNet50), `"tf"`
            (scale to -1..1: MobileNet, MobileNetV2) or `"torch"`.
        default_size: the input size its ImageNet weights were trained at.
        min_size: smallest input side the network accepts.
        stages: layer-name prefixes of each stage, the LAST stage first. A layer
            belongs to a stage when its name equals a prefix or starts with
            `prefix + "_"`. A stage is a run of blocks at one spatial resolution
            (ResNet50's `conv5` is the 7x7 one at 224 px), so "fine-tune the last
            stage" means the same part of every backbone.
        last_conv_layer: name of the last convolutional feature map (Grad-CAM).
        feature_dim: channels of that feature map (for `alpha=1`).
        has_alpha: whether the constructor takes a width multiplier `alpha`.
        stage_labels: short names of the stages (last first); default: each
            stage's first prefix.
    """

    name: str
    constructor: Callable[[tuple[int, int, int], str | None, float], keras.Model]
    preprocess: str
    default_size: int
    min_size: int
    stages: tuple[tuple[str, ...], ...]
    last_conv_layer: str
    feature_dim: int
    has_alpha: bool = False
    stage_labels: tuple[str, ...] | None = None

    def stage_of(self, layer_name: str) -> int | None:
        """Index of the stage holding `layer_name` (0 = last stage), or None (e.g. the input)."""
        for i, prefixes in enumerate(self.stages):
            for p in prefixes:
                if layer_name == p or layer_name.startswith(p + "_"):
                    return i
        return None

    def stage_name(self, index: int) -> str:
        """Short name of stage `index` (0 = last), e.g. `"conv5"`."""
        if self.stage_labels is not None:
            return self.stage_labels[index]
        return self.stages[index][0]

    def check_size(self, image_size: int) -> None:
        """Raise `ModelConfigError` when `image_size` is below this backbone's minimum."""
        if image_size < self.min_size:
            raise ModelConfigError(
                f"Backbone {self.name!r} needs images of at least {self.min_size}x{self.min_size} "
                f"pixels. Received image_size={image_size}. Increase image_size "
                f"(its ImageNet weights were trained at {self.default_size})."
            )

    def alpha_for(self, weights: str | None, alpha: float | None = None) -> float:
        """The width multiplier to build with: `alpha`, else read from a weights file name, else 1.0.

        Keras names MobileNet files `mobilenet_2_5_224_tf_no_top.h5` (alpha 0.25)
        and MobileNetV2 files `..._1.0_224_no_top...` (alpha 1.0).
        """
        if not self.has_alpha:
            return 1.0
        if alpha is not None:
            return float(alpha)
        if weights is not None and weights != "imagenet":
            return alpha_from_filename(Path(weights).name) or 1.0
        return 1.0

    def build(
        self, image_size: int, weights: str | None = "imagenet", *, alpha: float | None = None
    ) -> keras.Model:
        """Build the backbone (no top) as a nested model named `"backbone"`.

        Args:
            image_size: side of the square input.
            weights: `"imagenet"`, `None`, or a path to a weights file
                (`.h5` / `.weights.h5`) saved from the same architecture.
            alpha: width multiplier for MobileNet(V2); default from the weights
                file name, else 1.0.

        Returns:
            A `keras.Model` from `(image_size, image_size, 3)` preprocessed
            pixels to the last feature map.

        Raises:
            ModelConfigError: image too small, weights file missing, or a weights
                file for another architecture.
        """
        self.check_size(image_size)
        weights = resolve_weights(weights)
        a = self.alpha_for(weights, alpha)
        shape = (image_size, image_size, 3)
        try:
            base = self.constructor(shape, "imagenet" if weights == "imagenet" else None, a)
        except Exception as e:  # Keras raises a bare Exception when its weights download fails
            if weights == "imagenet" and "URL fetch failure" in str(e):
                raise ModelConfigError(_imagenet_download_advice(self.name, e)) from None
            raise
        if weights not in (None, "imagenet"):
            _load_weights_file(base, weights, self, a)
        import keras

        # One clean name for the nested model, whatever Keras calls it.
        return keras.Model(base.inputs[0], base.outputs[0], name=BACKBONE_LAYER_NAME)


# The files Keras caches under ~/.keras/models/ for weights="imagenet" (no top).
IMAGENET_WEIGHT_FILES = {
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 (94,765,736 bytes)",
    "mobilenet_v2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    "mobilenet": "mobilenet_1_0_224_tf_no_top.h5",
}


def _imagenet_download_advice(name: str, error: BaseException) -> str:
    file = IMAGENET_WEIGHT_FILES.get(name, "the weights file")
    return (
        f"Could not download the ImageNet weights of {name} ({error}). Without internet access, "
        f"copy {file} into ~/.keras/models/, or point FLOWERS_WEIGHTS (--weights) at a copy of it; "
        "behind a proxy, set HTTPS_PROXY. To try the project without any weights: FLOWERS_PROFILE=smoke."
    )


def alpha_from_filename(filename: str) -> float | None:
    """Width multiplier encoded in a Keras MobileNet(V2) weights file name, or None."""
    v1 = re.search(r"mobilenet_(1_0|7_5|5_0|2_5)_\d+_tf", filename)
    if v1:
        return {"1_0": 1.0, "7_5": 0.75, "5_0": 0.5, "2_5": 0.25}[v1.group(1)]
    v2 = re.search(r"_(\d+\.\d+)_\d+(?:_no_top)?[._]", filename)
    if v2:
        return float(v2.group(1))
    return None


def backbone_from_filename(filename: str) -> str | None:
    """The backbone a Keras weights file's name says it was saved from (e.g. `mobilenet_v2`), or None."""
    name = filename.lower()
    for backbone, pattern in (
        ("mobilenet_v2", "mobilenet_v2"),
        ("mobilenet", "mobilenet_"),
        ("resnet50", "resnet50"),
    ):
        if pattern in name:
            return backbone
    return None


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# What a file that is not HDF5 most often is, by its first bytes.
_KNOWN_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"version https://git-lfs", "a Git LFS pointer (run `git lfs pull`)"),
)


def _file_kind(path: Path) -> str | None:
    """None for an HDF5 file (or a `.keras` zip archive), else what the file is, in words."""
    with open(path, "rb") as f:
        head = f.read(2048 + 8)
    if not head:
        return "an empty file (0 bytes)"
    # HDF5 allows a user block before its signature, at 0, 512, 1024, 2048... bytes.
    if any(head[i : i + 8] == _HDF5_SIGNATURE for i in (0, 512, 1024, 2048)):
        return None
    if head.startswith(b"PK\x03\x04") and path.suffix == ".keras":
        return None  # a whole saved model: Keras reads its weights
    for signature, kind in _KNOWN_SIGNATURES:
        if head.startswith(signature):
            return kind
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<!--")):
        return "an HTML page (a download that went wrong?)"
    return f"not an HDF5 file (it starts with {head[:16]!r})"


def resolve_weights(weights: str | Path | None) -> str | None:
    """Check a `weights` setting: `"imagenet"`, `None`, or an existing HDF5 file (returned as a string).

    Raises:
        ModelConfigError: a path that does not exist, is not a file, or is not
            an HDF5 weights file (the message says what it is: an empty file, a
            JPEG, an HTML page...).
    """
    if weights is None or weights == "imagenet":
        return weights
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelConfigError(
            f"Weights file not found. Received weights={str(weights)!r}. Give 'imagenet' "
            "(downloaded by Keras), 'none' (random initial weights; None in Python), or the path of an "
            "existing weights file (FLOWERS_WEIGHTS=/path/to/file.h5)."
        )
    try:
        kind = _file_kind(path)
    except OSError as e:
        raise ModelConfigError(
            f"The weights file {str(path)!r} cannot be read ({e.strerror or type(e).__name__})."
        ) from None
    if kind is not None:
        raise ModelConfigError(
            f"The weights file {str(path)!r} is {kind}, not HDF5 weights (.h5 / .weights.h5). "
            "Give the path of a weights file saved from the backbone, 'imagenet' or 'none'."
        )
    if not path.name.endswith((".h5", ".hdf5", ".keras")):
        raise ModelConfigError(
            f"The weights file {str(path)!r} holds HDF5 but Keras reads weights only from files "
            "named *.weights.h5, *.h5 or *.hdf5; rename it."
        )
    return str(path)


def _load_weights_file(model: keras.Model, path: str, spec: BackboneSpec, alpha: float) -> None:
    arch = spec.name + (f" (alpha={alpha:g})" if spec.has_alpha else "")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except (ValueError, KeyError, TypeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300].rstrip(" :.")
            named = backbone_from_filename(Path(path).name)
            fix = (
                f"Its name says it holds {named} weights: use --backbone {named} (FLOWERS_BACKBONE={named})"
                if named not in (None, spec.name)
                else f"Pick the backbone the file was saved from (known: {sorted(BACKBONES)}) or another file"
            )
            raise ModelConfigError(
                f"The weights file {path!r} does not match the {arch} architecture: it seems to "
                f"be for another backbone or width. {fix}. (Keras said: {first}.)"
            ) from None
        except (OSError, EOFError, AttributeError) as e:  # h5py: truncated or damaged
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ModelConfigError(
                f"The weights file {path!r} is a damaged or truncated HDF5 file ({first}). "
                "Download or save it again."
            ) from None
    for w in caught:  # loaded fine: pass on what Keras had to say
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


# --- the constructors ---------------------------------------------------------


def _resnet50(shape: tuple[int, int, int], weights: str | None, alpha: float) -> keras.Model:
    import keras

    return keras.applications.ResNet50(include_top=False, weights=weights, input_shape=shape)


def _mobilenet_v2(shape: tuple[int, int, int], weights: str | None, alpha: float) -> keras.Model:
    import keras

    with warnings.catch_warnings():
        # Non-224 sizes with ImageNet weights: Keras warns and loads the 224 ones.
        warnings.filterwarnings("ignore", message=".*input_shape.*")
        return keras.applications.MobileNetV2(
            include_top=False, weights=weights, input_shape=shape, alpha=alpha
        )


def _mobilenet(shape: tuple[int, int, int], weights: str | None, alpha: float) -> keras.Model:
    import keras

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input_shape.*")
        return keras.applications.MobileNet(
            include_top=False, weights=weights, input_shape=shape, alpha=alpha
        )


def _tiny(shape: tuple[int, int, int], weights: str | None, alpha: float) -> keras.Model:
    """A small CNN (about 100k parameters) with BatchNorm, for the smoke profile.

    Four stages (`stem`, `block1`..`block3`) whose outputs are 32, 16, 8 and 8
    pixels wide for a 64-pixel input. It has no ImageNet weights; its pretrained weights ship with
    flowerlib as `flowerlib/data/tiny_backbone.weights.h5` (the smoke profile's
    `weights`; `flowerlib/data/make_tiny_backbone.py` made them by training it
    on other synthetic flower classes than the smoke dataset's, at 64 px). Like
    every weights file they are loaded by `BackboneSpec.build`; `weights=None`
    gives random filters.

    Raises:
        ModelConfigError: `weights="imagenet"`.
    """
    import keras
    from keras import layers

    if weights == "imagenet":
        raise ModelConfigError(
            "Backbone 'tiny' has no ImageNet weights. Received weights='imagenet'. "
            "Use flowerlib's pretrained file (the smoke profile's weights), another file saved "
            "from a 'tiny' backbone, or weights=None."
        )
    inputs = keras.Input(shape)
    x = inputs
    for name, filters, strides, pool in (
        ("stem", 16, 2, False),
        ("block1", 32, 1, True),
        ("block2", 64, 1, True),
        ("block3", 128, 1, False),
    ):
        x = layers.Conv2D(
            filters,
            3,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=f"{name}_conv",
        )(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        x = layers.Activation("relu", name=f"{name}_relu")(x)
        if pool:
            x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return keras.Model(inputs, x, name="tiny")


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(
        name="resnet50",
        constructor=_resnet50,
        preprocess="caffe",
        default_size=224,
        min_size=32,
        stages=(("conv5",), ("conv4",), ("conv3",), ("conv2",), ("conv1", "pool1")),
        last_conv_layer="conv5_block3_out",
        feature_dim=2048,
    ),
    "mobilenet_v2": BackboneSpec(
        name="mobilenet_v2",
        constructor=_mobilenet_v2,
        preprocess="tf",
        default_size=224,
        min_size=32,
        # Grouped by output resolution, like ResNet50's conv2..conv5 (at 224 px:
        # 7x7, 14x14, 28x28, 56x56, then the 112x112 stem).
        stages=(
            ("block_13", "block_14", "block_15", "block_16", "Conv_1", "out_relu"),
            tuple(f"block_{i}" for i in range(6, 13)),
            ("block_3", "block_4", "block_5"),
            ("block_1", "block_2"),
            ("Conv1", "bn_Conv1", "Conv1_relu", "expanded_conv"),
        ),
        stage_labels=("block_13-16", "block_6-12", "block_3-5", "block_1-2", "stem"),
        last_conv_layer="out_relu",
        feature_dim=1280,
        has_alpha=True,
    ),
    "mobilenet": BackboneSpec(
        name="mobilenet",
        constructor=_mobilenet,
        preprocess="tf",
        default_size=224,
        min_size=32,
        stages=(  # by output resolution, as for MobileNetV2
            *(
                tuple(f"{kind}_{i}" for i in blocks for kind in ("conv_dw", "conv_pw", "conv_pad"))
                for blocks in ((12, 13), range(6, 12), (4, 5), (2, 3))
            ),
            ("conv1", "conv_dw_1", "conv_pw_1"),
        ),
        stage_labels=("conv_12-13", "conv_6-11", "conv_4-5", "conv_2-3", "stem"),
        last_conv_layer="conv_pw_13_relu",
        feature_dim=1024,
        has_alpha=True,
    ),
    "tiny": BackboneSpec(
        name="tiny",
        constructor=_tiny,
        preprocess="tf",
        default_size=64,
        min_size=16,
        stages=(("block3",), ("block2",), ("block1",), ("stem",)),
        last_conv_layer="block3_relu",
        feature_dim=128,
    ),
}


def get_backbone(name: str) -> BackboneSpec:
    """The spec registered as `name`.

    Raises:
        ModelConfigError: unknown name (the message lists the known ones).
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise ModelConfigError(
            f"Unknown backbone. Received backbone={name!r}. Known backbones: {sorted(BACKBONES)}."
        ) from None


def spec_of(backbone: keras.Model) -> BackboneSpec:
    """Recognise which registered backbone a built (or loaded) backbone model is.

    Raises:
        ModelConfigError: no registered spec matches its layers.
    """
    names = {layer.name for layer in backbone.layers}
    for spec in BACKBONES.values():
        if spec.last_conv_layer in names and all(
            any(spec.stage_of(n) == i for n in names) for i in range(len(spec.stages))
        ):
            return spec
    raise ModelConfigError(
        f"Model {backbone.name!r} is none of the registered backbones {sorted(BACKBONES)}."
    )


def describe(spec: BackboneSpec) -> str:
    """A one-line description, e.g. `"mobilenet_v2: 5 stages, preprocess 'tf', pretrained at 224 px"`."""
    return (
        f"{spec.name}: {len(spec.stages)} stages, preprocess {spec.preprocess!r}, "
        f"pretrained at {spec.default_size} px (accepts >= {spec.min_size}), "
        f"last conv {spec.last_conv_layer!r}"
    )
