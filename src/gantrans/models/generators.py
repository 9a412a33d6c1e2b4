"""The CycleGAN ResNet generator with the reference implementation's layer layout (the U-Net:
gantrans.models.unet)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# The module trees below reproduce junyanz/pytorch-CycleGAN-and-pix2pix (models/networks.py)
# index for index, so its published state_dicts load with ``load_state_dict(strict=True)``.
# Keep every nn.Sequential in the same order: the state_dict keys are the positions in it.
from gantrans.models.layers import (
    PADDING_TYPES,
    UPSAMPLE_TYPES,
    ChangeMask,
    NormLayer,
    check_layers,
    check_mask,
    get_norm_layer,
    norm_uses_bias,
)


class ResnetBlock(nn.Module):
    """Residual block ``y = x + F(x)`` with two 3x3 convolutions (He et al. 2016)."""

    def __init__(
        self,
        dim: int,
        padding_type: str,
        norm_layer: NormLayer,
        use_dropout: bool,
        use_bias: bool,
    ) -> None:
        """Build the block.

        Args:
            dim: Number of input and output channels.
            padding_type: ``"reflect"``, ``"replicate"`` or ``"zero"``.
            norm_layer: Factory from :func:`get_norm_layer`.
            use_dropout: Insert ``Dropout(0.5)`` after the first conv's ReLU.
            use_bias: Whether the two convolutions carry a bias.
        """
        super().__init__()
        if padding_type not in PADDING_TYPES:
            raise ValueError(
                f"unknown padding_type {padding_type!r}; expected one of {', '.join(PADDING_TYPES)}"
            )
        self.conv_block = self._build_conv_block(
            dim, padding_type, norm_layer, use_dropout, use_bias
        )

    @staticmethod
    def _padding(padding_type: str) -> tuple[list[nn.Module], int]:
        """Return (explicit padding layers, conv padding) for a 3x3 conv that keeps H and W."""
        if padding_type == "reflect":
            return [nn.ReflectionPad2d(1)], 0
        if padding_type == "replicate":
            return [nn.ReplicationPad2d(1)], 0
        return [], 1  # "zero": let the conv pad

    def _build_conv_block(
        self,
        dim: int,
        padding_type: str,
        norm_layer: NormLayer,
        use_dropout: bool,
        use_bias: bool,
    ) -> nn.Sequential:
        # Indices with reflect/replicate padding (the reference layout):
        #   0 pad, 1 conv, 2 norm, 3 ReLU, [4 Dropout], 4|5 pad, 5|6 conv, 6|7 norm
        layers: list[nn.Module] = []
        pad, p = self._padding(padding_type)
        layers += pad
        layers += [
            nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias),
            norm_layer(dim),
            nn.ReLU(True),
        ]
        if use_dropout:
            layers += [nn.Dropout(0.5)]
        pad, p = self._padding(padding_type)
        layers += pad
        layers += [
            nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias),
            norm_layer(dim),
        ]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: Features, shape (N, dim, H, W).

        Returns:
            ``x + F(x)``, shape (N, dim, H, W).
        """
        return x + self.conv_block(x)


class ResnetGenerator(ChangeMask):
    """ResNet-based generator (Johnson et al. 2016) as used by CycleGAN (Zhu et al. 2017).

    c7s1-ngf, d(2ngf), d(4ngf), n_blocks x R(4ngf), u(2ngf), u(ngf), c7s1-out, Tanh.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        norm: str = "instance",
        use_dropout: bool = False,
        n_blocks: int = 9,
        padding_type: str = "reflect",
        input_skip: bool = False,
        mask: bool = False,
        upsample: str = "transpose",
    ) -> None:
        """Build the generator.

        Args:
            input_nc: Input channels (1 for grayscale, 3 for RGB).
            output_nc: Output channels.
            ngf: Filters in the first conv layer.
            norm: ``"instance"``, ``"batch"`` or ``"none"``.
            use_dropout: Dropout(0.5) inside each residual block.
            n_blocks: Number of residual blocks (6 for 128x128, 9 for 256x256 in the paper).
            padding_type: Padding inside residual blocks: ``"reflect"``, ``"replicate"``,
                ``"zero"``.
            input_skip: Also give the input image to the last 7x7 convolution (concatenated
                to its features). Normalisation layers throw away each image's absolute
                colour and brightness; the skip hands them back where the output is made,
                so what should not change (a background, a colour) can be copied. Off in
                the reference layout (its published weights have no such input).
            mask: Draw a change mask too (see ChangeMask): the last convolution gives
                ``output_nc + 1`` channels; needs ``output_nc == input_nc``.
            upsample: ``"transpose"``: stride-2 transposed 3x3 convolutions (the paper's and
                the reference layout's). ``"resize"``: nearest-neighbour x2, then a 3x3
                convolution (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts"):
                a transposed convolution whose kernel the stride does not divide adds its taps
                unevenly to the output pixels and draws a checkerboard at the highest
                frequency, which a discriminator or a two-sample test sees; the resize does
                not. Four times the multiply-adds in those two layers; other layer indices
                than the reference's from the first upsampling on.
        """
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        if upsample not in UPSAMPLE_TYPES:
            raise ValueError(
                f"unknown upsample {upsample!r}; expected one of {', '.join(UPSAMPLE_TYPES)}"
            )
        check_mask(mask, input_nc, output_nc)
        super().__init__()
        self.mask = mask
        norm_layer = get_norm_layer(norm)
        use_bias = norm_uses_bias(norm)

        # Indices for n_blocks=9 (state_dict keys are "model.<index>.<param>"):
        #   0 pad3, 1 conv7, 2 norm, 3 ReLU,
        #   4 conv s2, 5 norm, 6 ReLU, 7 conv s2, 8 norm, 9 ReLU,
        #   10..18 ResnetBlock,
        #   19 convT, 20 norm, 21 ReLU, 22 convT, 23 norm, 24 ReLU,
        #   25 pad3, 26 conv7, 27 Tanh
        # built in this order, so the default initialisation draws as the reference's does
        stem = _downsampling(input_nc, ngf, norm_layer, use_bias)
        blocks = [
            ResnetBlock(ngf * 4, padding_type, norm_layer, use_dropout, use_bias)
            for _ in range(n_blocks)
        ]  # at the bottleneck: (N, 4 ngf, H/4, W/4), shape preserved
        ups = _upsampling(ngf, norm_layer, use_bias, upsample, padding_type)
        self.input_skip, self.upsample = input_skip, upsample
        # (N, ngf, H, W) -> (N, output_nc, H, W) in [-1, 1]. This conv always has a bias.
        last = nn.Conv2d(ngf + (input_nc if input_skip else 0), output_nc + int(mask), 7)
        layers = [*stem, *blocks, *ups, nn.ReflectionPad2d(3), last, nn.Tanh()]
        self.model = nn.Sequential(*layers)
        # the encoder: every layer up to the last residual block (layer 9 + n_blocks)
        self.encoder_layers = 10 + n_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate a batch of images.

        Args:
            x: Images, shape (N, input_nc, H, W) in [-1, 1], H and W multiples of 4.

        Returns:
            Images, shape (N, output_nc, H, W) in [-1, 1].
        """
        if not self.input_skip:
            h = self.model(x)
        else:
            # a loop rather than slices of the Sequential, so that the module still scripts
            head = len(self.model) - 3  # the last pad, conv and tanh
            h = x
            for i, layer in enumerate(self.model):
                if i == head:
                    h = torch.cat([h, x], 1)  # (N, ngf + input_nc, H, W)
                h = layer(h)
        return self.composite(h, x) if self.mask else h

    def mask_conv(self) -> nn.Module:
        return self.model[-2]

    def init_input_skip(self) -> None:
        """Give the input skip a positive gain (after the weights' initialisation).

        The last convolution's taps from the input are drawn at random like the rest, so each
        output channel's taps from its own input channel (from all of them when the channel
        counts differ) sum to either sign: a small gain of about 0.1 on the input, positive
        or negative. Where it is negative this flips that output channel's skip taps, which
        keeps their size and pattern. Started negative, a generator draws the input's grey
        levels inverted, and the cycle learns to undo a tone remap that a two-sample test
        then sees at once (one smiles seed in two); started as an exact copy of the input
        (a unit centre tap) it stays too close to it and smiles less.
        """
        if not self.input_skip:
            return
        conv, in_nc = self.model[-2], self.model[1].in_channels  # model[1]: the first conv
        out_nc = conv.out_channels - int(self.mask)  # the mask's logit is left as drawn
        with torch.no_grad():
            w = conv.weight[:out_nc, -in_nc:]  # (out_nc, in_nc, k, k), a view
            for o in range(out_nc):
                own = w[o, o] if out_nc == in_nc else w[o]
                if own.sum() < 0:
                    w[o].neg_()

    def encode(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """The outputs of the given layers of ``model`` (encoder only), stopping after the last.

        Args:
            x: Images, shape (N, input_nc, H, W) in [-1, 1].
            layers: Indices into ``model``, each below ``encoder_layers``.

        Returns:
            One (N, C_l, H_l, W_l) feature map per entry of ``layers``, in that order.
        """
        return self._run(x, layers, translate=False)[1]

    def translate_and_encode(
        self, x: torch.Tensor, layers: Sequence[int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``forward(x)`` and ``encode(x, layers)`` from one pass (the encoder runs once)."""
        return self._run(x, layers, translate=True)

    def _run(
        self, x: torch.Tensor, layers: Sequence[int], translate: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        check_layers(layers, self.encoder_layers, "ResNet layer")
        if translate and self.input_skip:
            raise ValueError("translate_and_encode: encode apart with input_skip")
        wanted, feats, h = set(layers), {}, x
        for i, layer in enumerate(self.model if translate else self.model[: max(layers) + 1]):
            if i - 1 in wanted and getattr(layer, "inplace", False):
                h = h.clone()  # an in-place ReLU must not change a stored feature map
            h = layer(h)
            if i in wanted:
                feats[i] = h
        if translate and self.mask:
            h = self.composite(h, x)
        return h, [feats[i] for i in layers]

    def encoder_channels(self, layers: Sequence[int]) -> list[int]:
        """The channels of `encode`'s feature maps, read from the layers (no forward pass)."""
        check_layers(layers, self.encoder_layers, "ResNet layer")
        out = []
        for index in layers:
            channels = self.model[1].in_channels
            for layer in self.model[: index + 1]:
                if isinstance(layer, nn.Conv2d):
                    channels = layer.out_channels
            out.append(channels)
        return out


def _downsampling(input_nc: int, ngf: int, norm_layer: NormLayer, bias: bool) -> list[nn.Module]:
    """The stem and two stride-2 convolutions: (N, input_nc, H, W) -> (N, 4 ngf, H/4, W/4)."""
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=bias),
        norm_layer(ngf),
        nn.ReLU(True),
    ]
    for mult in (1, 2):
        layers += [
            nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=bias),
            norm_layer(ngf * mult * 2),
            nn.ReLU(True),
        ]
    return layers


def _upsampling(
    ngf: int,
    norm_layer: NormLayer,
    bias: bool,
    mode: str = "transpose",
    padding_type: str = "reflect",
) -> list[nn.Module]:
    """Two doublings of the side: (N, 4 ngf, H/4, W/4) -> (N, ngf, H, W).

    ``transpose``: stride-2 transposed convolutions, output size (in - 1) * 2 - 2 * 1 + 3 + 1
    = 2 * in exactly. ``resize``: nearest-neighbour upsampling, then a padded 3x3 convolution
    (padded as the residual blocks are)."""
    layers: list[nn.Module] = []
    for mult in (4, 2):
        c_in, c_out = ngf * mult, ngf * mult // 2
        if mode == "transpose":
            layers.append(
                nn.ConvTranspose2d(
                    c_in, c_out, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias
                )
            )
        else:
            pad, p = ResnetBlock._padding(padding_type)
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                *pad,
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=p, bias=bias),
            ]
        layers += [norm_layer(c_out), nn.ReLU(True)]
    return layers
