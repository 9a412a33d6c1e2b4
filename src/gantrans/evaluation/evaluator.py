"""The Evaluator: translations scored on the held-out test images of a dataset (FID, KID, the
judges' domain figures, controls, two-sample test, ground truth where known)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gantrans.config import EvaluateConfig
from gantrans.data import (
    DataError,
    build_domains,
    is_paired,
)
from gantrans.errors import ConfigError
from gantrans.evaluation import classifiers, controls, judges, metrics
from gantrans.evaluation.images import apply, load_images, quantize, spaced
from gantrans.evaluation.names import DIRECTIONS

log = logging.getLogger("gantrans")

FEATURES = ("inception", "classifier")
FID_RESIZE = ("clean", "legacy")
LABEL = {"A": 0, "B": 1}
MIN_TEST_IMAGES = 4  # the two-sample test needs two images per class and half
JUDGE_SEEDS = (0, 1, 2)
"""The panel's seeds, one per judge: fixed, not the evaluation's or the run's, so that runs of
any seed are scored by the same judges (the judges differ in seed as well as in architecture)."""


@dataclass(frozen=True)
class EvaluatorOptions:
    """How an Evaluator scores. The defaults are those of `gantrans evaluate`, stated once in
    gantrans.config.EvaluateConfig (the keys of the same names).

    Args:
        features: "classifier" (the first judge's penultimate layer: offline, not comparable to
            published FID) or "inception" (the standard FID Inception-v3).
        max_images: Test images per domain (evenly spaced); None = all.
        seed: Seeds the two-sample-test splits, the noise control and KID's subsets (the judges'
            seeds are fixed: JUDGE_SEEDS).
        inception_weights: A local file of the Inception weights (else the torch hub cache,
            downloading on first use).
        fid_resize: "clean" (antialiased bicubic, as clean-fid) or "legacy" (torch-fidelity's
            TensorFlow-1 bilinear) resizing to Inception's 299 px.
        judge_max_images: Real training images per domain the judges learn from (None = all).
        judge_epochs, judge_patience: The judges' longest training and early-stopping patience.
        c2st: Run the two-sample test (a fresh classifier per direction and call).
        c2st_epochs: Training epochs of each two-sample-test classifier.
        controls: Score the controls (degraded inputs, reconstructions, the second judge).
        batch_size: Images per forward pass.
        progress: Show tqdm progress bars.
        cache_dir: Folder of the judge cache (default: $GANTRANS_CACHE/judges).
        judge_set: Use these judges instead of the cached or trained ones (tests, experiments).
    """

    features: str = EvaluateConfig.features
    max_images: int | None = EvaluateConfig.max_images
    seed: int = EvaluateConfig.seed
    inception_weights: str | Path | None = EvaluateConfig.inception_weights
    fid_resize: str = EvaluateConfig.fid_resize
    judge_max_images: int | None = EvaluateConfig.judge_max_images
    judge_epochs: int = EvaluateConfig.judge_epochs
    judge_patience: int = EvaluateConfig.judge_patience
    c2st: bool = EvaluateConfig.c2st
    c2st_epochs: int = EvaluateConfig.c2st_epochs
    controls: bool = EvaluateConfig.controls
    batch_size: int = EvaluateConfig.batch_size
    progress: bool = EvaluateConfig.progress
    cache_dir: Path | None = None
    judge_set: Sequence[judges.Judge] | None = None

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ConfigError(
                f"features={self.features} is unknown: choose inception or classifier"
            )
        if self.fid_resize not in FID_RESIZE:
            raise ConfigError(f"fid_resize={self.fid_resize} is unknown: choose clean or legacy")
        for name in ("max_images", "judge_max_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be positive or null, got {value}")
        if min(self.judge_epochs, self.judge_patience, self.c2st_epochs, self.batch_size) < 1:
            raise ConfigError(
                "judge_epochs, judge_patience, c2st_epochs and batch_size must be positive"
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], **changes: Any) -> EvaluatorOptions:
        """The options of a `gantrans evaluate` config (its keys of the same names), changed by
        `changes`."""
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: cfg[k] for k in names if k in cfg}, **changes})


class Evaluator:
    """Scores translations on the test images of a dataset; built once, called many times.

    Construction loads the real test images, gets the judges (from the cache, or trained on
    the real training images: see gantrans.evaluation.judges), measures their balanced accuracy
    on the real test images, and computes what does not depend on the translations: the real
    images' features and the controls on real source images (untranslated, blurred, noisy,
    JPEG-compressed). Every call then only translates and scores, so it can run periodically
    during training::

        evaluator = Evaluator(cfg["dataset"], channels, device, EvaluatorOptions(max_images=200))
        scores = evaluator(model.G_A, model.G_B)  # {"fid_AtoB": ..., "cycle_psnr_A": ...}
        better = scores[m] < best if LOWER_IS_BETTER[m] else scores[m] > best

    `score` scores one direction's translations made by anything (a folder of images).
    Metric names: see gantrans.evaluation.names.

    Args:
        dataset_cfg: The dataset config section as a plain dict.
        channels: Image channels of the translations (1 or 3).
        device: Where the judges and the feature network run.
        options: How to score (EvaluatorOptions; its defaults are `gantrans evaluate`'s).
    """

    def __init__(
        self,
        dataset_cfg: Mapping[str, Any],
        channels: int,
        device: torch.device | str,
        options: EvaluatorOptions | None = None,
    ) -> None:
        o = options if options is not None else EvaluatorOptions()
        self.options = o
        self.dataset_cfg = dict(dataset_cfg)
        self.channels = channels
        self.device = torch.device(device)
        self.features, self.fid_resize, self.seed = o.features, o.fid_resize, o.seed
        self.c2st, self.c2st_epochs = o.c2st, o.c2st_epochs
        self.with_controls, self.batch_size, self.progress = o.controls, o.batch_size, o.progress
        # the Inception weights first: offline, fail before any slow work
        inception = (
            metrics.InceptionFeatures(o.inception_weights, o.progress, resize=o.fid_resize)
            if o.features == "inception"
            else None
        )
        self._load_test_images()
        self._load_truth()
        self.judges = list(o.judge_set if o.judge_set is not None else self._judge_panel())
        self.judge_info = self._measure_judges()  # the panel: every figure comes from all
        self.feature_net: nn.Module = (
            inception if inception is not None else _Features(self.judges[0].net)
        )
        self.feature_net = self.feature_net.to(self.device).eval()
        self.real_features = {
            d: self._features(img, f"features real {d}") for d, img in self.real.items()
        }
        self.control_rates = {d: self._control_rates(src, tgt) for d, src, tgt in DIRECTIONS}

    def _load_test_images(self) -> None:
        """The real test images of both domains, their indices and names."""
        limit, progress = self.options.max_images, self.progress
        test_a, test_b = build_domains(self.dataset_cfg, "test", self.channels)
        self.test_domains = {"A": test_a, "B": test_b}
        self.indices = {d: spaced(len(dom), limit) for d, dom in self.test_domains.items()}
        # 8-bit like the files a folder of translations holds (the shapes set renders floats)
        self.real = {
            "A": quantize(load_images(test_a, limit, "test A", progress)),
            "B": quantize(load_images(test_b, limit, "test B", progress)),
        }
        for d, images in self.real.items():
            if len(images) < MIN_TEST_IMAGES:
                raise DataError(
                    f"the test split of domain {d} has {len(images)} image(s): "
                    f"evaluation needs at least {MIN_TEST_IMAGES} per domain"
                )
        self.names = {
            d: [dom.name(i) for i in self.indices[d]] for d, dom in self.test_domains.items()
        }

    def _load_truth(self) -> None:
        """Ground-truth translations: the shapes' counterparts; a paired set's partners (test
        image i of one side is the true target of image i of the other); and LPIPS for them."""
        self.truth: dict[str, torch.Tensor] = {}
        self.shapes = self.dataset_cfg.get("name") in ("shapes", "shapes_paired")
        self.paired = is_paired(self.dataset_cfg)
        if self.paired:
            self.truth = {"A": self.real["B"], "B": self.real["A"]}
        elif self.shapes:
            for d, domain in self.test_domains.items():
                truth = torch.stack([domain.counterpart(i) for i in self.indices[d]])
                self.truth[d] = quantize(truth)
        self.not_computed: dict[str, str] = {}  # metric -> why it is missing (LPIPS offline)
        self.lpips: nn.Module | None = None
        if self.paired:
            try:
                self.lpips = metrics.LPIPSDistance(self.progress).to(self.device)
            except metrics.LPIPSUnavailable as exc:
                log.warning("%s; the other metrics are computed", exc)
                for direction, _, _ in DIRECTIONS:
                    for name in ("truth_lpips", "input_truth_lpips"):
                        self.not_computed[f"{name}_{direction}"] = str(exc)

    def _judge_panel(self) -> list[judges.Judge]:
        """The judges of this dataset: cached, or trained on its real training images."""
        o, progress = self.options, self.progress
        # every training image: balancing is a choice of how training samples them
        judge_data = {**self.dataset_cfg, "balance": False}
        train_a, train_b = build_domains(judge_data, "train", self.channels)
        test_a, test_b = self.test_domains["A"], self.test_domains["B"]
        identity = {
            "dataset": judges.dataset_identity(self.dataset_cfg),
            "channels": self.channels,
            "train_images": [len(train_a), len(train_b)],
            "test_images": [len(test_a), len(test_b)],
            # the images the judges learn from (evenly spaced, so the count decides which): a
            # cap above the set's size trains the same judges as no cap
            "judge_images": [
                len(train) if o.judge_max_images is None else min(len(train), o.judge_max_images)
                for train in (train_a, train_b)
            ],
        }

        def load_training() -> tuple[torch.Tensor, torch.Tensor]:
            side = judges.MAX_INPUT
            xa = load_images(train_a, o.judge_max_images, "train A", progress, side)
            xb = load_images(train_b, o.judge_max_images, "train B", progress, side)
            return torch.cat([xa, xb]), torch.tensor([0] * len(xa) + [1] * len(xb))

        return judges.judges_for(
            identity, str(self.dataset_cfg.get("name", "dataset")), load_training,
            seeds=list(JUDGE_SEEDS), device=self.device, cache_dir=o.cache_dir,
            max_epochs=o.judge_epochs, patience=o.judge_patience, progress=progress,
        )  # fmt: skip

    def _measure_judges(self) -> list[dict[str, Any]]:
        """Each judge's numbers, with its balanced accuracy on the real test images."""
        x = torch.cat([self.real["A"], self.real["B"]])
        y = torch.tensor([0] * len(self.real["A"]) + [1] * len(self.real["B"]))
        info = []
        for judge in self.judges:
            balanced, per_class = judges.balanced_accuracy(judge.predict(x), y)
            info.append(
                {
                    **judge.info,
                    "test_balanced_acc": balanced,
                    "test_acc_A": per_class[0],
                    "test_acc_B": per_class[1],
                    "test_images": [len(self.real["A"]), len(self.real["B"])],
                    "reliable": balanced >= judges.RELIABLE_BALANCED_ACC,
                }
            )
        if not info[0]["reliable"]:
            log.warning(
                "warning: the judge's balanced accuracy on the real test images is %.1f%% "
                "(below %.0f%%): its domain figures are not reliable",
                100 * info[0]["test_balanced_acc"], 100 * judges.RELIABLE_BALANCED_ACC,
            )  # fmt: skip
        return info

    @property
    def info(self) -> dict[str, Any]:
        """The settings and the judges' numbers, for a report."""
        n = {d: len(x) for d, x in self.real.items()}
        return {
            "features": self.features,
            "fid_resize": self.fid_resize if self.features == "inception" else None,
            "feature_dim": int(self.real_features["A"].shape[1]),
            "test_images": n,
            "kid_subset_size": metrics.kid_subset_size(min(n.values()), min(n.values())),
            "kid_subsets": metrics.KID_SUBSETS,
            "c2st_epochs": self.c2st_epochs if self.c2st else None,
            "seed": self.seed,
            "shapes_truth": bool(self.truth) and not self.paired,
            "paired_truth": self.paired,
            "judges": [dict(j) for j in self.judge_info],
            "judge_reliable_threshold": judges.RELIABLE_BALANCED_ACC,
            "controls": {
                "blur_sigma": controls.blur_sigma(max(self.real["A"].shape[-2:])),
                "noise_std": controls.NOISE_STD,
                "jpeg_quality": controls.JPEG_QUALITY,
            }
            if self.with_controls
            else None,
        }

    def _features(self, images: torch.Tensor, desc: str) -> torch.Tensor:
        return metrics.extract_features(
            self.feature_net, images, self.device, self.batch_size, desc, self.progress
        )

    def _control_rates(self, src: str, tgt: str) -> dict[str, float]:
        """Target rates of real source images: untranslated, and (with controls) degraded."""
        judge, real, target = self.judges[0], self.real[src], LABEL[tgt]
        inputs = [j.target_rate(real, target) for j in self.judges]
        rates = {"input_domain_acc": inputs[0], "panel_input_domain_acc": sum(inputs) / len(inputs)}
        if self.with_controls:
            for kind in controls.DEGRADATIONS:
                degraded = controls.degrade(real, kind, seed=self.seed + LABEL[src])
                rates[f"{kind}_domain_acc"] = judge.target_rate(degraded, target)
        return rates

    def score(
        self,
        direction: str,
        fake: torch.Tensor,
        *,
        inputs: torch.Tensor | None = None,
        truth: torch.Tensor | None = None,
        rec: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """Score one direction's translations against the real test images of the target domain.

        Args:
            direction: "AtoB" or "BtoA".
            fake: (N, C, H, W) translations in [-1, 1], of the evaluator's image size.
            inputs: (N, C, H, W) the input of each translation, when known: adds content_l1.
            truth: (N, C, H, W) the true translation of each input (shapes; a paired set's
                targets): adds truth_* (and with the lpips package truth_lpips_*).
            rec: (N, C, H, W) the reconstructions of `inputs` (needs both generators): adds
                cycle_* and rec_domain_acc.

        Returns:
            Flat metrics with the direction's suffix (cycle metrics: the source domain's).
        """
        src, tgt = domains_of(direction)
        fake = quantize(fake)
        judge = self.judges[0]
        out: dict[str, float] = {}
        feats = self._features(fake, f"features {direction}")
        out[f"fid_{direction}"] = metrics.fid(self.real_features[tgt], feats)
        kid, kid_std = metrics.kid(self.real_features[tgt], feats, seed=self.seed)
        out[f"kid_{direction}"], out[f"kid_std_{direction}"] = kid, kid_std
        out.update(panel_scores([j.predict(fake) for j in self.judges], LABEL[tgt], direction))
        for name, value in self.control_rates[direction].items():
            out[f"{name}_{direction}"] = value
        if self.c2st:
            test = classifiers.two_sample_test(
                self.real[tgt], fake, seed=self.seed + LABEL[src], epochs=self.c2st_epochs,
                device=self.device, progress=self.progress, desc=f"C2ST {direction}",
            )  # fmt: skip
            out[f"c2st_acc_{direction}"] = test["acc"]
            out[f"c2st_stderr_{direction}"] = test["stderr"]
            out[f"c2st_pvalue_{direction}"] = test["p_value"]
        if inputs is not None:
            out[f"content_l1_{direction}"] = metrics.l1(fake, inputs).mean().item()
        if rec is not None and inputs is not None:
            rec = quantize(rec)
            if self.with_controls:
                out[f"rec_domain_acc_{direction}"] = judge.target_rate(rec, LABEL[tgt])
            out[f"cycle_l1_{src}"] = metrics.l1(rec, inputs).mean().item()
            out[f"cycle_psnr_{src}"] = metrics.psnr(rec, inputs).mean().item()
            out[f"cycle_ssim_{src}"] = metrics.ssim(rec, inputs).mean().item()
        if truth is not None and inputs is not None:
            out[f"truth_l1_{direction}"] = metrics.l1(fake, truth).mean().item()
            out[f"truth_psnr_{direction}"] = metrics.psnr(fake, truth).mean().item()
            out[f"truth_ssim_{direction}"] = metrics.ssim(fake, truth).mean().item()
            out[f"input_truth_l1_{direction}"] = metrics.l1(inputs, truth).mean().item()
            out[f"input_truth_psnr_{direction}"] = metrics.psnr(inputs, truth).mean().item()
            out[f"input_truth_ssim_{direction}"] = metrics.ssim(inputs, truth).mean().item()
            if self.lpips is not None:
                for key, x in (
                    (f"truth_lpips_{direction}", fake),
                    (f"input_truth_lpips_{direction}", inputs),
                ):
                    distances = metrics.paired_distance(
                        self.lpips, x, truth, self.device, self.batch_size
                    )
                    out[key] = distances.mean().item()
        if truth is not None and inputs is not None and self.shapes:
            out[f"shape_iou_{direction}"] = metrics.shape_iou(fake, truth).mean().item()
            out[f"input_shape_iou_{direction}"] = metrics.shape_iou(inputs, truth).mean().item()
            out[f"shape_change_{direction}"] = (
                metrics.shape_change(inputs, fake, truth).mean().item()
            )
        return out

    def run(
        self, generators: Mapping[str, nn.Module]
    ) -> tuple[dict[str, float], dict[str, dict[str, torch.Tensor]]]:
        """Translate the test images of each direction's source domain and score them.

        Args:
            generators: {"AtoB": G_A, "BtoA": G_B}, or one of them. With both, each direction
                also gets its reconstructions (the other generator applied to its output).

        Returns:
            (flat metrics, images by direction: {"real", "fake"[, "rec"]} (N, C, H, W) in [-1, 1]).
        """
        out: dict[str, float] = {}
        images: dict[str, dict[str, torch.Tensor]] = {}
        for direction, src, _ in DIRECTIONS:
            if direction not in generators:
                continue
            real = self.real[src]
            fake = apply(generators[direction], real, self.batch_size)
            reverse = generators.get(_reverse(direction))
            rec = apply(reverse, fake, self.batch_size) if reverse is not None else None
            images[direction] = {"real": real, "fake": fake}
            if rec is not None:
                images[direction]["rec"] = rec
            out.update(self.score(direction, fake, inputs=real, truth=self.truth.get(src), rec=rec))
        return out, images

    def __call__(self, G_A: nn.Module | None, G_B: nn.Module | None = None) -> dict[str, float]:
        """Flat metrics of G_A (A -> B) and G_B (B -> A); see `run`."""
        nets = {d: g for d, g in (("AtoB", G_A), ("BtoA", G_B)) if g is not None}
        return self.run(nets)[0]


def panel_scores(preds: Sequence[torch.Tensor], target: int, direction: str) -> dict[str, float]:
    """The domain figures of a panel of judges on one direction's translations.

    Args:
        preds: Each judge's predicted domains (N,) of the same translations, the first judge's
            first.
        target: The target domain's label (0 = A, 1 = B).

    Returns:
        ``panel_domain_acc`` (the mean of the judges' shares classified as the target: the
        figure that stands for a run), ``panel_min_`` / ``panel_max_`` / ``panel_spread_
        domain_acc`` (the lowest, the highest and their gap), ``panel_agreement`` (the share
        of translations every judge puts in the same domain), and the judges' own figures under
        the older keys: ``domain_acc`` (the first judge), ``judge2_domain_acc``,
        ``judge_agreement`` (the first two judges), ``judge3_domain_acc``, ...; each with the
        direction's suffix.
    """
    rates = [(p == target).float().mean().item() for p in preds]
    stacked = torch.stack(list(preds))  # (judges, N)
    out = {
        f"panel_domain_acc_{direction}": sum(rates) / len(rates),
        f"panel_min_domain_acc_{direction}": min(rates),
        f"panel_max_domain_acc_{direction}": max(rates),
        f"panel_spread_domain_acc_{direction}": max(rates) - min(rates),
        f"panel_agreement_{direction}": (stacked == stacked[0]).all(0).float().mean().item(),
        f"domain_acc_{direction}": rates[0],
    }
    for k, rate in enumerate(rates[1:], start=2):
        out[f"judge{k}_domain_acc_{direction}"] = rate
    if len(preds) > 1:
        out[f"judge_agreement_{direction}"] = (preds[1] == preds[0]).float().mean().item()
    return out


def domains_of(direction: str) -> tuple[str, str]:
    for d, src, tgt in DIRECTIONS:
        if d == direction:
            return src, tgt
    raise ConfigError(f"direction={direction} is unknown: choose AtoB or BtoA")


def _reverse(direction: str) -> str:
    return "BtoA" if direction == "AtoB" else "AtoB"


class _Features(nn.Module):
    """A judge's penultimate layer as a feature network: (N, C, H, W) -> (N, D)."""

    def __init__(self, net: judges.JudgeNet) -> None:
        super().__init__()
        self.net = net
        self.num_features = net.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features(images)


def checks(scores: Mapping[str, float], info: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per direction: the reasons to distrust its domain figures (judge accuracy, controls)."""
    out = {}
    first = info["judges"][0]
    for direction, src, tgt in DIRECTIONS:
        if f"domain_acc_{direction}" not in scores:
            continue
        reasons = []
        if not first["reliable"]:
            reasons.append(
                f"the judge's balanced accuracy on real test images is "
                f"{100 * first['test_balanced_acc']:.1f}%, below "
                f"{100 * info['judge_reliable_threshold']:.0f}%: its domain figures are not "
                "reliable"
            )
        if f"input_domain_acc_{direction}" in scores:
            n = info["test_images"][src]
            reasons += controls.judge_checks(dict(scores), direction, tgt, n)
        reasons += controls.panel_checks(dict(scores), direction, tgt, info["judges"])
        out[direction] = {"trustworthy": not reasons, "reasons": reasons}
    return out
