"""Two-phase training with plain Keras `fit`, and the bookkeeping around it.

Notebook 03 shows every step; `train(cfg)` (and `flowerlib train`) runs the same
steps in one call:

1. Head phase: the backbone frozen, only the new head (`model.build_head`)
   learns. With `cfg.cache_features` (the default) it trains on the frozen
   backbone's pooled features, computed once (`flowerlib.cache`); the head is
   the same object inside the classifier, so nothing needs copying.
2. Fine-tuning (`cfg.fine_tune_epochs > 0`): the last `cfg.fine_tune_stages`
   stages unfrozen (BatchNorm stays frozen), recompiled with the low
   `cfg.fine_tune_learning_rate`, trained on augmented images. With
   `cfg.cache_features`, the frozen part before those stages ran once, in the
   feature extraction of step 1, which also kept its output map per image and
   view; each epoch then runs only the unfrozen stages (`model.top_model`) on
   those maps (`CachedViews`), validation included.
3. `keep_better`: if fine-tuning never beat the head phase's validation loss,
   the head phase's weights are put back, with a message.
4. `calibrate`: one temperature fitted on the validation images. The
   trained model's pooled features of the training and validation images
   (`final_features`, from the cached maps when there are some) give the
   probabilities it is fitted on, and the reference of the "unlike every
   training photo" warning (`flowerlib.novelty`).
5. `save_run`: the artifacts of `artifacts.RunLayout`, `reference.npz` included.

The bookkeeping is two ordinary pieces:

- `Run`: the run folder `runs/<cfg.run>/` and its `checkpoints/state.json`.
- `Checkpoint`: a Keras callback, placed after `EarlyStopping` in `fit`'s
  callbacks, that writes each epoch's weights, the best weights and the history
  row atomically. `initial_epoch=checkpoint.resume(model)` continues an
  interrupted phase, but only when the model's architecture, its trainable
  weights, the optimizer, the loss, the data and the earlier phases are all the
  same as when the checkpoint was written; otherwise the checkpoint is
  discarded. Either way it says what it did in one sentence.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import math
import os
import re
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import keras
import numpy as np

from flowerlib.artifacts import Layout, RunLayout, read_json, write_json, write_text
from flowerlib.cache import make_key, without_names
from flowerlib.errors import FlowerlibError

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from flowerlib.config import Config

STATE_VERSION = 2
PHASES = ("head", "fine_tune")
HISTORY_COLUMNS = (
    "phase",
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
)
# Settings that do not change what is trained: a finished run is reused across them.
_NOT_IN_FINGERPRINT = ("data_dir", "source", "mirror", "tensorboard", "jit_compile", "strategy")
# Settings that decide which images a tf.data pipeline yields, and in which order.
_DATA_SETTINGS = ("image_size", "batch_size", "augment", "seed", "split", "split_fractions")
_CHECKPOINT_FILE = re.compile(r"(head|fine_tune)-(latest|best)-\d{4}\.weights\.h5")


class TrainError(FlowerlibError, RuntimeError):
    """Training cannot start or continue (e.g. an empty train or validation part)."""


@dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        model: the trained classifier (an ordinary `keras.Model`).
        history: one row per epoch; columns `phase` (`"head"`, `"fine_tune"`),
            `epoch` (1-based within its phase), `loss`, `accuracy`, `val_loss`,
            `val_accuracy`, `learning_rate`, `seconds`.
        run: where the artifacts are.
        resumed: True when earlier work of the same run was reused.
        info: timings and facts (`extract_seconds`, `cache_hit`, `head_seconds`,
            `fine_tune_seconds`, `policy`, `strategy`, `replicas`, `phases`
            (what each phase's checkpoint did), `kept`; with `cfg.calibrate`,
            `temperature` and the validation log loss and calibration error
            before and after it; `unfamiliar_distance`, the threshold of the
            reference in `run.reference`).
    """

    model: keras.Model
    history: pd.DataFrame
    run: RunLayout
    resumed: bool = False
    info: dict[str, Any] = field(default_factory=dict)


def _say(verbose: int, message: str) -> None:
    if verbose:
        print(message, flush=True)


# --- the run folder ------------------------------------------------------------


def run_fingerprint(cfg: Config, table: pd.DataFrame) -> str:
    """Hash of everything that determines a whole run: the configuration (minus
    paths and logging switches) and the split table."""
    from flowerlib.cache import table_fingerprint

    settings = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_IN_FINGERPRINT}
    return make_key(
        {"version": STATE_VERSION, "config": settings, "extra": cfg.extra, "table": table_fingerprint(table)}
    )


def check_table(table: pd.DataFrame) -> None:
    """Raise `TrainError` unless the split table has both train and val images."""
    for part in ("train", "val"):
        if not (table["split"] == part).any():
            raise TrainError(
                f"The split table has no {part!r} images; training needs both train and val. "
                f"Parts present: {sorted(set(table['split']))}"
            )


class Run:
    """One training run: its folder `runs/<cfg.run>/`, split table and saved state.

    `checkpoints/state.json` records, per phase, the checkpoint files and the
    fingerprint of what was trained (`Checkpoint`), and whether the whole run
    finished. A `state.json` that cannot be read is set aside with a message,
    never trusted.

    Args:
        cfg: the configuration.
        table: the split table; default `flowerlib.splits.prepare_split(cfg)`.
        restart: discard the run's saved checkpoints and start afresh (says so).
        verbose: print what happens to saved state (0: silent).

    Raises:
        TrainError: the split has no train or no validation images, or
            TensorBoard was asked for but is not installed.
    """

    def __init__(
        self, cfg: Config, table: pd.DataFrame | None = None, *, restart: bool = False, verbose: int = 1
    ):
        from flowerlib.backbones import get_backbone, resolve_weights

        get_backbone(cfg.backbone)
        resolve_weights(cfg.weights)  # a mistyped setting fails before anything is read or written
        if table is None:
            from flowerlib.splits import prepare_split

            table = prepare_split(cfg)
        check_table(table)
        if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise TrainError(
                "tensorboard=True needs the TensorBoard package, which is not installed: "
                "pip install tensorboard (or set FLOWERS_TENSORBOARD=false)."
            )
        self.cfg = cfg
        self.table = table
        self.verbose = verbose
        self.num_classes = max(cfg.num_classes, int(table["label"].max()) + 1)
        self.layout = Layout(cfg.data_dir).run(cfg.run)
        self.fingerprint = run_fingerprint(cfg, table)
        self.state = self._read_state()
        if restart and (self.state["phases"] or self.layout.history.exists()):
            _say(verbose, f"Restarting run {cfg.run!r}: its saved checkpoints and history are discarded.")
            self.clear(PHASES)
            self.state["finished"] = None

    def _read_state(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"version": STATE_VERSION, "phases": {}, "history": [], "finished": None}
        path = self.layout.state
        if not path.is_file():
            return empty
        try:
            stored = read_json(path)
            if stored.get("version") != STATE_VERSION or not isinstance(stored.get("phases"), dict):
                raise ValueError("not a state file of this flowerlib version")
        except (ValueError, AttributeError, OSError) as e:
            _say(
                self.verbose,
                f"The run's state file {path} cannot be used ({e}); its checkpoints are ignored "
                "and training starts afresh.",
            )
            return empty
        return {**empty, **stored}

    def file(self, name: str) -> Path:
        """A checkpoint file of this run; only flowerlib's own names, inside `checkpoints/`."""
        if not _CHECKPOINT_FILE.fullmatch(str(name)):
            raise TrainError(
                f"The run's state file {self.layout.state} names {name!r}, which is not a checkpoint "
                f"flowerlib writes. Delete {self.layout.checkpoints} or pass restart=True (--restart)."
            )
        return self.layout.checkpoints / name

    def save_state(self) -> None:
        """Write `state.json` and `history.csv` atomically (weight files are written before)."""
        self.layout.checkpoints.mkdir(parents=True, exist_ok=True)
        write_json(self.layout.state, self.state)
        write_text(self.layout.history, history_frame(self.state["history"]).to_csv(index=False))

    def clear(self, phases: Sequence[str]) -> None:
        """Forget `phases`: their checkpoint files, records and history rows (flowerlib's files only)."""
        for phase in phases:
            self.state["phases"].pop(phase, None)
            for p in self.layout.checkpoints.glob(f"{phase}-*.weights.h5"):
                if _CHECKPOINT_FILE.fullmatch(p.name):
                    p.unlink(missing_ok=True)
        self.state["history"] = [r for r in self.state["history"] if r.get("phase") not in phases]
        self.state["finished"] = None
        if self.layout.checkpoints.is_dir():
            self.save_state()
        else:
            self.layout.history.unlink(missing_ok=True)

    def phase(self, name: str) -> dict[str, Any] | None:
        return self.state["phases"].get(name)

    def rows(self, phase: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.state["history"] if phase is None or r["phase"] == phase]

    @property
    def history(self) -> pd.DataFrame:
        """The history so far, both phases."""
        return history_frame(self.rows())

    @property
    def data_key(self) -> str:
        """Identity of the images the pipelines yield: split table plus pipeline settings."""
        from flowerlib.cache import table_fingerprint

        settings = {k: getattr(self.cfg, k) for k in _DATA_SETTINGS}
        return make_key({"table": table_fingerprint(self.table), "settings": settings})

    @property
    def finished(self) -> bool:
        """True when this run already finished with the same configuration and split."""
        return self.state.get("finished") == self.fingerprint and self.layout.model.is_file()

    @property
    def steps_per_epoch(self) -> int:
        """Training batches per epoch."""
        return math.ceil(int((self.table["split"] == "train").sum()) / self.cfg.batch_size)


def history_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """History rows as a DataFrame with the standard columns first."""
    import pandas as pd

    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    rest = [c for c in table.columns if c not in HISTORY_COLUMNS]
    return table[[c for c in HISTORY_COLUMNS if c in table.columns] + rest]


def read_history(run: RunLayout) -> pd.DataFrame:
    """The `history.csv` of a run.

    Raises:
        FileNotFoundError: the run has no history yet (train first).
    """
    import pandas as pd

    if not run.history.is_file():
        raise FileNotFoundError(
            f"No training history at {run.history}. Train first (notebooks/03_train.ipynb)."
        )
    return pd.read_csv(run.history)


# --- what a checkpoint belongs to -------------------------------------------------------


def _canonical_config(config: Any) -> Any:
    """A model config with every layer name replaced by its position.

    Keras numbers automatic names per process (`input_layer_3`), so two builds
    of the same architecture differ only there.
    """
    names: list[str] = []

    def collect(obj: Any) -> None:
        if isinstance(obj, dict):
            history = obj.get("keras_history")
            for name in (
                obj.get("name"),
                history[0] if isinstance(history, (list, tuple)) and history else None,
            ):
                if isinstance(name, str) and name not in names:
                    names.append(name)
            for v in obj.values():
                collect(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                collect(v)

    collect(config)
    index = {name: f"layer{i}" for i, name in enumerate(names)}

    def rename(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: rename(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [rename(v) for v in obj]
        return index.get(obj, obj) if isinstance(obj, str) else obj

    return rename(config)


def _data_identity(data: Any) -> Any:
    if isinstance(data, np.ndarray):
        return [str(data.dtype), list(data.shape), hashlib.sha256(np.ascontiguousarray(data)).hexdigest()]
    if isinstance(data, (list, tuple)):
        return [_data_identity(d) for d in data]
    return str(data)


def model_fingerprint(model: keras.Model, data: Any) -> dict[str, str]:
    """What a phase's checkpoint belongs to, part by part.

    Args:
        model: a compiled model.
        data: identity of the training data: NumPy arrays (hashed), strings, or lists of them.

    Returns:
        `{"architecture", "trainable", "optimizer", "loss", "data"}`, each a short hash.
    """
    trainable = {id(v) for v in model.trainable_weights}
    return {
        "architecture": make_key(_canonical_config(model.get_config())),
        "trainable": make_key([[id(v) in trainable, list(v.shape)] for v in model.weights]),
        "optimizer": make_key(without_names(keras.optimizers.serialize(model.optimizer))),
        "loss": make_key(keras.losses.serialize(model.loss) if model.loss is not None else None),
        "data": make_key(_data_identity(data)),
    }


_WHAT = {
    "architecture": "model architecture",
    "trainable": "set of trainable weights",
    "optimizer": "optimizer or learning rate",
    "loss": "loss",
    "data": "training data",
    "earlier": "result of the earlier phase",
}


# --- the checkpoint callback ------------------------------------------------------------


def _save_weights(model: keras.Model, path: Path) -> None:
    """`model.save_weights` (weights and optimizer state), atomically."""
    # Keras insists on a `.weights.h5` ending, which a temporary name must keep.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex[:8]}.tmp.weights.h5")
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _learning_rate(model: keras.Model) -> float:
    try:
        return float(np.asarray(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return float("nan")


class Checkpoint(keras.callbacks.Callback):
    """Per-epoch, atomic, resumable checkpoints of one phase: an ordinary Keras callback.

        early_stopping = keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)
        checkpoint = Checkpoint(run, "head", early_stopping)
        model.fit(..., initial_epoch=checkpoint.resume(model), callbacks=[early_stopping, checkpoint])

    After every epoch it writes the weights (with the optimizer's state), keeps
    the best epoch's weights (lowest monitored value of `early_stopping`),
    appends the history row, then writes `state.json` last, so a crash at any
    moment leaves the previous epoch's state intact.

    `resume(model)` decides, before `fit`, what to do with an earlier checkpoint
    of this phase, and says so in one sentence:

    - none: train from epoch 1;
    - written for something else (another architecture, trainable set,
      optimizer or learning rate, loss, data, or a changed earlier phase):
      discarded, train from epoch 1;
    - an interrupted phase: its weights, optimizer and early-stopping state are
      restored and training continues after its last completed epoch;
    - a finished phase: its final weights are restored and nothing is trained.

    Args:
        run: the `Run`.
        phase: `"head"` or `"fine_tune"`.
        early_stopping: the phase's `EarlyStopping` callback (its monitor, mode
            and counters carry across an interruption).
        verbose: print what `resume` decided (0: silent).
    """

    def __init__(
        self, run: Run, phase: str, early_stopping: keras.callbacks.EarlyStopping, *, verbose: int = 1
    ):
        super().__init__()
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}. Received phase={phase!r}")
        self.run = run
        self.phase = phase
        self.es = early_stopping
        self.verbose = verbose
        self.outcome = "not resumed yet"
        self._fingerprint: dict[str, str] | None = None
        self._pending_es: dict[str, Any] | None = None
        self._initial_epoch = 0
        self._t0 = 0.0

    @property
    def label(self) -> str:
        return "The head phase" if self.phase == "head" else "Fine-tuning"

    @property
    def history(self) -> pd.DataFrame:
        """Every epoch of this phase, from earlier sessions too."""
        return history_frame(self.run.rows(self.phase))

    def _is_better(self, current: float, best: float | None) -> bool:
        if best is None:
            return True
        mode = self.es.mode
        if mode == "auto":
            mode = "max" if "acc" in self.es.monitor or "auc" in self.es.monitor else "min"
        return current > best if mode == "max" else current < best

    def resume(self, model: keras.Model, data: Any = None) -> int:
        """Restore this phase's checkpoint if it belongs to `model` and `data`; return `initial_epoch`.

        Args:
            model: the compiled model about to be trained.
            data: identity of the training data (NumPy arrays are hashed); default
                the run's `data_key` (the split table and pipeline settings).

        Returns:
            The `initial_epoch` for `fit`: 0 to start, the last completed epoch to
            continue, the planned number of epochs when the phase had finished.
        """
        earlier = [self.run.phase(p) for p in PHASES[: PHASES.index(self.phase)]]
        fingerprint = model_fingerprint(model, self.run.data_key if data is None else data)
        fingerprint["earlier"] = make_key([p and p.get("fingerprint") for p in earlier])
        self._fingerprint = fingerprint
        self._pending_es = None
        stored = self.run.phase(self.phase)
        where = self.run.layout.checkpoints
        if stored is None or not stored.get("epoch"):
            self._start(model, f"{self.label}: no checkpoint to continue from; training from epoch 1.")
            return 0
        changed = [k for k in _WHAT if stored.get("fingerprint", {}).get(k) != fingerprint[k]]
        if changed:
            what = ", ".join(_WHAT[k] for k in changed)
            self._start(
                model,
                f"{self.label}: the checkpoint in {where} was written for a different {what}; "
                "it is discarded and training starts from epoch 1.",
                outcome="discarded",
            )
            return 0
        best_file, latest_file = stored.get("best_file"), stored.get("latest_file")
        try:
            model.optimizer.build(model.trainable_variables)
            if stored.get("done"):
                final = best_file if stored.get("restore_best") else latest_file
                model.load_weights(self.run.file(final))
            else:
                model.load_weights(self.run.file(best_file))
                best_weights = model.get_weights()
                model.load_weights(self.run.file(latest_file))
                self._pending_es = {
                    "best": stored["best"],
                    "best_epoch": stored["best_epoch"],
                    "wait": stored["epoch"] - 1 - stored["best_epoch"],
                    "best_weights": best_weights,
                }
        except (OSError, ValueError, KeyError, TypeError, TrainError) as e:
            self._start(
                model,
                f"{self.label}: the checkpoint in {where} cannot be read ({type(e).__name__}: {e}); "
                "it is discarded and training starts from epoch 1.",
                outcome="discarded",
            )
            return 0
        epoch, planned = int(stored["epoch"]), int(stored["planned_epochs"])
        if stored.get("done"):
            self.outcome = "restored"
            _say(
                self.verbose,
                f"{self.label} already finished in an earlier session ({epoch} epochs, best epoch "
                f"{stored['best_epoch'] + 1}); its weights are restored and nothing is retrained. "
                "To train it again, change what is trained or restart the run (train.Run(..., restart=True), --restart).",
            )
            self._initial_epoch = max(planned, epoch)
            return self._initial_epoch
        self.outcome = "resumed"
        _say(
            self.verbose,
            f"{self.label}: resuming after epoch {epoch} of {planned} from the checkpoint in {where} "
            "(same model, optimizer and data).",
        )
        return epoch

    def _start(self, model: keras.Model, message: str, outcome: str = "fresh") -> None:
        later = PHASES[PHASES.index(self.phase) :]
        if any(self.run.phase(p) for p in later) or self.run.rows(self.phase):
            self.run.clear(later)
        self.outcome = outcome
        _say(self.verbose, message)

    # -- Keras hooks -------------------------------------------------------------

    # One lock per data directory held by this process's fits; a fit interrupted by an
    # exception (no on_train_end) leaves it held until the next fit of this process ends.
    _locks: ClassVar[dict[str, contextlib.ExitStack]] = {}

    def on_train_begin(self, logs=None):
        from flowerlib.locks import data_dir_lock

        if self._fingerprint is None:
            raise TrainError(
                f"Call checkpoint.resume(model) for initial_epoch before fit: the {self.phase!r} "
                "checkpoint must know what it belongs to."
            )
        key = str(self.run.cfg.data_dir)
        if key not in Checkpoint._locks:
            stack = contextlib.ExitStack()
            stack.enter_context(data_dir_lock(key, f"training run {self.run.cfg.run!r}"))
            Checkpoint._locks[key] = stack
        epochs = int(self.params.get("epochs") or 0)
        if self.outcome == "restored" and epochs > self._initial_epoch:
            _say(
                self.verbose,
                f"{self.label}: epochs was raised to {epochs}, so training continues from epoch "
                f"{self._initial_epoch + 1} after all.",
            )
        record = self.run.state["phases"].setdefault(self.phase, {"epoch": 0})
        record.update(fingerprint=self._fingerprint, planned_epochs=epochs)
        record["restore_best"] = bool(self.es.restore_best_weights)

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        if self._pending_es is not None:  # after EarlyStopping.on_train_begin reset its counters
            for key, value in self._pending_es.items():
                setattr(self.es, key, value)
            self._pending_es = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        record = self.run.state["phases"][self.phase]
        row: dict[str, Any] = {"phase": self.phase, "epoch": epoch + 1}
        row.update({k: float(v) for k, v in logs.items() if np.ndim(v) == 0})
        row["learning_rate"] = _learning_rate(self.model)
        row["seconds"] = round(time.perf_counter() - self._t0, 3)
        latest = f"{self.phase}-latest-{epoch + 1:04d}.weights.h5"
        _save_weights(self.model, self.run.file(latest))
        current = logs.get(self.es.monitor)
        if current is not None and self._is_better(float(current), record.get("best")):
            best = f"{self.phase}-best-{epoch + 1:04d}.weights.h5"
            _save_weights(self.model, self.run.file(best))
            record.update(best=float(current), best_epoch=epoch, best_file=best)
        record.update(epoch=epoch + 1, latest_file=latest, done=False)
        self.run.state["history"] = [
            r for r in self.run.state["history"] if not (r["phase"] == self.phase and r["epoch"] > epoch)
        ] + [row]
        self._save_and_prune()

    def on_train_end(self, logs=None):
        record = self.run.state["phases"].get(self.phase)
        if record and record.get("epoch"):
            record["done"] = True
            self._save_and_prune()
        stack = Checkpoint._locks.pop(str(self.run.cfg.data_dir), None)
        if stack is not None:
            stack.close()

    def _save_and_prune(self) -> None:
        self.run.save_state()
        keep = {r.get(k) for r in self.run.state["phases"].values() for k in ("best_file", "latest_file")}
        for p in self.run.layout.checkpoints.glob("*.weights.h5"):
            if _CHECKPOINT_FILE.fullmatch(p.name) and p.name not in keep:
                p.unlink(missing_ok=True)


class CachedViews(keras.utils.PyDataset):
    """Batches of cached feature maps for `fit`: each epoch, one random view of every image.

    While only the last stages train, the frozen part before them computes the
    same map for the same input, so `flowerlib.cache` stores it once for every
    image and each of its augmented views (`FeatureSet.activations`). Every
    epoch, each image contributes one of its views, drawn at random, in a new
    random order, and each map moves by up to `shift` cells in each direction
    (edge cells repeated): for ResNet50's 14 x 14 `conv4` map one cell is 16 px
    of a 224 px image, and a convolution's output follows its input's shifts.
    Augmentation at the cost of the last stages alone. (Mirroring the maps was
    measured too and cost accuracy: a mirrored map is not the map of the mirrored
    image. Both measurements are in `benchmarks/RESULTS.md`.) Batches keep the
    stored dtype, float16, and the model casts them inside its compiled step:
    converting them here, beside the training step, made fine-tuning about a
    third slower on 2 cores (RESULTS.md). TensorFlow prints one harmless line
    on its first float16 op ("oneDNN supports DT_HALF only on platforms with
    AVX-512").

    Args:
        features: a `FeatureSet` with `activations` (rows grouped by view).
        batch_size: maps per batch.
        seed: seed of the view and order draws; `training=False` ignores it.
        training: draw views, shifts and the order; False yields view 0 of
            every image, unshifted, in table order (validation, prediction).
        shift: the largest shift, in cells of the map (0: none).
    """

    def __init__(
        self,
        features: Any,
        batch_size: int,
        *,
        seed: int = 0,
        training: bool = True,
        shift: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if features.activations is None:
            raise TrainError(
                "These cached features have no feature maps: extract them with "
                "cache.cached_features(..., activations=model.fine_tune_cut(model, stages))."
            )
        self.maps, self.labels = features.activations, np.asarray(features.labels)
        views = np.asarray(features.views)
        self.n_images = int(np.sum(views == 0))
        self.n_views = len(views) // max(1, self.n_images)
        self.batch_size = int(batch_size)
        self.training = training
        self.shift = int(shift)
        self._rng = np.random.default_rng(seed)
        self._rows = np.arange(self.n_images)
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(self.n_images / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        batch = slice(index * self.batch_size, (index + 1) * self.batch_size)
        order = np.argsort(self._rows[batch])  # read the memory-mapped rows in file order
        rows, offsets = self._rows[batch][order], self._offsets[batch][order]
        maps = np.asarray(self.maps[rows])  # as stored, float16: the model casts them (see the docstring)
        if self.shift and self.training:  # move each map by its offset, repeating the edge cells
            k, (h, w) = self.shift, maps.shape[1:3]
            padded = np.pad(maps, ((0, 0), (k, k), (k, k), (0, 0)), mode="edge")
            maps = np.stack([padded[i, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])
        return maps, self.labels[rows]

    def on_epoch_end(self) -> None:
        self._offsets = np.full((self.n_images, 2), self.shift)  # the centre: no shift
        if self.training:  # row of image i's view v is v * n_images + i
            order = self._rng.permutation(self.n_images)
            self._rows = self._rng.integers(0, self.n_views, self.n_images) * self.n_images + order
            self._offsets = self._rng.integers(0, 2 * self.shift + 1, (self.n_images, 2))


# --- the steps train() runs ---------------------------------------------------------------


def tensorboard_callbacks(run: Run, phase: str) -> list[keras.callbacks.Callback]:
    """`[keras.callbacks.TensorBoard(runs/<run>/logs/<phase>)]` when `cfg.tensorboard`, else `[]`."""
    if not run.cfg.tensorboard:
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(run.layout.logs / phase))]


def fit_phase(
    model: keras.Model,
    run: Run,
    phase: str,
    train_data: Any,
    val_data: Any,
    *,
    epochs: int,
    batch_size: int | None = None,
    data: Any = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 2,
) -> Checkpoint:
    """`model.fit` with early stopping and a resumable `Checkpoint`, as notebook 03 writes it.

    Args:
        model: a compiled model.
        run: the `Run`.
        phase: `"head"` or `"fine_tune"`.
        train_data: a `tf.data.Dataset`, or `(x, y)` arrays (cached features).
        val_data: likewise, for validation.
        epochs: epochs of the phase.
        batch_size: for arrays only.
        data: identity of the training data for the checkpoint (default: the
            arrays themselves, or the run's `data_key` for datasets).
        callbacks: extra Keras callbacks.
        verbose: Keras `fit` verbosity; also whether the checkpoint says what it did.

    Returns:
        The phase's `Checkpoint` (its `history` covers earlier sessions too).
    """
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=run.cfg.patience, restore_best_weights=True
    )
    checkpoint = Checkpoint(run, phase, early_stopping, verbose=verbose)
    extra = [*callbacks, *tensorboard_callbacks(run, phase)]
    if isinstance(train_data, tuple):
        x, y = train_data
        identity = data if data is not None else [x, y, *val_data]
        kwargs: dict[str, Any] = {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}
    else:
        identity = data
        kwargs = {"x": train_data, "shuffle": False}  # the pipeline shuffles (seeded) by itself
    model.fit(
        **kwargs,
        validation_data=val_data,
        epochs=epochs,
        initial_epoch=checkpoint.resume(model, identity),
        callbacks=[early_stopping, checkpoint, *extra],
        verbose=verbose,
    )
    return checkpoint


def keep_better(
    model: keras.Model,
    head_weights: list[np.ndarray],
    head_history: pd.DataFrame,
    fine_history: pd.DataFrame,
    *,
    verbose: int = 1,
) -> bool:
    """After fine-tuning, put the head phase's weights back if fine-tuning never beat them.

    Early stopping keeps the best *fine-tuning* epoch, which can still be worse
    on the validation loss than where fine-tuning started. Both phases are scored
    on the same validation images without augmentation, so their losses compare.

    Args:
        model: the fine-tuned classifier (changed in place).
        head_weights: `model.get_weights()` taken right after the head phase.
        head_history, fine_history: the two phases' histories (`Checkpoint.history`).
        verbose: say which weights are kept (0: silent).

    Returns:
        True when the head phase's weights were put back.
    """
    if head_history.empty or fine_history.empty:
        return False
    best_head = float(head_history["val_loss"].min())
    best_fine = float(fine_history["val_loss"].min())
    if best_fine < best_head:
        _say(
            verbose,
            f"Fine-tuning improved the validation loss from {best_head:.4f} to {best_fine:.4f}: "
            "the fine-tuned weights are kept.",
        )
        return False
    model.set_weights(head_weights)
    _say(
        verbose,
        f"Fine-tuning never beat the head phase's validation loss ({best_fine:.4f} against "
        f"{best_head:.4f}): the head phase's weights are kept. Try more epochs, another "
        "learning rate or more stages (fine_tune_*).",
    )
    return True


def calibrate(model: keras.Model, run: Run, probs: np.ndarray) -> dict[str, float]:
    """Fit a temperature on the validation images and build it into the model (in place).

    Label smoothing leaves the model underconfident; dividing the logits by the
    temperature that minimises the validation log loss fixes that without
    changing any prediction (`flowerlib.calibration`).

    Args:
        model: the trained classifier.
        run: the `Run` (its split table names the validation images).
        probs: the model's probabilities for the validation images, in table
            order (`train` computes them from `final_features` through the head).

    Returns:
        `temperature` (1.0: nothing changed) and the validation log loss and
        calibration error before and after it.
    """
    from flowerlib.calibration import apply_temperature, fit_temperature, scale_probabilities
    from flowerlib.metrics import compute_metrics

    labels = run.table.loc[run.table["split"] == "val", "label"].to_numpy(dtype=np.int64)
    t = fit_temperature(probs, labels)
    apply_temperature(model, t)
    before, after = compute_metrics(labels, probs), compute_metrics(labels, scale_probabilities(probs, t))
    return {
        "temperature": round(t, 4),
        "val_log_loss_before": round(before["log_loss"], 4),
        "val_log_loss_after": round(after["log_loss"], 4),
        "val_ece_before": round(before["ece"], 4),
        "val_ece_after": round(after["ece"], 4),
    }


def final_features(
    cfg: Config,
    model: keras.Model,
    run: Run,
    train_f: Any = None,
    val_f: Any = None,
    cut: str | None = None,
    *,
    verbose: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The trained model's pooled features of the training and the validation images (view 0, table order).

    From the cached maps through `top_model(..., pooled=True)` when fine-tuning used
    them (`cut`), from the cached features when the backbone never changed, else
    through the input pipeline and the whole network.
    """
    from flowerlib.model import feature_extractor, top_model
    from flowerlib.pipeline import dataset_for

    if cut is not None:
        pooled = top_model(model, cfg.fine_tune_stages, pooled=True)
        return tuple(
            pooled.predict(CachedViews(f, cfg.batch_size, training=False), verbose=min(verbose, 1))
            for f in (train_f, val_f)
        )
    if train_f is not None and cfg.fine_tune_epochs == 0:  # the backbone is as when cached
        return np.asarray(train_f.features)[np.asarray(train_f.views) == 0], np.asarray(val_f.features)
    extractor = feature_extractor(model)
    return tuple(
        extractor.predict(dataset_for(cfg, run.table, part, training=False), verbose=min(verbose, 1))
        for part in ("train", "val")
    )


def save_run(
    run: Run, model: keras.Model, info: dict[str, Any] | None = None, reference: Any = None
) -> TrainResult:
    """Write the artifacts (labels, model, config, history, reference), then mark the run finished.

    `reference` (`flowerlib.novelty.Reference`) goes to `reference.npz`; without
    one, a reference left by an earlier model of this run is deleted.

    The saved model has its backbone frozen (phase `"head"`): fine-tuning it
    further is a deliberate `set_trainable` away.
    """
    from flowerlib.model import save_model, set_trainable
    from flowerlib.novelty import save_reference

    stale = [p for p in (run.layout.metrics, run.layout.per_class) if p.is_file()]
    for path in stale:
        path.unlink()
    if stale:
        _say(
            run.verbose,
            f"Removed the evaluation of the model this run replaces ({', '.join(p.name for p in stale)}); "
            "evaluate the new one in step 4.",
        )
    rows = run.table.drop_duplicates("label").sort_values("label")
    names = dict(zip(rows["label"].astype(int), rows["class_name"].astype(str), strict=True))
    write_json(run.layout.labels, [names.get(i, str(i)) for i in range(run.num_classes)])
    set_trainable(model, "head")
    save_model(model, run.layout.model)
    if reference is not None:
        save_reference(reference, run.layout.reference)
    else:
        run.layout.reference.unlink(missing_ok=True)
    write_json(run.layout.config, run.cfg.to_dict())
    info = dict(info or {})
    run.state.update(finished=run.fingerprint, info=info)
    run.save_state()
    resumed = any(v in ("resumed", "restored") for v in info.get("phases", {}).values())
    return TrainResult(model, run.history, run.layout, resumed=resumed, info=info)


def load_finished(run: Run) -> TrainResult:
    """The result of a finished run, loaded from its artifacts."""
    from flowerlib.model import load_model

    info = {**run.state.get("info", {}), "loaded": True}
    return TrainResult(load_model(run.layout.model), run.history, run.layout, resumed=True, info=info)


def train(
    cfg: Config,
    table: pd.DataFrame | None = None,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    restart: bool = False,
    verbose: int = 2,
) -> TrainResult:
    """Train the classifier of `cfg` in two phases and save it under `runs/<cfg.run>/`.

    Notebook 03 runs the same steps one cell at a time. A run that already
    finished with the same configuration and split is loaded, not retrained
    (it says so); an interrupted one continues where it stopped.

    Args:
        cfg: the configuration.
        table: the split table; default `flowerlib.splits.prepare_split(cfg)`.
        callbacks: extra Keras callbacks for both phases' `fit`.
        restart: discard any saved state of this run and start afresh.
        verbose: Keras `fit` verbosity (0 silent, 1 progress bar, 2 one line
            per epoch); with 0, the sentences about saved state are silent too.

    Returns:
        A `TrainResult` with the model, the history of both phases and the run layout.

    Raises:
        TrainError: the split has no train or no validation images.
        flowerlib.backbones.ModelConfigError: the model cannot be built as configured.
        flowerlib.locks.BusyError: another flowerlib process is using the data directory.
    """
    from flowerlib.backbones import resolve_weights
    from flowerlib.locks import data_dir_lock

    resolve_weights(cfg.weights)  # a mistyped setting fails before the folder is locked or read
    with data_dir_lock(cfg.data_dir, f"training run {cfg.run!r}"):
        return _train(cfg, table, callbacks=callbacks, restart=restart, verbose=verbose)


def _train(cfg, table, *, callbacks, restart, verbose) -> TrainResult:
    from flowerlib.cache import cached_features
    from flowerlib.model import (
        build_classifier,
        compile_for_phase,
        fine_tune_cut,
        loss_for,
        set_trainable,
        top_model,
        training_metrics,
    )
    from flowerlib.novelty import fit_reference, save_reference
    from flowerlib.pipeline import dataset_for
    from flowerlib.runtime import precision_policy, seed_everything, select_strategy, use_mixed_precision

    run = Run(cfg, table, restart=restart, verbose=verbose)
    if run.finished:
        try:
            result = load_finished(run)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            _say(
                verbose,
                f"Run {cfg.run!r} had finished, but its {run.layout.model} cannot be read ({type(e).__name__}); "
                "the phases are restored from their checkpoints and the model is written again.",
            )
        else:
            _say(
                verbose,
                f"Run {cfg.run!r} already finished with this configuration and split: its model is "
                f"loaded from {run.layout.model}, nothing is retrained (restart=True or --restart trains again).",
            )
            if not run.layout.reference.is_file():  # finished before training wrote one
                _say(
                    verbose,
                    f"It has no {run.layout.reference.name} (the unfamiliar-photo reference): computing it "
                    "from the training and validation images, one pass through the model.",
                )
                save_reference(fit_reference(*final_features(cfg, result.model, run)), run.layout.reference)
            return result
    seed_everything(cfg.seed)
    strategy = select_strategy(cfg)
    info: dict[str, Any] = {
        "strategy": type(strategy).__name__,
        "replicas": int(strategy.num_replicas_in_sync),
        "policy": "mixed_float16" if use_mixed_precision(cfg) else "float32",
        "phases": {},
    }

    @contextlib.contextmanager
    def scope():  # build and compile with the chosen precision and distribution strategy
        with precision_policy(cfg), strategy.scope():
            yield

    with scope():
        model = build_classifier(cfg, num_classes=run.num_classes)
    datasets = None
    train_f = val_f = None  # the cached features and maps, when cfg.cache_features

    def pipelines():
        nonlocal datasets
        if datasets is None:
            datasets = (dataset_for(cfg, run.table, "train"), dataset_for(cfg, run.table, "val"))
        return datasets

    # Phase 1: the head, on a frozen backbone.
    t0 = time.perf_counter()
    # Fine-tuning from cached feature maps needs them from the same extraction.
    cut = (
        fine_tune_cut(model, cfg.fine_tune_stages)
        if cfg.cache_features and cfg.fine_tune_epochs > 0
        else None
    )
    if cfg.cache_features:
        train_f = cached_features(cfg, model, run.table, "train", activations=cut, verbose=verbose > 0)
        val_f = cached_features(cfg, model, run.table, "val", views=0, activations=cut, verbose=verbose > 0)
        info.update(
            cache_hit=bool(train_f.from_cache and val_f.from_cache),
            extract_seconds=round(train_f.seconds + val_f.seconds, 2),
        )
        head = model.get_layer("head")
        with scope():
            head.compile(
                optimizer=keras.optimizers.Adam(cfg.head_learning_rate),
                loss=loss_for(cfg),
                metrics=training_metrics(),
                jit_compile=False,
            )
        t0 = time.perf_counter()
        seed_everything(cfg.seed)  # the same shuffling whether the features came from disk or not
        head_ckpt = fit_phase(
            head,
            run,
            "head",
            (train_f.features, train_f.labels),
            (val_f.features, val_f.labels),
            epochs=cfg.head_epochs,
            batch_size=cfg.batch_size,
            data=[train_f.key, val_f.key],
            callbacks=callbacks,
            verbose=verbose,
        )
    else:
        with scope():
            compile_for_phase(set_trainable(model, "head"), "head", cfg)
        head_ckpt = fit_phase(
            model, run, "head", *pipelines(), epochs=cfg.head_epochs, callbacks=callbacks, verbose=verbose
        )
    info["head_seconds"] = round(time.perf_counter() - t0, 2)
    info["phases"]["head"] = head_ckpt.outcome

    # Phase 2: fine-tune the last stages, BatchNorm frozen, low learning rate.
    if cfg.fine_tune_epochs > 0:
        head_weights = model.get_weights()
        t0 = time.perf_counter()
        with scope():
            set_trainable(model, "fine_tune", cfg.fine_tune_stages)
            # From the cached maps, only the unfrozen stages run (they share the classifier's weights).
            tuned = model if cut is None else top_model(model, cfg.fine_tune_stages)
            compile_for_phase(tuned, "fine_tune", cfg, steps_per_epoch=run.steps_per_epoch)
        seed_everything(cfg.seed)  # the same augmentation and dropout draws as notebook 03
        if cut is None:
            data, identity = pipelines(), None
        else:
            data = (
                CachedViews(train_f, cfg.batch_size, seed=cfg.seed, shift=int(cfg.augment)),
                CachedViews(val_f, cfg.batch_size, training=False),
            )
            identity = [train_f.activations_key, val_f.activations_key]
        fine_ckpt = fit_phase(
            tuned,
            run,
            "fine_tune",
            *data,
            epochs=cfg.fine_tune_epochs,
            data=identity,
            callbacks=callbacks,
            verbose=verbose,
        )
        info["fine_tune_seconds"] = round(time.perf_counter() - t0, 2)
        info["phases"]["fine_tune"] = fine_ckpt.outcome
        info["kept"] = (
            "head"
            if keep_better(model, head_weights, head_ckpt.history, fine_ckpt.history, verbose=verbose)
            else "fine_tune"
        )
    else:
        _say(verbose, "Fine-tuning is skipped: fine_tune_epochs=0.")
        if run.phase("fine_tune"):
            run.clear(["fine_tune"])

    # The final model's pooled features of the training and validation photos, from the cached maps
    # when there are some: through the head they give the validation probabilities the temperature is
    # fitted on, and they are the reference of the "unlike every training photo" warning.
    train_pooled, val_pooled = final_features(cfg, model, run, train_f, val_f, cut, verbose=verbose)
    if cfg.calibrate:  # make the confidence honest: one temperature, fitted on the validation images
        probs = model.get_layer("head").predict(val_pooled, batch_size=cfg.batch_size, verbose=0)
        info.update(calibrate(model, run, probs))
    reference = fit_reference(train_pooled, val_pooled)
    info["unfamiliar_distance"] = round(reference.threshold, 4)
    return save_run(run, model, info, reference)
