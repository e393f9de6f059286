"""Counting the multiply-adds of a Keras convolutional network, per backbone stage.

A multiply-add is 2 FLOP. Only Conv2D, DepthwiseConv2D and Dense layers are
counted (they are over 99 % of the work); BatchNorm, activations, additions and
pooling are left out, so the counts are slight underestimates.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def _shape(tensor_or_list) -> tuple[int, ...]:
    t = tensor_or_list[0] if isinstance(tensor_or_list, list | tuple) else tensor_or_list
    return tuple(int(d) if d is not None else 1 for d in t.shape)


def layer_flops(layer: keras.layers.Layer) -> int:
    """Forward FLOP of one layer for one image (0 for uncounted layer types)."""
    from keras import layers

    if isinstance(layer, layers.DepthwiseConv2D):
        _, h, w, c = _shape(layer.output)
        kh, kw = layer.kernel_size
        return 2 * h * w * c * kh * kw
    if isinstance(layer, layers.Conv2D):
        _, h, w, c_out = _shape(layer.output)
        c_in = _shape(layer.input)[-1]
        kh, kw = layer.kernel_size
        return 2 * h * w * c_out * kh * kw * c_in // layer.groups
    if isinstance(layer, layers.Dense):
        return 2 * _shape(layer.input)[-1] * int(layer.units)
    return 0


def backbone_flops(backbone: keras.Model) -> dict[str, int]:
    """Forward FLOP per image of a flowerlib backbone, per stage name (and `"total"`).

    Args:
        backbone: the nested backbone of a classifier (`flowerlib.model.backbone_of`).

    Returns:
        `{"conv5": ..., "conv4": ..., ..., "total": ...}` (stage names as in
        `BackboneSpec.stage_name`; layers outside every stage under `"other"`).
    """
    from flowerlib.backbones import spec_of

    spec = spec_of(backbone)
    out: dict[str, int] = defaultdict(int)
    for layer in backbone.layers:
        f = layer_flops(layer)
        if not f:
            continue
        index = spec.stage_of(layer.name)
        out["other" if index is None else spec.stage_name(index)] += f
    out["total"] = sum(out.values())
    return dict(out)


def train_step_flops(per_stage: dict[str, int], trainable_stages: list[str]) -> int:
    """Approximate FLOP of one training step per image: the forward pass, plus
    twice the forward FLOP of every trainable stage for its backward pass
    (gradients with respect to inputs and to weights)."""
    return per_stage["total"] + 2 * sum(per_stage.get(s, 0) for s in trainable_stages)
