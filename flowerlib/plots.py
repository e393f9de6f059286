"""Every figure of the project, one function each, returning the matplotlib Figure.

Importing this module does not change matplotlib's global state; call
`set_style()` once (the notebooks do) for the project's plot defaults.
"""

from __future__ import annotations

import matplotlib.pyplot as plt


def set_style() -> None:
    """Project-wide plot defaults; an explicit call, never done at import."""
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
        }
    )


# --- step 1: download (sample grid, images per class) ---------------------


# --- step 2: prepare (class counts per split, augmented views) ------------


# --- step 3: train (learning curves) ---------------------------------------


# --- step 4: evaluate (confusion matrix, galleries, reliability, Grad-CAM) --
