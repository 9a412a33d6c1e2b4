"""Training and translation speed of one configuration: iterations/s, images/s, peak memory.

Times gantrans's own training step (`gantrans.training.engine.train_step`, the function the loop runs)
of an unpaired method (`--method cyclegan|cut|fastcut`, any registered one) on synthetic batches, so the data pipeline is left out (scripts/bench_data.py measures that),
and the generator's inference speed as `gantrans translate` runs it. On CUDA it also estimates
model FLOP utilisation (FLOPs counted by torch.utils.flop_counter over one step, against the
GPU's datasheet peak); `--flops` adds the same on a CPU, against the faster of a large matmul and
a large convolution timed on the spot.

    python scripts/benchmark.py --model resnet6 --size 64 --channels 1 --batch 1 --precision bf16
    python scripts/benchmark.py --size 64 --channels 1 --no-fuse      # the reference's pass layout
    python scripts/benchmark.py --size 64 --channels 1 --method cut   # CUT's step (fastcut too)
    python scripts/benchmark.py ... --json out.json
    python scripts/benchmark.py --matrix --model resnet9 --size 256 --channels 3 --batches 1 8

`--matrix` times one configuration in several modes (`--modes`, default fp32, bf16,
bf16-cl = bf16 + channels_last, bf16-cl-compile = that + torch.compile) at each of
`--batches`, one row each, and on CUDA gives every row's MFU against the GPU's datasheet dense
bf16 peak (GPU_PEAK_BF16_TFLOPS; `--peak-tflops` for a GPU not in it), whatever the row's own
precision: the question is how much of the GPU the step uses.

`--no-fuse` runs every generator and discriminator call separately, as the reference
implementation (pytorch-CycleGAN-and-pix2pix) does: the same math, the reference's layout.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from gantrans.config import NO_DATASET_RECIPES, TrainConfig, compose_train_config
from gantrans.methods import registry
from gantrans.runtime import DTYPES, autocast, resolve_device
from gantrans.training.engine import TrainState, build_training, train_step

# datasheet dense (no sparsity) bf16 tensor-core TFLOP/s with fp32 accumulation, by a fragment of
# torch.cuda.get_device_name(); the first fragment found in the name wins, so the more specific
# ones come first ("H100 PCIe" before "H100", "L40S" before "L40" before "L4")
GPU_PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0,  # plain "H100 80GB HBM3" is the SXM
    "H200": 989.0, "H800": 989.0, "B200": 2250.0,
    "A100": 312.0, "A800": 312.0, "A10G": 70.0, "A10": 125.0,
    "L40S": 362.0, "L40": 181.0, "L4": 121.0,
    "RTX 6000 Ada": 364.0, "RTX A6000": 155.0, "RTX 4090": 165.0, "RTX 3090": 71.0,
}  # fmt: skip
MATRIX_MODES = {  # name: (precision, channels_last, compile)
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "bf16-cl": ("bf16", True, False),
    "bf16-cl-compile": ("bf16", True, True),
    "bf16-compile": ("bf16", False, True),
    "fp16-cl": ("fp16", True, False),
}


def gpu_peak_bf16(name: str) -> float | None:
    """The datasheet dense bf16 TFLOP/s of a GPU by its name, or None if not in the table."""
    return next((v for k, v in GPU_PEAK_BF16_TFLOPS.items() if k in name), None)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The config `gantrans train` would run with for `--method`, `--model`, `--ngf`, `--ndf`,
    `--channels`, `--size`, `--precision`, `--no-fuse`, `--channels-last`, `--compile` and
    `--set KEY=VALUE` (any further override, applied last): the
    method's paper settings (for CycleGAN the reference's: no input skip, identity 0.5, LSGAN,
    pool 50, Adam 2e-4), the synthetic shapes set's recipes left out."""
    overrides = [
        *NO_DATASET_RECIPES,
        f"method={getattr(args, 'method', 'cyclegan')}",
        f"model={args.model}",
        f"model.ngf={args.ngf}",
        f"discriminator.ndf={args.ndf}",
        f"dataset.channels={args.channels}",
        f"dataset.image_size={args.size}",
        f"precision={args.precision}",
        f"train.fuse_passes={args.fuse}",
        f"train.channels_last={args.channels_last}",
        f"train.compile={getattr(args, 'compile', False)}",
        *(getattr(args, "set", None) or []),
    ]
    return compose_train_config(overrides)


def build(args: argparse.Namespace, dev: torch.device) -> TrainState:
    """The training state exactly as `gantrans train` builds it from `train_config(args)`
    (constant LR), initialised from seed 0."""
    cfg = train_config(args)
    torch.manual_seed(0)
    return build_training(cfg, dev)


def batch(args: argparse.Namespace, dev: torch.device, n: int) -> torch.Tensor:
    x = torch.rand(n, args.channels, args.size, args.size, device=dev) * 2 - 1
    return x.contiguous(memory_format=torch.channels_last) if args.channels_last else x


def device_name(dev: torch.device) -> str:
    """The GPU's name, or the CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line for line in f if line.startswith("model name"))
        return model.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return platform.processor() or "cpu"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device, steps: int) -> list[float]:
    """Seconds each of `steps` calls of `fn` takes, the device synchronised around each."""
    times = []
    for _ in range(steps):
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn, dev: torch.device, steps: int, warmup: int = 3) -> float:
    timed(fn, dev, warmup)
    return statistics.median(timed(fn, dev, steps))


def peak_rates(dev: torch.device, precision: str, steps: int = 10) -> dict[str, float]:
    """FLOP/s of two large, compute-bound kernels in `precision`: the practical peak of `dev`.

    A 2048x2048 matmul and a 256->256 3x3 convolution (batch 8 at 32x32) are timed: on a CPU
    they come from different libraries (the matmul from the BLAS, MKL in torch's x86 wheels;
    the convolution from oneDNN), and neither is always the faster. On AMD EPYC, MKL's fp32
    matmul reached half the rate of oneDNN's convolution, so a matmul alone understated the
    peak and gave utilisations above 100 %.
    """
    dtype = DTYPES[precision]
    n = 2048
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    x = torch.randn(8, 256, 32, 32, device=dev, dtype=dtype)
    w = torch.randn(256, 256, 3, 3, device=dev, dtype=dtype) / 48
    conv_flops = 2 * x.numel() * w[0].numel()  # stride 1, padding 1: output size = input size
    steps = min(steps, 10)
    return {
        "matmul": 2 * n**3 / median_time(lambda: a @ b, dev, steps),
        "conv3x3": conv_flops / median_time(lambda: F.conv2d(x, w, padding=1), dev, steps),
    }


def count_flops(fn) -> float:
    """FLOPs of one call of `fn`, as torch.utils.flop_counter counts them (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def training_step(args: argparse.Namespace, dev: torch.device) -> Callable[[], None]:
    """One call = one step of the loop's own `train_step` on a fixed synthetic batch."""
    st = build(args, dev)
    real = {"A": batch(args, dev, args.batch), "B": batch(args, dev, args.batch)}

    def step() -> None:
        train_step(st, real)

    return step


def time_training(args: argparse.Namespace, dev: torch.device) -> dict:
    step = training_step(args, dev)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    timed(step, dev, args.warmup)  # compiles, autotunes, allocates: counted in the peak
    times = timed(step, dev, args.steps)
    sec = statistics.median(times)
    out = {
        "sec_per_iter_median": sec,
        "sec_per_iter_min": min(times),
        "sec_per_iter_max": max(times),
        "iters_per_sec": 1 / sec,
        "images_per_sec": args.batch / sec,  # per domain: each step takes a batch of A and of B
        "peak_memory_mb": (
            torch.cuda.max_memory_allocated(dev) / 2**20
            if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
    }
    if dev.type == "cuda" or args.flops:
        # the counter sees the operators of an eager step; a compiled one does the same math
        eager = argparse.Namespace(**{**vars(args), "compile": False})
        flops = count_flops(training_step(eager, dev) if args.compile else step)
        out["gflop_per_iter"] = flops / 1e9
        out["achieved_tflops"] = flops / sec / 1e12
        if dev.type == "cuda":
            peak = args.peak_tflops or gpu_peak_bf16(torch.cuda.get_device_name(dev))
            if peak:
                out["peak_bf16_tflops"] = peak
                out["mfu"] = out["achieved_tflops"] / peak
        else:  # no datasheet for CPUs: the peak is the faster of two large kernels measured here
            rates = peak_rates(dev, args.precision)
            out["matmul_tflops"] = rates["matmul"] / 1e12
            out["conv3x3_tflops"] = rates["conv3x3"] / 1e12
            out["measured_peak_tflops"] = max(rates.values()) / 1e12
            out["mfu"] = out["achieved_tflops"] / out["measured_peak_tflops"]
    return out


@torch.inference_mode()
def time_translate(args: argparse.Namespace, dev: torch.device) -> dict:
    net = build(args, dev).method.translator("AtoB").eval()
    x = batch(args, dev, args.translate_batch)

    def infer() -> None:
        with autocast(dev, args.precision):
            net(x)

    timed(infer, dev, args.warmup)
    sec = statistics.median(timed(infer, dev, args.steps))
    return {
        "translate_images_per_sec": args.translate_batch / sec,
        "translate_batch": args.translate_batch,
    }


def run_matrix(args: argparse.Namespace, dev: torch.device) -> list[dict]:
    """One row per (batch, mode): the training step's speed, memory and MFU; a failing mode
    (say, torch.compile without a compiler) is a row with its error, and the others still run."""
    rows = []
    for n in args.batches:
        for mode in args.modes:
            precision, channels_last, compiled = MATRIX_MODES[mode]
            cfg = argparse.Namespace(**{**vars(args), "batch": n, "precision": precision,
                                        "channels_last": channels_last, "compile": compiled})  # fmt: skip
            row: dict = {"mode": mode, "batch": n}
            try:
                row.update(time_training(cfg, dev))
            except Exception as exc:  # recorded in the row, not fatal to the table
                row["error"] = (
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                )
            rows.append(row)
            print(matrix_line(row), flush=True)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def matrix_line(row: dict) -> str:
    if "error" in row:
        return f"{row['mode']:<16} {row['batch']:>5}  failed: {row['error']}"
    mfu = f"{100 * row['mfu']:6.1f} %" if "mfu" in row else "       -"
    return (f"{row['mode']:<16} {row['batch']:>5} {row['sec_per_iter_median']:>9.4f} "
            f"{row['images_per_sec']:>9.1f} {row['peak_memory_mb']:>9.0f} "
            f"{row.get('achieved_tflops', float('nan')):>8.2f} {mfu}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    unpaired = [n for n, s in registry.schemas().items() if s.data == "unpaired"]
    parser.add_argument("--method", default="cyclegan", choices=unpaired)
    parser.add_argument("--model", default="resnet6", help="resnet6 | resnet9 | unet128 | unet256")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument(
        "--no-fuse",
        dest="fuse",
        action="store_false",
        help="separate calls per input, as the reference implementation",
    )
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile both phases")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--translate-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--flops",
        action="store_true",
        help="on the CPU too: FLOPs, and utilisation of the measured peak",
    )
    parser.add_argument("--matrix", action="store_true",
                        help="time --modes at each of --batches (training only)")  # fmt: skip
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16", "bf16-cl", "bf16-cl-compile"],
                        choices=list(MATRIX_MODES))  # fmt: skip
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's dense bf16 TFLOP/s, for one not in the table")  # fmt: skip
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a `gantrans train` override on top (repeatable), e.g. --set model.mask=true",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.matrix:
        name = device_name(dev)
        print(f"{args.method} {args.model} {args.size}x{args.size}x{args.channels} on {name}, "
              f"torch {torch.__version__}")  # fmt: skip
        print(f"{'mode':<16} {'batch':>5} {'s/iter':>9} {'images/s':>9} {'peak MB':>9} "
              f"{'TFLOP/s':>8} {'MFU':>8}")  # fmt: skip
        result = {"config": {k: v for k, v in vars(args).items() if k != "json"},
                  "device": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "matrix": run_matrix(args, dev)}  # fmt: skip
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return
    result = {
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "device": device_name(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **time_training(args, dev),
        **time_translate(args, dev),
    }
    rows = [
        (k, f"{v:.4g}" if isinstance(v, float) else str(v))
        for k, v in result.items()
        if k != "config"
    ]
    width = max(len(k) for k, _ in rows)
    print(" ".join(f"{k}={v}" for k, v in result["config"].items()))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
