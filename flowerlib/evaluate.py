"""Honest evaluation of a trained classifier: run it over one part of a split table.

`evaluate()` runs a model over one part of a split table (the held-out
`"test"` part by default) and returns an `Evaluation` holding the
probabilities beside the labels, in table order, with the metrics of
`flowerlib.metrics` computed on them.

Typical use::

    model, names = evaluate.load_trained(cfg)
    table = splits.prepare_split(cfg)
    result = evaluate.evaluate(model, table, cfg)           # part="test"
    result.metrics["top1"], result.per_class.head()
    evaluate.save_metrics(result, Layout(cfg.data_dir).run(cfg.run))
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from flowerlib import artifacts
from flowerlib.artifacts import Layout, RunLayout
from flowerlib.errors import FlowerlibError
from flowerlib.metrics import (
    EvaluationError,
    Reliability,
    compute_metrics,
    confusion_matrix,
    most_confused_pairs,
    per_class_table,
    reliability,
)
from flowerlib.splits import PARTS

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from flowerlib.config import Config


class ModelNotFoundError(FlowerlibError, FileNotFoundError):
    """The trained model (or its labels) is not in the run folder yet."""


@dataclass
class Evaluation:
    """What `evaluate()` found, in the order of `table` (one row per image).

    Attributes:
        probs: predicted probabilities, shape `(n, num_classes)`.
        y_true: true labels from the split table, shape `(n,)`.
        y_pred: `argmax` of `probs`, shape `(n,)`.
        metrics: `compute_metrics()` plus `part`, `split`, `tta`.
        per_class: `per_class_table()` (worst first).
        table: the rows of the split table that were evaluated (index reset).
        class_names: one name per model output.
        part: `"test"`, `"val"` or `"train"`.
        split: the split's name (`cfg.split`).
        tta: whether test-time augmentation (horizontal flip) was used.
        data_dir: the data directory the images were read from.
        image_size: the side of the images the model saw.
    """

    probs: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    metrics: dict[str, Any]
    per_class: pd.DataFrame
    table: pd.DataFrame
    class_names: list[str]
    part: str
    split: str
    tta: bool
    data_dir: Path
    image_size: int
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted class for each image."""
        return self.probs[np.arange(len(self.y_pred)), self.y_pred]

    def confusion(self, normalize: bool = True) -> np.ndarray:
        """The confusion matrix of this evaluation (row = true class)."""
        return confusion_matrix(self.y_true, self.y_pred, len(self.class_names), normalize=normalize)

    def reliability(self, bins: int = 10) -> Reliability:
        """The reliability table and ECE of this evaluation."""
        return reliability(self.y_true, self.probs, bins=bins)

    def most_confused(self, k: int = 10) -> pd.DataFrame:
        """The `k` most frequent (true, predicted) confusions, as fractions of the true class."""
        return most_confused_pairs(self.confusion(normalize=True), k, self.class_names)

    def mistakes(self) -> pd.DataFrame:
        """The misclassified images, most confident first.

        Returns:
            The evaluated table's rows (file, label, class_name, ...) that were
            wrong, with `pred`, `pred_name`, `confidence` and `p_true` columns.
        """
        out = self.table.copy()
        out["pred"] = self.y_pred
        out["pred_name"] = [self.class_names[i] for i in self.y_pred]
        out["confidence"] = self.confidence
        out["p_true"] = self.probs[np.arange(len(self.y_true)), self.y_true]
        wrong = out[out["pred"] != out["label"]]
        return wrong.sort_values("confidence", ascending=False, kind="stable")

    def sample(self, n: int, seed: int = 0) -> Evaluation:
        """The same evaluation restricted to `n` of its images, drawn at random (all when fewer).

        For a comparison that must stay cheap, such as test-time augmentation
        over a part of the test set: the rows keep their table order.
        """
        if n < 1:
            raise EvaluationError(f"n must be at least 1. Received n={n}")
        if n >= len(self.table):
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self.table), size=n, replace=False))
        return _evaluation(
            self.probs[rows],
            self.table.iloc[rows].reset_index(drop=True),
            self.class_names,
            self.part,
            self.split,
            self.tta,
            self.data_dir,
            self.image_size,
        )

    def image(self, row: int) -> np.ndarray:
        """The `row`-th evaluated image as the model saw it (resized, centre-cropped), 0..255."""
        from flowerlib import pipeline

        return pipeline.read_image(self.data_dir / self.table["file"].iloc[row], self.image_size)


def _class_names_for(table: pd.DataFrame, num_outputs: int) -> list[str]:
    from flowerlib.classes import CLASS_NAMES

    names = list(CLASS_NAMES[:num_outputs]) + [f"class {i}" for i in range(len(CLASS_NAMES), num_outputs)]
    if "class_name" in table.columns:
        for label, name in table[["label", "class_name"]].drop_duplicates().itertuples(index=False):
            if 0 <= int(label) < num_outputs:
                names[int(label)] = str(name)
    return names


def predict_dataset(
    model: keras.Model,
    dataset: Any,
    *,
    tta: bool = False,
    flip: bool = False,
    progress: str | None = None,
    total: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run `model` over a `(images, labels)` dataset, keeping labels beside predictions.

    Each batch's labels are taken from the same element as its images, so the
    two can never be shuffled apart.

    Args:
        model: a classifier taking raw RGB images in 0..255.
        dataset: an iterable of `(images [B, H, W, 3], labels [B])` batches.
        tta: average the probabilities of each image and its horizontal flip.
        flip: predict the horizontally flipped images only.
        progress: a progress bar with this description (`tqdm.auto`: a widget in
            Jupyter, text in a terminal); None shows none.
        total: images expected, for the bar.

    Returns:
        `(probs, labels)` as NumPy arrays.
    """
    if tta and flip:
        raise EvaluationError("Pass tta=True (image and flip averaged) or flip=True (flip only), not both.")
    probs, labels = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=progress, unit="img", leave=False)
    for images, batch_labels in dataset:
        images = np.asarray(images, dtype=np.float32)
        mirrored = images[:, :, ::-1, :]
        p = np.asarray(model.predict_on_batch(mirrored if flip else images), dtype=np.float64)
        if tta:
            p = 0.5 * (p + np.asarray(model.predict_on_batch(mirrored), dtype=np.float64))
        probs.append(p)
        labels.append(np.asarray(batch_labels))
        if bar is not None:
            bar.update(len(p))
    if bar is not None:
        bar.close()
    if not probs:
        num_outputs = int(model.output_shape[-1])
        return np.zeros((0, num_outputs)), np.zeros((0,), dtype=np.int64)
    return np.concatenate(probs), np.concatenate(labels).astype(np.int64)


def evaluate(
    model: keras.Model,
    table: pd.DataFrame,
    cfg: Config,
    *,
    part: str = "test",
    tta: bool = False,
    class_names: Sequence[str] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> Evaluation:
    """Evaluate `model` on one part of a split table (the held-out test part by default).

    Images go through the same deterministic input pipeline as in training
    (`pipeline.make_dataset(..., training=False)`), in table order.

    Args:
        model: the trained classifier (raw RGB 0..255 in, softmax out).
        table: the split table from `splits.prepare_split(cfg)`.
        cfg: the configuration (data directory, image size, batch size, split).
        part: which rows to evaluate: `"test"` (honest: never used for
            training or model selection), `"val"` or `"train"`.
        tta: test-time augmentation: average each image's prediction with its
            horizontal flip's.
        class_names: one name per model output (e.g. the run's `labels.json`);
            defaults to the names in `table`.
        batch_size: overrides `cfg.batch_size`.
        progress: show a progress bar (minutes for 6,149 test images on a CPU).

    Returns:
        An `Evaluation` (probabilities, labels, predictions, metrics, per-class table).

    Raises:
        EvaluationError: unknown or empty part, or labels outside the model's outputs.
    """
    from flowerlib import pipeline
    from flowerlib.model import inference_copy

    if part not in PARTS:
        raise EvaluationError(f"part must be one of {PARTS}. Received part={part!r}")
    if "split" not in table.columns or "label" not in table.columns:
        raise EvaluationError(
            "table must be a split table with 'split' and 'label' columns (from splits.prepare_split(cfg)). "
            f"Received columns {list(table.columns)}"
        )
    rows = table[table["split"] == part].reset_index(drop=True)
    if rows.empty:
        raise EvaluationError(
            f"The split table has no {part!r} rows (it has {sorted(table['split'].unique())}); "
            "choose another part or split."
        )
    num_outputs = int(model.output_shape[-1])
    if rows["label"].max() >= num_outputs or rows["label"].min() < 0:
        raise EvaluationError(
            f"The table's labels go up to {rows['label'].max()} but the model has {num_outputs} outputs: "
            "this model was trained for a different number of classes (check cfg.num_classes and cfg.run)."
        )
    input_shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
    if input_shape[1] is not None and int(input_shape[1]) != cfg.image_size:
        raise EvaluationError(
            f"The model takes {input_shape[1]} px images but cfg.image_size={cfg.image_size}; "
            "evaluate with the configuration the model was trained with."
        )
    names = list(class_names) if class_names is not None else _class_names_for(rows, num_outputs)
    dataset = pipeline.make_dataset(
        rows,
        cfg.data_dir,
        image_size=cfg.image_size,
        batch_size=batch_size or cfg.batch_size,
        training=False,
    )
    what = f"{part} images" + (" (with flips)" if tta else "")
    probs, labels = predict_dataset(
        inference_copy(model),  # BatchNorm folded into the convs: the same predictions, faster
        dataset,
        tta=tta,
        progress=what if progress else None,
        total=len(rows),
    )
    _check_alignment(labels, rows)
    return _evaluation(probs, rows, names, part, cfg.split, tta, Path(cfg.data_dir), int(cfg.image_size))


def with_tta(
    model: keras.Model, evaluation: Evaluation, *, batch_size: int = 32, progress: bool = True
) -> Evaluation:
    """The same evaluation with test-time augmentation, reusing the unflipped predictions.

    Averages `evaluation.probs` with the model's predictions of the horizontally
    flipped images: one more pass over the part instead of the two that
    `evaluate(..., tta=True)` makes.

    Args:
        model: the model that produced `evaluation`.
        evaluation: an evaluation made without TTA.
        batch_size: images per forward pass.
        progress: show a progress bar.

    Returns:
        A new `Evaluation` with `tta=True`.

    Raises:
        EvaluationError: `evaluation` already used TTA.
    """
    from flowerlib import pipeline
    from flowerlib.model import inference_copy

    if evaluation.tta:
        raise EvaluationError("This evaluation already used TTA; pass one made with tta=False.")
    dataset = pipeline.make_dataset(
        evaluation.table,
        evaluation.data_dir,
        image_size=evaluation.image_size,
        batch_size=batch_size,
        training=False,
    )
    flipped, labels = predict_dataset(
        inference_copy(model),
        dataset,
        flip=True,
        progress=f"flipped {evaluation.part} images" if progress else None,
        total=len(evaluation.table),
    )
    _check_alignment(labels, evaluation.table)
    return _evaluation(
        0.5 * (evaluation.probs + flipped),
        evaluation.table,
        evaluation.class_names,
        evaluation.part,
        evaluation.split,
        True,
        evaluation.data_dir,
        evaluation.image_size,
    )


def _check_alignment(labels: np.ndarray, rows: pd.DataFrame) -> None:
    y_true = rows["label"].to_numpy(dtype=np.int64)
    if labels.shape != y_true.shape or not np.array_equal(labels, y_true):
        raise EvaluationError(
            "The input pipeline returned labels in a different order than the split table "
            f"({labels.shape[0]} labels for {y_true.shape[0]} rows); evaluation needs a deterministic, "
            "unshuffled dataset (pipeline.make_dataset(..., training=False))."
        )


def _evaluation(
    probs: np.ndarray,
    rows: pd.DataFrame,
    names: list[str],
    part: str,
    split: str,
    tta: bool,
    data_dir: Path,
    image_size: int,
) -> Evaluation:
    y_true = rows["label"].to_numpy(dtype=np.int64)
    metrics = compute_metrics(y_true, probs, names)
    metrics.update({"part": part, "split": split, "tta": bool(tta)})
    y_pred = np.argmax(probs, axis=1)
    return Evaluation(
        probs=probs,
        y_true=y_true,
        y_pred=y_pred,
        metrics=metrics,
        per_class=per_class_table(y_true, y_pred, names),
        table=rows,
        class_names=list(names),
        part=part,
        split=split,
        tta=bool(tta),
        data_dir=data_dir,
        image_size=image_size,
    )


def save_metrics(evaluation: Evaluation, run_layout: RunLayout) -> Path:
    """Write `metrics.json` and `per_class.csv` beside the model that produced them.

    Both files are written atomically. `metrics.json` names the model file, the
    part, the split and whether TTA was used, so a number is never separated
    from what it measures.

    Args:
        evaluation: the result of `evaluate()`.
        run_layout: the run's folder (`Layout(cfg.data_dir).run(cfg.run)`).

    Returns:
        The path of `metrics.json`.

    Raises:
        flowerlib.artifacts.DiskWriteError: the run folder is full, read-only or
            not writable (the evaluation itself is not lost: it is still `evaluation`).
    """
    data = dict(evaluation.metrics)
    data.update(
        {
            "model": str(run_layout.model),
            "part": evaluation.part,
            "split": evaluation.split,
            "tta": evaluation.tta,
            "evaluated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
    )
    with artifacts.atomic_path(run_layout.per_class) as tmp:
        evaluation.per_class.to_csv(tmp, index=False)
    return artifacts.write_json(run_layout.metrics, data)


def load_metrics(run_layout: RunLayout) -> dict[str, Any]:
    """Read a run's `metrics.json` (see `save_metrics`)."""
    if not run_layout.metrics.is_file():
        raise ModelNotFoundError(
            f"No metrics at {run_layout.metrics}. Run 04_evaluate.ipynb (or `flowerlib evaluate`) first."
        )
    return artifacts.read_json(run_layout.metrics)


class TrainedModel(NamedTuple):
    """A trained model with its class names and run folder (`model, names, run = ...`)."""

    model: Any
    class_names: list[str]
    run: RunLayout


def other_profile_hint(cfg: Config) -> str:
    """A sentence naming the other profile's trained runs, when `cfg` uses its profile's default
    data directory and the other profile's default one has runs; else "" (the profiles keep
    their data apart, so `flowerlib runs` after `flowerlib run --profile smoke` finds none)."""
    from flowerlib.config import PROFILES, Config

    if Path(cfg.data_dir) != Config.for_profile(cfg.profile).data_dir:
        return ""
    for other in (p for p in PROFILES if p != cfg.profile):
        root = Config.for_profile(other).data_dir / "runs"
        try:
            if root.is_dir() and any((folder / "model.keras").is_file() for folder in root.iterdir()):
                return f" The {other} profile's data directory has trained runs: add --profile {other}."
        except OSError:  # an unreadable folder: no hint, and not another error
            continue
    return ""


def trained_run(cfg: Config) -> RunLayout:
    """The folder of `cfg.run`, checked to hold a trained model and its labels (nothing is loaded).

    Raises:
        ModelNotFoundError: the model or its labels are missing; the message
            names the other runs of the data directory that have both.
    """
    layout = Layout(cfg.data_dir)
    run = layout.run(cfg.run)
    for path, what in ((run.model, "trained model"), (run.labels, "class names (labels.json)")):
        if not path.is_file():
            root = layout.root / "runs"
            others = sorted(
                folder.name
                for folder in (root.iterdir() if root.is_dir() else ())
                if folder.name != cfg.run
                and (folder / "model.keras").is_file()
                and (folder / "labels.json").is_file()
            )
            if others:
                runs = (
                    f"trained runs: {', '.join(others)}" if len(others) > 1 else f"a trained run, {others[0]}"
                )
                fix = (
                    f"This data directory has {runs}. Choose one with --run-name NAME (FLOWERS_RUN_NAME=NAME), "
                    "or train this one with 03_train.ipynb (or `flowerlib train`)"
                )
            else:
                fix = "Run 03_train.ipynb (or `flowerlib train`) first, with the same configuration"
            raise ModelNotFoundError(
                f"No {what} at {path}. {fix} (data_dir={cfg.data_dir}, run={cfg.run!r}).{other_profile_hint(cfg)}"
            )
    return run


def load_trained(cfg: Config) -> TrainedModel:
    """Load the model and class names that training saved for `cfg.run`.

    The model is loaded with Keras's safe mode (no arbitrary code from the file).

    Args:
        cfg: the configuration of the training run (data directory and run name).

    Returns:
        `TrainedModel(model, class_names, run_layout)`.

    Raises:
        ModelNotFoundError: the run folder has no model or no labels yet.
        flowerlib.backbones.ModelConfigError: `model.keras` is broken (the message says what to do).
        EvaluationError: `labels.json` is broken or does not match the model's outputs.
    """
    run = trained_run(cfg)
    from flowerlib.model import load_model  # registers the custom Preprocess layer

    loaded = load_model(run.model)  # Keras safe mode; a broken file is a one-line error
    fix = "run `flowerlib train` again to rewrite it (`--restart` to retrain from scratch)"
    names = read_labels(run.labels, int(loaded.output_shape[-1]), fix=fix)
    return TrainedModel(loaded, names, run)


def read_labels(path: Path, num_outputs: int, *, fix: str) -> list[str]:
    """The class names in a `labels.json`, checked against the model's number of outputs.

    Args:
        path: the `labels.json` file (a JSON list of names; `{"class_names": [...]}`
            is tolerated).
        num_outputs: the model's number of outputs.
        fix: what the user should do when the file is unusable (ends the message).

    Returns:
        One name per output.

    Raises:
        EvaluationError: not JSON, not a list of names, or the wrong number of
            them; the message names the file and says `fix`.
    """
    try:
        names = artifacts.read_json(path)
    except ValueError:
        raise EvaluationError(f"{path} is not valid JSON; {fix}.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EvaluationError(f"{path} cannot be read ({type(e).__name__}); {fix}.") from None
    if isinstance(names, dict):  # tolerate {"class_names": [...]}
        names = names.get("class_names", names.get("labels"))
    if not isinstance(names, list) or not all(isinstance(n, str | int) for n in names):
        raise EvaluationError(f"{path} must hold a JSON list of class names (strings); {fix}.")
    if len(names) != num_outputs:
        raise EvaluationError(
            f"{path} holds {len(names)} class names but the model has {num_outputs} outputs; {fix}."
        )
    return [str(n) for n in names]
