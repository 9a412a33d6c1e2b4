"""The benchmark scripts run, write what they promise, and measure the right arithmetic."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
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


def test_gpu_check_quick_on_the_cpu_records_every_part(tmp_path):
    from gantrans.methods import METHODS

    out = tmp_path / "check"
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "gpu_check.py"), "--out", str(out), "--device", "cpu",
         "--quick"], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    summary = json.loads((out / "gpu_check.json").read_text())
    parts = {p["name"]: p for p in summary["parts"]}
    failed = {k: p["reason"] for k, p in parts.items() if p["status"] == "fail"}
    assert result.returncode == 0 and not failed, (failed, result.stdout[-2000:])
    expected = {"pytest_cuda", "resume", "torchrun_1", "torchrun_2", "portable_device_to_cpu",
                "portable_cpu_to_device", "benchmark", "bench_reference", "loader"}  # fmt: skip
    expected |= {f"train_{m}_{mode}" for m in METHODS for mode in
                 ("fp32", "bf16", "fp16", "channels_last", "compile")}  # fmt: skip
    assert set(parts) == expected
    for name in (
        "portable_cpu_to_device",
        "bench_reference",
        *(f"train_{m}_fp16" for m in METHODS),
    ):
        assert parts[name]["status"] == "skip" and "needs CUDA" in parts[name]["reason"], name
    # the CUDA-marked tests are collected and each skipped with its reason, never silently
    assert parts["pytest_cuda"]["status"] == "skip"
    assert parts["pytest_cuda"]["details"]["counts"].get("skipped", 0) > 0
    assert all("needs a CUDA GPU" in r for r in parts["pytest_cuda"]["details"]["skip_reasons"])
    for name in ("train_cyclegan_fp32", "resume", "torchrun_2", "portable_device_to_cpu", "loader"):
        assert parts[name]["status"] == "pass", (name, parts[name])
    assert parts["train_cut_fp32"]["details"]["losses_finite"]
    assert parts["resume"]["details"]["compare"]["identical"]
    assert parts["train_cyclegan_fp32"]["peak_rss_mb"] > 0
    md = (out / "gpu_check.md").read_text()
    assert all(f"| {name} |" in md for name in expected)
