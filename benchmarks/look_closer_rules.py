"""How should the look-closer crops be combined? Rules side by side on the same scored views (issue 12).

Reuses (or trains) the MobileNetV2 run of `unlike_accuracy.py` for `--split`, then
scores, once per picture, every view a rule may use: the whole photo, square
crops on a grid of scales (`GRID`, one more scale than `prediction.LOOK_CLOSER_GRID`)
and the mirror image of each (`--no-mirrors`: none, half the time, and the rules
that need them are left out). The probabilities, and each view's distance to the
nearest training photo, are saved under the run (`look-closer-views-<seed>.npz`; a
rerun with the same pictures reuses them and says so). Each rule then picks an answer from those views in NumPy, so every
rule sees exactly the same pictures and model outputs:

- `whole`: the whole photo only;
- `max-top3`: the most confident crop, if it is more confident than the whole
  photo and names one of the whole photo's three most probable classes (any
  class when the photo is unfamiliar); `crops of ≥ 112 px` leaves out crops
  narrower than that many of the photo's own pixels (the library's floor for a
  familiar photo, `prediction.MIN_CROP_SHARE`; 56 px for an unfamiliar one,
  `prediction.UNFAMILIAR_MIN_CROP_SHARE`);
- `mean-all`: the mean probability over the whole photo and every crop;
- `mean-topN`: the mean probability over the whole photo and the N most
  confident crops;
- `vote-topN`: the class named most often by the N most confident crops;
- variants with the smaller scale, mirrored crops (`c+m`: each crop averaged
  with its mirror image), other candidate counts, or another threshold;
- `familiar crops first` / `only`: only the crops that
  are themselves familiar (near a training photo, as `flowerlib.novelty` judges
  whole photos) compete, when there are any / always; `crops nearer than the
  whole photo`: only crops nearer a training photo than the whole photo is;
  `familiar crops first, then nearer`: the library's rule;
- `enlarged photos whole`: a photo that `prediction.looks_enlarged` (at the
  resolution the crops are taken at) keeps its whole-photo answer, as in the library;
- `the mean with the whole photo`: the answer is the mean of the chosen crop's
  probabilities and the whole photo's, as in the library (else the crop's alone).

For the library's rule, with the crop's probabilities or the mean, a second table gives
what looked-closer answers state (their mean top probability) against how often they
are right, how many answers are given as sure (also from a familiar crop, as the library
does now, or from whole photos only) and how many of those are right, and how often a
not-sure answer's candidates (as `verdict` names them) hold the true class. A third gives
the share of pictures that look enlarged: per set and kind,
and for training photos saved as JPEGs of quality 90, as they are and enlarged
1.5-6x (Lanczos down, bicubic up), which is how `prediction.ENLARGED_LEVELS` was chosen.

As in `predict_many`, a rule acts only on a photo the whole view leaves unsure
(top probability below `prediction.SURE_PROBABILITY`) or unfamiliar; sure, familiar photos keep the
whole photo's answer. Reported: top-1 on the held-out photos and on the unlike
pictures (all kinds and per kind), for two seeds of unlike pictures, and on
web thumbnails of the held-out photos (longer side 240 px, JPEG quality 60-80,
not enlarged: the issue's "240-pixel web thumbnail"); choose a rule on one seed
and confirm it on the other, and on the other split's model.

    .venv/bin/python benchmarks/look_closer_rules.py --split trainval --seed 0 --seed 1
    .venv/bin/python benchmarks/look_closer_rules.py --split trainval --set seed=7   # another trained model
    .venv/bin/python benchmarks/look_closer_rules.py --split trainval --set seed=7 --split-seed 42 \
        --seed 0 --seed 1 --size 768 --no-mirrors --no-write   # seed 7 on seed 42's photos, 768-px pictures
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _common as common
import numpy as np

SECTION = "look_closer_rules"
#: (scale of the shorter side, positions along it): the library's grid and one smaller scale.
GRID: tuple[tuple[float, int], ...] = ((0.7, 2), (0.5, 3), (0.35, 4), (0.25, 5))


def score_views(
    model, sources, reference, size: int, batch_size: int = 64, mirrors: bool = True
) -> dict[str, np.ndarray]:
    """Probabilities of every view of every source (whole, crops on `GRID`, and their mirrors), and
    each view's cosine distance to the nearest training photo (`reference`; 0 without one)."""
    from flowerlib.pipeline import resize_and_crop
    from flowerlib.prediction import _bounded, _with_features, closer_boxes, load_image

    keep = int(np.ceil(size / min(s for s, _ in GRID)))
    scoring = model if reference is None else _with_features(model)
    probs, distance, picture, scale, mirror, shorter = [], [], [], [], [], []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            out = scoring.predict_on_batch(np.stack(pending))
            if reference is None:
                probs.append(np.asarray(out, np.float32))
                distance.append(np.zeros(len(pending)))
            else:
                probs.append(np.asarray(out[0], np.float32))
                distance.append(reference.distance(np.asarray(out[1])))
            pending.clear()

    for i, source in enumerate(sources):
        image = load_image(source)
        shorter.append(min(image.shape[:2]))
        small = _bounded(image, keep)
        views = [(resize_and_crop(image, size).numpy(), 1.0)]
        for s, k in GRID:
            for t, x, side in closer_boxes(*small.shape[:2], grid=((s, k),)):
                views.append((resize_and_crop(small[t : t + side, x : x + side], size).numpy(), s))
        for view, s in views:
            for flipped in (False, True) if mirrors else (False,):
                pending.append(view[:, ::-1] if flipped else view)
                picture.append(i)
                scale.append(s)
                mirror.append(flipped)
                if len(pending) == batch_size:
                    flush()
    flush()
    picture, scale, mirror, distance = map(np.asarray, (picture, scale, mirror, np.concatenate(distance)))
    # a photo is familiar as predict_many finds it: by its whole view's distance
    threshold = np.inf if reference is None else reference.threshold
    return {
        "probs": np.concatenate(probs),
        "picture": picture,
        "scale": np.asarray(scale, np.float64),
        "mirror": mirror,
        "distance": distance,
        "threshold": np.float64(threshold),
        "familiar": distance[(scale == 1.0) & ~mirror] <= threshold,
        "shorter": np.asarray(shorter),
    }


def _views(
    v: dict[str, np.ndarray], i: int, scales, mirrors: bool | str, min_side: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[float, np.ndarray]]:
    """(whole-photo probabilities, crop probabilities, distances) of picture `i`.

    `distances`: the whole photo's and each crop's distance to the nearest training
    photo, over the reference's threshold (familiar up to 1). `min_side`: leave out
    crops smaller than this many of the photo's own pixels.
    """
    rows = v["picture"] == i
    p, s, m = v["probs"][rows], v["scale"][rows], v["mirror"][rows]
    d = v["distance"][rows] / v["threshold"]  # familiar when at most 1
    whole = p[(s == 1.0) & ~m][0]
    chosen = np.isclose(s[:, None], np.asarray(scales)[None]).any(axis=1) & (s * v["shorter"][i] >= min_side)
    if mirrors == "avg":  # each crop averaged with its mirror image (stored right after it)
        pairs = d[chosen].reshape(-1, 2).min(axis=1)
        return whole, p[chosen].reshape(-1, 2, p.shape[1]).mean(axis=1), (d[(s == 1.0) & ~m][0], pairs)
    keep = chosen & (bool(mirrors) | ~m)
    return whole, p[keep], (d[(s == 1.0) & ~m][0], d[keep])


def rule_max(candidates, unfamiliar_candidates=None, crops_near=None, with_whole=False):
    """The most confident crop, among the whole photo's `candidates` leading classes
    (`unfamiliar_candidates` when the photo is unfamiliar; None: any class); with
    `with_whole`, the mean of its probabilities and the whole photo's. When a crop
    answers, the rule gives `(scores, that crop's distance over the threshold)`.

    `crops_near`: None, every crop competes; "first", only the crops that are
    themselves familiar (near a training photo) when there are any; "only", only
    those (none: the whole photo answers); "nearer", only the crops nearer to a
    training photo than the whole photo is; "first, then nearer": the familiar
    crops when there are any, else those nearer than the whole photo (none: the
    whole photo answers)."""

    def rule(whole, crops, familiar, distances):
        n = candidates if familiar else unfamiliar_candidates
        whole_d, crop_d = distances
        keep = crop_d < whole_d if crops_near == "nearer" else crop_d <= 1
        if crops_near == "first, then nearer" and not keep.any():
            keep = crop_d < whole_d  # no familiar crop: those nearer a training photo than the whole
        if crops_near is not None and (keep.any() or crops_near != "first"):
            crops, crop_d = crops[keep], crop_d[keep]
        if not len(crops):
            return whole
        b = crops.max(axis=1).argmax()
        best = crops[b]
        allowed = n is None or best.argmax() in np.argsort(-whole)[:n]
        if not (allowed and best.max() > whole.max()):
            return whole
        return ((best + whole) / 2 if with_whole else best), float(crop_d[b])

    return rule


def rule_mean_top(n):
    def rule(whole, crops, familiar, distances):
        top = crops[np.argsort(-crops.max(axis=1))[:n]]
        return np.concatenate([whole[None], top]).mean(axis=0)

    return rule


def rule_mean_all(whole, crops, familiar, distances):
    return np.concatenate([whole[None], crops]).mean(axis=0)


def rule_vote_top(n):
    def rule(whole, crops, familiar, distances):
        top = crops[np.argsort(-crops.max(axis=1))[:n]]
        votes = np.bincount(top.argmax(axis=1), minlength=len(whole)).astype(float)
        return votes + 1e-3 * top.sum(axis=0)  # ties go to the larger summed probability

    return rule


def enlarged_flags(sources, size: int) -> np.ndarray:
    """`prediction.looks_enlarged` of each source, at the resolution `predict_many` crops it at."""
    from flowerlib.prediction import _bounded, crop_resolutions, load_image, looks_enlarged

    detail = crop_resolutions(size)[1]
    return np.array([looks_enlarged(_bounded(load_image(x), detail)) for x in sources])


def training_photo_shares(train, data_dir, size: int, n: int = 200, seed: int = 0) -> list[dict]:
    """Share of `n` training photos that look enlarged: saved as JPEG 90, as they are and enlarged."""
    import io

    from PIL import Image

    from flowerlib import unlike

    files = train["file"].to_numpy()[np.random.default_rng(seed).permutation(len(train))[:n]]
    photos = [Image.fromarray(unlike.load_photo(data_dir / f)) for f in files]
    rows = []
    for factor in (1, 1.5, 2, 3, 4, 6):
        copies = []
        for photo in photos:
            w, h = photo.size
            if factor > 1:
                small = photo.resize((round(w / factor), round(h / factor)), Image.Resampling.LANCZOS)
                photo = small.resize((w, h), Image.Resampling.BICUBIC)
            buffer = io.BytesIO()
            photo.save(buffer, "JPEG", quality=90)
            copies.append(np.asarray(Image.open(buffer).convert("RGB")))
        rows.append(
            {
                "pictures": f"{n} training photos" + (f", enlarged {factor}x" if factor > 1 else ""),
                "look enlarged": round(float(enlarged_flags(copies, size).mean()), 3),
            }
        )
    return rows


SMALL = (0.7, 0.5, 0.35)
ALL = (0.7, 0.5, 0.35, 0.25)
#: The library's crops (before the familiar-crop rule): finer ones too for an unfamiliar photo,
#: none under 112 px of the photo, enlarged photos whole.
LIBRARY_CROPS = ({True: (SMALL, 112), False: (ALL, 112)}, False, 0, None, True)


#: (a familiar photo's smallest crop, an unfamiliar photo's), in the photo's pixels, compared with
#: familiar crops first on 2026-12-03 ("Looking closer: smaller crops for an unfamiliar photo").
FLOORS = (
    (96, 96), (84, 84), (112, 96), (112, 84), (112, 72), (112, 64), (112, 56), (112, 48), (112, 0), (128, 56), (160, 56)
)  # fmt: skip


def floors_rule(
    familiar_min: int, unfamiliar_min: int, crops_near: str = "first", with_whole: bool = False
) -> tuple:
    """Familiar crops first (or `crops_near`), with `LIBRARY_CROPS`' scales and these smallest crops."""
    crops = {True: (SMALL, familiar_min), False: (ALL, unfamiliar_min)}
    return (rule_max(3, crops_near=crops_near, with_whole=with_whole), crops, False, 0, None, True)


#: The library's rule, its answer's probabilities the crop's alone (before 2026-12-03) or the mean
#: of the crop's and the whole photo's (now): compared for what they state, not only top-1.
BEFORE_MEAN = "familiar crops first, then nearer than the whole photo, crops of ≥ 112 px, unfamiliar ≥ 56 px"
LIBRARY = f"{BEFORE_MEAN}, the mean with the whole photo (the library now)"


RULES = {
    "whole": (lambda whole, crops, familiar, distances: whole, SMALL, False),
    "max-top3 (crops of any size)": (rule_max(3), SMALL, False),
    "max-top3, mirrored crops": (rule_max(3), SMALL, True),
    "max-top3, crop+mirror mean": (rule_max(3), SMALL, "avg"),
    "max-top3, + scale 0.25": (rule_max(3), ALL, False),
    "max-top3, + 0.25, crop+mirror mean": (rule_max(3), ALL, "avg"),
    "max-top3, crops of ≥ 112 px": (rule_max(3), SMALL, False, 112),
    "max-top3, crops of ≥ 112 px, enlarged photos whole (the library before)": (
        rule_max(3),
        SMALL,
        False,
        112,
        None,
        True,
    ),
    "the same, + 0.25 when unfamiliar (the library until 2026-12-03)": (rule_max(3), *LIBRARY_CROPS),
    "the same, familiar crops first (the library before 56-px crops)": (
        rule_max(3, crops_near="first"),
        *LIBRARY_CROPS,
    ),
    "the same, familiar crops only": (rule_max(3, crops_near="only"), *LIBRARY_CROPS),
    **{
        f"familiar crops first, crops of ≥ {f} px, unfamiliar photos ≥ {u} px": floors_rule(f, u)
        for f, u in FLOORS
    },
    "familiar crops only, crops of ≥ 112 px, unfamiliar photos ≥ 56 px": floors_rule(112, 56, "only"),
    "crops nearer than the whole photo, crops of ≥ 112 px, unfamiliar photos ≥ 56 px": floors_rule(
        112, 56, "nearer"
    ),
    f"{BEFORE_MEAN}, the crop's probabilities (the library before)": floors_rule(
        112, 56, "first, then nearer"
    ),
    LIBRARY: floors_rule(112, 56, "first, then nearer", with_whole=True),
    "the same, crops nearer than the whole photo": (rule_max(3, crops_near="nearer"), *LIBRARY_CROPS),
    "the same, unfamiliar: + 0.25, crops of any size": (
        rule_max(3),
        {True: (SMALL, 112), False: (ALL, 0)},
        False,
        0,
        None,
        True,
    ),
    "max-top3, any crop size, enlarged photos whole": (rule_max(3), SMALL, False, 0, None, True),
    "max-top3, crops of ≥ 160 px": (rule_max(3), SMALL, False, 160),
    "max-top3, + 0.25, crops of ≥ 112 px": (rule_max(3), ALL, False, 112),
    "max-top3, looks closer below 0.5": (rule_max(3), SMALL, False, 0, 0.5),
    "max-top3, looks closer below 0.9": (rule_max(3), SMALL, False, 0, 0.9),
    "max-top2": (rule_max(2), SMALL, False),
    "max-top5": (rule_max(5), SMALL, False),
    "max-top3, unfamiliar top10": (rule_max(3, 10), SMALL, False),
    "max-top3, unfamiliar top10, + 0.25": (rule_max(3, 10), ALL, False),
    "max-top3, unfamiliar top10, + 0.25, c+m": (rule_max(3, 10), ALL, "avg"),
    "max-top3, unfamiliar top20, + 0.25, c+m": (rule_max(3, 20), ALL, "avg"),
    "mean-all": (rule_mean_all, SMALL, False),
    "mean-top3": (rule_mean_top(3), SMALL, False),
    "mean-top3, + 0.25, crop+mirror mean": (rule_mean_top(3), ALL, "avg"),
    "mean-top5": (rule_mean_top(5), SMALL, False),
    "mean-top5, + scale 0.25": (rule_mean_top(5), ALL, False),
    "vote-top5": (rule_vote_top(5), SMALL, False),
}


def answers(
    v: dict[str, np.ndarray],
    rule,
    scales,
    mirrors,
    sure: float,
    min_side: int = 0,
    skip_enlarged: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What each picture gets under `rule` (whole-photo answer when it is sure and familiar,
    or, with `skip_enlarged`, when it looks enlarged: `v["enlarged"]`): the answer's scores,
    whether the whole photo was sure and familiar, whether the rule changed it (a crop
    answered), and whether that crop is itself familiar (`rule_max` says; else False)."""
    out, is_sure, changed, crop_near = [], [], [], []
    for i in range(len(v["familiar"])):
        familiar = bool(v["familiar"][i])
        # `scales` may be {familiar: (scales, min_side)}: other crops for unfamiliar photos.
        own_scales, own_min = scales[familiar] if isinstance(scales, dict) else (scales, min_side)
        whole, crops, distances = _views(v, i, own_scales, mirrors, own_min)
        is_sure.append(whole.max() >= sure and familiar)
        result = whole
        if not (is_sure[-1] or (skip_enlarged and v["enlarged"][i])):
            result = rule(whole, crops, familiar, distances)
        scores, crop_d = result if isinstance(result, tuple) else (result, np.inf)
        out.append(np.asarray(scores))
        changed.append(scores is not whole)
        crop_near.append(crop_d <= 1)
    return np.stack(out), np.asarray(is_sure), np.asarray(changed), np.asarray(crop_near)


def honesty(scores, is_sure, closer, crop_near, labels, sure: float, closer_sure: bool) -> dict:
    """What looked-closer answers state against how often they are right; how many answers
    `verdict` gives as sure and how many of those are right (with `closer_sure`, a looked-closer
    answer from a familiar crop at `sure` and up too, as the library does now; else whole,
    familiar photos only); and, for the other answers, how often the true class is among the
    candidates `verdict` names (of the top 5, as `flowerlib predict` lists them) and how many."""
    from flowerlib.prediction import _top_table, verdict

    right = scores.argmax(axis=1) == labels
    answered = is_sure | (closer_sure & closer & crop_near & (scores.max(axis=1) >= sure))
    names = [str(c) for c in range(scores.shape[1])]
    named = [[c.index for c in verdict(_top_table(p, 5, names)).candidates] for p in scores[~answered]]
    nan = float("nan")
    return {
        "looked closer": int(closer.sum()),
        "stated": round(float(scores[closer].max(axis=1).mean()), 3) if closer.any() else nan,
        "right": round(float(right[closer].mean()), 3) if closer.any() else nan,
        "answered as sure": round(float(answered.mean()), 3),
        "right when sure": round(float(right[answered].mean()), 3) if answered.any() else nan,
        "not sure": int((~answered).sum()),
        "right among candidates": round(
            float(np.mean([y in n for y, n in zip(labels[~answered], named, strict=True)])), 3
        ),
        "candidates": round(float(np.mean([len(n) for n in named])), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="trainval", choices=("official", "trainval"))
    parser.add_argument(
        "--set", action="append", default=[], help="a Config setting KEY=VALUE of the run (e.g. seed=7)"
    )
    parser.add_argument("--seed", type=int, action="append", help="seed of the unlike pictures (repeatable)")
    parser.add_argument("--per-kind", type=int, default=40)
    parser.add_argument(
        "--size", type=int, help="side of the unlike pictures in pixels (default: unlike.DEFAULT_SIZE, 384)"
    )
    parser.add_argument(
        "--photos-per-class", type=int, help="score only this many held-out photos per class (and thumbnails)"
    )
    parser.add_argument(
        "--split-seed",
        type=int,
        help="seed of the held-out photos, as in unlike_accuracy.py (reuses its run)",
    )
    parser.add_argument(
        "--no-mirrors",
        action="store_true",
        help="score no mirror images (half the time; skips the rules that use them)",
    )
    parser.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    args.seeds = args.seed or [0, 1]
    common.setup_tensorflow()
    import unlike_accuracy as ua

    from flowerlib import unlike
    from flowerlib.novelty import load_reference
    from flowerlib.prediction import ENLARGED_LEVELS, SURE_PROBABILITY
    from flowerlib.train import train

    cfg, label, args.split_seed = ua.named_run(args.data_dir, args.set, args.split, args.split_seed)
    info = common.machine()
    print(common.machine_line(info))
    loads = [common.load_text()]
    table, val = ua.split_table(cfg, args.split, args.split_seed)
    photos = val if args.photos_per_class is None else common.per_class(val, args.photos_per_class)
    tag = "" if args.photos_per_class is None else f"-{args.photos_per_class}pc"
    result = train(cfg, table, verbose=1)
    model, reference = result.model, load_reference(result.run.reference)
    size = int(model.input_shape[1])

    size_tag = "" if args.size is None else f"-{args.size}px"
    sets = [("held-out photos", None), ("thumbnails", "thumb")] + [
        (f"unlike, seed {s}", s) for s in args.seeds
    ]
    scored, mirror_tag = {}, "-no-mirrors" if args.no_mirrors else ""
    for name, seed in sets:
        cache = (
            Path(result.run.root)
            / f"look-closer-views-{'val' if seed is None else seed}-{args.per_kind}{tag if seed in (None, 'thumb') else size_tag}{mirror_tag}.npz"
        )
        if seed is None:
            sources, labels, kinds = (
                [str(cfg.data_dir / f) for f in photos["file"]],
                photos["label"].to_numpy(),
                None,
            )
        elif seed == "thumb":
            sources, labels, kinds = ua.thumbnails(photos, cfg.data_dir), photos["label"].to_numpy(), None
        else:
            records = unlike.make_unlike_set(
                val, cfg.data_dir, seed, per_kind=args.per_kind, size=args.size or unlike.DEFAULT_SIZE
            )
            sources, labels, kinds = (
                list(records["image"]),
                records["label"].to_numpy(),
                records["kind"].to_numpy(),
            )
        v = dict(np.load(cache)) if cache.exists() else {}
        if "distance" in v:
            print(f"Reusing the scored views of {name} from {cache}.")
        else:
            if v:
                print(f"Scoring the views of {name} again: {cache} has no distances to the training photos.")
            t0 = time.perf_counter()
            v = score_views(model, sources, reference, size, mirrors=not args.no_mirrors)
            print(
                f"Scored {len(v['probs']):,} views of {name} in {time.perf_counter() - t0:.0f} s; saved to {cache}."
            )
            np.savez_compressed(cache, **v)
        v["enlarged"] = enlarged_flags(sources, size)
        scored[name] = (v, labels, kinds)

    rows, honest = [], []
    for rule_name, (rule, scales, mirrors, *more) in RULES.items():
        if mirrors and args.no_mirrors:
            continue
        min_side, gate, skip = (more + [0, None, False][len(more) :])[:3]
        gate = SURE_PROBABILITY if gate is None else gate
        row = {"rule": rule_name}
        for name, (v, labels, kinds) in scored.items():
            scores, is_sure, closer, crop_near = answers(v, rule, scales, mirrors, gate, min_side, skip)
            right = scores.argmax(axis=1) == labels
            for closer_sure in (False, True) if rule_name == LIBRARY else (False,):
                if rule_name.startswith(BEFORE_MEAN):
                    label = rule_name
                    if rule_name == LIBRARY:  # the same answers; which of them are sure
                        label = LIBRARY.replace(" (the library now)", "") + (
                            ", sure also from a familiar crop (the library now)"
                            if closer_sure
                            else ", never sure after looking closer"
                        )
                    facts = honesty(scores, is_sure, closer, crop_near, labels, gate, closer_sure)
                    honest.append({"rule": label, "pictures": name, **facts})
            row[name] = round(float(right.mean()), 3)
            if kinds is not None:
                for kind in unlike.KINDS:
                    key = f"{kind} ({name.split()[-1]})"
                    row[key] = round(float(right[kinds == kind].mean()), 3)
        rows.append(row)
    shares = training_photo_shares(table[table["split"] == "train"], cfg.data_dir, size)
    for name, (v, _, kinds) in scored.items():
        shares.append({"pictures": name, "look enlarged": round(float(v["enlarged"].mean()), 3)})
        for kind in unlike.KINDS if kinds is not None else ():
            share = v["enlarged"][kinds == kind].mean()
            shares.append(
                {"pictures": f"– {kind} ({name.split()[-1]})", "look enlarged": round(float(share), 3)}
            )
    loads.append(common.load_text())
    columns = ["rule"] + [name for name, _ in sets]
    body = "\n\n".join(
        [
            f"MobileNetV2, the `unlike_accuracy.py --split {args.split}` run ({ua.TRAINED_ON[args.split]}). "
            f"Views: the whole photo, square crops of {', '.join(str(s) for s, _ in GRID)} of the shorter side "
            f"(grid {GRID}), each also mirrored; every rule acts only when the whole photo's top probability is "
            f"below {SURE_PROBABILITY} (or the threshold the rule names) or the photo is unfamiliar. Held-out "
            f"photos: {len(photos)}; thumbnails: the same photos with their longer side 240 px, JPEG quality "
            f"60-80, not enlarged. Unlike pictures: {args.per_kind} per kind, "
            f"{args.size or unlike.DEFAULT_SIZE} px square, "
            f"seeds {', '.join(map(str, args.seeds))}. Top-1:",
            common.markdown_table(rows, columns),
            "Per kind (the seed in brackets):",
            common.markdown_table(rows, ["rule"] + [c for c in rows[0] if c not in columns]),
            "What the library's answers state: *looked closer*, the answers a crop gave, their mean top "
            "probability (*stated*) and how many of them are right; *answered as sure*, the share `verdict` "
            "gives as sure (whole, familiar photos at the threshold and up; in the library now also answers "
            "from a crop that looks like a training photo), and how many of those are right; *not sure*, "
            "the other answers, and how often the true class is among the candidates `verdict` names (the "
            "most probable of the top 5 until they reach `prediction.CANDIDATE_MASS`), and how many:",
            common.markdown_table(honest),
            f"Pictures that look enlarged (`prediction.looks_enlarged`, {ENLARGED_LEVELS} grey levels; "
            "training photos saved as JPEG quality 90, enlarged by Lanczos down and bicubic up):",
            common.markdown_table(shares, ["pictures", "look enlarged"]),
        ]
    )
    print(body)
    if not args.no_write:
        common.write_section(
            f"{SECTION}-{label}{size_tag}",
            f"Combining the look-closer crops: {label}{size_tag}",
            body,
            info,
            loads,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
