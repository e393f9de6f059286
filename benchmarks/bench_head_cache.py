"""The head phase by feature caching vs. the plain frozen `model.fit`, same images, same epochs.

Both paths run through `flowerlib.train.train` with `fine_tune_epochs=0` (only
the head phase) and early stopping effectively off (`patience = epochs`), so
each trains the head for exactly the same number of epochs on the same images:

- plain: the frozen backbone inside `model.fit`; every epoch pushes every
  (augmented) training image and every validation image through it;
- cached, cold: one extraction pass over the training images for each of
  `1 + cache_views` views (the image and its augmented views) and one over
  the validation images, written to the cache, then the head alone trains on
  the features for the same epochs;
- cached, warm: the same again with the cache already on disk (e.g. trying
  another head learning rate): only the head's training;
- cached, cold, `cache_views=0`: one pass per image, no augmented views.

- cached, cold, with the other extraction: XLA-compiled if the default
  (`jit_compile="auto"`) does not compile on this machine, else without XLA.

The head phase's time is what `train` reports: `info["extract_seconds"]`
(zero for the plain path) + `info["head_seconds"]` (the fit with its per-epoch
checkpoints); the model building and final saving common to all variants are
left out of it (the whole `train()` call is shown too).

    .venv/bin/python benchmarks/bench_head_cache.py             # MobileNetV2 (ImageNet weights), ~5 min
    .venv/bin/python benchmarks/bench_head_cache.py --backbone resnet50   # weights=None, ~15 min
    .venv/bin/python benchmarks/bench_head_cache.py --quick     # a sanity run
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import _common as common

SECTION = "bench_head_cache"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs, 1 training image per class")
    parser.add_argument(
        "--backbone",
        default="mobilenet_v2",
        choices=("mobilenet_v2", "resnet50"),
        help="mobilenet_v2 with the ImageNet weights file (default), or resnet50 with weights=None",
    )
    parser.add_argument("--weights", type=Path, default=common.MOBILENET_V2_WEIGHTS)
    parser.add_argument("--epochs", type=int, help="head epochs (default: Config's head_epochs; quick 3)")
    parser.add_argument("--train-per-class", type=int, help="training images per class (default 2; quick 1)")
    parser.add_argument("--val-per-class", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=common.DEFAULT_DATA_DIR)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    common.setup_tensorflow()
    import pandas as pd

    from flowerlib import Layout
    from flowerlib.train import train

    loads = [common.load_text()]
    info = common.machine()
    print(common.machine_line(info))
    weights = None
    if args.backbone == "mobilenet_v2":
        weights = str(common.require(args.weights, "The MobileNetV2 ImageNet weights file"))
    cfg = common.real_data_config(args.data_dir, backbone=args.backbone, weights=weights, image_size=224)
    epochs = args.epochs or (3 if args.quick else cfg.head_epochs)
    cfg = cfg.replace(head_epochs=epochs, fine_tune_epochs=0, patience=epochs)
    table = common.official_table(cfg)
    n_train = args.train_per_class or (1 if args.quick else 2)
    parts = [
        common.per_class(table[table["split"] == "train"], n_train).assign(split="train"),
        common.per_class(table[table["split"] == "val"], args.val_per_class).assign(split="val"),
    ]
    subset = pd.concat(parts, ignore_index=True)
    counts = subset["split"].value_counts().to_dict()
    print(f"{args.backbone}, weights={weights}, {epochs} epochs, images: {counts}; load {loads[0]}")

    def clear_cache() -> None:
        shutil.rmtree(Layout(cfg.data_dir).cache_dir, ignore_errors=True)

    from flowerlib.runtime import use_jit

    other_jit = "off" if use_jit(cfg) else "on"  # the other extraction, XLA or not
    variants = [
        ("cached, cold cache", dict(cache_features=True), True),
        ("plain frozen `model.fit`", dict(cache_features=False), False),
        ("cached, warm cache (features on disk)", dict(cache_features=True), False),
        ("cached, cold cache, `cache_views=0`", dict(cache_features=True, cache_views=0), True),
        (
            f"cached, cold cache, `jit_compile={other_jit!r}`",
            dict(cache_features=True, jit_compile=other_jit),
            True,
        ),
    ]
    results = []
    for i, (name, changes, cold) in enumerate(variants):
        if cold:
            clear_cache()
        run_cfg = cfg.replace(run_name=f"bench-head-{i}", **changes)
        with common.Stopwatch() as wall:
            out = train(run_cfg, subset, restart=True, verbose=0)
        head = out.history[out.history["phase"] == "head"]
        best = head.loc[head["val_loss"].idxmin()]
        extract = float(out.info.get("extract_seconds", 0.0))
        fit = float(out.info["head_seconds"])
        results.append(
            {
                "head phase": name,
                "views": run_cfg.cache_views if run_cfg.cache_features else "fresh every epoch",
                "head phase s": extract + fit,
                "extraction s": extract if run_cfg.cache_features else float("nan"),
                "fit s": fit,
                "median epoch s": float(head["seconds"].median()),
                "epochs": len(head),
                "`train()` wall s": wall.seconds,
                "best val acc": float(best["val_accuracy"]),
            }
        )
        loads.append(common.load_text())
        print(
            f"{name}: head phase {extract + fit:.1f} s (extraction {extract:.1f} s), "
            f"best val accuracy {best['val_accuracy']:.3f}; load {loads[-1]}"
        )
    clear_cache()

    plain = results[1]["head phase s"]
    for r in results:
        r["speed-up vs plain"] = plain / r["head phase s"]
    goal = results[0]["speed-up vs plain"]
    n_tr, n_val = counts.get("train", 0), counts.get("val", 0)
    compiled = "XLA-compiled once per pass" if use_jit(cfg) else "traced once per pass, no XLA"
    # If an extraction pass cost per image what a plain epoch's forward pass costs:
    ideal = epochs * (n_tr + n_val) / ((1 + cfg.cache_views) * n_tr + n_val)
    ideal0 = epochs * (n_tr + n_val) / (n_tr + n_val)
    body = "\n\n".join(
        [
            f"Backbone `{args.backbone}` at 224 px, weights "
            f"{'`' + Path(weights).name + '` (ImageNet)' if weights else '`None` (same FLOP)'}; "
            f"{counts.get('train', 0)} training images ({n_train} per class) and "
            f"{counts.get('val', 0)} validation images ({args.val_per_class} per class) from the "
            f"official split; batch size {cfg.batch_size}; **{epochs} head epochs in every variant** "
            "(early stopping off: patience = epochs). Head phase = extraction + fit as `train()` "
            "reports them (`info['extract_seconds']` + `info['head_seconds']`, the fit including its "
            "per-epoch checkpoints); `train()` wall adds model building and the final save. "
            f"`jit_compile={cfg.jit_compile!r}` unless noted.",
            common.markdown_table(results),
            f"Caching speed-up with the library's defaults (cold cache, {cfg.cache_views} augmented "
            f"views): **{goal:.1f}x** (goal >= 20x). What the comparison includes: the cold cache "
            f"pays {1 + cfg.cache_views} extraction passes over the training images (the image and "
            f"{cfg.cache_views} augmented views; {compiled}) and one "
            "over the validation images; the plain path pays a full forward pass of every training "
            "and validation image in every epoch (uncompiled `model.fit`). The speed-up is bounded by "
            f"the images pushed through the backbone: epochs × (train + val) / ((1 + views) × train + "
            f"val) = {ideal:.1f}x with {cfg.cache_views} views, {ideal0:.0f}x with none, if an "
            "extraction pass cost per image what a plain epoch does. So it grows with the number of epochs "
            "and is largest when the cache is reused (warm): a second head with other settings costs "
            "seconds. The plain path sees a freshly augmented image every epoch; the cache offers "
            f"{1 + cfg.cache_views} fixed views per image.",
        ]
    )
    print()
    print(body)
    if not args.no_write:
        section = SECTION if args.backbone == "mobilenet_v2" else f"{SECTION}-{args.backbone}"
        path = common.write_section(
            section, f"Head phase: feature cache vs. plain frozen fit ({args.backbone})", body, info, loads
        )
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
