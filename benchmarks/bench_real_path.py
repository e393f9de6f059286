"""The path users run, phase by phase, next to the isolated rates of the same model in the same run.

Times `train.train(cfg)` on the real images (feature extraction, head phase,
each fine-tuning epoch), the calibration's validation predict, and notebook
04's test passes (`evaluate.evaluate` and `evaluate.with_tta`, on the official
validation images: the shared folder has no test images). Beside each phase:
the isolated rate of the same model measured in this run, before and after the
real path, with `bench_extraction`'s functions (in-memory extraction,
`model.predict`, a fine-tuning `fit` step, the float32 matmul ceiling). Then
where the time goes: JPEG decode (full size and DCT-downscaled), the
antialiased resize, the augmentation layers and the input pipeline with and
without augmentation, each alone on all cores. The notebook's figures are not
timed.

    .venv/bin/python benchmarks/bench_real_path.py --fine-tune-epochs 2   # ResNet50, ~15 min on 2 cores
    .venv/bin/python benchmarks/bench_real_path.py --quick                # a sanity run
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import _common as common
import bench_extraction as be
import numpy as np

SECTION = "bench_real_path"


def drain(ds) -> float:
    """Images/s of iterating a dataset to the end (every image, every second counted)."""
    t0, n = time.perf_counter(), 0
    for item in ds:
        x = item[0] if isinstance(item, tuple) else item
        n += int(x.shape[0]) if x.shape.rank == 4 else 1
    return n / (time.perf_counter() - t0)


def breakdown(rows, cfg) -> dict[str, float]:
    """Each input-pipeline step alone, on all cores (images/s); file bytes and decoded images in memory."""
    import tensorflow as tf

    from flowerlib.pipeline import augmenter, make_dataset, resize_and_crop

    at, s, b = tf.data.AUTOTUNE, cfg.image_size, cfg.batch_size
    files = tf.data.Dataset.from_tensor_slices([str(cfg.data_dir / f) for f in rows["file"]])
    raw = files.map(tf.io.read_file, num_parallel_calls=at).cache()
    drain(raw)  # file bytes in memory: decoding alone is timed below

    def decode(ratio: int):
        return lambda d: tf.io.decode_jpeg(d, channels=3, ratio=ratio, dct_method="INTEGER_FAST")

    out = {f"decode ratio {r}": drain(raw.map(decode(r), num_parallel_calls=at)) for r in (1, 2, 4)}
    decoded = raw.map(decode(1), num_parallel_calls=at).cache()
    drain(decoded)
    out["resize (antialiased) + crop"] = drain(
        decoded.map(lambda im: resize_and_crop(im, s), num_parallel_calls=at)
    )
    small = raw.map(decode(2), num_parallel_calls=at).cache()
    drain(small)
    out["resize + crop after decode ratio 2"] = drain(
        small.map(lambda im: resize_and_crop(im, s), num_parallel_calls=at)
    )
    resized = np.stack(list(decoded.map(lambda im: resize_and_crop(im, s)).as_numpy_iterator()))
    aug = augmenter(cfg.seed)
    batches = tf.data.Dataset.from_tensor_slices(resized).batch(b)
    out["augmentation layers alone"] = drain(
        batches.map(lambda x: aug(x, training=True), num_parallel_calls=at)
    )
    for name, training in (("pipeline, no augmentation", False), ("pipeline, with augmentation", True)):
        ds = make_dataset(rows, cfg.data_dir, image_size=s, batch_size=b, training=training, seed=cfg.seed)
        out[name] = drain(ds)
    return out


def isolated(models, arrays, batches, x_train, y_train, cfg) -> dict[str, float]:
    """The isolated rates of `bench_extraction`, on in-memory tensors (images/s; ceiling in GFLOP/s)."""
    from flowerlib.runtime import use_jit

    extractor, classifier, fine = models
    b = cfg.batch_size
    ex = be.extract_timed(extractor, batches, b, jit=use_jit(cfg))
    pred = be.predict_timed(classifier, arrays, b)
    return {
        "ceiling": max(be.median(be.matmul_rate(2048, 1.0, jit=j)) for j in (False, True)),
        "extract": ex["steady_images"] / ex["steady_s"],
        "predict": pred["images"] / pred["steady_s"],
        "fine_tune": be.fit_rate(fine, x_train, y_train, b),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", choices=("resnet50", "mobilenet_v2"), default="resnet50")
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--per-class", type=int, help="images per class and part (default all: 10; quick 1)")
    parser.add_argument("--quick", action="store_true", help="102 + 102 images, short phases: a sanity run")
    parser.add_argument("--data-dir", type=Path, default=common.DEFAULT_DATA_DIR.parent / "bench-real-path")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    per_class = args.per_class or (1 if args.quick else None)
    n_iso, n_ft, n_bd = (64, 32, 64) if args.quick else (128, 64, 256)

    common.setup_tensorflow()
    import flops
    import pandas as pd
    import tensorflow as tf

    from flowerlib import Layout
    from flowerlib.backbones import get_backbone
    from flowerlib.evaluate import evaluate, with_tta
    from flowerlib.model import backbone_of, build_classifier, feature_extractor
    from flowerlib.pipeline import dataset_for, make_dataset
    from flowerlib.runtime import seed_everything
    from flowerlib.train import train

    loads = [common.load_text()]
    info = common.machine()
    print(common.machine_line(info), f"\nload average: {loads[0]}")
    weights = (
        None
        if args.backbone == "resnet50"
        else str(common.require(common.MOBILENET_V2_WEIGHTS, "MobileNetV2 weights"))
    )
    cfg = common.real_data_config(args.data_dir, backbone=args.backbone, weights=weights)
    cfg = cfg.replace(
        run_name=f"bench-real-path-{args.backbone}",
        fine_tune_epochs=args.fine_tune_epochs,
        **({"head_epochs": 2} if args.quick else {}),
    )
    table = common.official_table(cfg)
    if per_class:
        table = pd.concat([common.per_class(table[table["split"] == p], per_class) for p in ("train", "val")])
    n_tr, n_val = int((table["split"] == "train").sum()), int((table["split"] == "val").sum())
    b = cfg.batch_size

    # The models of the isolated rates, and their in-memory images (validation images, decoded once).
    seed_everything(cfg.seed)
    classifier = build_classifier(cfg)
    extractor = feature_extractor(classifier, fold_batchnorm=True)
    val_rows = table[table["split"] == "val"].iloc[: max(2 * b, n_iso // b * b)]
    ds = make_dataset(val_rows, cfg.data_dir, image_size=cfg.image_size, batch_size=b, training=False)
    batches = [(tf.constant(x), tf.constant(y)) for x, y in ds]
    arrays = np.concatenate([x.numpy() for x, _ in batches])
    x_train = np.resize(arrays, (n_ft, *arrays.shape[1:]))
    y_train = np.random.default_rng(0).integers(0, cfg.num_classes, n_ft).astype("int32")
    fine = be.fine_tune_model(cfg, cfg.fine_tune_stages, x_train, y_train)
    classifier.predict(arrays[:b], batch_size=b, verbose=0)  # trace predict
    models = (extractor, classifier, fine)
    spec = get_backbone(cfg.backbone)
    per_stage = flops.backbone_flops(backbone_of(classifier))
    trained = [spec.stage_name(i) for i in range(cfg.fine_tune_stages)]
    fwd = per_stage["total"] / 1e9
    step = flops.train_step_flops(per_stage, trained) / 1e9
    frozen = fwd - sum(per_stage.get(s, 0) for s in trained) / 1e9

    iso = [isolated(models, arrays, batches, x_train, y_train, cfg)]
    loads.append(common.load_text())
    print("isolated (before):", {k: round(v, 2) for k, v in iso[0].items()})

    # The real path: train.train on a cold feature cache, then the val predict and notebook 04's passes.
    shutil.rmtree(Layout(cfg.data_dir).cache_dir, ignore_errors=True)
    with common.Stopwatch() as t_train:
        result = train(cfg, table, restart=True, verbose=2)
    loads.append(common.load_text())
    val = dataset_for(cfg, table, "val", training=False)
    with common.Stopwatch() as t_cal:
        result.model.predict(val, verbose=0)  # what train.calibrate runs
    with common.Stopwatch() as t_test:
        ev = evaluate(result.model, table, cfg, part="val")
    with common.Stopwatch() as t_tta:
        with_tta(result.model, ev, batch_size=b)
    loads.append(common.load_text())

    iso.append(isolated(models, arrays, batches, x_train, y_train, cfg))
    loads.append(common.load_text())
    print("isolated (after):", {k: round(v, 2) for k, v in iso[1].items()})
    bd_rows = table[table["split"] == "train"].iloc[:n_bd]
    bd = breakdown(bd_rows, cfg)
    loads.append(common.load_text())
    ref = {k: float(np.mean([r[k] for r in iso])) for k in iso[0]}
    ceiling = max(r["ceiling"] for r in iso)

    # The table of phases.
    inf = result.info
    views = cfg.cache_views if cfg.augment else 0
    n_ex = n_tr * (1 + views) + n_val
    epoch_iso = (n_tr + n_val) / (n_tr / ref["fine_tune"] + n_val / ref["predict"])
    rows: list[dict] = []

    def add(phase, images, seconds, isolated_rate, note, gflop=float("nan")):
        rate = images / seconds if images else float("nan")
        rows.append(
            {
                "phase": phase,
                "images": images or "–",
                "s": seconds,
                "real images/s": rate,
                "isolated images/s": isolated_rate,
                "real ÷ isolated": rate / isolated_rate,
                "GFLOP/s ÷ ceiling": gflop / seconds / ceiling,
                "isolated counts": note,
            }
        )

    add(
        f"extraction ({n_tr} train × {1 + views} views + {n_val} val)",
        n_ex,
        inf["extract_seconds"],
        ref["extract"],
        "in-memory `extract_features` (first batch left out)",
        n_ex * fwd,
    )
    add(f"head phase ({cfg.head_epochs} epochs on cached features)", 0, inf["head_seconds"], float("nan"), "")
    ft = result.history[result.history["phase"] == "fine_tune"]
    for e, s in zip(ft["epoch"], ft["seconds"], strict=True):
        add(
            f"fine-tuning epoch {e} ({n_tr} train + {n_val} val)",
            n_tr + n_val,
            float(s),
            epoch_iso,
            "in-memory `fit` step + `predict`, same mix",
            n_tr * step + n_val * fwd,
        )
    for name, sw in (
        ("calibration (val `predict`)", t_cal),
        ("test pass `evaluate` (val part)", t_test),
        ("flip-TTA pass `with_tta` (val part)", t_tta),
    ):
        add(name, n_val, sw.seconds, ref["predict"], "in-memory `model.predict`", n_val * fwd)
    rest = t_train.seconds - inf["extract_seconds"] - inf["head_seconds"] - inf.get("fine_tune_seconds", 0)
    add("rest of `train.train` (build, calibration, save)", 0, rest, float("nan"), "")
    add("`train.train` in all", 0, t_train.seconds, float("nan"), "")

    iso_rows = [
        {
            "isolated (in-memory)": when,
            "matmul ceiling GFLOP/s": r["ceiling"],
            "extraction img/s": r["extract"],
            "`predict` img/s": r["predict"],
            "fine-tuning `fit` img/s": r["fine_tune"],
            "fine-tuning GFLOP/s ÷ ceiling": r["fine_tune"] * step / r["ceiling"],
        }
        for when, r in zip(("before the real path", "after"), iso, strict=True)
    ]
    bd_table = [{"step alone (all cores)": k, "images/s": v} for k, v in bd.items()]

    # What the levers of issue 11 would save, from the rates above (this run's image counts).
    e = max(len(ft), 1)
    decodes = n_ex + e * (n_tr + n_val) + 3 * n_val
    aug_images = n_tr * views + e * n_tr
    ft_train_s, ft_val_s = n_tr / ref["fine_tune"], n_val / ref["predict"]
    levers = [
        ("decode once (uint8 cache at 224 px)", decodes - n_tr - n_val, 1 / bd["pipeline, no augmentation"]),
        (
            "DCT downscaling (`ratio=2`) before the resize, every decode",
            decodes,
            1 / bd["decode ratio 1"]
            + 1 / bd["resize (antialiased) + crop"]
            - 1 / bd["decode ratio 2"]
            - 1 / bd["resize + crop after decode ratio 2"],
        ),
        (
            "cheaper augmentation (cost of rotation + zoom)",
            aug_images,
            1 / bd["pipeline, with augmentation"] - 1 / bd["pipeline, no augmentation"],
        ),
        ("fine-tune from cached conv4 (train steps)", e, ft_train_s * frozen / step),
        ("validation + calibration from the cache", e + 1, ft_val_s * frozen / fwd),
        ("test: one decode for image and flip", n_val, 1 / bd["pipeline, no augmentation"]),
    ]
    path_s = t_train.seconds + t_test.seconds + t_tta.seconds
    lever_rows = [
        {
            "lever": k,
            "count": n,
            "≈ s saved each": s,
            "≈ s saved in this run": n * s,
            "of the path": f"{n * s / path_s:.0%}",
        }
        for k, n, s in levers
    ]

    what = f"the official train/val images ({n_tr} + {n_val}" + (
        f", {per_class} per class)" if per_class else ")"
    )
    body = "\n\n".join(
        [
            f"{args.backbone} at {cfg.image_size} px, batch {b}, `weights={cfg.weights}`, "
            f"{cfg.fine_tune_stages} stage(s) fine-tuned ({fwd:.2f} GFLOP/image forward, ≈{step:.2f} per "
            f"training step, {frozen:.2f} of it in the frozen stages), `train.train(cfg)` on {what} of "
            f"`../shared/flowers102`, cold feature cache, {cfg.head_epochs} head epochs, "
            f"{cfg.fine_tune_epochs} fine-tuning epochs. The test passes run on the val part "
            "(there are no test images here). Isolated rates: the mean of two measurements (before and "
            f"after the real path) on {len(arrays)} in-memory images ({n_ft} for `fit`); ceiling: the best "
            f"2048² float32 matmul, **{ceiling:.0f} GFLOP/s**. Real-path rates count every second, "
            "tracing and compilation included; fine-tuning epochs: Checkpoint's `seconds` (train + val).",
            common.markdown_table(rows),
            common.markdown_table(iso_rows),
            f"Where the time goes: each step alone on {len(bd_rows)} training JPEGs (file bytes, "
            "decoded or resized images held in memory for the later steps):",
            common.markdown_table(bd_table),
            "Estimated savings (upper bounds: pipeline work that overlaps the model only costs what it "
            "takes from the model's cores; the levers overlap), from the rates above, for this run's "
            f"image counts; the path (`train.train` + both test passes) took {path_s:.0f} s:",
            common.markdown_table(lever_rows),
        ]
    )
    print("\n" + body)
    if not args.no_write:
        path = common.write_section(
            SECTION, f"The real path, phase by phase ({args.backbone})", body, info, loads
        )
        print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
