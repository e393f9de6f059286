"""The classifier: a pretrained backbone with a new head, and its two training phases.

    image (raw RGB 0..255) -> preprocess -> backbone(training=False) -> pool -> head (dropout, predictions)

- `preprocess` is the backbone's own `preprocess_input`, inside the model, so a
  saved model takes raw pixels and is all a user needs for prediction.
- `backbone` is a nested `keras.Model`, always called with `training=False`:
  its BatchNormalization layers use their ImageNet statistics in both phases,
  even while the last stages are fine-tuned.
- `set_trainable(model, "head")` freezes the backbone;
  `set_trainable(model, "fine_tune", stages=N)` unfreezes its last N stages
  except every BatchNormalization layer. Recompile after each change
  (`compile_for_phase`): `trainable` is read when the training step is built.

Saved models load with `load_model` (Keras safe mode: no Lambda layers, only the
registered `Preprocess` layer as custom code).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
from keras import layers, ops

from flowerlib.backbones import (
    BACKBONE_LAYER_NAME,
    PREPROCESS_MODES,
    ModelConfigError,
    get_backbone,
    spec_of,
)

if TYPE_CHECKING:
    import pandas as pd

    from flowerlib.config import Config

PHASES = ("head", "fine_tune")
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
HEAD_LAYERS = ("pool", "head")


@keras.saving.register_keras_serializable(package="flowerlib")
class Preprocess(keras.layers.Layer):
    """A backbone's `preprocess_input` as a layer: raw RGB 0..255 in, network input out.

    Modes (as in `keras.applications.imagenet_utils.preprocess_input`):
    `"caffe"`: RGB -> BGR, then the ImageNet channel means are subtracted (ResNet50);
    `"tf"`: scaled to -1..1 (MobileNet, MobileNetV2);
    `"torch"`: scaled to 0..1, then standardised with the ImageNet mean and std.

    Args:
        mode: one of `"caffe"`, `"tf"`, `"torch"`.

    Raises:
        ModelConfigError: unknown mode.
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in PREPROCESS_MODES:
            raise ModelConfigError(
                f"Unknown preprocess mode. Expected one of {PREPROCESS_MODES}. Received mode={mode!r}"
            )
        self.mode = mode

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(IMAGENET_MEAN_RGB, dtype=self.compute_dtype) / 255.0
            std = ops.convert_to_tensor(IMAGENET_STD_RGB, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        bgr_mean = ops.convert_to_tensor(IMAGENET_MEAN_RGB[::-1], dtype=self.compute_dtype)
        return ops.flip(x, axis=-1) - bgr_mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="flowerlib")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels with label smoothing.

    The target of an image of class `k` becomes `1 - s + s/C` for `k` and `s/C`
    for every other class. Keras's `SparseCategoricalCrossentropy` has no
    smoothing, and the pipelines yield integer labels, so this loss one-hot
    encodes them itself. With `s = 0` it equals the sparse cross-entropy.

    Args:
        label_smoothing: `s`, in [0, 1).
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        targets = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(targets, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def loss_for(cfg: Config):
    """The training loss for `cfg`: sparse cross-entropy, smoothed when `cfg.label_smoothing > 0`."""
    if cfg.label_smoothing > 0:
        return SparseSmoothedCrossentropy(cfg.label_smoothing)
    return "sparse_categorical_crossentropy"


# --- building ---------------------------------------------------------------


def build_head(num_classes: int, dropout: float) -> keras.Sequential:
    """The new classification head: dropout, then one softmax output per class.

    It takes pooled features (`[batch, feature_dim]`). The same object is the
    `head` layer of the classifier (`build_classifier`) and the model that the
    head phase trains on cached features, so training it there trains the
    classifier's head: there is nothing to copy.

    Args:
        num_classes: number of classes.
        dropout: dropout rate before the softmax layer.

    Returns:
        An unbuilt `keras.Sequential` named `head`, with layers `dropout` and
        `predictions` (a `Dense` with softmax, kept in float32 under mixed precision).
    """
    return keras.Sequential(
        [
            layers.Dropout(dropout, name="dropout"),
            layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions"),
        ],
        name="head",
    )


def build_classifier(
    cfg: Config, *, num_classes: int | None = None, weights: str | None | object = ...
) -> keras.Model:
    """Build the flower classifier for `cfg` (backbone, weights, image size, dropout).

    Args:
        cfg: the configuration (`backbone`, `weights`, `image_size`, `dropout`,
            `num_classes`; `cfg.extra["alpha"]` sets MobileNet widths).
        num_classes: size of the output layer; defaults to `cfg.num_classes`.
        weights: override `cfg.weights` (e.g. `None` when trained weights are
            loaded right after, to skip a download).

    Returns:
        An uncompiled `keras.Model` with input `"image"` (float32 RGB 0..255,
        `(cfg.image_size, cfg.image_size, 3)`) and layers `preprocess`,
        `backbone`, `pool` and `head` (`build_head`). The backbone starts
        frozen (phase `"head"`).

    Raises:
        ModelConfigError: unknown backbone, missing or mismatched weights file,
            image too small for the backbone.
    """
    spec = get_backbone(cfg.backbone)
    n = cfg.num_classes if num_classes is None else int(num_classes)
    if n < 2:
        raise ModelConfigError(f"num_classes must be at least 2. Received num_classes={n}")
    backbone = spec.build(
        cfg.image_size,
        cfg.weights if weights is ... else weights,
        alpha=cfg.extra.get("alpha"),
    )
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image", dtype="float32")
    x = Preprocess(spec.preprocess, name="preprocess")(inputs)
    # training=False: BatchNorm keeps using its stored statistics, in both phases.
    x = backbone(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = build_head(n, cfg.dropout)(x)
    model = keras.Model(inputs, outputs, name=f"{spec.name}_flowers")
    set_trainable(model, "head")
    return model


def predictions_layer(model: keras.Model) -> layers.Dense:
    """The softmax `Dense` layer of a classifier (inside its `head`)."""
    return model.get_layer("head").get_layer("predictions")


def backbone_of(model: keras.Model) -> keras.Model:
    """The nested backbone model of a classifier."""
    return model.get_layer(BACKBONE_LAYER_NAME)


def feature_extractor(
    model: keras.Model, *, fold_batchnorm: bool = False, activations: str | None = None
) -> keras.Model:
    """image -> pooled backbone features (and, optionally, an inner feature map too).

    Args:
        model: a classifier from `build_classifier`.
        fold_batchnorm: return a faster *copy* for frozen inference, with every
            BatchNormalization that directly follows a convolution folded into
            that convolution's kernel and bias (`fold_batchnorm`). Same features
            up to float rounding; later changes to `model` do not reach it.
            Without it, the extractor shares the classifier's layers and weights.
        activations: also output this backbone layer's feature map (e.g.
            `fine_tune_cut(model, 1)`): the model then returns
            `[activations, features]`, both from one forward pass.
    """
    backbone = backbone_of(model)
    if fold_batchnorm:
        backbone = fold_batchnorm_layers(backbone)
    if activations is not None:
        backbone = keras.Model(
            backbone.input, [backbone.get_layer(activations).output, backbone.output], name=backbone.name
        )
    inputs = keras.Input(model.input.shape[1:], name="image", dtype=model.input.dtype)
    x = model.get_layer("preprocess")(inputs)
    x = backbone(x, training=False)
    outputs = [x[0], model.get_layer("pool")(x[1])] if activations is not None else model.get_layer("pool")(x)
    return keras.Model(inputs, outputs, name="features")


def inference_copy(model: keras.Model) -> keras.Model:
    """The classifier for prediction only: its backbone a copy with BatchNorm folded into the convs.

    The same predictions up to float rounding, faster on a CPU (one op fewer per
    convolution, as for the feature extraction); the head is shared, so a later
    temperature or head change reaches the copy, a change to the backbone does not.
    Models that are not flowerlib classifiers are returned as they are.
    """
    names = {layer.name for layer in model.layers}
    if not {"preprocess", BACKBONE_LAYER_NAME, "pool", "head"} <= names:
        return model
    inputs = keras.Input(model.input.shape[1:], name="image", dtype=model.input.dtype)
    x = model.get_layer("preprocess")(inputs)
    x = fold_batchnorm_layers(backbone_of(model))(x, training=False)
    outputs = model.get_layer("head")(model.get_layer("pool")(x))
    return keras.Model(inputs, outputs, name=f"{model.name}_inference")


def fine_tune_cut(model: keras.Model, stages: int = 1) -> str | None:
    """The backbone layer whose output is the only input of its last `stages` stages.

    While only those stages train, everything before this layer is frozen and
    computes the same feature map for the same image: for ResNet50 and one
    stage, `conv4_block6_out` (14 x 14 x 1,024 at 224 px), the input of `conv5`.
    `flowerlib.cache` stores that map once per image and view, and `top_model`
    fine-tunes from it.

    Returns:
        The layer name, or None when the stages take the backbone's input
        itself (all stages unfrozen) or more than one tensor from before them.
    """
    backbone = backbone_of(model)
    spec = spec_of(backbone)
    inside = {
        layer.name
        for layer in backbone.layers
        if (index := spec.stage_of(layer.name)) is not None and index < stages
    }
    cuts = set()
    for layer in backbone.layers:
        if layer.name not in inside:
            continue
        for node in layer._inbound_nodes[:1]:  # the backbone's own graph (sub-models add nodes)
            for tensor in node.input_tensors:
                producer = tensor._keras_history.operation
                if producer.name not in inside:
                    cuts.add(
                        (producer.name, tensor._keras_history.node_index, tensor._keras_history.tensor_index)
                    )
    if len(cuts) != 1:
        return None
    name, node_index, tensor_index = cuts.pop()
    layer = backbone.get_layer(name)
    if isinstance(layer, layers.InputLayer) or node_index != 0 or tensor_index != 0:
        return None
    return name


def top_model(model: keras.Model, stages: int = 1, *, pooled: bool = False) -> keras.Model:
    """The classifier from the `fine_tune_cut` on: feature map -> last stages -> pool -> head.

    It shares its layers, and so its weights and `trainable` flags, with
    `model`: fitting it fine-tunes the classifier, nothing is copied. The
    backbone part is called with `training=False`, as in the classifier.
    With `pooled=True` it stops before the head and returns the pooled
    features (what `feature_extractor` gives for the whole image).

    Raises:
        ModelConfigError: the last `stages` stages have no single input map.
    """
    cut = fine_tune_cut(model, stages)
    if cut is None:
        raise ModelConfigError(
            f"The last {stages} stage(s) of {backbone_of(model).name!r} do not start from one feature "
            "map, so they cannot be fine-tuned from cached activations; set cache_features=False."
        )
    backbone = backbone_of(model)
    tensor = backbone.get_layer(cut).output
    last = keras.Model(tensor, backbone.output, name=f"{BACKBONE_LAYER_NAME}_from_{cut}")
    inputs = keras.Input(tensor.shape[1:], name="activations")
    x = last(inputs, training=False)  # BatchNorm in inference mode, as in the classifier
    x = model.get_layer("pool")(x)
    outputs = x if pooled else model.get_layer("head")(x)
    return keras.Model(inputs, outputs, name=f"{model.name}_top" + ("_pooled" if pooled else ""))


class _Passthrough(keras.layers.Layer):
    """Stands in for a BatchNormalization folded into the convolution before it."""

    def call(self, x, training=None, mask=None):
        return x


def fold_batchnorm_layers(backbone: keras.Model) -> keras.Model:
    """A copy of a frozen backbone with each conv -> BatchNorm pair merged into one conv.

    In inference mode BatchNorm is an affine map per channel,
    `y = gamma * (x - mean) / sqrt(var + eps) + beta`; when `x` is the output of a
    convolution used by nothing else, scaling the kernel by `s = gamma / sqrt(var + eps)`
    and setting the bias to `(bias - mean) * s + beta` gives the same `y` with one op
    fewer per layer, which makes extraction faster on a CPU (the measured gain is in
    benchmarks/RESULTS.md). Only for frozen use: the copy
    cannot be fine-tuned like the original.
    """
    folds: dict[str, layers.BatchNormalization] = {}
    for layer in backbone.layers:
        if not isinstance(layer, layers.BatchNormalization) or layer.center is False or layer.scale is False:
            continue
        nodes = layer._inbound_nodes  # more than one when a sub-model (`top_model`) reuses the layer
        if not nodes or len(nodes[0].input_tensors) != 1:
            continue
        producer = nodes[0].input_tensors[0]._keras_history.operation
        if (
            isinstance(producer, (layers.Conv2D, layers.DepthwiseConv2D))
            and producer.activation is keras.activations.linear
            and all(node.operation is layer for node in producer._outbound_nodes)  # feeds only this BN
            and layer.axis in (-1, 3)
        ):
            folds[producer.name] = layer
    folded_bn = {bn.name for bn in folds.values()}

    def clone(layer):
        if layer.name in folded_bn:
            return _Passthrough(name=layer.name)
        config = layer.get_config()
        if layer.name in folds:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(backbone, clone_function=clone)
    for layer in backbone.layers:
        if layer.name in folded_bn or not layer.weights:
            continue
        target = copy.get_layer(layer.name)
        if layer.name not in folds:
            target.set_weights(layer.get_weights())
            continue
        bn = folds[layer.name]
        gamma, beta, mean, var = (np.asarray(w, dtype=np.float64) for w in bn.get_weights())
        s = gamma / np.sqrt(var + bn.epsilon)
        weights = layer.get_weights()
        kernel = np.asarray(weights[0], dtype=np.float64)
        bias = np.asarray(weights[1], dtype=np.float64) if len(weights) > 1 else np.zeros_like(s)
        if isinstance(layer, layers.DepthwiseConv2D):  # kernel (h, w, in, multiplier): out = in * mult
            kernel = kernel * s.reshape(kernel.shape[2], kernel.shape[3])
        else:  # (h, w, in, out)
            kernel = kernel * s
        target.set_weights([kernel.astype("float32"), ((bias - mean) * s + beta).astype("float32")])
    copy.trainable = False
    return copy


# --- phases -------------------------------------------------------------------


def set_trainable(model: keras.Model, phase: str, stages: int = 1) -> keras.Model:
    """Freeze or unfreeze the backbone for a training phase (in place). Recompile afterwards.

    Args:
        model: a classifier from `build_classifier` (or `load_model`).
        phase: `"head"`: the whole backbone frozen, only the head trains.
            `"fine_tune"`: the backbone's last `stages` stages train too, except
            every BatchNormalization layer, which stays frozen.
        stages: how many of the last stages to unfreeze in `"fine_tune"`.

    Returns:
        The model.

    Raises:
        ModelConfigError: unknown phase, or `stages` outside 1..number of stages.
    """
    if phase not in PHASES:
        raise ModelConfigError(f"Unknown phase. Expected one of {PHASES}. Received phase={phase!r}")
    backbone = backbone_of(model)
    for layer in model.layers:
        if layer is not backbone:
            layer.trainable = True
    if phase == "head":
        backbone.trainable = False
        return model
    spec = spec_of(backbone)
    if not 1 <= stages <= len(spec.stages):
        raise ModelConfigError(
            f"{spec.name} has {len(spec.stages)} stages; fine_tune_stages must be between 1 and "
            f"{len(spec.stages)}. Received stages={stages}"
        )
    backbone.trainable = True
    for layer in backbone.layers:
        index = spec.stage_of(layer.name)
        in_last = index is not None and index < stages
        layer.trainable = in_last and not isinstance(layer, layers.BatchNormalization)
    return model


def compile_for_phase(
    model: keras.Model, phase: str, cfg: Config, *, steps_per_epoch: int | None = None
) -> keras.Model:
    """Compile for a phase: Adam, sparse cross-entropy (`loss_for`), accuracy.

    `"head"` uses `cfg.head_learning_rate`. `"fine_tune"` uses the much lower
    `cfg.fine_tune_learning_rate`, decayed along a cosine over
    `cfg.fine_tune_epochs * steps_per_epoch` steps when `steps_per_epoch` is
    given: large updates would wreck the pretrained filters the phase is
    meant to adjust gently.

    Args:
        model: the model, with `trainable` already set for the phase.
        phase: `"head"` or `"fine_tune"`.
        cfg: the configuration.
        steps_per_epoch: batches per epoch, for the fine-tuning schedule.

    Returns:
        The model.
    """
    from flowerlib.runtime import use_jit

    if phase not in PHASES:
        raise ModelConfigError(f"Unknown phase. Expected one of {PHASES}. Received phase={phase!r}")
    if phase == "head":
        lr = cfg.head_learning_rate
    elif steps_per_epoch:
        lr = keras.optimizers.schedules.CosineDecay(
            cfg.fine_tune_learning_rate,
            decay_steps=max(1, int(steps_per_epoch) * max(1, cfg.fine_tune_epochs)),
            alpha=0.1,
        )
    else:
        lr = cfg.fine_tune_learning_rate
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=loss_for(cfg),
        metrics=training_metrics(),
        jit_compile=use_jit(cfg),
    )
    return model


def training_metrics() -> list:
    """What `fit` reports besides the loss: accuracy and top-5 accuracy (`top5`)."""
    return ["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")]


def _count(weights) -> int:
    return int(sum(int(ops.size(w)) for w in weights))


def trainable_summary(model: keras.Model) -> pd.DataFrame:
    """Trainable and frozen parameter counts, per backbone stage and for the head.

    Returns:
        A DataFrame indexed by part (`"backbone:conv1"` ... `"backbone:conv5"`,
        `"head"`, `"total"`), with columns `layers`, `trainable`, `frozen`
        (parameters; BatchNorm moving statistics always count as frozen).
    """
    import pandas as pd

    backbone = backbone_of(model)
    spec = spec_of(backbone)
    rows: dict[str, dict[str, int]] = {}
    for i in reversed(range(len(spec.stages))):
        rows[f"backbone:{spec.stage_name(i)}"] = {"layers": 0, "trainable": 0, "frozen": 0}
    for layer in backbone.layers:
        index = spec.stage_of(layer.name)
        if index is None:
            continue
        row = rows[f"backbone:{spec.stage_name(index)}"]
        row["layers"] += 1
        trainable = _count(layer.trainable_weights) if backbone.trainable else 0
        row["trainable"] += trainable
        row["frozen"] += _count(layer.weights) - trainable
    head = [layer for layer in model.layers if layer.name in HEAD_LAYERS]
    rows["head"] = {
        "layers": len(head),
        "trainable": sum(_count(layer.trainable_weights) for layer in head),
        "frozen": sum(_count(layer.non_trainable_weights) for layer in head),
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.loc["total"] = table.sum()
    table.index.name = "part"
    return table


# --- saving -------------------------------------------------------------------


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """Save a model as `.keras`, atomically (a crash never leaves half a file)."""
    from flowerlib.artifacts import atomic_path

    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Models are saved as .keras files. Received path={str(path)!r}")
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def load_model(path: str | os.PathLike, *, compile: bool = False) -> keras.Model:
    """Load a saved classifier with Keras's safe mode on (flowerlib's layers registered).

    Args:
        path: a `.keras` file written by `save_model` / `flowerlib.train`.
        compile: also restore the training configuration (optimizer state).

    Raises:
        FileNotFoundError: no file at `path` (run the training step first).
        ModelConfigError: the file is not a loadable model (truncated, not a
            `.keras` archive, another program's file); the message names it.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No saved model at {path}. Train one first (notebooks/03_train.ipynb or `flowerlib train`)."
        )
    if not zipfile.is_zipfile(path):  # a .keras file is a zip archive
        with open(path, "rb") as f:
            head = f.read(16)
        what = "is empty" if not head else f"is not a .keras archive (it starts with {head!r})"
    else:
        try:
            return keras.saving.load_model(path, safe_mode=True, compile=compile)
        except (ValueError, KeyError, TypeError, AttributeError, OSError, EOFError, zipfile.BadZipFile) as e:
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            what = f"cannot be loaded ({type(e).__name__}: {reason})"
    raise ModelConfigError(
        f"The model file {path} {what}. If `flowerlib train` wrote it, run `flowerlib train` again to "
        f"rewrite it (`--restart` to retrain from scratch) or delete {path}; otherwise pass a .keras "
        "file written by `flowerlib train`."
    )


def export_model(
    model: keras.Model, folder: str | os.PathLike, class_names: list[str] | None = None
) -> dict[str, Path]:
    """Export a classifier for use outside Keras: a TensorFlow SavedModel and a LiteRT (TFLite) file.

    Both take raw RGB pixels (0..255, float32, `[batch, S, S, 3]`, resized and
    centre-cropped like `flowerlib.predict` does) and return the class
    probabilities, preprocessing included. `labels.json` beside them lists the
    class names by output index. The folder is written in full beside its final
    place and then swapped in, so an interrupted export leaves the previous one.

    Args:
        model: the classifier (e.g. `load_model(run.model)`).
        folder: where to write `saved_model/`, `model.tflite` and `labels.json`;
            an existing folder is replaced only if it holds nothing else.
        class_names: names by output index (default: none written).

    Returns:
        `{"saved_model": ..., "tflite": ..., "labels": ...}` paths.

    Raises:
        ModelConfigError: `folder` exists and holds files this function does not write.
    """
    import json
    import shutil
    import uuid

    folder = Path(folder)
    names = {"saved_model", "model.tflite", "labels.json"}
    if folder.exists() and (not folder.is_dir() or {p.name for p in folder.iterdir()} - names):
        raise ModelConfigError(
            f"{folder} exists and holds other files than an export ({sorted(names)}); "
            "choose an empty or new folder (--output)."
        )
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.mkdir(parents=True)
        model.export(str(tmp / "saved_model"), format="tf_saved_model", verbose=False)
        model.export(str(tmp / "model.tflite"), format="litert", verbose=False)
        if class_names is not None:
            (tmp / "labels.json").write_text(json.dumps(list(class_names), indent=1), encoding="utf-8")
        old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old")
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"saved_model": folder / "saved_model", "tflite": folder / "model.tflite"}
    if class_names is not None:
        out["labels"] = folder / "labels.json"
    return out
