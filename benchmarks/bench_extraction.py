"""ResNet50 throughput on this machine, side by side with its float32 matmul ceiling.

In one run:

(a) the machine's float32 matrix-multiply rate (2048 x 2048, warm; TensorFlow
    graph and XLA-compiled), the physical ceiling;
(b) frozen ResNet50 feature extraction (224 px, `weights=None`: the same FLOP
    as the ImageNet weights) on in-memory tensors, with plain `model.predict`
    and with the library's own `flowerlib.cache.extract_features` (the feature
    cache's forward pass), XLA-compiled and not (`jit_compile="on"`/`"off"`;
    `flowerlib.runtime.use_jit` says which one `"auto"` picks);
(c) the same extraction through the real input pipeline
    (`flowerlib.pipeline.make_dataset`, training=False) on real JPEGs;
(d) the input pipeline alone (decode + resize + crop), no model;
(e) ResNet50 fine-tuning throughput (a training step with the last stage
    unfrozen and with every stage unfrozen, BatchNorm frozen in both).

The measurements are interleaved in rounds (a b c, b c a, c a b, ...) so that
a change in the machine's load hits every method alike. Ratios: pipeline over
in-memory (goal >= 0.9) and achieved GFLOP/s over the matmul ceiling (goal >= 0.8).

    .venv/bin/python benchmarks/bench_extraction.py            # about 4-5 minutes on 2 cores
    .venv/bin/python benchmarks/bench_extraction.py --quick    # a sanity run, about 1-2 minutes
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import _common as common
import numpy as np

SECTION = "bench_extraction"


def matmul_rate(n: int, seconds: float, jit: bool) -> list[float]:
    """GFLOP/s of `n x n` float32 matmuls, one value per timed block of about 0.25 s."""
    import tensorflow as tf

    a = tf.random.normal((n, n), seed=1)
    b = tf.random.normal((n, n), seed=2)

    @tf.function(jit_compile=jit)
    def mm(a, b):
        return tf.linalg.matmul(a, b)

    mm(a, b).numpy()  # trace, compile, warm
    flop = 2.0 * n**3
    t = time.perf_counter()
    mm(a, b).numpy()
    per_call = max(time.perf_counter() - t, 1e-4)
    reps = max(1, int(0.25 / per_call))
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        t = time.perf_counter()
        for _ in range(reps):
            c = mm(a, b)
        c.numpy()
        rates.append(flop * reps / (time.perf_counter() - t) / 1e9)
    return rates


class Timed:
    """Wraps an iterable of batches; records when each batch is handed out.

    `steady(n_first, t_end)` is the rate after the first batch, which pays
    tracing and XLA compilation.
    """

    def __init__(self, batches):
        self.batches = batches
        self.times: list[float] = []
        self.sizes: list[int] = []

    def __iter__(self):
        self.t_start = time.perf_counter()
        for images, labels in self.batches:
            self.times.append(time.perf_counter())
            self.sizes.append(int(images.shape[0]))
            yield images, labels

    def result(self, t_end: float) -> dict[str, float]:
        n = sum(self.sizes)
        steady_images = n - self.sizes[0]
        steady_seconds = t_end - self.times[1] if len(self.times) > 1 else float("nan")
        return {
            "images": n,
            "first_batch_s": (self.times[1] if len(self.times) > 1 else t_end) - self.t_start,
            "steady_images": steady_images,
            "steady_s": steady_seconds,
            "total_s": t_end - self.t_start,
        }


def extract_timed(extractor, batches, batch_size: int, jit: bool = True) -> dict[str, float]:
    """The library's extraction (XLA-compiled by default) over `batches`, timed."""
    from flowerlib.cache import extract_features

    timed = Timed(batches)
    feats, _ = extract_features(extractor, timed, jit_compile=jit, batch_size=batch_size)
    out = timed.result(time.perf_counter())
    assert feats.shape[0] == out["images"], feats.shape
    return out


def predict_timed(extractor, x: np.ndarray, batch_size: int) -> dict[str, float]:
    """Plain `model.predict` (already warm: its predict function is traced)."""
    t0 = time.perf_counter()
    extractor.predict(x, batch_size=batch_size, verbose=0)
    s = time.perf_counter() - t0
    return {"images": len(x), "first_batch_s": 0.0, "steady_images": len(x), "steady_s": s, "total_s": s}


def decode_timed(rows, data_dir: Path, image_size: int, batch_size: int) -> dict[str, float]:
    from flowerlib.pipeline import make_dataset

    ds = make_dataset(rows, data_dir, image_size=image_size, batch_size=batch_size, training=False)
    timed = Timed(ds)
    for _ in timed:
        pass
    out = timed.result(time.perf_counter())
    # Nothing to compile here, and batches prefetched in the background would flatter a
    # rate that leaves the first one out: count every image over the whole time.
    out["steady_images"], out["steady_s"] = out["images"], out["total_s"]
    return out


def fit_rate(model, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """Images/s of `model.fit` (already compiled and warm) over `x`."""
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return len(x) / (time.perf_counter() - t0)


def fine_tune_model(cfg, stages: int, x: np.ndarray, y: np.ndarray):
    """A classifier with its last `stages` stages unfrozen (BatchNorm frozen), compiled and warm."""
    from flowerlib.model import build_classifier, compile_for_phase, set_trainable

    model = build_classifier(cfg)
    set_trainable(model, "fine_tune", stages)
    compile_for_phase(model, "fine_tune", cfg)
    b = cfg.batch_size
    model.fit(x[:b], y[:b], batch_size=b, epochs=1, verbose=0)  # trace the train step
    return model


METHODS = ("predict", "memory", "memory_nojit", "memory_unfolded", "pipeline", "pipeline_nojit", "decode")


def measure(name: str, extractors, array: np.ndarray, batches: list, rows, cfg) -> dict[str, float]:
    """One method over one round's images: `array`/`batches` in memory, `rows` as JPEGs.

    `extractors`: `(folded, plain)`: the library's extractor (BatchNorm folded into
    the convolutions) and the plain one sharing the classifier's layers.
    """
    from flowerlib.pipeline import make_dataset

    extractor, plain = extractors
    b = cfg.batch_size
    if name == "predict":
        return predict_timed(plain, array, b)
    if name == "memory_unfolded":
        return extract_timed(plain, batches, b, jit=False)
    if name == "memory":
        return extract_timed(extractor, batches, b)
    if name == "memory_nojit":
        return extract_timed(extractor, batches, b, jit=False)
    if name in ("pipeline", "pipeline_nojit"):
        ds = make_dataset(rows, cfg.data_dir, image_size=cfg.image_size, batch_size=b, training=False)
        return extract_timed(extractor, ds, b, jit=name == "pipeline")
    if name == "decode":
        return decode_timed(rows, cfg.data_dir, cfg.image_size, b)
    raise ValueError(f"Unknown method {name!r}; expected one of {METHODS}")


def median(values) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few images: a sanity run of a minute or two")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 6; quick 1)")
    parser.add_argument(
        "--images", type=int, help="images per method and round (default 128; quick 64), whole batches"
    )
    parser.add_argument(
        "--train-images", type=int, help="images per fine-tuning variant and round (default 64; quick 32)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--data-dir", type=Path, default=common.DEFAULT_DATA_DIR)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 6)
    b = args.batch_size
    per_round = max(2 * b, (args.images or (64 if args.quick else 128)) // b * b)  # no padded batch
    n_train = args.train_images or (32 if args.quick else 64)
    mm_seconds = 1.0

    common.setup_tensorflow()
    import flops
    import tensorflow as tf

    from flowerlib.backbones import get_backbone
    from flowerlib.model import backbone_of, build_classifier, feature_extractor
    from flowerlib.pipeline import make_dataset
    from flowerlib.runtime import seed_everything

    loads = [common.load_text()]
    info = common.machine()
    print(common.machine_line(info))
    print(f"load average: {loads[0]}")
    seed_everything(0)

    # The model and the real images.
    cfg = common.real_data_config(
        args.data_dir, backbone="resnet50", weights=None, image_size=args.image_size, batch_size=b
    )
    table = common.official_table(cfg)
    rows = table.sort_values(["split", "image_id"], ascending=[False, True])  # train first, then val
    if len(rows) < per_round * rounds:
        raise common.BenchmarkError(f"Only {len(rows)} images; asked for {per_round * rounds}.")
    model = build_classifier(cfg)
    extractor = feature_extractor(model, fold_batchnorm=True)  # what cache.cached_features uses
    plain = feature_extractor(model)  # the classifier's own layers, BatchNorm as separate ops
    spec = get_backbone(cfg.backbone)
    per_stage = flops.backbone_flops(backbone_of(model))
    gflop = per_stage["total"] / 1e9
    print(f"ResNet50 at {cfg.image_size} px: {gflop:.2f} GFLOP per image (conv + dense layers)")

    chunks = [rows.iloc[r * per_round : (r + 1) * per_round] for r in range(rounds)]
    # In-memory tensors: the same images, decoded once beforehand.
    memory = []
    for chunk in chunks:
        ds = make_dataset(chunk, cfg.data_dir, image_size=cfg.image_size, batch_size=b, training=False)
        memory.append([(tf.constant(x), tf.constant(y)) for x, y in ds])
    arrays = [np.concatenate([x.numpy() for x, _ in batches]) for batches in memory]
    plain.predict(arrays[0][:b], batch_size=b, verbose=0)  # trace predict

    per: list[dict[str, float]] = []
    firsts: list[float] = []
    for r in range(rounds):
        out: dict[str, float] = {"round": r + 1}
        out["matmul"] = median(matmul_rate(2048, mm_seconds, jit=False))
        out["matmul XLA"] = median(matmul_rate(2048, mm_seconds, jit=True))
        names = list(METHODS)
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate: no method always goes first
        res = {
            name: measure(name, (extractor, plain), arrays[r], memory[r], chunks[r], cfg) for name in order
        }
        firsts += [res["memory"]["first_batch_s"], res["pipeline"]["first_batch_s"]]
        for k, v in res.items():
            out[k] = v["steady_images"] / v["steady_s"]
            out[k + "_n"], out[k + "_s"] = v["steady_images"], v["steady_s"]
        out["load"] = common.load()[0]
        loads.append(common.load_text())
        per.append(out)
        print(
            f"round {r + 1}/{rounds}: matmul {out['matmul']:.0f}/{out['matmul XLA']:.0f} GFLOP/s, "
            f"predict {out['predict']:.1f}, in-memory {out['memory_nojit']:.1f} (unfolded {out['memory_unfolded']:.1f}, XLA {out['memory']:.1f}), "
            f"pipeline {out['pipeline_nojit']:.1f} (XLA {out['pipeline']:.1f}), decode {out['decode']:.0f} "
            f"images/s; load {loads[-1]}"
        )

    def rate(name: str) -> float:
        return sum(p[name + "_n"] for p in per) / sum(p[name + "_s"] for p in per)

    ceiling_round = [max(p["matmul"], p["matmul XLA"]) for p in per]
    ceiling = max(ceiling_round)

    # (e) fine-tuning steps, on in-memory images (random labels: the speed is the same).
    x_train = np.resize(np.concatenate(arrays), (n_train, *arrays[0].shape[1:]))
    y_train = np.random.default_rng(0).integers(0, cfg.num_classes, n_train).astype("int32")
    stage_names = [spec.stage_name(i) for i in range(len(spec.stages))]  # last stage first
    variants = (1, len(stage_names))
    del model, extractor, plain
    models = {k: fine_tune_model(cfg, k, x_train, y_train) for k in variants}
    ft_rounds = 1 if args.quick else 2
    ft: dict[int, list[float]] = {k: [] for k in variants}
    for _ in range(ft_rounds):
        for k in variants:
            ft[k].append(fit_rate(models[k], x_train, y_train, b))
        loads.append(common.load_text())
        print(", ".join(f"fine-tuning {k} stage(s): {ft[k][-1]:.2f} images/s" for k in variants))

    # The tables.
    mm_rows = [
        {
            "matmul 2048² float32": name,
            "median GFLOP/s (rounds)": median(p[key] for p in per),
            "best round": max(p[key] for p in per),
        }
        for name, key in (("TF graph (`tf.function`)", "matmul"), ("XLA (`jit_compile=True`)", "matmul XLA"))
    ]

    def row(method: str, key: str, note: str) -> dict:
        r = rate(key)
        return {
            "method": method,
            "images/s": r,
            "GFLOP/s": r * gflop,
            "/ best ceiling": r * gflop / ceiling,
            "/ same-round ceiling (median)": median(
                p[key] * gflop / c for p, c in zip(per, ceiling_round, strict=True)
            ),
            "notes": note,
        }

    from flowerlib.runtime import use_jit

    default_jit = use_jit(cfg)  # what jit_compile="auto" picks on this machine
    ex_rows = [
        row("`model.predict`, in-memory tensors", "predict", "plain Keras"),
        row(
            "`cache.extract_features` without XLA, in-memory tensors, BatchNorm *not* folded",
            "memory_unfolded",
            "the classifier's own layers (before BatchNorm folding)",
        ),
        row(
            "`cache.extract_features` without XLA, in-memory tensors",
            "memory_nojit",
            "`jit_compile='off'`" + (" (= 'auto' here)" if not default_jit else ""),
        ),
        row(
            "`cache.extract_features` without XLA, through `pipeline.make_dataset` on JPEGs",
            "pipeline_nojit",
            "real input pipeline" + (": the default feature-cache path" if not default_jit else ""),
        ),
        row(
            "`cache.extract_features` (XLA), in-memory tensors",
            "memory",
            "`jit_compile='on'`" + (" (= 'auto' here)" if default_jit else ""),
        ),
        row(
            "`cache.extract_features` (XLA) through `pipeline.make_dataset` on JPEGs",
            "pipeline",
            "real input pipeline" + (": the default feature-cache path" if default_jit else ""),
        ),
        {
            "method": "`pipeline.make_dataset` alone (decode, resize, crop)",
            "images/s": rate("decode"),
            "notes": "no model: the pipeline's capacity on all cores",
        },
    ]

    def ratio(label: str, num: str, den: str, goal: str) -> dict:
        return {
            "ratio": label,
            "all rounds": rate(num) / rate(den),
            "median of rounds": median(p[num] / p[den] for p in per),
            "goal": goal,
        }

    def of_ceiling(label: str, key: str, goal: str) -> dict:
        return {
            "ratio": label,
            "all rounds": rate(key) * gflop / ceiling,
            "median of rounds": median(p[key] * gflop / c for p, c in zip(per, ceiling_round, strict=True)),
            "goal": goal,
        }

    ratios = [
        ratio("pipeline / in-memory, XLA extraction", "pipeline", "memory", ">= 0.9"),
        ratio("pipeline / in-memory, extraction without XLA", "pipeline_nojit", "memory_nojit", ">= 0.9"),
        of_ceiling("XLA extraction (in-memory) GFLOP/s / matmul ceiling", "memory", ">= 0.8"),
        of_ceiling("extraction without XLA (in-memory) GFLOP/s / matmul ceiling", "memory_nojit", ">= 0.8"),
        ratio("XLA / no XLA, in-memory extraction", "memory", "memory_nojit", "> 1 if XLA helps"),
        ratio("XLA extraction / `model.predict`, in-memory", "memory", "predict", ""),
    ]
    ft_rows = []
    for k in variants:
        f_step = flops.train_step_flops(per_stage, stage_names[:k]) / 1e9
        img_s = median(ft[k])
        trainable = int(sum(int(np.prod(w.shape)) for w in models[k].trainable_weights))
        label = f"last stage ({stage_names[0]})" if k == 1 else f"all {k} stages"
        ft_rows.append(
            {
                "unfrozen (BatchNorm frozen)": label,
                "trainable params": f"{trainable:,}",
                "images/s": img_s,
                "≈ GFLOP/image": f_step,
                "≈ GFLOP/s": img_s * f_step,
                "/ best ceiling": img_s * f_step / ceiling,
            }
        )
    round_rows = [
        {
            "round": int(p["round"]),
            "load (1 min)": p["load"],
            "matmul GFLOP/s": p["matmul"],
            "matmul XLA": p["matmul XLA"],
            "predict img/s": p["predict"],
            "in-memory": p["memory_nojit"],
            "pipeline": p["pipeline_nojit"],
            "XLA in-memory": p["memory"],
            "XLA pipeline": p["pipeline"],
            "decode only": p["decode"],
        }
        for p in per
    ]
    n_steady = sum(p["memory_n"] for p in per)
    body = "\n\n".join(
        [
            f"ResNet50 at {cfg.image_size} px, `weights=None` (the FLOP of the ImageNet weights): "
            f"**{gflop:.2f} GFLOP per image** (counted from the model: conv and dense layers; "
            f"Keras's ResNet50 is v1, strided in the first 1×1 convolution of a block; the often "
            f"quoted 8.2 GFLOP = 4.1 G multiply-adds is v1.5, strided in the 3×3), batch size {b}. {rounds} interleaved "
            f"round(s) of {per_round} real JPEGs per method (the official train/val images from "
            f"`../shared/flowers102`, files in the OS cache), {int(n_steady)} timed images per method: the "
            f"first batch of each `extract_features` call pays tracing (and XLA compilation: median "
            f"{median(firsts):.1f} s) and is left out of the rates. The load average counts this "
            "benchmark itself (about 1-2 on its own). Ceiling: the best round's median "
            f"2048² matmul rate, **{ceiling:.0f} GFLOP/s**.",
            common.markdown_table(mm_rows),
            common.markdown_table(ex_rows),
            common.markdown_table(ratios),
            f"Fine-tuning throughput: `model.fit` steps on {n_train} in-memory images per variant and "
            f"round (median of {ft_rounds} round(s)), after a warm-up step; "
            "`compile_for_phase(model, 'fine_tune', cfg)` (Adam, no XLA). FLOP ≈ forward + 2 × "
            "forward of the unfrozen stages.",
            common.markdown_table(ft_rows),
            "Per round (images/s):",
            common.markdown_table(round_rows),
        ]
    )
    print()
    print(body)
    if not args.no_write:
        path = common.write_section(
            SECTION,
            "ResNet50 extraction and fine-tuning throughput vs. the matmul ceiling",
            body,
            info,
            loads,
        )
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
