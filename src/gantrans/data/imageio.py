"""Image file I/O: listing, robust opening, and PIL <-> tensor conversion in [-1, 1]."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from gantrans.errors import GantransError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""Recognised image file extensions (compared case-insensitively)."""


ORIENTATION_TAG = 0x0112  # EXIF orientation


class DataError(GantransError):
    """A data problem the user can fix; the message is one line that says what to do."""


def one_line(text: object) -> str:
    """Collapse any text (e.g. an exception message) onto a single line.

    Args:
        text: Anything with a ``str``.

    Returns:
        The text with runs of whitespace (newlines included) replaced by single spaces.
    """
    return " ".join(str(text).split())


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has an image extension (case-insensitive) and is not hidden.

    Args:
        path: A file path.

    Returns:
        True for e.g. ``x.PNG``, False for ``notes.txt`` or ``.hidden.png``.
    """
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (not recursive), sorted by name.

    Args:
        folder: The folder to list.

    Returns:
        Paths of the regular files whose extension is in ``IMAGE_EXTENSIONS``, sorted by
        file name so the order (and therefore every index) is deterministic.
    """
    folder = Path(folder)
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and is_image_file(p)),
        key=lambda p: p.name,
    )


def _to_8bit(img: Image.Image) -> Image.Image:
    """Convert 16/32-bit integer and float grayscale images to 8-bit "L" by rescaling."""
    arr = np.asarray(img)
    if img.mode == "F":
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    else:
        scaled = arr.astype(np.float64) * (255.0 / 65535.0) if arr.max() > 255 else arr
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))  # "L"


def convert_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert a decoded PIL image to "L" (``channels=1``) or "RGB" (``channels=3``).

    Alpha is dropped, not composited: an RGBA/LA/transparent-palette image keeps its colour
    values as stored. 16-bit grayscale is rescaled to 8 bits; other modes use PIL's
    ``convert`` (RGB -> L uses the ITU-R 601 luma weights).

    Args:
        img: A decoded PIL image of any mode.
        channels: 1 or 3.

    Returns:
        A new image in mode "L" or "RGB".
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        img = img.convert("RGBA").convert("RGB")  # drop alpha (not composited)
    return img.convert("L" if channels == 1 else "RGB")


def open_image(path: Path | str, channels: int) -> Image.Image:
    """Open and fully decode an image file as "L" or "RGB".

    EXIF orientation is applied (photos from phones come out upright) and alpha is dropped
    (see ``convert_mode``).

    Args:
        path: The image file.
        channels: 1 for grayscale ("L"), 3 for colour ("RGB").

    Returns:
        The decoded image, detached from the file.

    Raises:
        DataError: "cannot read image PATH: <reason>" for a missing, empty, corrupt, truncated
            or non-image file.
    """
    return open_image_with_alpha(path, channels)[0]


def open_image_with_alpha(
    path: Path | str, channels: int
) -> tuple[Image.Image, Image.Image | None]:
    """Like `open_image`, and also the image's alpha channel ("L", same orientation) or None.

    Raises:
        DataError: as `open_image`.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(f"cannot read image {path}: the file is empty")
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            alpha = None
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                alpha = img.convert("RGBA").getchannel("A")
            return convert_mode(img, channels), alpha
    except DataError:
        raise
    except Exception as exc:  # PIL raises many types on corrupt data
        reason = one_line(exc) or type(exc).__name__
        raise DataError(f"cannot read image {path}: {reason}") from exc


def oriented_size(path: Path | str) -> tuple[int, int]:
    """(width, height) of an image as `open_image` returns it (EXIF rotation applied), from the
    header alone. Raises whatever PIL raises for a file that is not an image."""
    with Image.open(path) as img:
        width, height = img.size
        if img.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
            width, height = height, width
    return width, height


def check_image_header(path: Path) -> str | None:
    """Cheaply check that a file looks like an image (size > 0 and a header PIL recognises).

    Only the header is read; the pixel data is not decoded.

    Args:
        path: The file to check.

    Returns:
        None if the file looks readable, otherwise a one-line reason.
    """
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with Image.open(path) as img:
            width, height = img.size
        if width <= 0 or height <= 0:
            return f"invalid size {width}x{height}"
    except Exception as exc:  # PIL raises many types on corrupt data
        return one_line(exc) or type(exc).__name__
    return None


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """Convert an "L" or "RGB" PIL image to a float tensor in [-1, 1].

    Args:
        img: A PIL image in mode "L" or "RGB" (other modes are converted to "RGB").

    Returns:
        A float32 tensor (C, H, W) in [-1, 1], C = 1 for "L" and 3 otherwise.
    """
    if img.mode not in ("L", "RGB"):
        img = convert_mode(img, 3)
    arr = np.asarray(img, dtype=np.uint8)  # (H, W) or (H, W, 3) in [0, 255]
    t = torch.from_numpy(arr.copy())
    t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()  # (C, H, W)
    return t.to(torch.float32).div_(127.5).sub_(1.0)  # (C, H, W) in [-1, 1]


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """Convert a tensor in [-1, 1] back to a PIL image (the inverse of ``pil_to_tensor``).

    Values are clamped to [-1, 1] and rounded to 8 bits.

    Args:
        t: A tensor (C, H, W) with C = 1 or 3, or (1, C, H, W); any float dtype or device.

    Returns:
        A PIL image in mode "L" (C = 1) or "RGB" (C = 3).
    """
    t = t.detach()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) tensor with C = 1 or 3, got {tuple(t.shape)}")
    t = t.to("cpu", torch.float32).clamp(-1.0, 1.0)  # (C, H, W) in [-1, 1]
    arr = ((t + 1.0) * 127.5).round_().to(torch.uint8)  # (C, H, W) in [0, 255]
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0].numpy())  # "L"
    return Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy())  # "RGB"


def config_int(cfg: Mapping[str, Any], key: str, default: int | None, minimum: int) -> int:
    """Read an integer setting of the dataset config, checked to be >= ``minimum``.

    Args:
        cfg: The dataset config section.
        key: The key under ``dataset``.
        default: The value when the key is absent or null.
        minimum: The smallest accepted value.

    Returns:
        The integer.

    Raises:
        DataError: If the value is not an integer or is below ``minimum``.
    """
    value = cfg.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(
            f"dataset.{key}={value!r} is not an integer: set it to an integer >= {minimum}"
        )
    if value < minimum:
        raise DataError(f"dataset.{key}={value} is too small: set it to an integer >= {minimum}")
    return int(value)
