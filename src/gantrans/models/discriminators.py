"""CycleGAN discriminators (PatchGAN and per-pixel) with the reference implementation's layout."""

from __future__ import annotations

import torch
from torch import nn

from gantrans.models.layers import get_norm_layer, norm_uses_bias


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017): classifies overlapping patches as real/fake.

    With ``n_layers=3`` every output element sees a 70x70 receptive field (the "70x70
    PatchGAN" of the CycleGAN paper): C64-C128-C256-C512 then a 1-channel conv.
    """

    def __init__(
        self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance"
    ) -> None:
        """Build the discriminator.

        Args:
            input_nc: Input channels (1 for grayscale, 3 for RGB).
            ndf: Filters in the first conv layer.
            n_layers: Number of stride-2 conv layers (3 for the 70x70 PatchGAN).
            norm: ``"instance"``, ``"batch"`` or ``"none"``.
        """
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        super().__init__()
        norm_layer = get_norm_layer(norm)
        use_bias = norm_uses_bias(norm)
        kw, padw = 4, 1

        # Indices for n_layers=3 (state_dict keys "model.<index>.<param>"):
        #   0 conv s2, 1 LReLU, 2 conv s2, 3 norm, 4 LReLU, 5 conv s2, 6 norm, 7 LReLU,
        #   8 conv s1, 9 norm, 10 LReLU, 11 conv s1 -> 1 channel
        # First layer has no norm (and hence always a bias).
        # (N, input_nc, H, W) -> (N, ndf, H/2, W/2)
        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw),
            nn.LeakyReLU(0.2, True),
        ]

        # n_layers - 1 further stride-2 convs, channel multiplier capped at 8.
        nf_mult = 1
        for n in range(1, n_layers):
            nf_mult_prev = nf_mult
            nf_mult = min(2**n, 8)
            layers += [
                nn.Conv2d(
                    ndf * nf_mult_prev,
                    ndf * nf_mult,
                    kernel_size=kw,
                    stride=2,
                    padding=padw,
                    bias=use_bias,
                ),
                norm_layer(ndf * nf_mult),
                nn.LeakyReLU(0.2, True),
            ]

        # One stride-1 conv: spatial size shrinks by 1 (k4, p1).
        nf_mult_prev = nf_mult
        nf_mult = min(2**n_layers, 8)
        layers += [
            nn.Conv2d(
                ndf * nf_mult_prev,
                ndf * nf_mult,
                kernel_size=kw,
                stride=1,
                padding=padw,
                bias=use_bias,
            ),
            norm_layer(ndf * nf_mult),
            nn.LeakyReLU(0.2, True),
        ]

        # Patch logits: 1 channel, stride 1 (shrinks by 1 again). No sigmoid: the GAN loss
        # (LSGAN MSE or BCE-with-logits) is applied to the raw map.
        layers += [nn.Conv2d(ndf * nf_mult, 1, kernel_size=kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score every patch.

        Args:
            x: Images, shape (N, input_nc, H, W) in [-1, 1].

        Returns:
            Unbounded patch scores, shape (N, 1, H', W'); for n_layers=3,
            H' = H/8 - 2 (e.g. 256 -> 30, 64 -> 6).
        """
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN ("PixelGAN"): classifies each pixel independently as real or fake."""

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "instance") -> None:
        """Build the discriminator.

        Args:
            input_nc: Input channels (1 for grayscale, 3 for RGB).
            ndf: Filters in the first conv layer.
            norm: ``"instance"``, ``"batch"`` or ``"none"``.
        """
        super().__init__()
        norm_layer = get_norm_layer(norm)
        use_bias = norm_uses_bias(norm)
        # Keys "net.0", "net.2", ["net.3" for batch norm], "net.5".
        # The final conv is not followed by a norm but, as in the reference, it uses
        # bias=use_bias too (so it has no bias with batch norm); kept for key compatibility.
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=use_bias),
            norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=use_bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score every pixel.

        Args:
            x: Images, shape (N, input_nc, H, W) in [-1, 1].

        Returns:
            Unbounded per-pixel scores, shape (N, 1, H, W).
        """
        return self.net(x)
