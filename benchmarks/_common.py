"""Shared plumbing of the benchmark scripts: machine description, timing, tables, RESULTS.md.

Not part of flowerlib: the scripts import it as a sibling module
(`python benchmarks/<script>.py` puts `benchmarks/` first on `sys.path`).
Every script rewrites only its own section of `benchmarks/RESULTS.md`, between
`<!-- begin NAME -->` and `<!-- end NAME -->`, so the sections of different
scripts (and of different dates) live side by side.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SHARED = ROOT.parent / "shared"
REAL_IMAGES = SHARED / "flowers102"
WEIGHTS_DIR = SHARED / "weights"
MOBILENET_V2_WEIGHTS = WEIGHTS_DIR / "mobilenet_v2_1.0_224_no_top.weights.h5"
MOBILENET_025_WEIGHTS = WEIGHTS_DIR / "mobilenet_2_5_224_tf_no_top.h5"
DEFAULT_DATA_DIR = ROOT / "build" / "bench-data"

RESULTS_HEADER = """# Benchmark results

Measured by the scripts in this folder (see `benchmarks/README.md`); each
section below is rewritten by the script named in its heading, with the
machine, the load while it ran (`uptime`: this machine's 2 cores were shared
with other jobs, so absolute numbers carry that noise; ratios measured side by
side in one run are the robust part) and the exact command.
"""


class BenchmarkError(RuntimeError):
    """A benchmark cannot run here (missing real data or weights)."""


def setup_tensorflow() -> None:
    """Quiet TensorFlow's start-up chatter; call before importing TensorFlow."""
    from flowerlib.runtime import quiet_tensorflow

    quiet_tensorflow()


def load() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (as `uptime` shows them)."""
    return os.getloadavg()


def load_text() -> str:
    one, five, fifteen = load()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    model = fields.get("Model name", "").strip() or platform.machine()
    extra = [
        f"{k.strip().lower()} {fields[k].strip()}"
        for k in ("CPU family", "Model")
        if k in fields and fields[k].strip()
    ]
    flags = fields.get("Flags", "")
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in f" {flags}"]
    return f"{model} ({', '.join(extra + isa)})"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def machine() -> dict[str, str]:
    """A description of this machine and software, for the results file."""
    import keras
    import tensorflow as tf

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "cpu": _lscpu_model(),
        "cores": str(cores),
        "ram": f"{_ram_gib():.0f} GiB",
        "gpu": ", ".join(g.name for g in gpus) if gpus else "none",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }


def machine_line(info: dict[str, str]) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['ram']} RAM, GPU: {info['gpu']}; "
        f"Python {info['python']}, TensorFlow {info['tensorflow']}, Keras {info['keras']}; {info['date']}"
    )


def command_line() -> str:
    """The command that ran this script, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(ROOT))
    except ValueError:
        script_text = str(script)
    return " ".join([".venv/bin/python", script_text, *map(shlex.quote, sys.argv[1:])])


class Stopwatch:
    """`with Stopwatch() as t: ...` then `t.seconds`."""

    def __enter__(self) -> Stopwatch:
        self.t0 = time.perf_counter()
        self.seconds = float("nan")
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as a Markdown table (floats with 3 significant-ish digits)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:  # NaN
                return "–"
            if abs(v) >= 100:
                return f"{v:,.0f}"
            if abs(v) >= 10:
                return f"{v:.1f}"
            return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_section(
    name: str,
    title: str,
    body: str,
    info: dict[str, str],
    loads: Iterable[str],
    command: str | None = None,
) -> Path:
    """Replace (or append) the section `name` of RESULTS.md, atomically.

    Args:
        name: section id (the script's name).
        title: the section's heading.
        body: Markdown: tables and notes.
        info: `machine()`.
        loads: load averages noted while the script ran.
        command: the command to show; default this process's (`command_line()`).
    """
    from flowerlib.artifacts import write_text

    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    section = "\n".join(
        [
            begin,
            f"## {title}",
            "",
            f"- Command: `{command or command_line()}`",
            f"- Machine: {machine_line(info)}",
            f"- Load average (1, 5, 15 min) during the run: {' → '.join(loads)}",
            "",
            body.strip(),
            end,
        ]
    )
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.is_file() else RESULTS_HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    write_text(RESULTS, text)
    return RESULTS


def real_data_config(data_dir: Path, **overrides: Any):
    """A full-profile `Config` on the shared real images, with the data directory prepared.

    The shared folder holds the official train and validation images only; it is
    linked into `data_dir` (a "partial" dataset) by `flowerlib.download.fetch_dataset`.

    Raises:
        BenchmarkError: the shared real images are not there.
    """
    from flowerlib import Config
    from flowerlib.download import fetch_dataset

    if not (REAL_IMAGES / "jpg").is_dir():
        raise BenchmarkError(
            f"The real images are expected in {REAL_IMAGES} (jpg/, imagelabels.mat, setid.mat). "
            "Point --source at a folder or 102flowers.tgz holding them."
        )
    cfg = Config.for_profile("full", data_dir=data_dir, source=REAL_IMAGES, **overrides)
    with warnings.catch_warnings():  # "holds 2,040 of the 8,189 labelled images": known
        warnings.simplefilter("ignore", UserWarning)
        fetch_dataset(cfg, progress=False)
    return cfg


def official_table(cfg):
    """The official split table of the images present: 1,020 train and 1,020 val rows here.

    The shared folder lacks the official test images, so `prepare_split` (which
    wants every part) refuses the official split; `official_split` over the
    images present gives the train and val parts exactly as published.
    """
    from flowerlib import Layout
    from flowerlib.splits import available_image_ids, official_split

    layout = Layout(cfg.data_dir)
    return official_split(layout, cfg.num_classes, image_ids=available_image_ids(layout))


def per_class(rows, n: int, seed: int = 0):
    """The first `n` rows of every class (in table order), or a seeded sample of them."""
    import pandas as pd

    picks = [g.sample(n=min(n, len(g)), random_state=seed) for _, g in rows.groupby("label", sort=True)]
    return pd.concat(picks).sort_values("image_id").reset_index(drop=True)


def require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise BenchmarkError(f"{what} not found at {path}. Copy it there or pass its path.")
    return path
