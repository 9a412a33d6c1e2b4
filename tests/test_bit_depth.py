"""16-bit and float grayscale: every level survives a round trip, value ranges map back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gantrans.applying.translate import translate_pictures
from gantrans.applying.translator import ApplyOptions, Translator

from .conftest import make_checkpoint, one_line_error, write_image

GRAY = {"name": "resnet", "in_channels": 1, "out_channels": 1}


class Identity(nn.Module):
    """An identity-like network: what goes in comes out (N, 1, H, W) in [-1, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def _gradient(path, dtype=np.uint16, lo=0, hi=65535, size=(300, 200)):
    w, h = size
    ramp = np.linspace(lo, hi, w * h).reshape(h, w)  # every row continues the previous one
    arr = np.rint(ramp).astype(dtype) if dtype != np.float32 else ramp.astype(np.float32)
    Image.fromarray(arr).save(path)
    return arr


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("tile", ["off", 64])
def test_a_16_bit_gradient_keeps_its_levels_through_an_identity_network(tmp_path, suffix, tile):
    src = tmp_path / "in" / f"gradient{suffix}"
    src.parent.mkdir()
    arr = _gradient(src)
    translator = Translator(Identity(), GRAY, torch.device("cpu"), "fp32",
                            ApplyOptions(tile=tile, overlap=16))  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    written, failed = translate_pictures(translator, [src], {src: src.name}, out, progress=False)
    assert (written, failed) == (1, [])
    with Image.open(out / src.name) as img:
        assert img.mode == "I;16"
        got = np.asarray(img)
    assert len(np.unique(got)) > 256  # not squashed to 8 bits
    assert np.abs(got.astype(np.int64) - arr).max() <= 1  # the value range is mapped back


def test_value_range_image_maps_a_narrow_range_back_to_itself(tmp_path):
    src = tmp_path / "narrow.png"
    arr = _gradient(src, lo=1000, hi=4000)  # a 12-bit camera in a 16-bit file
    translator = Translator(Identity(), GRAY, torch.device("cpu"), "fp32", ApplyOptions(tile="off"))
    out = tmp_path / "out"
    out.mkdir()
    translate_pictures(translator, [src], {src: src.name}, out, value_range="image", progress=False)
    got = np.asarray(Image.open(out / src.name))
    assert got.min() == 1000 and got.max() == 4000
    assert np.abs(got.astype(np.int64) - arr).max() <= 1 and len(np.unique(got)) == 3001


def test_float_tiff_stays_float_and_8_bit_output_on_request(tmp_path):
    src = tmp_path / "field.tif"
    arr = _gradient(src, dtype=np.float32, lo=-2.5, hi=7.0)
    translator = Translator(Identity(), GRAY, torch.device("cpu"), "fp32", ApplyOptions(tile="off"))
    out = tmp_path / "out"
    out.mkdir()
    translate_pictures(translator, [src], {src: src.name}, out, progress=False)
    with Image.open(out / src.name) as img:
        assert img.mode == "F"
        assert np.allclose(np.asarray(img), arr, atol=1e-5)
    translate_pictures(translator, [src], {src: src.name}, out, bit_depth="8", progress=False)
    with Image.open(out / src.name) as img:
        assert img.mode == "L" and np.asarray(img).min() == 0 and np.asarray(img).max() == 255


def test_16_bit_from_the_command_line(gantrans, tmp_path):
    ckpt = make_checkpoint(tmp_path / "gray.pt", channels=1)
    src = tmp_path / "in" / "scan.png"
    src.parent.mkdir()
    _gradient(src, size=(40, 30))
    write_image(tmp_path / "in" / "photo.jpg", (20, 20), "RGB")
    out = tmp_path / "out"
    code, _, err = gantrans("translate", f"ckpt={ckpt}", f"input={src.parent}", f"output={out}",
                            "progress=false")  # fmt: skip
    assert code == 0, err
    with Image.open(out / "scan.png") as a, Image.open(out / "photo.jpg") as b:
        assert (a.mode, a.size) == ("I;16", (40, 30)) and (b.mode, b.size) == ("L", (20, 20))
    single = tmp_path / "single.png"
    code, _, err = gantrans("translate", f"ckpt={ckpt}", f"input={src}", f"output={single}",
                            "output_bit_depth=8", "progress=false")  # fmt: skip
    assert code == 0, err
    assert Image.open(single).mode == "L"


@pytest.mark.parametrize(
    "args,message",
    [
        (["output_bit_depth=12"], "output_bit_depth=12 is not known: use 8, 16 or same"),
        (["output_bit_depth=16"], "output_bit_depth=16 writes grayscale only"),
        (["value_range=[5,1]"], "value_range=[5, 1] is not known"),
    ],
)
def test_bit_depth_errors_are_one_line(gantrans, tiny_ckpt, tmp_path, args, message):
    write_image(tmp_path / "in" / "a.png", (10, 10))
    out = tmp_path / "out"
    line = one_line_error(gantrans("translate", f"ckpt={tiny_ckpt}", f"input={tmp_path / 'in'}",
                                   f"output={out}", *args))  # fmt: skip
    assert message in line and not out.exists()
