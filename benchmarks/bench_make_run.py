"""`make run` timed: the four notebooks under `jupyter nbconvert --execute`, per notebook, cell and epoch.

Runs `notebooks/NN_*.ipynb` one after the other with the Makefile's `run`
command (`jupyter nbconvert --to notebook --execute
--ExecutePreprocessor.timeout=-1`, `FLOWERS_PROFILE=full`) in a fresh data
directory, `build/bench-make-run/data`, and reports:

- the wall time of each notebook and of all four (kernel start and the
  writing of the executed copy included);
- the slowest cells of each notebook, from the per-cell timestamps nbconvert
  records in the executed copies (`cell.metadata.execution`:
  `iopub.execute_input` to `shell.execute_reply`);
- the seconds of every training epoch of each phase, from the run folder
  (`runs/<run>/history.csv`, written by `train.Checkpoint`; the seconds cover
  the epoch's training and validation), the epochs run and planned, and the
  facts notebook 03 saves with the run (`checkpoints/state.json`'s `info`);
- the float32 matmul ceiling (`bench_extraction.matmul_rate`, as
  `bench_real_path`), measured before and after the notebooks.

The real images: `../shared/flowers102` holds the official train and
validation JPEGs only. The notebooks want the complete dataset (notebook 02
asserts the split's sizes, 1,836 / 204 / 6,149 for `trainval`; notebook 04 tests
on the 6,149), so the script builds once a STAND-IN source folder,
`build/bench-make-run/source/`: the 2,040 real JPEGs copied, and every missing id
(the official test images) a hard link to one of them, round robin, so that
every decode costs what a real photo costs; plus the two original `.mat` files. The notebooks import it
as `FLOWERS_SOURCE`, as a user's extracted `102flowers.tgz`. TIMING ONLY: the
test images are not what their labels say, so notebook 04's accuracy means
nothing.

The default backbone, ResNet50, runs with `FLOWERS_WEIGHTS=none` (the same
FLOP as the ImageNet weights, which cannot be downloaded here). Random weights
learn slowly and unevenly (bench_real_path's run reached 0.21 validation
accuracy, enough for notebook 03's `final >= 5 * chance`), so the validation
loss may stall: `FLOWERS_PATIENCE` is set to the longer phase's epochs and
early stopping never shortens a phase, the worst case. `--backbone
mobilenet_v2` uses the shared ImageNet weights file.

    .venv/bin/python benchmarks/bench_make_run.py                           # ResNet50: ~40 min on 2 cores (estimated)
    .venv/bin/python benchmarks/bench_make_run.py --backbone mobilenet_v2
    .venv/bin/python benchmarks/bench_make_run.py --set FLOWERS_FINE_TUNE_EPOCHS=2
    .venv/bin/python benchmarks/bench_make_run.py --quick                   # smoke profile, synthetic data, ~1.5 min
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import _common as common

SECTION = "bench_make_run"
WORK = common.ROOT / "build" / "bench-make-run"
STANDIN = WORK / "source"
STANDIN_MARKER = "standin.json"
PATHS = ("FLOWERS_DATA_DIR", "FLOWERS_SOURCE", "FLOWERS_WEIGHTS")
NOTEBOOKS = sorted((common.ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# The Makefile's `run` recipe, less the output folder and the notebook.
NBCONVERT = ["nbconvert", "--to", "notebook", "--execute", "--ExecutePreprocessor.timeout=-1"]
STANDIN_WARNING = (
    "STAND-IN TEST IMAGES: the 6,149 official test images are not on this machine; each test id is a "
    "hard link to one of the 2,040 real train/val JPEGs (round robin), so decoding costs are real. "
    "Timing only: notebook 04's test accuracy is meaningless."
)


# --- the stand-in source folder --------------------------------------------------------------


def _image_ids(folder: Path) -> list[int]:
    """The ids of the `image_XXXXX.jpg` files in `folder`."""
    ids = []
    with os.scandir(folder) as entries:
        for e in entries:
            name = e.name
            if name.startswith("image_") and name.endswith(".jpg") and name[6:-4].isdigit():
                ids.append(int(name[6:-4]))
    return sorted(ids)


def _num_labels(labels_mat: Path) -> int:
    import scipy.io

    return int(scipy.io.loadmat(labels_mat)["labels"].size)


def standin_complete(folder: Path = STANDIN, real: Path = common.REAL_IMAGES) -> bool:
    """Whether `folder` is a finished stand-in of `real`: its marker, both `.mat` files, every image."""
    try:
        marker = json.loads((folder / STANDIN_MARKER).read_text(encoding="utf-8"))
        for name in ("imagelabels.mat", "setid.mat"):
            if (folder / name).stat().st_size != (real / name).stat().st_size:
                return False
        return (
            len(_image_ids(folder / "jpg")) == marker["num_images"] == _num_labels(folder / "imagelabels.mat")
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def build_standin(folder: Path = STANDIN, real: Path = common.REAL_IMAGES) -> dict:
    """A complete source folder (`jpg/` with every labelled id, the two `.mat` files); reused if complete.

    The real JPEGs of `real` are copied (a hard link would put the shared
    read-only originals into a writable data directory: `fetch_dataset`
    hard-links what it imports); every id without a file there (the official
    test images) becomes a hard link to one of those copies, round robin
    (a copy where links are not allowed).

    Returns:
        The marker written in the folder: image counts and the source.

    Raises:
        BenchmarkError: `real` lacks `jpg/` or a `.mat` file.
    """
    if standin_complete(folder, real):
        return json.loads((folder / STANDIN_MARKER).read_text(encoding="utf-8"))
    missing = [n for n in ("jpg", "imagelabels.mat", "setid.mat") if not (real / n).exists()]
    if missing:
        raise common.BenchmarkError(
            f"The real images are expected in {real} (jpg/, imagelabels.mat, setid.mat); missing: {missing}."
        )
    real_ids = _image_ids(real / "jpg")
    n = _num_labels(real / "imagelabels.mat")
    if not real_ids or real_ids[-1] > n:
        raise common.BenchmarkError(f"{real / 'jpg'} holds no images, or ids beyond the {n:,} labelled ones.")
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "jpg").mkdir(parents=True)
    for name in ("imagelabels.mat", "setid.mat"):
        shutil.copyfile(real / name, tmp / name)
    name = "image_{:05d}.jpg".format
    for i in real_ids:
        shutil.copyfile(real / "jpg" / name(i), tmp / "jpg" / name(i))
    present = set(real_ids)
    filled = [i for i in range(1, n + 1) if i not in present]
    links = 0
    for k, i in enumerate(filled):
        src, dst = tmp / "jpg" / name(real_ids[k % len(real_ids)]), tmp / "jpg" / name(i)
        try:
            os.link(src, dst)
            links += 1
        except OSError:
            shutil.copyfile(src, dst)
    marker = {
        "what": "stand-in for timing only: the missing ids are copies of real train/val images",
        "source": str(real),
        "num_images": n,
        "real": len(real_ids),
        "filled": len(filled),
        "filled_as_hard_links": links,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    (tmp / STANDIN_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return marker


# --- running the notebooks -------------------------------------------------------------------


def notebook_env(args, data_dir: Path, source: Path | None) -> dict[str, str]:
    """The environment of the notebooks: this one without its FLOWERS_* variables, plus the run's.

    Raises:
        BenchmarkError: a `--set` is not KEY=VALUE, or the settings are not a valid `Config`.
    """
    from flowerlib.config import Config, ConfigWarning

    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWERS_")}
    flowers = {"FLOWERS_PROFILE": "smoke" if args.quick else "full", "FLOWERS_DATA_DIR": str(data_dir)}
    if not args.quick:
        flowers["FLOWERS_SOURCE"] = str(source)
        flowers["FLOWERS_BACKBONE"] = args.backbone
        flowers["FLOWERS_WEIGHTS"] = (
            "none"
            if args.backbone == "resnet50"
            else str(common.require(common.MOBILENET_V2_WEIGHTS, "MobileNetV2 weights"))
        )
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise common.BenchmarkError(
                f"--set wants KEY=VALUE (e.g. FLOWERS_FINE_TUNE_EPOCHS=2). Received {item!r}"
            )
        key = key.upper()
        flowers[key if key.startswith("FLOWERS_") else "FLOWERS_" + key] = value
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConfigWarning)
            cfg = Config.from_env(environ=flowers)
    except (ConfigWarning, ValueError) as e:
        raise common.BenchmarkError(f"The notebooks' settings are not valid: {e}") from None
    if not args.quick and "FLOWERS_PATIENCE" not in flowers:
        # Worst case: early stopping never ends a phase before its last epoch.
        flowers["FLOWERS_PATIENCE"] = str(max(cfg.head_epochs, cfg.fine_tune_epochs, 1))
    return env | flowers


def nbconvert_command(notebook: Path, out_dir: Path) -> list[str]:
    jupyter = Path(sys.executable).with_name("jupyter")  # the venv's, as the Makefile's $(VENV)/bin/jupyter
    return [str(jupyter), *NBCONVERT, "--output-dir", str(out_dir), str(notebook)]


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(common.ROOT))
    except ValueError:
        return str(path)


def shell_text(env: dict[str, str], notebook: Path, out_dir: Path) -> str:
    """The command of one notebook as a shell line (FLOWERS_* variables only), relative to the repository."""
    flowers = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()) if k.startswith("FLOWERS_"))
    cmd = nbconvert_command(notebook, out_dir)
    cmd[0] = _rel(Path(cmd[0]))
    cmd[-3:] = ["--output-dir", _rel(out_dir), _rel(notebook)]
    return f"{flowers} {' '.join(map(shlex.quote, cmd))}"


def run_notebook(notebook: Path, env: dict[str, str], out_dir: Path, log: Path) -> tuple[int, float]:
    """Execute one notebook as `make run` does (output in `log`); its exit status and wall seconds."""
    with log.open("w", encoding="utf-8") as f, common.Stopwatch() as t:
        rc = subprocess.run(
            nbconvert_command(notebook, out_dir),
            cwd=common.ROOT,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    return rc, t.seconds


# --- what the executed notebooks and the run folder say --------------------------------------


def _stamp(value: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def first_line(source: str | list[str], width: int = 60) -> str:
    """The first line of a cell that is not blank, and its first `.fit(` line if that is another one.

    Each part is shortened to `width` characters.
    """
    text = "".join(source) if isinstance(source, list) else source
    lines = [s.strip() for s in text.splitlines() if s.strip()]

    def short(line: str) -> str:
        return line if len(line) <= width else line[: width - 1] + "…"

    fit = next((s for s in lines[1:] if ".fit(" in s), None)
    return short(lines[0] if lines else "") + (f" … {short(fit)}" if fit else "")


def cell_times(executed: Path) -> list[dict]:
    """Per code cell of an executed notebook: its index, execution count, seconds and first line.

    Seconds: `iopub.execute_input` to `shell.execute_reply` in `cell.metadata.execution`
    (nbclient's `record_timing`); `iopub.status.busy` to `iopub.status.idle` where
    those are missing; NaN when the cell has no timestamps.
    """
    cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    rows = []
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        ex = cell.get("metadata", {}).get("execution", {})
        seconds = float("nan")
        for start, end in (
            ("iopub.execute_input", "shell.execute_reply"),
            ("iopub.status.busy", "iopub.status.idle"),
        ):
            if start in ex and end in ex:
                seconds = (_stamp(ex[end]) - _stamp(ex[start])).total_seconds()
                break
        rows.append(
            {
                "index": index,
                "count": cell.get("execution_count"),
                "seconds": seconds,
                "line": first_line(cell.get("source", "")),
            }
        )
    return rows


def run_folders(data_dir: Path) -> list[Path]:
    runs = data_dir / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def read_run(run: Path) -> tuple[list[dict], list[dict], dict]:
    """The per-phase summary, the per-epoch seconds and the flattened `info` of one run folder."""
    import pandas as pd

    from flowerlib.artifacts import RunLayout

    layout = RunLayout(run)
    state = json.loads(layout.state.read_text(encoding="utf-8")) if layout.state.is_file() else {}
    history = pd.read_csv(layout.history) if layout.history.is_file() else pd.DataFrame()
    phases, epochs = [], {}
    for phase, rows in history.groupby("phase", sort=False) if not history.empty else ():
        s = rows["seconds"].astype(float).to_list()
        record = state.get("phases", {}).get(phase, {})
        best = record.get("best_epoch")
        phases.append(
            {
                "phase": phase,
                "epochs run": len(s),
                "planned": record.get("planned_epochs", "–"),
                "best epoch": best + 1 if isinstance(best, int) else "–",
                "s in all": sum(s),
                "epoch 1 s": s[0],
                "median s/epoch (2nd on)": float(pd.Series(s[1:]).median()) if len(s) > 1 else float("nan"),
                "max s": max(s),
            }
        )
        for e, sec in zip(rows["epoch"], s, strict=True):
            epochs.setdefault(int(e), {"epoch": int(e)})[f"{phase} s"] = sec
    info = {}

    def flatten(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                flatten(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            info[prefix] = value

    flatten("", state.get("info", {}))
    return phases, [epochs[e] for e in sorted(epochs)], info


# --- the matmul ceiling ----------------------------------------------------------------------


def ceiling() -> dict[str, float]:
    """The float32 2048² matmul rate, graph and XLA (GFLOP/s, median of ~1 s each), as `bench_real_path`."""
    import bench_extraction as be

    return {jit: be.median(be.matmul_rate(2048, 1.0, jit=jit)) for jit in (False, True)}


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", choices=("resnet50", "mobilenet_v2"), default="resnet50")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra FLOWERS_* variable for the notebooks (FLOWERS_ may be left out), e.g. FINE_TUNE_EPOCHS=2",
    )
    parser.add_argument("--quick", action="store_true", help="smoke profile on synthetic data: ~2 min")
    parser.add_argument("--keep-data", action="store_true", help="reuse the data directory (a warm rerun)")
    parser.add_argument("--top", type=int, default=5, help="slowest cells shown per notebook (default 5)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    common.setup_tensorflow()
    loads = [common.load_text()]
    info = common.machine()
    print(common.machine_line(info), f"\nload average: {loads[0]}\ncommand: {common.command_line()}")
    profile = "smoke" if args.quick else "full"
    data_dir = WORK / ("data-smoke" if args.quick else "data")
    out_dir = WORK / "executed" / profile
    logs = WORK / "logs"
    source = None
    if not args.quick:
        with common.Stopwatch() as t:
            marker = build_standin()
        source = STANDIN
        print(
            f"\n{'!' * 100}\n{STANDIN_WARNING}\n{'!' * 100}\n"
            f"stand-in source: {_rel(STANDIN)} ({marker['real']:,} real + {marker['filled']:,} stand-ins, "
            f"{marker['filled_as_hard_links']:,} of them hard links; ready in {t.seconds:.1f} s)"
        )
    env = notebook_env(args, data_dir, source)
    if args.quick and args.backbone != "resnet50":
        print("--quick: the smoke profile's own backbone ('tiny') runs; --backbone is ignored.")
    if not args.keep_data:
        shutil.rmtree(data_dir, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    flowers = {k: v for k, v in sorted(env.items()) if k.startswith("FLOWERS_")}
    print("notebook settings:", " ".join(f"{k}={v}" for k, v in flowers.items()))

    ceilings = [ceiling()]
    loads.append(common.load_text())
    print(
        "matmul ceiling (start): "
        + ", ".join(f"{'XLA' if j else 'graph'} {v:.0f} GFLOP/s" for j, v in ceilings[0].items())
    )

    done: list[dict] = []
    failed = None
    for nb in NOTEBOOKS:
        log = logs / f"{profile}-{nb.stem}.log"
        print(f"\n$ {shell_text(env, nb, out_dir)}", flush=True)
        rc, seconds = run_notebook(nb, env, out_dir, log)
        loads.append(common.load_text())
        print(f"{nb.name}: {seconds:.1f} s (exit status {rc}; load {loads[-1]}; log {_rel(log)})", flush=True)
        if rc != 0:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
            print("\n".join(tail), file=sys.stderr)
            failed = nb.name
            break
        done.append({"notebook": nb.name, "seconds": seconds, "cells": cell_times(out_dir / nb.name)})
    ceilings.append(ceiling())
    loads.append(common.load_text())
    print(
        "matmul ceiling (end): "
        + ", ".join(f"{'XLA' if j else 'graph'} {v:.0f} GFLOP/s" for j, v in ceilings[1].items())
    )

    # Notebooks and cells.
    total = sum(d["seconds"] for d in done)
    nb_rows, slow_rows, untimed = [], [], []
    for d in done:
        timed = [c for c in d["cells"] if c["seconds"] == c["seconds"]]
        in_cells = sum(c["seconds"] for c in timed)
        if len(timed) < len(d["cells"]):
            untimed.append(d["notebook"])
        nb_rows.append(
            {
                "notebook": d["notebook"],
                "wall s": d["seconds"],
                "min": d["seconds"] / 60,
                "share": f"{d['seconds'] / total:.0%}",
                "code cells": len(d["cells"]),
                "in cells s": in_cells if timed else float("nan"),
                "outside cells s (kernel start, saving)": d["seconds"] - in_cells if timed else float("nan"),
            }
        )
        for c in sorted(timed, key=lambda c: -c["seconds"])[: args.top]:
            slow_rows.append(
                {
                    "notebook": d["notebook"],
                    "cell": f"{c['index']} [{c['count']}]",
                    "s": c["seconds"],
                    "of the notebook": f"{c['seconds'] / d['seconds']:.0%}",
                    "first line": f"`{_md(c['line'])}`",
                }
            )
    nb_rows.append(
        {"notebook": "all four" if not failed else "the notebooks run", "wall s": total, "min": total / 60}
    )

    # The run folders (notebook 03's run; any other under runs/).
    run_parts = []
    for run in run_folders(data_dir):
        phases, epochs, run_info = read_run(run)
        info_rows = [{"info": k, "value": v} for k, v in run_info.items()]
        run_parts += [
            f"Run folder `{_rel(run)}`: epochs from `history.csv` (each epoch's training and "
            "validation, `train.Checkpoint`'s `seconds`), planned and best epochs from `checkpoints/state.json`:",
            common.markdown_table(phases),
            common.markdown_table(epochs),
            "Saved with the run (`state.json` `info`; notebook 03 times feature extraction in its own cell, above):",
            common.markdown_table(info_rows) if info_rows else "(none)",
        ]
    if not run_parts:
        run_parts = ["(no run folder under the data directory: notebook 03 did not get to train)"]

    # Paths shown relative to the repository (the notebooks get them absolute: their kernels start in notebooks/).
    settings = " ".join(f"`{k}={_rel(Path(v)) if k in PATHS else v}`" for k, v in flowers.items())
    data_note = (
        "**Synthetic data (smoke profile, `--quick`): a sanity run of the script, not a measurement.**"
        if args.quick
        else f"**{STANDIN_WARNING}** (source folder `{_rel(STANDIN)}`, built by this script.)"
    )
    ceiling_text = ", ".join(
        f"{when} {max(c.values()):.0f} (graph {c[False]:.0f}, XLA {c[True]:.0f})"
        for when, c in zip(("before", "after"), ceilings, strict=True)
    )
    body = "\n\n".join(
        [
            data_note,
            f"`make run` as the Makefile runs it: each notebook by `{' '.join(NBCONVERT)}` in the repository "
            f"root, one after the other, with {settings}"
            + (
                ""
                if args.keep_data
                else " (a fresh data directory: download/import, split, cold feature cache)"
            )
            + f". Executed copies in `{_rel(out_dir)}`. Float32 2048² matmul ceiling, GFLOP/s: {ceiling_text}.",
            common.markdown_table(nb_rows),
            f"Slowest cells (top {args.top} per notebook; cell = index in the notebook [execution count]; "
            "seconds from nbconvert's `iopub.execute_input` → `shell.execute_reply` timestamps):",
            common.markdown_table(slow_rows) if slow_rows else "(no cell timings recorded)",
            *run_parts,
        ]
    )
    if untimed:
        body += f"\n\nNo cell timings recorded in: {', '.join(untimed)}."
    if failed:
        body += f"\n\n**{failed} failed** (log in `{_rel(logs)}`); the notebooks after it did not run."
    print("\n" + body)
    if failed:
        print(f"\n{failed} failed: RESULTS.md is left alone.", file=sys.stderr)
        return 1
    if not args.no_write:
        title = "`make run`, notebook by notebook" + (
            " (--quick: smoke profile, synthetic data)"
            if args.quick
            else f" ({args.backbone}, stand-in test images)"
        )
        name = SECTION if args.quick or args.backbone == "resnet50" else f"{SECTION}-{args.backbone}"
        path = common.write_section(name, title, body, info, loads)
        print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except common.BenchmarkError as e:
        raise SystemExit(f"bench_make_run: {e}") from None
