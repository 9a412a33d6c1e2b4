"""pix2pix's options (torch-free): `method=pix2pix`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from omegaconf import DictConfig

from gantrans.config.choices import Direction
from gantrans.errors import ConfigError
from gantrans.methods.options import MethodConfig


@dataclass
class Pix2PixMethodConfig(MethodConfig):
    """pix2pix (Isola et al. 2017): a conditional GAN on aligned pairs, one generator input ->
    target and a discriminator that sees the input and an output side by side on channels."""

    name: str = "pix2pix"
    direction: Direction = Direction.AtoB  # AtoB: A is the input and B the target; BtoA: reverse
    lambda_L1: float = 100.0  # weight of ||G(input) - target||_1
    order: ClassVar[int] = 3
    summary: ClassVar[str] = "paired: a conditional GAN with an L1 term on aligned pairs"
    plugin: ClassVar[str] = "gantrans.methods.pix2pix:Pix2Pix"
    data: ClassVar[str] = "paired"
    directions: ClassVar[tuple[str, ...]] = ("AtoB",)  # the configured one: see method_directions
    not_applicable: ClassVar[dict[str, str]] = {
        "loss.lambda_cycle": "it has no cycle",
        "loss.lambda_identity": "it has no identity term",
        "loss.lambda_tone": "its L1 term to the target already sets the tones",
        "train.pool_size": "its discriminator sees each pair as it is made, without an image buffer",
    }

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        if cfg.method.lambda_L1 < 0:
            raise ConfigError(f"method.lambda_L1 must be >= 0, got {cfg.method.lambda_L1}")
        if cfg.loss.r1_gamma:
            raise ConfigError(
                "loss.r1_gamma does not apply to method=pix2pix (its discriminator scores pairs, "
                "not images of one domain): remove it"
            )
