"""The U-Net generator (Ronneberger et al. 2015) with the reference implementation's layer
layout, so its published pix2pix and CycleGAN U-Net weights load."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gantrans.models.layers import (
    ChangeMask,
    check_layers,
    check_mask,
    get_norm_layer,
    norm_uses_bias,
)


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: ``x -> [x, up(sub(down(x)))]`` (Ronneberger et al. 2015).

    ::

        x ------------------- identity -------------------> x --+
          |-- downsample --> submodule --> upsample --> y --+--> cat([x, y], C)
                                                               (not outermost)
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: UnetSkipConnectionBlock | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        """Build one level.

        Args:
            outer_nc: Channels this level outputs (before the skip concatenation).
            inner_nc: Channels after this level's downsampling conv.
            input_nc: Channels this level receives; defaults to ``outer_nc``.
            submodule: The next-inner level (None for the innermost).
            outermost: This is the top level (no skip concat, Tanh output).
            innermost: This is the bottleneck level (no submodule).
            norm: ``"instance"``, ``"batch"`` or ``"none"``.
            use_dropout: Append Dropout(0.5) after the upsampling (intermediate levels only).
        """
        super().__init__()
        self.outermost, self.innermost = outermost, innermost
        norm_layer = get_norm_layer(norm)
        use_bias = norm_uses_bias(norm)
        if input_nc is None:
            input_nc = outer_nc

        # Down: (N, input_nc, H, W) -> (N, inner_nc, H/2, W/2)
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        downnorm = norm_layer(inner_nc)
        uprelu = nn.ReLU(True)
        upnorm = norm_layer(outer_nc)

        layers: list[nn.Module]
        if outermost:
            # Up: (N, 2 inner_nc, H/2, W/2) -> (N, outer_nc, H, W) in [-1, 1]; conv keeps its bias.
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            # Bottleneck has no submodule, so the up conv sees inner_nc (not 2 inner_nc) channels.
            upconv = nn.ConvTranspose2d(
                inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias
            )
            layers = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            # Input to the up conv is the submodule's concat: 2 inner_nc channels.
            upconv = nn.ConvTranspose2d(
                inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias
            )
            layers = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                layers.append(nn.Dropout(0.5))

        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the level.

        Args:
            x: Features, shape (N, input_nc, H, W).

        Returns:
            (N, outer_nc, H, W) in [-1, 1] at the outermost level, otherwise the skip
            concatenation ``[x, up(...)]`` of shape (N, input_nc + outer_nc, H, W).
        """
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(ChangeMask):
    """U-Net generator (pix2pix, Isola et al. 2017) built recursively from the inside out."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = False,
        mask: bool = False,
    ) -> None:
        """Build the generator.

        Args:
            input_nc: Input channels (1 for grayscale, 3 for RGB).
            output_nc: Output channels.
            mask: Draw a change mask too (see ChangeMask); needs ``output_nc == input_nc``.
            num_downs: Number of stride-2 downsamplings (>= 5); a 2**num_downs image becomes
                1x1 at the bottleneck (7 for unet128, 8 for unet256).
            ngf: Filters in the outermost conv layer.
            norm: ``"instance"``, ``"batch"`` or ``"none"``.
            use_dropout: Dropout(0.5) in the ``num_downs - 5`` intermediate ngf*8 levels.
        """
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5, got {num_downs}")
        check_mask(mask, input_nc, output_nc)
        super().__init__()
        self.mask = mask
        # Innermost (bottleneck) level: 8 ngf -> 8 ngf.
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm=norm, innermost=True)
        # num_downs - 5 intermediate 8 ngf levels, optionally with dropout.
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout
            )
        # Widening levels: 4 ngf -> 8 ngf, 2 ngf -> 4 ngf, ngf -> 2 ngf.
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        # Outermost level: input_nc -> ngf -> ... -> output_nc.
        self.model = UnetSkipConnectionBlock(
            output_nc + int(mask),
            ngf,
            input_nc=input_nc,
            submodule=block,
            outermost=True,
            norm=norm,
        )
        self.encoder_layers = num_downs + 1  # the input, then each downsampling's output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate a batch of images.

        Args:
            x: Images, shape (N, input_nc, H, W) in [-1, 1], H and W multiples of 2**num_downs.

        Returns:
            Images, shape (N, output_nc, H, W) in [-1, 1].
        """
        h = self.model(x)
        return self.composite(h, x) if self.mask else h

    def mask_conv(self) -> nn.Module:
        return self.model.model[3]  # the outermost level's up-convolution

    def _levels(self) -> list[UnetSkipConnectionBlock]:
        """The levels from the outermost in."""
        levels, block = [], self.model
        while True:
            levels.append(block)
            if block.innermost:
                return levels
            block = block.model[1 if block.outermost else 3]

    def encode(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """Encoder features: level 0 is the input, level k the k-th downsampling conv's output.

        Args:
            x: Images, shape (N, input_nc, H, W) in [-1, 1].
            layers: Levels in 0..num_downs.

        Returns:
            One (N, C_k, H / 2**k, W / 2**k) feature map per entry of ``layers``, in that order.
        """
        check_layers(layers, self.encoder_layers, "U-Net level")
        feats, h = {0: x}, x
        for level, block in enumerate(self._levels()[: max(layers)], start=1):
            seq = block.model
            if block.outermost:
                h = seq[0](h)  # downconv
            else:  # LeakyReLU (not in place: the stored features stay as they are), downconv
                h = seq[1](F.leaky_relu(h, seq[0].negative_slope))
            feats[level] = h
            if not (block.outermost or block.innermost):
                h = seq[2](h)  # downnorm
        return [feats[i] for i in layers]

    def encoder_channels(self, layers: Sequence[int]) -> list[int]:
        """The channels of `encode`'s feature maps, read from the layers (no forward pass)."""
        check_layers(layers, self.encoder_layers, "U-Net level")
        levels = self._levels()
        conv = [levels[0].model[0]] + [b.model[1] for b in levels[1:]]
        return [conv[0].in_channels if i == 0 else conv[i - 1].out_channels for i in layers]
