"""CycleGAN (Zhu et al. 2017): two generators, two discriminators, its loss phases, its plug-in.

Naming follows the reference implementation so its checkpoints map onto ours: G_A translates
A -> B, G_B translates B -> A, D_A judges domain B (real B versus G_A(A)), D_B judges domain A.
No optimizer lives here: the training loop owns those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from gantrans.methods.base import (
    Batch,
    Method,
    Phase,
    Terms,
    discriminator_arch,
    fuses,
    generator_arch,
    run_both,
    set_requires_grad,
)
from gantrans.methods.cyclegan_options import LAMBDA_CYCLE, LAMBDA_IDENTITY
from gantrans.methods.image_pool import ImagePool
from gantrans.methods.losses import (
    AdversarialLoss,
    discriminator_accuracy,
    discriminator_loss,
    gradient_penalty,
)
from gantrans.models import build_discriminator, build_generator, init_weights

if TYPE_CHECKING:
    from gantrans.config import TrainConfig


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
        real_B_score, fake_B_score = run_both(self.D_A, real_B, fake_B, self.fuse)
        real_A_score, fake_A_score = run_both(self.D_B, real_A, fake_A, self.fuse)
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
        lambda_cycle: float = LAMBDA_CYCLE,
        lambda_identity: float = LAMBDA_IDENTITY,
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
        set_requires_grad(model.discriminators(), False)
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
            set_requires_grad(model.discriminators(), True)
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
            if gp is not None:
                terms[f"{name}_gp"] = gp.detach()
            terms[name] = discriminator_loss(self.adv, pred_real, pred_fake, gp, self.lambda_gp)
            terms[f"{name}_acc"] = discriminator_accuracy(
                self.gan_mode, pred_real.detach(), pred_fake.detach()
            )
        total = terms["D_A"] + terms["D_B"]
        return total, {k: v.detach() for k, v in terms.items()}


class CycleGANMethod(Method):
    """`method=cyclegan` for the training loop: the networks, their objective and image buffers.

    A step runs the generator phase (both generators: adversarial, cycle and identity terms),
    then the discriminator phase on real images against fakes drawn from the buffers; with
    loss.critic_steps = k only every k-th step has the generator phase.
    """

    pooled = ("A", "B")  # D_B sees buffered G_B(B), D_A buffered G_A(A)
    discriminator_terms = ("D_A", "D_B")
    adversarial_terms = ("G_A", "G_B")
    progress_terms = ("G", "D_A", "D_B", "cycle_A")
    real_domains = {"D_A": "B", "D_B": "A"}

    def __init__(
        self,
        net: CycleGAN,
        objective: CycleGANLoss,
        pools: Mapping[str, ImagePool],
        critic_steps: int = 1,
    ) -> None:
        super().__init__("cyclegan", {"AtoB": "G_A", "BtoA": "G_B"}, pools)
        self.net = net
        self.objective = objective
        self.critic_steps = critic_steps
        generators, discriminators = objective.pairs(net)
        self.runners = {"G": generators, "D": discriminators}

    @classmethod
    def build(
        cls, cfg: TrainConfig, channels: int, pools: Mapping[str, ImagePool]
    ) -> CycleGANMethod:
        model, disc, loss = cfg.model, cfg.discriminator, cfg.loss
        net = CycleGAN(generator_arch(model, channels), discriminator_arch(disc, channels))
        net.init_weights(
            (str(model.init_type), model.init_gain), (str(disc.init_type), disc.init_gain)
        )
        objective = CycleGANLoss(
            gan_mode=str(loss.name),
            lambda_cycle=loss.lambda_cycle,
            lambda_identity=loss.lambda_identity,
            lambda_gp=loss.lambda_gp,
            fuse_generators=fuses(model, cfg.train.fuse_passes),
            fuse_discriminators=fuses(disc, cfg.train.fuse_passes),
        )
        return cls(net, objective, pools, loss.critic_steps)

    def networks(self) -> dict[str, nn.Module]:
        return {"G_A": self.net.G_A, "G_B": self.net.G_B, "D_A": self.net.D_A, "D_B": self.net.D_B}

    def arch(self) -> dict[str, Any]:
        return {"generator": self.net.gen_arch, "discriminator": self.net.disc_arch}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "G": [p for g in self.net.generators() for p in g.parameters()],
            "D": [p for d in self.net.discriminators() for p in d.parameters()],
        }

    def phases(self, step: int) -> list[Phase]:
        d_phase = Phase("D", self._discriminator_loss)
        if step % self.critic_steps:  # critic-only step (wgangp with critic_steps > 1)
            return [d_phase]
        return [Phase("G", self._generator_loss), d_phase]

    def _generator_loss(self, batch: Batch, cache: dict) -> tuple[torch.Tensor, Terms]:
        """Adversarial both ways + cycle + identity (+ the change masks' size, + the tone term),
        for both generators."""
        self.clear_masks()
        total, terms, fakes = self.objective.generator_phase(
            self.net, batch["A"], batch["B"], self.runners["G"]
        )
        penalty, extra = self.penalty_terms(
            [(batch["A"], fakes.fake_B), (batch["B"], fakes.fake_A)]
        )
        total = total + penalty
        cache["fakes"] = fakes.fake_A.detach(), fakes.fake_B.detach()
        return total, {**terms, **{k: v.detach() for k, v in extra.items()}, "G": total.detach()}

    def _discriminator_loss(self, batch: Batch, cache: dict) -> tuple[torch.Tensor, Terms]:
        """Both discriminators on real images versus fakes drawn from the history buffers."""
        real_A, real_B = batch["A"], batch["B"]
        if "fakes" in cache:
            fake_A, fake_B = cache["fakes"]
        else:  # no generator phase this step: fresh fakes, no graph
            with torch.no_grad():
                fake_B, fake_A = self.net.G_A(real_A), self.net.G_B(real_B)
        return self.objective.discriminator_phase(
            self.net, real_A, real_B, self.pools["A"].query(fake_A), self.pools["B"].query(fake_B),
            discriminators=self.runners["D"],
        )  # fmt: skip

    def grids(self, real: Batch) -> dict[str, list[torch.Tensor]]:
        fake_B, fake_A = self.net.G_A(real["A"]), self.net.G_B(real["B"])
        return {
            "A2B2A": [real["A"], fake_B, self.net.G_B(fake_B)],  # A -> B -> A
            "B2A2B": [real["B"], fake_A, self.net.G_A(fake_A)],  # B -> A -> B
        }
