"""The exercise solutions in docs/solutions/ run as written and keep saying what is true.

Each `docs/solutions/NN_*.md` is run like a learner would: its ```python blocks, in order,
in one namespace, on the smoke profile (`FLOWERS_PROFILE=smoke`, a temporary
`FLOWERS_DATA_DIR`), after the library equivalent of notebooks 01..NN-1 has written what
notebook NN expects. A block whose fence says ```python no-run is illustrative and
skipped. A new solutions file is picked up by the glob without changes here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "docs" / "solutions").glob("*.md"))
FENCE = re.compile(r"^```python(?P<info>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NO_RUN = "no-run"
# Fewer epochs than the smoke profile's defaults: the solutions train several variants.
FAST = {"FLOWERS_HEAD_EPOCHS": "2", "FLOWERS_FINE_TUNE_EPOCHS": "1"}


def code_blocks(text: str) -> list[str]:
    """The ```python blocks of a Markdown text that should run, in order (not ``` no-run)."""
    return [m["code"] for m in FENCE.finditer(text) if NO_RUN not in m["info"].split()]


def notebook_number(path: Path) -> int:
    match = re.match(r"(\d+)_", path.name)
    if not match:
        raise ValueError(f"A solutions file is named after its notebook, NN_name.md. Received {path.name!r}")
    return int(match[1])


def prepare_for(notebook: int) -> None:
    """Write what notebooks 01..notebook-1 would have written (idempotent)."""
    from flowerlib import Config, download, splits, train

    cfg = Config.from_env()
    if notebook >= 2:
        download.fetch_dataset(cfg, progress=False)
    if notebook >= 3:
        splits.prepare_split(cfg)
    if notebook >= 4:
        train.train(cfg, verbose=0)


def test_code_blocks_skip_no_run_and_other_languages():
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n```python no-run\nraise SystemExit\n```\n```python\ny = 2\n```\n"
    assert code_blocks(text) == ["x = 1\n", "y = 2\n"]


def test_every_notebook_with_exercises_links_its_solutions():
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        solutions = ROOT / "docs" / "solutions" / f"{notebook.stem}.md"
        if solutions.is_file():
            assert f"docs/solutions/{solutions.name}" in notebook.read_text(encoding="utf-8"), notebook.name


@pytest.fixture(scope="module")
def smoke_env(tmp_path_factory):
    """FLOWERS_PROFILE=smoke and one temporary data directory for all solution files."""
    data_dir = tmp_path_factory.mktemp("solutions-data")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("FLOWERS_")]:
            mp.delenv(key)
        mp.setenv("FLOWERS_PROFILE", "smoke")
        mp.setenv("FLOWERS_DATA_DIR", str(data_dir))
        for key, value in FAST.items():
            mp.setenv(key, value)
        mp.setenv("MPLBACKEND", "Agg")
        yield data_dir


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_solution_runs_on_the_smoke_profile(path, smoke_env):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = code_blocks(path.read_text(encoding="utf-8"))
    assert blocks, f"{path.name} has no ```python block"
    prepare_for(notebook_number(path))
    namespace: dict = {"__name__": "__solution__"}
    try:
        for i, block in enumerate(blocks, 1):
            exec(compile(block, f"{path.name} (block {i})", "exec"), namespace)
    finally:
        plt.close("all")
