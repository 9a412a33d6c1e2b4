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

from gantrans.evaluation.names import DIRECTIONS
from gantrans.training.reporting import image_rows

JSON_NAME = "evaluation.json"
MD_NAME = "evaluation.md"
GRID_NAME = "samples_{direction}.png"

FEATURE_NOTES = {
    "inception": "Inception-v3 pool3 features (torch-fidelity's weights, as in published FID/KID)",
    "classifier": (
        "features of our own judge (its penultimate layer): comparable between evaluations of "
        "the same dataset, NOT to published FID/KID"
    ),
}
ROW_NAMES = {"real": "input", "fake": "translation", "rec": "reconstruction"}


def _finite(obj: Any) -> Any:
    """JSON has no inf or nan: write them as null (PSNR of identical images is infinite)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_text(path: Path, text: str) -> None:
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
) -> dict[str, dict[str, Any]]:
    """Save a grid per direction (rows: input, translation[, reconstruction]).

    Returns:
        {direction: {"file": name, "rows": [row names]}}.
    """
    grids = {}
    for direction, imgs in images.items():
        keys = [k for k in ("real", "fake", "rec") if k in imgs]
        k = min(num_samples, *(len(imgs[key]) for key in keys))
        grid = image_rows([imgs[key][:k] for key in keys])  # (3, H, W) in [0, 1]
        name = GRID_NAME.format(direction=direction)
        save_image(grid, out_dir / name)
        grids[direction] = {"file": name, "rows": [ROW_NAMES[key] for key in keys]}
    return grids


def judge_line(judge: dict[str, Any], label: str) -> str:
    """One line on a judge: architecture, balanced accuracy on real test images, provenance."""
    arch = judge.get("arch", {})
    train = judge.get("train_images", ["?", "?"])
    flag = "" if judge.get("reliable", True) else " (**below the reliability threshold**)"
    return (
        f"{label}: `{arch.get('arch')}` CNN (width {arch.get('width')}, seed {judge.get('seed')}), "
        f"**{_pct(judge.get('test_balanced_acc'))} balanced accuracy on the real test images**"
        f"{flag} (A {_pct(judge.get('test_acc_A'))}, B {_pct(judge.get('test_acc_B'))}); "
        f"validation {_pct(judge.get('val_balanced_acc'))}; trained on {train[0]} + {train[1]} "
        f"real training images, {'loaded from the cache' if judge.get('cached') else 'trained now'}"
    )


def _source_lines(report: dict[str, Any]) -> list[str]:
    src = report["source"]
    if "checkpoint" in src:
        return [f"- checkpoint: `{src['checkpoint']}` (step {src['step']}, epoch {src['epoch']})"]
    paired = "paired with their inputs by file name" if src["paired_with_inputs"] else "unpaired"
    resized = f", {src['resized']} resized to the test images' size" if src["resized"] else ""
    return [f"- translations: `{src['translations']}` ({src['images']} images, {paired}{resized})"]


def markdown(report: dict[str, Any]) -> str:
    """The human report: settings, judges, tables of numbers, checks, grids, how to read them."""
    m = report["metrics"]
    present = [(d, src, tgt) for d, src, tgt in DIRECTIONS if f"domain_acc_{d}" in m]
    lines = _settings_section(report)
    for section in (_domain_section, _distribution_section, _cycle_section, _truth_section):
        lines += section(report, present)
    lines += _closing_section(report)
    return "\n".join(lines)


def _settings_section(report: dict[str, Any]) -> list[str]:
    """The title, the source and the settings."""
    s = report["settings"]
    lines: list[str] = []
    lines += ["# Evaluation", "", *_source_lines(report)]
    lines += [
        f"- dataset: `{report['dataset'].get('name')}`, test images: "
        f"{s['test_images']['A']} A, {s['test_images']['B']} B",
        f"- FID/KID features: **{s['features']}**: {FEATURE_NOTES[s['features']]}"
        + (f"; resize to 299 px: {s['fid_resize']}" if s.get("fid_resize") else ""),
    ]
    for k, judge in enumerate(s["judges"], start=1):
        lines.append(f"- {judge_line(judge, f'judge {k}')}")
    lines += [
        f"- seed {s['seed']}, KID subsets {s['kid_subsets']} of {s['kid_subset_size']}, "
        f"gantrans {report['gantrans_version']}, {report.get('created', '')}",
    ]
    return lines


def _domain_section(report: dict[str, Any], present: list[tuple[str, str, str]]) -> list[str]:
    """Whether the translations reach the target domain: the judges, the controls, the checks."""
    m, s = report["metrics"], report["settings"]
    lines: list[str] = []
    lines += [
        "",
        "## Does the translation reach the target domain?",
        "",
        f"Classified as the target by the panel of {len(s['judges'])} judges (balanced accuracy "
        f"on real test images: {judge_accuracies(s['judges'])}): their mean, the lowest and the "
        "highest judge, and each judge's own figure. Next to them the controls, images that "
        "belong to the source domain, which a judge that is not fooled keeps near the "
        "untranslated inputs (the controls by judge 1).",
        "",
        "| direction | panel mean ↑ | lowest – highest | "
        + " | ".join(f"judge {k}" for k in range(1, len(s["judges"]) + 1))
        + " | all agree | untranslated inputs (panel) | reconstructions | blurred inputs "
        "| noisy inputs | JPEG inputs | verdict |",
        "| --- | ---: | ---: | "
        + "---: | " * len(s["judges"])
        + "---: | ---: | ---: | ---: | ---: "
        "| ---: | --- |",
    ]
    checks = report.get("checks", {})
    for d, _, tgt in present:
        ok = checks.get(d, {}).get("trustworthy", True)
        judges_row = " | ".join(
            _pct(m.get(f"domain_acc_{d}" if k == 1 else f"judge{k}_domain_acc_{d}"))
            for k in range(1, len(s["judges"]) + 1)
        )
        lines.append(
            f"| {d} (as {tgt}) | **{_pct(m.get(f'panel_domain_acc_{d}'))}** "
            f"| {_pct(m.get(f'panel_min_domain_acc_{d}'))} – "
            f"{_pct(m.get(f'panel_max_domain_acc_{d}'))} | {judges_row} "
            f"| {_pct(m.get(f'panel_agreement_{d}'))} "
            f"| {_pct(m.get(f'panel_input_domain_acc_{d}'))} | {_pct(m.get(f'rec_domain_acc_{d}'))} "
            f"| {_pct(m.get(f'blur_domain_acc_{d}'))} | {_pct(m.get(f'noise_domain_acc_{d}'))} "
            f"| {_pct(m.get(f'jpeg_domain_acc_{d}'))} | {'ok' if ok else '**suspect**'} |"
        )
    for d, _, _ in present:
        for reason in checks.get(d, {}).get("reasons", []):
            lines.append(f"\n- **{d}: {reason}**")
    return lines


def _distribution_section(report: dict[str, Any], present: list[tuple[str, str, str]]) -> list[str]:
    """FID, KID and the two-sample test."""
    m = report["metrics"]
    lines: list[str] = []
    lines += [
        "",
        "## Distribution: do translations look like real target images?",
        "",
        "| direction | FID ↓ | KID ↓ | C2ST accuracy (0.5 best) | C2ST p-value | content L1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for d, _, _ in present:
        c2st = (
            f"{_pct(m.get(f'c2st_acc_{d}'))} ± {_pct(m.get(f'c2st_stderr_{d}'))}"
            if f"c2st_acc_{d}" in m
            else "-"
        )
        lines.append(
            f"| {d} | {_num(m[f'fid_{d}'], '.2f')} | {_num(m[f'kid_{d}'], '.4g')} ± "
            f"{_num(m[f'kid_std_{d}'], '.2g')} | {c2st} | {_num(m.get(f'c2st_pvalue_{d}'), '.3g')} "
            f"| {_num(m.get(f'content_l1_{d}'), '.4f')} |"
        )
    return lines


def _cycle_section(report: dict[str, Any], present: list[tuple[str, str, str]]) -> list[str]:
    """The cycle reconstructions, where there are any."""
    m = report["metrics"]
    lines: list[str] = []
    cycles = [(src, tgt) for _, src, tgt in present if f"cycle_l1_{src}" in m]
    if cycles:
        lines += [
            "",
            "## Content: cycle reconstruction",
            "",
            "| cycle | L1 ↓ | PSNR (dB) ↑ | SSIM ↑ |",
            "| --- | ---: | ---: | ---: |",
        ]
        for src, tgt in cycles:
            lines.append(
                f"| {src} → {tgt} → {src} | {_num(m[f'cycle_l1_{src}'], '.4f')} "
                f"| {_num(m[f'cycle_psnr_{src}'], '.2f')} | {_num(m[f'cycle_ssim_{src}'], '.4f')} |"
            )
    return lines


def _truth_section(report: dict[str, Any], present: list[tuple[str, str, str]]) -> list[str]:
    """The distance to the true translations (shapes, paired sets), where known."""
    m = report["metrics"]
    lines: list[str] = []
    truth = [d for d, _, _ in present if f"truth_psnr_{d}" in m]
    if truth:
        shapes = all(f"shape_change_{d}" in m for d in truth)
        lpips = all(f"truth_lpips_{d}" in m for d in truth)
        title = (
            "Shapes: distance to the true translation"
            if shapes
            else ("Paired data: distance to the true target")
        )
        head = "| direction | PSNR ↑ | input PSNR | SSIM ↑ | input SSIM | L1 ↓ | input L1 "
        rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: "
        if lpips:
            head, rule = head + "| LPIPS ↓ | input LPIPS ", rule + "| ---: | ---: "
        if shapes:
            head += "| shape change ↑ | shape IoU ↑ | input shape IoU "
            rule += "| ---: | ---: | ---: "
        lines += [
            "",
            f"## {title}",
            "",
            "The untranslated input is the baseline: a useful translation beats it.",
            "",
            head + "|",
            rule + "|",
        ]
        for d in truth:
            row = (
                f"| {d} | {_num(m[f'truth_psnr_{d}'], '.2f')} "
                f"| {_num(m[f'input_truth_psnr_{d}'], '.2f')} | {_num(m[f'truth_ssim_{d}'], '.4f')} "
                f"| {_num(m[f'input_truth_ssim_{d}'], '.4f')} | {_num(m[f'truth_l1_{d}'], '.4f')} "
                f"| {_num(m[f'input_truth_l1_{d}'], '.4f')} "
            )
            if lpips:
                row += (
                    f"| {_num(m[f'truth_lpips_{d}'], '.4f')} "
                    f"| {_num(m[f'input_truth_lpips_{d}'], '.4f')} "
                )
            if shapes:
                row += (
                    f"| {_num(m[f'shape_change_{d}'], '.3f')} "
                    f"| {_num(m[f'shape_iou_{d}'], '.3f')} | {_num(m[f'input_shape_iou_{d}'], '.3f')} "
                )
            lines.append(row + "|")
    return lines


def _closing_section(report: dict[str, Any]) -> list[str]:
    """What was not computed, the grids, and how to read the numbers."""
    lines: list[str] = []
    if report.get("not_computed"):
        lines += ["", "## Not computed", ""]
        lines += [f"- `{k}`: {why}" for k, why in report["not_computed"].items()]
    lines += ["", "## Samples", ""]
    for d, grid in report.get("grids", {}).items():
        lines += [f"### {d}", "", f"Rows: {', '.join(grid['rows'])}.", ""]
        lines += [f"![{d}]({grid['file']})", ""]
    lines += [
        "## How to read this",
        "",
        "- **classified as the target**: share of translations that a judge, a CNN trained on "
        "real training images only, puts in the target domain; read it next to the judge's "
        "balanced accuracy (the mean of its accuracies on real test images of each domain). "
        "The panel's judges differ in architecture and seed; they agree on real images, but on "
        "generated ones one judge's figure is soft, so the panel's mean leads and its spread "
        "(lowest to highest judge) says how far to trust it: a spread of 15 points or more is "
        "marked suspect.",
        "- **controls**: the cycle reconstructions and real source images that were only "
        "blurred, made noisy or JPEG-compressed stay in the source domain. If the judge moves "
        "them towards the target like a translation, it responds to artefacts, and the verdict "
        "says so; so does a second judge (another architecture and seed) that disagrees.",
        "- **FID / KID**: distance between the feature statistics of the translations and of the "
        "real test images of the target domain; 0 = same distribution. KID is unbiased for "
        "small sets; FID on a few hundred images is biased upwards.",
        "- **C2ST** (classifier two-sample test, Lopez-Paz & Oquab 2017): a fresh CNN learns real "
        "versus translated on half of the images (equally many of each) and is scored on the "
        "other half; 50% = it cannot tell them apart. A small p-value (one-sided binomial test against 50%) means "
        "the translations are detectably different from real images.",
        "- **content L1**: mean |translation − input| on the [-1, 1] scale (how much changed); "
        "**cycle**: how well the input survives a round trip.",
        "",
    ]
    return lines


def summary(report: dict[str, Any]) -> list[str]:
    """A few console lines: the main numbers per direction, the judges and the checks."""
    m, s = report["metrics"], report["settings"]
    lines = []
    for d, src, tgt in DIRECTIONS:
        if f"domain_acc_{d}" not in m:
            continue
        if f"panel_domain_acc_{d}" in m:
            parts = [
                f"{_pct(m[f'panel_domain_acc_{d}'])} classified {tgt} by the panel's mean "
                f"(judges {_pct(m[f'panel_min_domain_acc_{d}'])} to "
                f"{_pct(m[f'panel_max_domain_acc_{d}'])})"
            ]
        else:
            parts = [f"{_pct(m[f'domain_acc_{d}'])} classified {tgt}"]
        controls = [
            f"{label} {_pct(m[f'{key}_domain_acc_{d}'])}"
            for key, label in (
                ("panel_input", "inputs by the panel"),
                ("input", "inputs"),
                ("rec", "reconstructions"),
                ("blur", "blur"),
                ("noise", "noise"),
                ("jpeg", "JPEG"),
            )  # fmt: skip
            if f"{key}_domain_acc_{d}" in m
        ]
        parts.append(f"controls: {', '.join(controls)}")
        parts.append(f"FID {_num(m[f'fid_{d}'], '.2f')}, KID {_num(m[f'kid_{d}'], '.4g')}")
        if f"c2st_acc_{d}" in m:
            parts.append(
                f"C2ST {_pct(m[f'c2st_acc_{d}'])} (p={_num(m[f'c2st_pvalue_{d}'], '.2g')})"
            )
        if f"content_l1_{d}" in m:
            parts.append(f"content L1 {_num(m[f'content_l1_{d}'], '.3f')}")
        if f"cycle_psnr_{src}" in m:
            parts.append(f"cycle PSNR {_num(m[f'cycle_psnr_{src}'], '.1f')} dB")
        if f"truth_psnr_{d}" in m:
            parts.append(
                f"truth PSNR {_num(m[f'truth_psnr_{d}'], '.1f')} dB "
                f"(input {_num(m[f'input_truth_psnr_{d}'], '.1f')})"
            )
            parts.append(
                f"truth L1 {_num(m[f'truth_l1_{d}'], '.3f')}, "
                f"SSIM {_num(m[f'truth_ssim_{d}'], '.3f')}"
            )
        if f"truth_lpips_{d}" in m:
            parts.append(
                f"LPIPS {_num(m[f'truth_lpips_{d}'], '.3f')} "
                f"(input {_num(m[f'input_truth_lpips_{d}'], '.3f')})"
            )
        lines.append(f"{d}: " + "; ".join(parts))
        for reason in report.get("checks", {}).get(d, {}).get("reasons", []):
            lines.append(f"warning: {d}: {reason}")
    lines.append(
        f"judges' balanced accuracy on real test images: {judge_accuracies(s['judges'])}; "
        f"features: {s['features']}; {s['test_images']['A']} + {s['test_images']['B']} "
        "test images"
    )
    return lines


def judge_accuracies(judges: list[dict[str, Any]]) -> str:
    """ "strided 93.9%, pooled 94.3%, ...": each judge's balanced accuracy on real test images."""
    return ", ".join(
        f"{j.get('arch', {}).get('arch', '?')} {_pct(j.get('test_balanced_acc'))}" for j in judges
    )


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
    write_text(out_dir / JSON_NAME, text + "\n")
    write_text(out_dir / MD_NAME, markdown(report))
