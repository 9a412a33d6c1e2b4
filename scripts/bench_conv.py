"""How fast can a training step be on this machine? The convolution floor of one step.

A CycleGAN step is almost all convolution: forward and backward of the generators' residual
blocks (ngf*4 channels, 3x3, at a quarter of the image size). This script counts the FLOPs of
one gantrans training step (torch.utils.flop_counter), times that convolution alone, forward
and forward+backward at the step's batch sizes, in fp32 and bf16, and divides: the result is
the step time if everything that is not a convolution were free and every convolution ran as
fast as this one. It also times a large square matrix product, the fastest this machine
multiplies in each precision: the step's FLOPs at that rate are a floor that no implementation
of the same arithmetic can beat.

    python scripts/bench_conv.py --size 64 --channels 1 --batch 1
"""

from __future__ import annotations

import argparse

import torch
from benchmark import batch, build, count_flops, device_name, matmul_rate, median_time

from gantrans.runtime import DTYPES, resolve_device
from gantrans.train import _train_step


def step_flops(args: argparse.Namespace, dev: torch.device) -> float:
    cfg = argparse.Namespace(**vars(args), precision="fp32", fuse=True, channels_last=False)
    st, objective = build(cfg, dev)
    pairs = objective.pairs(st.net)
    real_A, real_B = batch(cfg, dev, args.batch), batch(cfg, dev, args.batch)
    return count_flops(
        lambda: _train_step(st, objective, pairs, real_A, real_B, dev, "fp32", critic_steps=1)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet6")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    dev = resolve_device(args.device)
    flops = step_flops(args, dev)
    width, side = args.ngf * 4, args.size // 4
    print(f"{args.model} {args.size}x{args.size}x{args.channels} batch {args.batch}: "
          f"{flops / 1e9:.1f} GFLOP per training step; {device_name(dev)}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"{width}->{width} 3x3 conv at {side}x{side}, the residual blocks' convolution:")
    print(f"{'precision':<10}{'batch':>6}{'fwd GFLOP/s':>13}{'fwd+bwd GFLOP/s':>17}"
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
            print(f"{precision:<10}{n:>6}{conv_flops / fwd / 1e9:>13.0f}{rate / 1e9:>17.0f}"
                  f"{flops / rate:>16.3g}")  # fmt: skip
        peak = matmul_rate(dev, precision, args.steps)
        print(f"{precision:<10}{'2048² matmul':>19}{peak / 1e9:>17.0f}{flops / peak:>16.3g}")


if __name__ == "__main__":
    main()
