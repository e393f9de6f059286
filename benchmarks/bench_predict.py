"""`flowerlib predict` with one model and with three averaged, as users run it, beside `predict_many` alone.

What does averaging three models (`flowerlib predict --model A --model B --model C`)
cost a user? Builds three ResNet50 classifiers with `weights=None` (the same arithmetic
as the ImageNet weights) and saves each as a run would (`model.keras`, `labels.json`,
`reference.npz` fitted on their own features of other photos). Their heads are untrained,
so no answer is sure and every photo is looked at closer: the worst case for the time.
Then, in interleaved rounds:

- the command line: `flowerlib predict PHOTOS --model A [--model B --model C] --json`,
  a new process each time (start-up, loading the models, reading and scoring the photos);
- in this process: `prediction.predict_many` with the one model and with the three, the
  whole photo only and looking closer (the models loaded once);
- the float32 matmul rate (the machine's ceiling, which moves from hour to hour), before
  and after.

    .venv/bin/python benchmarks/bench_predict.py              # 6 real photos, 2 rounds
    .venv/bin/python benchmarks/bench_predict.py --photos 3 --rounds 1 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import _common as common
import bench_extraction as be
import numpy as np

SECTION = "bench_predict"


def make_runs(folder: Path, n: int, photos: list[Path]) -> list[Path]:
    """`n` ResNet50 classifiers saved as runs (random heads, seeds 0..n-1); their model files."""
    import keras

    from flowerlib import Config
    from flowerlib.artifacts import write_json
    from flowerlib.classes import CLASS_NAMES
    from flowerlib.model import build_classifier, save_model
    from flowerlib.novelty import fit_reference, save_reference
    from flowerlib.prediction import _run, _with_features, prepare_image

    cfg = Config.for_profile("full", backbone="resnet50", weights=None)
    batch = np.stack([prepare_image(p, cfg.image_size) for p in photos])
    files = []
    for seed in range(n):
        keras.utils.set_random_seed(seed)
        model = build_classifier(cfg, num_classes=len(CLASS_NAMES))
        run = folder / f"resnet50-seed{seed}"
        run.mkdir(parents=True)
        save_model(model, run / "model.keras")
        write_json(run / "labels.json", list(CLASS_NAMES))
        features = _run(_with_features(model), batch, 16)[1]
        half = len(features) // 2
        save_reference(fit_reference(features[:half], features[half:]), run / "reference.npz")
        files.append(run / "model.keras")
    return files


def cli_seconds(photos: list[Path], models: list[Path]) -> float:
    """Wall time of one `flowerlib predict` process (its exit status must be 0)."""
    command = [sys.executable, "-m", "flowerlib", "predict", *map(str, photos), "--json"]
    for model in models:
        command += ["--model", str(model)]
    t0 = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise common.BenchmarkError(f"flowerlib predict failed ({done.returncode}): {done.stderr[-2000:]}")
    views = {r["view"] for r in json.loads(done.stdout)}
    if views != {"closer"} and views != {"whole", "closer"}:
        print(f"note: views answered by the command line: {sorted(views)}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=6, help="real photos per prediction")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    common.setup_tensorflow()
    from flowerlib.model import load_model
    from flowerlib.novelty import load_reference
    from flowerlib.prediction import predict_many

    jpgs = sorted((common.REAL_IMAGES / "jpg").glob("*.jpg"))
    if len(jpgs) < args.photos + 24:
        raise common.BenchmarkError(f"Expected the shared real photos in {common.REAL_IMAGES / 'jpg'}.")
    photos, others = jpgs[: args.photos], jpgs[-24:]  # the reference is fitted on other photos
    info, loads = common.machine(), [common.load_text()]
    print(common.machine_line(info))
    rows, per = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        files = make_runs(Path(tmp), 3, others)
        models = [load_model(f) for f in files]
        references = [load_reference(f.with_name("reference.npz")) for f in files]
        for model in models:  # trace each model's predict once, outside the timings
            predict_many(model, photos[:1], top_k=1, look_closer=False)
        ceilings = [median(be.matmul_rate(2048, 2.0, jit=False))]
        for r in range(args.rounds):
            for name, count in (("one model", 1), ("three averaged", 3)):
                for look_closer in (False, True):
                    key = (name, "in process", "looking closer" if look_closer else "whole photo")
                    t0 = time.perf_counter()
                    table = predict_many(
                        models[:count],
                        photos,
                        top_k=1,
                        look_closer=look_closer,
                        reference=references[:count],
                    )
                    per.setdefault(key, []).append(time.perf_counter() - t0)
                    if look_closer:
                        per.setdefault((name, "closer views"), []).append(
                            int((table["view"] == "closer").sum())
                        )
                key = (name, "command line", "looking closer")
                per.setdefault(key, []).append(cli_seconds(photos, files[:count]))
                print(f"round {r + 1}: {name}: command line {per[key][-1]:.1f} s")
        ceilings.append(median(be.matmul_rate(2048, 2.0, jit=False)))
    loads.append(common.load_text())
    for (name, *what), values in per.items():
        if what[0] == "closer views":
            continue
        rows.append(
            {
                "models": name,
                "path": what[0],
                "predict": what[1],
                f"s for {len(photos)} photos (rounds)": " / ".join(f"{v:.1f}" for v in values),
                "s per photo (median)": round(median(values) / len(photos), 2),
            }
        )
    one = {(r["path"], r["predict"]): r["s per photo (median)"] for r in rows if r["models"] == "one model"}
    for row in rows:
        row["× one model"] = round(row["s per photo (median)"] / one[(row["path"], row["predict"])], 2)
    body = "\n\n".join(
        [
            f"{len(photos)} real photos ({photos[0].name} …), ResNet50 `weights=None` at 224 px, untrained "
            "heads: no answer is sure, so every photo is looked at closer (the worst case for the time; "
            f"answered from a crop: {per[('one model', 'closer views')][-1]} of {len(photos)} with one model, "
            f"{per[('three averaged', 'closer views')][-1]} with three). Matmul rate "
            f"{ceilings[0]:.0f} → {ceilings[1]:.0f} GFLOP/s (2048², float32) before and after. The command "
            "line's time includes starting Python and TensorFlow and loading the models.",
            common.markdown_table(rows),
        ]
    )
    print(body)
    if not args.no_write:
        common.write_section(SECTION, "Prediction with one model and with three averaged", body, info, loads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
