"""The benchmark scripts run, write what they promise, and measure the right arithmetic."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=300
    )


def load_script(name: str):
    sys.path.insert(0, str(SCRIPTS))  # the scripts import their shared helpers from benchmark.py
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while they are made
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPTS))


TINY = ["--ngf", "4", "--ndf", "4", "--size", "32", "--steps", "2"]


def test_benchmark_writes_table_and_json(tmp_path):
    out = tmp_path / "bench.json"
    result = run_script("benchmark.py", *TINY, "--warmup", "1", "--flops", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    for key in ("sec_per_iter_median", "images_per_sec", "translate_images_per_sec"):
        assert data[key] > 0, data
        assert key in result.stdout
    assert data["gflop_per_iter"] > 0
    # the peak is the faster of the two kernels timed, and the utilisation is measured against it
    peak = max(data["matmul_tflops"], data["conv3x3_tflops"])
    assert data["measured_peak_tflops"] == pytest.approx(peak) and peak > 0
    assert data["mfu"] == pytest.approx(data["achieved_tflops"] / peak)


def test_benchmark_times_another_method(tmp_path):
    out = tmp_path / "bench.json"
    result = run_script(
        "benchmark.py", *TINY, "--warmup", "1", "--method", "cut", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["config"]["method"] == "cut" and data["sec_per_iter_median"] > 0
    assert data["translate_images_per_sec"] > 0


def test_benchmark_times_the_quality_options(tmp_path):
    out = tmp_path / "bench.json"
    result = run_script(
        "benchmark.py", *TINY, "--warmup", "1", "--channels", "1", "--set", "model.mask=true",
        "--set", "train.ema=0.999", "--set", "discriminator.augment=translation+cutout",
        "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["sec_per_iter_median"] > 0
    import argparse

    args = argparse.Namespace(model="resnet6", ngf=8, ndf=8, channels=1, size=32, fuse=True,
                              precision="fp32", channels_last=False, set=["model.mask=true"])  # fmt: skip
    assert load_script("benchmark").train_config(args).model.mask is True


@pytest.mark.parametrize(("method", "model"), [("cyclegan", "resnet6"), ("cyclegan", "resnet9"),
                                               ("cut", "resnet6")])  # fmt: skip
def test_benchmarks_build_the_papers_networks_without_the_dataset_recipes(method, model):
    import argparse

    from gantrans.config import compose_train_config, to_plain

    args = argparse.Namespace(method=method, model=model, ngf=64, ndf=64, channels=3, size=64,
                              precision="fp32", fuse=True, channels_last=False)  # fmt: skip
    cfg = load_script("benchmark").train_config(args)
    assert cfg.dataset.name == "shapes"  # whose recipes tune ngf, input_skip and identity
    assert cfg.model.ngf == 64 and cfg.discriminator.ndf == 64
    assert cfg.model.n_blocks == {"resnet6": 6, "resnet9": 9}[model]
    assert not cfg.model.input_skip and not cfg.model.dropout and str(cfg.model.norm) == "instance"
    assert cfg.discriminator.n_layers == 3 and str(cfg.loss.name) == "lsgan"
    assert (cfg.train.lr, cfg.train.beta1) == (2e-4, 0.5)
    if method == "cyclegan":  # the reference's CycleGAN defaults
        assert (cfg.loss.lambda_cycle, cfg.loss.lambda_identity) == (10.0, 0.5)
        assert cfg.train.pool_size == 50
    # exactly what a dataset without any recipe composes to
    plain = compose_train_config([f"method={method}", f"model={model}", "dataset=folder",
                                  "dataset.root=unused", "dataset.crop_size=64"])  # fmt: skip
    for section in ("model", "discriminator", "loss", "method"):
        assert to_plain(getattr(cfg, section)) == to_plain(getattr(plain, section)), section


def test_benchmark_matrix_in_miniature(tmp_path):
    out = tmp_path / "matrix.json"
    result = run_script("benchmark.py", "--matrix", "--model", "resnet6", "--ngf", "4", "--ndf",
                        "4", "--size", "32", "--channels", "3", "--batches", "1", "2", "--steps",
                        "2", "--warmup", "1", "--modes", "fp32", "bf16-cl", "--device", "cpu",
                        "--threads", "1", "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    rows = data["matrix"]
    assert [(r["mode"], r["batch"]) for r in rows] == [
        ("fp32", 1), ("bf16-cl", 1), ("fp32", 2), ("bf16-cl", 2)
    ]  # fmt: skip
    for r in rows:
        assert "error" not in r, r
        assert r["sec_per_iter_median"] > 0 and r["images_per_sec"] > 0 and r["peak_memory_mb"] > 0
    assert data["device"] and data["torch"] == torch.__version__
    lines = result.stdout.splitlines()
    assert lines[1].split()[:2] == ["mode", "batch"] and len(lines) == 2 + len(rows)


def test_bench_conv_prints_floor_for_both_precisions():
    result = run_script("bench_conv.py", *TINY)
    assert result.returncode == 0, result.stderr
    assert "GFLOP per training step" in result.stdout
    rows = [
        line.split() for line in result.stdout.splitlines() if line.startswith(("fp32", "bf16"))
    ]
    assert {row[0] for row in rows} == {"fp32", "bf16"}
    assert all(float(row[-1]) > 0 for row in rows)  # the step floor, in seconds


@pytest.mark.parametrize("m", [2, 4])
def test_winograd_matches_conv2d_forward_and_backward(m):
    winograd = load_script("bench_winograd").Winograd
    torch.manual_seed(0)
    x = torch.randn(2, 6, 2 + 2 * m, 2 + 3 * m, requires_grad=True)
    w = torch.randn(5, 6, 3, 3, requires_grad=True)
    y = winograd.apply(x, w, m, torch.float32)
    expected = F.conv2d(x, w)
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, w), grad)
    want = torch.autograd.grad(expected, (x, w), grad)
    for g, e in zip(got, want, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


def test_bench_winograd_runs():
    result = run_script("bench_winograd.py", "--channels", "8", "--side", "8", "--batches", "1",
                        "--rounds", "1", "--steps", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "F(4,3) fp32" in result.stdout and "oneDNN fp32" in result.stdout


def test_bench_reference_without_a_checkout_is_one_line(tmp_path):
    result = run_script("bench_reference.py", "--reference", str(tmp_path))
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# A stand-in for a pytorch-CycleGAN-and-pix2pix checkout: models/cycle_gan_model.py with the
# reference's CycleGANModel (its options object, set_input, optimize_parameters, the net* and
# loss_* attributes) and the reference's training step, built from gantrans's own networks.
STAND_IN = """
import itertools

import torch

from gantrans.methods.losses import AdversarialLoss
from gantrans.models import build_discriminator, build_generator
from gantrans.models.init import init_weights


class CycleGANModel:
    def __init__(self, opt):
        self.opt = opt
        self.device = torch.device(f"cuda:{opt.gpu_ids[0]}" if opt.gpu_ids else "cpu")
        blocks = {"resnet_6blocks": 6, "resnet_9blocks": 9}[opt.netG]
        gen = {"name": "resnet", "in_channels": opt.input_nc, "out_channels": opt.output_nc,
               "ngf": opt.ngf, "norm": opt.norm, "dropout": not opt.no_dropout, "n_blocks": blocks}
        disc = {"name": "patchgan", "in_channels": opt.output_nc, "ndf": opt.ndf,
                "n_layers": opt.n_layers_D, "norm": opt.norm}
        # wrapped as the reference wraps them on a GPU: state_dict keys start with "module."
        wrap = torch.nn.DataParallel
        self.netG_A, self.netG_B = wrap(build_generator(gen)), wrap(build_generator(gen))
        self.netD_A, self.netD_B = wrap(build_discriminator(disc)), wrap(build_discriminator(disc))
        for net in (self.netG_A, self.netG_B, self.netD_A, self.netD_B):
            init_weights(net, opt.init_type, opt.init_gain)
            net.to(self.device)
        print("initialize network with", opt.init_type)
        self.criterionGAN = AdversarialLoss(opt.gan_mode)
        self.optimizer_G = torch.optim.Adam(
            itertools.chain(self.netG_A.parameters(), self.netG_B.parameters()),
            lr=opt.lr, betas=(opt.beta1, 0.999))
        self.optimizer_D = torch.optim.Adam(
            itertools.chain(self.netD_A.parameters(), self.netD_B.parameters()),
            lr=opt.lr, betas=(opt.beta1, 0.999))

    def set_input(self, input):
        self.real_A = input["A"].to(self.device)
        self.real_B = input["B"].to(self.device)

    def set_requires_grad(self, nets, flag):
        for net in nets:
            for p in net.parameters():
                p.requires_grad = flag

    def backward_D_basic(self, netD, real, fake):
        loss = (self.criterionGAN(netD(real), True)
                + self.criterionGAN(netD(fake.detach()), False)) * 0.5
        loss.backward()
        return loss

    def optimize_parameters(self):
        o = self.opt
        self.fake_B = self.netG_A(self.real_A)
        self.rec_A = self.netG_B(self.fake_B)
        self.fake_A = self.netG_B(self.real_B)
        self.rec_B = self.netG_A(self.fake_A)
        self.set_requires_grad([self.netD_A, self.netD_B], False)
        self.optimizer_G.zero_grad()
        l1 = torch.nn.functional.l1_loss
        self.loss_idt_A = l1(self.netG_A(self.real_B), self.real_B) * o.lambda_B * o.lambda_identity
        self.loss_idt_B = l1(self.netG_B(self.real_A), self.real_A) * o.lambda_A * o.lambda_identity
        self.loss_G_A = self.criterionGAN(self.netD_A(self.fake_B), True)
        self.loss_G_B = self.criterionGAN(self.netD_B(self.fake_A), True)
        self.loss_cycle_A = l1(self.rec_A, self.real_A) * o.lambda_A
        self.loss_cycle_B = l1(self.rec_B, self.real_B) * o.lambda_B
        (self.loss_G_A + self.loss_G_B + self.loss_cycle_A + self.loss_cycle_B
         + self.loss_idt_A + self.loss_idt_B).backward()
        self.optimizer_G.step()
        self.set_requires_grad([self.netD_A, self.netD_B], True)
        self.optimizer_D.zero_grad()
        # the reference's 50-image buffers hand back the newest fakes until they are full
        self.loss_D_A = self.backward_D_basic(self.netD_A, self.real_B, self.fake_B)
        self.loss_D_B = self.backward_D_basic(self.netD_B, self.real_A, self.fake_A)
        self.optimizer_D.step()
"""


def write_stand_in(root: Path) -> Path:
    """A minimal reference checkout at `root`: models/cycle_gan_model.py, the stand-in."""
    (root / "models").mkdir(parents=True)
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "cycle_gan_model.py").write_text(STAND_IN)
    return root


def test_bench_reference_checks_every_contender_against_its_own_tolerance(tmp_path):
    ref = write_stand_in(tmp_path / "reference")
    out = tmp_path / "side_by_side.json"
    result = run_script("bench_reference.py", "--reference", str(ref), "--device", "cpu",
                        "--quick", "--model", "resnet6", "--ngf", "8", "--ndf", "8", "--size", "32",
                        "--channels", "3", "--batch", "2", "--threads", "1", "--scratch", str(tmp_path),
                        "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    contenders = ["plain", "fp32", "bf16", "bf16-cl"]  # the default --contenders
    names = ["reference", *(f"gantrans {c}" for c in contenders)]
    assert list(data["loss_check"]) == names and list(data["results"]) == names
    tolerance = {n: data["loss_check"][n]["tolerance"] for n in names}
    assert tolerance == {"reference": 0.0, "gantrans plain": 1e-4, "gantrans fp32": 1e-3,
                         "gantrans bf16": 0.1, "gantrans bf16-cl": 0.1}  # fmt: skip
    for name in names:
        check = data["loss_check"][name]
        assert check["ok"] and check["relative_difference"] <= check["tolerance"], (name, check)
        assert data["results"][name]["sec_per_iter_median"] > 0
        assert f"losses of the first two steps, {name}:" in result.stderr
    # the reference's layout in fp32 is the reference's arithmetic, to rounding
    assert data["loss_check"]["gantrans plain"]["relative_difference"] < 1e-5
    assert all(f"{name} " in result.stdout for name in names)


def test_bench_tiling_reports_seams_and_times_a_large_image(tmp_path):
    from .conftest import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "seams.json"
    result = run_script("bench_tiling.py", "--ckpt", str(ckpt), "--size", "96x80", "--tile", "48",
                        "--overlap", "8", "--stats-pixels", "4096",
                        "--variants", "0:none:tile,8:smooth:sampled", "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == [
        "whole image", "no overlap", "overlap 8, blend=smooth, tile_stats=sampled"
    ]  # fmt: skip
    for r in rows[1:]:
        assert 0 <= r["mean_inside"] <= r["max_inside"] and 0 <= r["mean_border"] <= r["max_border"]
    out = tmp_path / "large.json"
    result = run_script("bench_tiling.py", "--ckpt", str(ckpt), "--large", "200x150", "--tile", "64",
                        "--overlap", "8", "--workdir", str(tmp_path / "work"), "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    large = json.loads(out.read_text())
    assert large["output_size"] == [200, 150] and large["peak_rss_gb"] > 0


def test_bench_video_reports_speed_and_flicker(tmp_path):
    pytest.importorskip("av")
    from .conftest import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "video.json"
    result = run_script("bench_video.py", "--ckpt", str(ckpt), "--size", "48x32", "--frames", "4",
                        "--smoothing", "0,0.8", "--precision", "fp32", "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["temporal_smoothing"] for r in rows] == [0.0, 0.8]
    assert all(r["frames"] == 4 and r["frames_per_second"] > 0 for r in rows)
    assert rows[1]["output_change_still"] <= rows[0]["output_change_still"]


def test_compare_grid_rows_of_the_same_stems(tmp_path):
    from PIL import Image

    folders = [tmp_path / name for name in ("inputs", "a", "b")]
    for i, folder in enumerate(folders):
        folder.mkdir()
        for stem in ("x1", "x2", "x3"):
            Image.new("L", (16, 16), 40 * i).save(folder / f"{stem}.png")
    (folders[2] / "x3.png").unlink()  # only x1 and x2 are in every folder
    Image.new("L", (24, 24)).save(folders[1] / "x2.png")  # another size is resized
    out = tmp_path / "grid.png"
    result = run_script("compare_grid.py", *map(str, folders), "--n", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "2 images per row; rows: inputs, a, b" in result.stdout
    with Image.open(out) as grid:  # 3 rows of 2 tiles, 16 px enlarged 6x, 2 px padding
        assert grid.size == (2 * 96 + 3 * 2, 3 * 96 + 4 * 2)
    (tmp_path / "empty").mkdir()
    result = run_script("compare_grid.py", str(folders[0]), str(tmp_path / "empty"), "--out",
                        str(out))  # fmt: skip
    assert result.returncode == 2 and "share no file stem" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_spectrum_finds_a_checkerboard_and_a_blur(tmp_path):
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    side = 32
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    checker = ((yy + xx) % 2 * 2 - 1).float()

    def write(folder: Path, images: torch.Tensor) -> None:
        folder.mkdir()
        for i, im in enumerate(images):
            pixels = ((im.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / f"{i}.png")

    def faces(n: int) -> torch.Tensor:  # smooth random images: power falls with frequency
        noise = torch.randn(n, 1, side // 4, side // 4, generator=gen)
        return F.interpolate(noise, size=side, mode="bilinear", align_corners=False)[:, 0] * 0.4

    real, same, fakes = faces(64), faces(64), faces(64)
    write(tmp_path / "real", real)
    write(tmp_path / "same", same)
    write(tmp_path / "checkered", fakes + 0.05 * checker)
    write(tmp_path / "blurred", F.avg_pool2d(fakes[:, None], 3, 1, 1)[:, 0])
    out = tmp_path / "spectrum.json"
    folders = [str(tmp_path / name) for name in ("real", "same", "checkered", "blurred")]
    result = run_script("spectrum.py", *folders, "--json", str(out))
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    same, checkered, blurred = (rows[f] for f in folders[1:])
    assert 0.7 < same["checkerboard"] < 1.4 and 0.7 < same["band 0.250-0.375"] < 1.4
    assert checkered["checkerboard"] > 10 and checkered["rows"] < 3  # one frequency, not a band
    assert blurred["band 0.750-0.875"] < 0.5 and blurred["band 0.000-0.125"] > 0.8
    assert "checkerboard" in result.stdout
    Image.new("L", (16, 16)).save(tmp_path / "same" / "small.png")
    result = run_script("spectrum.py", folders[0], folders[1])
    assert result.returncode == 2 and "one size" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_gpu_check_quick_on_the_cpu_records_every_part(tmp_path):
    from gantrans.methods import METHODS

    out = tmp_path / "check"
    ref = write_stand_in(tmp_path / "reference")
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "gpu_check.py"), "--out", str(out), "--device", "cpu",
         "--quick", "--reference", str(ref), "--budget", "1800"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    summary = json.loads((out / "gpu_check.json").read_text())
    parts = {p["name"]: p for p in summary["parts"]}
    failed = {k: p["reason"] for k, p in parts.items() if p["status"] == "fail"}
    assert result.returncode == 0 and not failed, (failed, result.stdout[-2000:])
    # the most important first: the CUDA tests, the side by side, the matrix, then the modes
    names = list(parts)
    assert names[:4] == ["pytest_cuda", "bench_reference_batch1", "bench_reference_batch8",
                         "benchmark"]  # fmt: skip
    expected = {"pytest_cuda", "resume", "torchrun_1", "torchrun_2", "portable_device_to_cpu",
                "portable_cpu_to_device", "benchmark", "bench_reference_batch1",
                "bench_reference_batch8", "loader"}  # fmt: skip
    expected |= {f"train_{m}_{mode}" for m in METHODS for mode in
                 ("fp32", "bf16", "fp16", "channels_last", "compile")}  # fmt: skip
    assert set(parts) == expected
    for name in ("portable_cpu_to_device", *(f"train_{m}_fp16" for m in METHODS)):
        assert parts[name]["status"] == "skip" and "needs CUDA" in parts[name]["reason"], name
    # the CUDA-marked tests are collected and each skipped with its reason, never silently
    assert parts["pytest_cuda"]["status"] == "skip"
    assert parts["pytest_cuda"]["details"]["counts"].get("skipped", 0) > 0
    assert all("needs a CUDA GPU" in r for r in parts["pytest_cuda"]["details"]["skip_reasons"])
    for name in ("train_cyclegan_fp32", "resume", "torchrun_2", "portable_device_to_cpu", "loader",
                 "bench_reference_batch1", "bench_reference_batch8", "benchmark"):  # fmt: skip
        assert parts[name]["status"] == "pass", (name, parts[name])
    for n in (1, 8):  # every contender with its own loss check, in the JSON and the Markdown
        side = parts[f"bench_reference_batch{n}"]["details"]["result"]
        assert side["config"]["batch"] == n
        assert len(side["loss_check"]) == 5 and all(c["ok"] for c in side["loss_check"].values())
    assert parts["train_cut_fp32"]["details"]["losses_finite"]
    assert parts["resume"]["details"]["compare"]["identical"]
    assert parts["train_cyclegan_fp32"]["peak_rss_mb"] > 0
    md = (out / "gpu_check.md").read_text()
    assert all(f"| {name} |" in md for name in expected)
    assert "## Side by side with the reference, bench_reference_batch8" in md
    assert "| gantrans bf16-cl |" in md and "## Benchmark" in md
    # a folder to copy back whole: the summaries and one archive of every part's output
    assert sorted(f.name for f in out.iterdir()) == [
        "gpu_check.json", "gpu_check.md", "gpu_check_logs.tar.gz"
    ]  # fmt: skip
    with tarfile.open(out / "gpu_check_logs.tar.gz") as tar:
        archived = set(tar.getnames())
    assert {"logs/pytest_cuda.log", "logs/train_cyclegan_fp32.log", "results/benchmark.json",
            "results/bench_reference_batch8.json"} <= archived  # fmt: skip


def test_gpu_check_names_every_missing_module_in_one_line(tmp_path):
    # a machine with PyTorch but not the pure-Python dependencies, as the GPU machines are
    absent = ["hydra", "omegaconf", "antlr4", "torch_fidelity"]
    code = (f"import runpy, sys; sys.modules.update(dict.fromkeys({absent!r})); "
            f"runpy.run_path({str(SCRIPTS / 'gpu_check.py')!r}, run_name='__main__')")  # fmt: skip
    out = tmp_path / "check"
    result = subprocess.run([sys.executable, "-c", code, "--out", str(out), "--device", "cpu"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert ("hydra (hydra-core), omegaconf, antlr4 (antlr4-python3-runtime), torch_fidelity "
            "(torch-fidelity)") in lines[0] and "docs/gpu.md" in lines[0]  # fmt: skip
    assert json.loads((out / "gpu_check.json").read_text())["error"] in lines[0]
    assert not result.stdout  # no part ran


def test_gpu_check_knows_every_declared_dependency():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((SCRIPTS.parent / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower()
                for d in project["dependencies"]}  # fmt: skip
    assert declared <= set(load_script("gpu_check").MODULES.values())


def test_gpu_check_budget_bounds_every_part(tmp_path):
    import argparse
    import time

    gpu_check = load_script("gpu_check")
    args = argparse.Namespace(out=tmp_path, device="cpu", quick=True, budget=100.0,
                              timeout_scale=1.0)  # fmt: skip
    check = gpu_check.Check(args, tmp_path / "work")
    assert check.timeout(10) == 10 and 95 < check.timeout(300) <= 100
    check.deadline = time.monotonic() - 5  # spent: a part that still starts gets a token limit
    assert check.timeout(300) == 1.0
    # end to end: a part started with a second of budget left is stopped then, not at its limit
    out = tmp_path / "check"
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "gpu_check.py"), "--out", str(out), "--device", "cpu",
         "--budget", "1", "--only", "pytest_cuda"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert time.monotonic() - start < 90  # the part's own limit is 240 s
    part = json.loads((out / "gpu_check.json").read_text())["parts"][0]
    assert result.returncode == 1 and part["status"] == "fail", part
    assert part["reason"] == "timed out after 1 s" and part["details"]["limit_s"] == 1


def test_gpu_check_installs_wheels_for_its_processes(tmp_path):
    import zipfile

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "standin-0.1-py3-none-any.whl", "w") as whl:
        whl.writestr("standin/__init__.py", "")
        whl.writestr("tests/__init__.py", "")  # as torch-fidelity's wheel carries
        info = "standin-0.1.dist-info"
        whl.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: standin\nVersion: 0.1\n")
        whl.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        whl.writestr(f"{info}/RECORD", "")
    work = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "gpu_check.py"), "--out", str(tmp_path / "check"),
         "--device", "cpu", "--wheels", str(wheels), "--work", str(work), "--only", "none"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (work / "site" / "standin" / "__init__.py").is_file()
    assert not (work / "site" / "tests").exists()  # it would shadow the project's tests
    # a Python without pip unpacks them instead
    code = (f"import runpy, sys; sys.modules['pip'] = None; "
            f"runpy.run_path({str(SCRIPTS / 'gpu_check.py')!r}, run_name='__main__')")  # fmt: skip
    work = tmp_path / "work_without_pip"
    result = subprocess.run(
        [sys.executable, "-c", code, "--out", str(tmp_path / "check"), "--device", "cpu",
         "--wheels", str(wheels), "--work", str(work), "--only", "none"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (work / "site" / "standin" / "__init__.py").is_file()
    assert not (work / "site" / "tests").exists()
    result = subprocess.run([sys.executable, str(SCRIPTS / "gpu_check.py"), "--out",
                             str(tmp_path / "check"), "--wheels", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode != 0 and "no wheels in" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_gpu_wheels_pins_the_installed_versions():
    from importlib.metadata import version

    result = subprocess.run(["bash", str(SCRIPTS / "gpu_wheels.sh"), "--dry-run", "wheels"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHON": sys.executable})  # fmt: skip
    assert result.returncode == 0, result.stderr
    wheel, download = result.stdout.strip().splitlines()
    assert "pip wheel --no-deps --wheel-dir wheels" in wheel and str(SCRIPTS.parent) in wheel
    assert f"antlr4-python3-runtime=={version('antlr4-python3-runtime')}" in wheel
    assert "pip download --no-deps --only-binary=:all: --dest wheels" in download
    for dist in ("hydra-core", "omegaconf", "torch-fidelity"):
        assert f"{dist}=={version(dist)}" in download
