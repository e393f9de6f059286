"""Accuracy on the validation photos and on photos unlike the dataset's, side by side (issue 12).

Trains `train.train(cfg)` with the shared MobileNetV2 ImageNet weights on the
1,020 official training images (or reuses the run when it already finished with
the same settings: it says so), then scores the model on

- the 1,020 official validation photos as they are (in distribution), and
- `flowerlib.unlike.make_unlike_set` pictures made from those validation photos
  (never test photos): zoomed out onto a background, tiled into a field, small
  and off centre, a heavily compressed thumbnail, partly covered. Fixed seed;
- the same photos as web thumbnails (longer side 240 px, JPEG quality 60-80, not
  enlarged: the size of a picture saved from a web page);
- pictures with no flower at all (`unlike.background_from` of validation photos:
  leaves, grass, soil), where every answer is wrong: the model should call them
  unfamiliar and answer none of them as sure.

Every picture goes through `prediction.predict_many`, as `flowerlib predict`
sends it, twice: the whole photo only (`look_closer=False`), and with looking
closer (the default). For each it reports top-1 accuracy; the share the model
calls unfamiliar (`flowerlib.novelty`, the run's `reference.npz`, written
by `train`, also for a run finished before it existed); and, to
judge the confidence, the share of answers `verdict` gives as sure (top
probability of at least `--sure`, for a whole and familiar photo or, looking closer, a crop
that looks like a training photo) and the accuracy among
those; and the seconds per picture. A recipe that generalises gains on both
benchmarks.

Note: the validation photos also served for early stopping and the temperature,
so both columns are slightly optimistic for the model; the comparison between
recipes is what the table is for.

    .venv/bin/python benchmarks/unlike_accuracy.py                          # library defaults, 40 pictures per kind
    .venv/bin/python benchmarks/unlike_accuracy.py --label my-recipe --set image_size=320
    .venv/bin/python benchmarks/unlike_accuracy.py --split trainval --set seed=7 --split-seed 42  # same photos, another training seed
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _common as common
import numpy as np

SECTION = "unlike_accuracy"
TRAINED_ON = {
    "official": "the official training images, scored on the official validation images",
    "trainval": "the pooled official training and validation images less 2 per class (the `trainval` "
    "split), scored on those 2 per class",
    "trainval-official-train": "the official training images outside the `trainval` split's val part, "
    "scored on that part (the `trainval` comparison with half the training images)",
    "half-val": "the official training images, validated on 5 of each class's 10 official validation "
    "photos and scored on the other 5 (held out from training and calibration alike)",
}
SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def scores(first, labels: np.ndarray | None, verdicts: list) -> dict[str, float]:
    """Top-1, share unfamiliar, share answered as sure and the accuracy among those answers;
    for the answers not given as sure, how often the true class is among the candidates the
    sentence names, and how many it names.

    `labels` None: pictures of no class (every answer is wrong; top-1 is not defined).
    """
    right = np.zeros(len(first), bool) if labels is None else first["index"].to_numpy() == labels
    familiar = first["familiar"].to_numpy()
    sure = np.array([v.sure for v in verdicts], bool)
    named = [[c.index for c in v.candidates] for v in verdicts]
    among = np.array([labels is not None and labels[i] in n for i, n in enumerate(named)], bool)
    nan = float("nan")
    return {
        "top1": nan if labels is None else round(float(right.mean()), 3),
        "unfamiliar": round(float(np.mean(familiar == False)), 3),  # noqa: E712 (an object column)
        "answered as sure": round(float(sure.mean()), 3),
        "acc when sure": round(float(right[sure].mean()), 3) if sure.any() else nan,
        "not sure: right among candidates": round(float(among[~sure].mean()), 3)
        if labels is not None and (~sure).any()
        else nan,
        "candidates named": round(float(np.array([len(n) for n in named])[~sure].mean()), 1)
        if (~sure).any()
        else nan,
    }


def split_table(cfg, split: str, split_seed: int | None = None):
    """The table to train on, and the photos to score (and make the unlike pictures from).

    `split_seed` draws the held-out photos (default `cfg.seed`, as `train` would): give it
    to train with another seed on the same split, so two models are scored on the same
    photos and unlike pictures.

    `official`, `trainval`, `trainval-official-train`: the table's val part is scored.
    `half-val`: the model validates (early stopping, temperature, the unfamiliar
    threshold) on 5 of each class's 10 official validation photos; the other 5 are
    scored, so nothing of training or calibration has seen them.
    """
    from flowerlib import Layout
    from flowerlib.splits import TRAINVAL_VAL_FRACTION, available_image_ids, trainval_split

    seed = cfg.seed if split_seed is None else split_seed
    table = common.official_table(cfg)
    if split in ("official", "half-val"):
        if split == "official":
            return table, table[table["split"] == "val"]
        import real_accuracy as ra

        halves = ra.holdout_table(table[table["split"] == "val"].assign(split="train"), seed)
        chosen = set(halves.loc[halves["split"] == "train", "image_id"])
        is_val = table["split"] == "val"
        scored = table[is_val & ~table["image_id"].isin(chosen)]
        return table[~is_val | table["image_id"].isin(chosen)].reset_index(drop=True), scored
    official_train = set(table.loc[table["split"] == "train", "image_id"])
    layout = Layout(cfg.data_dir)
    pooled = trainval_split(
        layout, seed, TRAINVAL_VAL_FRACTION, cfg.num_classes, image_ids=available_image_ids(layout)
    )
    pooled = pooled[pooled["split"] != "test"].reset_index(drop=True)
    if split == "trainval-official-train":
        keep = (pooled["split"] == "val") | pooled["image_id"].isin(official_train)
        pooled = pooled[keep].reset_index(drop=True)
    return pooled, pooled[pooled["split"] == "val"]


def no_flowers(val, data_dir, n: int, seed: int, size: int = 384) -> list:
    """`n` pictures without a flower: `unlike.background_from` of random validation photos."""
    from flowerlib import unlike

    rng = np.random.default_rng([seed, 99])
    files = val["file"].to_numpy()
    return [
        unlike.background_from(unlike.load_photo(data_dir / files[rng.integers(len(files))]), size, rng)
        for _ in range(n)
    ]


def run_label(recipe: str | None, settings: list[str], split: str, split_seed: int | None = None) -> str:
    """The recipe's name in RESULTS.md and in its run name (`unlike-<label>`): shared by the scripts
    that reuse these runs, so they find the same trained model."""
    label = "-".join([recipe or ""] + [s.replace("=", "_") for s in settings]).strip("-") or "defaults"
    label = label if split == "official" else f"{label}-{split}"
    return label if split_seed is None else f"{label}-split_{split_seed}"


def named_run(data_dir, settings, split, split_seed=None, recipe=None, label=None):
    """`(cfg, label, split_seed)` of a run: its configuration named `unlike-<label>` (`run_label`).

    `split_seed` equal to the run's own seed becomes None: the same run as without it.
    """
    cfg = run_config(data_dir, "unlike", settings)
    split_seed = None if split_seed == cfg.seed else split_seed
    label = label or run_label(recipe, settings, split, split_seed)
    return cfg.replace(run_name=f"unlike-{label}"), label, split_seed


def run_config(data_dir, run_name: str, settings: list[str] | None = None):
    """The configuration of a MobileNetV2 run here: the shared weights, the `full` profile, `settings` (KEY=VALUE)."""
    import real_accuracy as ra

    from flowerlib import Config

    weights = str(common.require(common.MOBILENET_V2_WEIGHTS, "The MobileNetV2 weights file"))
    base = common.real_data_config(Path(data_dir), backbone="mobilenet_v2", weights=weights, image_size=224)
    return Config.from_env(
        ra.parse_settings(settings or []),
        profile="full",
        **{k: getattr(base, k) for k in ("data_dir", "source", "backbone", "weights")},
    ).replace(run_name=run_name)


def thumbnails(val, data_dir, seed: int = 240) -> list:
    """The photos of `val` as web thumbnails: longer side 240 px, JPEG quality 60-80, not enlarged."""
    from flowerlib import unlike

    rng = np.random.default_rng(seed)
    return [
        unlike.low_quality(unlike.load_photo(data_dir / f), rng, (240, 240), (60, 80), upsample=False)
        for f in val["file"]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], help="a Config setting KEY=VALUE (the recipe)")
    parser.add_argument("--label", help="the recipe's name in RESULTS.md (default from --set)")
    parser.add_argument("--per-kind", type=int, default=40, help="unlike pictures per kind")
    parser.add_argument("--seed", type=int, default=0, help="seed of the unlike pictures")
    parser.add_argument(
        "--size", type=int, help="side of the unlike pictures in pixels (default: unlike.DEFAULT_SIZE, 384)"
    )
    parser.add_argument(
        "--sure",
        type=float,
        default=None,
        help="the threshold of verdict and of looking closer (default prediction.SURE_PROBABILITY)",
    )
    parser.add_argument(
        "--recipe", help="an augmentation recipe of benchmarks/_recipes.py (default: the library's)"
    )
    parser.add_argument(
        "--split",
        default="official",
        choices=tuple(TRAINED_ON),
        help="official: 1,020 train / 1,020 val; trainval: the pooled 2,040 with 2 per class held out "
        "(the val part, scored); trainval-official-train: the same val part, trained on the official "
        "training images outside it only (the same test, half the training images)",
    )
    parser.add_argument(
        "--split-seed",
        type=int,
        help="seed of the held-out photos (default: the run's seed); with --set seed=N it trains "
        "another seed on the same photos and unlike pictures",
    )
    parser.add_argument(
        "--average-seed",
        type=int,
        action="append",
        default=[],
        help="also train the run with this training seed on the same held-out photos (repeatable), "
        "and score the mean of the models' probabilities (`predict_many` with a list of models)",
    )
    parser.add_argument("--whole-only", action="store_true", help="skip the look-closer pass (faster)")
    parser.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    common.setup_tensorflow()
    import real_accuracy as ra

    if args.recipe:
        import _recipes

        _recipes.use(args.recipe)

    from flowerlib import unlike
    from flowerlib.novelty import load_reference
    from flowerlib.prediction import CANDIDATE_MASS, SURE_PROBABILITY, predict_many, verdict
    from flowerlib.train import train

    args.sure = SURE_PROBABILITY if args.sure is None else args.sure

    cfg, label, args.split_seed = named_run(
        args.data_dir, args.set, args.split, args.split_seed, args.recipe, args.label
    )
    info = common.machine()
    print(common.machine_line(info))
    loads = [common.load_text()]
    table, val = split_table(cfg, args.split, args.split_seed)
    counts = table["split"].value_counts().to_dict()
    with common.Stopwatch() as wall:
        result = train(cfg, table, verbose=1)
    models, references = [result.model], [load_reference(result.run.reference)]  # train() writes it
    split_seed = cfg.seed if args.split_seed is None else args.split_seed
    for extra in args.average_seed:  # the same photos: the main run's split seed
        other, _, _ = named_run(
            args.data_dir, [*args.set, f"seed={extra}"], args.split, split_seed, args.recipe
        )
        trained = train(other, table, verbose=1)
        models.append(trained.model)
        references.append(load_reference(trained.run.reference))
    if args.average_seed:
        label += "-averaged_with_" + "_".join(map(str, args.average_seed))
    size = args.size or unlike.DEFAULT_SIZE
    records = unlike.make_unlike_set(val, cfg.data_dir, args.seed, per_kind=args.per_kind, size=size)
    pictures = [
        ("validation photos", [str(cfg.data_dir / f) for f in val["file"]], val["label"].to_numpy(), None),
        (
            "unlike (all kinds)",
            list(records["image"]),
            records["label"].to_numpy(),
            records["kind"].to_numpy(),
        ),
        (
            "no flower (backgrounds)",
            no_flowers(val, cfg.data_dir, args.per_kind, args.seed, size),
            None,
            None,
        ),
        ("web thumbnails of the photos", thumbnails(val, cfg.data_dir), val["label"].to_numpy(), None),
    ]
    rows, sweep = [], []
    for look_closer in (False,) if args.whole_only else (False, True):
        for name, sources, labels, kinds in pictures:
            t0 = time.perf_counter()
            top = predict_many(
                models, sources, top_k=5, look_closer=look_closer, sure=args.sure, reference=references
            )
            seconds = (time.perf_counter() - t0) / len(sources)
            first = top[top["rank"] == 1].reset_index(drop=True)
            verdicts = [verdict(top[top["source"] == i], args.sure) for i in range(len(sources))]
            view = "look closer" if look_closer else "whole photo"
            rows.append(
                {"pictures": name, "predict": view, "n": len(sources), **scores(first, labels, verdicts)}
            )
            rows[-1]["s / picture"] = round(seconds, 3)
            if not look_closer and labels is not None:  # the sure threshold, swept on the whole photos
                right = first["index"].to_numpy() == labels
                familiar = first["familiar"].to_numpy() != False  # noqa: E712 (an object column)
                for t in SWEEP:
                    answered = (first["probability"].to_numpy() >= t) & familiar
                    sweep.append(
                        {
                            "pictures": name,
                            "sure from": t,
                            "answered as sure": round(float(answered.mean()), 3),
                            "acc when sure": round(float(right[answered].mean()), 3)
                            if answered.any()
                            else float("nan"),
                        }
                    )
            for kind in unlike.KINDS if kinds is not None else ():
                mask = kinds == kind
                if mask.any():
                    rows.append(
                        {
                            "pictures": f"– {kind}",
                            "predict": view,
                            "n": int(mask.sum()),
                            **scores(
                                first[mask].reset_index(drop=True),
                                labels[mask],
                                [v for v, m in zip(verdicts, mask, strict=True) if m],
                            ),
                        }
                    )
    loads.append(common.load_text())

    settings = ra.settings_text(cfg)
    if args.recipe:
        import _recipes

        settings += f"; augmentation recipe `{args.recipe}`: {_recipes.RECIPES[args.recipe]}"
    averaged = (
        f", with training seeds {', '.join(str(s) for s in [cfg.seed, *args.average_seed])} and the mean "
        "of the models' probabilities"
        if args.average_seed
        else ""
    )
    body = "\n\n".join(
        [
            f"MobileNetV2 ImageNet weights, `train.train(cfg)` on {TRAINED_ON[args.split]}{averaged} "
            f"({counts['train']:,} training, {counts['val']:,} validation images); "
            f"settings: {settings}. Unlike pictures: {args.per_kind} per kind from those validation photos, "
            f"{size} px square, "
            f"seed {args.seed}. Through `prediction.predict_many`, the whole photo only or looking closer "
            f"(the default). *unfamiliar*: farther from every training photo than 95 % of the validation "
            f"photos (`flowerlib.novelty`); *answered as sure*: `verdict(..., sure={args.sure})` is sure (top "
            f"probability ≥ {args.sure} after the temperature, whole and familiar photo, or looking closer a "
            f"crop that looks like a training photo); *acc when sure*: top-1 "
            f"among those; *not sure: right among candidates*: among the other answers, how often the true "
            f"class is one of the candidates `verdict` names (top 5 until they reach "
            f"{CANDIDATE_MASS:.0%} of the probability), *candidates named*: how many, on average. "
            f"Training {wall.seconds:.0f} s ({'reused' if result.resumed else 'trained now'}; "
            f"{result.info.get('extract_seconds', 0):.0f} s extraction, {result.info.get('fine_tune_seconds', 0):.0f} s fine-tuning).",
            common.markdown_table(rows),
            "The threshold of `verdict` (the whole photo, familiar photos only), swept:",
            common.markdown_table(sweep),
        ]
    )
    print(body)
    if not args.no_write:
        tag = "" if args.size is None else f"-{args.size}px"
        common.write_section(
            f"{SECTION}-{label}{tag}", f"Unlike the dataset's: {label}{tag}", body, info, loads
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
