"""How far a judge's figure on generated images moves with the images the judge learned from.

Trains the panel of judges (gantrans.evaluation.judges: one per architecture) several times, each time on
another random share of the real training images (``--fraction`` of each domain, drawn anew
per draw), and scores the same folder of translations with every panel, as
`gantrans evaluate translations=DIR` does. Reports per draw each judge's balanced accuracy on
the real test images and its share of translations classified as the target, then per
architecture the range of that share over the draws, and the range of the panel's mean:

    python scripts/judge_stability.py dataset=smiles direction=AtoB translations=DIR \\
        --draws 3 --fraction 0.8 --out stability.json

Arguments of the form key=value are `gantrans evaluate` overrides (dataset, direction,
translations, dataset.root, judge_epochs, judge_patience, max_images, device, ...). The judges
trained here are not cached; the judges `gantrans evaluate` uses are not touched.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from gantrans.config import compose_config
from gantrans.data import build_domains
from gantrans.errors import GantransError
from gantrans.evaluation import judges
from gantrans.evaluation.evaluate import read_translations, resolve_dataset
from gantrans.evaluation.evaluator import JUDGE_SEEDS, LABEL, Evaluator, EvaluatorOptions
from gantrans.evaluation.images import load_images
from gantrans.runtime import resolve_device


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=3, help="panels, each on another subset")
    parser.add_argument(
        "--fraction", type=float, default=0.8, help="share of each domain's training images"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the subsets' draws")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args, overrides = parser.parse_known_args(argv)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        parser.error(f"unknown argument(s): {' '.join(bad)}")
    if args.draws < 1 or not 0 < args.fraction <= 1:
        parser.error("--draws must be >= 1 and --fraction in (0, 1]")
    return args, overrides


def subset(labels: torch.Tensor, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """Indices of a random `fraction` of each class's samples (at least two per class)."""
    keep = []
    for k in (0, 1):
        idx = torch.nonzero(labels == k).flatten()
        n = max(2, round(fraction * len(idx)))
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:n]])
    return torch.cat(keep)


def panel_on(
    images: torch.Tensor, labels: torch.Tensor, cfg: DictConfig, device: torch.device
) -> list[judges.Judge]:
    """One judge per architecture, trained on `images` with the evaluation's seeds."""
    return [
        judges.train_judge(
            images,
            labels,
            arch=arch,
            seed=seed,
            device=device,
            max_epochs=cfg.judge_epochs,
            patience=cfg.judge_patience,
            progress=cfg.progress,
            desc=f"judge ({arch})",
        )  # fmt: skip
        for arch, seed in zip(judges.ARCHS, JUDGE_SEEDS, strict=True)
    ]


def measure(args: argparse.Namespace, cfg: DictConfig) -> dict:
    """Every draw's judges and figures, and the ranges over the draws."""
    if cfg.translations is None or cfg.direction is None:
        raise GantransError("pass translations=DIR and direction=AtoB|BtoA")
    device = resolve_device(cfg.device)
    dataset = resolve_dataset(None, cfg)
    channels = int(dataset.get("channels", 3))
    train_a, train_b = build_domains({**dataset, "balance": False}, "train", channels)
    side = judges.MAX_INPUT
    xa = load_images(train_a, cfg.judge_max_images, "train A", cfg.progress, side)
    xb = load_images(train_b, cfg.judge_max_images, "train B", cfg.progress, side)
    images, labels = torch.cat([xa, xb]), torch.tensor([0] * len(xa) + [1] * len(xb))
    target = LABEL[cfg.direction[-1]]
    gen = torch.Generator().manual_seed(args.seed)
    draws = []
    fake = names = None
    for draw in range(args.draws):
        t0 = time.perf_counter()
        idx = subset(labels, args.fraction, gen)
        panel = panel_on(images[idx], labels[idx], cfg, device)
        options = EvaluatorOptions(
            features="classifier", max_images=cfg.max_images, seed=cfg.seed, c2st=False,
            controls=False, judge_set=panel, batch_size=cfg.batch_size, progress=cfg.progress,
        )  # fmt: skip
        evaluator = Evaluator(dataset, channels, device, options)
        if fake is None:
            fake, names, _ = read_translations(
                Path(cfg.translations), evaluator, cfg.direction, None, cfg.progress
            )
        rates = [j.target_rate(fake, target) for j in panel]
        draws.append(
            {
                "draw": draw,
                "train_images": [int((labels[idx] == k).sum()) for k in (0, 1)],
                "judges": [
                    {
                        "arch": j.info["arch"]["arch"],
                        "test_balanced_acc": info["test_balanced_acc"],
                        "domain_acc": rate,
                    }
                    for j, info, rate in zip(panel, evaluator.judge_info, rates, strict=True)
                ],
                "panel_domain_acc": sum(rates) / len(rates),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(format_draw(draws[-1]), flush=True)
    by_arch = {
        arch: [d["judges"][k]["domain_acc"] for d in draws] for k, arch in enumerate(judges.ARCHS)
    }
    means = [d["panel_domain_acc"] for d in draws]
    return {
        "translations": str(Path(cfg.translations).resolve()),
        "images": len(names or []),
        "direction": cfg.direction,
        "fraction": args.fraction,
        "draws": draws,
        "range_by_judge": {a: max(v) - min(v) for a, v in by_arch.items()},
        "range_of_panel_mean": max(means) - min(means),
    }


def format_draw(draw: dict) -> str:
    judges_text = ", ".join(
        f"{j['arch']} {100 * j['domain_acc']:.1f}% (real {100 * j['test_balanced_acc']:.1f}%)"
        for j in draw["judges"]
    )
    return (
        f"draw {draw['draw']}: {judges_text}; panel mean {100 * draw['panel_domain_acc']:.1f}% "
        f"({draw['seconds']:.0f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse(sys.argv[1:] if argv is None else argv)
    try:
        cfg = compose_config("evaluate", overrides)
        result = measure(args, cfg)
    except GantransError as exc:
        print(f"judge_stability: error: {exc}", file=sys.stderr)
        return 2
    ranges = ", ".join(f"{a} {100 * r:.1f}" for a, r in result["range_by_judge"].items())
    print(f"range over {args.draws} draws (points): {ranges}; panel mean "
          f"{100 * result['range_of_panel_mean']:.1f}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
