"""Adversarial losses (LSGAN, BCE, WGAN-GP) and the gradient penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AdversarialLoss:
    """The adversarial term for one discriminator output, in one of three flavours.

    - lsgan: mean (D(x) - 1)^2 for real targets and mean D(x)^2 for fake ones (Mao et al.).
    - bce: binary cross-entropy on logits, against 1 or 0 (Goodfellow et al.).
    - wgangp: -mean D(x) for real targets and mean D(x) for fake ones (Arjovsky et al.); the
      gradient penalty is added separately by the discriminator step, see `gradient_penalty`.
    """

    def __init__(self, mode: str) -> None:
        if mode not in ("lsgan", "bce", "wgangp"):
            raise ValueError(f"unknown GAN loss '{mode}': choose lsgan, bce or wgangp")
        self.mode = mode

    def __call__(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """Loss of `prediction` (the discriminator's raw output, any shape) against real or fake."""
        prediction = prediction.float()  # losses in fp32 whatever the autocast precision
        if self.mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


def gradient_penalty(
    discriminator: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad_x D(x)||_2 - 1)^2] at random points between real and fake.

    Args:
        discriminator: the critic.
        real: (N, C, H, W) real images.
        fake: (N, C, H, W) generated images (detached or not; the penalty does not reach them).
        generator: RNG for the interpolation weights (the global one if None).

    Returns:
        A scalar tensor, differentiable with respect to the critic's parameters (unweighted:
        the caller multiplies by lambda_gp).
    """
    n = real.shape[0]
    eps = torch.rand(n, 1, 1, 1, generator=generator, device="cpu").to(real.device, real.dtype)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = discriminator(mixed)
    (grad,) = torch.autograd.grad(
        outputs=out,
        inputs=mixed,
        grad_outputs=torch.ones_like(out),
        create_graph=True,  # the penalty must back-propagate into the critic's weights
        retain_graph=True,
        only_inputs=True,
    )
    grad = grad.float().reshape(n, -1)
    return ((grad.norm(2, dim=1) - 1.0) ** 2).mean()
