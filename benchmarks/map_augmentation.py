"""Which augmentation of the cached feature maps helps fine-tuning: none, shifts or mirroring.

Fine-tuning from cached maps (`train.CachedViews`) sees each training image only
in its `1 + cache_views` cached views. This script compares, on held-out
training images (5 of the 10 per class train, the other 5 score: the official
validation images stay untouched), three ways of varying the maps every epoch:

- `none`: the cached views only (`shift=0`);
- `shift`: each map moved by up to one cell, edge repeated (the library's
  default, `shift=1`);
- `flip`: each map mirrored left-right with probability 1/2 (not in the library:
  patched in here, because it lost).

Each variant trains `train.train(cfg)` with the shared MobileNetV2 ImageNet
weights and the library defaults, for every seed given (a seed changes the
cached views, the head's start and the order). Rows are written to RESULTS.md.

    .venv/bin/python benchmarks/map_augmentation.py                      # 4 seeds x 3 variants, ~10 min
    .venv/bin/python benchmarks/map_augmentation.py --seeds 42 --variants none shift
"""

from __future__ import annotations

import argparse
import time

import _common as common
import numpy as np

SECTION = "map_augmentation"
VARIANTS = ("none", "shift", "flip")


def patched_views(variant: str):
    """A `CachedViews` subclass for one variant (training batches only)."""
    from flowerlib.train import CachedViews

    class Views(CachedViews):
        def __init__(self, *args, **kwargs):
            kwargs["shift"] = 1 if variant == "shift" and kwargs.get("training", True) else 0
            super().__init__(*args, **kwargs)
            self._flip_rng = np.random.default_rng(kwargs.get("seed", 0) + 1)

        def __getitem__(self, index):
            x, y = super().__getitem__(index)
            if variant == "flip" and self.training:
                mirror = self._flip_rng.random(len(x)) < 0.5
                x[mirror] = x[mirror, :, ::-1]
            return x, y

    return Views


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 11, 13])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    common.setup_tensorflow()
    import real_accuracy as ra

    from flowerlib import Config
    from flowerlib import train as training

    weights = str(common.require(common.MOBILENET_V2_WEIGHTS, "The MobileNetV2 weights file"))
    base = common.real_data_config(args.data_dir, backbone="mobilenet_v2", weights=weights, image_size=224)
    info = common.machine()
    print(common.machine_line(info))
    loads = [common.load_text()]
    rows, original = [], training.CachedViews
    try:
        for seed in args.seeds:
            for variant in args.variants:
                training.CachedViews = patched_views(variant)
                cfg = Config.for_profile(
                    "full",
                    **{k: getattr(base, k) for k in ("data_dir", "source", "backbone", "weights")},
                    seed=seed,
                    run_name=f"map-augmentation-{variant}-{seed}",
                )
                table = ra.holdout_table(common.official_table(cfg), seed)
                t0 = time.perf_counter()
                result = training.train(cfg, table, restart=True, verbose=0)
                history = result.history
                head = history[history["phase"] == "head"]
                row = {
                    "seed": seed,
                    "variant": variant,
                    "head-only acc": float(head.loc[head["val_loss"].idxmin(), "val_accuracy"]),
                    "fine-tuned acc": ra.val_accuracy(result.model, cfg, table),
                    "fine-tune epochs": int((history["phase"] == "fine_tune").sum()),
                    "fine-tune s": result.info.get("fine_tune_seconds", 0.0),
                    "train() wall s": round(time.perf_counter() - t0, 1),
                }
                print(row)
                rows.append(row)
    finally:
        training.CachedViews = original
    loads.append(common.load_text())
    summary = []
    for variant in args.variants:
        accs = [r["fine-tuned acc"] for r in rows if r["variant"] == variant]
        summary.append({"variant": variant, "mean fine-tuned acc": float(np.mean(accs)), "seeds": len(accs)})
    body = "\n\n".join(
        [
            "MobileNetV2 ImageNet weights, library defaults; per seed, 510 training images (5 per "
            "class) train and the other 510 score (the official validation images are not used). "
            "`none`: the cached views only; `shift`: each map moved by up to one cell, a new draw "
            "every epoch (the library's default); `flip`: each map mirrored with probability 1/2.",
            common.markdown_table(rows),
            common.markdown_table(summary),
        ]
    )
    print(body)
    if not args.no_write:
        common.write_section(
            SECTION,
            "Fine-tuning from cached maps: augmenting the maps (held-out training images)",
            body,
            info,
            loads,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
