"""CUT's and FastCUT's options (torch-free): `method=cut`, `method=fastcut`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from omegaconf import DictConfig

from gantrans.errors import ConfigError
from gantrans.methods.options import MethodConfig, positive


@dataclass
class CUTMethodConfig(MethodConfig):
    """CUT (Park et al. 2020): one generator A -> B kept faithful by a patchwise contrastive loss."""

    name: str = "cut"
    lambda_GAN: float = 1.0  # weight of the adversarial term of the generator's loss
    lambda_NCE: float = 1.0  # weight of PatchNCE(G(A), A) (and of PatchNCE(G(B), B))
    nce_idt: bool = True  # also PatchNCE(G(B), B): G should leave B as it is
    # encoder layers compared by PatchNCE; null: the paper's for the generator (see gantrans.methods.cut)
    nce_layers: list[int] | None = None
    num_patches: int = 256  # locations sampled per layer and image, shared by query and key
    nce_T: float = 0.07  # temperature of the contrastive softmax
    head_units: int = 256  # width of each layer's 2-layer MLP projection head
    flip_equivariance: bool = False  # flip the input half the time; features must flip with it
    order: ClassVar[int] = 1
    summary: ClassVar[str] = "unpaired, one way: a contrastive loss on patches keeps the content"
    plugin: ClassVar[str] = "gantrans.methods.cut:CUT"
    directions: ClassVar[tuple[str, ...]] = ("AtoB",)
    shared_defaults: ClassVar[dict[str, Any]] = {"train.pool_size": 0}  # no image buffer
    not_applicable: ClassVar[dict[str, str]] = {
        "loss.lambda_cycle": "it has no cycle",
        "loss.lambda_identity": "its identity term is method.nce_idt",
    }

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        m = cfg.method
        for key in ("num_patches", "nce_T", "head_units"):
            positive(m[key], f"method.{key}")
        if m.lambda_GAN < 0 or m.lambda_NCE < 0 or m.lambda_GAN == m.lambda_NCE == 0:
            raise ConfigError(
                "method.lambda_GAN and method.lambda_NCE must be >= 0 and not both 0 "
                f"(got {m.lambda_GAN} and {m.lambda_NCE})"
            )
        layers = m.nce_layers
        if layers is not None and (not layers or min(layers) < 0 or len(set(layers)) < len(layers)):
            raise ConfigError(
                f"method.nce_layers={list(layers)} must be distinct layer indices >= 0, or null "
                "for the paper's layers"
            )


@dataclass
class FastCUTMethodConfig(CUTMethodConfig):
    """FastCUT: CUT without the identity term, a stronger PatchNCE and flip equivariance."""

    name: str = "fastcut"
    lambda_NCE: float = 10.0
    nce_idt: bool = False
    flip_equivariance: bool = True
    order: ClassVar[int] = 2
    summary: ClassVar[str] = "CUT's faster variant: no identity term, flip equivariance"
