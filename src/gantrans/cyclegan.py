"""The CycleGAN model (two generators, two discriminators) and its two loss phases.

Naming follows the reference implementation so its checkpoints map onto ours: G_A translates
A -> B, G_B translates B -> A, D_A judges domain B (real B versus G_A(A)), D_B judges domain A.
No optimizer lives here: the training loop owns those.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gantrans.losses import AdversarialLoss, gradient_penalty
from gantrans.models import build_discriminator, build_generator, init_weights


def generator_arch(model_cfg: dict, channels: int) -> dict:
    """The generator architecture a checkpoint records, from the `model` config section."""
    arch = {k: v for k, v in model_cfg.items() if k not in ("init_type", "init_gain")}
    arch.update(in_channels=channels, out_channels=channels)
    return arch


def discriminator_arch(disc_cfg: dict, channels: int) -> dict:
    """The discriminator architecture a checkpoint records, from the `discriminator` section."""
    arch = {k: v for k, v in disc_cfg.items() if k not in ("init_type", "init_gain")}
    arch.update(in_channels=channels)
    return arch


class CycleGAN(nn.Module):
    """G_A: A -> B, G_B: B -> A, D_A on domain B, D_B on domain A."""

    def __init__(self, gen_arch: dict, disc_arch: dict) -> None:
        super().__init__()
        self.gen_arch = dict(gen_arch)
        self.disc_arch = dict(disc_arch)
        self.G_A = build_generator(gen_arch)
        self.G_B = build_generator(gen_arch)
        self.D_A = build_discriminator(disc_arch)
        self.D_B = build_discriminator(disc_arch)

    def init_weights(self, gen_init: tuple[str, float], disc_init: tuple[str, float]) -> None:
        for net in (self.G_A, self.G_B):
            init_weights(net, *gen_init)
        for net in (self.D_A, self.D_B):
            init_weights(net, *disc_init)

    def generators(self) -> list[nn.Module]:
        return [self.G_A, self.G_B]

    def discriminators(self) -> list[nn.Module]:
        return [self.D_A, self.D_B]


@dataclass
class Fakes:
    """What the generator phase produced; the discriminator phase and the logs reuse it."""

    fake_B: torch.Tensor  # G_A(A), (N, C, H, W) in [-1, 1]
    fake_A: torch.Tensor  # G_B(B)
    rec_A: torch.Tensor  # G_B(G_A(A))
    rec_B: torch.Tensor  # G_A(G_B(B))


def _set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


class CycleGANLoss:
    """The CycleGAN objective, split into a generator phase and a discriminator phase.

    Args:
        gan_mode: "lsgan", "bce" or "wgangp".
        lambda_cycle: weight of each cycle-consistency L1 term.
        lambda_identity: identity weight relative to lambda_cycle (0 disables the terms).
        lambda_gp: gradient-penalty weight (wgangp only).
    """

    def __init__(
        self,
        gan_mode: str = "lsgan",
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        lambda_gp: float = 10.0,
    ) -> None:
        self.gan_mode = gan_mode
        self.adv = AdversarialLoss(gan_mode)
        self.lambda_cycle = lambda_cycle
        self.lambda_identity = lambda_identity
        self.lambda_gp = lambda_gp

    def translate(self, model: CycleGAN, real_A: torch.Tensor, real_B: torch.Tensor) -> Fakes:
        """Both translations and both reconstructions."""
        fake_B = model.G_A(real_A)  # G_A(A)
        rec_A = model.G_B(fake_B)  # G_B(G_A(A))
        fake_A = model.G_B(real_B)  # G_B(B)
        rec_B = model.G_A(fake_A)  # G_A(G_B(B))
        return Fakes(fake_B=fake_B, fake_A=fake_A, rec_A=rec_A, rec_B=rec_B)

    def generator_phase(
        self, model: CycleGAN, real_A: torch.Tensor, real_B: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Fakes]:
        """Loss for both generators: adversarial both ways, cycle and identity L1.

        Returns the total (to back-propagate), the detached terms by name, and the fakes.
        """
        # the discriminators only score here: no gradients for their weights
        _set_requires_grad(model.discriminators(), False)
        try:
            fakes = self.translate(model, real_A, real_B)
            terms: dict[str, torch.Tensor] = {}
            terms["G_A"] = self.adv(model.D_A(fakes.fake_B), True)  # D_A(G_A(A)) -> real
            terms["G_B"] = self.adv(model.D_B(fakes.fake_A), True)  # D_B(G_B(B)) -> real
            # ||G_B(G_A(A)) - A||_1 and ||G_A(G_B(B)) - B||_1
            terms["cycle_A"] = F.l1_loss(fakes.rec_A.float(), real_A.float()) * self.lambda_cycle
            terms["cycle_B"] = F.l1_loss(fakes.rec_B.float(), real_B.float()) * self.lambda_cycle
            if self.lambda_identity > 0:
                w = self.lambda_cycle * self.lambda_identity
                # ||G_A(B) - B||_1 and ||G_B(A) - A||_1: keep colours when already in the target domain
                terms["idt_A"] = F.l1_loss(model.G_A(real_B).float(), real_B.float()) * w
                terms["idt_B"] = F.l1_loss(model.G_B(real_A).float(), real_A.float()) * w
            total = sum(terms.values())
        finally:
            _set_requires_grad(model.discriminators(), True)
        return total, {k: v.detach() for k, v in terms.items()}, fakes

    def discriminator_phase(
        self,
        model: CycleGAN,
        real_A: torch.Tensor,
        real_B: torch.Tensor,
        fake_A: torch.Tensor,
        fake_B: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss for both discriminators on real images versus (pooled, detached) fakes.

        For lsgan and bce each discriminator's loss is halved, as in the paper, so D learns more
        slowly than G. For wgangp the critic loss is D(fake) - D(real) + lambda_gp * penalty.
        """
        terms: dict[str, torch.Tensor] = {}
        for name, net, real, fake in (
            ("D_A", model.D_A, real_B, fake_B),
            ("D_B", model.D_B, real_A, fake_A),
        ):
            fake = fake.detach()
            loss_real = self.adv(net(real), True)
            loss_fake = self.adv(net(fake), False)
            if self.gan_mode == "wgangp":
                gp = gradient_penalty(net, real, fake, generator)
                terms[f"{name}_gp"] = gp.detach()
                terms[name] = loss_real + loss_fake + self.lambda_gp * gp
            else:
                terms[name] = 0.5 * (loss_real + loss_fake)
        total = terms["D_A"] + terms["D_B"]
        return total, {k: v.detach() for k, v in terms.items()}
