"""Image-quality numbers: L1, PSNR, SSIM, shape change, FID and KID (torchmetrics), C2ST p-values."""

from __future__ import annotations

import math
import urllib.error
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from tqdm import tqdm

from gantrans.errors import GantransError

INCEPTION_SIZE = 299  # the side Inception-v3 takes
KID_SUBSETS = 100  # random subsets averaged by KID
KID_MAX_SUBSET = 1000  # the usual subset size; smaller test sets use all their images per subset


class FeatureWeightsError(GantransError):
    """The weights of a feature network (Inception) could not be found or fetched."""


# ---------------------------------------------------------------------------------------------
# per-image numbers on (N, C, H, W) images in [-1, 1]
# ---------------------------------------------------------------------------------------------
def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per image: (N,), on the [-1, 1] scale."""
    return (x.float() - y.float()).abs().flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image: (N,); the peak-to-peak range of [-1, 1] is 2. Identical -> inf."""
    mse = (x.float() - y.float()).square().flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse)  # mse 0 -> +inf


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM per image: (N,) in [-1, 1], 1 = identical (11x11 Gaussian window, sigma 1.5).

    Images smaller than the window are compared with the largest odd window that fits.
    """
    side = min(x.shape[-2:])
    kernel = min(11, side if side % 2 else side - 1)
    return structural_similarity_index_measure(
        x.float(), y.float(), data_range=2.0, kernel_size=kernel, reduction="none"
    )


def shape_change(real: torch.Tensor, fake: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Share of the needed change made, per image, where input and truth differ (the corners).

    1 = the translation matches the true shape there; 0 = nothing changed (or as wrong as the
    input); negative = further from the truth than the input was.

    Args:
        real, fake, truth: (N, C, H, W) in [-1, 1]: input, translation, ground truth.

    Returns:
        (N,) scores.
    """
    need = (real - truth).abs().amax(1, keepdim=True) > 0.1  # (N, 1, H, W) pixels that must change
    before = ((real - truth).abs() * need).flatten(1).sum(1)
    after = ((fake - truth).abs() * need).flatten(1).sum(1)
    return 1 - after / before.clamp_min(1e-6)


def shape_iou(images: torch.Tensor, truth: torch.Tensor, threshold: float = 0.3) -> torch.Tensor:
    """Intersection over union of the drawn shape's footprint with the true one, colour aside.

    A pixel belongs to the shape when it differs from the image's background by more than
    `threshold` (in [-1, 1] units, on any channel); the background colour is the truth's corner
    pixel (the shapes set keeps its shapes away from the corners). A circle scored against its
    true square gets pi/4 (about 0.79); a perfect square gets 1, whatever its colour.

    Args:
        images, truth: (N, C, H, W) in [-1, 1].

    Returns:
        (N,) IoU values in [0, 1].
    """
    background = truth[:, :, :1, :1]  # (N, C, 1, 1) the truth's top-left pixel
    mask = (images - background).abs().amax(1) > threshold  # (N, H, W)
    mask_truth = (truth - background).abs().amax(1) > threshold
    inter = (mask & mask_truth).flatten(1).sum(1).float()
    union = (mask | mask_truth).flatten(1).sum(1).float()
    return inter / union.clamp_min(1)


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1], C = 1 or 3 -> (N, 3, H, W) uint8 in [0, 255] (gray repeated)."""
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# ---------------------------------------------------------------------------------------------
# feature networks
# ---------------------------------------------------------------------------------------------
def inception_weights_file() -> tuple[str, Path]:
    """(URL, path in the torch hub cache) of the Inception weights that torch-fidelity uses."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    name = URL_INCEPTION_V3.rsplit("/", 1)[1]
    return URL_INCEPTION_V3, Path(torch.hub.get_dir()) / "checkpoints" / name


class InceptionFeatures(nn.Module):
    """The standard FID Inception-v3 (torch-fidelity's weights): pool3, 2048 values.

    Takes (N, C, H, W) floats in [-1, 1] (C = 1 or 3), quantised to 8 bits, resized to 299 px
    (`resize`: "clean" = antialiased bicubic as clean-fid; "legacy" = torch-fidelity's
    TensorFlow-1 bilinear, as the original FID code), and returns (N, 2048) float32.
    """

    num_features = 2048

    def __init__(
        self, weights_path: str | Path | None = None, progress: bool = True, resize: str = "clean"
    ) -> None:
        super().__init__()
        if resize not in ("clean", "legacy"):
            raise ValueError(f"resize must be clean or legacy, got {resize!r}")
        self.resize = resize
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        url, cached = inception_weights_file()
        hint = (
            f"download {url} and put it at {cached} (or pass inception_weights=PATH), "
            "or use features=classifier, which works offline"
        )
        if weights_path is None:
            weights_path = cached
            if not cached.is_file():
                try:  # no "Downloading" line first: offline, the error below is all one sees
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    torch.hub.download_url_to_file(url, str(cached), progress=progress)
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    raise FeatureWeightsError(
                        f"the Inception weights for FID/KID could not be fetched "
                        f"({_reason(exc)}): {hint}"
                    ) from None
        weights_path = Path(weights_path).expanduser()
        shown = f"inception_weights={weights_path}" if weights_path != cached else str(cached)
        if not weights_path.is_file():
            raise FeatureWeightsError(f"{shown} is not a file: {hint}")
        try:  # torch-fidelity loads with weights_only=False: refuse anything unsafe first
            torch.load(weights_path, map_location="cpu", weights_only=True)
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights_path)
            )
        except Exception as exc:  # noqa: BLE001 -- unreadable, unsafe or the wrong weights
            raise FeatureWeightsError(
                f"{shown} does not hold the FID Inception weights ({_reason(exc)}): {hint}"
            ) from None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = to_uint8_rgb(images)  # (N, 3, H, W) uint8: quantised first, as clean-fid advises
        if self.resize == "clean" and x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            # clean-fid's resize: antialiased bicubic on the 8-bit values, as PIL does. The
            # network takes uint8, so the result is rounded again (at most half a grey level;
            # clean-fid keeps it in float). "legacy" leaves the resize to torch-fidelity's
            # TensorFlow-1 bilinear, which aliases but matches the original FID code.
            x = F.interpolate(
                x.float(), size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bicubic", antialias=True
            )
            x = x.round().clamp(0, 255).to(torch.uint8)
        (features,) = self.net(x)  # (N, 2048)
        return features.float()


class LPIPSUnavailable(GantransError):
    """LPIPS cannot be computed here (the optional package or its network weights are missing)."""


LPIPS_EXTRA = 'pip install "gantrans[lpips]"'


class LPIPSDistance(nn.Module):
    """LPIPS (Zhang et al. 2018) through the `lpips` package: AlexNet features with its learned
    linear weights; (N, C, H, W) pairs in [-1, 1] (C = 1 or 3) -> (N,) distances, 0 = same.

    The linear weights ship with the package; AlexNet's ImageNet weights come from torchvision's
    download, kept in the torch hub cache.

    Raises:
        LPIPSUnavailable: One line, when the package is not installed or the AlexNet weights
            are neither cached nor downloadable (offline).
    """

    def __init__(self, progress: bool = False) -> None:
        super().__init__()
        try:
            import lpips
        except ImportError:
            raise LPIPSUnavailable(
                f"LPIPS not computed: the lpips package is not installed ({LPIPS_EXTRA})"
            ) from None
        from torchvision.models import AlexNet_Weights

        url = AlexNet_Weights.IMAGENET1K_V1.url
        cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
        if not cached.is_file():
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(url, str(cached), progress=progress)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise LPIPSUnavailable(
                    f"LPIPS not computed: its AlexNet weights could not be fetched "
                    f"({_reason(exc)}): download {url} to {cached}"
                ) from None
        with warnings.catch_warnings():  # torchvision's notes on lpips's old `pretrained=` call
            warnings.simplefilter("ignore")
            self.net = lpips.LPIPS(net="alex", verbose=False).eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:  # AlexNet takes RGB: grey as three equal channels
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        return self.net(x.float(), y.float()).flatten()  # (N,)


def paired_distance(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    batch_size: int = 32,
) -> torch.Tensor:
    """fn(x, y) over (N, C, H, W) image pairs in batches: (N,) on the CPU."""
    out = [
        fn(x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@torch.no_grad()
def extract_features(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 32,
    desc: str = "features",
    progress: bool = False,
) -> torch.Tensor:
    """Apply a feature function to (N, C, H, W) images in batches; returns (N, D) on the CPU."""
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, unit="batch"):
        out.append(fn(images[i : i + batch_size].to(device)).float().cpu())
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# FID and KID on precomputed features (through torchmetrics, so its formulas are used)
# ---------------------------------------------------------------------------------------------
class Precomputed(nn.Module):
    """A torchmetrics "feature network" for features computed beforehand: (N, D) -> (N, D)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between two feature sets (N, D) and (M, D) (torchmetrics' FID).

    Needs at least two samples on each side; 0 for identical sets (up to rounding).
    """
    metric = FrechetInceptionDistance(feature=Precomputed(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kid_subset_size(n_real: int, n_fake: int) -> int:
    """KID's subset size: the usual 1000, or half the smaller set when it has under 2000 images.

    Half, not all: subsets of all the images would all be the same, and KID's spread zero.
    """
    n = min(n_real, n_fake)
    return KID_MAX_SUBSET if n >= 2 * KID_MAX_SUBSET else max(2, n // 2)


def kid(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """Kernel distance (torchmetrics' KID, cubic polynomial kernel) between feature sets.

    The subset size adapts to small sets (see kid_subset_size); the subsets are drawn with
    `seed`, so the result is reproducible.

    Returns:
        (mean, standard deviation) over KID_SUBSETS random subsets.
    """
    if min(len(real), len(fake)) < 2:
        raise ValueError("KID needs at least two images on each side")
    with warnings.catch_warnings():  # "will save all extracted features": they are small
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(
            feature=Precomputed(real.shape[1]),
            subsets=KID_SUBSETS,
            subset_size=kid_subset_size(len(real), len(fake)),
        )
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def binomial_p_greater(correct: int, n: int) -> float:
    """One-sided exact binomial p-value of `correct` hits in `n` tries against chance (0.5).

    Small = the classifier tells the two sets apart better than chance.
    """
    from scipy.stats import binomtest

    if n == 0:
        return math.nan
    return float(binomtest(correct, n, 0.5, alternative="greater").pvalue)


def binomial_stderr(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on n independent samples."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n) if n else math.nan
