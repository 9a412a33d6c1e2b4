"""`gantrans evaluate`: score a checkpoint's translations on the held-out test images, in numbers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from gantrans import __version__, classifiers, metrics
from gantrans.checkpoint import load_checkpoint
from gantrans.config import check_known_keys, to_plain
from gantrans.data import DataError, DomainDataset, build_domains
from gantrans.errors import ConfigError, GantransError
from gantrans.runtime import resolve_device

log = logging.getLogger("gantrans")

FEATURES = ("inception", "classifier")
DIRECTIONS = (("AtoB", "A", "B"), ("BtoA", "B", "A"))  # (direction, source, target)
LABEL = {"A": 0, "B": 1}
MIN_TEST_IMAGES = 4  # the two-sample test needs two images per class and half

# metric name (without its _AtoB / _BtoA / _A / _B suffix) -> lower is better
_LOWER = {
    "fid": True,
    "kid": True,
    "kid_std": True,
    "domain_acc": False,  # share of translations the domain classifier puts in the target domain
    "c2st_acc": True,  # 0.5 = indistinguishable from real; higher = easier to tell apart
    "c2st_stderr": True,
    "c2st_pvalue": False,  # large = no evidence the translations differ from real images
    "cycle_l1": True,
    "cycle_psnr": False,
    "cycle_ssim": False,
    "truth_l1": True,
    "truth_psnr": False,
    "truth_ssim": False,
    "input_truth_l1": True,  # baselines: the untranslated input against the truth
    "input_truth_psnr": False,
    "input_truth_ssim": False,
    "shape_change": False,
    "shape_iou": False,  # footprint of the drawn shape versus the true one, colour aside
    "input_shape_iou": False,
}
LOWER_IS_BETTER: dict[str, bool] = {
    f"{name}_{suffix}": lower
    for name, lower in _LOWER.items()
    for suffix in (("A", "B") if name.startswith("cycle_") else ("AtoB", "BtoA"))
}
"""Every metric name an Evaluator returns -> True when a lower value is better."""


def _spaced(n_total: int, limit: int | None) -> list[int]:
    """`limit` indices spread evenly over range(n_total) (all of them when limit is None)."""
    if limit is None or limit >= n_total:
        return list(range(n_total))
    return torch.linspace(0, n_total - 1, limit).round().long().tolist()


def load_images(
    domain: DomainDataset, limit: int | None, what: str, progress: bool, side: int | None = None
) -> torch.Tensor:
    """Images of a domain with the test-time transform: (N, C, H, W) in [-1, 1].

    Args:
        limit: At most this many images, evenly spaced over the domain.
        side: Scale larger images down to this side (antialiased) to save memory.
    """
    images = []
    for i in tqdm(_spaced(len(domain), limit), desc=f"load {what}", disable=not progress):
        image = domain.load(i)[None]  # (1, C, H, W)
        if side is not None and max(image.shape[-2:]) > side:
            image = F.interpolate(image, size=(side, side), mode="bilinear", antialias=True)
        images.append(image[0])
    sizes = {tuple(x.shape) for x in images}
    if len(sizes) > 1:
        raise DataError(
            f"the {what} images come in {len(sizes)} sizes: use a dataset.preprocess that "
            "gives one size (resize_and_crop, crop or scale_width_and_crop)"
        )
    return torch.stack(images)


@torch.no_grad()
def _apply(net: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A generator over (N, C, H, W) images in batches, on its own device; result on the CPU."""
    device = next(net.parameters()).device
    return torch.cat(
        [
            net(images[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
    )


def _key(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Evaluator:
    """Scores a pair of generators on the test images of a dataset; built once per run.

    Construction loads the test images, trains (or loads from `out_dir`/domain_classifier.pt)
    the real-A-versus-real-B domain classifier and computes the real images' features; every
    call then only translates and scores, so it can run periodically during training::

        evaluator = Evaluator(cfg["dataset"], channels, device, run_dir / "eval")
        scores = evaluator(model.G_A, model.G_B)  # {"fid_AtoB": ..., "cycle_psnr_A": ...}
        better = scores[m] < best if LOWER_IS_BETTER[m] else scores[m] > best

    Returned names (see LOWER_IS_BETTER): fid_, kid_, kid_std_, domain_acc_, c2st_acc_,
    c2st_stderr_, c2st_pvalue_ + AtoB | BtoA; cycle_l1_, cycle_psnr_, cycle_ssim_ + A | B
    (A -> B -> A and B -> A -> B); for dataset=shapes also truth_l1_, truth_psnr_, truth_ssim_,
    input_truth_l1_, input_truth_psnr_, input_truth_ssim_, shape_change_, shape_iou_ and
    input_shape_iou_ + AtoB | BtoA.

    Args:
        dataset_cfg: The dataset config section as a plain dict.
        channels: Image channels of the generators (1 or 3).
        device: Where the classifiers and the feature network run.
        out_dir: Folder of the classifier cache (created when needed).
        features: "classifier" (the domain classifier's penultimate layer: offline, not
            comparable to published FID) or "inception" (the standard FID Inception-v3).
        max_images: Test images per domain (evenly spaced); None = all.
        seed: Seeds the classifiers, the two-sample-test splits and KID's subsets.
        inception_weights: A local file of the Inception weights (else the torch hub cache,
            downloading on first use).
        classifier_max_images: Real training images per domain for the domain classifier.
        classifier_epochs, c2st_epochs: Training epochs of the two kinds of classifier.
        c2st: Run the two-sample test (a fresh classifier per direction and call).
        batch_size: Images per forward pass.
        progress: Show tqdm progress bars.
    """

    def __init__(
        self,
        dataset_cfg: Mapping[str, Any],
        channels: int,
        device: torch.device | str,
        out_dir: Path | str,
        features: str = "classifier",
        max_images: int | None = None,
        seed: int = 0,
        *,
        inception_weights: str | Path | None = None,
        classifier_max_images: int | None = 1000,
        classifier_epochs: int = 5,
        c2st_epochs: int = 20,
        c2st: bool = True,
        batch_size: int = 32,
        progress: bool = False,
    ) -> None:
        if features not in FEATURES:
            raise ConfigError(f"features={features} is unknown: choose inception or classifier")
        for name, value in (
            ("max_images", max_images),
            ("classifier_max_images", classifier_max_images),
        ):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be positive or null, got {value}")
        if classifier_epochs < 1 or c2st_epochs < 1 or batch_size < 1:
            raise ConfigError("classifier_epochs, c2st_epochs and batch_size must be positive")
        self.dataset_cfg = dict(dataset_cfg)
        self.channels = channels
        self.device = torch.device(device)
        self.out_dir = Path(out_dir)
        self.features = features
        self.seed = seed
        self.c2st = c2st
        self.c2st_epochs = c2st_epochs
        self.batch_size = batch_size
        self.progress = progress
        # the Inception weights first: offline, fail before any slow work
        inception = (
            metrics.InceptionFeatures(inception_weights, progress)
            if features == "inception"
            else None
        )

        test_a, test_b = build_domains(self.dataset_cfg, "test", channels)
        self.real = {
            "A": load_images(test_a, max_images, "test A", progress),
            "B": load_images(test_b, max_images, "test B", progress),
        }
        for d, images in self.real.items():
            if len(images) < MIN_TEST_IMAGES:
                raise DataError(
                    f"the test split of domain {d} has {len(images)} image(s): "
                    f"evaluation needs at least {MIN_TEST_IMAGES} per domain"
                )
        self.truth: dict[str, torch.Tensor] = {}  # ground-truth translations (shapes only)
        if self.dataset_cfg.get("name") == "shapes":
            for d, domain in (("A", test_a), ("B", test_b)):
                idx = _spaced(len(domain), max_images)
                self.truth[d] = torch.stack([domain.counterpart(i) for i in idx])

        settings = {
            "dataset": self.dataset_cfg,
            "channels": channels,
            "classifier_max_images": classifier_max_images,
            "epochs": classifier_epochs,
            "seed": seed,
            "arch": "SmallConvNet-v1",
        }
        self.classifier, self.classifier_info = self._domain_classifier(
            _key(settings), classifier_max_images, classifier_epochs
        )
        x = torch.cat([self.real["A"], self.real["B"]])
        y = torch.tensor([0] * len(self.real["A"]) + [1] * len(self.real["B"]))
        self.classifier_info["test_acc"] = classifiers.accuracy(self.classifier, x, y, self.device)
        self.classifier_info["test_images"] = len(y)

        self.feature_net: nn.Module = (
            inception if inception is not None else _Features(self.classifier)
        )
        self.feature_net = self.feature_net.to(self.device).eval()
        self.real_features = {
            d: self._features(img, f"features real {d}") for d, img in self.real.items()
        }

    @property
    def info(self) -> dict[str, Any]:
        """The settings and the domain classifier's numbers, for a report."""
        n = {d: len(x) for d, x in self.real.items()}
        return {
            "features": self.features,
            "feature_dim": int(self.real_features["A"].shape[1]),
            "test_images": n,
            "kid_subset_size": metrics.kid_subset_size(min(n.values()), min(n.values())),
            "kid_subsets": metrics.KID_SUBSETS,
            "c2st_epochs": self.c2st_epochs,
            "seed": self.seed,
            "shapes_truth": bool(self.truth),
            "domain_classifier": dict(self.classifier_info),
        }

    def _features(self, images: torch.Tensor, desc: str) -> torch.Tensor:
        return metrics.extract_features(
            self.feature_net, images, self.device, self.batch_size, desc, self.progress
        )

    def _domain_classifier(
        self, key: str, limit: int | None, epochs: int
    ) -> tuple[classifiers.SmallConvNet, dict[str, Any]]:
        path = self.out_dir / "domain_classifier.pt"
        cached = classifiers.load_cached(path, key, self.device)
        if cached is not None:
            net, info = cached
            info.update(cached=True, path=str(path))
            return net, info
        train_a, train_b = build_domains(self.dataset_cfg, "train", self.channels)
        side = classifiers.MAX_INPUT
        xa = load_images(train_a, limit, "train A", self.progress, side)
        xb = load_images(train_b, limit, "train B", self.progress, side)
        x = torch.cat([xa, xb])
        y = torch.tensor([0] * len(xa) + [1] * len(xb))
        net = classifiers.train_classifier(
            x, y, epochs=epochs, seed=self.seed, device=self.device, flip=True,
            progress=self.progress, desc="domain classifier",
        )  # fmt: skip
        info = {
            "train_images": {"A": len(xa), "B": len(xb)},
            "train_acc": classifiers.accuracy(net, x, y, self.device),
            "epochs": epochs,
            "key": key,
        }
        save_cached(path, key, net, info)
        info.update(cached=False, path=str(path))
        return net, info

    def run(
        self, G_A: nn.Module, G_B: nn.Module
    ) -> tuple[dict[str, float], dict[str, dict[str, torch.Tensor]]]:
        """Translate both test sets and score them.

        Returns:
            (flat metrics, images by direction: {"real", "fake", "rec"} (N, C, H, W) in [-1, 1]).
        """
        modes = [(net, net.training) for net in (G_A, G_B)]
        G_A.eval()
        G_B.eval()
        try:
            fake_b = _apply(G_A, self.real["A"], self.batch_size)  # G_A(A)
            rec_a = _apply(G_B, fake_b, self.batch_size)  # G_B(G_A(A))
            fake_a = _apply(G_B, self.real["B"], self.batch_size)  # G_B(B)
            rec_b = _apply(G_A, fake_a, self.batch_size)  # G_A(G_B(B))
        finally:
            for net, mode in modes:
                net.train(mode)
        out: dict[str, float] = {}
        images: dict[str, dict[str, torch.Tensor]] = {}
        for (direction, src, tgt), fake, rec in zip(
            DIRECTIONS, (fake_b, fake_a), (rec_a, rec_b), strict=True
        ):
            real = self.real[src]
            images[direction] = {"real": real, "fake": fake, "rec": rec}
            feats = self._features(fake, f"features {direction}")
            out[f"fid_{direction}"] = metrics.fid(self.real_features[tgt], feats)
            kid, kid_std = metrics.kid(self.real_features[tgt], feats, seed=self.seed)
            out[f"kid_{direction}"], out[f"kid_std_{direction}"] = kid, kid_std
            pred = classifiers.predict(self.classifier, fake, self.device)
            out[f"domain_acc_{direction}"] = (pred == LABEL[tgt]).float().mean().item()
            if self.c2st:
                test = classifiers.two_sample_test(
                    self.real[tgt], fake, seed=self.seed + LABEL[src], epochs=self.c2st_epochs,
                    device=self.device, progress=self.progress, desc=f"C2ST {direction}",
                )  # fmt: skip
                out[f"c2st_acc_{direction}"] = test["acc"]
                out[f"c2st_stderr_{direction}"] = test["stderr"]
                out[f"c2st_pvalue_{direction}"] = test["p_value"]
            out[f"cycle_l1_{src}"] = metrics.l1(rec, real).mean().item()
            out[f"cycle_psnr_{src}"] = metrics.psnr(rec, real).mean().item()
            out[f"cycle_ssim_{src}"] = metrics.ssim(rec, real).mean().item()
            if self.truth:
                truth = self.truth[src]
                out[f"truth_l1_{direction}"] = metrics.l1(fake, truth).mean().item()
                out[f"truth_psnr_{direction}"] = metrics.psnr(fake, truth).mean().item()
                out[f"truth_ssim_{direction}"] = metrics.ssim(fake, truth).mean().item()
                out[f"input_truth_l1_{direction}"] = metrics.l1(real, truth).mean().item()
                out[f"input_truth_psnr_{direction}"] = metrics.psnr(real, truth).mean().item()
                out[f"input_truth_ssim_{direction}"] = metrics.ssim(real, truth).mean().item()
                out[f"shape_iou_{direction}"] = metrics.shape_iou(fake, truth).mean().item()
                out[f"input_shape_iou_{direction}"] = metrics.shape_iou(real, truth).mean().item()
                out[f"shape_change_{direction}"] = (
                    metrics.shape_change(real, fake, truth).mean().item()
                )
        return out, images

    def __call__(self, G_A: nn.Module, G_B: nn.Module) -> dict[str, float]:
        """Flat metrics of G_A (A -> B) and G_B (B -> A); see the class docstring."""
        return self.run(G_A, G_B)[0]


class _Features(nn.Module):
    """The domain classifier's penultimate layer as a feature network: (N, C, H, W) -> (N, D)."""

    def __init__(self, net: classifiers.SmallConvNet) -> None:
        super().__init__()
        self.net = net
        self.num_features = net.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features(images)


def save_cached(path: Path, key: str, net: classifiers.SmallConvNet, info: dict) -> None:
    """Cache the domain classifier (atomic write); a failure only costs a retrain next time."""
    try:
        classifiers.save_cached(path, key, net, info)
    except GantransError as exc:
        log.warning("could not cache the domain classifier: %s", exc)


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
def run_dir_of(ckpt: Path) -> Path:
    """The run directory of a checkpoint: <run>/checkpoints/x.pt -> <run>; else its folder."""
    ckpt = ckpt.resolve()
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def resolve_dataset(recorded: Mapping[str, Any] | None, cfg: DictConfig) -> dict[str, Any]:
    """The dataset config to evaluate on: the checkpoint's, changed by the command line.

    `dataset=NAME` (a whole config of the dataset group) replaces the recorded one; plain
    `dataset.KEY=VALUE` overrides change keys of the recorded one.
    """
    node = cfg.dataset
    if dataclasses.is_dataclass(OmegaConf.get_type(node)):  # dataset=NAME picked a group option
        check_known_keys(node, "dataset.")
        return to_plain(node)
    override = to_plain(node) or {}
    if not recorded:
        raise ConfigError(
            "the checkpoint records no dataset: pass dataset=shapes, or dataset=folder "
            "dataset.root=DIR"
        )
    unknown = sorted(set(override) - set(recorded))
    if unknown:
        raise ConfigError(
            f"dataset.{unknown[0]} is not a key of the checkpoint's dataset "
            f"({recorded.get('name')}); known keys: {', '.join(sorted(recorded))}"
        )
    return {**recorded, **override}


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate `cfg.ckpt` as `gantrans evaluate` does and write the reports; returns the report."""
    from gantrans import eval_report
    from gantrans.translate import load_generator

    check_known_keys(cfg)
    if cfg.num_samples < 1:
        raise ConfigError(f"num_samples must be positive, got {cfg.num_samples}")
    device = resolve_device(cfg.device)
    ckpt_path = Path(cfg.ckpt)
    ckpt = load_checkpoint(ckpt_path)
    channels = int(ckpt["arch"]["generator"]["in_channels"])
    dataset = resolve_dataset((ckpt.get("config") or {}).get("dataset"), cfg)
    dataset["channels"] = channels
    run_dir = run_dir_of(ckpt_path)
    out_dir = Path(cfg.output_dir) if cfg.output_dir else run_dir / "eval"
    G_A, _ = load_generator(ckpt_path, "AtoB", device)
    G_B, _ = load_generator(ckpt_path, "BtoA", device)
    evaluator = Evaluator(
        dataset, channels, device, run_dir / "eval", cfg.features, cfg.max_images, cfg.seed,
        inception_weights=cfg.inception_weights, classifier_max_images=cfg.classifier_max_images,
        classifier_epochs=cfg.classifier_epochs, c2st_epochs=cfg.c2st_epochs,
        batch_size=cfg.batch_size, progress=cfg.progress,
    )  # fmt: skip
    scores, images = evaluator.run(G_A, G_B)
    report = {
        "gantrans_version": __version__,
        "checkpoint": {
            "path": str(ckpt_path.resolve()),
            "step": ckpt.get("step"),
            "epoch": ckpt.get("epoch"),
        },
        "dataset": dataset,
        "settings": {**evaluator.info, "device": str(device)},
        "metrics": scores,
        "lower_is_better": {k: LOWER_IS_BETTER[k] for k in scores},
    }
    eval_report.write(out_dir, report, images, cfg.num_samples)
    for line in eval_report.summary(report):
        log.info(line)
    log.info("wrote %s and %s", out_dir / eval_report.JSON_NAME, out_dir / eval_report.MD_NAME)
    return report


def main(cfg: DictConfig) -> None:
    """Entry point of `gantrans evaluate`."""
    evaluate_checkpoint(cfg)
