"""Accuracy on the validation photos and on photos unlike the dataset's, side by side (issue 12).

Trains `train.train(cfg)` with the shared MobileNetV2 ImageNet weights on the
1,020 official training images (or reuses the run when it already finished with
the same settings: it says so), then scores the model on

- the 1,020 official validation photos as they are (in distribution), and
- `flowerlib.unlike.make_unlike_set` pictures made from those validation photos
  (never test photos): zoomed out onto a background, tiled into a field, small
  and off centre, a heavily compressed thumbnail, partly covered. Fixed seed.

For each it reports top-1 accuracy, and, to judge the confidence: the share of
answers given with a (calibrated) top probability of at least `--sure`, and the
accuracy among those. A recipe that generalises gains on both columns.

Note: the validation photos also served for early stopping and the temperature,
so both columns are slightly optimistic for the model; the comparison between
recipes is what the table is for.

    .venv/bin/python benchmarks/unlike_accuracy.py                          # library defaults, 40 pictures per kind
    .venv/bin/python benchmarks/unlike_accuracy.py --label my-recipe --set image_size=320
"""

from __future__ import annotations

import argparse
import time

import _common as common
import numpy as np

SECTION = "unlike_accuracy"


def scores(probs: np.ndarray, labels: np.ndarray, sure: float) -> dict[str, float]:
    """Top-1, coverage (answers at >= `sure`) and accuracy among those answers."""
    top = probs.argmax(axis=1)
    confident = probs.max(axis=1) >= sure
    right = top == labels
    return {
        "top1": float(right.mean()),
        "answered": float(confident.mean()),
        "acc when answered": float(right[confident].mean()) if confident.any() else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], help="a Config setting KEY=VALUE (the recipe)")
    parser.add_argument("--label", help="the recipe's name in RESULTS.md (default from --set)")
    parser.add_argument("--per-kind", type=int, default=40, help="unlike pictures per kind")
    parser.add_argument("--seed", type=int, default=0, help="seed of the unlike pictures")
    parser.add_argument("--sure", type=float, default=0.5, help="top probability that counts as an answer")
    parser.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    common.setup_tensorflow()
    import real_accuracy as ra

    from flowerlib import Config, unlike
    from flowerlib.pipeline import dataset_for
    from flowerlib.prediction import prepare_image
    from flowerlib.train import train

    weights = str(common.require(common.MOBILENET_V2_WEIGHTS, "The MobileNetV2 weights file"))
    base = common.real_data_config(args.data_dir, backbone="mobilenet_v2", weights=weights, image_size=224)
    label = args.label or "-".join(s.replace("=", "_") for s in args.set) or "defaults"
    cfg = Config.from_env(
        ra.parse_settings(args.set),
        profile="full",
        **{k: getattr(base, k) for k in ("data_dir", "source", "backbone", "weights")},
    ).replace(run_name=f"unlike-{label}")
    info = common.machine()
    print(common.machine_line(info))
    loads = [common.load_text()]
    table = common.official_table(cfg)
    with common.Stopwatch() as wall:
        result = train(cfg, table, verbose=1)
    model = result.model

    val = table[table["split"] == "val"]
    val_probs = model.predict(dataset_for(cfg, table, "val", training=False), verbose=0)
    rows = [
        {
            "pictures": "validation photos",
            "n": len(val),
            **scores(val_probs, val["label"].to_numpy(), args.sure),
        }
    ]

    t0 = time.perf_counter()
    records = unlike.make_unlike_set(val, cfg.data_dir, args.seed, per_kind=args.per_kind)
    batch = np.stack([prepare_image(image, cfg.image_size) for image in records["image"]])
    probs = model.predict(batch, batch_size=cfg.batch_size, verbose=0)
    labels = records["label"].to_numpy()
    rows.append({"pictures": "unlike (all kinds)", "n": len(records), **scores(probs, labels, args.sure)})
    for kind in unlike.KINDS:
        mask = (records["kind"] == kind).to_numpy()
        if mask.any():
            rows.append(
                {
                    "pictures": f"– {kind}",
                    "n": int(mask.sum()),
                    **scores(probs[mask], labels[mask], args.sure),
                }
            )
    unlike_seconds = time.perf_counter() - t0
    loads.append(common.load_text())

    settings = ra.settings_text(cfg)
    body = "\n\n".join(
        [
            f"MobileNetV2 ImageNet weights, `train.train(cfg)` on the 1,020 official training images; "
            f"settings: {settings}. Unlike pictures: {args.per_kind} per kind from the validation photos, "
            f"seed {args.seed}. *answered*: top probability ≥ {args.sure} (after the model's temperature); "
            f"*acc when answered*: top-1 among those. Training {wall.seconds:.0f} s "
            f"({'reused' if result.resumed else 'trained now'}), unlike set {unlike_seconds:.0f} s.",
            common.markdown_table(rows),
        ]
    )
    print(body)
    if not args.no_write:
        common.write_section(f"{SECTION}-{label}", f"Unlike the dataset's: {label}", body, info, loads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
