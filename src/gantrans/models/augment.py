"""Differentiable augmentation of a discriminator's inputs (DiffAugment, Zhao et al. 2020).

A discriminator that sees few real images learns them by heart and stops teaching the
generator. DiffAugment applies the same kind of random, differentiable transformations to
every image a discriminator scores, real or generated, in both phases of a step, so the
discriminator cannot tell them apart by the augmentation and the generator's gradients flow
through it. The policy is a list of these, joined by "+" (or by commas, quoted on Hydra's
command line):

- ``color``: per image, brightness in [-0.5, 0.5], contrast x [0.5, 1.5] and (RGB only)
  saturation x [0, 2];
- ``translation``: per image, a shift of up to 1/8 of the side, the uncovered border zero;
- ``cutout``: per image, a square of half the side at a random place set to zero.

It is attached to a discriminator as a forward pre-hook (`attach`) that acts in training mode
only, so the networks, their state_dict keys and their checkpoints stay as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gantrans.config import AUGMENT_POLICIES as POLICIES

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(policy: str | None) -> tuple[str, ...]:
    """The transformations of a policy string ("" or None = none).

    Raises:
        ValueError: A name not in POLICIES.
    """
    names = tuple(p.strip() for p in (policy or "").replace("+", ",").split(",") if p.strip())
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ValueError(
            f"unknown augmentation {', '.join(unknown)}: choose from {', '.join(POLICIES)}"
        )
    return names


def _rand(x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, device=x.device, dtype=x.dtype)


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness, saturation (more than one channel) and contrast per image."""
    x = x + (_rand(x, 1, 1, 1) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(1, keepdim=True)
        x = (x - mean) * (_rand(x, 1, 1, 1) * 2) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each image by up to `ratio` of its side in x and y (whole pixels, zero border)."""
    n, _, h, w = x.shape
    shift = torch.stack(
        [
            torch.randint(-int(w * ratio), int(w * ratio) + 1, (n,), device=x.device),
            torch.randint(-int(h * ratio), int(h * ratio) + 1, (n,), device=x.device),
        ],
        1,
    ).to(x.dtype)  # (N, 2) in pixels
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = -2 * shift / torch.tensor([w, h], device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Set a square of `ratio` of the side to zero, at a random place in each image."""
    n, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    top = torch.randint(0, h - ch + 1, (n, 1, 1), device=x.device)
    left = torch.randint(0, w - cw + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """Apply the policy's transformations in order: (N, C, H, W) -> (N, C, H, W)."""
    for name in policy:
        x = TRANSFORMS[name](x)
    return x


def attach(discriminator: nn.Module, policy: str | None) -> nn.Module:
    """Make `discriminator` augment its first input in training mode (no-op for no policy)."""
    names = parse_policy(policy)
    if not names:
        return discriminator

    def hook(module: nn.Module, args: tuple) -> tuple | None:
        if not module.training:
            return None
        return (diff_augment(args[0], names), *args[1:])

    discriminator.register_forward_pre_hook(hook)
    return discriminator
