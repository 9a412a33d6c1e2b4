"""The names of the evaluation metrics and which way is better: one table for every command."""

from __future__ import annotations

DIRECTIONS = (("AtoB", "A", "B"), ("BtoA", "B", "A"))
"""(direction, source domain, target domain)."""

# metric name (without its _AtoB / _BtoA / _A / _B suffix) -> lower is better
_LOWER = {
    "fid": True,
    "kid": True,
    "kid_std": True,
    # the panel of judges (gantrans.evaluation.judges): the mean of their shares of translations put in
    # the target domain leads; its lowest, highest and their gap say how far they agree
    "panel_domain_acc": False,
    "panel_min_domain_acc": False,
    "panel_max_domain_acc": False,
    "panel_spread_domain_acc": True,
    "panel_agreement": False,  # share of translations every judge puts in the same domain
    "panel_input_domain_acc": True,  # the panel's mean on the untranslated inputs (a control)
    "domain_acc": False,  # share of translations the first judge puts in the target domain
    "judge2_domain_acc": False,  # the same by the second judge (another architecture and seed)
    "judge3_domain_acc": False,  # and by the third
    "judge_agreement": False,  # share of translations the first two judges put in one domain
    # controls: images that stay in the source domain; a judge that is not fooled keeps them low
    "input_domain_acc": True,  # the untranslated inputs
    "rec_domain_acc": True,  # the cycle reconstructions
    "blur_domain_acc": True,  # real inputs, blurred
    "noise_domain_acc": True,  # real inputs with Gaussian noise
    "jpeg_domain_acc": True,  # real inputs, JPEG-compressed
    "content_l1": True,  # mean |translation - input|: how much of the input changed
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
    "truth_lpips": True,  # paired sets: LPIPS to the true target (the optional lpips package)
    "input_truth_lpips": True,
    "shape_change": False,
    "shape_iou": False,  # footprint of the drawn shape versus the true one, colour aside
    "input_shape_iou": False,
}
NEEDS_GENERATOR = ("rec_domain_acc", "cycle_l1", "cycle_psnr", "cycle_ssim")
"""Metrics that run the generators (reconstructions): a folder of translations has none."""
NEEDS_PAIRS = (
    "content_l1", "truth_l1", "truth_psnr", "truth_ssim", "input_truth_l1", "input_truth_psnr",
    "input_truth_ssim", "truth_lpips", "input_truth_lpips", "shape_change", "shape_iou",
    "input_shape_iou",
)  # fmt: skip
"""Metrics that compare each translation with its own input (or its input's true translation)."""


def metric_suffixes(name: str) -> tuple[str, str]:
    """The suffixes a metric takes: domains (A, B) for the cycle metrics, else directions."""
    return ("A", "B") if name.startswith("cycle_") else ("AtoB", "BtoA")


LOWER_IS_BETTER: dict[str, bool] = {
    f"{name}_{suffix}": lower for name, lower in _LOWER.items() for suffix in metric_suffixes(name)
}
"""Every metric name an evaluation can report -> True when a lower value is better."""


# the samples of an unconditional model (DCGAN) against real images of its domain: name_samples
_SAMPLES_LOWER = {
    "fid": True,
    "kid": True,
    "kid_std": True,
    "panel_domain_acc": False,  # the panel's mean share of samples put in the trained domain
    "panel_min_domain_acc": False,
    "panel_max_domain_acc": False,
    "domain_acc": False,  # share of samples the first judge puts in the trained domain
    "judge2_domain_acc": False,
    "judge3_domain_acc": False,
    "real_domain_acc": False,  # the same for real test images of that domain (the ceiling)
    "judge2_real_domain_acc": False,
    "judge3_real_domain_acc": False,
    "c2st_acc": True,
    "c2st_stderr": True,
    "c2st_pvalue": False,
    "pixel_diversity": False,  # spread across samples / across real images (near 0: collapse)
    "feature_diversity": False,  # mean pairwise feature distance, relative to real images
    "nn_train_ratio": False,  # nearest training image, relative to real test images (low: copies)
}
SAMPLES_LOWER_IS_BETTER: dict[str, bool] = {
    f"{name}_samples": lower for name, lower in _SAMPLES_LOWER.items()
}
"""Every metric name an evaluation of an unconditional model's samples can report -> True
when a lower value is better (translations: LOWER_IS_BETTER)."""


def base_name(metric: str) -> str:
    """The metric's name without its direction or domain suffix: fid_AtoB -> fid."""
    return metric.rsplit("_", 1)[0]


def metric_available(metric: str, directions: tuple[str, ...] | list[str]) -> bool:
    """Whether a model that translates `directions` can be scored by `metric`.

    A one-direction model has no reconstructions (they need the reverse generator), and no
    metric of the direction it does not translate.
    """
    if metric not in LOWER_IS_BETTER:
        return False
    name, suffix = base_name(metric), metric.rsplit("_", 1)[1]
    if name in NEEDS_GENERATOR and not {"AtoB", "BtoA"} <= set(directions):
        return False
    if suffix in ("A", "B"):  # cycle metrics carry the source domain
        suffix = "AtoB" if suffix == "A" else "BtoA"
    return suffix in directions
