"""Training methods as plug-ins and their registry by name.

Each method is two modules: `<name>_options.py` (torch-free: its config schema, defaults and
checks, found by gantrans.methods.registry) and the module of its plug-in class (a
gantrans.methods.base.Method: its networks, loss phases and what a checkpoint and the logs
need). The loop (gantrans.training) only asks a method for the optimisers' parameter groups,
the phases of a step and the images to show.

The names below are imported on first use, so importing the registry or the options needs no
torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Batch": "gantrans.methods.base",
    "Method": "gantrans.methods.base",
    "Phase": "gantrans.methods.base",
    "Terms": "gantrans.methods.base",
    "discriminator_arch": "gantrans.methods.base",
    "fuses": "gantrans.methods.base",
    "generator_arch": "gantrans.methods.base",
    "CUT": "gantrans.methods.cut",
    "CycleGAN": "gantrans.methods.cyclegan",
    "CycleGANLoss": "gantrans.methods.cyclegan",
    "CycleGANMethod": "gantrans.methods.cyclegan",
    "DCGAN": "gantrans.methods.dcgan",
    "Pix2Pix": "gantrans.methods.pix2pix",
}


def method_class(name: str) -> type:
    """The plug-in class (a gantrans.methods.base.Method) of `method=NAME`."""
    from gantrans.methods.registry import plugin_class

    return plugin_class(name)


def __getattr__(name: str) -> Any:
    if name == "METHODS":  # {method name: plug-in class}, every registered method
        from gantrans.methods.registry import names

        return {n: method_class(n) for n in names()}
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "method_class", *_EXPORTS]
