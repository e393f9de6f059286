"""Training in two phases, resumable, with every artifact written atomically.

1. Head: the backbone is frozen and only the new head learns. Fast path
   (`cfg.cache_features`, the default): the frozen backbone's pooled features
   are computed once per image (`flowerlib.cache`) and the head is trained on
   them, then copied into the full model. Plain path: the frozen backbone runs
   inside `model.fit` on augmented images every epoch.
2. Fine-tuning (`cfg.fine_tune_epochs > 0`): the last `cfg.fine_tune_stages`
   stages of the backbone are unfrozen (BatchNorm stays frozen), the model is
   recompiled with the low `cfg.fine_tune_learning_rate` on a cosine schedule,
   and trained on augmented images.

Both phases stop early on the validation loss and keep the best epoch's weights.

Resuming. After every epoch the run's state is checkpointed under
`runs/<run>/checkpoints/` (weights with the optimizer's state, the
early-stopping state, the history so far), each file written atomically and
`state.json` last, so the files always agree. Calling `train(cfg)` again with
the same configuration and split after a crash or Ctrl-C continues after the
last completed epoch; a finished phase is not redone, and a finished run is
simply loaded. With a *different* configuration (or split table), the old
state does not apply: it is discarded with a warning and training starts
afresh (`restart=True` forces that).

Artifacts (`flowerlib.artifacts.RunLayout`): `model.keras`, `config.json`,
`history.csv` (one row per epoch, with a `phase` column), `labels.json`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from flowerlib.artifacts import Layout, RunLayout, atomic_path, read_json, write_json, write_text

if TYPE_CHECKING:
    import pandas as pd

    from flowerlib.config import Config

STATE_VERSION = 1
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
# Settings that do not change what is trained: a run may resume across them.
_NOT_IN_FINGERPRINT = ("data_dir", "source", "mirror", "tensorboard", "jit_compile")


class TrainError(RuntimeError):
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
            `fine_tune_seconds`, `policy`, `strategy`, `replicas`; with
            `cfg.calibrate`, `temperature` and the validation log loss and
            calibration error before and after it).
    """

    model: keras.Model
    history: pd.DataFrame
    run: RunLayout
    resumed: bool = False
    info: dict[str, Any] = field(default_factory=dict)


# --- run state ------------------------------------------------------------------


def run_fingerprint(cfg: Config, table: pd.DataFrame) -> str:
    """Hash of everything that determines a run: the configuration (minus paths
    and logging switches) and the split table."""
    from flowerlib.cache import table_fingerprint

    settings = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_IN_FINGERPRINT}
    payload = json.dumps(
        {
            "version": STATE_VERSION,
            "config": settings,
            "extra": cfg.extra,
            "table": table_fingerprint(table),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class RunState:
    """The resumable state of one run: `checkpoints/state.json` plus the weight files it names."""

    def __init__(self, run: RunLayout, fingerprint: str):
        self.run = run
        self.dir = run.checkpoints
        self.path = run.state
        self.fingerprint = fingerprint
        self.data: dict[str, Any] = {"fingerprint": fingerprint, "phases": {}, "history": [], "done": False}

    @classmethod
    def open(cls, run: RunLayout, fingerprint: str, *, restart: bool = False) -> tuple[RunState, bool]:
        """Load the state of `run` if it belongs to `fingerprint`, else start fresh.

        Returns:
            `(state, resumed)`.
        """
        state = cls(run, fingerprint)
        if restart:
            state.clear()
            return state, False
        if not state.path.is_file():
            if run.history.exists() or state.dir.exists():
                state.clear()  # leftovers of a run that never completed an epoch
            return state, False
        try:
            stored = read_json(state.path)
        except ValueError:
            stored = {}
        if stored.get("fingerprint") != fingerprint:
            warnings.warn(
                f"The run folder {run.root} holds state of a run with another configuration or split; "
                "it is discarded and training starts afresh. (Set run_name to keep runs apart.)",
                stacklevel=3,
            )
            state.clear()
            return state, False
        state.data = stored
        return state, True

    def clear(self) -> None:
        """Forget everything: checkpoints and history."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.run.history.unlink(missing_ok=True)
        self.data = {"fingerprint": self.fingerprint, "phases": {}, "history": [], "done": False}

    def phase(self, name: str) -> dict[str, Any]:
        return self.data["phases"].setdefault(name, {"epoch": 0, "done": False})

    def file(self, name: str) -> Path:
        return self.dir / name

    def rows(self, phase: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.data["history"] if phase is None or r["phase"] == phase]

    def save(self) -> None:
        """Write `state.json` and `history.csv` atomically (the weight files are written before)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.data)
        write_history(self.run.history, self.data["history"])

    def remove_except(self, keep: Sequence[str]) -> None:
        """Delete weight files of this state that are no longer referenced."""
        for p in self.dir.glob("*.weights.h5"):
            if p.name not in keep:
                p.unlink(missing_ok=True)
        for p in self.dir.glob("*.npz"):
            if p.name not in keep:
                p.unlink(missing_ok=True)

    def referenced(self) -> list[str]:
        names = []
        for ph in self.data["phases"].values():
            names += [v for k, v in ph.items() if k.endswith("_file") and v]
        return names


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the history rows as CSV, atomically."""

    table = history_frame(rows)
    write_text(path, table.to_csv(index=False))


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


def _save_weights(model: keras.Model, path: Path) -> None:
    """`model.save_weights` (weights and optimizer state), atomically."""
    # Keras insists on a `.weights.h5` ending, which atomic_path's temporary names lack.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex[:8]}.tmp.weights.h5")
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _save_arrays(arrays: list[np.ndarray], path: Path) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, *arrays)


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


# --- the per-epoch checkpoint ------------------------------------------------------


def _learning_rate(model: keras.Model) -> float:
    opt = model.optimizer
    lr = getattr(opt, "learning_rate", None)
    try:
        return float(np.asarray(lr))
    except (TypeError, ValueError):
        return float("nan")


class PhaseCheckpoint(keras.callbacks.Callback):
    """At the end of every epoch: history row, latest and best weights, early-stopping state.

    Files are written atomically, weights first and `state.json` last, so the
    state never names a file that is not complete. Place it right after the
    `EarlyStopping` callback it mirrors: on a resumed run it puts that
    callback's counters and best weights back, so patience and "restore the
    best weights" carry across the interruption.

    Args:
        state: the run's state.
        phase: `"head"` or `"fine_tune"`.
        early_stopping: the phase's `EarlyStopping` callback.
    """

    def __init__(self, state: RunState, phase: str, early_stopping: keras.callbacks.EarlyStopping):
        super().__init__()
        self.state = state
        self.phase_name = phase
        self.es = early_stopping
        self._t0 = 0.0

    def on_train_begin(self, logs=None):
        ph = self.state.phase(self.phase_name)
        if ph.get("best_file"):
            self.es.best = ph["es_best"]
            self.es.best_epoch = ph["es_best_epoch"]
            self.es.wait = ph["es_wait"]
            self.es.best_weights = _load_arrays(self.state.file(ph["best_file"]))

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        ph = self.state.phase(self.phase_name)
        row: dict[str, Any] = {"phase": self.phase_name, "epoch": epoch + 1}
        row.update({k: float(v) for k, v in logs.items() if np.ndim(v) == 0})
        row["learning_rate"] = _learning_rate(self.model)
        row["seconds"] = round(time.perf_counter() - self._t0, 3)
        latest = f"{self.phase_name}-latest-{epoch + 1:04d}.weights.h5"
        _save_weights(self.model, self.state.file(latest))
        if self.es.best_epoch == epoch and self.es.best_weights is not None:
            best = f"{self.phase_name}-best-{epoch + 1:04d}.npz"
            _save_arrays(self.es.best_weights, self.state.file(best))
            ph["best_file"] = best
        ph.update(
            epoch=epoch + 1,
            latest_file=latest,
            es_best=None if self.es.best is None else float(self.es.best),
            es_best_epoch=int(self.es.best_epoch),
            es_wait=int(self.es.wait),
            stopped=bool(self.model.stop_training),
        )
        history = [
            r
            for r in self.state.data["history"]
            if not (r["phase"] == self.phase_name and r["epoch"] > epoch)
        ]
        self.state.data["history"] = [*history, row]
        self.state.save()
        self.state.remove_except(self.state.referenced())


# --- the phases ---------------------------------------------------------------


def _fit_phase(
    model: keras.Model,
    state: RunState,
    phase: str,
    cfg: Config,
    train_data: Any,
    val_data: Any,
    *,
    epochs: int,
    batch_size: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 2,
) -> None:
    """`model.fit` for one phase, resuming from the state's checkpoint (in place)."""
    ph = state.phase(phase)
    es = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    initial_epoch = int(ph.get("epoch", 0))
    if ph.get("latest_file"):
        model.optimizer.build(model.trainable_variables)
        model.load_weights(state.file(ph["latest_file"]))
    if ph.get("stopped") or initial_epoch >= epochs:
        if ph.get("best_file"):  # the phase had ended; only its bookkeeping was missing
            model.set_weights(_load_arrays(state.file(ph["best_file"])))
        return
    all_callbacks = [es, PhaseCheckpoint(state, phase, es)]
    if cfg.tensorboard:
        all_callbacks.append(keras.callbacks.TensorBoard(log_dir=str(state.run.logs / phase)))
    all_callbacks += list(callbacks)
    if isinstance(train_data, tuple):
        x, y = train_data
        model.fit(
            x,
            y,
            validation_data=val_data,
            epochs=epochs,
            initial_epoch=initial_epoch,
            batch_size=batch_size,
            shuffle=True,
            callbacks=all_callbacks,
            verbose=verbose,
        )
    else:
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            initial_epoch=initial_epoch,
            shuffle=False,  # the training pipeline shuffles (seeded) by itself
            callbacks=all_callbacks,
            verbose=verbose,
        )
    if phase == "fine_tune":
        keep_head_unless_fine_tuning_helped(model, state)


def keep_head_unless_fine_tuning_helped(model: keras.Model, state: RunState) -> bool:
    """After fine-tuning, fall back to the head phase's weights if no epoch beat them.

    Early stopping restores the best *fine-tuning* epoch, which can still be
    worse on validation loss than where fine-tuning started. Both phases are
    scored on the same validation images without augmentation, so their
    validation losses compare directly.

    Returns:
        True when the head phase's weights were restored.
    """
    head = state.data["phases"].get("head", {})
    head_rows, fine_rows = state.rows("head"), state.rows("fine_tune")
    if not (head.get("done_file") and head_rows and fine_rows):
        return False
    best_head = min(float(r["val_loss"]) for r in head_rows)
    best_fine = min(float(r["val_loss"]) for r in fine_rows)
    if best_fine < best_head:
        return False
    warnings.warn(
        f"Fine-tuning did not improve the validation loss (best {best_fine:.4f} against "
        f"{best_head:.4f} after the head phase): the model keeps the head phase's weights. "
        "Try more epochs, another learning rate or more stages (fine_tune_*).",
        stacklevel=3,
    )
    model.set_weights(_load_arrays(state.file(head["done_file"])))
    return True


class TrainingRun:
    """The bookkeeping of one training run, so the lesson can stay in plain Keras.

    It seeds everything, reads the split, finds or discards earlier state of
    the run, picks the distribution strategy and precision, supplies the cached
    features and the datasets, runs `fit` with early stopping, per-epoch
    checkpoints and resumption, and writes the artifacts. What is *trained*
    (freezing, building the head, compiling with which learning rate) is up to
    the caller: `train` below, or notebook 03, which spells it out.

        run = TrainingRun(cfg)
        model = run.build_model()                       # backbone frozen
        ...compile the head..., run.fit(head, "head", ...); attach_head(model, head)
        run.end_phase(model, "head")
        ...unfreeze, recompile with a low rate..., run.fit(model, "fine_tune", ...)
        run.end_phase(model, "fine_tune")
        result = run.save(model)

    Args:
        cfg: the configuration.
        table: the split table; default `flowerlib.splits.prepare_split(cfg)`.
        callbacks: extra Keras callbacks for every `fit`.
        restart: discard saved state of this run and start afresh.
        verbose: Keras `fit` verbosity (0 silent, 1 progress bar, 2 a line per epoch).

    Raises:
        TrainError: the split has no train or no validation images.
    """

    def __init__(
        self,
        cfg: Config,
        table: pd.DataFrame | None = None,
        *,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        restart: bool = False,
        verbose: int = 2,
    ):
        from flowerlib.runtime import seed_everything, select_strategy, use_mixed_precision

        seed_everything(cfg.seed)
        if table is None:
            from flowerlib.splits import prepare_split

            table = prepare_split(cfg)
        for part in ("train", "val"):
            if not (table["split"] == part).any():
                raise TrainError(
                    f"The split table has no {part!r} images; training needs both train and val. "
                    f"Parts present: {sorted(set(table['split']))}"
                )
        if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise TrainError(
                "tensorboard=True needs the TensorBoard package, which is not installed: "
                "pip install tensorboard (or set FLOWERS_TENSORBOARD=false)."
            )
        self.cfg = cfg
        self.table = table
        self.callbacks = list(callbacks)
        self.verbose = verbose
        self.num_classes = max(cfg.num_classes, int(table["label"].max()) + 1)
        self.layout = Layout(cfg.data_dir).run(cfg.run)
        self.state, self.resumed = RunState.open(self.layout, run_fingerprint(cfg, table), restart=restart)
        self.strategy = select_strategy(cfg)
        self.info: dict[str, Any] = {
            "strategy": type(self.strategy).__name__,
            "replicas": int(self.strategy.num_replicas_in_sync),
            "policy": "mixed_float16" if use_mixed_precision(cfg) else "float32",
        }
        self._datasets: tuple[Any, Any] | None = None

    # -- what the caller asks ------------------------------------------------

    @property
    def finished(self) -> bool:
        """True when this run already completed (same configuration and split) and its model exists."""
        return bool(self.state.data.get("done")) and self.layout.model.is_file()

    def is_done(self, phase: str) -> bool:
        """True when `phase` was completed (now or by an earlier, interrupted session)."""
        return bool(self.state.phase(phase).get("done"))

    @property
    def history(self) -> pd.DataFrame:
        """The history so far, both phases."""
        return history_frame(self.state.rows())

    @property
    def steps_per_epoch(self) -> int:
        """Training batches per epoch."""
        return math.ceil(int((self.table["split"] == "train").sum()) / self.cfg.batch_size)

    @contextlib.contextmanager
    def scope(self):
        """Build and compile models inside: the chosen precision policy and distribution strategy."""
        from flowerlib.runtime import precision_policy

        with precision_policy(self.cfg), self.strategy.scope():
            yield

    def build_model(self) -> keras.Model:
        """`flowerlib.model.build_classifier` for this run, inside `scope()`; the backbone starts frozen."""
        from flowerlib.model import build_classifier

        with self.scope():
            return build_classifier(self.cfg, num_classes=self.num_classes)

    def features(self, model: keras.Model):
        """Cached pooled features of the train part (with augmented views) and the val part.

        Returns:
            `(train, val)` `flowerlib.cache.FeatureSet`s.
        """
        from flowerlib.cache import cached_features

        train_f = cached_features(self.cfg, model, self.table, "train", verbose=self.verbose > 0)
        val_f = cached_features(self.cfg, model, self.table, "val", views=0, verbose=self.verbose > 0)
        self.info["cache_hit"] = bool(train_f.from_cache and val_f.from_cache)
        self.info["extract_seconds"] = round(train_f.seconds + val_f.seconds, 2)
        self.info["cache_files"] = [str(train_f.path), str(val_f.path)]
        return train_f, val_f

    def datasets(self):
        """`(train, val)` `tf.data` pipelines (train shuffled and augmented)."""
        if self._datasets is None:
            from flowerlib.pipeline import dataset_for

            self._datasets = (
                dataset_for(self.cfg, self.table, "train"),
                dataset_for(self.cfg, self.table, "val"),
            )
        return self._datasets

    def fit(
        self,
        model: keras.Model,
        phase: str,
        train_data: Any,
        val_data: Any,
        *,
        epochs: int,
        batch_size: int | None = None,
    ) -> pd.DataFrame:
        """`model.fit` with early stopping, per-epoch checkpoints and resumption.

        Continues after the last completed epoch of `phase` when an earlier
        session was interrupted; does nothing when `phase` is already done (then
        `end_phase` restores its result).

        Args:
            model: a compiled model.
            phase: `"head"` or `"fine_tune"`.
            train_data: a `tf.data.Dataset`, or `(x, y)` arrays (cached features).
            val_data: likewise, for validation.
            epochs: epochs of the phase.
            batch_size: for arrays only.

        Returns:
            This phase's history.
        """
        if phase not in ("head", "fine_tune"):
            raise ValueError(f"phase must be 'head' or 'fine_tune'. Received phase={phase!r}")
        t0 = time.perf_counter()
        if not self.is_done(phase):
            _fit_phase(
                model,
                self.state,
                phase,
                self.cfg,
                train_data,
                val_data,
                epochs=epochs,
                batch_size=batch_size,
                callbacks=self.callbacks,
                verbose=self.verbose,
            )
        self.info[f"{phase}_seconds"] = round(
            self.info.get(f"{phase}_seconds", 0) + time.perf_counter() - t0, 2
        )
        return history_frame(self.state.rows(phase))

    def end_phase(self, model: keras.Model, phase: str) -> None:
        """Close a phase: record the weights it ended with; if an earlier session did, restore them."""
        ph = self.state.phase(phase)
        if ph.get("done"):
            model.set_weights(_load_arrays(self.state.file(ph["done_file"])))
            return
        done_file = f"{phase}-done.npz"
        _save_arrays(model.get_weights(), self.state.file(done_file))
        ph.update(done=True, done_file=done_file, latest_file=None, best_file=None)
        self.state.save()
        self.state.remove_except(self.state.referenced())

    def calibrate(self, model: keras.Model) -> float:
        """Fit a temperature on the validation images and build it into the model (in place).

        Label smoothing leaves the model underconfident (with 102 classes its
        confidence averaged far below its accuracy); dividing the logits by the
        temperature that minimises the validation log loss fixes that without
        changing any prediction (`flowerlib.calibration`). The validation images
        already chose the best epoch; one more number fitted on them leaves the
        test images untouched.

        Returns:
            The temperature (1.0: nothing changed). Also in `info["temperature"]`,
            with the validation log loss and calibration error before and after.
        """
        from flowerlib.calibration import apply_temperature, fit_temperature, scale_probabilities
        from flowerlib.evaluate import compute_metrics
        from flowerlib.pipeline import dataset_for

        val = dataset_for(self.cfg, self.table, "val", training=False)
        probs = model.predict(val, verbose=0)
        labels = self.table.loc[self.table["split"] == "val", "label"].to_numpy(dtype=np.int64)
        t = fit_temperature(probs, labels)
        apply_temperature(model, t)
        before, after = compute_metrics(labels, probs), compute_metrics(labels, scale_probabilities(probs, t))
        self.info.update(
            temperature=round(t, 4),
            val_log_loss_before=round(before["log_loss"], 4),
            val_log_loss_after=round(after["log_loss"], 4),
            val_ece_before=round(before["ece"], 4),
            val_ece_after=round(after["ece"], 4),
        )
        return t

    def load_finished(self) -> TrainResult:
        """The result of a finished run, loaded from its artifacts."""
        from flowerlib.model import load_model

        info = {**self.state.data.get("info", {}), "loaded": True}
        return TrainResult(load_model(self.layout.model), self.history, self.layout, resumed=True, info=info)

    def save(self, model: keras.Model) -> TrainResult:
        """Write the artifacts (labels, history, model, config), then mark the run done.

        The saved model has its backbone frozen (phase `"head"`): fine-tuning it
        further is a deliberate `set_trainable` away.
        """
        from flowerlib.model import save_model, set_trainable

        rows = self.table.drop_duplicates("label").sort_values("label")
        names = dict(zip(rows["label"].astype(int), rows["class_name"].astype(str), strict=True))
        write_json(self.layout.labels, [names.get(i, str(i)) for i in range(self.num_classes)])
        set_trainable(model, "head")
        save_model(model, self.layout.model)
        write_json(self.layout.config, self.cfg.to_dict())
        self.state.data.update(done=True, info=self.info)
        self.state.save()
        return TrainResult(model, self.history, self.layout, resumed=self.resumed, info=dict(self.info))


def train(
    cfg: Config,
    table: pd.DataFrame | None = None,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    restart: bool = False,
    verbose: int = 2,
) -> TrainResult:
    """Train the classifier of `cfg` in two phases and save it under `runs/<cfg.run>/`.

    Notebook 03 runs the same steps one cell at a time.

    Args:
        cfg: the configuration.
        table: the split table; default `flowerlib.splits.prepare_split(cfg)`.
        callbacks: extra Keras callbacks for both phases' `fit` (the head
            phase's on cached features too).
        restart: discard any saved state of this run and start afresh.
        verbose: Keras `fit` verbosity (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
        A `TrainResult` with the model, the history of both phases and the run layout.

    Raises:
        TrainError: the split has no train or no validation images.
        flowerlib.backbones.ModelConfigError: the model cannot be built as configured.
    """
    from flowerlib.model import attach_head, compile_for_phase, head_model, loss_for, set_trainable
    from flowerlib.runtime import seed_everything

    run = TrainingRun(cfg, table, callbacks=callbacks, restart=restart, verbose=verbose)
    if run.finished:
        return run.load_finished()
    model = run.build_model()

    # Phase 1: the head, on a frozen backbone.
    if cfg.cache_features:
        if not run.is_done("head"):
            train_f, val_f = run.features(model)
            seed_everything(cfg.seed)  # the same head whether the features came from disk or not
            with run.scope():
                head = head_model(train_f.features.shape[1], run.num_classes, cfg.dropout)
                head.compile(
                    optimizer=keras.optimizers.Adam(cfg.head_learning_rate),
                    loss=loss_for(cfg),
                    metrics=["accuracy"],
                    jit_compile=False,
                )
            run.fit(
                head,
                "head",
                (train_f.features, train_f.labels),
                (val_f.features, val_f.labels),
                epochs=cfg.head_epochs,
                batch_size=cfg.batch_size,
            )
            attach_head(model, head)
    else:
        with run.scope():
            compile_for_phase(set_trainable(model, "head"), "head", cfg)
        run.fit(model, "head", *run.datasets(), epochs=cfg.head_epochs)
    run.end_phase(model, "head")

    # Phase 2: fine-tune the last stages, BatchNorm frozen, low learning rate.
    if cfg.fine_tune_epochs > 0:
        with run.scope():
            set_trainable(model, "fine_tune", cfg.fine_tune_stages)
            compile_for_phase(model, "fine_tune", cfg, steps_per_epoch=run.steps_per_epoch)
        run.fit(model, "fine_tune", *run.datasets(), epochs=cfg.fine_tune_epochs)
        run.end_phase(model, "fine_tune")

    # Make the confidence honest: one temperature, fitted on the validation images.
    if cfg.calibrate:
        run.calibrate(model)
    return run.save(model)
