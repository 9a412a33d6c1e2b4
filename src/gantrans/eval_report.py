"""The evaluation report: every number as JSON, tables and sample grids as Markdown, a summary."""

from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import save_image

from gantrans.reporting import cycle_grid

JSON_NAME = "evaluation.json"
MD_NAME = "evaluation.md"
GRID_NAME = "samples_{direction}.png"
DIRECTIONS = (("AtoB", "A", "B"), ("BtoA", "B", "A"))

FEATURE_NOTES = {
    "inception": "Inception-v3 pool3 features (torch-fidelity's weights, as in published FID/KID)",
    "classifier": (
        "features of our own domain classifier (penultimate layer): comparable between "
        "checkpoints evaluated the same way, NOT to published FID/KID"
    ),
}


def _finite(obj: Any) -> Any:
    """JSON has no inf or nan: write them as null (PSNR of identical images is infinite)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _write_text(path: Path, text: str) -> None:
    """Write a text file atomically (a temporary file renamed over `path`)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _num(value: float | None, fmt: str = ".3f", scale: float = 1.0, suffix: str = "") -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    return f"{value * scale:{fmt}}{suffix}"


def _pct(value: float | None) -> str:
    return _num(value, ".1f", 100, "%")


def save_grids(
    out_dir: Path, images: dict[str, dict[str, torch.Tensor]], num_samples: int
) -> dict[str, str]:
    """Save input / translation / reconstruction grids per direction; returns the file names."""
    names = {}
    for direction, imgs in images.items():
        k = min(num_samples, len(imgs["real"]))
        grid = cycle_grid(imgs["real"][:k], imgs["fake"][:k], imgs["rec"][:k])  # (3, H, W) [0, 1]
        names[direction] = GRID_NAME.format(direction=direction)
        save_image(grid, out_dir / names[direction])
    return names


def markdown(report: dict[str, Any]) -> str:
    """The human report: settings, three tables of numbers, the sample grids, how to read them."""
    m, s = report["metrics"], report["settings"]
    clf = s["domain_classifier"]
    ckpt = report["checkpoint"]
    lines = [
        "# Evaluation",
        "",
        f"- checkpoint: `{ckpt['path']}` (step {ckpt['step']}, epoch {ckpt['epoch']})",
        f"- dataset: `{report['dataset'].get('name')}`, test images: "
        f"{s['test_images']['A']} A, {s['test_images']['B']} B",
        f"- FID/KID features: **{s['features']}**: {FEATURE_NOTES[s['features']]}",
        f"- domain classifier: {_pct(clf.get('test_acc'))} accuracy on the real test images "
        f"(trained on {clf['train_images']['A']} + {clf['train_images']['B']} real training "
        f"images, {'loaded from cache' if clf.get('cached') else 'trained now'})",
        f"- seed {s['seed']}, KID subsets {s['kid_subsets']} of {s['kid_subset_size']}, "
        f"gantrans {report['gantrans_version']}, {report.get('created', '')}",
        "",
        "## Distribution: do translations look like the target domain?",
        "",
        "| direction | FID ↓ | KID ↓ | classified as target ↑ | C2ST accuracy (0.5 best) "
        "| C2ST p-value |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for d, _, tgt in DIRECTIONS:
        c2st = (
            f"{_pct(m.get(f'c2st_acc_{d}'))} ± {_pct(m.get(f'c2st_stderr_{d}'))}"
            if f"c2st_acc_{d}" in m
            else "-"
        )
        lines.append(
            f"| {d} | {_num(m[f'fid_{d}'], '.2f')} | {_num(m[f'kid_{d}'], '.4g')} ± "
            f"{_num(m[f'kid_std_{d}'], '.2g')} | {_pct(m[f'domain_acc_{d}'])} as {tgt} "
            f"| {c2st} | {_num(m.get(f'c2st_pvalue_{d}'), '.3g')} |"
        )
    lines += [
        "",
        "## Content: cycle reconstruction",
        "",
        "| cycle | L1 ↓ | PSNR (dB) ↑ | SSIM ↑ |",
        "| --- | ---: | ---: | ---: |",
    ]
    for _, src, tgt in DIRECTIONS:
        lines.append(
            f"| {src} → {tgt} → {src} | {_num(m[f'cycle_l1_{src}'], '.4f')} "
            f"| {_num(m[f'cycle_psnr_{src}'], '.2f')} | {_num(m[f'cycle_ssim_{src}'], '.4f')} |"
        )
    if "truth_psnr_AtoB" in m:
        lines += [
            "",
            "## Shapes: distance to the true translation",
            "",
            "The untranslated input is the baseline: a useful translation beats it.",
            "",
            "| direction | PSNR ↑ | input PSNR | SSIM ↑ | input SSIM | L1 ↓ | input L1 "
            "| shape change ↑ | shape IoU ↑ | input shape IoU |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for d, _, _ in DIRECTIONS:
            lines.append(
                f"| {d} | {_num(m[f'truth_psnr_{d}'], '.2f')} "
                f"| {_num(m[f'input_truth_psnr_{d}'], '.2f')} | {_num(m[f'truth_ssim_{d}'], '.4f')} "
                f"| {_num(m[f'input_truth_ssim_{d}'], '.4f')} | {_num(m[f'truth_l1_{d}'], '.4f')} "
                f"| {_num(m[f'input_truth_l1_{d}'], '.4f')} | {_num(m[f'shape_change_{d}'], '.3f')} "
                f"| {_num(m[f'shape_iou_{d}'], '.3f')} | {_num(m[f'input_shape_iou_{d}'], '.3f')} |"
            )
    lines += ["", "## Samples", "", "Rows: input, translation, reconstruction.", ""]
    for d, name in report.get("grids", {}).items():
        lines += [f"### {d}", "", f"![{d}]({name})", ""]
    lines += [
        "## How to read this",
        "",
        "- **FID / KID**: distance between the feature statistics of the translations and of the "
        "real test images of the target domain; 0 = same distribution. KID is unbiased for "
        "small sets; FID on a few hundred images is biased upwards.",
        "- **classified as target**: share of translations that a CNN trained on real training "
        "images puts in the target domain; read it next to that classifier's own test accuracy.",
        "- **C2ST** (classifier two-sample test, Lopez-Paz & Oquab 2017): a fresh CNN learns real "
        "versus translated on half of the images and is scored on the other half; 50% = it "
        "cannot tell them apart. A small p-value (one-sided binomial test against 50%) means "
        "the translations are detectably different from real images.",
        "- **cycle**: how well the input survives a round trip (L1 on the [-1, 1] scale).",
        "",
    ]
    return "\n".join(lines)


def summary(report: dict[str, Any]) -> list[str]:
    """A few console lines: the main numbers per direction."""
    m, s = report["metrics"], report["settings"]
    lines = []
    for d, src, tgt in DIRECTIONS:
        parts = [
            f"FID {_num(m[f'fid_{d}'], '.2f')}",
            f"KID {_num(m[f'kid_{d}'], '.4g')}",
            f"{_pct(m[f'domain_acc_{d}'])} classified {tgt}",
        ]
        if f"c2st_acc_{d}" in m:
            parts.append(
                f"C2ST {_pct(m[f'c2st_acc_{d}'])} (p={_num(m[f'c2st_pvalue_{d}'], '.2g')})"
            )
        parts.append(f"cycle PSNR {_num(m[f'cycle_psnr_{src}'], '.1f')} dB")
        if f"truth_psnr_{d}" in m:
            parts.append(
                f"truth PSNR {_num(m[f'truth_psnr_{d}'], '.1f')} dB "
                f"(input {_num(m[f'input_truth_psnr_{d}'], '.1f')})"
            )
        lines.append(f"{d}: " + ", ".join(parts))
    clf = s["domain_classifier"]
    lines.append(
        f"features: {s['features']}; domain classifier {_pct(clf.get('test_acc'))} on real "
        f"test images; {s['test_images']['A']} + {s['test_images']['B']} test images"
    )
    return lines


def write(
    out_dir: Path,
    report: dict[str, Any],
    images: dict[str, dict[str, torch.Tensor]],
    num_samples: int,
) -> None:
    """Write evaluation.json, evaluation.md and the sample grids into `out_dir` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["settings"]["feature_note"] = FEATURE_NOTES[report["settings"]["features"]]
    report["grids"] = save_grids(out_dir, images, num_samples)
    text = json.dumps(_finite(report), indent=2, allow_nan=False, default=str)
    _write_text(out_dir / JSON_NAME, text + "\n")
    _write_text(out_dir / MD_NAME, markdown(report))
