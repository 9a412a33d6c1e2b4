"""Seed derivation and PIL augmentations whose randomness comes only from an explicit generator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance

from .imageio import DataError

PREPROCESS_MODES: tuple[str, ...] = ("resize_and_crop", "crop", "scale_width_and_crop", "none")
"""Values accepted for ``dataset.preprocess``."""

SIZE_MULTIPLE = 4
"""``preprocess: none`` rounds H and W to a multiple of this (the generators downsample twice)."""

_MASK63 = (1 << 63) - 1


def derive_seed(*values: int) -> int:
    """Hash integers into a well-mixed 63-bit non-negative seed.

    A pure function of its arguments (numpy's ``SeedSequence`` hash), so it gives the same value
    in every process and Python version. Negative inputs are reduced modulo 2**64.

    Args:
        *values: The integers to mix, e.g. ``(seed, epoch)``.

    Returns:
        An int in [0, 2**63).
    """
    entropy = [int(v) % (1 << 64) for v in values]
    lo, hi = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return ((int(hi) << 32) | int(lo)) & _MASK63


def randint(generator: torch.Generator, high: int) -> int:
    """Draw one int uniformly from [0, high) using ``generator``.

    Args:
        generator: The explicit source of randomness.
        high: Exclusive upper bound, >= 1.

    Returns:
        The drawn integer.
    """
    return int(torch.randint(0, high, (1,), generator=generator).item())


def resize(img: Image.Image, width: int, height: int) -> Image.Image:
    """Resize to exactly ``width`` x ``height`` with bicubic interpolation (no-op if equal).

    Args:
        img: The image.
        width: Target width in pixels.
        height: Target height in pixels.

    Returns:
        The resized image.
    """
    if img.size == (width, height):
        return img
    return img.resize((width, height), Image.Resampling.BICUBIC)


def scale_width(img: Image.Image, target_width: int, min_height: int) -> Image.Image:
    """Scale so the width is ``target_width``, keeping the aspect ratio, height >= ``min_height``.

    Args:
        img: The image.
        target_width: The new width.
        min_height: A lower bound on the new height (so a later crop fits).

    Returns:
        The scaled image.
    """
    width, height = img.size
    new_height = max(round(target_width * height / width), min_height)
    return resize(img, target_width, new_height)


def ensure_min_size(img: Image.Image, min_size: int) -> Image.Image:
    """Scale up (keeping the aspect ratio) if either side is smaller than ``min_size``.

    Args:
        img: The image.
        min_size: The smallest allowed width and height.

    Returns:
        The image unchanged, or scaled so its shorter side is at least ``min_size``.
    """
    width, height = img.size
    if width >= min_size and height >= min_size:
        return img
    scale = min_size / min(width, height)
    return resize(img, max(min_size, round(width * scale)), max(min_size, round(height * scale)))


def random_crop(img: Image.Image, size: int, generator: torch.Generator) -> Image.Image:
    """Crop a ``size`` x ``size`` window at an offset drawn from ``generator``.

    Draws the top offset, then the left offset (always two draws).

    Args:
        img: The image; both sides must be >= ``size``.
        size: The crop side.
        generator: The source of the offsets.

    Returns:
        The cropped image.
    """
    width, height = img.size
    if width < size or height < size:
        raise ValueError(f"cannot crop {size}x{size} from a {width}x{height} image")
    top = randint(generator, height - size + 1)
    left = randint(generator, width - size + 1)
    return img.crop((left, top, left + size, top + size))


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """Crop the central ``size`` x ``size`` window (deterministic).

    Args:
        img: The image; both sides must be >= ``size``.
        size: The crop side.

    Returns:
        The cropped image.
    """
    width, height = img.size
    if width < size or height < size:
        raise ValueError(f"cannot crop {size}x{size} from a {width}x{height} image")
    top = (height - size) // 2
    left = (width - size) // 2
    return img.crop((left, top, left + size, top + size))


def random_flip(img: Image.Image, generator: torch.Generator, p: float = 0.5) -> Image.Image:
    """Mirror left-right with probability ``p`` drawn from ``generator`` (always one draw).

    Args:
        img: The image.
        generator: The source of the coin flip.
        p: The flip probability.

    Returns:
        The image, possibly mirrored.
    """
    if torch.rand((1,), generator=generator).item() < p:
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img


def round_to_multiple(img: Image.Image, base: int = SIZE_MULTIPLE) -> Image.Image:
    """Resize so H and W are the nearest multiples of ``base`` (at least ``base``).

    Args:
        img: The image.
        base: The multiple.

    Returns:
        The image, resized only if a side was not already a multiple.
    """
    width, height = img.size
    new_w = max(base, round(width / base) * base)
    new_h = max(base, round(height / base) * base)
    return resize(img, new_w, new_h)


def train_transform(
    img: Image.Image,
    preprocess: str,
    load_size: int,
    crop_size: int,
    flip: bool,
    generator: torch.Generator,
) -> Image.Image:
    """Training-time augmentation, every random choice drawn from ``generator``.

    - "resize_and_crop": resize to load_size x load_size, random crop_size crop.
    - "scale_width_and_crop": scale the width to load_size (keep aspect, height >= crop_size),
      random crop.
    - "crop": random crop (the image is first scaled up if a side is below crop_size).
    - "none": keep the size, rounded to a multiple of 4.

    Then a horizontal flip with p = 0.5 if ``flip``.

    Args:
        img: A decoded "L"/"RGB" image.
        preprocess: One of ``PREPROCESS_MODES``.
        load_size: The resize target for the modes that resize before cropping.
        crop_size: The output side for the cropping modes.
        flip: Whether to randomly mirror.
        generator: The only source of randomness.

    Returns:
        The augmented image.
    """
    if preprocess == "resize_and_crop":
        img = random_crop(resize(img, load_size, load_size), crop_size, generator)
    elif preprocess == "scale_width_and_crop":
        img = random_crop(scale_width(img, load_size, crop_size), crop_size, generator)
    elif preprocess == "crop":
        img = random_crop(ensure_min_size(img, crop_size), crop_size, generator)
    elif preprocess == "none":
        img = round_to_multiple(img)
    else:
        raise ValueError(f"unknown preprocess {preprocess!r}; expected one of {PREPROCESS_MODES}")
    if flip:
        img = random_flip(img, generator)
    return img


def eval_transform(
    img: Image.Image, preprocess: str, load_size: int, crop_size: int
) -> Image.Image:
    """Deterministic test-time transform (no randomness, no flip).

    - "resize_and_crop": resize to crop_size x crop_size.
    - "scale_width_and_crop": scale the width to crop_size (keep aspect), centre crop.
    - "crop": centre crop (scaled up first if a side is below crop_size).
    - "none": keep the size, rounded to a multiple of 4.

    Args:
        img: A decoded "L"/"RGB" image.
        preprocess: One of ``PREPROCESS_MODES``.
        load_size: Unused (kept for symmetry with ``train_transform``).
        crop_size: The output side for every mode but "none".

    Returns:
        The transformed image.
    """
    del load_size
    if preprocess == "resize_and_crop":
        return resize(img, crop_size, crop_size)
    if preprocess == "scale_width_and_crop":
        return center_crop(scale_width(img, crop_size, crop_size), crop_size)
    if preprocess == "crop":
        return center_crop(ensure_min_size(img, crop_size), crop_size)
    if preprocess == "none":
        return round_to_multiple(img)
    raise ValueError(f"unknown preprocess {preprocess!r}; expected one of {PREPROCESS_MODES}")


# ---------------------------------------------------------------------------------------------
# random affine + brightness augmentation (the set used on the SMILEs faces)
# ---------------------------------------------------------------------------------------------
AFFINE_KEYS: tuple[str, ...] = ("rotate", "translate", "shear", "zoom", "brightness")
"""Dataset config keys read by ``affine_from_config``."""


@dataclass(frozen=True)
class AffineAugment:
    """A random affine warp and brightness change, every draw taken from an explicit generator.

    Keras ``ImageDataGenerator``-style augmentation: an angle in [-rotate, rotate] degrees, a
    shift of up to ``translate`` of the width and height, an x-shear in [-shear, shear] degrees,
    an isotropic scale in [1 - zoom, 1 + zoom] and a brightness factor in ``brightness``. The
    border repeats the edge pixels (Keras' ``fill_mode="nearest"``): no black corners, and no
    mirrored copy of a mouth or an eye either. When active, a call always makes exactly 6 draws
    from the generator, so what follows it draws the same numbers whatever the parameters.
    """

    rotate: float = 0.0  # max |angle|, degrees
    translate: float = 0.0  # max |shift|, fraction of the side
    shear: float = 0.0  # max |x-shear|, degrees
    zoom: float = 0.0  # scale drawn from [1 - zoom, 1 + zoom]
    brightness: tuple[float, float] | None = None  # factor range, e.g. (0.8, 1.2)

    @property
    def active(self) -> bool:
        """Whether any part of the augmentation does something."""
        return bool(self.rotate or self.translate or self.shear or self.zoom) or (
            self.brightness is not None and self.brightness != (1.0, 1.0)
        )

    def __call__(self, img: Image.Image, generator: torch.Generator) -> Image.Image:
        """Warp ``img`` (mode "L" or "RGB") with parameters drawn from ``generator``.

        Args:
            img: The image.
            generator: The only source of randomness (6 draws).

        Returns:
            An image of the same size and mode.
        """
        u = torch.rand(6, generator=generator).tolist()  # 6 floats in [0, 1)
        width, height = img.size
        angle = (2 * u[0] - 1) * self.rotate
        shift = ((2 * u[1] - 1) * self.translate * width, (2 * u[2] - 1) * self.translate * height)
        shear = (2 * u[3] - 1) * self.shear
        scale = 1.0 + (2 * u[4] - 1) * self.zoom
        if self.rotate or self.translate or self.shear or self.zoom:
            img = affine_warp(img, angle, shift, scale, shear)
        if self.brightness is not None:
            low, high = self.brightness
            img = ImageEnhance.Brightness(img).enhance(low + u[5] * (high - low))
        return img


def affine_warp(
    img: Image.Image,
    angle: float,
    shift: tuple[float, float],
    scale: float,
    shear: float,
) -> Image.Image:
    """Affine warp about the image centre, the border filled by repeating the edge pixels.

    Args:
        img: A mode "L" or "RGB" image.
        angle: Rotation in degrees, counter-clockwise.
        shift: (dx, dy) in pixels.
        scale: Isotropic scale factor (> 1 zooms in).
        shear: x-shear in degrees.

    Returns:
        The warped image, same size and mode.
    """
    import torchvision.transforms.v2.functional as TF  # lazy: importing torchvision takes ~1.5 s

    width, height = img.size
    pad_x, pad_y = width // 2, height // 2
    arr = np.asarray(img)  # (H, W) or (H, W, 3) uint8
    pads = ((pad_y, pad_y), (pad_x, pad_x)) + (((0, 0),) if arr.ndim == 3 else ())
    padded = Image.fromarray(np.pad(arr, pads, mode="edge"))  # (H + 2 pad_y, W + 2 pad_x)
    warped = TF.affine(
        padded,
        angle=angle,
        translate=[shift[0], shift[1]],
        scale=scale,
        shear=[shear, 0.0],
        interpolation=TF.InterpolationMode.BILINEAR,
    )
    return warped.crop((pad_x, pad_y, pad_x + width, pad_y + height))


def _number(cfg: Mapping[str, Any], key: str, low: float, high: float) -> float:
    value = cfg.get(key) or 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise DataError(f"dataset.{key}={value!r} is out of range: set a number in [{low}, {high})")
    return float(value)


def affine_from_config(cfg: Mapping[str, Any]) -> AffineAugment | None:
    """Read ``rotate``, ``translate``, ``shear``, ``zoom`` and ``brightness`` from a dataset config.

    Absent or null keys mean "off". ``brightness`` is null or a pair [low, high] with
    0 < low <= high.

    Args:
        cfg: The dataset config section.

    Returns:
        The augmentation, or None when it would do nothing.

    Raises:
        DataError: For a value out of range (one line naming the key).
    """
    brightness = cfg.get("brightness")
    if brightness is not None:
        pair = (
            list(brightness)
            if isinstance(brightness, Sequence) and not isinstance(brightness, str)
            else []
        )
        if (
            len(pair) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
            or not 0 < pair[0] <= pair[1]
        ):
            raise DataError(
                f"dataset.brightness={brightness!r} is invalid: set [low, high] with "
                "0 < low <= high (e.g. [0.8, 1.2]) or null"
            )
        brightness = (float(pair[0]), float(pair[1]))
    aug = AffineAugment(
        rotate=_number(cfg, "rotate", 0.0, 180.0),
        translate=_number(cfg, "translate", 0.0, 1.0),
        shear=_number(cfg, "shear", 0.0, 90.0),
        zoom=_number(cfg, "zoom", 0.0, 1.0),
        brightness=brightness,
    )
    return aug if aug.active else None
