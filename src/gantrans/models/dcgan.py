"""The DCGAN networks (Radford et al. 2016): a generator from a latent vector, a discriminator.

Generator: z (N, nz, 1, 1) -> a 4x4 map by a transposed convolution, then one stride-2
transposed convolution per doubling, each followed by batch norm and ReLU, the last one to the
image channels and tanh. Discriminator: the mirror, stride-2 convolutions with LeakyReLU 0.2
(batch norm on all but the first), down to 4x4, then a 4x4 convolution to one logit per image.
At 64 px these are the paper's networks (and PyTorch's DCGAN example): ngf * 8 channels at 4x4
halving to ngf at 32x32; 32 px drops the widest layer, 128 px adds a layer of ngf * 16.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from gantrans.config import DCGAN_SIZES
from gantrans.models import discriminator_options

DCGAN_NORMS = ("batch", "none")


def _levels(image_size: int) -> int:
    """Stride-2 (transposed) convolutions between 4x4 and the image side."""
    if image_size not in DCGAN_SIZES:
        raise ValueError(
            f"DCGAN image_size must be one of {', '.join(map(str, DCGAN_SIZES))}, got {image_size}"
        )
    return image_size.bit_length() - 3  # log2(size) - 2


def _norm(norm: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


def latents(n: int, nz: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, nz) latent vectors from N(0, I), drawn on the CPU (the same on every device)."""
    return torch.randn(n, nz, generator=generator)


class DCGANGenerator(nn.Module):
    """z (N, nz) or (N, nz, 1, 1) -> images (N, out_channels, S, S) in [-1, 1].

    Args:
        nz: Latent size (100 in the paper).
        out_channels: Image channels (1 or 3).
        image_size: S, one of `DCGAN_SIZES`.
        ngf: Channels of the last hidden layer; each layer towards 4x4 doubles them.
        norm: "batch" (the paper's) or "none".
    """

    def __init__(
        self, nz: int, out_channels: int, image_size: int = 64, ngf: int = 64, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.nz, self.image_size = nz, image_size
        levels = _levels(image_size)
        width = ngf * 2 ** (levels - 1)  # channels at 4x4
        bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=bias),  # 1x1 -> 4x4
            _norm(norm, width),
            nn.ReLU(True),
        ]
        for _ in range(levels - 1):  # 4 -> 8 -> ... -> S/2, halving the channels
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=bias),
                _norm(norm, width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, out_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2:
            z = z[:, :, None, None]
        return self.main(z)


class DCGANDiscriminator(nn.Module):
    """Images (N, in_channels, S, S) -> one real/fake logit per image, shape (N, 1, 1, 1).

    Args:
        in_channels: Image channels (1 or 3).
        image_size: S, one of `DCGAN_SIZES`.
        ndf: Channels of the first layer; each stride-2 layer doubles them.
        norm: "batch" (the paper's; none on the first layer) or "none" (the choice for WGAN-GP,
            whose penalty is per sample).
    """

    def __init__(
        self, in_channels: int, image_size: int = 64, ndf: int = 64, norm: str = "batch"
    ) -> None:
        super().__init__()
        levels = _levels(image_size)
        bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, True),
        ]
        width = ndf
        for _ in range(levels - 1):  # S/2 -> ... -> 4, doubling the channels
            layers += [
                nn.Conv2d(width, width * 2, 4, 2, 1, bias=bias),
                _norm(norm, width * 2),
                nn.LeakyReLU(0.2, True),
            ]
            width *= 2
        layers.append(nn.Conv2d(width, 1, 4, 1, 0, bias=False))  # 4x4 -> 1x1
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def _int(arch: Mapping[str, Any], key: str, minimum: int) -> int:
    value = arch.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"DCGAN config key {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _norm_key(arch: Mapping[str, Any]) -> str:
    norm = str(arch.get("norm", "batch"))
    if norm not in DCGAN_NORMS:
        raise ValueError(f"DCGAN norm must be one of {', '.join(DCGAN_NORMS)}, got {norm!r}")
    return norm


def build_dcgan_generator(arch: Mapping[str, Any]) -> DCGANGenerator:
    """The generator of an architecture dict: ``nz``, ``out_channels``, ``image_size``,
    ``ngf``, ``norm`` (as a checkpoint records it). Weights keep PyTorch's initialisation."""
    return DCGANGenerator(
        _int(arch, "nz", 1), _int(arch, "out_channels", 1), _int(arch, "image_size", 16),
        _int(arch, "ngf", 1), _norm_key(arch),
    )  # fmt: skip


def build_dcgan_discriminator(arch: Mapping[str, Any]) -> DCGANDiscriminator:
    """The discriminator of an architecture dict: ``in_channels``, ``image_size``, ``ndf``,
    ``norm`` and the optional ``spectral_norm`` and ``augment`` (see
    `gantrans.models.discriminator_options`). Weights keep PyTorch's initialisation."""
    net = DCGANDiscriminator(
        _int(arch, "in_channels", 1), _int(arch, "image_size", 16), _int(arch, "ndf", 1),
        _norm_key(arch),
    )  # fmt: skip
    return discriminator_options(net, arch)
