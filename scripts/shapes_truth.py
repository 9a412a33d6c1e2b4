"""How close a checkpoint's translations on the shapes test set are to the ground truth.

The shapes dataset knows every image's counterpart (the same colour, place and size drawn as
the other shape), so a translation can be scored directly: PSNR and mean absolute error of
G_A(circle) against the true square, and of G_B(square) against the true circle, next to the
same numbers for the untranslated input (the score of doing nothing), and `shape_change`: the
share of the needed change achieved where the two shapes differ.

    python scripts/shapes_truth.py runs/shapes/<date>/checkpoints/latest.pt
"""

from __future__ import annotations

import argparse
import json

import torch

from gantrans.checkpoint import load_checkpoint
from gantrans.data import build_domains
from gantrans.metrics import shape_change, shape_iou
from gantrans.translate import load_generator


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of (N, C, H, W) images in [-1, 1] (peak-to-peak 2)."""
    mse = ((x - y) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(4.0 / mse)


@torch.no_grad()
def score(ckpt_path: str, limit: int | None = None) -> dict:
    config = load_checkpoint(ckpt_path)["config"]
    dataset = config["dataset"]
    if dataset["name"] != "shapes":
        raise SystemExit(f"{ckpt_path} was not trained on dataset=shapes")
    test_A, test_B = build_domains(dataset, "test", dataset["channels"])
    out = {}
    for direction, domain in (("AtoB", test_A), ("BtoA", test_B)):
        net, _ = load_generator(ckpt_path, direction, torch.device("cpu"))
        n = len(domain) if limit is None else min(limit, len(domain))
        real = torch.stack([domain.load(i) for i in range(n)])
        truth = torch.stack([domain.counterpart(i) for i in range(n)])
        fake = torch.cat([net(real[i : i + 50]) for i in range(0, n, 50)])
        out[direction] = {
            "psnr": psnr(fake, truth).mean().item(),
            "l1": (fake - truth).abs().mean().item(),
            "psnr_identity": psnr(real, truth).mean().item(),
            "l1_identity": (real - truth).abs().mean().item(),
            "shape_change": shape_change(real, fake, truth).mean().item(),
            "shape_iou": shape_iou(fake, truth).mean().item(),
            "shape_iou_identity": shape_iou(real, truth).mean().item(),
            "images": n,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument(
        "--limit", type=int, default=None, help="score only the first N test images"
    )
    args = parser.parse_args()
    print(json.dumps(score(args.ckpt, args.limit), indent=2))


if __name__ == "__main__":
    main()
