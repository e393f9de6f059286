"""Figures: synthetic results are marked as such once `set_style(synthetic=True)` was called."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

from flowerlib import plots


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.texts]


def history() -> pd.DataFrame:
    rows = [
        {"phase": p, "epoch": e, "loss": 1.0 / e, "accuracy": 0.5, "val_loss": 1.2 / e, "val_accuracy": 0.4}
        for p in ("head", "fine_tune")
        for e in (1, 2)
    ]
    return pd.DataFrame(rows)


def test_synthetic_figures_carry_a_mark_and_real_ones_do_not():
    try:
        plots.set_style(synthetic=True)
        marked = plots.learning_curves(history())
        assert any("synthetic data" in t for t in texts(marked))
        plots.set_style(synthetic=False)
        plain = plots.learning_curves(history())
        assert not any("synthetic" in t for t in texts(plain))
    finally:
        plots.set_style()
        plt.close("all")
