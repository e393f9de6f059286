"""The path users run, phase by phase, next to the isolated rates of the same model in the same run.

Times `train.train(cfg)` on the real images (feature extraction, which also
writes the feature maps that enter the unfrozen stages; head phase; each
fine-tuning epoch, which runs only the top of the network, `model.top_model`,
on those cached maps), the calibration's predict (the top on the cached
validation maps, as `train.train` runs it), and notebook 04's test passes
(`evaluate.evaluate` on the whole part and `evaluate.with_tta` on 1,000 of its
images drawn by `Evaluation.sample`, on the official validation images: the
shared folder has no test images). Beside each phase: the isolated rate of the
same computation measured in this run, before and after the real path, on
in-memory tensors (`cache.extract_features` with the maps; the classifier's
`model.predict`; the compiled top model's `fit` and `predict` on feature maps
of the cut's shape; the float32 matmul ceiling). Then where the time goes: JPEG
decode (full size and DCT-downscaled), the antialiased resize, the
augmentation layers and the input pipeline with and without augmentation, each
alone on all cores. The notebook's figures are not timed.

    .venv/bin/python benchmarks/bench_real_path.py --fine-tune-epochs 2   # ResNet50 (see README.md for the time)
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


def extract_rate(extractor, batches, batch_size: int, jit: bool) -> float:
    """Images/s of `cache.extract_features` with an extractor that also outputs the feature maps.

    As `bench_extraction.extract_timed` (the first batch, which pays tracing, is
    left out), for the two outputs `(maps, features)` that the feature cache
    extracts in one pass.
    """
    from flowerlib.cache import extract_features

    timed = be.Timed(batches)
    (maps, feats), _ = extract_features(extractor, timed, jit_compile=jit, batch_size=batch_size)
    out = timed.result(time.perf_counter())
    assert len(maps) == len(feats) == out["images"], (maps.shape, feats.shape)
    return out["steady_images"] / out["steady_s"]


def isolated(models, data, cfg) -> dict[str, float]:
    """The isolated rates on in-memory tensors (images/s; ceiling in GFLOP/s).

    `models`: `(extractor, classifier, top)`: the feature cache's extractor
    (BatchNorm folded, with the maps), the classifier (for the test passes) and
    the compiled, warm top model (`model.top_model`, fine-tuning trainable flags).
    `data`: `(batches, arrays, maps, labels)`: image batches and the same images
    as one array; feature maps of the cut's shape and their labels.
    """
    from flowerlib.runtime import use_jit

    extractor, classifier, top = models
    batches, arrays, maps, labels = data
    b = cfg.batch_size
    top_pred = be.predict_timed(top, maps, b)
    pred = be.predict_timed(classifier, arrays, b)
    return {
        "ceiling": max(be.median(be.matmul_rate(2048, 1.0, jit=j)) for j in (False, True)),
        "extract": extract_rate(extractor, batches, b, jit=use_jit(cfg)),
        "predict": pred["images"] / pred["steady_s"],
        "top_fit": be.fit_rate(top, maps, labels, b),
        "top_predict": top_pred["images"] / top_pred["steady_s"],
    }


def cached_val_maps(cfg, table, cut: str):
    """The validation features and maps that `train.train` cached (what its calibration predicts from).

    Found by the cache's own keys: the features file whose rows are the val part
    (no views), and the maps file keyed by it and `cut`.
    """
    import json
    from types import SimpleNamespace

    from flowerlib import Layout
    from flowerlib.cache import activations_key, activations_path, table_fingerprint

    rows = table_fingerprint(table[table["split"] == "val"])
    for path in sorted(Layout(cfg.data_dir).cache_dir.glob("features-*.npz")):
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta["inputs"]["rows"] != rows or meta["inputs"]["views"] != 0:
                continue
            labels, views = data["labels"], data["views"]
        maps = np.load(activations_path(cfg, activations_key(meta["key"], cut)), mmap_mode="r")
        return SimpleNamespace(activations=maps, labels=labels, views=views)
    raise common.BenchmarkError(f"No cached validation features in {Layout(cfg.data_dir).cache_dir}.")


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
    n_iso, n_maps, n_bd = (64, 64, 64) if args.quick else (128, 128, 256)
    n_sample = 1000  # notebook 04 compares flip TTA on this many test images (`Evaluation.sample`)

    common.setup_tensorflow()
    import flops
    import pandas as pd
    import tensorflow as tf

    from flowerlib import Layout
    from flowerlib.backbones import get_backbone
    from flowerlib.evaluate import evaluate, with_tta
    from flowerlib.model import (
        backbone_of,
        build_classifier,
        compile_for_phase,
        feature_extractor,
        fine_tune_cut,
        predictions_layer,
        set_trainable,
        top_model,
    )
    from flowerlib.pipeline import make_dataset
    from flowerlib.runtime import precision_policy, seed_everything
    from flowerlib.train import CachedViews, train

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
    if not (cfg.cache_features and cfg.fine_tune_epochs > 0):
        raise common.BenchmarkError(
            "This benchmark times fine-tuning from cached feature maps: it needs cache_features and "
            f"fine_tune_epochs > 0 (cache_features={cfg.cache_features}, "
            f"fine_tune_epochs={cfg.fine_tune_epochs})."
        )
    table = common.official_table(cfg)
    if per_class:
        table = pd.concat([common.per_class(table[table["split"] == p], per_class) for p in ("train", "val")])
    n_tr, n_val = int((table["split"] == "train").sum()), int((table["split"] == "val").sum())
    b, stages = cfg.batch_size, cfg.fine_tune_stages

    # The models of the isolated rates, built with train's precision, and their in-memory inputs:
    # validation images (decoded once) and random feature maps of the cut's shape.
    seed_everything(cfg.seed)
    with precision_policy(cfg):
        classifier = build_classifier(cfg)
        cut = fine_tune_cut(classifier, stages)
        if cut is None:
            raise common.BenchmarkError(
                f"The last {stages} stage(s) of {args.backbone} have no single input map: "
                "train.train fine-tunes them on images, not from cached maps."
            )
        extractor = feature_extractor(classifier, fold_batchnorm=True, activations=cut)
        tuner = build_classifier(cfg)  # its own weights: fitting it leaves `classifier` alone
        set_trainable(tuner, "fine_tune", stages)
        top = top_model(tuner, stages)
        compile_for_phase(top, "fine_tune", cfg)
    val_rows = table[table["split"] == "val"].iloc[: max(2 * b, n_iso // b * b)]
    ds = make_dataset(val_rows, cfg.data_dir, image_size=cfg.image_size, batch_size=b, training=False)
    batches = [(tf.constant(x), tf.constant(y)) for x, y in ds]
    arrays = np.concatenate([x.numpy() for x, _ in batches])
    map_shape = tuple(int(d) for d in backbone_of(classifier).get_layer(cut).output.shape[1:])
    rng = np.random.default_rng(0)
    maps = rng.random((n_maps, *map_shape), dtype=np.float32)  # >= 0, as after a ReLU
    map_labels = rng.integers(0, cfg.num_classes, n_maps).astype("int32")
    top.fit(maps[:b], map_labels[:b], batch_size=b, epochs=1, verbose=0)  # trace the train step
    top.predict(maps[:b], batch_size=b, verbose=0)  # trace predict
    classifier.predict(arrays[:b], batch_size=b, verbose=0)
    models, data = (extractor, classifier, top), (batches, arrays, maps, map_labels)

    # FLOP per image: the whole backbone forward (extraction, test passes); the top's forward
    # (the unfrozen stages + the head) and its training step (plus twice the forward FLOP of
    # what trains, for the backward pass: flops.train_step_flops).
    spec = get_backbone(cfg.backbone)
    per_stage = flops.backbone_flops(backbone_of(classifier))
    trained = [spec.stage_name(i) for i in range(stages)]
    head_flop = 2 * int(np.prod(predictions_layer(classifier).kernel.shape))  # the Dense head
    top_stages = {s: per_stage.get(s, 0) for s in trained}
    top_counts = {**top_stages, "head": head_flop, "total": sum(top_stages.values()) + head_flop}
    fwd = per_stage["total"] / 1e9
    top_fwd = top_counts["total"] / 1e9
    top_step = flops.train_step_flops(top_counts, [*trained, "head"]) / 1e9

    iso = [isolated(models, data, cfg)]
    loads.append(common.load_text())
    print("isolated (before):", {k: round(v, 2) for k, v in iso[0].items()})

    # The real path: train.train on a cold feature cache, then the calibration's predict again
    # (the top on the cached validation maps, as train.train runs it) and notebook 04's passes.
    shutil.rmtree(Layout(cfg.data_dir).cache_dir, ignore_errors=True)
    with common.Stopwatch() as t_train:
        result = train(cfg, table, restart=True, verbose=2)
    loads.append(common.load_text())
    val_maps = cached_val_maps(cfg, table, cut)
    with common.Stopwatch() as t_cal:
        top_model(result.model, stages).predict(CachedViews(val_maps, b, training=False), verbose=0)
    with common.Stopwatch() as t_test:
        ev = evaluate(result.model, table, cfg, part="val")
    sample = ev.sample(n_sample, seed=cfg.seed)  # notebook 04: plain and flipped on the same images
    with common.Stopwatch() as t_tta:
        with_tta(result.model, sample, batch_size=b)
    n_tta = len(sample.table)
    loads.append(common.load_text())

    iso.append(isolated(models, data, cfg))
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
    epoch_iso = (n_tr + n_val) / (n_tr / ref["top_fit"] + n_val / ref["top_predict"])
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
        f"extraction with the `{cut}` maps ({n_tr} train × {1 + views} views + {n_val} val)",
        n_ex,
        inf["extract_seconds"],
        ref["extract"],
        "in-memory `extract_features`, maps and features (first batch left out)",
        n_ex * fwd,
    )
    add(f"head phase ({cfg.head_epochs} epochs on cached features)", 0, inf["head_seconds"], float("nan"), "")
    ft = result.history[result.history["phase"] == "fine_tune"]
    for e, s in zip(ft["epoch"], ft["seconds"], strict=True):
        add(
            f"fine-tuning epoch {e} (top on cached maps: {n_tr} train + {n_val} val)",
            n_tr + n_val,
            float(s),
            epoch_iso,
            "in-memory maps: top `fit` + top `predict`, same mix",
            n_tr * top_step + n_val * top_fwd,
        )
    add(
        "calibration (top `predict` on the cached val maps)",
        n_val,
        t_cal.seconds,
        ref["top_predict"],
        "in-memory maps: top `predict`",
        n_val * top_fwd,
    )
    for name, n, sw in (
        ("test pass `evaluate` (val part)", n_val, t_test),
        (f"flip-TTA pass `with_tta` on `sample({n_sample})` (val part)", n_tta, t_tta),
    ):
        add(name, n, sw.seconds, ref["predict"], "in-memory images: classifier `model.predict`", n * fwd)
    rest = t_train.seconds - inf["extract_seconds"] - inf["head_seconds"] - inf.get("fine_tune_seconds", 0)
    add("rest of `train.train` (build, calibration, save)", 0, rest, float("nan"), "")
    add("`train.train` in all", 0, t_train.seconds, float("nan"), "")

    def iso_row(when: str, r: dict[str, float], mm: float) -> dict:
        return {
            "isolated (in-memory)": when,
            "matmul ceiling GFLOP/s": mm,
            "extraction + maps img/s": r["extract"],
            "classifier `predict` img/s": r["predict"],
            "top `predict` img/s": r["top_predict"],
            "top `fit` img/s": r["top_fit"],
            "top `fit` GFLOP/s": r["top_fit"] * top_step,
            "top `fit` GFLOP/s ÷ ceiling": r["top_fit"] * top_step / mm,
        }

    iso_rows = [
        iso_row(when, r, r["ceiling"]) for when, r in zip(("before the real path", "after"), iso, strict=True)
    ]
    iso_rows.append(iso_row("mean (the phases' isolated rates), best ceiling", ref, ceiling))
    bd_table = [{"step alone (all cores)": k, "images/s": v} for k, v in bd.items()]

    # What the remaining input-pipeline levers of issue 11 would save, from the rates above
    # (this run's image counts). The conv4-cache levers (fine-tuning, validation and calibration
    # from cached maps) are implemented: the fine-tuning and calibration rows above measure them.
    decodes = n_ex + n_val + n_tta  # extraction (each view decodes its image), evaluate, with_tta
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
            "cheaper augmentation (cost of rotation + zoom), the cached views",
            n_tr * views,
            1 / bd["pipeline, with augmentation"] - 1 / bd["pipeline, no augmentation"],
        ),
        ("test: one decode for image and flip (the TTA sample)", n_tta, 1 / bd["pipeline, no augmentation"]),
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
    trainable = int(sum(int(np.prod(w.shape)) for w in top.trainable_weights))
    body = "\n\n".join(
        [
            f"{args.backbone} at {cfg.image_size} px, batch {b}, `weights={cfg.weights}`, "
            f"{stages} stage(s) fine-tuned ({', '.join(trained)}) from the cached `{cut}` maps "
            f"({'×'.join(map(str, map_shape))}, float16 on disk): {fwd:.2f} GFLOP/image for the whole "
            f"forward (extraction, test passes), {top_fwd:.2f} for the top's forward (unfrozen stages + "
            f"head), ≈{top_step:.2f} per top training step (forward + 2 × the forward of its trainable "
            "stages and head for the backward), "
            f"{trainable:,} trainable parameters. `train.train(cfg)` on {what} of "
            f"`../shared/flowers102`, cold feature cache, {cfg.head_epochs} head epochs, "
            f"{cfg.fine_tune_epochs} fine-tuning epochs. The test passes run on the val part "
            f"(there are no test images here): `evaluate` on all of it, `with_tta` on "
            f"`sample({n_sample}, seed={cfg.seed})` ({n_tta} images), as notebook 04. Isolated rates: "
            "the mean of two measurements (before and after the real path), on in-memory tensors: "
            f"{len(arrays)} images (extraction, classifier `predict`) and {n_maps} random float32 maps "
            "of the cut's shape (the compiled top model, `set_trainable(..., 'fine_tune')` + "
            "`compile_for_phase`, warm: `fit` and `predict`); ceiling: the best "
            f"2048² float32 matmul, **{ceiling:.0f} GFLOP/s**. Real-path rates count every second, "
            "tracing and compilation included; fine-tuning epochs: Checkpoint's `seconds` (train + val); "
            "the calibration is timed again after `train.train` (it is also in its rest).",
            common.markdown_table(rows),
            "Isolated rates; the top's `fit` at ≈"
            f"{top_step:.2f} GFLOP per image (goal: GFLOP/s ÷ ceiling ≥ 0.6):",
            common.markdown_table(iso_rows),
            f"Where the time goes: each step alone on {len(bd_rows)} training JPEGs (file bytes, "
            "decoded or resized images held in memory for the later steps):",
            common.markdown_table(bd_table),
            "Issue 11's conv4-cache lever is implemented: fine-tuning, its validation and the "
            "calibration run the top on the cached maps (the rows above). What the input-pipeline "
            "levers would still save (upper bounds: pipeline work that overlaps the model only costs "
            "what it takes from the model's cores; the levers overlap), from the rates above, for this "
            f"run's image counts; the path (`train.train` + both test passes) took {path_s:.0f} s:",
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
