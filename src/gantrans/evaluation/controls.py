"""Controls that catch a fooled judge: plain degradations of real images, and the checks on them.

A judge that calls translations "target domain" may be responding to what a generator leaves in
every image (blur, noise, ringing) instead of to the domain. Images that are known to stay in
the *source* domain show it: the cycle reconstructions, and real source images that were only
blurred, made noisy or JPEG-compressed. If the judge moves those towards the target domain by
as much as (or half as much as) it moves the translations, its figure says little about the
translation. A second judge of another architecture that disagrees says the same.
"""

from __future__ import annotations

import io
import math

import torch
from PIL import Image
from torchvision.transforms.functional import gaussian_blur

from gantrans.data import pil_to_tensor, tensor_to_pil

DEGRADATIONS = ("blur", "noise", "jpeg")
NOISE_STD = 0.1  # on the [-1, 1] scale: about 13 grey levels
JPEG_QUALITY = 20
CONTROL_LABELS = {
    "rec": "cycle reconstructions",
    "blur": "blurred real inputs",
    "noise": "noisy real inputs",
    "jpeg": "JPEG-compressed real inputs",
}
LIFT_FLOOR = 0.10  # a control is flagged when it gains this much target rate over the inputs ...
LIFT_SHARE = 0.5  # ... and at least this share of the translations' gain
DISAGREEMENT = 0.15  # the two judges' target rates on the translations differ by this much
PANEL_SPREAD = DISAGREEMENT  # the panel's lowest and highest judge differ by this much


def blur_sigma(side: int) -> float:
    """The Gaussian blur of the `blur` control: 1 pixel at 64 px, scaled with the image side."""
    return max(0.5, side / 64)


def degrade(images: torch.Tensor, kind: str, seed: int = 0) -> torch.Tensor:
    """A plain degradation of (N, C, H, W) images in [-1, 1]; returns the same shape and range.

    Args:
        kind: "blur" (Gaussian, sigma from `blur_sigma`), "noise" (Gaussian, std NOISE_STD) or
            "jpeg" (quality JPEG_QUALITY, through 8-bit images).
        seed: Seeds the noise.
    """
    images = images.float()
    if kind == "blur":
        sigma = blur_sigma(max(images.shape[-2:]))
        size = 2 * int(3 * sigma + 0.5) + 1
        size = min(size, 2 * (min(images.shape[-2:]) // 2) - 1)
        return gaussian_blur(images, [size, size], [sigma, sigma]).clamp(-1, 1)
    if kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(images.shape, generator=gen) * NOISE_STD
        return (images + noise).clamp(-1, 1)
    if kind == "jpeg":
        out = []
        for image in images:
            buffer = io.BytesIO()
            tensor_to_pil(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
            buffer.seek(0)
            with Image.open(buffer) as img:
                out.append(pil_to_tensor(img.convert(tensor_to_pil(image).mode)))
        return torch.stack(out) if out else images
    raise ValueError(f"unknown degradation {kind!r}; expected one of {DEGRADATIONS}")


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def significant(a: float, b: float, n: int) -> bool:
    """Whether two rates measured on n images each differ by more than two standard errors.

    With a few test images one image more or less moves a rate by many points; a check on
    such a difference would flag chance.
    """
    pooled = (a + b) / 2
    return abs(a - b) > 2 * math.sqrt(max(pooled * (1 - pooled), 1e-12) * 2 / max(n, 1))


def judge_checks(metrics: dict[str, float], direction: str, target: str, n: int) -> list[str]:
    """Reasons to distrust the judge's `domain_acc_<direction>`, from the controls (empty: none).

    A control (reconstructions, degraded real inputs) is flagged when its target rate exceeds the
    untranslated inputs' by at least LIFT_FLOOR and by at least LIFT_SHARE of the translations'
    own gain; the second judge is flagged when its rate differs from the first's by DISAGREEMENT.
    Either difference must also exceed two standard errors (see `significant`).

    Args:
        metrics: Flat metrics holding ``domain_acc_``, ``input_domain_acc_`` and any of
            ``rec_``, ``blur_``, ``noise_``, ``jpeg_`` + ``domain_acc_`` and
            ``judge2_domain_acc_`` for `direction`.
        direction: "AtoB" or "BtoA".
        target: The target domain's letter, for the messages.
        n: The number of images behind each rate.
    """
    translated = metrics[f"domain_acc_{direction}"]
    inputs = metrics[f"input_domain_acc_{direction}"]
    bar = max(LIFT_FLOOR, LIFT_SHARE * (translated - inputs))
    reasons = []
    for name, label in CONTROL_LABELS.items():
        value = metrics.get(f"{name}_domain_acc_{direction}")
        if value is not None and value - inputs >= bar and significant(value, inputs, n):
            reasons.append(
                f"{label}, which belong to the source domain, are classified {target} "
                f"{_pct(value)} of the time (untranslated inputs {_pct(inputs)}, translations "
                f"{_pct(translated)}): the judge responds to {name_of(name)}, not only to the domain"
            )
    second = metrics.get(f"judge2_domain_acc_{direction}")
    if (
        f"panel_spread_domain_acc_{direction}" not in metrics  # the panel check covers it
        and second is not None
        and abs(second - translated) >= DISAGREEMENT
        and significant(second, translated, n)
    ):
        reasons.append(
            f"the two judges disagree: {_pct(translated)} and {_pct(second)} of the translations "
            f"classified {target}"
        )
    return reasons


def name_of(control: str) -> str:
    """What a flagged control says the judge responds to."""
    return {
        "rec": "what the generators leave in their outputs",
        "blur": "blur",
        "noise": "noise",
        "jpeg": "compression artefacts",
    }[control]


def panel_checks(
    metrics: dict[str, float], direction: str, target: str, judges: list[dict]
) -> list[str]:
    """Reasons to distrust the panel's `panel_domain_acc_<direction>` (empty: none): its judges'
    figures spread by PANEL_SPREAD or more, or a judge is below the reliability threshold.

    Args:
        metrics: Flat metrics holding the panel's keys for `direction` (none: no reasons).
        judges: The judges' reports (``arch``, ``test_balanced_acc``, ``reliable``), in order.
    """
    spread = metrics.get(f"panel_spread_domain_acc_{direction}")
    if spread is None:
        return []
    reasons = []
    if spread >= PANEL_SPREAD - 1e-9:
        low, high = (
            metrics[f"panel_min_domain_acc_{direction}"],
            metrics[f"panel_max_domain_acc_{direction}"],
        )
        reasons.append(
            f"the judges disagree: {_pct(low)} to {_pct(high)} of the translations classified "
            f"{target} (a spread of {100 * spread:.1f} points, {100 * PANEL_SPREAD:.0f} or more "
            "is suspect)"
        )
    weak = [j for j in judges[1:] if not j.get("reliable", True)]
    for judge in weak:
        reasons.append(
            f"the {judge.get('arch', {}).get('arch')} judge's balanced accuracy on real test "
            f"images is {_pct(judge['test_balanced_acc'])}: the panel's figure leans on it"
        )
    return reasons
