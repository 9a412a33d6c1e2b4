"""`gantrans export`: ONNX and TorchScript files that match PyTorch at other sizes and batches."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from gantrans import __version__
from gantrans.applying import export
from gantrans.applying.loader import load_generator

from .conftest import make_checkpoint, one_line_error
from .test_reference import arch_of, save_reference

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")

CPU = torch.device("cpu")
RESNET_SHAPES = [(1, 3, 44, 60), (2, 3, 32, 48)]  # multiples of 4; a second size and batch 2
UNET_GRAY_SHAPES = [(1, 1, 64, 96), (2, 1, 32, 64)]  # multiples of 32 (num_downs 5)


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def run_torchscript(path: Path, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.jit.load(str(path))(x)


def assert_matches(run, path: Path, net: torch.nn.Module, shapes) -> None:
    for shape in shapes:
        x = torch.rand(shape) * 2 - 1
        with torch.no_grad():
            expected = net(x)
        torch.testing.assert_close(run(path, x), expected, rtol=0, atol=1e-4)


def exported(gantrans, *args: str) -> str:
    code, out, err = gantrans("export", *args, "progress=false")
    assert code == 0, err
    return out


def read_meta(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


def test_onnx_of_a_resnet_checkpoint_next_to_it(gantrans, tiny_ckpt):
    out = exported(gantrans, f"ckpt={tiny_ckpt}", "format=onnx")
    model = tiny_ckpt.with_name("tiny_AtoB.onnx")
    assert f"exported AtoB onnx to {model}" in out
    net, _ = load_generator(tiny_ckpt, "AtoB", CPU)
    assert_matches(run_onnx, model, net, RESNET_SHAPES)

    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(model))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [0, 3, 0, 0]  # batch, height and width are symbolic
    assert all(dims[i].dim_param for i in (0, 2, 3))

    meta = read_meta(model)
    assert meta["format"] == "onnx" and meta["exporter"] == "torch.export"
    assert meta["direction"] == "AtoB" and meta["opset"] == 18
    assert meta["in_channels"] == meta["out_channels"] == 3
    assert meta["size_multiple"] == 4
    assert meta["architecture"]["name"] == "resnet" and meta["architecture"]["n_blocks"] == 1
    assert meta["gantrans_version"] == __version__
    assert "x / 127.5 - 1" in meta["normalization"]["input"]
    assert meta["input"]["shape"] == ["batch", 3, "height", "width"]


def test_onnx_of_a_grayscale_unet_btoa_to_a_chosen_file(gantrans, tmp_path):
    ckpt = make_checkpoint(tmp_path / "unet.pt", channels=1, name="unet")
    model = tmp_path / "new" / "folder" / "g.onnx"
    exported(
        gantrans, f"ckpt={ckpt}", "format=onnx", "direction=BtoA", f"output={model}", "verify=false"
    )
    g_b, _ = load_generator(ckpt, "BtoA", CPU)
    assert_matches(run_onnx, model, g_b, UNET_GRAY_SHAPES)
    g_a, _ = load_generator(ckpt, "AtoB", CPU)
    x = torch.rand(UNET_GRAY_SHAPES[0])
    with torch.no_grad():
        assert not torch.allclose(run_onnx(model, x), g_a(x), atol=1e-3)  # the other network
    meta = read_meta(model)
    assert meta["direction"] == "BtoA" and meta["size_multiple"] == 32
    assert meta["in_channels"] == 1 and meta["architecture"]["num_downs"] == 5


@pytest.mark.parametrize("name", ["resnet", "unet"])
def test_torchscript_is_scripted_and_takes_any_size(gantrans, tmp_path, name):
    channels = 3 if name == "resnet" else 1
    ckpt = make_checkpoint(tmp_path / "m.pt", channels=channels, name=name)
    exported(gantrans, f"ckpt={ckpt}", "format=torchscript", "verify=false")  # checked below
    model = tmp_path / "m_AtoB.pt"
    net, _ = load_generator(ckpt, "AtoB", CPU)
    assert_matches(
        run_torchscript, model, net, RESNET_SHAPES if name == "resnet" else UNET_GRAY_SHAPES
    )
    meta = read_meta(model)
    assert meta["format"] == "torchscript" and meta["exporter"] == "script"
    assert "opset" not in meta


def test_torchscript_falls_back_to_a_checked_trace(gantrans, tiny_ckpt, monkeypatch):
    def no_script(*args, **kwargs):
        raise RuntimeError("scripting is broken here")

    monkeypatch.setattr(torch.jit, "script", no_script)
    out = exported(gantrans, f"ckpt={tiny_ckpt}", "format=torchscript", "verify=false")
    assert "torch.jit.script failed (scripting is broken here); tracing instead" in out
    model = tiny_ckpt.with_name("tiny_AtoB.pt")
    assert read_meta(model)["exporter"] == "trace"
    net, _ = load_generator(tiny_ckpt, "AtoB", CPU)
    assert_matches(run_torchscript, model, net, RESNET_SHAPES)


def test_onnx_falls_back_to_the_torchscript_exporter(gantrans, tiny_ckpt, monkeypatch):
    real = torch.onnx.export

    def no_dynamo(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("torch.export cannot trace this")
        return real(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    out = exported(gantrans, f"ckpt={tiny_ckpt}", "format=onnx", "verify=false")
    assert "exporter failed (torch.export cannot trace this)" in out
    model = tiny_ckpt.with_name("tiny_AtoB.onnx")
    assert read_meta(model)["exporter"] == "torchscript-onnx"
    net, _ = load_generator(tiny_ckpt, "AtoB", CPU)
    assert_matches(run_onnx, model, net, RESNET_SHAPES)


def test_onnx_with_torch_2_4s_exporter(gantrans, tiny_ckpt, monkeypatch):
    real = torch.onnx.export

    def export_2_4(model, args, f, *, opset_version, dynamic_axes, input_names, output_names):
        # torch 2.4's signature: no `dynamo` argument, TorchScript-based only
        return real(model, args, f, dynamo=False, opset_version=opset_version,
                    dynamic_axes=dynamic_axes, input_names=input_names,
                    output_names=output_names)  # fmt: skip

    monkeypatch.setattr(torch.onnx, "export", export_2_4)
    out = exported(gantrans, f"ckpt={tiny_ckpt}", "format=onnx", "verify=false")
    assert "exporter failed" not in out  # not tried: this torch has no torch.export-based one
    model = tiny_ckpt.with_name("tiny_AtoB.onnx")
    assert read_meta(model)["exporter"] == "torchscript-onnx"


def test_opset_17_uses_the_torchscript_exporter(gantrans, tiny_ckpt, tmp_path):
    model = tmp_path / "o17.onnx"
    exported(
        gantrans, f"ckpt={tiny_ckpt}", "format=onnx", "opset=17", f"output={model}", "verify=false"
    )
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(model))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    net, _ = load_generator(tiny_ckpt, "AtoB", CPU)
    assert_matches(run_onnx, model, net, RESNET_SHAPES)


def test_onnx_of_a_reference_file(gantrans, tmp_path):
    arch = arch_of("resnet", n_blocks=1, dropout=True)
    ckpt = tmp_path / "latest_net_G_A.pth"
    net = save_reference(ckpt, arch)
    out = exported(gantrans, f"ckpt={ckpt}", "format=onnx")
    assert "reference checkpoint: ResNet generator, 1 blocks, ngf 4" in out
    model = tmp_path / "latest_net_G_A_AtoB.onnx"
    assert_matches(run_onnx, model, net, RESNET_SHAPES)
    assert read_meta(model)["architecture"] == arch


@pytest.mark.parametrize(
    "case,message",
    [
        ("format=jpeg", "format=jpeg is not supported: choose one of onnx, torchscript"),
        ("no_format", "format is required"),
        ("opset=12", "opset=12 is too old"),
        ("output_is_a_folder", "cannot write output="),
        ("output_under_a_file", "cannot write output="),
        ("output_is_the_checkpoint", "is the checkpoint itself"),
        ("missing_ckpt", "does not exist"),
        ("not_a_checkpoint", "truncated or not a PyTorch checkpoint"),
        ("other_dict", "is not a gantrans checkpoint nor a generator file"),
        ("unknown_key", "is not an option"),
    ],
)
def test_bad_requests_are_one_line(gantrans, tiny_ckpt, tmp_path, case, message):
    args = [f"ckpt={tiny_ckpt}", "format=onnx"]
    if case.startswith(("format=", "opset=")):
        args.append(case)
    elif case == "no_format":
        args = [f"ckpt={tiny_ckpt}"]
    elif case == "output_is_a_folder":
        args.append(f"output={tmp_path}")
    elif case == "output_under_a_file":
        args.append(f"output={tiny_ckpt}/x.onnx")
    elif case == "output_is_the_checkpoint":
        args.append(f"output={tiny_ckpt}")
    elif case == "missing_ckpt":
        args[0] = f"ckpt={tmp_path / 'nope.pt'}"
    elif case == "not_a_checkpoint":
        (tmp_path / "bad.pt").write_bytes(b"this is not a checkpoint")
        args[0] = f"ckpt={tmp_path / 'bad.pt'}"
    elif case == "other_dict":
        torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
        args[0] = f"ckpt={tmp_path / 'other.pt'}"
    elif case == "unknown_key":
        args.append("+colour=blue")
    line = one_line_error(gantrans("export", *args))
    assert line.startswith("gantrans export: error: ")
    assert message in line
    assert not tiny_ckpt.with_name("tiny_AtoB.onnx").exists()
    assert tiny_ckpt.is_file()


def test_malicious_pickle_is_refused_and_not_run(gantrans, tmp_path):
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"model.1.weight": Evil()}, bad, pickle_module=pickle)
    line = one_line_error(gantrans("export", f"ckpt={bad}", "format=onnx"))
    assert "refusing to load" in line
    assert not (tmp_path / "pwned").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pth"]


def test_a_model_that_does_not_match_is_not_written(gantrans, tiny_ckpt, monkeypatch):
    monkeypatch.setattr(export, "_runner", lambda fmt, path: lambda x: torch.zeros(1))
    line = one_line_error(gantrans("export", f"ckpt={tiny_ckpt}", "format=torchscript"))
    assert "the exported model differs from PyTorch on a 44x60 input" in line
    assert sorted(p.name for p in tiny_ckpt.parent.iterdir()) == ["tiny.pt"]  # no .part left
