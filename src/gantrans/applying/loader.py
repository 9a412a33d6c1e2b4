"""Generators from any checkpoint a command accepts: gantrans, reference files, pretrained:NAME."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from gantrans import checkpoint
from gantrans.applying.pretrained import PREFIX, fetch, is_pretrained, reverse_of
from gantrans.applying.reference import EXPECTED, describe, is_reference_state_dict, load_reference
from gantrans.checkpoint import (
    build_network,
    check_checkpoint,
    is_gantrans_checkpoint,
    load_file,
    load_state,
)
from gantrans.errors import CheckpointError
from gantrans.models import build_generator

log = logging.getLogger("gantrans")


def generator_of(ckpt: dict, direction: str, path: str | Path) -> tuple[nn.Module, dict]:
    """The generator of a loaded gantrans checkpoint for `direction`, on the CPU in eval mode.

    Raises:
        CheckpointError: One line, if the checkpoint does not translate that way or its weights
            do not fit its architecture.
    """
    if checkpoint.generates(ckpt):
        raise checkpoint.not_a_translator(ckpt, path)
    arch = checkpoint.generator_arch(ckpt)
    net = build_network(build_generator, arch, "generator", path)
    load_state(net, checkpoint.generator_weights(ckpt, direction, path), direction, path)
    return net.eval(), arch


def load_generator(
    path: str | Path, direction: str, device: torch.device, progress: bool = True
) -> tuple[nn.Module, dict]:
    """The generator for `direction` ("AtoB" or "BtoA") from a checkpoint, in eval mode.

    Args:
        path: A gantrans checkpoint (of any method), a generator file saved by
            pytorch-CycleGAN-and-pix2pix (e.g. ``latest_net_G_A.pth``), or ``pretrained:NAME``
            (downloaded once, then cached).
        direction: Picks the generator of a gantrans checkpoint that translates that way
            (a CUT checkpoint has AtoB only). A reference file holds a single generator, which
            is used as is whatever the direction (with a warning for BtoA).
        device: Where to put the network.
        progress: Show a progress bar while a pretrained model downloads.

    Returns:
        The network and its architecture dict (as for `build_generator`).

    Raises:
        CheckpointError: One line, if the file is missing, unsafe, neither format, or does not
            translate `direction`.
    """
    spec = str(path)
    if is_pretrained(spec):
        path = fetch(spec[len(PREFIX) :], progress=progress)
    obj = load_file(path)
    if is_gantrans_checkpoint(obj):
        net, arch = generator_of(check_checkpoint(obj, path), direction, path)
        return net.to(device), arch
    if not is_reference_state_dict(obj):
        raise CheckpointError(
            f"{path} is not a gantrans checkpoint nor a generator file ({_what(obj)}): "
            f"expected {EXPECTED}"
        )
    net, arch = load_reference(obj, path)
    log.info("reference checkpoint: %s", describe(arch))
    if direction != "AtoB":
        other = reverse_of(spec[len(PREFIX) :]) if is_pretrained(spec) else None
        log.warning(
            "direction=%s: %s holds a single generator, used as is%s",
            direction,
            spec,
            f" (for the other direction use ckpt={PREFIX}{other})" if other else "",
        )
    return net.to(device).eval(), arch


def load_sampler(path: str | Path, device: torch.device) -> tuple[nn.Module, dict, dict]:
    """The generator of an unconditional (DCGAN) checkpoint, in eval mode.

    Returns:
        (network: latents (N, nz) -> images (N, C, S, S) in [-1, 1], its architecture dict,
        the loaded checkpoint).

    Raises:
        CheckpointError: One line, if the file is missing, unsafe, not a gantrans checkpoint,
            or of a translation model.
    """
    from gantrans.models.dcgan import build_dcgan_generator

    obj = load_file(path)
    if not is_gantrans_checkpoint(obj):
        raise CheckpointError(
            f"{path} is not a gantrans checkpoint ({_what(obj)}): `gantrans sample` needs one "
            "written by `gantrans train method=dcgan`"
        )
    ckpt = check_checkpoint(obj, path)
    weights = checkpoint.sampler_weights(ckpt, path)
    arch = checkpoint.generator_arch(ckpt)
    net = build_network(build_dcgan_generator, arch, "generator", path)
    load_state(net, weights, "G", path)
    return net.to(device).eval(), arch, ckpt


def _what(obj: object) -> str:
    """A few words on what an unrecognised checkpoint holds."""
    if isinstance(obj, dict):
        keys = [str(k) for k in list(obj)[:3]]
        more = ", ..." if len(obj) > 3 else ""
        return f"it holds a dict with keys {', '.join(keys)}{more}" if keys else "an empty dict"
    return f"it holds a {type(obj).__name__}"
