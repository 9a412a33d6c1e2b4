"""CycleGAN's options (torch-free): `method=cyclegan` (configs/method/cyclegan.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gantrans.methods.options import MethodConfig

LAMBDA_CYCLE = 10.0
LAMBDA_IDENTITY = 0.5
"""The paper's loss weights: loss.lambda_cycle and loss.lambda_identity when left null."""


@dataclass
class CycleGANMethodConfig(MethodConfig):
    """CycleGAN (Zhu et al. 2017): two generators, two discriminators, cycle consistency."""

    name: str = "cyclegan"
    order: ClassVar[int] = 0
    summary: ClassVar[str] = "unpaired, both ways: two generators kept honest by a cycle (default)"
    plugin: ClassVar[str] = "gantrans.methods.cyclegan:CycleGANMethod"
    shared_defaults: ClassVar[dict[str, Any]] = {
        "loss.lambda_cycle": LAMBDA_CYCLE,
        "loss.lambda_identity": LAMBDA_IDENTITY,
        "train.pool_size": 50,
    }
