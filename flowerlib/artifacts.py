"""Where every stage reads and writes: the single place that knows the file names.

Layout of a data directory::

    data_dir/
      downloads/102flowers.tgz        the verified archive (kept for re-extraction)
      jpg/image_00001.jpg ...         the extracted images
      imagelabels.mat, setid.mat      labels and the official split
      dataset.json                    what flowerlib.download verified
      .flowerlib.lock                 held while a flowerlib process writes here (flowerlib.locks)
      splits/<split>.csv, <split>.json  split tables and their parameters (flowerlib.splits)
      cache/features-<key>.npz        cached backbone features (see flowerlib.cache)
      runs/<run>/                     one training run's artifacts:
        model.keras  config.json  history.csv  labels.json  metrics.json
        per_class.csv  checkpoints/  logs/

Writes are atomic: content goes to a temporary file in the same folder, which is
then renamed over the target, so a crash never leaves a half-written file that a
later run would trust.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowerlib.errors import FlowerlibError

ARCHIVE_NAME = "102flowers.tgz"
LABELS_NAME = "imagelabels.mat"
SETID_NAME = "setid.mat"


@dataclass(frozen=True)
class Layout:
    """Paths inside one data directory. Pure path arithmetic: touches no disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def archive(self) -> Path:
        return self.downloads / ARCHIVE_NAME

    @property
    def jpg_dir(self) -> Path:
        return self.root / "jpg"

    @property
    def labels_mat(self) -> Path:
        return self.root / LABELS_NAME

    @property
    def setid_mat(self) -> Path:
        return self.root / SETID_NAME

    @property
    def splits_dir(self) -> Path:
        return self.root / "splits"

    def split_csv(self, split: str) -> Path:
        return self.splits_dir / f"{split}.csv"

    def split_meta(self, split: str) -> Path:
        """Sidecar of a split CSV: its parameters and the dataset it was made from."""
        return self.splits_dir / f"{split}.json"

    @property
    def dataset_marker(self) -> Path:
        """JSON recording a complete, verified dataset (written by flowerlib.download)."""
        return self.root / "dataset.json"

    @property
    def lock(self) -> Path:
        """The lock file a process holds while it writes here (`flowerlib.locks`); never deleted."""
        return self.root / ".flowerlib.lock"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def feature_cache(self, key: str) -> Path:
        """Cached backbone features, named by the hash of what determines them."""
        return self.cache_dir / f"features-{key}.npz"

    def image_path(self, image_id: int) -> Path:
        return self.jpg_dir / image_file(image_id)

    def run(self, name: str) -> RunLayout:
        return RunLayout(self.root / "runs" / name)


@dataclass(frozen=True)
class RunLayout:
    """Paths of one training run's artifacts."""

    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model.keras"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def labels(self) -> Path:
        return self.root / "labels.json"

    @property
    def reference(self) -> Path:
        """The training photos' features for the "unlike every training photo" warning (`flowerlib.novelty`)."""
        return self.root / "reference.npz"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def per_class(self) -> Path:
        return self.root / "per_class.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def state(self) -> Path:
        """The resumable training state (which epochs are done, which weight files hold them)."""
        return self.checkpoints / "state.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def verified_marker(path: str | os.PathLike) -> Path:
    """The `<file>.verified` JSON beside a downloaded file (size, sha256, mtime)."""
    path = Path(path)
    return path.with_name(path.name + ".verified")


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (a 345 MB archive never sits in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def image_file(image_id: int) -> str:
    """Relative path of an image inside the data directory, e.g. `jpg/image_00001.jpg`."""
    return f"image_{int(image_id):05d}.jpg"


class DiskWriteError(FlowerlibError, OSError):
    """A file could not be written: no space left, a read-only folder, or no permission.

    Also an `OSError` with the original `errno`, so code that catches `OSError`
    still catches it.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


#: errno -> (the cause in words, what to do).
_DISK_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space"),
    errno.EROFS: ("the file system is read-only", "make it writable"),
    errno.EACCES: ("permission denied", "make it writable"),
    errno.EPERM: ("operation not permitted", "make it writable"),
}


def disk_write_error(error: OSError, target: str | os.PathLike) -> DiskWriteError | None:
    """A one-line `DiskWriteError` for a full, read-only or forbidden folder, else None.

    Args:
        error: what the write raised.
        target: the file (or folder) that was being written.

    Returns:
        The error to raise instead of `error` (`raise ... from error`), or None
        when `error` is another kind of failure.
    """
    if isinstance(error, DiskWriteError):
        return error
    if error.errno not in _DISK_ERRORS:
        return None
    cause, fix = _DISK_ERRORS[error.errno]
    target = Path(target)
    folder = target if target.is_dir() else target.parent
    result = DiskWriteError(
        f"Cannot write {target.name} in {folder}: {cause}. {fix.capitalize()} there, or choose another "
        "data directory (--data-dir / FLOWERS_DATA_DIR), then run the same command again."
    )
    result.errno = error.errno
    result.filename = str(target)
    return result


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside `target`; rename it onto `target` on success.

    On an exception the temporary file (or folder) is removed and `target` is
    untouched; a failure of that cleanup never hides the original error. The
    temporary name ends with `target`'s suffix, because some writers (Keras's
    `model.save`) pick the format by it.

    Raises:
        DiskWriteError: no space left, a read-only folder or no permission
            (while creating the folder, writing or renaming), in one line that
            names the folder and the cause.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if (error := disk_write_error(e, target)) is not None:
            raise error from e
        raise
    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):  # a read-only folder may refuse this too
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and (error := disk_write_error(e, target)) is not None:
            raise error from e
        raise


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Atomically write `text` (UTF-8) to `target`.

    Raises:
        DiskWriteError: the folder is full, read-only or not writable.
    """
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | os.PathLike, data: Any) -> Path:
    """Atomically write `data` as indented JSON (`DiskWriteError` as `write_text`)."""
    return write_text(target, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON, with an error that names the file when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path} is not valid JSON ({e}). Delete it and re-run the step that writes it."
        ) from None


RUN_COLUMNS = (
    "run",
    "backbone",
    "image_size",
    "split",
    "seed",
    "dropout",
    "fine_tune_epochs",
    "fine_tune_learning_rate",
)


def runs_table(data_dir: str | os.PathLike) -> Any:
    """The runs of a data directory side by side: settings, best validation accuracy, test metrics.

    Read from each `runs/<run>/` folder's `config.json`, `history.csv` and
    `metrics.json`; a missing or unreadable file leaves its columns empty and is
    named in the `note` column.

    Returns:
        A `pandas.DataFrame`, one row per run, sorted by name (empty when there are none).
    """
    import pandas as pd

    rows = []
    root = Path(data_dir) / "runs"
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        run = RunLayout(folder)
        row: dict[str, Any] = {"run": folder.name}
        notes = []
        try:
            config = read_json(run.config)
            row.update({k: config.get(k) for k in RUN_COLUMNS[1:]})
        except (OSError, ValueError) as e:
            notes.append("no config.json" if isinstance(e, FileNotFoundError) else "config.json unreadable")
        try:
            history = pd.read_csv(run.history)
            row["best_val_accuracy"] = float(history["val_accuracy"].max())
        except (OSError, ValueError, KeyError, pd.errors.ParserError):
            notes.append("no training history")
        try:
            metrics = read_json(run.metrics)
            row.update({f"test_{k}": metrics.get(k) for k in ("top1", "top5", "ece")})
        except FileNotFoundError:
            notes.append("not evaluated")
        except (OSError, ValueError):
            notes.append("metrics.json unreadable")
        row["note"] = "; ".join(notes)
        rows.append(row)
    return pd.DataFrame(rows)
