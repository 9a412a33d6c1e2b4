"""The `gantrans` command: help, Hydra flags, and one-line errors for what a user can get wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gantrans.training.train import discard_failed_start

from .conftest import TINY, TINY_NETS, one_line_error


def test_help_lists_subcommands(gantrans):
    code, out, _ = gantrans("--help")
    assert code == 0 and "train" in out and "translate" in out


def test_unknown_subcommand(gantrans):
    assert "unknown command 'fly'" in one_line_error(gantrans("fly"))


def test_cfg_job_prints_the_composed_config(gantrans):
    code, out, _ = gantrans("train", "--cfg", "job", "model=resnet9", "loss=wgangp")
    assert code == 0 and "n_blocks: 9" in out and "name: wgangp" in out


def test_hydra_help_lists_config_groups(gantrans):
    code, out, _ = gantrans("train", "--help")
    shown = out.replace("dcgan_schema, ", "").replace("resnet_schema, ", "")
    assert code == 0 and "model: dcgan, resnet6, resnet9" in shown


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.lrr=1", "train.lrr"),
        ("train.lr=fast", "train.lr: Value 'fast'"),
        ("model.norm=group", "expected one of [instance, batch, none]"),
        ("model=resnet7", "choose one of: dcgan, resnet6, resnet9, unet128, unet256"),
        ("train.batch_size=-1", "train.batch_size must be positive"),
        ("device=tpu", "device=tpu"),
    ],
)
def test_config_mistakes_are_one_line(gantrans, tmp_path, override, message):
    line = one_line_error(gantrans("train", override, f"hydra.run.dir={tmp_path}"))
    assert line.startswith("gantrans train: error:") and message in line


def test_misspelt_key_in_a_user_config_file(gantrans, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text(
        "defaults:\n  - resnet_schema\n  - _self_\nn_blockz: 3\n"
    )
    line = one_line_error(gantrans("train", "--config-dir", str(tmp_path), "model=mine"))
    assert "n_blockz" in line


def test_missing_and_empty_data_folders(gantrans, tmp_path):
    line = one_line_error(
        gantrans(
            "train",
            "dataset=folder",
            f"dataset.root={tmp_path / 'nope'}",
            f"hydra.run.dir={tmp_path / 'r1'}",
        )
    )
    assert "does not exist" in line
    (tmp_path / "d" / "trainA").mkdir(parents=True)
    (tmp_path / "d" / "trainB").mkdir(parents=True)
    line = one_line_error(
        gantrans(
            "train",
            "dataset=folder",
            f"dataset.root={tmp_path / 'd'}",
            f"hydra.run.dir={tmp_path / 'r2'}",
        )
    )
    assert "trainA" in line
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_a_failed_start_leaves_no_empty_run_folder(gantrans, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(gantrans("train", "dataset=folder", f"dataset.root={tmp_path / 'nope'}"))
    assert "does not exist" in line
    assert one_line_error(gantrans("train", "train.lr=-1")).endswith("got -1.0")
    # caught before the data, networks and TensorBoard writer are set up
    line = one_line_error(gantrans("train", "precision=fp16", "device=cpu"))
    assert line.endswith("on the CPU use precision=bf16")
    assert list(tmp_path.iterdir()) == []  # no runs/<dataset>/<time>/, no empty runs/
    (tmp_path / "runs").mkdir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    one_line_error(gantrans("train", "train.lr=-1", "hydra.run.dir=mine"))
    assert (tmp_path / "runs").is_dir()  # existing folders and the user's files stay
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_discard_failed_start_keeps_anything_beyond_startup_files(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    for name in ("train.log", "config.yaml", ".hydra/config.yaml"):
        (run / name).write_text("x")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "latest.pt").write_bytes(b"weights")
    assert not discard_failed_start(run)
    assert (run / "checkpoints" / "latest.pt").exists() and (run / "train.log").exists()
    (run / "checkpoints" / "latest.pt").unlink()
    (run / "checkpoints").rmdir()
    monkeypatch.chdir(run)
    assert not discard_failed_start(run)  # never the working directory itself
    monkeypatch.chdir(tmp_path)
    assert discard_failed_start(run) and not run.exists()


def test_resume_from_a_file_that_is_not_a_checkpoint(gantrans, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("hello")
    line = one_line_error(
        gantrans("train", *TINY, f"resume={bad}", f"hydra.run.dir={tmp_path / 'r'}")
    )
    assert "not a PyTorch checkpoint" in line


def test_trains_on_a_folder_dataset(gantrans, two_domain_folder, tmp_path):
    code, _, err = gantrans(
        "train",
        *TINY_NETS,
        "dataset=folder",
        f"dataset.root={two_domain_folder}",
        "dataset.load_size=36",
        "dataset.crop_size=32",
        "train.max_steps=2",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert code == 0, err
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").exists()


def test_multirun_sweeps(gantrans, tmp_path):
    code, _, err = gantrans(
        "train", "-m", *TINY, "train.max_steps=1", "loss=lsgan,bce", f"hydra.sweep.dir={tmp_path}"
    )
    assert code == 0, err
    assert (tmp_path / "0" / "checkpoints" / "latest.pt").exists()
    assert (tmp_path / "1" / "checkpoints" / "latest.pt").exists()


def test_installed_console_script_runs_from_any_directory(tmp_path):
    """A fresh process, outside the repository: the packaged configs are found."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    exe = Path(sys.executable).with_name("gantrans")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gantrans"]
    result = subprocess.run(
        [*cmd, "train", "--cfg", "job"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "name: shapes" in result.stdout
    result = subprocess.run(
        [*cmd, "train", "train.lr=x"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_precision_auto_is_bf16_only_where_the_device_runs_it(monkeypatch, gantrans, tmp_path):
    from gantrans import runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "bf16_supported", lambda device: True)
    assert runtime.resolve_precision(cpu, "auto") == "bf16"
    assert runtime.resolve_precision(cpu, "fp32") == "fp32"
    run = tmp_path / "run"
    nets = [a for a in TINY_NETS if not a.startswith("precision=")]
    code, _, err = gantrans(
        "train", *nets, "dataset.train_size=4", "dataset.test_size=2", "train.max_steps=1",
        f"hydra.run.dir={run}",
    )  # fmt: skip
    assert code == 0, err
    assert "precision bf16" in (run / "train.log").read_text()  # auto by default, resolved
    monkeypatch.setattr(runtime, "bf16_supported", lambda device: False)
    assert runtime.resolve_precision(cpu, "auto") == "fp32"
