"""DCGAN's options (torch-free): `method=dcgan`, unconditional generation of one domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from gantrans.config.choices import DCGAN_SIZES
from gantrans.config.groups import image_size
from gantrans.errors import ConfigError
from gantrans.methods.options import MethodConfig


@dataclass
class DCGANMethodConfig(MethodConfig):
    """DCGAN (Radford et al. 2016): unconditional generation of one domain's images from noise.

    It trains on `dataset.domain` only and translates nothing: `gantrans sample` draws images.
    """

    name: str = "dcgan"
    order: ClassVar[int] = 4
    summary: ClassVar[str] = "unconditional: images of one domain from noise (gantrans sample)"
    plugin: ClassVar[str] = "gantrans.methods.dcgan:DCGAN"
    data: ClassVar[str] = "single"
    directions: ClassVar[tuple[str, ...]] = ()
    shared_defaults: ClassVar[dict[str, Any]] = {"train.pool_size": 0, "dataset.domain": "B"}
    not_applicable: ClassVar[dict[str, str]] = {
        "loss.lambda_cycle": "it has no cycle",
        "loss.lambda_identity": "it has no translation to keep the identity of",
        "loss.lambda_tone": "it has no input whose tones to keep",
    }

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        if OmegaConf.select(cfg, "dataset.balance") is True:
            raise ConfigError(
                "dataset.balance=True needs two domains; method=dcgan trains on one "
                "(dataset.domain): remove it"
            )
        t = cfg.train
        if t.pool_size:
            raise ConfigError(
                f"train.pool_size={t.pool_size} does not apply to method=dcgan (it keeps no "
                "buffer of generated images): remove it"
            )
        if t.eval_every:
            raise ConfigError(
                "train.eval_every does not apply to method=dcgan, which translates nothing: "
                "score its checkpoints with `gantrans evaluate ckpt=...` (FID/KID of samples)"
            )
        if cfg.model.name != "dcgan":
            raise ConfigError(
                f"method=dcgan generates from noise and needs model=dcgan, not model "
                f"{cfg.model.name} (an image-to-image generator): pass model=dcgan"
            )
        size, data_size = cfg.model.image_size, image_size(cfg.dataset)
        if size not in DCGAN_SIZES:
            raise ConfigError(
                f"model.image_size={size}: the DCGAN networks build for "
                f"{', '.join(map(str, DCGAN_SIZES))} px"
            )
        if size != data_size:
            raise ConfigError(
                f"model.image_size={size} but dataset={cfg.dataset.name} gives {data_size} px "
                "images: set model.image_size to the dataset's size or the dataset's image size "
                "(dataset.image_size, or dataset.load_size and dataset.crop_size) to the model's"
            )
        d_norm = str(cfg.discriminator.norm) if cfg.discriminator.name == "dcgan" else None
        if "instance" in (str(cfg.model.norm), d_norm):
            raise ConfigError("method=dcgan networks take norm=batch or norm=none, not instance")
