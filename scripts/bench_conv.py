"""How fast can a training step be on this machine? The convolution floor of one step.

A CycleGAN step is almost all convolution: forward and backward of the generators' residual
blocks (ngf*4 channels, 3x3, at a quarter of the image size). This script

1. counts the FLOPs of one gantrans training step (torch.utils.flop_counter);
2. times the residual blocks' convolution alone, forward and forward+backward, at the step's
   batch sizes, in fp32 and bf16: the step time if every FLOP ran at that rate;
3. times two large compute-bound kernels, a matmul and a convolution, the fastest this machine
   multiplies in each precision: the step's FLOPs at that rate are a floor no implementation of
   the same arithmetic can beat;
4. profiles real training steps and splits their time into the residual blocks' convolutions,
   the other convolutions, and everything else. With `--reference-seconds S` it also prints the
   step time a speed-up of 1.5x and 3x over S allows, and what the residual convolutions leave
   of it.

    python scripts/bench_conv.py --size 64 --channels 1 --batch 1 --reference-seconds 0.346
"""

from __future__ import annotations

import argparse

import torch
from benchmark import count_flops, device_name, median_time, peak_rates, training_step
from torch.profiler import ProfilerActivity, profile

from gantrans.runtime import DTYPES, resolve_device

CONV_OPS = {  # profiler op name: position of the weight among its inputs
    "aten::mkldnn_convolution": 1,
    "aten::convolution_backward": 2,
    "aten::_slow_conv2d_forward": 1,
}


def default_step(args: argparse.Namespace, dev: torch.device, precision: str):
    """gantrans's default training step (fused, eager, NCHW) in `precision`."""
    cfg = argparse.Namespace(**vars(args), precision=precision, fuse=True, channels_last=False,
                             compile=False)  # fmt: skip
    return training_step(cfg, dev)


def step_breakdown(step, width: int, steps: int) -> dict[str, float]:
    """Seconds per step in the residual convolutions, the other convolutions and the rest.

    Self times from torch.profiler, by operator and input shapes: a convolution whose weight is
    (width, width, 3, 3) belongs to a residual block.
    """
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    split = {"residual_conv": 0.0, "other_conv": 0.0, "rest": 0.0}
    for row in prof.key_averages(group_by_input_shape=True):
        seconds = row.self_cpu_time_total / 1e6 / steps
        where = CONV_OPS.get(row.key)
        if where is None:
            split["rest"] += seconds
            continue
        shapes = row.input_shapes or []
        weight = shapes[where] if len(shapes) > where else None
        residual = weight is not None and list(weight) == [width, width, 3, 3]
        split["residual_conv" if residual else "other_conv"] += seconds
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet6")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--profile-steps", type=int, default=4)
    parser.add_argument("--reference-seconds", type=float, default=None,
                        help="the reference's s/iteration, measured by bench_reference.py")  # fmt: skip
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    dev = resolve_device(args.device)
    steps = {precision: default_step(args, dev, precision) for precision in ("fp32", "bf16")}
    flops = count_flops(steps["fp32"])
    width, side = args.ngf * 4, args.size // 4
    print(f"{args.model} {args.size}x{args.size}x{args.channels} batch {args.batch}: "
          f"{flops / 1e9:.1f} GFLOP per training step; {device_name(dev)}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"{width}->{width} 3x3 conv at {side}x{side}, the residual blocks' convolution, and "
          "two large kernels (the machine's peak):")  # fmt: skip
    print(f"{'precision':<10}{'kernel':>19}{'fwd GFLOP/s':>13}{'fwd+bwd GFLOP/s':>17}"
          f"{'step floor (s)':>16}")  # fmt: skip
    for precision in ("fp32", "bf16"):
        for n in sorted({args.batch, 2 * args.batch, 3 * args.batch}):
            conv = torch.nn.Conv2d(width, width, 3, padding=1).to(dev, DTYPES[precision])
            x = torch.randn(n, width, side, side, device=dev, dtype=DTYPES[precision])
            x.requires_grad_(True)
            grad = torch.randn_like(conv(x))
            conv_flops = 2 * width * width * 9 * side * side * n
            fwd = median_time(lambda c=conv, x=x: c(x), dev, args.steps)
            both = median_time(lambda c=conv, x=x, g=grad: c(x).backward(g), dev, args.steps)
            rate = 3 * conv_flops / both  # backward = grad input + grad weight = 2x forward
            print(f"{precision:<10}{f'residual, batch {n}':>19}{conv_flops / fwd / 1e9:>13.0f}"
                  f"{rate / 1e9:>17.0f}{flops / rate:>16.3g}")  # fmt: skip
        for kernel, rate in peak_rates(dev, precision, args.steps).items():
            name = {"matmul": "2048² matmul", "conv3x3": "256² 3x3 conv"}[kernel]
            print(f"{precision:<10}{name:>19}{rate / 1e9:>13.0f}{'':>17}{flops / rate:>16.3g}")

    if dev.type != "cpu":
        return
    print(f"\nwhere a real step's time goes (torch.profiler, {args.profile_steps} steps; the "
          "profiler adds a little):")  # fmt: skip
    print(f"{'precision':<10}{'step (s)':>10}{'residual conv':>15}{'other conv':>12}"
          f"{'the rest':>10}")  # fmt: skip
    residual = {}
    for precision, step in steps.items():
        split = step_breakdown(step, width, args.profile_steps)
        total = sum(split.values())
        print(f"{precision:<10}{total:>10.3f}{split['residual_conv']:>15.3f}"
              f"{split['other_conv']:>12.3f}{split['rest']:>10.3f}")  # fmt: skip
        residual[precision] = split["residual_conv"]
    if args.reference_seconds:
        print(f"\nagainst the reference's {args.reference_seconds:.3f} s per step:")
        for precision, speedup in (("fp32", 1.5), ("bf16", 3.0)):
            allowed = args.reference_seconds / speedup
            left = allowed - residual[precision]
            print(f"{precision}: {speedup}x allows {allowed:.3f} s per step; the residual "
                  f"convolutions alone take {residual[precision]:.3f} s, leaving {left:.3f} s "
                  "for everything else")  # fmt: skip


if __name__ == "__main__":
    main()
