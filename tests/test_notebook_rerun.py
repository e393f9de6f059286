"""Re-running notebook 03 after editing the head trains the edited head, and says so."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "03_train.ipynb"
HEAD_LINE = "head = build_head(num_classes, cfg.dropout)"


def run_notebook(nb: nbformat.NotebookNode) -> str:
    """Execute `nb` in a fresh kernel started in notebooks/; return all its text output."""
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


@pytest.mark.slow
def test_editing_the_head_and_rerunning_notebook_03_trains_the_edited_head(tmp_path, monkeypatch):
    from flowerlib import Config, download, splits
    from flowerlib.model import load_model

    for key in [k for k in os.environ if k.startswith("FLOWERS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FLOWERS_PROFILE", "smoke")
    monkeypatch.setenv("FLOWERS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    cfg = Config.from_env()
    download.fetch_dataset(cfg, progress=False)  # what notebooks 01 and 02 write
    splits.prepare_split(cfg)

    original = nbformat.read(NOTEBOOK, as_version=4)
    assert sum(HEAD_LINE in cell.source for cell in original.cells) == 1, (
        "the head cell changed: update this test"
    )
    first = run_notebook(original)
    assert "The head phase: no checkpoint to continue from; training from epoch 1." in first

    edited = nbformat.read(NOTEBOOK, as_version=4)
    for cell in edited.cells:
        cell.source = cell.source.replace(HEAD_LINE, "head = build_head(num_classes, 0.5)  # edited")
    second = run_notebook(edited)
    assert "The head phase: the checkpoint in" in second
    assert "was written for a different model architecture; it is discarded" in second
    assert "Fine-tuning: no checkpoint to continue from; training from epoch 1." in second
    saved = load_model(tmp_path / "runs" / cfg.run / "model.keras")
    assert saved.get_layer("head").get_layer("dropout").rate == 0.5  # the edited head was trained and saved
