"""What differs on a GPU: autocast with the gradient scaler, resume, CPU <-> CUDA checkpoints.

Marked `cuda`: on a machine without a GPU each test is skipped with the reason (tests/conftest.py);
`pytest -m cuda` runs only these, as scripts/gpu_check.py does.
"""

from __future__ import annotations

import pytest
import torch

from gantrans.checkpoint import load_checkpoint
from gantrans.config import compose_train_config, to_plain
from gantrans.training import train
from gantrans.training.engine import build_training, train_step

from .conftest import TINY, TINY_CUT, make_checkpoint

pytestmark = pytest.mark.cuda


def tiny_state(*overrides: str, device: str = "cuda"):
    torch.manual_seed(0)
    cfg = compose_train_config([*TINY, *overrides])
    return build_training(cfg, torch.device(device)), cfg


def batch(device: str = "cuda", n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {d: (torch.rand(n, 3, 32, 32, generator=g) * 2 - 1).to(device) for d in "AB"}


@pytest.mark.parametrize("method", [[], TINY_CUT], ids=["cyclegan", "cut"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_steps_are_finite_and_update_the_weights(precision, method):
    st, _ = tiny_state(*method, f"precision={precision}")
    assert st.scaler.is_enabled() == (precision == "fp16")  # the scaler only with fp16
    before = {k: v.clone() for k, v in st.method.state_dict().items()}
    for _ in range(3):
        terms = train_step(st, batch())
        st.step += 1
        assert all(torch.isfinite(v).all() for v in terms.values()), terms
    if st.scaler.is_enabled():
        scale = st.scaler.get_scale()
        assert 0 < scale < float("inf")
    changed = [k for k, v in st.method.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "no weight moved in three steps"
    for v in st.method.state_dict().values():
        assert v.is_cuda


def test_channels_last_step_matches_the_default_layout(monkeypatch):
    # fp32 proper: cuDNN's default TF32 would round the two layouts' convolutions differently
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    a, _ = tiny_state("precision=fp32")
    b, _ = tiny_state("precision=fp32", "train.channels_last=true")
    x = batch()
    ta = train_step(a, x)
    tb = train_step(b, {k: v.contiguous(memory_format=torch.channels_last) for k, v in x.items()})
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=1e-3, atol=1e-4)


def _deterministic(monkeypatch):
    """cuDNN's autotuner (switched on by train.start) may pick other kernels in another run."""
    start = train.start

    def deterministic_start(*args, **kwargs):
        run = start(*args, **kwargs)
        torch.backends.cudnn.benchmark = False
        return run

    monkeypatch.setattr(train, "start", deterministic_start)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)


def test_resume_on_cuda_gives_the_uninterrupted_weights(gantrans, tmp_path, monkeypatch):
    _deterministic(monkeypatch)
    base = ["train", *TINY, "device=cuda", "train.checkpoint_every=2"]
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    assert gantrans(*base, "train.max_steps=4", f"hydra.run.dir={whole}")[0] == 0
    assert gantrans(*base, "train.max_steps=2", f"hydra.run.dir={halves}")[0] == 0
    assert gantrans(*base, "train.max_steps=4", f"hydra.run.dir={halves}", "resume=auto")[0] == 0
    a = load_checkpoint(whole / "checkpoints" / "latest.pt")
    b = load_checkpoint(halves / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 4
    for net, sd in a["models"].items():
        for key, v in sd.items():
            assert torch.equal(v, b["models"][net][key]), f"{net}.{key} differs after resuming"


def test_cuda_checkpoint_loads_on_the_cpu_and_back(tmp_path):
    st, cfg = tiny_state("precision=bf16")
    for _ in range(3):  # fills the image buffers with images made on the GPU
        train_step(st, batch())
        st.step += 1
    path = tmp_path / "cuda.pt"
    st.save(path, to_plain(cfg))
    ckpt = load_checkpoint(path)  # weights_only, onto the CPU
    tensors = [v for sd in ckpt["models"].values() for v in sd.values()]
    tensors += [p["images"] for p in ckpt["pools"].values()]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    cpu, _ = tiny_state("precision=fp32", device="cpu")
    cpu.load_state_dict(ckpt, path)
    for name, net in st.method.networks().items():
        for (k, v), w in zip(net.state_dict().items(), cpu.method.networks()[name].state_dict().values(), strict=True):  # fmt: skip
            assert torch.equal(v.cpu(), w), f"{name}.{k}"
    train_step(cpu, batch("cpu"))  # the CPU continues from the GPU's state, buffers included


def test_cpu_checkpoint_translates_on_cuda(gantrans, tmp_path, two_domain_folder):
    ckpt = make_checkpoint(tmp_path / "cpu.pt")
    out = tmp_path / "out"
    code, _, err = gantrans("translate", f"ckpt={ckpt}", f"input={two_domain_folder / 'testA'}",
                            f"output_dir={out}", "device=cuda", "progress=false")  # fmt: skip
    assert code == 0, err
    assert list(out.rglob("*.png"))
