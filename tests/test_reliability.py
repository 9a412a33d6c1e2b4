"""Surviving interruption, numerical faults, a full disk, and failure-mode diagnostics."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gantrans import checkpoint
from gantrans.checkpoint import load_checkpoint
from gantrans.runtime import OutOfMemoryError
from gantrans.training import train
from gantrans.training.diagnostics import Diagnostics

from .conftest import TINY, TINY_CUT

METHODS = pytest.mark.parametrize(
    "method,term", [([], "cycle_A"), (TINY_CUT, "NCE")], ids=["cyclegan", "cut"]
)


def run_dir_args(run: Path, *extra: str) -> list[str]:
    return ["train", *TINY, f"hydra.run.dir={run}", *extra]


def poison_step(monkeypatch, at_steps: set[int], term: str = "cycle_A"):
    """Make the training step report a NaN `term` at the given (1-based) steps, once each."""
    real = train.train_step
    seen: set[int] = set()

    def step(st, *args, **kwargs):
        terms = real(st, *args, **kwargs)
        if st.step + 1 in at_steps and st.step + 1 not in seen:
            seen.add(st.step + 1)
            terms[term] = torch.tensor(float("nan"))
        return terms

    monkeypatch.setattr(train, "train_step", step)


@METHODS
def test_nan_stops_with_the_term_and_step_and_keeps_the_good_checkpoint(
    gantrans, tmp_path, monkeypatch, method, term
):
    poison_step(monkeypatch, {4}, term)
    run = tmp_path / "run"
    code, _, err = gantrans(
        *run_dir_args(run, *method, "train.max_steps=6", "train.checkpoint_every=2")
    )
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert f"loss {term} became non-finite at step 4" in line
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["step"] == 2  # the last good one, not a poisoned state


@METHODS
def test_nan_rolls_back_with_a_lower_learning_rate(gantrans, tmp_path, monkeypatch, method, term):
    poison_step(monkeypatch, {4}, term)
    run = tmp_path / "run"
    code, out, err = gantrans(
        *run_dir_args(
            run,
            *method,
            "train.max_steps=6",
            "train.checkpoint_every=2",
            "train.on_nonfinite=rollback",
            "train.rollback_lr_factor=0.5",
        )
    )
    assert code == 0, err
    assert "rolled back to step 2" in out
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["step"] == 6
    assert ckpt["schedulers"]["G"]["base_lrs"] == [pytest.approx(1e-4)]
    assert ckpt["schedulers"]["D"]["base_lrs"] == [pytest.approx(1e-4)]
    for sd in ckpt["models"].values():
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


def test_nan_between_logs_is_reported_at_its_own_step(gantrans, tmp_path, monkeypatch):
    # the check is read back from the device only when the loop logs (step 5 here), but the
    # error names the step the NaN appeared at, and nothing after it was written
    poison_step(monkeypatch, {3})
    run = tmp_path / "run"
    code, _, err = gantrans(
        *run_dir_args(
            run,
            "train.max_steps=8",
            "train.log_every=5",
            "train.image_every=100",
            "train.checkpoint_every=100",
        )  # fmt: skip
    )
    assert code == 2
    assert "loss cycle_A became non-finite at step 3" in err.strip().splitlines()[-1]
    assert not (run / "checkpoints" / "latest.pt").exists()


def test_finite_watch_finds_the_first_bad_step_in_one_read():
    watch = train.FiniteWatch()
    one = torch.tensor(1.0)
    watch.add(1, {"a": one, "b": one})
    watch.add(2, {"a": one, "b": torch.tensor(float("inf"))})
    watch.add(3, {"a": torch.tensor(float("nan")), "b": one})
    assert watch.first_bad() == (2, ["b"])
    assert watch.first_bad() is None  # read once, then cleared
    watch.add(4, {"a": one})
    assert watch.first_bad() is None


def test_full_disk_keeps_the_previous_checkpoint(gantrans, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert gantrans(*run_dir_args(run, "train.max_steps=1"))[0] == 0
    before = (run / "checkpoints" / "latest.pt").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    code, _, err = gantrans(*run_dir_args(run, "train.max_steps=2", "resume=auto"))
    assert code == 2 and "no space left" in err and "previous checkpoint is intact" in err
    assert len(err.strip().splitlines()) == 1
    assert (run / "checkpoints" / "latest.pt").read_bytes() == before
    assert not [
        p for p in (run / "checkpoints").iterdir() if p.name != "latest.pt"
    ]  # no temp files


def test_diagnostics_discriminator_wins_and_generator_rises():
    diag = Diagnostics(gan_mode="lsgan")
    warnings = []
    for step in range(1, 8):
        warnings += diag.observe(
            step,
            {
                "D_A": 0.001,
                "D_A_acc": 0.999,
                "D_B": 0.2,
                "D_B_acc": 0.7,
                "G_A": 0.5 * 2**step,
                "G_B": 0.5,
            },
        )
    text = "\n".join(warnings)
    assert "discriminator D_A wins outright" in text and "D_B" not in text.replace("D_A", "")
    assert "adversarial loss keeps rising" in text
    assert sum("D_A wins" in w for w in warnings) == 1  # reported once while it lasts


def test_diagnostics_collapse():
    diag = Diagnostics()
    inputs = torch.rand(4, 3, 8, 8)
    ratio, warnings = diag.observe_samples(1, inputs, torch.zeros(4, 3, 8, 8) + 0.3, "AtoB")
    assert ratio == 0 and "collapsed" in warnings[0]
    ratio, warnings = diag.observe_samples(2, inputs, inputs.flip(0), "AtoB")
    assert ratio == pytest.approx(1.0) and warnings == []


def _train_cmd(run: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gantrans",
        "train",
        *TINY,
        "train.log_every=50",
        "train.image_every=1000",
        "dataset.train_size=64",
        f"hydra.run.dir={run}",
        *extra,
    ]


def _wait_for(path: Path, timeout: float = 60) -> None:
    end = time.time() + timeout
    while not path.exists():
        if time.time() > end:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


def test_sigint_finishes_the_step_saves_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _train_cmd(run, "train.max_steps=100000", "train.checkpoint_every=100000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for(run / "tb", 60)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "resume=auto" in out and "Traceback" not in out
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["step"] > 0


def test_sigterm_stops_a_cut_run_with_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    cmd = _train_cmd(run, *TINY_CUT, "train.max_steps=100000", "train.checkpoint_every=100000")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(run / "tb", 60)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert "stopped by SIGTERM" in out and "resume=auto" in out and "Traceback" not in out
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["method"] == "cut" and ckpt["step"] > 0 and set(ckpt["models"]) == {"G", "D", "F"}
    assert ckpt["step"] == ckpt["schedulers"]["G"]["last_epoch"]  # the state of that very step


def test_sigterm_to_the_process_group_spares_the_loader_workers(tmp_path):
    """Slurm and `timeout` signal the whole group: the workers must not die before the save."""
    run = tmp_path / "run"
    cmd = _train_cmd(run, "train.num_workers=2", "train.max_steps=100000",
                     "train.checkpoint_every=100000")  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    _wait_for(run / "tb", 60)
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGTERM)  # the main process and its workers
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert "stopped by SIGTERM" in out and "Traceback" not in out and "killed by signal" not in out
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] > 0


def test_kill_9_at_random_points_then_resume_completes(tmp_path):
    """Fault injection: SIGKILL during training (and saving) several times; resume=auto each time."""
    run, total = tmp_path / "run", 40
    rng = random.Random(0)
    cmd = _train_cmd(run, f"train.max_steps={total}", "train.checkpoint_every=3", "resume=auto")
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(run / "tb", 60)
        time.sleep(rng.uniform(0.5, 2.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        latest = run / "checkpoints" / "latest.pt"
        if latest.exists():
            load_checkpoint(latest)  # whatever moment it died, the latest checkpoint loads
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == total
    assert kills >= 1


def test_out_of_memory_names_the_settings_that_reduce_memory(gantrans, tmp_path, monkeypatch):
    def oom(*args, **kwargs):
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train, "train_step", oom)
    code, _, err = gantrans(*run_dir_args(tmp_path / "run", "train.max_steps=2"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (
        "out of memory at step 1" in err and "train.batch_size" in err and "precision=bf16" in err
    )


def test_a_save_killed_mid_write_leaves_a_temporary_file_the_next_start_removes(gantrans, tmp_path):
    import tempfile

    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    # the very name save_atomic gives its temporary file, as a kill -9 during torch.save leaves it
    fd, stale = tempfile.mkstemp(prefix=".latest.pt.", suffix=".tmp", dir=folder)
    os.write(fd, b"half a checkpoint")
    os.close(fd)
    mine = folder / ".notes.tmp"  # not a name save_atomic writes: kept
    mine.write_text("x")
    code, _, err = gantrans(*run_dir_args(tmp_path / "run", "train.max_steps=1"))
    assert code == 0, err
    assert not Path(stale).exists() and mine.exists()
    assert sorted(p.name for p in folder.iterdir()) == [".notes.tmp", "latest.pt"]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "removed 1 temporary file(s)" in log and Path(stale).name in log


def test_removing_interrupted_saves_touches_nothing_else(tmp_path):
    checkpoint.save_atomic({"x": 1}, tmp_path / "latest.pt")
    (tmp_path / ".best.pt.ab_12xyz.tmp").write_bytes(b"partial")
    (tmp_path / "keep.tmp").write_bytes(b"x")
    assert [p.name for p in checkpoint.remove_interrupted_saves(tmp_path)] == [
        ".best.pt.ab_12xyz.tmp"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tmp", "latest.pt"]
    assert checkpoint.remove_interrupted_saves(tmp_path / "none") == []
