"""One flowerlib process at a time per data directory: a file lock and a clear "busy" error.

Two processes writing into one data directory (two downloads, two trainings of
one run) delete each other's temporary files. Every step that writes there
holds `data_dir_lock` while it does::

    with data_dir_lock(cfg.data_dir, "downloading the dataset"):
        ...

A second process waits up to `timeout` seconds, then gets a `BusyError` (one
line: the folder, what it tried to do, what to do). The lock is an operating-
system lock (`filelock`, `fcntl.flock` on Linux and macOS): it is released when
its process ends, even by `kill -9`, so a lock file left behind never blocks
anyone and is never deleted. Within one process the lock is re-entrant, so a
step holding it may call another step that takes it too (training may call
`fetch_dataset`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from flowerlib.artifacts import Layout, disk_write_error
from flowerlib.errors import FlowerlibError

DEFAULT_TIMEOUT = 10.0  # seconds a second process waits before it says the folder is busy


class BusyError(FlowerlibError, RuntimeError):
    """Another flowerlib process holds the data directory's lock."""


@contextlib.contextmanager
def data_dir_lock(
    data_dir: str | os.PathLike, what: str, timeout: float | None = DEFAULT_TIMEOUT
) -> Iterator[Path]:
    """Hold the data directory's lock (`Layout.lock`) for a step that writes there.

    The folder is created if needed. Re-entrant within one thread of one
    process; released on exit, and by the operating system if the process dies.

    Args:
        data_dir: the data directory (`cfg.data_dir`).
        what: the step, in words, for the message (`"downloading the dataset"`,
            `"training run 'default'"`).
        timeout: seconds to wait for another process to finish; `None` waits
            forever, 0 fails at once.

    Yields:
        The lock file's path.

    Raises:
        BusyError: another process still holds the lock after `timeout` seconds.
        DiskWriteError: the lock file cannot be created (a read-only, full
            or forbidden folder; `flowerlib.artifacts.disk_write_error`).
    """
    import filelock

    layout = Layout(data_dir)
    path = layout.lock
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(path, is_singleton=True)
        lock.acquire(timeout=-1 if timeout is None else timeout)
    except filelock.Timeout:
        raise BusyError(
            f"{layout.root} is busy: another flowerlib process is working there (it holds {path.name}), "
            f"so this one cannot start {what}. Wait until it finishes and run again, or use another "
            "FLOWERS_DATA_DIR."
        ) from None
    except OSError as e:
        if (error := disk_write_error(e, path)) is not None:
            raise error from None
        raise
    try:
        yield path
    finally:
        lock.release()


__all__ = ["DEFAULT_TIMEOUT", "BusyError", "data_dir_lock"]
