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


def _both(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, fuse: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """net(x) and net(y); one call on the concatenated batch when `fuse` is set.

    Fusing is the same math only for networks that treat each sample on its own (instance
    norm or none, not batch norm); it halves the number of calls and gives the CPU and GPU
    larger, more efficient convolutions.
    """
    if not fuse:
        return net(x), net(y)
    return net(torch.cat([x, y])).split(x.shape[0])


class GeneratorPair(nn.Module):
    """Both generators' work for one step as a single forward call.

    One call per phase is what DistributedDataParallel needs to synchronise gradients, so the
    training loop can wrap this module (and `DiscriminatorPair`) in DDP; on one device it is
    used as is. It holds references to G_A and G_B, not copies.

    Returns (fake_B, fake_A, rec_A, rec_B, idt_A, idt_B); the identity outputs are None when
    `identity` is off.
    """

    def __init__(self, G_A: nn.Module, G_B: nn.Module, identity: bool, fuse: bool) -> None:
        super().__init__()
        self.G_A, self.G_B = G_A, G_B
        self.identity, self.fuse = identity, fuse

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor) -> tuple:
        if self.fuse:
            # three calls instead of six: once G_A has run, all of G_B's inputs are known
            n = real_A.shape[0]
            if self.identity:
                fake_B, idt_A = self.G_A(torch.cat([real_A, real_B])).split(n)  # G_A(A), G_A(B)
                # G_B(B), G_B(A), G_B(G_A(A))
                fake_A, idt_B, rec_A = self.G_B(torch.cat([real_B, real_A, fake_B])).split(n)
            else:
                idt_A = idt_B = None
                fake_B = self.G_A(real_A)
                fake_A, rec_A = self.G_B(torch.cat([real_B, fake_B])).split(n)
            rec_B = self.G_A(fake_A)  # G_A(G_B(B))
            return fake_B, fake_A, rec_A, rec_B, idt_A, idt_B
        # one call per input, in the reference implementation's order
        fake_B = self.G_A(real_A)  # G_A(A)
        rec_A = self.G_B(fake_B)  # G_B(G_A(A))
        fake_A = self.G_B(real_B)  # G_B(B)
        rec_B = self.G_A(fake_A)  # G_A(G_B(B))
        idt_A = idt_B = None
        if self.identity:
            idt_A, idt_B = self.G_A(real_B), self.G_B(real_A)  # G_A(B), G_B(A)
        return fake_B, fake_A, rec_A, rec_B, idt_A, idt_B


class DiscriminatorPair(nn.Module):
    """Both discriminators' scores (and WGAN-GP penalties) for one step as one forward call.

    Returns (D_A(real_B), D_A(fake_B), D_B(real_A), D_B(fake_A), gp_A, gp_B); the penalties
    are None unless `penalty` is set.
    """

    def __init__(self, D_A: nn.Module, D_B: nn.Module, penalty: bool, fuse: bool) -> None:
        super().__init__()
        self.D_A, self.D_B = D_A, D_B
        self.penalty, self.fuse = penalty, fuse

    def forward(
        self,
        real_A: torch.Tensor,
        real_B: torch.Tensor,
        fake_A: torch.Tensor,
        fake_B: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple:
        real_B_score, fake_B_score = _both(self.D_A, real_B, fake_B, self.fuse)
        real_A_score, fake_A_score = _both(self.D_B, real_A, fake_A, self.fuse)
        gp_A = gp_B = None
        if self.penalty:
            gp_A = gradient_penalty(self.D_A, real_B, fake_B, generator)
            gp_B = gradient_penalty(self.D_B, real_A, fake_A, generator)
        return real_B_score, fake_B_score, real_A_score, fake_A_score, gp_A, gp_B


class CycleGANLoss:
    """The CycleGAN objective, split into a generator phase and a discriminator phase.

    Args:
        gan_mode: "lsgan", "bce" or "wgangp".
        lambda_cycle: weight of each cycle-consistency L1 term.
        lambda_identity: identity weight relative to lambda_cycle (0 disables the terms).
        lambda_gp: gradient-penalty weight (wgangp only).
        fuse_generators: run each generator once on [translation input, identity input]
            instead of twice (only valid without batch norm in the generators).
        fuse_discriminators: score real and fake images in one discriminator call (only valid
            without batch norm in the discriminators).
    """

    def __init__(
        self,
        gan_mode: str = "lsgan",
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        lambda_gp: float = 10.0,
        fuse_generators: bool = False,
        fuse_discriminators: bool = False,
    ) -> None:
        self.gan_mode = gan_mode
        self.adv = AdversarialLoss(gan_mode)
        self.lambda_cycle = lambda_cycle
        self.lambda_identity = lambda_identity
        self.lambda_gp = lambda_gp
        self.fuse_generators = fuse_generators
        self.fuse_discriminators = fuse_discriminators

    def pairs(self, model: CycleGAN) -> tuple[GeneratorPair, DiscriminatorPair]:
        """The single-call modules of both phases for `model` (wrap them in DDP to distribute)."""
        identity = self.lambda_identity > 0
        return (
            GeneratorPair(model.G_A, model.G_B, identity, self.fuse_generators),
            DiscriminatorPair(
                model.D_A, model.D_B, self.gan_mode == "wgangp", self.fuse_discriminators
            ),
        )

    def generator_phase(
        self,
        model: CycleGAN,
        real_A: torch.Tensor,
        real_B: torch.Tensor,
        generators: nn.Module | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Fakes]:
        """Loss for both generators: adversarial both ways, cycle and identity L1.

        Args:
            generators: the GeneratorPair to run (possibly DDP-wrapped); built if None.

        Returns the total (to back-propagate), the detached terms by name, and the fakes.
        """
        generators = generators if generators is not None else self.pairs(model)[0]
        # the discriminators only score here: no gradients for their weights
        _set_requires_grad(model.discriminators(), False)
        try:
            fake_B, fake_A, rec_A, rec_B, idt_A, idt_B = generators(real_A, real_B)
            terms: dict[str, torch.Tensor] = {}
            terms["G_A"] = self.adv(model.D_A(fake_B), True)  # D_A(G_A(A)) -> real
            terms["G_B"] = self.adv(model.D_B(fake_A), True)  # D_B(G_B(B)) -> real
            # ||G_B(G_A(A)) - A||_1 and ||G_A(G_B(B)) - B||_1
            terms["cycle_A"] = F.l1_loss(rec_A.float(), real_A.float()) * self.lambda_cycle
            terms["cycle_B"] = F.l1_loss(rec_B.float(), real_B.float()) * self.lambda_cycle
            if idt_A is not None:
                w = self.lambda_cycle * self.lambda_identity
                # ||G_A(B) - B||_1 and ||G_B(A) - A||_1: keep colours when already in the target domain
                terms["idt_A"] = F.l1_loss(idt_A.float(), real_B.float()) * w
                terms["idt_B"] = F.l1_loss(idt_B.float(), real_A.float()) * w
            total = sum(terms.values())
        finally:
            _set_requires_grad(model.discriminators(), True)
        fakes = Fakes(fake_B=fake_B, fake_A=fake_A, rec_A=rec_A, rec_B=rec_B)
        return total, {k: v.detach() for k, v in terms.items()}, fakes

    def discriminator_phase(
        self,
        model: CycleGAN,
        real_A: torch.Tensor,
        real_B: torch.Tensor,
        fake_A: torch.Tensor,
        fake_B: torch.Tensor,
        generator: torch.Generator | None = None,
        discriminators: nn.Module | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss for both discriminators on real images versus (pooled, detached) fakes.

        For lsgan and bce each discriminator's loss is halved, as in the paper, so D learns more
        slowly than G. For wgangp the critic loss is D(fake) - D(real) + lambda_gp * penalty.
        Also returns `D_A_acc` / `D_B_acc`: the share of patches the discriminator gets right
        (for the failure-mode diagnostics; wgangp: the share of real images scored above the
        mean fake score).

        Args:
            discriminators: the DiscriminatorPair to run (possibly DDP-wrapped); built if None.
        """
        discriminators = discriminators if discriminators is not None else self.pairs(model)[1]
        scores = discriminators(real_A, real_B, fake_A.detach(), fake_B.detach(), generator)
        real_B_score, fake_B_score, real_A_score, fake_A_score, gp_A, gp_B = scores
        terms: dict[str, torch.Tensor] = {}
        for name, pred_real, pred_fake, gp in (
            ("D_A", real_B_score, fake_B_score, gp_A),
            ("D_B", real_A_score, fake_A_score, gp_B),
        ):
            loss_real = self.adv(pred_real, True)
            loss_fake = self.adv(pred_fake, False)
            if gp is not None:
                terms[f"{name}_gp"] = gp.detach()
                terms[name] = loss_real + loss_fake + self.lambda_gp * gp
            else:
                terms[name] = 0.5 * (loss_real + loss_fake)
            terms[f"{name}_acc"] = self._accuracy(pred_real.detach(), pred_fake.detach())
        total = terms["D_A"] + terms["D_B"]
        return total, {k: v.detach() for k, v in terms.items()}

    def _accuracy(self, pred_real: torch.Tensor, pred_fake: torch.Tensor) -> torch.Tensor:
        pred_real, pred_fake = pred_real.float(), pred_fake.float()
        if self.gan_mode == "wgangp":
            threshold = pred_fake.mean()
        else:  # lsgan targets 1/0 (threshold 0.5); bce works on logits (threshold 0)
            threshold = torch.tensor(0.5 if self.gan_mode == "lsgan" else 0.0)
        return 0.5 * (
            (pred_real > threshold).float().mean() + (pred_fake <= threshold).float().mean()
        )
