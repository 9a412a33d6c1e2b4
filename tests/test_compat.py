"""Checkpoints written by earlier gantrans versions still translate, evaluate, export and resume.

tests/data/cyclegan_v1.pt is a checkpoint of format version 1, written by `gantrans train`
before training methods existed (no `method` entry: a CycleGAN), with:

    gantrans train precision=fp32 model.ngf=2 model.n_blocks=1 discriminator.ndf=2 \
        discriminator.n_layers=1 train.num_workers=0 train.progress=false \
        dataset.train_size=4 dataset.test_size=4 train.max_steps=3 train.pool_size=1 \
        train.image_every=1000
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gantrans.applying.loader import load_generator
from gantrans.checkpoint import load_checkpoint

from .conftest import write_image

V1 = Path(__file__).parent / "data" / "cyclegan_v1.pt"
# the options it was trained with: resuming must rebuild the same networks
V1_ARGS = [
    "precision=fp32",
    "model.ngf=2",
    "model.n_blocks=1",
    "discriminator.ndf=2",
    "discriminator.n_layers=1",
    "train.num_workers=0",
    "train.progress=false",
    "dataset.train_size=4",
    "dataset.test_size=4",
    "train.pool_size=1",
    "train.image_every=1000",
    # the shapes recipe has changed since: pin what the old run was trained with
    "model.input_skip=false",
    "loss.lambda_identity=0.5",
]


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    """A copy of the old checkpoint inside a run directory (evaluate writes next to it)."""
    path = tmp_path / "old_run" / "checkpoints" / "latest.pt"
    path.parent.mkdir(parents=True)
    shutil.copy(V1, path)
    return path


def test_old_checkpoint_translates_both_directions(gantrans, v1, tmp_path):
    folder = tmp_path / "in"
    write_image(folder / "a.png", (20, 12), "RGB")
    for direction in ("AtoB", "BtoA"):
        out = tmp_path / direction
        code, _, err = gantrans(
            "translate", f"ckpt={v1}", f"input_dir={folder}", f"output_dir={out}",
            f"direction={direction}", "progress=false",
        )  # fmt: skip
        assert code == 0, err
        assert (out / "a.png").is_file()
        net, arch = load_generator(v1, direction, torch.device("cpu"))
        assert arch["ngf"] == 2 and net(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_old_checkpoint_evaluates(gantrans, v1):
    code, _, err = gantrans(
        "evaluate", f"ckpt={v1}", "features=classifier", "judge_max_images=8", "judge_epochs=1",
        "c2st=false", "controls=false", "num_samples=2", "progress=false",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((v1.parent.parent / "eval" / "evaluation.json").read_text())
    assert report["source"]["step"] == 3
    assert {"fid_AtoB", "fid_BtoA", "cycle_psnr_A"} <= set(report["metrics"])


def test_old_checkpoint_exports(gantrans, v1, tmp_path):
    out = tmp_path / "g.pt"
    code, _, err = gantrans(
        "export", f"ckpt={v1}", "format=torchscript", "direction=BtoA", f"output={out}",
        "progress=false",
    )  # fmt: skip
    assert code == 0, err
    assert out.is_file()


def test_old_checkpoint_resumes(gantrans, v1, tmp_path):
    run = tmp_path / "resumed"
    code, out, err = gantrans(
        "train", *V1_ARGS, "train.max_steps=5", f"resume={v1}", f"hydra.run.dir={run}"
    )
    assert code == 0, err
    assert "resumed from" in out and "at step 3" in out
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["step"] == 5
