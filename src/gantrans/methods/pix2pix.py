"""pix2pix (Isola et al. 2017): a conditional GAN on aligned pairs, as a training-method plug-in.

One generator G maps the input side of a pair to the target side; the discriminator D is a
PatchGAN that sees an input and an image concatenated on channels, so it judges whether the
image is the input's real partner or G's output. Naming follows the reference implementation
(`netG`, `netD` there; `G`, `D` here): its published `latest_net_G.pth` files load as a G.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
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
from gantrans.methods.image_pool import ImagePool
from gantrans.methods.losses import (
    AdversarialLoss,
    discriminator_terms,
    gradient_penalty,
)
from gantrans.models import build_discriminator, build_generator, init_weights

if TYPE_CHECKING:
    from gantrans.config import TrainConfig


class ConditionalScores(nn.Module):
    """D's scores of (input, target) and (input, G(input)) pairs, and the WGAN-GP penalty on
    pairs between them, as one call (so DDP can wrap it).

    Returns (D(input, target), D(input, fake), penalty or None).
    """

    def __init__(self, D: nn.Module, penalty: bool, fuse: bool) -> None:
        super().__init__()
        self.D, self.penalty, self.fuse = D, penalty, fuse

    def forward(self, source: torch.Tensor, target: torch.Tensor, fake: torch.Tensor) -> tuple:
        real_pair = torch.cat([source, target], 1)  # (N, 2C, H, W): the input beside its partner
        fake_pair = torch.cat([source, fake], 1)  # the input beside G(input)
        real_score, fake_score = run_both(self.D, real_pair, fake_pair, self.fuse)
        gp = gradient_penalty(self.D, real_pair, fake_pair) if self.penalty else None
        return real_score, fake_score, gp


class Pix2Pix(Method):
    """`method=pix2pix` for the training loop.

    A step runs, in the reference implementation's order, G's forward on the input, D's update
    on (input, target) against (input, G(input)) detached, then G's update on the adversarial
    term plus lambda_L1 * ||G(input) - target||_1 with D frozen. With loss.critic_steps = k
    only every k-th step updates G. There is no image buffer: D sees each output as it is made.

    Args:
        archs: (generator arch, discriminator arch), as checkpoints record them.
        G, D: The networks (D takes 2 x channels).
        direction: "AtoB" (A is the input, B the target) or "BtoA".
        loss: The `loss` config section (name, lambda_gp, critic_steps).
        lambda_L1: Weight of the L1 term.
        fuse_discriminator: Score real and fake pairs in one D call (not with batch norm).
    """

    discriminator_terms = ("D",)
    adversarial_terms = ("G_GAN",)
    progress_terms = ("G", "D", "G_L1")

    def __init__(
        self,
        archs: tuple[dict, dict],
        G: nn.Module,
        D: nn.Module,
        direction: str,
        loss: Any,
        lambda_L1: float,
        pools: Mapping[str, ImagePool],
        fuse_discriminator: bool = False,
    ) -> None:
        super().__init__("pix2pix", {direction: "G"}, pools)
        self.gen_arch, self.disc_arch = dict(archs[0]), dict(archs[1])
        self.G, self.D = G, D
        self.direction = direction
        self.source, self.target = direction[0], direction[-1]  # "AtoB": A -> B
        self.gan_mode = str(loss.name)
        self.adv = AdversarialLoss(self.gan_mode)
        self.lambda_gp, self.critic_steps = loss.lambda_gp, loss.critic_steps
        self.lambda_L1 = lambda_L1
        self.runners = {
            "G": G,
            "D": ConditionalScores(D, self.gan_mode == "wgangp", fuse_discriminator),
        }

    @classmethod
    def build(cls, cfg: TrainConfig, channels: int, pools: Mapping[str, ImagePool]) -> Pix2Pix:
        model, disc, options = cfg.model, cfg.discriminator, cfg.method
        gen_arch = generator_arch(model, channels)
        # D judges an input and an image together: both sets of channels
        disc_arch = {**discriminator_arch(disc, channels), "in_channels": 2 * channels}
        G, D = build_generator(gen_arch), build_discriminator(disc_arch)
        init_weights(G, str(model.init_type), model.init_gain)
        init_weights(D, str(disc.init_type), disc.init_gain)
        return cls(
            (gen_arch, disc_arch), G, D, str(options.direction), cfg.loss, options.lambda_L1,
            pools, fuse_discriminator=fuses(disc, cfg.train.fuse_passes),
        )  # fmt: skip

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def arch(self) -> dict[str, Any]:
        return {"generator": dict(self.gen_arch), "discriminator": dict(self.disc_arch)}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"G": list(self.G.parameters()), "D": list(self.D.parameters())}

    def phases(self, step: int) -> list[Phase]:
        update_g = step % self.critic_steps == 0  # else a critic-only step (wgangp)
        d_phase = Phase("D", partial(self._discriminator_loss, with_generator=update_g))
        return [d_phase, Phase("G", self._generator_loss)] if update_g else [d_phase]

    def _discriminator_loss(
        self, batch: Batch, cache: dict, with_generator: bool
    ) -> tuple[torch.Tensor, Terms]:
        """D on (input, target) versus (input, G(input)); G's forward runs here, once."""
        source, target = batch[self.source], batch[self.target]
        if with_generator:
            self.clear_masks()
            cache["fake"] = self.runners["G"](source)  # (N, C, H, W) in [-1, 1], graph kept
            fake = cache["fake"].detach()
        else:  # critic-only step: a fresh output, no graph
            with torch.no_grad():
                fake = self.G(source)
        real_score, fake_score, gp = self.runners["D"](source, target, fake)
        return discriminator_terms(
            self.adv, self.gan_mode, self.lambda_gp, real_score, fake_score, gp
        )

    def _generator_loss(self, batch: Batch, cache: dict) -> tuple[torch.Tensor, Terms]:
        """GAN(D(input, G(input))) + lambda_L1 * ||G(input) - target||_1, with D frozen."""
        source, target, fake = batch[self.source], batch[self.target], cache["fake"]
        set_requires_grad([self.D], False)  # D only scores here: no gradients for it
        try:
            terms = {"G_GAN": self.adv(self.D(torch.cat([source, fake], 1)), True)}
        finally:
            set_requires_grad([self.D], True)
        terms["G_L1"] = F.l1_loss(fake.float(), target.float()) * self.lambda_L1
        penalty, extra = self.penalty_terms([])  # no tone term: the L1 sets the tones
        total = terms["G_GAN"] + terms["G_L1"] + penalty
        terms.update(extra)
        terms["G"] = total
        return total, {k: v.detach() for k, v in terms.items()}

    def grids(self, real: Batch) -> dict[str, list[torch.Tensor]]:
        source = real[self.source]
        name = f"{self.source}2{self.target}"
        return {name: [source, self.G(source), real[self.target]]}  # input, output, target
