"""Is the trained model's confidence honest? Calibration of real runs, with and without temperature scaling.

Reads models trained by `real_accuracy.py` (runs under `build/bench-data/runs/`),
predicts the 1,020 official validation images and reports accuracy, log loss
and expected calibration error (ECE, 10 bins):

- raw: the model's own probabilities (a temperature built in by `train` is
  taken out again, from the run's recorded `temperature`);
- temperature fitted on all 1,020 validation images (what `train` does; these
  figures are in-sample for the one fitted number);
- cross-fitted: the temperature fitted on one half of the validation images
  (5 per class) and scored on the other half, both ways round: an honest
  estimate of the calibration a user gets on new images.

    .venv/bin/python benchmarks/real_calibration.py real-mobilenet_v2-ls-384:384 real-mobilenet_v2-defaults-ls:224
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _common as common
import numpy as np

SECTION = "real_calibration"


def halves(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of the indices, split within each class."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a += list(idx[: len(idx) // 2])
        b += list(idx[len(idx) // 2 :])
    return np.array(sorted(a)), np.array(sorted(b))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs", nargs="+", metavar="RUN:IMAGE_SIZE", help="run folder name and its image size"
    )
    parser.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    common.setup_tensorflow()

    from flowerlib.calibration import fit_temperature, scale_probabilities
    from flowerlib.metrics import compute_metrics
    from flowerlib.model import load_model
    from flowerlib.pipeline import dataset_for

    loads = [common.load_text()]
    info = common.machine()
    print(common.machine_line(info))
    rows = []
    for spec in args.runs:
        name, _, size = spec.partition(":")
        cfg = common.real_data_config(
            Path(args.data_dir),
            backbone="mobilenet_v2",
            weights=str(common.MOBILENET_V2_WEIGHTS),
            image_size=int(size or 224),
        )
        table = common.official_table(cfg)
        run_dir = Path(args.data_dir) / "runs" / name
        state = run_dir / "checkpoints" / "state.json"
        built_in = 1.0
        if state.is_file():
            built_in = float(json.loads(state.read_text()).get("info", {}).get("temperature", 1.0))
        model = load_model(run_dir / "model.keras")
        probs = model.predict(dataset_for(cfg, table, "val", training=False), verbose=0)
        raw = scale_probabilities(probs, 1.0 / built_in)  # undo a temperature built in by train()
        labels = table.loc[table["split"] == "val", "label"].to_numpy(dtype=np.int64)
        t_all = fit_temperature(raw, labels)
        a, b = halves(labels)
        crossed = np.empty_like(raw)
        t_halves = []
        for fit_on, score_on in ((a, b), (b, a)):
            t = fit_temperature(raw[fit_on], labels[fit_on])
            t_halves.append(t)
            crossed[score_on] = scale_probabilities(raw[score_on], t)
        for what, p, t in (
            ("raw", raw, "1"),
            ("temperature fitted on all val (in-sample)", scale_probabilities(raw, t_all), f"{t_all:.3f}"),
            ("cross-fitted on val halves (held out)", crossed, " / ".join(f"{x:.3f}" for x in t_halves)),
        ):
            m = compute_metrics(labels, p)
            rows.append(
                {
                    "run": name,
                    "probabilities": what,
                    "temperature": t,
                    "top-1": m["top1"],
                    "log loss": m["log_loss"],
                    "ECE": m["ece"],
                    "mean confidence": float(p.max(axis=1).mean()),
                }
            )
            print(rows[-1])
    loads.append(common.load_text())
    body = "\n\n".join(
        [
            "Models trained by `real_accuracy.py` (MobileNetV2, label smoothing 0.1), scored on the "
            "1,020 official validation images. Temperature scaling never changes a prediction (top-1 is "
            "the same in every row); the cross-fitted rows fit the temperature on one half of the "
            "validation images (5 per class) and score the other half, both ways round.",
            common.markdown_table(rows),
        ]
    )
    print(body)
    if not args.no_write:
        print(
            common.write_section(SECTION, "Calibration of real runs (temperature scaling)", body, info, loads)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
