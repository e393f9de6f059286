"""Reading in turns (`pipeline.in_turns`) against plain iteration, side by side, on real JPEGs.

The loops that only run the model (`cache.extract_features`, `evaluate.predict_dataset`)
read `pipeline.TURN_BATCHES` batches from the input pipeline, then run the model on them,
so decoding and augmentation do not compete with the model for the cores. This script
times both loops both ways on the same images, alternating the variants round by round
(the machine is shared: compare within a round and the medians), next to the model alone
on batches already in memory (the ceiling of the loop):

- extraction: ResNet50 (`weights=None`, the same arithmetic as ImageNet weights) with the
  `conv4` maps, as `cache.cached_features` runs it, unaugmented and augmented;
- prediction: the classifier's inference copy, plain and flipped, as `evaluate` and
  `evaluate.with_tta` run it.

    .venv/bin/python benchmarks/bench_in_turns.py            # 512 images, 3 rounds, ~5 min
    .venv/bin/python benchmarks/bench_in_turns.py --quick    # 64 images, 1 round
"""

from __future__ import annotations

import argparse
import functools
import time

import _common as common
import numpy as np

SECTION = "bench_in_turns"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="training images to read")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="64 images, 1 round, nothing written")
    parser.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds, args.no_write = 64, 1, True
    common.setup_tensorflow()
    from pathlib import Path

    from flowerlib import cache, evaluate, pipeline
    from flowerlib import model as fm

    info, loads = common.machine(), [common.load_text()]
    cfg = common.real_data_config(Path(args.data_dir), backbone="resnet50", weights=None)
    rows = common.official_table(cfg)
    rows = rows[rows["split"] == "train"].iloc[: args.images]
    n, b = len(rows), cfg.batch_size
    model = fm.build_classifier(cfg)
    extractor = fm.feature_extractor(
        model, fold_batchnorm=True, activations=fm.fine_tune_cut(model, cfg.fine_tune_stages)
    )
    classifier = fm.inference_copy(model)

    def dataset(augment: bool):
        return pipeline.make_dataset(
            rows, cfg.data_dir, image_size=cfg.image_size, batch_size=b, training=False,
            augment=augment, seed=cfg.seed + cache.VIEW_SEED_STRIDE,
        )  # fmt: skip

    def rate(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return n / (time.perf_counter() - t0)

    loops = {
        "extraction, unaugmented": lambda: cache.extract_features(extractor, dataset(False), batch_size=b),
        "extraction, augmented views": lambda: cache.extract_features(extractor, dataset(True), batch_size=b),
        "prediction (`evaluate`)": lambda: evaluate.predict_dataset(classifier, dataset(False)),
        "prediction of flipped images (`with_tta`)": lambda: evaluate.predict_dataset(
            classifier, dataset(False), flip=True
        ),
    }
    in_memory = [x for x, _ in dataset(False)]
    forward = cache._forward_function(extractor, False)

    def model_alone_extraction():
        for x in in_memory:
            maps, feats = forward(x)
            np.asarray(maps, dtype=cache.ACTIVATIONS_DTYPE), np.asarray(feats)

    def model_alone_prediction():
        for x in in_memory:
            classifier.predict_on_batch(x)

    for fn in (*loops.values(), model_alone_extraction, model_alone_prediction):  # trace, warm the files
        fn()
    original = pipeline.in_turns
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for key, fn in (("extraction", model_alone_extraction), ("prediction", model_alone_prediction)):
            results.setdefault((key, "model alone"), []).append(rate(fn))
        for batches in (1, pipeline.TURN_BATCHES):
            turns = functools.partial(original, batches=batches)
            cache.in_turns = evaluate.in_turns = turns  # what the two loops call
            for name, fn in loops.items():
                results.setdefault((name, str(batches)), []).append(rate(fn))
        cache.in_turns = evaluate.in_turns = original
        loads.append(common.load_text())
    table = []
    for name in loops:
        alone = np.median(
            results[("extraction" if name.startswith("extraction") else "prediction", "model alone")]
        )
        plain, turns = (np.median(results[(name, k)]) for k in ("1", str(pipeline.TURN_BATCHES)))
        table.append(
            {
                "loop": name,
                "model alone, in memory img/s": float(alone),
                "plain iteration img/s": float(plain),
                f"in turns of {pipeline.TURN_BATCHES} batches img/s": float(turns),
                "in turns ÷ plain": float(turns / plain),
                "plain ÷ model alone": float(plain / alone),
                "in turns ÷ model alone": float(turns / alone),
                "rounds (plain; in turns)": "; ".join(
                    " ".join(f"{v:.1f}" for v in results[(name, k)])
                    for k in ("1", str(pipeline.TURN_BATCHES))
                ),
            }
        )
    body = "\n\n".join(
        [
            f"ResNet50 at {cfg.image_size} px, batch {b}, `weights=None`, {n} official training JPEGs of "
            f"`../shared/flowers102`; medians of {args.rounds} rounds, the variants alternating within each "
            "round. *Model alone*: the same forward passes on batches already decoded in memory.",
            common.markdown_table(table),
        ]
    )
    print(body)
    if not args.no_write:
        print(
            f"\nWrote {common.write_section(SECTION, 'Reading in turns (`pipeline.in_turns`) against plain iteration (resnet50)', body, info, loads)}"
        )


if __name__ == "__main__":
    main()
