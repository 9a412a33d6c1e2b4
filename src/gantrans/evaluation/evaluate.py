"""`gantrans evaluate`: score translations (a checkpoint's, or a folder's) on held-out test images."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from gantrans import __version__, checkpoint
from gantrans.applying.loader import generator_of
from gantrans.config import check_known_keys, to_plain
from gantrans.data import (
    DataError,
    DomainDataset,
    build_domains,
    is_paired,
    list_images,
    open_image,
    pil_to_tensor,
)
from gantrans.errors import ConfigError
from gantrans.evaluation import classifiers, controls, judges, metrics
from gantrans.evaluation.names import DIRECTIONS, LOWER_IS_BETTER, NEEDS_GENERATOR, NEEDS_PAIRS
from gantrans.runtime import resolve_device

log = logging.getLogger("gantrans")

FEATURES = ("inception", "classifier")
LABEL = {"A": 0, "B": 1}
MIN_TEST_IMAGES = 4  # the two-sample test needs two images per class and half
JUDGE_SEEDS = (0, 1, 2)
"""The panel's seeds, one per judge: fixed, not the evaluation's or the run's, so that runs of
any seed are scored by the same judges (the judges differ in seed as well as in architecture)."""


def _spaced(n_total: int, limit: int | None) -> list[int]:
    """`limit` indices spread evenly over range(n_total) (all of them when limit is None)."""
    if limit is None or limit >= n_total:
        return list(range(n_total))
    return torch.linspace(0, n_total - 1, limit).round().long().tolist()


def _same_size(images: list[torch.Tensor], what: str) -> torch.Tensor:
    sizes = {tuple(x.shape) for x in images}
    if len(sizes) > 1:
        raise DataError(
            f"the {what} images come in {len(sizes)} sizes: use a dataset.preprocess that "
            "gives one size (resize_and_crop, crop or scale_width_and_crop)"
        )
    return torch.stack(images)


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
    return _same_size(images, what)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round (N, C, H, W) images in [-1, 1] to the 256 levels of an 8-bit file.

    Translations are scored as they would be saved, so a checkpoint and a folder of its saved
    outputs get the same numbers, and no metric sees sub-grey-level detail real images lack.
    """
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


@torch.no_grad()
def apply(net: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A generator over (N, C, H, W) images in batches, on its own device; 8-bit, on the CPU."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        out = [
            net(images[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
    finally:
        net.train(was_training)
    return quantize(torch.cat(out))


class Evaluator:
    """Scores translations on the test images of a dataset; built once, called many times.

    Construction loads the real test images, gets the two judges (from the cache, or trained on
    the real training images: see gantrans.evaluation.judges), measures their balanced accuracy on the
    real test images, and computes what does not depend on the translations: the real images'
    features and the controls on real source images (untranslated, blurred, noisy,
    JPEG-compressed). Every call then only translates and scores, so it can run periodically
    during training::

        evaluator = Evaluator(cfg["dataset"], channels, device)
        scores = evaluator(model.G_A, model.G_B)  # {"fid_AtoB": ..., "cycle_psnr_A": ...}
        better = scores[m] < best if LOWER_IS_BETTER[m] else scores[m] > best

    `score` scores one direction's translations made by anything (a folder of images).
    Metric names: see gantrans.evaluation.names.

    Args:
        dataset_cfg: The dataset config section as a plain dict.
        channels: Image channels of the translations (1 or 3).
        device: Where the judges and the feature network run.
        features: "classifier" (the first judge's penultimate layer: offline, not comparable to
            published FID) or "inception" (the standard FID Inception-v3).
        max_images: Test images per domain (evenly spaced); None = all.
        seed: Seeds the judges, the two-sample-test splits, the noise control and KID's subsets.
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

    def __init__(
        self,
        dataset_cfg: Mapping[str, Any],
        channels: int,
        device: torch.device | str,
        features: str = "classifier",
        max_images: int | None = None,
        seed: int = 0,
        *,
        inception_weights: str | Path | None = None,
        fid_resize: str = "clean",
        judge_max_images: int | None = None,
        judge_epochs: int = 10,
        judge_patience: int = 3,
        c2st: bool = True,
        c2st_epochs: int = 20,
        controls: bool = True,
        batch_size: int = 32,
        progress: bool = False,
        cache_dir: Path | None = None,
        judge_set: list[judges.Judge] | None = None,
    ) -> None:
        if features not in FEATURES:
            raise ConfigError(f"features={features} is unknown: choose inception or classifier")
        for name, value in (("max_images", max_images), ("judge_max_images", judge_max_images)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be positive or null, got {value}")
        if min(judge_epochs, judge_patience, c2st_epochs, batch_size) < 1:
            raise ConfigError(
                "judge_epochs, judge_patience, c2st_epochs and batch_size must be positive"
            )
        self.dataset_cfg = dict(dataset_cfg)
        self.channels = channels
        self.device = torch.device(device)
        self.features = features
        self.fid_resize = fid_resize
        self.seed = seed
        self.c2st = c2st
        self.c2st_epochs = c2st_epochs
        self.with_controls = controls
        self.batch_size = batch_size
        self.progress = progress
        # the Inception weights first: offline, fail before any slow work
        inception = (
            metrics.InceptionFeatures(inception_weights, progress, resize=fid_resize)
            if features == "inception"
            else None
        )

        test_a, test_b = build_domains(self.dataset_cfg, "test", channels)
        self.test_domains = {"A": test_a, "B": test_b}
        self.indices = {d: _spaced(len(dom), max_images) for d, dom in self.test_domains.items()}
        # 8-bit like the files a folder of translations holds (the shapes set renders floats)
        self.real = {
            "A": quantize(load_images(test_a, max_images, "test A", progress)),
            "B": quantize(load_images(test_b, max_images, "test B", progress)),
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
        # ground-truth translations: the shapes' counterparts; a paired set's partners (test
        # image i of one side is the true target of image i of the other)
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
                self.lpips = metrics.LPIPSDistance(progress).to(self.device)
            except metrics.LPIPSUnavailable as exc:
                log.warning("%s; the other metrics are computed", exc)
                for direction, _, _ in DIRECTIONS:
                    for name in ("truth_lpips", "input_truth_lpips"):
                        self.not_computed[f"{name}_{direction}"] = str(exc)

        if judge_set is None:
            # every training image: balancing is a choice of how training samples them
            judge_data = {**self.dataset_cfg, "balance": False}
            train_a, train_b = build_domains(judge_data, "train", channels)
            identity = {
                "dataset": judges.dataset_identity(self.dataset_cfg),
                "channels": channels,
                "train_images": [len(train_a), len(train_b)],
                "test_images": [len(test_a), len(test_b)],
                # the images the judges learn from (evenly spaced, so the count decides
                # which): a cap above the set's size trains the same judges as no cap
                "judge_images": [
                    len(train) if judge_max_images is None else min(len(train), judge_max_images)
                    for train in (train_a, train_b)
                ],
            }

            def load_training() -> tuple[torch.Tensor, torch.Tensor]:
                side = judges.MAX_INPUT
                xa = load_images(train_a, judge_max_images, "train A", progress, side)
                xb = load_images(train_b, judge_max_images, "train B", progress, side)
                return torch.cat([xa, xb]), torch.tensor([0] * len(xa) + [1] * len(xb))

            judge_set = judges.judges_for(
                identity, str(self.dataset_cfg.get("name", "dataset")), load_training,
                seeds=list(JUDGE_SEEDS), device=self.device, cache_dir=cache_dir,
                max_epochs=judge_epochs, patience=judge_patience, progress=progress,
            )  # fmt: skip
        self.judges = list(judge_set)  # the panel: every figure of a direction comes from all
        x = torch.cat([self.real["A"], self.real["B"]])
        y = torch.tensor([0] * len(self.real["A"]) + [1] * len(self.real["B"]))
        self.judge_info = []
        for judge in self.judges:
            balanced, per_class = judges.balanced_accuracy(judge.predict(x), y)
            self.judge_info.append(
                {
                    **judge.info,
                    "test_balanced_acc": balanced,
                    "test_acc_A": per_class[0],
                    "test_acc_B": per_class[1],
                    "test_images": [len(self.real["A"]), len(self.real["B"])],
                    "reliable": balanced >= judges.RELIABLE_BALANCED_ACC,
                }
            )
        if not self.judge_info[0]["reliable"]:
            log.warning(
                "warning: the judge's balanced accuracy on the real test images is %.1f%% "
                "(below %.0f%%): its domain figures are not reliable",
                100 * self.judge_info[0]["test_balanced_acc"], 100 * judges.RELIABLE_BALANCED_ACC,
            )  # fmt: skip

        self.feature_net: nn.Module = (
            inception if inception is not None else _Features(self.judges[0].net)
        )
        self.feature_net = self.feature_net.to(self.device).eval()
        self.real_features = {
            d: self._features(img, f"features real {d}") for d, img in self.real.items()
        }
        self.control_rates = {d: self._control_rates(src, tgt) for d, src, tgt in DIRECTIONS}

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
        src, tgt = _domains(direction)
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


def _domains(direction: str) -> tuple[str, str]:
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
            "no dataset is known: pass dataset=NAME (shapes, smiles, folder dataset.root=DIR, ...)"
        )
    unknown = sorted(set(override) - set(recorded))
    if unknown:
        raise ConfigError(
            f"dataset.{unknown[0]} is not a key of the checkpoint's dataset "
            f"({recorded.get('name')}); known keys: {', '.join(sorted(recorded))}"
        )
    return {**recorded, **override}


def _evaluator(cfg: DictConfig, dataset: dict, channels: int, device: torch.device) -> Evaluator:
    return Evaluator(
        dataset, channels, device, cfg.features, cfg.max_images, cfg.seed,
        inception_weights=cfg.inception_weights, fid_resize=cfg.fid_resize,
        judge_max_images=cfg.judge_max_images, judge_epochs=cfg.judge_epochs,
        judge_patience=cfg.judge_patience, c2st=cfg.c2st, c2st_epochs=cfg.c2st_epochs,
        controls=cfg.controls, batch_size=cfg.batch_size, progress=cfg.progress,
    )  # fmt: skip


def _check_command(cfg: DictConfig) -> None:
    check_known_keys(cfg)
    if cfg.num_samples < 1:
        raise ConfigError(f"num_samples must be positive, got {cfg.num_samples}")
    if cfg.fid_resize not in ("clean", "legacy"):
        raise ConfigError(f"fid_resize={cfg.fid_resize} is unknown: choose clean or legacy")
    if cfg.direction is not None:
        _domains(cfg.direction)


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate `cfg.ckpt` as `gantrans evaluate ckpt=...` does and write the reports.

    Every direction the checkpoint translates is scored (a CUT checkpoint: AtoB only); with two,
    each also gets its reconstructions. `direction=` keeps one. A DCGAN checkpoint's samples
    are scored against real images instead (gantrans.evaluation.samples).
    """
    _check_command(cfg)
    device = resolve_device(cfg.device)
    ckpt_path = Path(cfg.ckpt)
    ckpt = checkpoint.load_checkpoint(ckpt_path)
    if checkpoint.generates(ckpt):  # DCGAN: its samples against real images of its domain
        from gantrans.evaluation.samples import evaluate_samples

        dataset = resolve_dataset(checkpoint.recorded_config(ckpt).get("dataset"), cfg)
        return evaluate_samples(cfg, ckpt_path, dataset)
    available = checkpoint.directions(ckpt)
    if cfg.direction and cfg.direction not in available:
        checkpoint.generator_weights(ckpt, cfg.direction, ckpt_path)  # raises its one line
    channels = checkpoint.channels(ckpt)
    dataset = resolve_dataset(checkpoint.recorded_config(ckpt).get("dataset"), cfg)
    dataset["channels"] = channels
    out_dir = Path(cfg.output_dir) if cfg.output_dir else run_dir_of(ckpt_path) / "eval"
    wanted = [cfg.direction] if cfg.direction else available
    # every generator whatever is asked: the reverse one gives the reconstructions
    generators = {d: generator_of(ckpt, d, ckpt_path)[0].to(device) for d in available}
    check_inputs(dataset, channels, out_dir)
    evaluator = _evaluator(cfg, dataset, channels, device)
    scores, images = evaluator.run(generators)
    if cfg.direction:
        keep = _suffixes(cfg.direction)
        scores = {k: v for k, v in scores.items() if k.rsplit("_", 1)[1] in keep}
        images = {d: v for d, v in images.items() if d in wanted}
    not_computed = {}
    if len(available) == 1:
        (direction,) = available
        src, _ = _domains(direction)
        for name in NEEDS_GENERATOR:
            key = f"{name}_{src if name.startswith('cycle_') else direction}"
            not_computed[key] = (
                f"needs the reverse generator (reconstructions): a {checkpoint.method(ckpt)} "
                "checkpoint translates one way"
            )
    source = {
        "checkpoint": str(ckpt_path.resolve()),
        "method": checkpoint.method(ckpt),
        **checkpoint.progress(ckpt),
    }
    return _report(cfg, evaluator, dataset, device, scores, images, source, not_computed, out_dir)


def _suffixes(direction: str) -> tuple[str, str]:
    src, _ = _domains(direction)
    return (direction, src)  # fid_AtoB ..., and cycle_*_A


def _check_translations(folder: Path) -> list[Path]:
    """The image files of a folder of translations; one line if there are too few to score."""
    if not folder.is_dir():
        raise DataError(f"translations={folder} is not a folder: point it at translated images")
    files = list_images(folder)
    if not files:
        raise DataError(f"translations={folder} holds no images (.jpg, .png, .bmp, .webp)")
    if len(files) < MIN_TEST_IMAGES:
        raise DataError(
            f"translations={folder} has {len(files)} image(s): scoring needs at least "
            f"{MIN_TEST_IMAGES}"
        )
    return files


def check_inputs(dataset: dict, channels: int, out_dir: Path) -> None:
    """What the user gave that could still fail, checked before any judge is trained: the
    dataset's test images are there, and the report's folder can be written."""
    build_domains(dataset, "test", channels)  # one line for a dataset that is not there
    existing = out_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder the report's folders would be made in
    reason = None
    if not existing.is_dir():
        reason = f"{existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"{existing} is not writable"
    if reason:
        raise ConfigError(
            f"cannot write the report into {out_dir} ({reason}): choose another output_dir="
        )


def read_translations(
    folder: Path, evaluator: Evaluator, direction: str, limit: int | None, progress: bool
) -> tuple[torch.Tensor, list[str], int]:
    """The images of a folder at the evaluator's size: (N, C, H, W), their names, and how many
    had to be resized."""
    files = _check_translations(folder)
    files = [files[i] for i in _spaced(len(files), limit)]
    src, _ = _domains(direction)
    side = tuple(evaluator.real[src].shape[-2:])
    images, names, resized, bad = [], [], 0, []
    for path in tqdm(files, desc="load translations", disable=not progress):
        try:
            image = pil_to_tensor(open_image(path, evaluator.channels))
        except DataError:
            bad.append(path.name)
            continue
        if tuple(image.shape[-2:]) != side:
            image = F.interpolate(image[None], size=side, mode="bilinear", antialias=True)[0]
            resized += 1
        images.append(image)
        names.append(path.name)
    if bad:
        log.warning("warning: %d unreadable file(s) in %s skipped: %s", len(bad), folder,
                    ", ".join(bad[:5]))  # fmt: skip
    if len(images) < MIN_TEST_IMAGES:
        raise DataError(
            f"translations={folder} has {len(images)} readable image(s): "
            f"scoring needs at least {MIN_TEST_IMAGES}"
        )
    return torch.stack(images), names, resized


def _pair_by_name(names: list[str], source_names: list[str]) -> list[int] | None:
    """For each translation, the index of its input among the source test images, matched by
    file name without extension; None unless every translation has one."""
    index = {Path(n).stem: i for i, n in enumerate(source_names)}
    found = [index.get(Path(n).stem) for n in names]
    return None if any(i is None for i in found) else found  # type: ignore[return-value]


def evaluate_folder(cfg: DictConfig) -> dict[str, Any]:
    """Score a folder of translations as `gantrans evaluate translations=DIR` does."""
    _check_command(cfg)
    if cfg.direction is None:
        raise ConfigError("translations=DIR needs direction=AtoB or direction=BtoA")
    if cfg.ckpt is not None:
        raise ConfigError("pass ckpt=PATH or translations=DIR, not both")
    device = resolve_device(cfg.device)
    dataset = resolve_dataset(None, cfg)
    channels = int(dataset.get("channels", 3))
    folder = Path(cfg.translations)
    out_dir = Path(cfg.output_dir) if cfg.output_dir else Path("eval") / folder.resolve().name
    _check_translations(folder)
    check_inputs(dataset, channels, out_dir)
    evaluator = _evaluator(cfg, dataset, channels, device)
    direction = cfg.direction
    src, _ = _domains(direction)
    fake, names, resized = read_translations(
        folder, evaluator, direction, cfg.max_images, cfg.progress
    )
    pairs = _pair_by_name(names, evaluator.names[src])
    inputs = evaluator.real[src][pairs] if pairs is not None else None
    truth = evaluator.truth[src][pairs] if pairs is not None and evaluator.truth else None
    scores = evaluator.score(direction, fake, inputs=inputs, truth=truth)
    not_computed = {
        f"{name}_{src if name.startswith('cycle_') else direction}": (
            "needs the generators (reconstructions): a folder of translations has none"
        )
        for name in NEEDS_GENERATOR
    }
    if pairs is None:
        for name in NEEDS_PAIRS:
            if name == "content_l1" or evaluator.truth:
                not_computed[f"{name}_{direction}"] = (
                    "needs each translation's input: name the files as the test images of the "
                    "source domain (export them with export_inputs=DIR)"
                )
    images = {direction: {"fake": fake[: cfg.num_samples]}}
    if inputs is not None:
        images[direction]["real"] = inputs[: cfg.num_samples]
    source = {
        "translations": str(folder.resolve()),
        "images": len(names),
        "resized": resized,
        "paired_with_inputs": pairs is not None,
    }
    return _report(cfg, evaluator, dataset, device, scores, images, source, not_computed, out_dir)


def export_inputs(cfg: DictConfig) -> Path:
    """Write the source domain's test images (as the judges see them) into cfg.export_inputs."""
    from gantrans.data import tensor_to_pil

    _check_command(cfg)
    if cfg.direction is None:
        raise ConfigError("export_inputs=DIR needs direction=AtoB or direction=BtoA")
    dataset = resolve_dataset(None, cfg)
    channels = int(dataset.get("channels", 3))
    src, _ = _domains(cfg.direction)
    test = build_domains(dataset, "test", channels)[LABEL[src]]
    out = Path(cfg.export_inputs)
    out.mkdir(parents=True, exist_ok=True)
    indices = _spaced(len(test), cfg.max_images)
    for i in tqdm(indices, desc=f"export test {src}", disable=not cfg.progress):
        name = Path(test.name(i)).stem + ".png"  # lossless: the judge sees exactly these
        tmp = out / f".{name}.part"
        tensor_to_pil(test.load(i)).save(tmp, format="PNG")
        tmp.replace(out / name)
    log.info("wrote %d test image(s) of domain %s to %s", len(indices), src, out)
    return out


def _report(
    cfg: DictConfig,
    evaluator: Evaluator,
    dataset: dict,
    device: torch.device,
    scores: dict[str, float],
    images: dict[str, dict[str, torch.Tensor]],
    source: dict[str, Any],
    not_computed: dict[str, str],
    out_dir: Path,
) -> dict[str, Any]:
    from gantrans.evaluation import report as eval_report

    info = evaluator.info
    report = {
        "gantrans_version": __version__,
        "source": source,
        "dataset": dataset,
        "settings": {**info, "device": str(device)},
        "metrics": scores,
        "lower_is_better": {k: LOWER_IS_BETTER[k] for k in scores},
        "checks": checks(scores, info),
        "not_computed": {
            **{
                k: v
                for k, v in evaluator.not_computed.items()
                if k.rsplit("_", 1)[1] in {d for d in images} or not images
            },
            **not_computed,
        },
    }
    eval_report.write(out_dir, report, images, cfg.num_samples)
    for line in eval_report.summary(report):
        log.info(line)
    log.info("wrote %s and %s", out_dir / eval_report.JSON_NAME, out_dir / eval_report.MD_NAME)
    return report


def main(cfg: DictConfig) -> None:
    """Entry point of `gantrans evaluate`."""
    if cfg.export_inputs is not None:
        export_inputs(cfg)
    elif cfg.translations is not None:
        evaluate_folder(cfg)
    elif cfg.ckpt is not None:
        evaluate_checkpoint(cfg)
    else:
        raise ConfigError(
            "pass ckpt=PATH (a checkpoint) or translations=DIR dataset=NAME direction=AtoB|BtoA "
            "(a folder of translated images)"
        )


__all__ = [
    "Evaluator",
    "LOWER_IS_BETTER",
    "apply",
    "checks",
    "evaluate_checkpoint",
    "evaluate_folder",
    "export_inputs",
    "quantize",
    "run_dir_of",
]
