"""What the generators and discriminators share: normalisation layers and the change-mask
output (gantrans.models.generators and .unet)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn

NORM_TYPES = ("instance", "batch", "none")
PADDING_TYPES = ("reflect", "replicate", "zero")
UPSAMPLE_TYPES = ("transpose", "resize")

NormLayer = Callable[[int], nn.Module]


def get_norm_layer(norm_type: str) -> NormLayer:
    """Return a factory that builds the normalization layer for a given channel count.

    Args:
        norm_type: ``"instance"``, ``"batch"`` or ``"none"``.

    Returns:
        A callable ``f(num_channels) -> nn.Module``.

    Raises:
        ValueError: If ``norm_type`` is not one of the above.
    """
    if norm_type == "instance":
        # No learnable affine and no running statistics: per-image normalisation at train and
        # test time alike (Ulyanov et al. 2016). Contributes no state_dict entries.
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm_type == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm_type == "none":
        # nn.Identity keeps the slot in each Sequential so the indices (and hence the state_dict
        # keys) of the following layers are the same as with a real norm layer.
        return lambda num_channels: nn.Identity()
    raise ValueError(f"unknown norm type {norm_type!r}; expected one of {', '.join(NORM_TYPES)}")


def norm_uses_bias(norm_type: str) -> bool:
    """Whether a convolution that is followed by a ``norm_type`` layer should carry a bias.

    BatchNorm (affine) subtracts the per-channel mean and adds its own learnable shift, so a
    conv bias in front of it is redundant. InstanceNorm here has no affine shift, and with no
    norm at all the bias is the layer's only offset.

    Note: the reference computes ``use_bias = norm is InstanceNorm2d`` and therefore *drops* the
    bias for ``norm="none"``, leaving those convolutions without any offset term. We keep the
    bias for ``"none"`` (a deliberate difference); the ``"instance"`` and ``"batch"`` layouts,
    which are the ones with published weights, are identical to the reference.

    Args:
        norm_type: ``"instance"``, ``"batch"`` or ``"none"``.

    Returns:
        ``False`` for ``"batch"``, ``True`` otherwise.
    """
    return norm_type != "batch"


class ChangeMask(nn.Module):
    """The change-mask output of a generator (AttentionGAN, GANimation): image = m x content +
    (1 - m) x input.

    A masked generator draws one channel more than its output: the content channels and,
    last, the mask logit, both through the final Tanh. The mask m = (t + 1) / 2 in [0, 1]
    says where the output is the network's content and where the input shows through, so
    what should stay (the face around a mouth) is copied exactly and the network's capacity
    goes to what changes. In training mode each forward pass records its masks, which the
    methods turn into a mask-size penalty (`take_masks`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.masks: list[torch.Tensor] = []
        self.record_masks = False  # also record in eval mode (the image grids)

    def composite(self, drawn: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(N, C + 1, H, W) content and mask logit in [-1, 1], input (N, C, H, W) -> output."""
        content, mask = drawn[:, :-1], (drawn[:, -1:] + 1) * 0.5  # mask (N, 1, H, W) in [0, 1]
        if not torch.jit.is_scripting() and (self.training or self.record_masks):
            self.masks.append(mask)
        return mask * content + (1 - mask) * x

    MASK_INIT = 2.0
    """The mask logit's initial bias: tanh(2) gives m = 0.98, so a new generator starts as an
    ordinary one. Started near m = 0.5, the cycle terms shut the mask within a hundred steps,
    before the drawn content is of any use, and the saturated Tanh never opens it again."""

    def init_mask(self) -> None:
        """Set the mask logit's bias to MASK_INIT (after the weights' initialisation)."""
        if self.mask:
            with torch.no_grad():
                self.mask_conv().bias[-1].fill_(self.MASK_INIT)

    def mask_conv(self) -> nn.Module:
        """The convolution that draws the mask logit (its last output channel)."""
        raise NotImplementedError

    def take_masks(self) -> list[torch.Tensor]:
        """The masks of the forward passes since the last call (in training mode, or with
        `record_masks`), oldest first."""
        masks, self.masks = self.masks, []
        return masks


def check_mask(mask: bool, input_nc: int, output_nc: int) -> None:
    if mask and input_nc != output_nc:
        raise ValueError(f"a change mask needs as many output channels as input ({input_nc})")


def check_layers(layers: Sequence[int], limit: int, what: str) -> None:
    if not layers or min(layers) < 0 or max(layers) >= limit:
        raise ValueError(f"encoder layers {list(layers)}: each {what} must be in 0..{limit - 1}")
