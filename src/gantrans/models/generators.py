"""CycleGAN generators (ResNet and U-Net) with the reference implementation's layer layout."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# The module trees below reproduce junyanz/pytorch-CycleGAN-and-pix2pix (models/networks.py)
# index for index, so its published state_dicts load with ``load_state_dict(strict=True)``.
# Keep every nn.Sequential in the same order: the state_dict keys are the positions in it.

NORM_TYPES = ("instance", "batch", "none")
PADDING_TYPES = ("reflect", "replicate", "zero")

NormLayer = Callable[[int], nn.Module]


def get_norm_layer(norm_type: str) -> NormLayer:
    """Return a factory that builds the normalization layer for a given channel count.

    Args:
        norm_type: ``"instance"``, ``"batch"`` or ``"none"``.

    Returns:
        A callable ``f(num_channels) -> nn.Module``.

    Raises:
        ValueError: If ``norm_type`` is not one of the above.
    """
    if norm_type == "instance":
        # No learnable affine and no running statistics: per-image normalisation at train and
        # test time alike (Ulyanov et al. 2016). Contributes no state_dict entries.
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm_type == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm_type == "none":
        # nn.Identity keeps the slot in each Sequential so the indices (and hence the state_dict
        # keys) of the following layers are the same as with a real norm layer.
        return lambda num_channels: nn.Identity()
    raise ValueError(f"unknown norm type {norm_type!r}; expected one of {', '.join(NORM_TYPES)}")


def norm_uses_bias(norm_type: str) -> bool:
    """Whether a convolution that is followed by a ``norm_type`` layer should carry a bias.

    BatchNorm (affine) subtracts the per-channel mean and adds its own learnable shift, so a
    conv bias in front of it is redundant. InstanceNorm here has no affine shift, and with no
    norm at all the bias is the layer's only offset.

    Note: the reference computes ``use_bias = norm is InstanceNorm2d`` and therefore *drops* the
    bias for ``norm="none"``, leaving those convolutions without any offset term. We keep the
    bias for ``"none"`` (a deliberate difference); the ``"instance"`` and ``"batch"`` layouts,
    which are the ones with published weights, are identical to the reference.

    Args:
        norm_type: ``"instance"``, ``"batch"`` or ``"none"``.

    Returns:
        ``False`` for ``"batch"``, ``True`` otherwise.
    """
    return norm_type != "batch"


class ChangeMask(nn.Module):
    """The change-mask output of a generator (AttentionGAN, GANimation): image = m x content +
    (1 - m) x input.

    A masked generator draws one channel more than its output: the content channels and,
    last, the mask logit, both through the final Tanh. The mask m = (t + 1) / 2 in [0, 1]
    says where the output is the network's content and where the input shows through, so
    what should stay (the face around a mouth) is copied exactly and the network's capacity
    goes to what changes. In training mode each forward pass records its masks, which the
    methods turn into a mask-size penalty (`take_masks`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.masks: list[torch.Tensor] = []
        self.record_masks = False  # also record in eval mode (the image grids)

    def composite(self, drawn: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(N, C + 1, H, W) content and mask logit in [-1, 1], input (N, C, H, W) -> output."""
        content, mask = drawn[:, :-1], (drawn[:, -1:] + 1) * 0.5  # mask (N, 1, H, W) in [0, 1]
        if not torch.jit.is_scripting() and (self.training or self.record_masks):
            self.masks.append(mask)
        return mask * content + (1 - mask) * x

    MASK_INIT = 2.0
    """The mask logit's initial bias: tanh(2) gives m = 0.98, so a new generator starts as an
    ordinary one. Started near m = 0.5, the cycle terms shut the mask within a hundred steps,
    before the drawn content is of any use, and the saturated Tanh never opens it again."""

    def init_mask(self) -> None:
        """Set the mask logit's bias to MASK_INIT (after the weights' initialisation)."""
        if self.mask:
            with torch.no_grad():
                self.mask_conv().bias[-1].fill_(self.MASK_INIT)

    def mask_conv(self) -> nn.Module:
        """The convolution that draws the mask logit (its last output channel)."""
        raise NotImplementedError

    def take_masks(self) -> list[torch.Tensor]:
        """The masks of the forward passes since the last call (in training mode, or with
        `record_masks`), oldest first."""
        masks, self.masks = self.masks, []
        return masks


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
        """
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        _check_mask(mask, input_nc, output_nc)
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
        # (N, input_nc, H, W) -> (N, ngf, H, W)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
            norm_layer(ngf),
            nn.ReLU(True),
        ]

        # Two stride-2 downsamplings: (N, ngf, H, W) -> (N, 4 ngf, H/4, W/4)
        n_downsampling = 2
        for i in range(n_downsampling):
            mult = 2**i
            layers += [
                nn.Conv2d(
                    ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias
                ),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]

        # Residual blocks at the bottleneck: (N, 4 ngf, H/4, W/4), shape preserved
        mult = 2**n_downsampling
        for _ in range(n_blocks):
            layers += [
                ResnetBlock(
                    ngf * mult,
                    padding_type=padding_type,
                    norm_layer=norm_layer,
                    use_dropout=use_dropout,
                    use_bias=use_bias,
                )
            ]

        # Two stride-2 transposed convs: (N, 4 ngf, H/4, W/4) -> (N, ngf, H, W).
        # Output size = (in - 1) * 2 - 2 * 1 + 3 + 1 = 2 * in, exactly doubling.
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult,
                    ngf * mult // 2,
                    kernel_size=3,
                    stride=2,
                    padding=1,
                    output_padding=1,
                    bias=use_bias,
                ),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]

        # (N, ngf, H, W) -> (N, output_nc, H, W) in [-1, 1]. This conv always has a bias.
        self.input_skip = input_skip
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(
                ngf + (input_nc if input_skip else 0),
                output_nc + int(mask),
                kernel_size=7,
                padding=0,
            ),
            nn.Tanh(),
        ]
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
        _check_layers(layers, self.encoder_layers, "ResNet layer")
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
        _check_layers(layers, self.encoder_layers, "ResNet layer")
        out = []
        for index in layers:
            channels = self.model[1].in_channels
            for layer in self.model[: index + 1]:
                if isinstance(layer, nn.Conv2d):
                    channels = layer.out_channels
            out.append(channels)
        return out


def _check_mask(mask: bool, input_nc: int, output_nc: int) -> None:
    if mask and input_nc != output_nc:
        raise ValueError(f"a change mask needs as many output channels as input ({input_nc})")


def _check_layers(layers: Sequence[int], limit: int, what: str) -> None:
    if not layers or min(layers) < 0 or max(layers) >= limit:
        raise ValueError(f"encoder layers {list(layers)}: each {what} must be in 0..{limit - 1}")


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
        _check_mask(mask, input_nc, output_nc)
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
        _check_layers(layers, self.encoder_layers, "U-Net level")
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
        _check_layers(layers, self.encoder_layers, "U-Net level")
        levels = self._levels()
        conv = [levels[0].model[0]] + [b.model[1] for b in levels[1:]]
        return [conv[0].in_channels if i == 0 else conv[i - 1].out_channels for i in layers]
