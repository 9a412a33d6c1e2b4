"""Images at their own bit depth (8-bit, 16-bit, float) and the value range that maps them to [-1, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from gantrans.data.imageio import IMAGE_EXTENSIONS, DataError, one_line, open_image_with_alpha
from gantrans.errors import ConfigError

TIFF_EXTENSIONS = (".tif", ".tiff")
PICTURE_EXTENSIONS = (*IMAGE_EXTENSIONS, *TIFF_EXTENSIONS)
"""What `gantrans translate` reads: the training formats plus TIFF."""
DEEP_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}  # can hold 16-bit grayscale
ALPHA_FORMATS = {".png", ".webp"}  # output formats that can keep an alpha channel
DEEP_MODES = {"I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 16, "F": 32}
BIT_DEPTHS = ("8", "16", "same")


@dataclass
class Picture:
    """A decoded image as a tensor in its stored precision.

    Attributes:
        pixels: (C, H, W): uint8 for 8-bit images ("L" or "RGB", already converted to the
            network's channels), int32 holding 16-bit values, or float32; 16-bit and float
            images are single-channel.
        alpha: The 8-bit alpha channel ("L", same orientation) or None.
        bit_depth: 8, 16 or 32 (float).
        lo: The value that maps to -1.
        hi: The value that maps to +1.
    """

    pixels: torch.Tensor
    alpha: Image.Image | None
    bit_depth: int
    lo: float
    hi: float

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return tuple(self.pixels.shape[-2:])

    def to_unit(self, crop: torch.Tensor, channels: int) -> torch.Tensor:
        """A crop of `pixels` (C, h, w) as float32 in [-1, 1] with `channels` channels."""
        scale = 2.0 / (self.hi - self.lo) if self.hi > self.lo else 0.0
        unit = (crop.float() - self.lo).mul_(scale).sub_(1.0)  # (C, h, w) in [-1, 1]
        if unit.shape[0] == 1 and channels == 3:
            unit = unit.expand(3, -1, -1)  # grayscale into a colour network
        return unit


def read_picture(path: Path | str, channels: int, value_range: object = "auto") -> Picture:
    """Read an image keeping its bit depth.

    8-bit images are converted to the network's channels as for training (alpha kept aside);
    16-bit and float grayscale (PNG, TIFF) keep every level.

    Args:
        path: The image file.
        channels: The network's input channels (1 or 3).
        value_range: What maps to [-1, 1]: "auto" (the type's full range for integers, the
            image's min..max for float), "dtype", "image", or [lo, hi].

    Raises:
        DataError: "cannot read image PATH: <reason>" for a file that cannot be decoded.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            deep = img.mode in DEEP_MODES
            if deep:
                img.load()
                img = ImageOps.exif_transpose(img)
                arr = np.asarray(img)
    except Exception as exc:  # PIL raises many types on corrupt data
        raise DataError(f"cannot read image {path}: {one_line(exc) or type(exc).__name__}") from exc
    if not deep:
        image, alpha = open_image_with_alpha(path, channels)
        arr8 = np.asarray(image, dtype=np.uint8)  # (H, W) or (H, W, 3)
        pixels = torch.from_numpy(arr8.copy())
        pixels = pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1).contiguous()
        lo, hi = _range(value_range, 8, pixels)
        return Picture(pixels, alpha, 8, lo, hi)
    if arr.dtype.kind == "f":
        pixels, depth = torch.from_numpy(arr.astype(np.float32))[None], 32
    else:
        pixels, depth = torch.from_numpy(arr.astype(np.int32))[None], 16
    lo, hi = _range(value_range, depth, pixels)
    return Picture(pixels, None, depth, lo, hi)


def _range(value_range: object, depth: int, pixels: torch.Tensor) -> tuple[float, float]:
    if isinstance(value_range, Sequence) and not isinstance(value_range, str):
        lo, hi = (float(v) for v in value_range)
        return lo, hi
    if value_range == "image" or (value_range == "auto" and depth == 32):
        return float(pixels.min()), float(pixels.max())
    return 0.0, float(255 if depth == 8 else 65535)


def check_value_range(value_range: object) -> None:
    """Raise ConfigError unless `value_range` is auto, dtype, image or [lo, hi] with lo < hi."""
    if isinstance(value_range, str) and value_range in ("auto", "dtype", "image"):
        return
    if isinstance(value_range, Sequence) and not isinstance(value_range, str):
        try:
            lo, hi = (float(v) for v in value_range)
        except (TypeError, ValueError):
            lo, hi = 0.0, 0.0
        if lo < hi:
            return
    raise ConfigError(
        f"value_range={value_range} is not known: use auto, dtype, image or [LO,HI] with LO < HI"
    )


def output_depth(requested: str, picture: Picture, out_channels: int) -> int:
    """The bit depth to write for `picture`: `requested` "8" or "16", or "same" as the input
    (16-bit and float stay deep only for single-channel output; PIL has no 16-bit colour)."""
    if requested == "8":
        return 8
    if requested == "16":
        return 16
    return picture.bit_depth if out_channels == 1 else 8


def check_output_depth(requested: str, out_channels: int, suffix: str, name: str) -> None:
    """Raise ConfigError if `requested` bits cannot be written for this output."""
    if requested not in BIT_DEPTHS:
        raise ConfigError(f"output_bit_depth={requested} is not known: use 8, 16 or same")
    if requested == "16" and out_channels != 1:
        raise ConfigError(
            "output_bit_depth=16 writes grayscale only and this model outputs colour: "
            "use output_bit_depth=8 or a 1-channel model"
        )
    if requested == "16" and suffix.lower() not in DEEP_FORMATS:
        raise ConfigError(
            f"output_bit_depth=16 needs PNG or TIFF output, but {name} is {suffix}: "
            "convert the input or use output_bit_depth=8"
        )


def from_unit(unit: torch.Tensor, depth: int, lo: float, hi: float) -> torch.Tensor:
    """Map float (C, h, w) in [-1, 1] to the stored values of a `depth`-bit image.

    8 bits: uint8 over 0..255; 16 bits: int32 over [lo, hi] (0..65535 when the input was
    8-bit); 32: float32 over [lo, hi].
    """
    unit = unit.clamp(-1.0, 1.0)
    if depth == 8:
        return unit.add(1.0).mul_(127.5).round_().to(torch.uint8)
    values = unit.add(1.0).mul_(0.5 * (hi - lo)).add_(lo)
    if depth == 32:
        return values.float()
    return values.round_().clamp_(0, 65535).to(torch.int32)


def output_range(picture: Picture, depth: int) -> tuple[float, float]:
    """[lo, hi] of the output: the input's own range when the depth is kept, else the
    output type's full range."""
    if depth == picture.bit_depth and depth != 8:
        return picture.lo, picture.hi
    return 0.0, 65535.0 if depth == 16 else 255.0


def save_picture(values: torch.Tensor, depth: int, alpha: Image.Image | None, path: Path) -> None:
    """Write (C, H, W) values from `from_unit` to `path` (format from the suffix), atomically:
    a half-written file never stands under the final name."""
    arr = values.numpy() if values.shape[0] > 1 else values[0].numpy()
    if depth == 8:
        arr = arr.transpose(1, 2, 0) if arr.ndim == 3 else arr
        img = Image.fromarray(np.ascontiguousarray(arr))  # "L" or "RGB"
        if alpha is not None and path.suffix.lower() in ALPHA_FORMATS:
            img = img.convert("LA" if img.mode == "L" else "RGBA")
            img.putalpha(alpha)
    elif depth == 16:
        img = Image.fromarray(arr.astype(np.uint16))  # "I;16"
    else:
        img = Image.fromarray(arr.astype(np.float32))  # "F" (TIFF only)
    suffix = path.suffix.lower()
    kwargs = {"quality": 95} if suffix in (".jpg", ".jpeg", ".webp") else {}
    if suffix in TIFF_EXTENSIONS:
        kwargs = {"compression": "tiff_deflate"}
    tmp = path.with_name(f".{path.name}.part")
    try:
        img.save(tmp, format=Image.registered_extensions()[suffix], **kwargs)
        tmp.replace(path)  # never leave a half-written image under the final name
    finally:
        tmp.unlink(missing_ok=True)
