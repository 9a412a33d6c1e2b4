"""DistributedDataParallel through torchrun on the CPU (gloo), two processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gantrans.checkpoint import load_checkpoint

from .conftest import TINY, TINY_CUT

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or shutil.which("torchrun") is None,
    reason="torch.distributed / torchrun not available",
)

COMMON = [
    *TINY,
    "dataset.train_size=12",
    "train.pool_size=0",
    "train.log_every=2",
    "train.image_every=100",
    "train.checkpoint_every=3",
]


def torchrun(run: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "gantrans",
        "train",
        *COMMON,
        f"hydra.run.dir={run}",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240)


def weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    return {f"{n}.{k}": v for n, sd in ckpt["models"].items() for k, v in sd.items()}


def outputs(path: Path) -> dict[str, torch.Tensor]:
    """Each network's output on a fixed input, in eval mode."""
    from gantrans.methods import CycleGAN

    ckpt = load_checkpoint(path)
    net = CycleGAN(ckpt["arch"]["generator"], ckpt["arch"]["discriminator"]).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = {}
    with torch.no_grad():
        for name, sd in ckpt["models"].items():
            getattr(net, name).load_state_dict(sd)
            out[name] = getattr(net, name)(x)
    return out


def test_two_processes_match_one_process_with_the_global_batch(gantrans, tmp_path):
    ddp = torchrun(tmp_path / "ddp", "train.max_steps=3")
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    assert "2 processes (DDP), 2 images per step" in ddp.stdout
    # one process, batch 2: the same keys per step (rank r takes every 2nd key), same mean loss
    code, _, err = gantrans(
        "train",
        *COMMON,
        "train.batch_size=2",
        "train.max_steps=3",
        f"hydra.run.dir={tmp_path / 'single'}",
    )
    assert code == 0, err
    # compare what the networks compute: a conv bias right before an instance norm has a
    # gradient of pure rounding noise, which Adam turns into full-size (harmless) steps
    a = outputs(tmp_path / "ddp" / "checkpoints" / "latest.pt")
    b = outputs(tmp_path / "single" / "checkpoints" / "latest.pt")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-4), key
    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "latest.pt")
    assert ckpt["step"] == 3 and len(ckpt["ranks"]) == 2
    assert not (tmp_path / "ddp" / "train.log").read_text().count("rank 1")


def test_resume_under_ddp_matches_an_uninterrupted_run(tmp_path):
    extra = ["train.pool_size=2"]  # per-rank buffers must come back from the checkpoint
    straight = torchrun(tmp_path / "straight", *extra, "train.max_steps=6")
    assert straight.returncode == 0, straight.stdout + straight.stderr
    first = torchrun(tmp_path / "split", *extra, "train.max_steps=3")
    assert first.returncode == 0, first.stdout + first.stderr
    second = torchrun(tmp_path / "split", *extra, "train.max_steps=6", "resume=auto")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resumed from" in second.stdout
    a = weights(tmp_path / "straight" / "checkpoints" / "latest.pt")
    b = weights(tmp_path / "split" / "checkpoints" / "latest.pt")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_cut_two_processes_match_one_process_with_the_global_batch(gantrans, tmp_path):
    """CUT under DDP: G, the heads and D are averaged like CycleGAN's networks. With every
    feature-map place sampled (num_patches above the largest map) the patches each rank draws
    do not change the loss, so one process with the global batch must learn the same."""
    from gantrans.models import build_discriminator, build_generator

    cut = [*TINY_CUT, "method.num_patches=4096"]
    ddp = torchrun(tmp_path / "ddp", *cut, "train.max_steps=3")
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    assert "method cut" in ddp.stdout and "2 processes (DDP)" in ddp.stdout
    code, _, err = gantrans(
        "train", *COMMON, *cut, "train.batch_size=2", "train.max_steps=3",
        f"hydra.run.dir={tmp_path / 'single'}",
    )  # fmt: skip
    assert code == 0, err
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = []
    for run in ("ddp", "single"):
        ckpt = load_checkpoint(tmp_path / run / "checkpoints" / "latest.pt")
        assert ckpt["method"] == "cut" and ckpt["step"] == 3
        G = build_generator(ckpt["arch"]["generator"]).eval()
        D = build_discriminator(ckpt["arch"]["discriminator"]).eval()
        G.load_state_dict(ckpt["models"]["G"])
        D.load_state_dict(ckpt["models"]["D"])
        with torch.no_grad():
            out.append((G(x), D(x)))
    for a, b in zip(*out, strict=True):
        assert torch.allclose(a, b, atol=1e-4)
