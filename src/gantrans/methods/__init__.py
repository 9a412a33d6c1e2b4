"""Training methods as plug-ins (CycleGAN, CUT, FastCUT, pix2pix, DCGAN) and their registry by name.

A method owns its networks, its loss phases and what a checkpoint and the logs need; the loop
(gantrans.training.engine, gantrans.training.train) only asks it for the optimisers' parameter groups, the phases
of a step and the images to show (the interface: gantrans.methods.base.Method).
"""

from __future__ import annotations

from gantrans.methods.base import (
    Batch,
    Method,
    Phase,
    Terms,
    discriminator_arch,
    fuses,
    generator_arch,
)
from gantrans.methods.cut import CUT
from gantrans.methods.cyclegan import CycleGAN, CycleGANLoss, CycleGANMethod
from gantrans.methods.dcgan import DCGAN
from gantrans.methods.pix2pix import Pix2Pix

METHODS: dict[str, type[Method]] = {
    "cyclegan": CycleGANMethod,
    "cut": CUT,
    "fastcut": CUT,
    "dcgan": DCGAN,
    "pix2pix": Pix2Pix,
}
"""`method=NAME` -> its plug-in class (FastCUT is CUT with other defaults)."""


def method_class(name: str) -> type[Method]:
    """The plug-in class of `method=NAME`."""
    if name not in METHODS:
        raise KeyError(f"no training method {name!r}: choose one of {', '.join(METHODS)}")
    return METHODS[name]


__all__ = [
    "CUT",
    "METHODS",
    "Batch",
    "CycleGAN",
    "CycleGANLoss",
    "CycleGANMethod",
    "DCGAN",
    "Method",
    "Phase",
    "Pix2Pix",
    "Terms",
    "discriminator_arch",
    "fuses",
    "generator_arch",
    "method_class",
]
