"""Network builders: config dict -> generator / discriminator modules."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral
from typing import Any

from torch import nn

from gantrans.models import augment
from gantrans.models.discriminators import NLayerDiscriminator, PixelDiscriminator
from gantrans.models.generators import ResnetBlock, ResnetGenerator
from gantrans.models.init import INIT_TYPES, init_weights
from gantrans.models.layers import NORM_TYPES, PADDING_TYPES, UPSAMPLE_TYPES, get_norm_layer
from gantrans.models.unet import UnetGenerator, UnetSkipConnectionBlock

__all__ = [
    "GENERATOR_NAMES",
    "DISCRIMINATOR_NAMES",
    "INIT_TYPES",
    "NORM_TYPES",
    "PADDING_TYPES",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "UnetGenerator",
    "UnetSkipConnectionBlock",
    "build_discriminator",
    "build_generator",
    "discriminator_options",
    "get_norm_layer",
    "init_weights",
    "size_multiple",
]

GENERATOR_NAMES = ("resnet", "unet")
DISCRIMINATOR_NAMES = ("patchgan", "pixel")

_MISSING = object()


def _get(arch: Mapping[str, Any], key: str, what: str, default: Any = _MISSING) -> Any:
    """Return ``arch[key]``, or ``default``; raise ValueError if missing with no default."""
    value = arch.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise ValueError(f"{what} config is missing required key {key!r}")
        return default
    return value


def _get_int(arch: Mapping[str, Any], key: str, what: str, minimum: int) -> int:
    """Return ``arch[key]`` as an int >= ``minimum``; raise ValueError otherwise."""
    value = _get(arch, key, what)
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{what} config key {key!r} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what} config key {key!r} must be >= {minimum}, got {value}")
    return int(value)


def _get_bool(arch: Mapping[str, Any], key: str, what: str) -> bool:
    """Return ``arch[key]`` as a bool; raise ValueError if it is not a bool."""
    value = _get(arch, key, what)
    if not isinstance(value, bool):
        raise ValueError(f"{what} config key {key!r} must be true or false, got {value!r}")
    return value


def _get_choice(
    arch: Mapping[str, Any], key: str, what: str, choices: tuple[str, ...], default: Any = _MISSING
) -> str:
    """Return ``arch[key]`` if it is one of ``choices``; raise ValueError otherwise."""
    value = _get(arch, key, what, default)
    if value not in choices:
        raise ValueError(
            f"{what} config key {key!r} must be one of {', '.join(choices)}; got {value!r}"
        )
    return str(value)


def _check_mapping(arch: Any, what: str) -> None:
    if not isinstance(arch, Mapping):
        raise ValueError(f"{what} config must be a mapping, got {type(arch).__name__}")


def build_generator(arch: Mapping[str, Any]) -> nn.Module:
    """Build a generator from its config section.

    Weights keep PyTorch's default initialization; call :func:`init_weights` afterwards.
    Keys not listed below are ignored.

    Args:
        arch: Mapping (dict or OmegaConf DictConfig) with keys
            ``name`` (``"resnet"`` | ``"unet"``), ``in_channels``, ``out_channels``, ``ngf``,
            ``norm`` (``"instance"`` | ``"batch"`` | ``"none"``), ``dropout`` (bool);
            for ``resnet`` also ``n_blocks`` and optionally ``padding_type``
            (``"reflect"`` (default) | ``"replicate"`` | ``"zero"``) and ``input_skip``
            (bool, default false: see ResnetGenerator) and ``upsample`` (``"transpose"``
            (default) | ``"resize"``); optionally ``mask`` (bool, default
            false: a change mask, see ChangeMask);
            for ``unet`` also ``num_downs`` (>= 5; 7 = unet128, 8 = unet256).

    Returns:
        A module mapping (N, in_channels, H, W) in [-1, 1] to (N, out_channels, H, W) in
        [-1, 1], for H and W multiples of :func:`size_multiple`.

    Raises:
        ValueError: If ``name`` is unknown or a key is missing or invalid.
    """
    what = "generator"
    _check_mapping(arch, what)
    name = _get_choice(arch, "name", what, GENERATOR_NAMES)
    in_channels = _get_int(arch, "in_channels", what, 1)
    out_channels = _get_int(arch, "out_channels", what, 1)
    ngf = _get_int(arch, "ngf", what, 1)
    norm = _get_choice(arch, "norm", what, NORM_TYPES)
    dropout = _get_bool(arch, "dropout", what)
    mask = _get_bool(arch, "mask", what) if arch.get("mask") is not None else False
    if mask and in_channels != out_channels:
        raise ValueError("generator config key 'mask' needs in_channels == out_channels")
    if name == "resnet":
        return ResnetGenerator(
            in_channels,
            out_channels,
            ngf=ngf,
            norm=norm,
            use_dropout=dropout,
            n_blocks=_get_int(arch, "n_blocks", what, 0),
            padding_type=_get_choice(arch, "padding_type", what, PADDING_TYPES, "reflect"),
            input_skip=bool(arch.get("input_skip", False)),
            mask=mask,
            upsample=_get_choice(arch, "upsample", what, UPSAMPLE_TYPES, "transpose"),
        )
    return UnetGenerator(
        in_channels,
        out_channels,
        num_downs=_get_int(arch, "num_downs", what, 5),
        ngf=ngf,
        norm=norm,
        use_dropout=dropout,
        mask=mask,
    )


def build_discriminator(arch: Mapping[str, Any]) -> nn.Module:
    """Build a discriminator from its config section.

    Weights keep PyTorch's default initialization; call :func:`init_weights` afterwards.
    Keys not listed below are ignored.

    Args:
        arch: Mapping with keys ``name`` (``"patchgan"`` | ``"pixel"``), ``in_channels``,
            ``ndf``, ``norm`` (``"instance"`` | ``"batch"`` | ``"none"``), for
            ``patchgan`` ``n_layers`` (3 = 70x70 PatchGAN), and optionally
            ``spectral_norm`` and ``augment`` (see :func:`discriminator_options`).

    Returns:
        A module mapping (N, in_channels, H, W) images to unbounded real/fake scores of shape
        (N, 1, H', W') (one per patch or per pixel).

    Raises:
        ValueError: If ``name`` is unknown or a key is missing or invalid.
    """
    what = "discriminator"
    _check_mapping(arch, what)
    name = _get_choice(arch, "name", what, DISCRIMINATOR_NAMES)
    in_channels = _get_int(arch, "in_channels", what, 1)
    ndf = _get_int(arch, "ndf", what, 1)
    norm = _get_choice(arch, "norm", what, NORM_TYPES)
    if name == "patchgan":
        net: nn.Module = NLayerDiscriminator(
            in_channels, ndf=ndf, n_layers=_get_int(arch, "n_layers", what, 0), norm=norm
        )
    else:
        net = PixelDiscriminator(in_channels, ndf=ndf, norm=norm)
    return discriminator_options(net, arch)


def discriminator_options(net: nn.Module, arch: Mapping[str, Any]) -> nn.Module:
    """Apply a discriminator section's optional keys to a built discriminator.

    ``spectral_norm`` (bool, default false): every convolution and linear layer's weight is
    divided by its largest singular value (Miyato et al. 2018), which bounds how fast the
    discriminator's output can change with its input. ``augment`` (a DiffAugment policy such as
    "color,translation,cutout", default none: gantrans.models.augment): the discriminator
    augments what it scores in training mode.

    Raises:
        ValueError: An invalid value.
    """
    what = "discriminator"
    if arch.get("spectral_norm") is not None and _get_bool(arch, "spectral_norm", what):
        for module in list(net.modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(module)
    return augment.attach(net, arch.get("augment"))


def size_multiple(arch: Mapping[str, Any]) -> int:
    """Return what input height and width must be a multiple of for the generator.

    Args:
        arch: The generator config section (as for :func:`build_generator`).

    Returns:
        4 for ``resnet`` (two stride-2 downsamplings), ``2 ** num_downs`` for ``unet``.

    Raises:
        ValueError: If ``name`` is unknown or, for ``unet``, ``num_downs`` is missing/invalid.
    """
    what = "generator"
    _check_mapping(arch, what)
    name = _get_choice(arch, "name", what, GENERATOR_NAMES)
    if name == "resnet":
        return 4
    return 2 ** _get_int(arch, "num_downs", what, 5)
