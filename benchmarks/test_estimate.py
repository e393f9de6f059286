"""What the default recipe should reach on the official test set, estimated from the 2,040 photos here.

The official test images (6,149) are not here, so their top-1 cannot be measured. This
script estimates it by cross-validation on the pooled official training and validation
photos (20 per class), the way the shipped `trainval` model is trained:

- the 2,040 photos are dealt into `--folds` folds of 2 photos per class (seeded);
- for each fold, a model is trained with the library defaults (`train.train(cfg)`,
  the shared MobileNetV2 ImageNet weights) and scores that fold as `flowerlib
  evaluate` does (`evaluate.evaluate`, the whole photo) and with its flip TTA
  (`--tta`), so every photo is scored once by a model that never trained on it;
- two designs bracket the shipped model. *nested*: the model validates (early
  stopping, temperature) on the next fold and trains on the other 16 photos per
  class; nothing of training or validation saw the scored photos, but it trains
  on 2 photos per class fewer than the shipped model (pessimistic). *same-size*:
  the model trains on 18 photos per class and validates on the scored fold, as
  the shipped `trainval` model does on its own 2 per class; early stopping chose
  its epoch on the scored photos (optimistic);
- the official test set is not balanced (from 20 photos of a class to 238), so the
  estimate weights each class's cross-validated accuracy by its share of the test
  set: `sum_c (test photos of c / 6,149) * accuracy_c`, with a 90 % interval from
  resampling the scored photos within each class. The balanced mean (what
  validation accuracy measures) is reported beside it.

`--official` also trains the defaults on the official split (1,020 training photos)
and reports its validation top-1 balanced and test-weighted: a rough check against the
one test top-1 measured for that split, by issue 12 with the recipe of its day (0.831,
validation 0.867), of how much of the drop from validation to test the weighting
accounts for.

Every fold's run is kept under the data directory's `runs/`
(`estimate-<label>-<design>-fold_<k>of<n>-seed_<s>`), and each photo's right or wrong
beside them (`estimate-<label>-<design>-fold_of<n>-seed_<s>.npz`: each photo's probabilities,
whole and with flip TTA); a rerun reuses each
finished run and says so. `--against LABEL` compares a recipe with one run before on the
same folds: both estimates, and their difference photo by photo with its interval.

    .venv/bin/python benchmarks/test_estimate.py --official         # both designs, 10 folds: about an hour on 2 cores
    .venv/bin/python benchmarks/test_estimate.py --design nested --set label_smoothing=0.2 --against defaults
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _common as common
import numpy as np

SECTION = "test_estimate"
VIEWS = {"whole photo": "probs", "with flip TTA": "probs_tta"}  # how a photo is scored: its key in the .npz
DESIGNS = {
    "nested": "validated on the next fold (a separate one: not nested CV's inner loop), trained on the other "
    "16 photos per class (pessimistic: less data)",
    "same-size": "trained on 18 photos per class, validated on the scored fold (optimistic: early stopping "
    "saw the scored photos)",
}


def folds_of(pool, n_folds: int, seed: int) -> np.ndarray:
    """Each row's fold: every class's photos shuffled with `seed` and dealt round-robin into `n_folds`."""
    fold = np.empty(len(pool), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for _, index in pool.groupby("label", sort=True).indices.items():
        fold[index] = rng.permutation(len(index)) % n_folds
    return fold


def test_weights(cfg, num_classes: int) -> np.ndarray:
    """Each class's share of the official test set, from `setid.mat` and `imagelabels.mat`."""
    from flowerlib import Layout
    from flowerlib.splits import official_split

    table = official_split(Layout(cfg.data_dir), num_classes)  # every labelled image, present or not
    counts = np.bincount(table.loc[table["split"] == "test", "label"], minlength=num_classes)
    return counts / counts.sum()


def class_groups(labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """The positions of each class's photos in `labels`, class by class."""
    return [np.flatnonzero(labels == c) for c in range(num_classes)]


def weighted(right: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_boot: int = 2000, seed: int = 0):
    """`(balanced, test-weighted, boot)` of one or more rows of right/wrong flags.

    `balanced` is the mean of the per-class accuracies, `test-weighted` weights them by
    `weights`; `boot` holds `n_boot` test-weighted accuracies of the photos resampled
    within each class, the same draws for every row (so rows can be compared pairwise).
    """
    right = np.atleast_2d(right).astype(np.float64)
    groups = class_groups(labels, weights.size)
    per_class = np.stack([right[:, g].mean(axis=1) for g in groups], axis=1)
    rng = np.random.default_rng(seed)
    boot = np.zeros((n_boot, right.shape[0]))
    for w, g in zip(weights, groups, strict=True):
        draws = g[rng.integers(0, g.size, size=(n_boot, g.size))]
        boot += w * right[:, draws].mean(axis=2).T
    return per_class.mean(axis=1), per_class @ weights, boot


def interval(values: np.ndarray) -> str:
    low, high = np.quantile(values, [0.05, 0.95])
    return f"{low:.3f} to {high:.3f}"


def costliest(right: np.ndarray, labels: np.ndarray, weights: np.ndarray, names, n: int = 5) -> str:
    """The `n` classes that cost the test-weighted top-1 most: name, points lost, right of scored."""
    groups = class_groups(labels, weights.size)
    lost = [
        (w * 100 * (1 - right[g].mean()), c) for c, (w, g) in enumerate(zip(weights, groups, strict=True))
    ]
    return ", ".join(
        f"{names[c]} {points:.2f} ({int(right[groups[c]].sum())} of {groups[c].size})"
        for points, c in sorted(lost, reverse=True)[:n]
    )


def results_file(data_dir, label: str, design: str, n_folds: int, seed: int):
    return Path(data_dir) / "runs" / f"estimate-{label}-{design}-fold_of{n_folds}-seed_{seed}.npz"


def scored_probs(model, cfg, table) -> tuple[np.ndarray, np.ndarray]:
    """The probabilities of the table's val photos: `flowerlib evaluate`'s path
    (`evaluate.evaluate`), and with its flip TTA (`evaluate.with_tta`, `--tta`)."""
    from flowerlib.evaluate import evaluate, with_tta

    plain = evaluate(model, table, cfg, part="val", progress=False)
    return plain.probs, with_tta(model, plain, progress=False).probs


def load_probs(data_dir, label: str, design: str, n_folds: int, seed: int, image_ids) -> dict:
    """Another recipe's probabilities on the same folds (`{view: probs}`), from its `.npz`."""
    path = results_file(data_dir, label, design, n_folds, seed)
    if not path.is_file():
        raise SystemExit(f"No results of {label!r} ({design}) at {path}: run it first with these folds")
    saved = np.load(path)
    if any(key not in saved for key in VIEWS.values()) or not np.array_equal(saved["image_id"], image_ids):
        raise SystemExit(f"{path} holds other photos or no probabilities: rerun {label!r} with these folds")
    return {view: saved[key] for view, key in VIEWS.items()}


def fold_tables(pool, fold: np.ndarray, k: int, design: str):
    """`(training table, scored table)` of fold `k`; the scored table's val part is fold `k`.

    `same-size` trains on the other folds and validates on fold `k`; `nested` validates
    on the next fold and trains on the rest, leaving fold `k` out of training altogether.
    """
    scored = pool.assign(split=np.where(fold == k, "val", "train"))
    if design == "same-size":
        return scored, scored
    following = (k + 1) % (fold.max() + 1)
    training = pool.assign(split=np.where(fold == following, "val", "train"))[fold != k]
    return training.reset_index(drop=True), scored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=10, help="folds (2 photos per class each with 10)")
    parser.add_argument(
        "--design", action="append", choices=tuple(DESIGNS), help="nested, same-size (default: both)"
    )
    parser.add_argument("--official", action="store_true", help="also the official split's validation photos")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds")
    parser.add_argument("--set", action="append", default=[], help="a Config setting KEY=VALUE (the recipe)")
    parser.add_argument("--label", help="the recipe's name in RESULTS.md (default: defaults)")
    parser.add_argument(
        "--against",
        help="a recipe's label run before with these folds: the paired difference of the estimates",
    )
    parser.add_argument(
        "--average-with",
        action="append",
        default=[],
        help="a recipe's label run before with these folds (repeatable): score the mean of its models' "
        "probabilities and this run's, fold by fold (e.g. training seeds 7 and 1: `--set seed=7` first)",
    )
    parser.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.folds < 3:
        parser.error(
            f"--folds must be at least 3 (a fold to score, one to validate, the rest to train). Received {args.folds}"
        )
    common.setup_tensorflow()
    import real_accuracy as ra
    from unlike_accuracy import run_config, run_label

    from flowerlib.train import train

    designs = args.design or list(DESIGNS)
    label = args.label or run_label(None, args.set, "official")  # "official": no split in the name
    info = common.machine()
    print(common.machine_line(info))
    loads = [common.load_text()]
    cfg = run_config(args.data_dir, f"estimate-{label}", args.set)
    table = common.official_table(cfg)
    weights = test_weights(cfg, cfg.num_classes)
    pool = table[table["split"].isin(["train", "val"])].reset_index(drop=True)  # never a test photo
    smallest = int(pool["label"].value_counts().min())
    if args.folds > smallest:
        parser.error(
            f"--folds must be at most {smallest}, the photos of the smallest class. Received {args.folds}"
        )
    fold = folds_of(pool, args.folds, args.seed)
    labels = pool["label"].to_numpy()
    rows, notes, costs = [], [], []
    names = pool.drop_duplicates("label").set_index("label")["class_name"].sort_index().to_list()

    def add_rows(model: str, right: dict, labels, against: dict | None = None, design: str = "") -> None:
        """One row per view of `right`, then of `against` (the recipe compared with, on the same
        photos); the flip TTA's row also gives its gain over the whole photo."""
        sides = {model: right} | ({f"{args.against}, {design}, the same folds": against} if against else {})
        balanced, estimate, boot = weighted(
            np.stack([flags for side in sides.values() for flags in side.values()]), labels, weights
        )

        def change(a: int, b: int) -> str:
            """Row `a`'s estimate less row `b`'s, with the paired interval."""
            return f"{estimate[a] - estimate[b]:+.3f} ({interval(boot[:, a] - boot[:, b])})"

        j = 0
        for name, side in sides.items():
            for i, (view, flags) in enumerate(side.items()):
                row = {
                    "model": name,
                    "scored": view,
                    "photos": len(flags),
                    "top-1 (balanced)": f"{balanced[j]:.3f}",
                    "test-weighted top-1": f"{estimate[j]:.3f}",
                    "90 % interval": interval(boot[:, j]),
                    "flip TTA's gain": change(j, j - i) if i else "",
                }
                if against:  # the recipe's rows give their difference from the same view of `against`
                    row[f"against {args.against}"] = change(j, j + len(right)) if side is right else ""
                rows.append(row)
                j += 1

    image_ids = pool["image_id"].to_numpy()
    for design in designs:
        probs = {view: np.zeros((len(pool), cfg.num_classes), dtype=np.float32) for view in VIEWS}
        t0, trained = time.perf_counter(), 0
        for k in range(args.folds):
            run = cfg.replace(run_name=f"estimate-{label}-{design}-fold_{k}of{args.folds}-seed_{args.seed}")
            training, scored = fold_tables(pool, fold, k, design)
            print(f"{design}, fold {k + 1} of {args.folds}", flush=True)
            result = train(run, training, verbose=0)
            trained += not result.resumed
            for view, p in zip(VIEWS, scored_probs(result.model, cfg, scored), strict=True):
                probs[view][fold == k] = p
        minutes = (time.perf_counter() - t0) / 60
        notes.append(
            f"*{design}*: {DESIGNS[design]} ({trained} of {args.folds} folds trained now, {minutes:.0f} min)."
        )
        path = results_file(args.data_dir, label, design, args.folds, args.seed)
        np.savez(path, image_id=image_ids, **{VIEWS[v]: p for v, p in probs.items()})
        model = f"`trainval` recipe, {design}"
        for other in args.average_with:  # the mean of the models' probabilities, as `predict --model` x N
            for view, p in load_probs(args.data_dir, other, design, args.folds, args.seed, image_ids).items():
                probs[view] = probs[view] + p
        if args.average_with:
            model += f", averaged with {', '.join(args.average_with)}"
        against = None
        if args.against:
            against = load_probs(args.data_dir, args.against, design, args.folds, args.seed, image_ids)
            against = {view: np.argmax(p, axis=1) == labels for view, p in against.items()}
        right = {view: np.argmax(p, axis=1) == labels for view, p in probs.items()}
        add_rows(model, right, labels, against, design)
        costs.append(f"*{design}*, whole photo: " + costliest(right["whole photo"], labels, weights, names))
    if args.official:
        run = cfg.replace(run_name=f"estimate-{label}-official")
        result = train(run, table, verbose=0)
        val = table[table["split"] == "val"]
        val_labels = val["label"].to_numpy()
        right = {
            view: np.argmax(p, axis=1) == val_labels
            for view, p in zip(VIEWS, scored_probs(result.model, cfg, table), strict=True)
        }
        add_rows("`official` split (1,020 training photos), its validation photos", right, val_labels)
    loads.append(common.load_text())
    body = "\n\n".join(
        [
            f"MobileNetV2 ImageNet weights, settings: {ra.settings_text(cfg)}; {args.folds} folds of the "
            f"2,040 official training and validation photos (seed {args.seed}), every photo scored once "
            "by a model that did not train on it, through `flowerlib evaluate`'s path (`evaluate.evaluate`, "
            "the whole photo) and with its flip TTA (`--tta`, `evaluate.with_tta`). "
            + " ".join(notes)
            + " *test-weighted*: each class's accuracy weighted by its share of the 6,149 official test "
            "photos; the intervals (90 %) resample the scored photos within each class, the same draws for "
            "a paired difference (they leave out the training seed's spread).",
            common.markdown_table(rows),
            "The classes that cost the estimate most (test share × error, in points of top-1; right "
            "of the class's photos scored): " + "; ".join(costs) + ".",
        ]
    )
    print(body)
    if not args.no_write:
        name = label + ("-averaged_with_" + "_".join(args.average_with) if args.average_with else "")
        common.write_section(f"{SECTION}-{name}", f"The official test, estimated: {name}", body, info, loads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
