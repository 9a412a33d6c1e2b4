"""Would Winograd convolution beat oneDNN here? Times F(2x2,3x3) and F(4x4,3x3) against conv2d.

Winograd's algorithm computes a 3x3 convolution with 2.25x (F(2,3)) or 4x (F(4,3)) fewer
multiplications. It is the one way to cut the FLOPs of a CycleGAN step without changing what it
computes. This script implements it in PyTorch (tile transforms as small matrix products, the
channel mixing as one batched matmul per transform position, a hand-written backward) for the
residual blocks' convolution, checks forward and both gradients against float64, and times
forward+backward against torch's own conv2d at the batch sizes a training step uses,
interleaving the methods round by round.

    python scripts/bench_winograd.py --channels 256 --side 16
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from benchmark import timed

_TRANSFORMS = {  # B^T, G, A^T of Lavin & Gray (2016) for F(2x2,3x3) and F(4x4,3x3)
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}  # fmt: skip


def transforms(m: int) -> tuple[torch.Tensor, ...]:
    """2-D transforms as Kronecker products: input (a²xa²), weight (a²x9), output (m²xa²)."""
    return tuple(torch.kron(t, t).float() for t in map(torch.tensor, _TRANSFORMS[m]))


class Winograd(torch.autograd.Function):
    """conv2d(x, w) without padding, stride 1, for (H-2) and (W-2) divisible by m."""

    @staticmethod
    def forward(ctx, x, w, m, mul_dtype):
        kb, kg, ka = transforms(m)
        n, c, hp, wp = x.shape
        o, a = w.shape[0], m + 2
        th, tw = (hp - 2) // m, (wp - 2) // m
        t = n * th * tw
        tiles = x.unfold(2, a, m).unfold(3, a, m).permute(4, 5, 1, 0, 2, 3).reshape(a * a, c * t)
        v = (kb @ tiles).view(a * a, c, t).to(mul_dtype)
        u = (kg @ w.permute(2, 3, 1, 0).reshape(9, c * o)).view(a * a, c, o).to(mul_dtype)
        prod = torch.bmm(u.transpose(1, 2), v).float()  # (a², o, t): channels mixed per position
        y = (ka @ prod.view(a * a, o * t)).view(m, m, o, n, th, tw)
        ctx.save_for_backward(v, u)
        ctx.dims = (n, c, hp, wp, o, m, th, tw)
        return y.permute(3, 2, 4, 0, 5, 1).reshape(n, o, hp - 2, wp - 2)

    @staticmethod
    def backward(ctx, grad_y):
        v, u = ctx.saved_tensors
        n, c, hp, wp, o, m, th, tw = ctx.dims
        kb, kg, ka = transforms(m)
        a, t = m + 2, n * th * tw
        gy = grad_y.reshape(n, o, th, m, tw, m).permute(3, 5, 1, 0, 2, 4).reshape(m * m, o * t)
        gprod = (ka.t() @ gy).view(a * a, o, t).to(u.dtype)
        gv = torch.bmm(u, gprod).float().view(a * a, c * t)
        gtiles = (kb.t() @ gv).view(a, a, c, n, th * tw).permute(3, 2, 0, 1, 4)
        gx = F.fold(gtiles.reshape(n, c * a * a, th * tw), (hp, wp), a, stride=m)
        gu = torch.bmm(v, gprod.transpose(1, 2)).float().view(a * a, c * o)
        gw = (kg.t() @ gu).view(3, 3, c, o).permute(3, 2, 0, 1)
        return gx, gw, None, None


def rel_error(got: torch.Tensor, exact: torch.Tensor) -> float:
    return ((got.double() - exact).abs().max() / exact.abs().max()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--side", type=int, default=16, help="output height and width")
    parser.add_argument("--batches", default="1,2,3")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="steps per method and round")
    args = parser.parse_args()
    dev = torch.device("cpu")
    c, side = args.channels, args.side
    torch.manual_seed(0)
    print(f"{c}->{c} 3x3 conv at {side}x{side}, forward+backward; {torch.get_num_threads()} "
          "threads. error: largest deviation of y, dx, dw from float64, relative to its largest "
          "value")  # fmt: skip
    print(f"{'batch':>5}  {'method':<16}{'ms':>8}{'error':>10}")
    for n in map(int, args.batches.split(",")):
        x64 = torch.randn(n, c, side + 2, side + 2, dtype=torch.float64, requires_grad=True)
        w64 = (torch.randn(c, c, 3, 3, dtype=torch.float64) / (3 * c**0.5)).requires_grad_()
        y64 = F.conv2d(x64, w64)
        g64 = torch.randn_like(y64)
        exact = (y64, *torch.autograd.grad(y64, (x64, w64), g64))
        methods = {
            "oneDNN fp32": (torch.float32, lambda x, w: F.conv2d(x, w)),
            "oneDNN bf16": (torch.bfloat16, lambda x, w: F.conv2d(x, w)),
        }
        for m in (2, 4):
            for name, mul in (("fp32", torch.float32), ("bf16 mul", torch.bfloat16)):
                methods[f"F({m},3) {name}"] = (
                    torch.float32,
                    lambda x, w, m=m, mul=mul: Winograd.apply(x, w, m, mul),
                )
        steps, errors = {}, {}
        for name, (dtype, conv) in methods.items():
            x = x64.detach().to(dtype).requires_grad_()
            w = w64.detach().to(dtype).requires_grad_()
            g = g64.to(dtype)
            y = conv(x, w)
            got = (y, *torch.autograd.grad(y, (x, w), g))
            errors[name] = max(rel_error(p, q) for p, q in zip(got, exact, strict=True))

            def step(conv=conv, x=x, w=w, g=g) -> None:
                torch.autograd.grad(conv(x, w), (x, w), g)

            steps[name] = step
            timed(step, dev, 3)  # warm-up
        times = {name: [] for name in methods}
        for _ in range(args.rounds):  # interleaved, so a change of machine load hits every method
            for name, step in steps.items():
                times[name] += timed(step, dev, args.steps)
        for name in methods:
            ms = 1e3 * statistics.median(times[name])
            print(f"{n:>5}  {name:<16}{ms:>8.2f}{errors[name]:>10.1e}")


if __name__ == "__main__":
    main()
