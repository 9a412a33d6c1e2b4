"""Built-in procedural dataset: domain A = filled circles, domain B = filled squares (no files)."""

from __future__ import annotations

import colorsys
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .imageio import DataError, config_int

SPLITS: dict[str, int] = {"train": 0, "test": 1}
DOMAIN_SHAPES: dict[str, str] = {"A": "circle", "B": "square"}
_DOMAIN_CODES: dict[str, int] = {"A": 0, "B": 1}
_TAG = 0x5348_4150_4553  # "SHAPES": keeps these seeds apart from any other use of the same ints
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's RGB -> L
_MIN_SHAPE_LUMA = 0.5  # shapes are at least this bright ...
_MAX_BG_LEVEL = 0.2  # ... and backgrounds at most about this bright, on a [0, 1] scale


def _luma(rgb: tuple[float, float, float]) -> float:
    return sum(w * c for w, c in zip(_LUMA, rgb, strict=True))


def shape_params(seed: int, split: str, domain: str, index: int, image_size: int) -> dict[str, Any]:
    """The parameters of one shapes image: a pure function of its arguments.

    Drawn from a numpy Generator seeded by a hash (``SeedSequence``) of
    (seed, split, domain, index), so domain A image i and domain B image i are unrelated.

    Args:
        seed: The dataset seed.
        split: "train" or "test".
        domain: "A" (circles) or "B" (squares).
        index: The image index.
        image_size: The image side in pixels.

    Returns:
        A dict with ``shape`` ("circle" | "square"), ``color`` and ``background`` (RGB tuples in
        [0, 1]), ``center`` ((x, y) in pixels, sub-pixel) and ``size`` (the circle's diameter /
        the square's side, in pixels).
    """
    entropy = [_TAG, int(seed) % (1 << 64), SPLITS[split], _DOMAIN_CODES[domain], int(index)]
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    u = rng.random(10).tolist()  # python floats
    # Shape colour: saturated, bright; lifted towards white until its luminance is high enough.
    rgb = colorsys.hsv_to_rgb(u[0], 0.55 + 0.45 * u[1], 0.75 + 0.25 * u[2])
    lum = _luma(rgb)
    if lum < _MIN_SHAPE_LUMA:
        t = (_MIN_SHAPE_LUMA - lum) / (1.0 - lum)
        rgb = tuple(c + t * (1.0 - c) for c in rgb)
    # Background: dark, nearly neutral grey with a slight tint.
    level = 0.04 + 0.14 * u[3]
    background = tuple(min(max(level + 0.06 * (v - 0.5), 0.0), 1.0) for v in u[4:7])
    # Size 20-50% of the side; centre keeps the shape a margin away from every edge.
    size = image_size * (0.2 + 0.3 * u[7])
    margin = max(1.0, 0.08 * image_size)
    lo, hi = size / 2 + margin, image_size - size / 2 - margin
    center = (lo + (hi - lo) * float(u[8]), lo + (hi - lo) * float(u[9]))
    return {
        "shape": DOMAIN_SHAPES[domain],
        "color": tuple(float(c) for c in rgb),
        "background": tuple(float(c) for c in background),
        "center": center,
        "size": float(size),
    }


class ShapesDomain:
    """One domain and split of the procedural shapes dataset.

    Images are rendered on the fly (antialiased by 4x4 supersampling), so nothing is stored.
    """

    def __init__(
        self,
        domain: str,
        split: str,
        size: int,
        image_size: int = 32,
        seed: int = 0,
        channels: int = 3,
        supersample: int = 4,
    ) -> None:
        """Create a domain.

        Args:
            domain: "A" (circles) or "B" (squares).
            split: "train" or "test".
            size: Number of images.
            image_size: Image side in pixels.
            seed: Dataset seed.
            channels: 3 for RGB, 1 for luminance.
            supersample: Subsamples per pixel side for antialiasing.
        """
        if domain not in DOMAIN_SHAPES:
            raise ValueError(f"domain must be 'A' or 'B', got {domain!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.domain = domain
        self.split = split
        self.size = int(size)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.channels = int(channels)
        self.supersample = int(supersample)
        self._name_width = max(4, len(str(max(self.size - 1, 0))))
        n = self.image_size * self.supersample
        self._sub = ((np.arange(n, dtype=np.float32) + 0.5) / self.supersample).astype(np.float32)

    def __len__(self) -> int:
        """Number of images."""
        return self.size

    def _check(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return index

    def params(self, index: int) -> dict[str, Any]:
        """The parameters of image ``index`` (see ``shape_params``)."""
        index = self._check(index)
        return shape_params(self.seed, self.split, self.domain, index, self.image_size)

    def name(self, index: int) -> str:
        """A stable identifier, e.g. "0042.png"."""
        return f"{self._check(index):0{self._name_width}d}.png"

    def load(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Image ``index`` as (C, H, W) in [-1, 1]; ``generator`` is ignored (no augmentation)."""
        del generator
        p = self.params(index)
        return self.render(p, p["shape"])

    def counterpart(self, index: int) -> torch.Tensor:
        """Image ``index`` re-rendered as the other domain's shape (its ground-truth translation).

        Returns:
            (C, H, W) in [-1, 1]: the square for a circle and vice versa, same colours, centre
            and size.
        """
        p = self.params(index)
        other = "square" if p["shape"] == "circle" else "circle"
        return self.render(p, other)

    def coverage(self, params: Mapping[str, Any], shape: str) -> np.ndarray:
        """Antialiased coverage of the shape: (H, W) float32 in [0, 1] (fraction of each pixel)."""
        s, k = self.image_size, self.supersample
        cx, cy = params["center"]
        r = params["size"] / 2.0
        dx = self._sub - np.float32(cx)  # (s*k,) sub-pixel x offsets from the centre
        dy = self._sub - np.float32(cy)  # (s*k,)
        if shape == "square":  # separable: coverage = coverage_y (outer) coverage_x
            cov_x = (np.abs(dx) <= r).reshape(s, k).sum(1, dtype=np.float32) / k  # (W,)
            cov_y = (np.abs(dy) <= r).reshape(s, k).sum(1, dtype=np.float32) / k  # (H,)
            return np.outer(cov_y, cov_x)  # (H, W)
        if shape == "circle":
            inside = (dy * dy)[:, None] + (dx * dx)[None, :] <= np.float32(r * r)  # (s*k, s*k)
            return inside.reshape(s, k, s, k).sum((1, 3), dtype=np.float32) / (k * k)  # (H, W)
        raise ValueError(f"unknown shape {shape!r}")

    def render(self, params: Mapping[str, Any], shape: str) -> torch.Tensor:
        """Render ``shape`` ("circle" | "square") with ``params``: (C, H, W) in [-1, 1]."""
        cov = self.coverage(params, shape)  # (H, W) in [0, 1]
        color = np.asarray(params["color"], dtype=np.float32)  # (3,) in [0, 1]
        background = np.asarray(params["background"], dtype=np.float32)  # (3,) in [0, 1]
        if self.channels == 1:
            weights = np.asarray(_LUMA, dtype=np.float32)
            color = np.asarray([color @ weights], dtype=np.float32)  # (1,)
            background = np.asarray([background @ weights], dtype=np.float32)  # (1,)
        lo = background * 2.0 - 1.0  # (C,) in [-1, 1]
        delta = (color - background) * 2.0  # (C,)
        img = lo[:, None, None] + cov[None] * delta[:, None, None]  # (C, H, W) in [-1, 1]
        return torch.from_numpy(np.clip(img, -1.0, 1.0).astype(np.float32, copy=False))

    def __repr__(self) -> str:
        return (
            f"ShapesDomain(domain={self.domain!r}, split={self.split!r}, size={self.size}, "
            f"image_size={self.image_size}, seed={self.seed}, channels={self.channels})"
        )


def build_shapes(
    cfg: Mapping[str, Any], split: str, channels: int
) -> tuple[ShapesDomain, ShapesDomain]:
    """Build the (circles, squares) domains of the shapes dataset for ``split``.

    Args:
        cfg: The dataset config: ``image_size`` (32), ``train_size`` (2000), ``test_size`` (200),
            ``seed`` (0).
        split: "train" or "test". With ``test_size: 0`` the test split falls back to the train
            images (with a warning).
        channels: 1 (luminance) or 3 (RGB).

    Returns:
        (domain_a, domain_b).

    Raises:
        DataError: For an invalid setting.
    """
    image_size = config_int(cfg, "image_size", 32, 8)
    train_size = config_int(cfg, "train_size", 2000, 1)
    test_size = config_int(cfg, "test_size", 200, 0)
    seed = cfg.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"dataset.seed={seed!r} is not an integer: set it to an integer")
    if split == "test" and test_size == 0:
        warnings.warn(
            "dataset.test_size=0: the shapes test split is empty, evaluating on the train images",
            stacklevel=3,
        )
        split = "train"
    size = train_size if split == "train" else test_size
    kwargs = dict(split=split, size=size, image_size=image_size, seed=int(seed), channels=channels)
    return ShapesDomain("A", **kwargs), ShapesDomain("B", **kwargs)
