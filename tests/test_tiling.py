"""Tiled translation: exact where the network allows it, shared statistics, memory plans, errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from gantrans.applying.tiling import (
    Tiling,
    axis_weights,
    bytes_per_pixel,
    fixed_norm_stats,
    gather_norm_stats,
    tile_spans,
)
from gantrans.applying.translator import ApplyOptions, Translator
from gantrans.models import build_generator

from .conftest import one_line_error, write_image

CPU = torch.device("cpu")


def _arch(norm: str, n_blocks: int = 1, ngf: int = 4) -> dict:
    return {"name": "resnet", "in_channels": 3, "out_channels": 3, "ngf": ngf, "norm": norm,
            "dropout": False, "n_blocks": n_blocks}  # fmt: skip


def _net(arch: dict, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_generator(arch).eval()


@pytest.mark.parametrize("length", [40, 100, 129, 300, 1001])
@pytest.mark.parametrize("align", [1, 4, 32])
def test_tiles_cover_the_axis_aligned_and_weights_sum_to_one(length, align):
    spans = tile_spans(length, 64, 16, align)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(s % align == 0 for s, _ in spans)
    assert all(e0 - s1 >= 16 for (_, e0), (s1, _) in zip(spans, spans[1:], strict=False))
    for blend in ("smooth", "none"):
        total = torch.zeros(length)
        for i, (s, e) in enumerate(spans):
            w = axis_weights(spans, i, blend)
            assert w.shape == (e - s,) and float(w.min()) >= 0
            total[s:e] += w
        assert torch.allclose(total, torch.ones(length), atol=1e-3), blend


def _tiled(translator: Translator, image: torch.Tensor, tiling: Tiling) -> torch.Tensor:
    out = torch.empty(translator.out_channels, *image.shape[-2:])
    translator.translate(image, lambda crop: crop, out, lambda unit: unit, tiling=tiling)
    return out


@pytest.mark.parametrize("blend", ["smooth", "none"])
def test_tiles_are_exact_when_the_receptive_field_fits_in_the_overlap(blend):
    # without normalisation and with a small receptive field, each tile's centre sees what
    # the whole image sees: blending must then reproduce the whole translation exactly
    arch = _arch("none", n_blocks=0)
    translator = Translator(_net(arch), arch, CPU, "fp32", ApplyOptions(tile="off"))
    image = torch.rand(3, 200, 341) * 2 - 1  # (C, H, W) in [-1, 1]
    whole = translator.whole(image[None])[0]
    tiled = _tiled(translator, image, Tiling(160, 64, blend, "tile", batch_size=3))
    assert torch.allclose(tiled, whole, atol=1e-5), float((tiled - whole).abs().max())


def test_shared_statistics_reproduce_the_network_where_they_are_its_own():
    # statistics gathered on the image itself and then imposed give the network's own output
    arch = _arch("instance", n_blocks=2)
    net = _net(arch)
    image = torch.rand(1, 3, 64, 48) * 2 - 1
    with torch.inference_mode():
        expected = net(image)
    stats = gather_norm_stats(net, image, CPU, "fp32")
    assert len(stats) == sum(isinstance(m, nn.InstanceNorm2d) for m in net.modules())
    with fixed_norm_stats(net, stats), torch.inference_mode():
        again = net(image)
        shifted = net(image[..., :32, :])  # a crop now normalised like the whole image
    with torch.inference_mode():
        own = net(image[..., :32, :])
    assert torch.allclose(again, expected, atol=1e-5)
    assert not torch.allclose(shifted, own, atol=1e-3)  # the statistics really were replaced
    with torch.inference_mode():
        assert torch.allclose(net(image), expected)  # and the network is restored afterwards


def test_shared_statistics_bring_tiles_closer_to_the_whole_image():
    arch = _arch("instance", n_blocks=1, ngf=8)
    translator = Translator(_net(arch), arch, CPU, "fp32", ApplyOptions(tile="off"))
    torch.manual_seed(1)
    ramp = torch.linspace(-1, 1, 192)
    image = (0.6 * ramp[None, None, :] * ramp[None, :, None] + 0.3 * torch.rand(3, 192, 192)).clamp(
        -1, 1
    )
    whole = translator.whole(image[None])[0]
    errors = {}
    for stats in ("tile", "sampled"):
        tiled = _tiled(translator, image, Tiling(64, 16, "smooth", stats, 64 * 64 * 9, 4))
        errors[stats] = float((tiled - whole).abs().mean())
    assert errors["sampled"] < 0.6 * errors["tile"], errors


def test_auto_plans_tiles_only_when_the_budget_is_exceeded():
    arch = _arch("instance")
    net = _net(arch)
    per_pixel = bytes_per_pixel(net, 3, 4, "fp32")
    assert 4 * 4 * 4 < per_pixel < 4 * 4 * 40  # a few ngf-wide fp32 activations per pixel
    small = Translator(net, arch, CPU, "fp32", ApplyOptions(tile="auto", max_pixels=100 * 100))
    assert small.plan(80, 90).tiling is None
    assert small.plan(80, 90).batch == 1  # two 80x90 images would not fit together
    tiled = small.plan(400, 300).tiling
    assert tiled is not None and tiled.tile <= 100 and tiled.tile % 4 == 0
    fixed = Translator(net, arch, CPU, "fp32", ApplyOptions(tile=64, overlap=8))
    assert fixed.plan(64, 60).tiling is None and fixed.plan(65, 10).tiling.tile == 64


def test_tiled_translate_from_the_command_line(gantrans, tiny_ckpt, tmp_path):
    write_image(tmp_path / "in" / "big.png", (150, 97), "RGB", seed=3)
    write_image(tmp_path / "in" / "small.jpg", (20, 20), "RGB", seed=4)
    out = tmp_path / "out"
    code, stdout, err = gantrans("translate", f"ckpt={tiny_ckpt}", f"input={tmp_path / 'in'}",
                                 f"output={out}", "tile=64", "overlap=16", "progress=false")  # fmt: skip
    assert code == 0, err
    with Image.open(out / "big.png") as a, Image.open(out / "small.jpg") as b:
        assert a.size == (150, 97) and b.size == (20, 20)
    assert "translated 2 image(s) AtoB" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["big.png", "small.jpg"]  # no .part left


@pytest.mark.parametrize(
    "args,message",
    [
        (["tile=64", "overlap=40"], "tile=64 is too small for overlap=40"),
        (["tile=2"], "tile=2 is smaller than 4"),
        (["tile=big"], "tile=big is not a tile size: use auto, off or a side in pixels"),
        (["blend=gauss"], "blend=gauss is not known: use smooth or none"),
        (["tile_stats=mean"], "tile_stats=mean is not known"),
        (["overlap=-1"], "overlap=-1 must be >= 0"),
    ],
)
def test_impossible_tile_options_are_one_line_before_any_output(
    gantrans, tiny_ckpt, tmp_path, args, message
):
    write_image(tmp_path / "in" / "a.png", (30, 30))
    out = tmp_path / "out"
    line = one_line_error(gantrans("translate", f"ckpt={tiny_ckpt}", f"input={tmp_path / 'in'}",
                                   f"output={out}", *args))  # fmt: skip
    assert message in line
    assert not out.exists()
