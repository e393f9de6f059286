"""flowerlib: transfer learning on Oxford Flowers-102, the machinery behind the notebooks.

Importing flowerlib defines things and does nothing else: no seeds are set, no
TensorFlow is imported until a function that needs it runs.

    >>> import flowerlib
    >>> cfg = flowerlib.Config.from_env()
    >>> flowerlib.predict(model, "photo.jpg", top_k=5)   # a small table of classes
"""

from typing import Any

from flowerlib.artifacts import Layout, RunLayout
from flowerlib.classes import CLASS_NAMES, class_names
from flowerlib.config import Config, ConfigError
from flowerlib.errors import FlowerlibError

__version__ = "0.1.0"

__all__ = [
    "CLASS_NAMES",
    "Config",
    "ConfigError",
    "FlowerlibError",
    "Layout",
    "PredictionError",
    "RunLayout",
    "__version__",
    "class_names",
    "predict",
]


def __getattr__(name: str) -> Any:
    # `flowerlib.predict` and `flowerlib.PredictionError` load flowerlib.prediction
    # (NumPy, pandas, Pillow) on first use, so `import flowerlib` stays instant.
    if name in ("predict", "PredictionError"):
        from flowerlib import prediction

        return getattr(prediction, name)
    raise AttributeError(f"module 'flowerlib' has no attribute {name!r}")
