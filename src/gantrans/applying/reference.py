"""Generator files saved by junyanz/pytorch-CycleGAN-and-pix2pix: recognise, rebuild and load them.

The reference saves one generator per file (``latest_net_G_A.pth``, pix2pix's
``latest_net_G.pth``, the published ``apple2orange.pth``, ...) as a bare state dict: tensors only, keyed by the positions of the
layers in its ``nn.Sequential`` trees. Our generators reproduce those trees index for index, so
the architecture can be read back from the keys and shapes alone:

ResNet (``model.N...``)
    ``model.1.weight`` is the first 7x7 conv (ngf, in_channels); the residual blocks are the
    ``model.N.conv_block`` entries from ``model.10`` on; the last 7x7 conv is
    ``model.<n_blocks + 17>.weight`` (out_channels). Inside a block the first conv sits at
    ``conv_block.1`` with reflection/replicate padding (the two cannot be told apart from the
    weights: reflect, the reference default, is assumed) and at ``conv_block.0`` with zero
    padding; a Dropout layer shifts the second conv by one index (5 -> 6, or 3 -> 4).
U-Net (``model.model.0.weight`` ...)
    Each level nests the next at index 1 (outermost) or 3 (the others), so the nesting depth is
    ``num_downs``. Dropout has no weights and sits last in its level, so it cannot be seen:
    it is assumed off, the reference's CycleGAN default (it makes no difference in eval mode).
Normalisation
    Batch norm layers carry ``weight``, ``bias``, ``running_mean`` and ``running_var``.
    The reference's instance norm has no affine weights; files written by old PyTorch versions
    still hold its stale ``running_mean``/``running_var``/``num_batches_tracked``, which are
    dropped here as the reference's ``__patch_instance_norm_state_dict`` does. With no norm
    layer at all (``norm=none``) the reference also drops the conv biases; they are loaded as
    zeros, which computes the same function. A bare state dict with conv biases and no norm
    weights is therefore read as instance norm.

The network is used in eval mode. For the published CycleGAN models (instance norm, no
dropout) that is exactly the reference's ``test.py``; for batch-norm files (pix2pix-style), whose
``test.py`` runs without ``--eval`` by default, eval mode uses the stored running statistics.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gantrans.errors import CheckpointError
from gantrans.models import build_generator

REFERENCE = "pytorch-CycleGAN-and-pix2pix"
RESNET_KEY = "model.1.weight"
UNET_KEY = "model.model.0.weight"
STALE_STATS = ("running_mean", "running_var", "num_batches_tracked")
EXPECTED = (
    f"a file written by `gantrans train` or a {REFERENCE} generator state dict such as "
    f"latest_net_G_A.pth or pix2pix's latest_net_G.pth (keys {RESNET_KEY}, ... for ResNet or "
    f"{UNET_KEY}, ... for U-Net)"
)


class _Mismatch(Exception):
    """The keys look like a reference generator but something does not fit."""


def _strip_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the ``module.`` prefix that nn.DataParallel adds to every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)  # also drops an OrderedDict's _metadata attribute


def is_reference_state_dict(obj: Any) -> bool:
    """Whether `obj` is a tensors-only state dict with a reference generator's first conv."""
    if not isinstance(obj, Mapping) or not obj:
        return False
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return False
    state = _strip_prefix(obj)
    return RESNET_KEY in state or UNET_KEY in state


def _conv(state: Mapping[str, torch.Tensor], key: str, kernel: int) -> torch.Tensor:
    weight = state.get(key)
    if weight is None:
        raise _Mismatch(f"no {key}")
    if weight.ndim != 4 or tuple(weight.shape[-2:]) != (kernel, kernel):
        raise _Mismatch(f"{key} is not a {kernel}x{kernel} convolution ({tuple(weight.shape)})")
    return weight


def _norm(state: Mapping[str, torch.Tensor], prefix: str, conv_bias: bool) -> str:
    """The norm type from the first norm layer's entries and whether convs carry a bias."""
    have = {k[len(prefix) + 1 :] for k in state if k.startswith(prefix + ".")}
    if {"weight", "bias", "running_mean", "running_var"} <= have:
        return "batch"
    if have & {"weight", "bias"}:
        raise _Mismatch(
            f"the norm layer {prefix} has affine weights but no running statistics "
            "(neither the reference's instance norm nor its batch norm)"
        )
    return "instance" if conv_bias else "none"


def _resnet_arch(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    first = _conv(state, RESNET_KEY, 7)
    blocks = sorted(
        {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    )
    n_blocks = len(blocks)
    if blocks != list(range(10, 10 + n_blocks)):
        raise _Mismatch(f"the residual blocks are at model.{blocks}, not model.10 onwards")
    last = _conv(state, f"model.{n_blocks + 17}.weight", 7)
    padding, dropout = "reflect", False
    if n_blocks:
        convs = sorted(
            int(m.group(1))
            for k, v in state.items()
            if (m := re.fullmatch(r"model\.10\.conv_block\.(\d+)\.weight", k)) and v.ndim == 4
        )
        layouts = {(1, 5): ("reflect", False), (1, 6): ("reflect", True)}
        layouts |= {(0, 3): ("zero", False), (0, 4): ("zero", True)}
        if tuple(convs) not in layouts:
            raise _Mismatch(f"the convolutions of model.10 are at conv_block.{convs}")
        padding, dropout = layouts[tuple(convs)]
    return {
        "name": "resnet",
        "in_channels": int(first.shape[1]),
        "out_channels": int(last.shape[0]),
        "ngf": int(first.shape[0]),
        "norm": _norm(state, "model.2", "model.1.bias" in state),
        "dropout": dropout,
        "n_blocks": n_blocks,
        "padding_type": padding,
    }


def _unet_arch(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    first = _conv(state, UNET_KEY, 4)
    num_downs, prefix = 1, "model.model.1"
    while any(k.startswith(prefix + ".model.") for k in state):
        num_downs += 1
        prefix += ".model.3"
    if num_downs < 5:
        raise _Mismatch(f"the U-Net has {num_downs} levels, fewer than the 5 it needs")
    last = _conv(state, "model.model.3.weight", 4)  # ConvTranspose2d: (in, out, kh, kw)
    return {
        "name": "unet",
        "in_channels": int(first.shape[1]),
        "out_channels": int(last.shape[1]),
        "ngf": int(first.shape[0]),
        "norm": _norm(state, "model.model.1.model.2", "model.model.0.bias" in state),
        "dropout": False,  # not visible in the weights; the reference's CycleGAN default
        "num_downs": num_downs,
    }


def infer_arch(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The generator config (as for `build_generator`) that a reference state dict was saved from.

    Args:
        state: A reference generator state dict (only key names and tensor shapes are read).

    Returns:
        The architecture dict: name, in/out channels, ngf, norm, dropout and n_blocks and
        padding_type (ResNet) or num_downs (U-Net).

    Raises:
        CheckpointError: If the keys do not describe a reference generator.
    """
    state = _strip_prefix(state)
    kind = "ResNet" if RESNET_KEY in state else "U-Net"
    try:
        return _resnet_arch(state) if kind == "ResNet" else _unet_arch(state)
    except _Mismatch as exc:
        raise CheckpointError(
            f"the state dict looks like a {REFERENCE} {kind} generator but {exc}: expected {EXPECTED}"
        ) from None


def describe(arch: Mapping[str, Any]) -> str:
    """One line saying what a recognised reference generator is."""
    io = f"ngf {arch['ngf']}, {arch['in_channels']}->{arch['out_channels']} channels"
    norm = "no norm" if arch["norm"] == "none" else f"{arch['norm']} norm"
    if arch["name"] == "resnet":
        extra = "".join(
            [
                ", dropout" if arch["dropout"] else "",
                ", zero padding" if arch["padding_type"] == "zero" else "",
            ]
        )
        return f"ResNet generator, {arch['n_blocks']} blocks, {io}, {norm}{extra}"
    return (
        f"U-Net generator, {arch['num_downs']} downsamplings, {io}, {norm} "
        "(dropout cannot be seen in the weights: assumed off, as it is at inference)"
    )


def _clean(state: dict[str, torch.Tensor], net: nn.Module, norm: str) -> dict[str, torch.Tensor]:
    """Drop stale instance-norm statistics; add the zero biases the reference leaves out."""
    expected = net.state_dict()
    clean = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if key not in expected and leaf in STALE_STATS:
            try:
                if isinstance(net.get_submodule(module), nn.InstanceNorm2d):
                    continue
            except AttributeError:
                pass
        clean[key] = value
    if norm == "none":
        for key, value in expected.items():
            weight = key[: -len("bias")] + "weight"
            if key.endswith(".bias") and key not in clean and weight in clean:
                clean[key] = torch.zeros_like(value)
    return clean


def load_reference(obj: Mapping[str, torch.Tensor], path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the generator a reference state dict was saved from and load its weights.

    Args:
        obj: The state dict, as read by `gantrans.checkpoint.load_file`.
        path: Where it came from, for messages.

    Returns:
        The network (on the CPU, in eval mode) and its architecture dict.

    Raises:
        CheckpointError: One line, if the weights do not fit the recognised architecture.
    """
    try:
        arch = infer_arch(obj)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    net = build_generator(arch)
    state = _clean(_strip_prefix(obj), net, arch["norm"])
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        reason = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        raise CheckpointError(
            f"{path} looks like a {REFERENCE} generator ({describe(arch)}) but its weights do not "
            f"fit: {reason}"
        ) from None
    return net.eval(), arch
