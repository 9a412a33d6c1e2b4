"""Fixed sets of config values (enums) and the constants the schemas and checks share."""

from __future__ import annotations

from enum import Enum

AUGMENT_POLICIES = ("color", "translation", "cutout")
"""The transformations of discriminator.augment (gantrans.models.augment)."""
DCGAN_SIZES = (16, 32, 64, 128, 256)
"""Image sides the DCGAN networks build for (powers of two from 16: gantrans.models.dcgan)."""

# Overrides that drop train.yaml's per-dataset tuning (recipe/<dataset>, recipe/model/
# <dataset>_<model> and recipe/method/<dataset>_<method>), so the networks and losses are the
# method's paper settings whatever the dataset: what the benchmarks and the GPU check measure.
# `gantrans train` takes them on the command line too.
NO_DATASET_RECIPES = ("~recipe", "~recipe/model@_global_", "~recipe/method@_global_")


class Choice(str, Enum):
    """A config value from a fixed set; prints and formats as its value (`bf16`, not
    `Precision.bf16`), so typed configs read like the YAML in messages."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Norm(Choice):
    instance = "instance"
    batch = "batch"
    none = "none"


class PaddingType(Choice):
    reflect = "reflect"
    replicate = "replicate"
    zero = "zero"


class Upsample(Choice):
    transpose = "transpose"
    resize = "resize"


class InitType(Choice):
    normal = "normal"
    xavier = "xavier"
    kaiming = "kaiming"
    orthogonal = "orthogonal"


class GanMode(Choice):
    lsgan = "lsgan"
    bce = "bce"
    wgangp = "wgangp"


class Precision(Choice):
    auto = "auto"  # bf16 where the device runs it natively (AVX-512 BF16 / AMX CPUs, recent GPUs)
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class NonFinite(Choice):
    stop = "stop"
    rollback = "rollback"


class Direction(Choice):
    AtoB = "AtoB"
    BtoA = "BtoA"


# ---------------------------------------------------------------------------------------------
