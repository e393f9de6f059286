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


def test_plot_answers_outlines_the_crop_a_look_closer_answer_came_from():
    import numpy as np
    from matplotlib.patches import Rectangle

    def table(view, box, familiar, p):
        return pd.DataFrame(
            {
                "rank": [1, 2],
                "index": [0, 1],
                "name": ["rose", "lily"],
                "probability": [p, 1 - p],
                "view": view,
                "box": [box, box],
                "familiar": familiar,
            }
        )

    images = [np.zeros((100, 150, 3)), np.zeros((80, 80, 3))]
    tables = [table("closer", (10, 20, 40), True, 0.95), table("whole", None, True, 0.9)]
    try:
        fig = plots.plot_answers(images, tables, ["zoomed out", "as taken"])
        first, second = fig.axes[:2]
        (patch,) = [p for p in first.patches if isinstance(p, Rectangle)]
        assert (patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()) == (20, 10, 40, 40)
        assert not [p for p in second.patches if isinstance(p, Rectangle)]
        assert first.get_title().startswith("zoomed out\nNot sure; looking closer")
        assert second.get_title() == "as taken\nrose (90 %)" and second.title.get_color() == "darkgreen"
    finally:
        plt.close("all")
