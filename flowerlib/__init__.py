"""flowerlib: transfer learning on Oxford Flowers-102, the machinery behind the notebooks.

Importing flowerlib defines things and does nothing else: no seeds are set, no
TensorFlow is imported until a function that needs it runs.
"""

from flowerlib.artifacts import Layout, RunLayout
from flowerlib.classes import CLASS_NAMES, class_names
from flowerlib.config import Config, ConfigError

__version__ = "0.1.0"

__all__ = ["CLASS_NAMES", "Config", "ConfigError", "Layout", "RunLayout", "class_names", "__version__"]
