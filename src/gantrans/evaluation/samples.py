"""`gantrans evaluate` on an unconditional (DCGAN) checkpoint: its samples against real images.

The generator draws as many images as the held-out test split of the trained domain
(`dataset.domain`) holds (or `max_images`), from latents seeded by `seed`; they are scored
against those real test images:

- FID and KID in the chosen features (`features=classifier`: the first judge's, offline;
  `inception`: the standard FID network), as for translations;
- the share of samples each judge puts in the trained domain, next to the share of real test
  images of that domain it puts there (what a perfect generator would reach);
- the real-versus-generated two-sample test (C2ST), with `c2st=true`;
- diversity diagnostics: the samples' spread per pixel and their mean pairwise distance in
  features, each relative to the real test images' (1 = as varied as real images, near 0 =
  mode collapse), and the median distance from a sample to its nearest *training* image
  (among up to `judge_max_images` of them) relative to the same for real test images (well
  below 1 = the generator copies training images).

A dataset without two domains (a plain folder of images) has no judges: it takes
features=inception and reports FID/KID and the diversity figures.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torchvision.utils import save_image

from gantrans import __version__, checkpoint
from gantrans.applying.loader import load_sampler
from gantrans.applying.sample import generate
from gantrans.data import build_domain
from gantrans.data.single import is_plain_folder
from gantrans.errors import ConfigError
from gantrans.evaluation import classifiers, metrics
from gantrans.evaluation.evaluator import Evaluator, EvaluatorOptions
from gantrans.evaluation.images import load_images, quantize
from gantrans.evaluation.names import SAMPLES_LOWER_IS_BETTER
from gantrans.evaluation.report import write_text
from gantrans.models.dcgan import latents
from gantrans.runtime import resolve_device
from gantrans.training.reporting import image_rows

log = logging.getLogger("gantrans")

JSON_NAME, MD_NAME, GRID_NAME = "evaluation.json", "evaluation.md", "samples.png"
SUFFIX = "samples"  # metric names: fid_samples, ...


def pairwise_mean_distance(features: torch.Tensor) -> float:
    """Mean Euclidean distance between distinct rows of (N, D) features."""
    d = torch.cdist(features.double(), features.double())
    n = len(features)
    return (d.sum() / max(n * (n - 1), 1)).item()


def nearest_distances(queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """(Nq,) distance from each query row to its nearest reference row (in chunks)."""
    out = [
        torch.cdist(queries[i : i + 256].double(), references.double()).min(1).values
        for i in range(0, len(queries), 256)
    ]
    return torch.cat(out)


def diversity(
    fake: torch.Tensor,
    real: torch.Tensor,
    fake_feats: torch.Tensor,
    real_feats: torch.Tensor,
    train_feats: torch.Tensor,
) -> dict[str, float]:
    """The diversity diagnostics of samples against real test images (see the module doc)."""
    spread = fake.float().std(0).mean().item() / max(real.float().std(0).mean().item(), 1e-8)
    pairwise = pairwise_mean_distance(fake_feats) / max(pairwise_mean_distance(real_feats), 1e-12)
    nn_fake = nearest_distances(fake_feats, train_feats).median().item()
    nn_real = nearest_distances(real_feats, train_feats).median().item()
    return {
        f"pixel_diversity_{SUFFIX}": spread,
        f"feature_diversity_{SUFFIX}": pairwise,
        f"nn_train_ratio_{SUFFIX}": nn_fake / max(nn_real, 1e-12),
    }


def _real_images(
    cfg: DictConfig, dataset: dict[str, Any], device: torch.device
) -> tuple[Evaluator | None, torch.Tensor, torch.nn.Module]:
    """The Evaluator (None for a plain folder, which has no judges), the real test images of
    the trained domain, and the feature network."""
    domain, channels = dataset["domain"], dataset["channels"]
    if is_plain_folder(dataset, domain):
        if cfg.features != "inception":
            raise ConfigError(
                "features=classifier needs a dataset of two domains (its judges tell them "
                "apart); a plain folder of images takes features=inception"
            )
        real = quantize(load_images(build_domain(dataset, "test", channels), cfg.max_images,
                                    f"test {domain}", cfg.progress))  # fmt: skip
        feature_net = metrics.InceptionFeatures(cfg.inception_weights, cfg.progress, cfg.fid_resize)
        return None, real, feature_net.to(device).eval()
    two = {k: v for k, v in dataset.items() if k != "domain"}  # the judges see both domains
    options = EvaluatorOptions.from_config(cfg, c2st=False)  # its own test, of samples
    evaluator = Evaluator(two, channels, device, options)
    return evaluator, evaluator.real[domain], evaluator.feature_net


def judge_scores(
    panel: list, real: torch.Tensor, fake: torch.Tensor, domain: str
) -> dict[str, float]:
    """Each judge's share of samples, and of real test images, put in the trained domain, and
    the panel's mean, lowest and highest share of samples."""
    label = 0 if domain == "A" else 1
    scores: dict[str, float] = {}
    for i, judge in enumerate(panel):
        prefix = "" if i == 0 else f"judge{i + 1}_"
        scores[f"{prefix}domain_acc_{SUFFIX}"] = judge.target_rate(fake, label)
        scores[f"{prefix}real_domain_acc_{SUFFIX}"] = judge.target_rate(real, label)
    rates = [s for k, s in scores.items() if "real_" not in k]
    scores[f"panel_domain_acc_{SUFFIX}"] = sum(rates) / len(rates)
    scores[f"panel_min_domain_acc_{SUFFIX}"] = min(rates)
    scores[f"panel_max_domain_acc_{SUFFIX}"] = max(rates)
    return scores


def _with_sampled_domain(dataset: dict[str, Any], ckpt: dict[str, Any]) -> dict[str, Any]:
    """The dataset config with the checkpoint's channels and the trained domain: the command
    line's, else the one the run recorded, else B."""
    channels = checkpoint.channels(ckpt)
    recorded = checkpoint.recorded_config(ckpt).get("dataset") or {}
    domain = dataset.get("domain") or recorded.get("domain") or "B"  # dataset=NAME: the run's
    return {**dataset, "channels": channels, "domain": domain}


def _check_image_size(arch: dict[str, Any], real: torch.Tensor) -> None:
    """Refuse a checkpoint whose samples are not the size of the real test images."""
    size = tuple(real.shape[-2:])
    if (int(arch["image_size"]),) * 2 != size:
        raise ConfigError(
            f"the checkpoint generates {arch['image_size']} px images but the dataset's test "
            f"images are {size[0]} px: pass the dataset's image size (dataset.image_size=...)"
        )


def _c2st_scores(
    cfg: DictConfig, real: torch.Tensor, fake: torch.Tensor, device: torch.device
) -> dict[str, float]:
    """The real-versus-samples two-sample test: its accuracy, standard error and p-value."""
    test = classifiers.two_sample_test(
        real, fake, seed=cfg.seed, epochs=cfg.c2st_epochs, device=device,
        progress=cfg.progress, desc="C2ST samples",
    )  # fmt: skip
    names = (("acc", "c2st_acc"), ("stderr", "c2st_stderr"), ("p_value", "c2st_pvalue"))
    return {f"{name}_{SUFFIX}": test[key] for key, name in names}


def _scores(
    cfg: DictConfig,
    evaluator: Evaluator | None,
    domain: str,
    device: torch.device,
    real: torch.Tensor,
    fake: torch.Tensor,
    real_feats: torch.Tensor,
    fake_feats: torch.Tensor,
    train_feats: torch.Tensor,
) -> dict[str, float]:
    """The metrics of the samples `fake` against the real test images `real`: FID and KID, the
    judges' shares (with judges), the C2ST (with c2st=true) and the diversity diagnostics."""
    scores: dict[str, float] = {f"fid_{SUFFIX}": metrics.fid(real_feats, fake_feats)}
    kid, kid_std = metrics.kid(real_feats, fake_feats, seed=cfg.seed)
    scores[f"kid_{SUFFIX}"], scores[f"kid_std_{SUFFIX}"] = kid, kid_std
    if evaluator is not None:
        scores.update(judge_scores(evaluator.judges, real, fake, domain))
    if cfg.c2st:
        scores.update(_c2st_scores(cfg, real, fake, device))
    scores.update(diversity(fake, real, fake_feats, real_feats, train_feats))
    return scores


def evaluate_samples(cfg: DictConfig, ckpt_path: Path, dataset: dict[str, Any]) -> dict[str, Any]:
    """Score samples of the DCGAN checkpoint at `ckpt_path` and write the reports.

    Args:
        cfg: The `gantrans evaluate` config.
        ckpt_path: A DCGAN checkpoint.
        dataset: The dataset config to compare with (the checkpoint's, changed by the command
            line), with its `domain`.
    """
    if cfg.direction is not None:
        raise ConfigError("direction= does not apply to a dcgan checkpoint: it translates nothing")
    device = resolve_device(cfg.device)
    net, arch, ckpt = load_sampler(ckpt_path, device)
    dataset = _with_sampled_domain(dataset, ckpt)
    domain, channels = dataset["domain"], dataset["channels"]
    out_dir = Path(cfg.output_dir) if cfg.output_dir else checkpoint.run_dir_of(ckpt_path) / "eval"
    evaluator, real, feature_net = _real_images(cfg, dataset, device)
    judge_info = evaluator.judge_info if evaluator is not None else []
    _check_image_size(arch, real)

    def features(images: torch.Tensor, desc: str) -> torch.Tensor:
        return metrics.extract_features(
            feature_net, images, device, cfg.batch_size, desc, cfg.progress
        )

    z = latents(len(real), int(arch["nz"]), torch.Generator().manual_seed(int(cfg.seed)))
    fake = quantize(generate(net, z, cfg.batch_size, "fp32"))  # scored as saved: 8-bit
    real_feats = evaluator.real_features[domain] if evaluator else features(real, "features real")
    fake_feats = features(fake, "features samples")
    train = build_domain(dataset, "train", channels)
    train_images = quantize(load_images(train, cfg.judge_max_images, f"train {domain}",
                                        cfg.progress))  # fmt: skip
    train_feats = features(train_images, "features train")
    scores = _scores(
        cfg, evaluator, domain, device, real, fake, real_feats, fake_feats, train_feats
    )

    report = {
        "gantrans_version": __version__,
        "source": {
            "checkpoint": str(ckpt_path.resolve()),
            "method": checkpoint.method(ckpt),
            **checkpoint.progress(ckpt),
        },
        "dataset": dataset,
        "settings": {
            "features": cfg.features,
            "fid_resize": cfg.fid_resize if cfg.features == "inception" else None,
            "domain": domain,
            "samples": len(fake),
            "test_images": len(real),
            "train_images": len(train_images),
            "kid_subset_size": metrics.kid_subset_size(len(real), len(fake)),
            "seed": cfg.seed,
            "device": str(device),
            "judges": [dict(j) for j in judge_info],
        },
        "metrics": scores,
        "lower_is_better": {k: SAMPLES_LOWER_IS_BETTER[k] for k in scores},
    }
    write(out_dir, report, real, fake, cfg.num_samples)
    for line in summary(report):
        log.info(line)
    log.info("wrote %s and %s", out_dir / JSON_NAME, out_dir / MD_NAME)
    return report


def summary(report: dict[str, Any]) -> list[str]:
    """The report in a few console lines."""
    m, s = report["metrics"], report["settings"]
    lines = [
        f"{s['samples']} samples of domain {s['domain']} against {s['test_images']} real test "
        f"images ({s['features']} features): FID {m[f'fid_{SUFFIX}']:.3f}, KID "
        f"{m[f'kid_{SUFFIX}']:.4f} +- {m[f'kid_std_{SUFFIX}']:.4f}"
    ]
    if f"domain_acc_{SUFFIX}" in m:
        judge = s["judges"][0]
        lines.append(
            f"classified as domain {s['domain']}: {100 * m[f'domain_acc_{SUFFIX}']:.1f}% of the "
            f"samples, {100 * m[f'real_domain_acc_{SUFFIX}']:.1f}% of the real test images "
            f"(judge: {100 * judge['test_balanced_acc']:.1f}% balanced accuracy)"
        )
    if f"c2st_acc_{SUFFIX}" in m:
        lines.append(
            f"two-sample test: {100 * m[f'c2st_acc_{SUFFIX}']:.1f}% accuracy telling samples from "
            f"real images (50% = indistinguishable), p = {m[f'c2st_pvalue_{SUFFIX}']:.3g}"
        )
    lines.append(
        f"diversity (real images = 1): per pixel {m[f'pixel_diversity_{SUFFIX}']:.3f}, pairwise "
        f"in features {m[f'feature_diversity_{SUFFIX}']:.3f}; nearest training image "
        f"{m[f'nn_train_ratio_{SUFFIX}']:.3f} x as far as for real test images"
    )
    return lines


def markdown(report: dict[str, Any]) -> str:
    """evaluation.md: the metrics as one table."""
    s = report["settings"]
    rows = [
        f"# Evaluation of {report['source'].get('checkpoint')}",
        "",
        f"Samples of a {report['source']['method']} checkpoint (step "
        f"{report['source'].get('step')}) against the real test images of domain {s['domain']} "
        f"of dataset {report['dataset'].get('name')}: {s['samples']} samples, "
        f"{s['test_images']} test images, {s['features']} features, seed {s['seed']}.",
        "",
        "| metric | value | better |",
        "|---|---:|---|",
    ]
    for key, value in report["metrics"].items():
        better = "lower" if report["lower_is_better"][key] else "higher"
        rows.append(f"| `{key}` | {value:.4g} | {better} |")
    rows += ["", *summary(report), ""]
    return "\n".join(rows)


def write(
    out_dir: Path, report: dict[str, Any], real: torch.Tensor, fake: torch.Tensor, k: int
) -> None:
    """evaluation.json, evaluation.md and samples.png (top row real test images, then samples)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {**report, "grid": {"file": GRID_NAME, "rows": ["real", "samples", "samples"]}}
    write_text(out_dir / JSON_NAME, json.dumps(report, indent=2, default=str) + "\n")
    write_text(out_dir / MD_NAME, markdown(report))
    k = min(k, len(real), len(fake) // 2)
    save_image(image_rows([real[:k], fake[:k], fake[k : 2 * k]]), out_dir / GRID_NAME)
