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

    def table(view, box, familiar, p, crop_familiar=None):
        return pd.DataFrame(
            {
                "rank": [1, 2],
                "index": [0, 1],
                "name": ["rose", "lily"],
                "probability": [p, 1 - p],
                "view": view,
                "box": [box, box],
                "familiar": familiar,
                "crop_familiar": crop_familiar,
            }
        )

    images = [np.zeros((100, 150, 3)), np.zeros((80, 80, 3)), np.zeros((90, 90, 3))]
    tables = [
        table("closer", (10, 20, 40), True, 0.95, crop_familiar=False),
        table("whole", None, True, 0.9),
        table("closer", (0, 0, 50), False, 0.8, crop_familiar=True),
    ]
    try:
        fig = plots.plot_answers(images, tables, ["zoomed out", "as taken", "far away"])
        first, second, third = fig.axes[:3]
        (patch,) = [p for p in first.patches if isinstance(p, Rectangle)]
        assert (patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()) == (20, 10, 40, 40)
        assert not [p for p in second.patches if isinstance(p, Rectangle)]
        assert first.get_title().startswith("zoomed out\nNot sure; the whole photo and a closer")
        assert first.title.get_color() == "darkorange"
        assert second.get_title() == "as taken\nrose (90 %)" and second.title.get_color() == "darkgreen"
        # a familiar crop's answer may be sure: green, with its square outlined
        assert third.get_title().startswith("far away\nrose (80 %), after a closer look")
        assert third.title.get_color() == "darkgreen" and [
            p for p in third.patches if isinstance(p, Rectangle)
        ]
    finally:
        plt.close("all")
