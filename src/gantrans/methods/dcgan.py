"""DCGAN (Radford et al. 2016): unconditional generation of one domain's images, as a plug-in.

A generator G turns latent vectors z ~ N(0, I) into images; a discriminator D tells them from
the real images of `dataset.domain`. The loss is any of the loss group's (the paper's BCE by
default; WGAN-GP adds its penalty to D's loss). Nothing is translated: a checkpoint has no
directions, and `gantrans sample` draws images from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gantrans.config import to_plain
from gantrans.methods.base import Batch, Method, Phase, Terms, set_requires_grad
from gantrans.methods.cut import DiscriminatorScores
from gantrans.methods.image_pool import ImagePool
from gantrans.methods.losses import AdversarialLoss, discriminator_terms
from gantrans.models import build_discriminator, init_weights
from gantrans.models.dcgan import build_dcgan_discriminator, build_dcgan_generator, latents

if TYPE_CHECKING:
    from gantrans.config import TrainConfig

GRID_ROWS = 3  # rows of fixed-latent samples under the row of real images in the grids
LATENT_SEED_OFFSET = 7  # the fixed latents of the grids: their own stream of the run seed


def dcgan_generator_arch(model: Any, channels: int) -> dict[str, Any]:
    """The generator architecture a DCGAN checkpoint records, from the `model` section."""
    arch = {k: v for k, v in to_plain(model).items() if k not in ("init_type", "init_gain")}
    arch.update(out_channels=channels)
    return arch


class DCGAN(Method):
    """`method=dcgan` for the training loop.

    A step updates D on a batch of real images against G(z) (detached), then G to make D call
    G(z) real, with D frozen. With loss.critic_steps = k only every k-th step updates G (for
    WGAN-GP). The latents come from the global RNG, which a checkpoint saves: resuming draws
    the same ones.
    """

    discriminator_terms = ("D",)
    adversarial_terms = ("G_GAN",)
    progress_terms = ("G_GAN", "D", "D_acc")
    real_domains = {"D": "real"}

    def __init__(
        self,
        archs: tuple[dict, dict],
        G: nn.Module,
        D: nn.Module,
        loss: Any,
        grid_latents: torch.Tensor,
        fuse_discriminator: bool = False,
    ) -> None:
        super().__init__("dcgan", {}, {})
        self.gen_arch, self.disc_arch = dict(archs[0]), dict(archs[1])
        self.G, self.D = G, D
        self.nz = int(self.gen_arch["nz"])
        self.gan_mode = str(loss.name)
        self.adv = AdversarialLoss(self.gan_mode)
        self.lambda_gp, self.critic_steps = loss.lambda_gp, loss.critic_steps
        self.register_buffer("grid_latents", grid_latents, persistent=False)  # (k * rows, nz)
        self.runners = {
            "G": G,
            "D": DiscriminatorScores(D, self.gan_mode == "wgangp", fuse_discriminator),
        }

    @classmethod
    def build(cls, cfg: TrainConfig, channels: int, pools: Mapping[str, ImagePool]) -> DCGAN:
        model, disc = cfg.model, cfg.discriminator
        gen_arch = dcgan_generator_arch(model, channels)
        disc_arch = {k: v for k, v in to_plain(disc).items() if k not in ("init_type", "init_gain")}
        disc_arch.update(in_channels=channels)
        if disc_arch["name"] == "dcgan":
            disc_arch["image_size"] = int(model.image_size)
            D = build_dcgan_discriminator(disc_arch)
        else:  # a PatchGAN or pixel discriminator: one score per patch, averaged by the loss
            D = build_discriminator(disc_arch)
        G = build_dcgan_generator(gen_arch)
        init_weights(G, str(model.init_type), model.init_gain)
        init_weights(D, str(disc.init_type), disc.init_gain)
        k = cfg.train.num_samples
        fixed = latents(
            k * GRID_ROWS,
            gen_arch["nz"],
            torch.Generator().manual_seed(cfg.seed + LATENT_SEED_OFFSET),
        )  # a private stream: the grids show the same latents in every run of this seed
        fuse = cfg.train.fuse_passes and str(disc.norm) != "batch"
        return cls((gen_arch, disc_arch), G, D, cfg.loss, fixed, fuse_discriminator=fuse)

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def arch(self) -> dict[str, Any]:
        return {"generator": dict(self.gen_arch), "discriminator": dict(self.disc_arch)}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"G": list(self.G.parameters()), "D": list(self.D.parameters())}

    def phases(self, step: int) -> list[Phase]:
        update_g = step % self.critic_steps == 0
        d_phase = Phase("D", partial(self._discriminator_loss, with_generator=update_g))
        return [d_phase, Phase("G", self._generator_loss)] if update_g else [d_phase]

    def _latents(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return latents(n, self.nz).to(like.device)

    def _discriminator_loss(
        self, batch: Batch, cache: dict, with_generator: bool
    ) -> tuple[torch.Tensor, Terms]:
        """D on the real images versus G(z); G's forward runs here, once, for both phases."""
        real = batch["real"]  # (N, C, S, S) in [-1, 1]
        z = self._latents(real.shape[0], real)
        if with_generator:
            cache["fake"] = self.runners["G"](z)  # (N, C, S, S) in [-1, 1], with its graph
            fake = cache["fake"].detach()
        else:  # critic-only step: fresh fakes, no graph
            with torch.no_grad():
                fake = self.G(z)
        real_score, fake_score, gp = self.runners["D"](real, fake)
        return discriminator_terms(
            self.adv, self.gan_mode, self.lambda_gp, real_score, fake_score, gp
        )

    def _generator_loss(self, batch: Batch, cache: dict) -> tuple[torch.Tensor, Terms]:
        """GAN(D(G(z)), real), with D frozen."""
        set_requires_grad([self.D], False)  # D only scores here: no gradients for it
        try:
            loss = self.adv(self.D(cache["fake"]), True)
        finally:
            set_requires_grad([self.D], True)
        return loss, {"G_GAN": loss.detach(), "G": loss.detach()}

    def grids(self, real: Batch) -> dict[str, list[torch.Tensor]]:
        images = real["real"]
        k = images.shape[0]
        fakes = self.G(self.grid_latents[: k * GRID_ROWS])
        return {"samples": [images, *fakes.split(k)]}  # real images, then fixed-latent samples

    def sample(self, n: int) -> torch.Tensor:
        """n images G(z) from fresh latents of the global RNG: (n, C, S, S) in [-1, 1]."""
        return self.G(self._latents(n, self.grid_latents))
