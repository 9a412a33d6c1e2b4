"""Generator files of pytorch-CycleGAN-and-pix2pix: architecture read from the weights, loaded exactly."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gantrans.applying.loader import load_generator
from gantrans.applying.reference import describe, infer_arch
from gantrans.applying.translate import _pad
from gantrans.errors import CheckpointError
from gantrans.models import NLayerDiscriminator, build_generator

from .conftest import one_line_error, write_image

CPU = torch.device("cpu")


def arch_of(name: str, **kw) -> dict:
    """A generator config (ngf 4 unless given) in the form infer_arch returns."""
    arch = {"name": name, "in_channels": 3, "out_channels": 3, "ngf": 4, "norm": "instance"}
    arch |= {"dropout": False}
    if name == "resnet":
        arch |= {"n_blocks": 9, "padding_type": "reflect"}
    else:
        arch |= {"num_downs": 8}
    arch.update(kw)
    return arch


def reference_net(arch: dict, seed: int = 0) -> tuple[nn.Module, OrderedDict]:
    """A network of `arch` and its state dict exactly as the reference would save it.

    Instance-norm layers get the stale running statistics that files from old PyTorch versions
    carry; with norm "none" the conv biases the reference does not have are zeroed and left out.
    """
    torch.manual_seed(seed)
    net = build_generator(arch)
    for m in net.modules():  # make eval-mode batch norm differ from train mode
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    net.eval()
    state = net.state_dict()  # an OrderedDict with a _metadata attribute, as the reference saves
    for name, m in net.named_modules():
        if isinstance(m, nn.InstanceNorm2d):
            state[f"{name}.running_mean"] = torch.zeros(m.num_features)
            state[f"{name}.running_var"] = torch.ones(m.num_features)
            state[f"{name}.num_batches_tracked"] = torch.tensor(0)
    if arch["norm"] == "none":
        keep = {f"model.{arch.get('n_blocks', 0) + 17}.bias", "model.model.3.bias"}
        for name, m in net.named_modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and f"{name}.bias" not in keep:
                m.bias.data.zero_()
                del state[f"{name}.bias"]
    assert hasattr(state, "_metadata")
    return net, state


def save_reference(path: Path, arch: dict, seed: int = 0, legacy: bool = False) -> nn.Module:
    """Write a reference-layout generator file; returns the network it holds."""
    net, state = reference_net(arch, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return net


CASES = {
    "resnet6": arch_of("resnet", n_blocks=6),
    "resnet9_gray_legacy_file": arch_of("resnet", in_channels=1, out_channels=1),
    "resnet_dropout_3to1": arch_of("resnet", n_blocks=2, dropout=True, out_channels=1),
    "resnet_batch": arch_of("resnet", n_blocks=2, norm="batch"),
    "resnet_zero_padding_dropout": arch_of("resnet", n_blocks=1, padding_type="zero", dropout=True),
    "resnet_no_norm": arch_of("resnet", n_blocks=1, norm="none"),
    "resnet0": arch_of("resnet", n_blocks=0),
    "unet128": arch_of("unet", num_downs=7),
    "unet256_gray_batch": arch_of("unet", in_channels=1, out_channels=1, norm="batch"),
    "unet_no_norm": arch_of("unet", num_downs=5, norm="none"),
}


@pytest.mark.parametrize("case", CASES)
def test_architecture_is_read_back_and_outputs_match(tmp_path, case):
    arch = CASES[case]
    path = tmp_path / "latest_net_G_A.pth"
    net = save_reference(path, arch, legacy="legacy" in case)
    loaded, got = load_generator(path, "AtoB", CPU)
    assert got == arch
    h, w = (
        (2 ** arch["num_downs"], 2 ** (arch["num_downs"] + 1)) if "num_downs" in arch else (12, 20)
    )
    x = torch.rand(2, arch["in_channels"], h, w) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "arch",
    [arch_of("resnet", ngf=64), arch_of("resnet", ngf=64, n_blocks=6, norm="batch")]
    + [arch_of("unet", ngf=64), arch_of("unet", ngf=64, num_downs=7, in_channels=1)],
    ids=["resnet9", "resnet6_batch", "unet256", "unet128_gray"],
)
def test_full_size_architectures_are_inferred(arch):
    with torch.device("meta"):  # shapes only: no memory, no time
        state = build_generator(arch).state_dict()
    assert infer_arch(state) == arch


def test_full_size_resnet9_loads(tmp_path):
    """The layout of the published CycleGAN models: ResNet, 9 blocks, ngf 64, instance norm."""
    arch = arch_of("resnet", ngf=64)
    net = save_reference(tmp_path / "horse2zebra.pth", arch)
    loaded, _ = load_generator(tmp_path / "horse2zebra.pth", "AtoB", CPU)
    x = torch.rand(1, 3, 16, 20) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=1e-6)


def test_description_names_the_architecture():
    assert (
        describe(arch_of("resnet", ngf=64))
        == "ResNet generator, 9 blocks, ngf 64, 3->3 channels, instance norm"
    )
    unet = describe(arch_of("unet", norm="batch", in_channels=1, out_channels=1))
    assert unet.startswith("U-Net generator, 8 downsamplings, ngf 4, 1->1 channels, batch norm")
    assert "dropout" in unet


def read(path: Path, mode: str = "RGB") -> torch.Tensor:
    with Image.open(path) as img:
        arr = np.array(img.convert(mode), dtype=np.float32)
    t = torch.from_numpy(arr)
    return (t[None] if t.ndim == 2 else t.permute(2, 0, 1)) / 127.5 - 1


@pytest.mark.parametrize("case", ["resnet6", "unet256_gray_batch"])
def test_translate_cli_reproduces_the_reference_network(gantrans, tmp_path, case):
    arch = CASES[case]
    ckpt = tmp_path / "latest_net_G_A.pth"
    net = save_reference(ckpt, arch)
    write_image(tmp_path / "in" / "odd.png", (37, 23), "RGB", seed=1)
    code, out, err = gantrans(
        "translate",
        f"ckpt={ckpt}",
        f"input_dir={tmp_path / 'in'}",
        f"output_dir={tmp_path / 'out'}",
        "progress=false",
    )
    assert code == 0, err
    assert out.count("reference checkpoint: ") == 1
    assert f"reference checkpoint: {describe(arch)}" in out
    mode = "L" if arch["in_channels"] == 1 else "RGB"
    x = read(tmp_path / "in" / "odd.png", mode)[None]
    padded, h, w = _pad(x, 2 ** arch.get("num_downs", 2))
    with torch.no_grad():
        expected = ((net(padded)[0, :, :h, :w].clamp(-1, 1) + 1) * 127.5).round()
    got = (read(tmp_path / "out" / "odd.png", mode) + 1) * 127.5
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1


def test_btoa_on_a_reference_file_warns_once_and_uses_it(gantrans, tmp_path):
    ckpt = tmp_path / "latest_net_G_A.pth"
    save_reference(ckpt, arch_of("resnet", n_blocks=1))
    write_image(tmp_path / "in" / "a.png", (16, 16), "RGB")
    code, out, err = gantrans(
        "translate",
        f"ckpt={ckpt}",
        f"input_dir={tmp_path / 'in'}",
        f"output_dir={tmp_path / 'out'}",
        "direction=BtoA",
    )
    assert code == 0, err
    assert out.count("holds a single generator, used as is") == 1


def translate_error(gantrans, tmp_path: Path, ckpt: Path) -> str:
    write_image(tmp_path / "in" / "a.png", (16, 16), "RGB")
    return one_line_error(
        gantrans(
            "translate",
            f"ckpt={ckpt}",
            f"input_dir={tmp_path / 'in'}",
            f"output_dir={tmp_path / 'out'}",
            "progress=false",
        )
    )


@pytest.mark.parametrize(
    "content",
    ["discriminator", "wrapped_state_dict", "tensor", "empty_dict", "strings"],
)
def test_files_of_neither_format_are_one_clear_line(gantrans, tmp_path, content):
    bad = tmp_path / "bad.pth"
    obj = {
        "discriminator": lambda: NLayerDiscriminator(3, ndf=4).state_dict(),
        "wrapped_state_dict": lambda: {"state_dict": reference_net(arch_of("resnet"))[1]},
        "tensor": lambda: torch.zeros(3),
        "empty_dict": lambda: {},
        "strings": lambda: {"model.1.weight": "not a tensor"},
    }[content]()
    torch.save(obj, bad)
    line = translate_error(gantrans, tmp_path, bad)
    assert "is not a gantrans checkpoint nor a generator file" in line
    assert "latest_net_G_A.pth" in line and "model.1.weight" in line


def test_a_broken_reference_file_says_what_does_not_fit(gantrans, tmp_path):
    _, state = reference_net(arch_of("resnet", n_blocks=2))
    state["model.11.conv_block.1.weight"] = torch.zeros(16, 16, 3, 3)  # ngf 4 blocks hold 16
    state["model.11.conv_block.5.weight"] = torch.zeros(8, 16, 3, 3)  # ...but this is 8x16
    bad = tmp_path / "latest_net_G_A.pth"
    torch.save(state, bad)
    line = translate_error(gantrans, tmp_path, bad)
    assert "looks like a pytorch-CycleGAN-and-pix2pix generator" in line
    assert "do not fit" in line and "size mismatch" in line


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda s: s.pop("model.10.conv_block.5.weight"), "conv_block"),
        (lambda s: s.pop("model.26.weight"), "no model.26.weight"),
        (lambda s: s.update({"model.2.weight": torch.ones(4)}), "affine weights"),
    ],
    ids=["missing_block_conv", "missing_last_conv", "affine_instance_norm"],
)
def test_inconsistent_reference_layouts_are_refused(tmp_path, edit, message):
    _, state = reference_net(arch_of("resnet"))
    edit(state)
    path = tmp_path / "x.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_generator(path, "AtoB", CPU)
    assert "\n" not in str(info.value)


def test_malicious_pickle_in_a_reference_file_is_refused_and_not_run(gantrans, tmp_path):
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    _, state = reference_net(arch_of("resnet", n_blocks=1))
    state["model.1.evil"] = Evil()
    bad = tmp_path / "latest_net_G_A.pth"
    torch.save(state, bad, pickle_module=pickle)
    line = translate_error(gantrans, tmp_path, bad)
    assert "refusing to load" in line
    assert not (tmp_path / "pwned").exists()


def test_dataparallel_prefix_is_accepted(tmp_path):
    arch = arch_of("resnet", n_blocks=1)
    net, state = reference_net(arch)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "dp.pth")
    loaded, got = load_generator(tmp_path / "dp.pth", "AtoB", CPU)
    assert got == arch
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=1e-6)


def test_a_pix2pix_latest_net_g_translates(gantrans, tmp_path):
    """The reference's pix2pix generator file (latest_net_G.pth: U-Net, batch norm, dropout
    layers without weights) translates like the network that wrote it, in eval mode."""
    arch = arch_of("unet", num_downs=5, norm="batch", dropout=True)
    ckpt = tmp_path / "facades_label2photo" / "latest_net_G.pth"
    net = save_reference(ckpt, arch).eval()
    write_image(tmp_path / "in" / "a.png", (32, 32), "RGB", seed=3)
    code, out, err = gantrans("translate", f"ckpt={ckpt}", f"input={tmp_path / 'in' / 'a.png'}",
                              f"output={tmp_path / 'out.png'}", "progress=false")  # fmt: skip
    assert code == 0, err
    assert "reference checkpoint: U-Net generator, 5 downsamplings" in out
    with torch.no_grad():
        expected = (net(read(tmp_path / "in" / "a.png", "RGB")[None])[0].clamp(-1, 1) + 1) * 127.5
    got = (read(tmp_path / "out.png", "RGB") + 1) * 127.5
    assert (got - expected.round()).abs().max() <= 1
