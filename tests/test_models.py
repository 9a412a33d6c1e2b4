"""Tests for gantrans.models: reference state_dict layout, parameter counts, shapes, init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gantrans.models import (
    NLayerDiscriminator,
    PixelDiscriminator,
    ResnetBlock,
    ResnetGenerator,
    UnetGenerator,
    build_discriminator,
    build_generator,
    init_weights,
    size_multiple,
)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def keys(net: nn.Module) -> list[str]:
    return list(net.state_dict().keys())


def wb(prefix: str, bias: bool = True) -> list[str]:
    """State_dict keys of a conv at ``prefix``."""
    return [f"{prefix}.weight"] + ([f"{prefix}.bias"] if bias else [])


def gen_arch(**overrides) -> dict:
    arch = {
        "name": "resnet",
        "in_channels": 3,
        "out_channels": 3,
        "ngf": 8,
        "norm": "instance",
        "dropout": False,
        "n_blocks": 2,
        "num_downs": 5,
    }
    arch.update(overrides)
    return arch


def disc_arch(**overrides) -> dict:
    arch = {"name": "patchgan", "in_channels": 3, "ndf": 8, "n_layers": 3, "norm": "instance"}
    arch.update(overrides)
    return arch


# Full-size models are built on the meta device: no memory, no init cost, same modules/keys.
meta = torch.device("meta")


# ---------------------------------------------------------------------------------------------
# Reference layout (junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py)
# ---------------------------------------------------------------------------------------------


def expected_resnet_keys(n_blocks: int, dropout: bool) -> list[str]:
    """Keys of the reference ResnetGenerator with instance norm and reflect padding.

    Sequential: 0 pad, 1 conv7, 2 norm, 3 relu, 4 conv, 5 norm, 6 relu, 7 conv, 8 norm, 9 relu,
    10 .. 10+n_blocks-1 blocks, then convT, norm, relu, convT, norm, relu, pad, conv7, tanh.
    """
    out = wb("model.1") + wb("model.4") + wb("model.7")
    second = 6 if dropout else 5  # pad, conv, norm, relu, [dropout], pad, conv, norm
    for i in range(10, 10 + n_blocks):
        out += wb(f"model.{i}.conv_block.1") + wb(f"model.{i}.conv_block.{second}")
    up = 10 + n_blocks
    out += wb(f"model.{up}") + wb(f"model.{up + 3}") + wb(f"model.{up + 7}")
    return out


def expected_unet_keys(num_downs: int) -> list[str]:
    """Keys of the reference UnetGenerator with instance norm (norms hold no state)."""
    p = "model.model"  # outermost: 0 downconv, 1 submodule, 2 relu, 3 upconv, 4 tanh
    out = wb(f"{p}.0")
    tail = wb(f"{p}.3")
    q = f"{p}.1.model"  # each level is a UnetSkipConnectionBlock holding a Sequential `model`
    # num_downs - 2 intermediate levels: 0 lrelu, 1 downconv, 2 norm, 3 sub, 4 relu, 5 upconv, 6 norm
    tails = []
    for _ in range(num_downs - 2):
        out += wb(f"{q}.1")
        tails.insert(0, wb(f"{q}.5"))
        q = f"{q}.3.model"
    # innermost: 0 lrelu, 1 downconv, 2 relu, 3 upconv, 4 norm
    out += wb(f"{q}.1") + wb(f"{q}.3")
    for t in tails:
        out += t
    return out + tail


def test_resnet9_instance_keys_match_reference() -> None:
    with meta:
        net = build_generator(gen_arch(ngf=64, n_blocks=9))
    got = keys(net)
    assert got == expected_resnet_keys(9, dropout=False)
    assert got[0] == "model.1.weight" and got[-1] == "model.26.bias"
    assert "model.10.conv_block.1.weight" in got and "model.10.conv_block.5.weight" in got
    assert "model.18.conv_block.5.bias" in got and "model.19.weight" in got


def test_resnet9_parameter_count_matches_reference() -> None:
    with meta:
        net = build_generator(gen_arch(ngf=64, n_blocks=9))
    assert n_params(net) == 11_378_179


def test_resnet6_dropout_keys() -> None:
    with meta:
        net = build_generator(gen_arch(ngf=64, n_blocks=6, dropout=True))
    got = keys(net)
    assert got == expected_resnet_keys(6, dropout=True)
    assert "model.10.conv_block.6.weight" in got
    assert not any("conv_block.5" in k for k in got)
    assert got[-1] == "model.23.bias"
    assert n_params(net) == 7_837_699
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 6


def test_resnet_batch_norm_keys_drop_conv_bias() -> None:
    with meta:
        net = build_generator(gen_arch(ngf=64, n_blocks=9, norm="batch"))
    got = keys(net)
    assert "model.1.bias" not in got and "model.10.conv_block.1.bias" not in got
    assert "model.2.running_mean" in got and "model.10.conv_block.2.num_batches_tracked" in got
    assert "model.26.bias" in got  # the output conv always has a bias
    # 11,378,179 - 5,248 biases of convs before a norm + 2 * 5,248 BN weights and biases
    assert n_params(net) == 11_383_427


def test_resnet_zero_padding_has_no_pad_layers() -> None:
    net = build_generator(gen_arch(padding_type="zero"))
    got = keys(net)
    assert "model.10.conv_block.0.weight" in got and "model.10.conv_block.3.weight" in got
    assert not any(isinstance(m, nn.ReflectionPad2d) for m in net.model[10].modules())
    rep = build_generator(gen_arch(padding_type="replicate"))
    assert isinstance(rep.model[10].conv_block[0], nn.ReplicationPad2d)
    assert keys(rep) == keys(build_generator(gen_arch()))


def test_unet_keys_match_reference() -> None:
    with meta:
        u256 = build_generator(gen_arch(name="unet", ngf=64, num_downs=8))
        u128 = build_generator(gen_arch(name="unet", ngf=64, num_downs=7))
    assert keys(u256) == expected_unet_keys(8)
    assert keys(u128) == expected_unet_keys(7)
    got = keys(u256)
    assert got[:3] == ["model.model.0.weight", "model.model.0.bias", "model.model.1.model.1.weight"]
    assert got[-2:] == ["model.model.3.weight", "model.model.3.bias"]


def test_unet_parameter_counts() -> None:
    # Derived level by level from the reference code, batch norm (pix2pix default), ngf=64:
    #   outermost   3*64*16            + (128*3*16 + 3)            =      9,219
    #   64->128     64*128*16 + 256    + 256*64*16 + 128           =    393,600
    #   128->256    128*256*16 + 512   + 512*128*16 + 256          =  1,573,632
    #   256->512    256*512*16 + 1024  + 1024*256*16 + 512         =  6,292,992
    #   512->512    512*512*16 + 1024  + 1024*512*16 + 1024        = 12,584,960 each (num_downs-5)
    #   innermost   512*512*16         + 512*512*16 + 1024         =  8,389,632
    # unet256 (3 intermediate) = 54,413,955 ("54.414 M" as the reference prints);
    # unet128 (2 intermediate) = 41,828,995.
    with meta:
        for norm, n256, n128 in [
            ("batch", 54_413_955, 41_828_995),
            ("instance", 54_409_603, 41_825_667),
        ]:
            u256 = build_generator(gen_arch(name="unet", ngf=64, num_downs=8, norm=norm))
            u128 = build_generator(gen_arch(name="unet", ngf=64, num_downs=7, norm=norm))
            assert n_params(u256) == n256, norm
            assert n_params(u128) == n128, norm


def test_unet_batch_norm_and_dropout_layout() -> None:
    with meta:
        net = build_generator(
            gen_arch(name="unet", ngf=64, num_downs=8, norm="batch", dropout=True)
        )
    got = keys(net)
    assert "model.model.0.bias" not in got  # outermost downconv: no bias before (absent) BN
    assert "model.model.1.model.2.running_mean" in got
    assert "model.model.3.bias" in got
    # dropout only in the num_downs - 5 intermediate ngf*8 levels, as the reference
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 3


def test_nlayer_discriminator_keys_and_count() -> None:
    with meta:
        net = build_discriminator(disc_arch(ndf=64))
    assert keys(net) == wb("model.0") + wb("model.2") + wb("model.5") + wb("model.8") + wb(
        "model.11"
    )
    # 3*64*16+64 + 64*128*16+128 + 128*256*16+256 + 256*512*16+512 + 512*16+1
    assert n_params(net) == 2_764_737
    with meta:
        bn = build_discriminator(disc_arch(ndf=64, norm="batch"))
    got = keys(bn)
    assert "model.0.bias" in got and "model.2.bias" not in got
    assert "model.3.running_var" in got and "model.11.bias" in got


def test_pixel_discriminator_keys() -> None:
    net = build_discriminator(disc_arch(name="pixel", ndf=64))
    assert keys(net) == wb("net.0") + wb("net.2") + wb("net.5")
    assert n_params(net) == 3 * 64 + 64 + 64 * 128 + 128 + 128 + 1
    bn = build_discriminator(disc_arch(name="pixel", ndf=64, norm="batch"))
    assert keys(bn) == wb("net.0") + [
        "net.2.weight",
        "net.3.weight",
        "net.3.bias",
        "net.3.running_mean",
        "net.3.running_var",
        "net.3.num_batches_tracked",
        "net.5.weight",  # the reference drops this bias too with batch norm
    ]


def test_state_dict_round_trip_strict() -> None:
    a = build_generator(gen_arch(name="unet", norm="batch"))
    b = build_generator(gen_arch(name="unet", norm="batch"))
    b.load_state_dict(a.state_dict(), strict=True)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


# ---------------------------------------------------------------------------------------------
# Forward shapes and ranges
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
@pytest.mark.parametrize("in_ch,out_ch", [(1, 1), (3, 3), (1, 3), (3, 1), (5, 7)])
@pytest.mark.parametrize("name", ["resnet", "unet"])
def test_generator_shapes_and_range(name: str, norm: str, in_ch: int, out_ch: int) -> None:
    torch.manual_seed(0)
    arch = gen_arch(name=name, norm=norm, in_channels=in_ch, out_channels=out_ch, ngf=5)
    net = build_generator(arch)
    m = size_multiple(arch)
    h, w = 2 * m, (3 * m if name == "resnet" else m)  # non-square, smallest valid sizes
    x = torch.rand(2, in_ch, h, w) * 2 - 1  # (N, C, H, W) in [-1, 1]
    for train in (True, False):
        net.train(train)
        with torch.no_grad():
            y = net(x)
        assert y.shape == (2, out_ch, h, w)
        assert torch.isfinite(y).all()
        assert y.min() >= -1 and y.max() <= 1


def test_generator_dropout_and_padding_variants_run() -> None:
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    for pad in ("reflect", "replicate", "zero"):
        net = build_generator(gen_arch(padding_type=pad, dropout=True))
        assert net(x).shape == (1, 3, 16, 16)
    unet = build_generator(gen_arch(name="unet", num_downs=6, dropout=True)).eval()
    assert unet(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_unet128_full_depth_forward() -> None:
    arch = gen_arch(name="unet", num_downs=7, ngf=4, in_channels=1, out_channels=3)
    y = build_generator(arch)(torch.rand(1, 1, 128, 128) * 2 - 1)
    assert y.shape == (1, 3, 128, 128)
    assert y.abs().max() <= 1


def test_resnet_block_is_residual() -> None:
    block = ResnetBlock(8, "zero", lambda c: nn.Identity(), use_dropout=False, use_bias=True)
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_patchgan_output_is_patch_map(norm: str) -> None:
    net = build_discriminator(disc_arch(norm=norm, in_channels=1))
    assert net(torch.rand(2, 1, 64, 64)).shape == (2, 1, 6, 6)
    # 70x70 PatchGAN on 256x256: 256 -> 128 -> 64 -> 32 -> 31 -> 30
    assert net(torch.rand(1, 1, 256, 256)).shape == (1, 1, 30, 30)


@pytest.mark.parametrize("n_layers,size,expected", [(1, 64, 30), (2, 64, 14), (4, 128, 6)])
def test_patchgan_other_depths(n_layers: int, size: int, expected: int) -> None:
    # n_layers stride-2 convs, then two k4 s1 p1 convs that each remove one pixel
    assert size // 2**n_layers - 2 == expected
    net = build_discriminator(disc_arch(n_layers=n_layers, ndf=4, norm="none"))
    assert net(torch.rand(1, 3, size, size)).shape == (1, 1, expected, expected)


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_pixel_discriminator_shape(norm: str) -> None:
    net = build_discriminator(disc_arch(name="pixel", norm=norm, in_channels=3))
    assert net(torch.rand(2, 3, 10, 14)).shape == (2, 1, 10, 14)


# ---------------------------------------------------------------------------------------------
# size_multiple, init_weights, errors
# ---------------------------------------------------------------------------------------------


def test_size_multiple() -> None:
    assert size_multiple(gen_arch(name="resnet", n_blocks=9)) == 4
    assert size_multiple(gen_arch(name="unet", num_downs=7)) == 128
    assert size_multiple(gen_arch(name="unet", num_downs=8)) == 256
    assert size_multiple({"name": "unet", "num_downs": 5}) == 32
    with pytest.raises(ValueError, match="name"):
        size_multiple({"name": "vit"})


def test_init_weights_normal() -> None:
    torch.manual_seed(0)
    net = build_generator(gen_arch(ngf=16, n_blocks=3, norm="batch"))
    init_weights(net, "normal", 0.02)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert weights.numel() > 10_000
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert weights.mean().abs().item() < 0.002
    assert all(torch.all(m.bias == 0) for m in convs if m.bias is not None)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    gammas = torch.cat([m.weight for m in bns])
    assert gammas.mean().item() == pytest.approx(1.0, abs=0.01)
    assert gammas.std().item() == pytest.approx(0.02, rel=0.2)
    assert all(torch.all(m.bias == 0) for m in bns)


@pytest.mark.parametrize("init_type", ["xavier", "kaiming", "orthogonal"])
def test_init_weights_other_types(init_type: str) -> None:
    net = build_discriminator(disc_arch())
    init_weights(net, init_type, 0.02)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            assert torch.all(m.bias == 0)
            assert torch.isfinite(m.weight).all() and m.weight.abs().sum() > 0


def test_init_weights_unknown_type() -> None:
    with pytest.raises(ValueError, match="init_type"):
        init_weights(build_discriminator(disc_arch()), "uniform")


@pytest.mark.parametrize(
    "arch,match",
    [
        (gen_arch(name="transformer"), "name"),
        ({k: v for k, v in gen_arch().items() if k != "ngf"}, "ngf"),
        (gen_arch(norm="group"), "norm"),
        (gen_arch(padding_type="circular"), "padding_type"),
        (gen_arch(upsample="bilinear"), "upsample"),
        (gen_arch(ngf=True), "ngf"),
        (gen_arch(ngf=8.0), "ngf"),
        (gen_arch(in_channels=0), "in_channels"),
        (gen_arch(dropout="yes"), "dropout"),
        (gen_arch(name="unet", num_downs=4), "num_downs"),
        ({k: v for k, v in gen_arch(name="resnet").items() if k != "n_blocks"}, "n_blocks"),
        (["resnet"], "mapping"),
    ],
)
def test_build_generator_errors(arch, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_generator(arch)


@pytest.mark.parametrize(
    "arch,match",
    [
        (disc_arch(name="basic"), "name"),
        (disc_arch(norm="layer"), "norm"),
        ({k: v for k, v in disc_arch().items() if k != "n_layers"}, "n_layers"),
        (disc_arch(ndf=-1), "ndf"),
    ],
)
def test_build_discriminator_errors(arch, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_discriminator(arch)


def test_extra_keys_ignored_and_dictconfig_accepted() -> None:
    omegaconf = pytest.importorskip("omegaconf")
    g = gen_arch(init_type="xavier", init_gain=0.02, something_else=[1, 2])
    assert isinstance(build_generator(g), ResnetGenerator)
    cfg = omegaconf.OmegaConf.create(gen_arch(name="unet", init_type="normal"))
    assert isinstance(build_generator(cfg), UnetGenerator)
    assert size_multiple(cfg) == 32
    d = omegaconf.OmegaConf.create(disc_arch(init_gain=0.02))
    assert isinstance(build_discriminator(d), NLayerDiscriminator)
    # pixel does not need n_layers
    assert isinstance(
        build_discriminator({"name": "pixel", "in_channels": 1, "ndf": 4, "norm": "none"}),
        PixelDiscriminator,
    )


def test_resnet_input_skip_feeds_the_input_to_the_last_convolution():
    from gantrans.models import build_generator

    arch = {"name": "resnet", "in_channels": 3, "out_channels": 3, "ngf": 4, "norm": "instance",
            "dropout": False, "n_blocks": 1}  # fmt: skip
    plain, skip = build_generator(arch), build_generator({**arch, "input_skip": True})
    assert skip.model[-2].in_channels == plain.model[-2].in_channels + 3
    assert [k for k in plain.state_dict()] == [k for k in skip.state_dict()]  # same layout
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert skip(x).shape == x.shape
    # the skip carries the absolute level that instance norm removes from the features
    assert not torch.allclose(skip(x), skip(x + 0.5))
    assert torch.allclose(plain(x), plain(x + 0.5), atol=1e-5)


@pytest.mark.parametrize("padding", ["reflect", "zero"])
def test_resize_upsampling_doubles_the_side_without_a_checkerboard(padding):
    from gantrans.models.generators import _upsampling
    from gantrans.models.layers import get_norm_layer

    arch = gen_arch(ngf=8, n_blocks=1, padding_type=padding)
    transpose, resize = build_generator(arch), build_generator({**arch, "upsample": "resize"})
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in resize.modules())
    assert n_params(resize) == n_params(transpose)  # a 3x3 kernel either way
    # the encoder is the reference's, layer for layer (CUT samples its features by index)
    assert keys(resize)[:8] == keys(transpose)[:8] and resize.encoder_layers == 11
    for side in (16, 24, 36):
        x = torch.rand(2, 3, side, side) * 2 - 1
        assert resize(x).shape == transpose(x).shape == x.shape
    # on a flat feature map the stride-2 transposed convolution adds its 3x3 taps unevenly
    # (4, 2 or 1 of them per output pixel): a period-2 pattern; the resize keeps it flat
    flat = torch.ones(1, 32, 5, 5) * torch.randn(1, 32, 1, 1)
    none = get_norm_layer("none")
    for mode, checkered in (("transpose", True), ("resize", False)):
        torch.manual_seed(0)
        ups = nn.Sequential(*_upsampling(8, none, True, mode, "reflect"))
        with torch.no_grad():
            y = ups(flat)[0, :, 2:-2, 2:-2]  # the interior, away from the borders
        assert y.shape[-1] == 16
        spread = (y - y.mean(dim=(1, 2), keepdim=True)).abs().max().item()
        assert (spread > 1e-3) == checkered, (mode, spread)


@pytest.mark.parametrize("channels,mask", [((1, 1), False), ((3, 3), True), ((3, 1), False)])
def test_input_skip_starts_with_a_positive_gain(channels, mask):
    from gantrans.models import build_generator, init_weights
    from gantrans.models.generators import ResnetGenerator

    in_nc, out_nc = channels
    arch = {"name": "resnet", "in_channels": in_nc, "out_channels": out_nc, "ngf": 8,
            "norm": "instance", "dropout": False, "n_blocks": 2, "input_skip": True, "mask": mask}  # fmt: skip

    def last_weights(arch: dict, seed: int, fix: bool) -> torch.Tensor:
        torch.manual_seed(seed)
        G = build_generator(arch)
        with pytest.MonkeyPatch.context() as mp:
            if not fix:
                mp.setattr(ResnetGenerator, "init_input_skip", lambda self: None)
            init_weights(G, "normal", 0.02)
        return G.model[-2].weight

    flipped = 0
    for seed in range(8):
        w, w0 = last_weights(arch, seed, True), last_weights(arch, seed, False)
        for o in range(out_nc):
            own = w[o, -in_nc:][o] if in_nc == out_nc else w[o, -in_nc:]
            assert own.sum() >= 0, f"seed {seed}: output channel {o} starts with a negative gain"
            skip, skip0 = w[o, -in_nc:], w0[o, -in_nc:]
            assert torch.equal(skip, skip0) or torch.equal(skip, -skip0)  # flipped, no more
            flipped += not torch.equal(skip, skip0)
        assert torch.equal(w[:, :-in_nc], w0[:, :-in_nc])  # the features' taps are as drawn
        if mask:
            assert torch.equal(w[-1], w0[-1])  # so is the mask's logit
    assert flipped > 0  # some seeds draw a negative gain, which the hook turned round
    plain = {**arch, "input_skip": False}  # without the skip nothing is touched
    assert torch.equal(last_weights(plain, 0, True), last_weights(plain, 0, False))


def test_old_checkpoints_without_input_skip_are_the_same_architecture():
    from gantrans import checkpoint

    gen = {"name": "resnet", "n_blocks": 6}
    old = {"arch": {"generator": gen, "discriminator": {}}}
    assert checkpoint.arch(old) == {
        "generator": {**gen, "input_skip": False, "mask": False, "upsample": "transpose"},
        "discriminator": {"spectral_norm": False, "augment": None},
    }
    unet = {"arch": {"generator": {"name": "unet"}}}
    assert checkpoint.arch(unet) == {"generator": {"name": "unet", "mask": False}}
    dcgan = {"arch": {"generator": {"name": "dcgan", "nz": 100}}}
    assert checkpoint.arch(dcgan) == dcgan["arch"]  # no change-mask key for a DCGAN
