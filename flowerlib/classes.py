"""The 102 class names of Oxford Flowers-102 (and the synthetic dataset's invented ones).

Index `i` is label `i + 1` of `imagelabels.mat`, in the order used by
tensorflow-datasets and torchvision. The synthetic dataset's classes are not
flowers that exist: `class_names(n, synthetic=True)` gives their invented names.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea",
    "english marigold", "tiger lily", "moon orchid", "bird of paradise", "monkshood",
    "globe thistle", "snapdragon", "colt's foot", "king protea", "spear thistle",
    "yellow iris", "globe-flower", "purple coneflower", "peruvian lily",
    "balloon flower", "giant white arum lily", "fire lily", "pincushion flower",
    "fritillary", "red ginger", "grape hyacinth", "corn poppy",
    "prince of wales feathers", "stemless gentian", "artichoke", "sweet william",
    "carnation", "garden phlox", "love in the mist", "mexican aster",
    "alpine sea holly", "ruby-lipped cattleya", "cape flower", "great masterwort",
    "siam tulip", "lenten rose", "barbeton daisy", "daffodil", "sword lily",
    "poinsettia", "bolero deep blue", "wallflower", "marigold", "buttercup",
    "oxeye daisy", "common dandelion", "petunia", "wild pansy", "primula",
    "sunflower", "pelargonium", "bishop of llandaff", "gaura", "geranium",
    "orange dahlia", "pink-yellow dahlia?", "cautleya spicata", "japanese anemone",
    "black-eyed susan", "silverbush", "californian poppy", "osteospermum",
    "spring crocus", "bearded iris", "windflower", "tree poppy", "gazania",
    "azalea", "water lily", "rose", "thorn apple", "morning glory",
    "passion flower", "lotus", "toad lily", "anthurium", "frangipani", "clematis",
    "hibiscus", "columbine", "desert-rose", "tree mallow", "magnolia", "cyclamen",
    "watercress", "canna lily", "hippeastrum", "bee balm", "ball moss", "foxglove",
    "bougainvillea", "camellia", "mallow", "mexican petunia", "bromelia",
    "blanket flower", "trumpet creeper", "blackberry lily",
)  # fmt: skip

NUM_CLASSES = len(CLASS_NAMES)


def class_names(num_classes: int = NUM_CLASSES, *, synthetic: bool = False) -> list[str]:
    """Names of the first `num_classes` classes (the synthetic dataset uses fewer).

    Args:
        num_classes: how many names, 1..102.
        synthetic: the invented names of the procedurally drawn classes
            (`flowerlib.synthetic.class_name`, e.g. "synthetic red oval-3,
            yellow eye") instead of the Flowers-102 species.

    Returns:
        One name per class, index = 0-based label.

    Raises:
        ValueError: `num_classes` is not in 1..102.
    """
    if not 1 <= num_classes <= NUM_CLASSES:
        raise ValueError(f"num_classes must be in 1..{NUM_CLASSES}. Received num_classes={num_classes}")
    if synthetic:
        from flowerlib.synthetic import class_name  # lazy: importing flowerlib stays light

        return [class_name(label) for label in range(num_classes)]
    return list(CLASS_NAMES[:num_classes])
