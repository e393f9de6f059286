"""The machine side of training: seeds, log noise, devices, precision, strategy, XLA.

Nothing here runs at import. The notebooks and `flowerlib.train` call
`seed_everything(cfg.seed)` (one seed for Python, NumPy and TensorFlow) and
`quiet_tensorflow()` explicitly; the other functions turn a `Config`'s `"auto"`
choices into decisions for the machine at hand:

- mixed precision: `"auto"` is `mixed_float16` on a GPU and off on a CPU
  (bfloat16 on a CPU made training slower, not faster);
- distribution: `"auto"` is `tf.distribute.MirroredStrategy` with more than one
  GPU and the default strategy otherwise;
- XLA: `"auto"` compiles nothing: on the development CPU, XLA-compiled
  extraction was slower than uncompiled and training no faster (measured in
  `benchmarks/RESULTS.md`). `"on"` forces it, for machines where it helps.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

    from flowerlib.config import Config


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy and TensorFlow/Keras with one number.

    With the same seed and data, the split is the same and, on a CPU, so is the
    trained head.

    Args:
        seed: non-negative integer, usually `cfg.seed`.

    Raises:
        ValueError: `seed` is negative or not an integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received seed={seed!r}")
    import keras

    keras.utils.set_random_seed(seed)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's start-up and info chatter (C++ logs, absl, Python logger).

    Call it before the first TensorFlow import for the full effect; later calls
    still quiet the Python-side loggers. Errors are always shown.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def gpu_count() -> int:
    """Number of GPUs TensorFlow can see."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def device_summary() -> str:
    """One line describing the accelerators in use, e.g. `"CPU only (2 logical devices)"`."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return f"{len(gpus)} GPU(s): " + ", ".join(d.name for d in gpus)
    cpus = tf.config.list_logical_devices("CPU")
    return f"CPU only ({len(cpus)} logical device{'s' if len(cpus) != 1 else ''})"


def use_mixed_precision(cfg: Config) -> bool:
    """Whether `cfg.mixed_precision` means float16 compute here (`"auto"`: only with a GPU)."""
    if cfg.mixed_precision == "on":
        return True
    if cfg.mixed_precision == "off":
        return False
    return gpu_count() > 0


@contextlib.contextmanager
def precision_policy(cfg: Config) -> Iterator[str]:
    """Context in which Keras builds layers with the precision `cfg` asks for.

    Sets Keras's global dtype policy to `"mixed_float16"` or `"float32"` and
    puts the previous one back on exit, so nothing leaks into later code. The
    layers built inside keep their policy (the classifier's last layer is
    always float32, for a numerically stable softmax).

    Yields:
        The policy name in force.
    """
    import keras

    name = "mixed_float16" if use_mixed_precision(cfg) else "float32"
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(previous)


def use_jit(cfg: Config) -> bool:
    """Whether to XLA-compile under `cfg.jit_compile` (feature extraction and `model.fit` alike).

    `"auto"` compiles nothing: on the development CPU, XLA was slower for
    extraction (plus a compilation per pass) and no faster for training; the
    numbers are in `benchmarks/RESULTS.md`. `"on"` and `"off"` force the choice.

    Args:
        cfg: the configuration.
    """
    return cfg.jit_compile == "on"


def select_strategy(cfg: Config) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy for `cfg.strategy`.

    - `"auto"`: `MirroredStrategy` over all GPUs when there are two or more,
      else the default (single-device) strategy.
    - `"mirrored"`: `MirroredStrategy` over all GPUs, or over all logical CPU
      devices when there is no GPU (how the tests exercise this path: they
      split the CPU into two logical devices before TensorFlow starts).
    - `"default"`: the default strategy.

    Build and compile the model inside `strategy.scope()`.
    """
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if cfg.strategy == "default" or (cfg.strategy == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices=devices)


def split_cpu(n: int = 2) -> None:
    """Split the CPU into `n` logical devices (to exercise multi-device code without GPUs).

    Must run before TensorFlow initialises its devices (first op or device query).

    Raises:
        RuntimeError: TensorFlow has already initialised its devices.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as e:
        raise RuntimeError(
            f"split_cpu({n}) must run before TensorFlow initialises its devices; "
            f"call it first thing in a fresh process. ({e})"
        ) from None
