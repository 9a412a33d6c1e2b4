"""Adversarial losses (LSGAN, BCE, WGAN-GP), the gradient penalty, PatchNCE and the tone term."""

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


def tone_distance(inputs: torch.Tensor, outputs: torch.Tensor, cells: int) -> torch.Tensor:
    """Mean |difference| between the mean values of inputs and outputs over a cells x cells grid
    of regions (per channel): how far a translation moved the image's coarse tones.

    A change drawn inside a region (a mouth) moves its region's mean a little; a remap of the
    grey levels of the whole image (which a cycle can undo, so the cycle term does not see it)
    moves every region's.
    """
    coarse = [F.adaptive_avg_pool2d(x.float(), cells) for x in (inputs, outputs)]
    return F.l1_loss(coarse[1], coarse[0])


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


def discriminator_loss(
    adv: AdversarialLoss,
    pred_real: torch.Tensor,
    pred_fake: torch.Tensor,
    gp: torch.Tensor | None = None,
    lambda_gp: float = 10.0,
) -> torch.Tensor:
    """One discriminator's loss on its scores of real and (detached) fake images.

    lsgan and bce: half the sum of the real and fake terms, as in the CycleGAN and CUT papers,
    so D learns more slowly than G. wgangp: D(fake) - D(real) + lambda_gp * penalty.
    """
    loss_real = adv(pred_real, True)
    loss_fake = adv(pred_fake, False)
    if gp is not None:
        return loss_real + loss_fake + lambda_gp * gp
    return 0.5 * (loss_real + loss_fake)


def discriminator_accuracy(
    gan_mode: str, pred_real: torch.Tensor, pred_fake: torch.Tensor
) -> torch.Tensor:
    """The share of patches a discriminator gets right (for the failure-mode diagnostics).

    lsgan targets 1/0 (threshold 0.5); bce works on logits (threshold 0); wgangp: the share of
    real patches scored above the mean fake score, and of fake ones at or below it.
    """
    pred_real, pred_fake = pred_real.float(), pred_fake.float()
    if gan_mode == "wgangp":
        threshold = pred_fake.mean()
    else:
        threshold = torch.tensor(0.5 if gan_mode == "lsgan" else 0.0)
    return 0.5 * ((pred_real > threshold).float().mean() + (pred_fake <= threshold).float().mean())


def patch_nce(
    feat_q: torch.Tensor, feat_k: torch.Tensor, batch_size: int, temperature: float = 0.07
) -> torch.Tensor:
    """PatchNCE (Park et al. 2020): each query patch must pick its own key among the image's.

    For query q_i (a patch of the translation) the positive is k_i (the input's patch at the
    same place) and the negatives are the other sampled patches k_j of the same image:

        loss_i = -log( exp(q_i.k_i / T) / (exp(q_i.k_i / T) + sum_{j != i} exp(q_i.k_j / T)) )

    The keys are detached (no gradient flows through them), as in the paper. The j = i entry
    of the negatives is masked with a logit of -10 / T, as in the paper's code.

    Args:
        feat_q: (batch_size * P, D) query features, L2-normalised; row b * P + p is patch p of
            image b.
        feat_k: (batch_size * P, D) key features at the same patches.
        batch_size: The number of images; negatives come from the same image only.
        temperature: T.

    Returns:
        (batch_size * P,) the loss of each query patch.
    """
    feat_q, feat_k = feat_q.float(), feat_k.detach().float()
    dim = feat_q.shape[1]
    l_pos = (feat_q * feat_k).sum(1, keepdim=True)  # (B * P, 1)
    q = feat_q.view(batch_size, -1, dim)  # (B, P, D)
    k = feat_k.view(batch_size, -1, dim)
    patches = q.shape[1]
    l_neg = torch.bmm(q, k.transpose(2, 1))  # (B, P, P): q_i . k_j within each image
    diagonal = torch.eye(patches, dtype=torch.bool, device=q.device)[None]
    l_neg = l_neg.masked_fill(diagonal, -10.0).view(-1, patches)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # the positive is class 0
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target, reduction="none")


def discriminator_terms(
    adv: AdversarialLoss,
    gan_mode: str,
    lambda_gp: float,
    real_score: torch.Tensor,
    fake_score: torch.Tensor,
    gp: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A discriminator phase's loss and its logged terms (``D``, ``D_acc``, ``D_gp`` with WGAN-GP).

    Args:
        adv, gan_mode, lambda_gp: The adversarial loss, its mode name and the penalty weight.
        real_score, fake_score: The discriminator's outputs on real and generated images.
        gp: The gradient penalty, or None without WGAN-GP.
    """
    loss = discriminator_loss(adv, real_score, fake_score, gp, lambda_gp)
    terms = {
        "D": loss.detach(),
        "D_acc": discriminator_accuracy(gan_mode, real_score.detach(), fake_score.detach()),
    }
    if gp is not None:
        terms["D_gp"] = gp.detach()
    return loss, terms
