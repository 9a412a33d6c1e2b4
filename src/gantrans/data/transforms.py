"""Seed derivation and PIL augmentations whose randomness comes only from an explicit generator."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

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
