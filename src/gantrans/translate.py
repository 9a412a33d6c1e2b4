"""`gantrans translate`: apply one direction of a trained model to every image in a folder."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from gantrans.config import to_plain
from gantrans.data import DataError, list_images, pil_to_tensor, tensor_to_pil
from gantrans.data.imageio import open_image_with_alpha, oriented_size
from gantrans.errors import GantransError
from gantrans.loader import load_generator
from gantrans.models import size_multiple
from gantrans.runtime import autocast, check_precision, resolve_device, resolve_precision

log = logging.getLogger("gantrans")

ALPHA_FORMATS = {".png", ".webp"}  # output formats that can keep an alpha channel


def _pad(batch: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Pad (N, C, H, W) on the bottom and right to what the generator takes (reflection where possible).

    Sides become multiples of `multiple` and at least 8, so even a 3-pixel image keeps a
    bottleneck wide enough for the ResNet blocks' reflection padding.
    """
    h, w = batch.shape[-2:]
    minimum = max(multiple, 8)
    ph = max(minimum, -(-h // multiple) * multiple) - h
    pw = max(minimum, -(-w // multiple) * multiple) - w
    if ph == 0 and pw == 0:
        return batch, h, w
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(batch, (0, pw, 0, ph), mode=mode), h, w


def _save(out: torch.Tensor, alpha: Image.Image | None, path: Path) -> None:
    img = tensor_to_pil(out)  # (C, H, W) in [-1, 1] -> "L" or "RGB"
    if alpha is not None and path.suffix.lower() in ALPHA_FORMATS:
        img = img.convert("LA" if img.mode == "L" else "RGBA")
        img.putalpha(alpha)
    kwargs = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
    tmp = path.with_name(f".{path.name}.part")
    img.save(tmp, format=Image.registered_extensions()[path.suffix.lower()], **kwargs)
    tmp.replace(path)  # never leave a half-written image under the final name


def translate_folder(
    *,
    ckpt: str | Path,
    input_dir: str | Path,
    output_dir: str | Path | None = None,
    direction: str = "AtoB",
    batch_size: int = 8,
    device: str = "auto",
    precision: str = "fp32",
    progress: bool = True,
) -> tuple[Path, int, list[str]]:
    """Translate every image in `input_dir`, keeping file names, sizes and alpha.

    Images of any size are padded to what the network needs and cropped back; images of the
    same size are batched together. Unreadable files are skipped and returned.

    Returns:
        (output folder, number of images written, messages for the files that failed).
    """
    dev = resolve_device(device)
    precision = resolve_precision(dev, precision)
    check_precision(dev, precision)
    net, arch = load_generator(ckpt, direction, dev, progress=progress)
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise DataError(f"input_dir={input_dir} is not a folder: point it at a folder of images")
    files = list_images(input_dir)
    if not files:
        raise DataError(f"input_dir={input_dir} holds no images (.jpg, .png, .bmp, .webp)")
    if output_dir is None:
        output_dir = Path("translated") / f"{input_dir.resolve().name}_{direction}"
    output_dir = Path(output_dir)
    if output_dir.resolve() == input_dir.resolve():
        raise GantransError(
            "output_dir is the input folder: choose another one so no input is overwritten"
        )
    if batch_size < 1:
        raise GantransError(f"batch_size must be positive, got {batch_size}")
    channels, multiple = int(arch["in_channels"]), size_multiple(arch)
    output_dir.mkdir(parents=True, exist_ok=True)

    # group by size (read from headers only) so each batch stacks
    groups: dict[tuple[int, int], list[Path]] = defaultdict(list)
    failed: list[str] = []
    for path in files:
        try:
            groups[oriented_size(path)].append(path)  # the size after EXIF rotation
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            failed.append(f"{path.name} ({type(exc).__name__})")

    written = 0
    bar = tqdm(total=len(files) - len(failed), disable=not progress, unit="img", desc=direction)
    with torch.inference_mode():
        for paths in groups.values():
            for i in range(0, len(paths), batch_size):
                chunk, images, alphas = [], [], []
                for path in paths[i : i + batch_size]:
                    try:
                        image, alpha = open_image_with_alpha(path, channels)
                    except DataError:
                        failed.append(f"{path.name} (corrupt)")
                        bar.update(1)
                        continue
                    chunk.append(path)
                    images.append(pil_to_tensor(image))
                    alphas.append(alpha)
                if not images:
                    continue
                batch, h, w = _pad(torch.stack(images).to(dev), multiple)
                with autocast(dev, precision):
                    out = net(batch)[..., :h, :w].float().cpu()  # crop back to the input size
                for path, image_out, alpha in zip(chunk, out, alphas, strict=True):
                    _save(image_out, alpha, output_dir / path.name)
                    written += 1
                bar.update(len(chunk))
    bar.close()
    return output_dir, written, failed


def main(cfg: DictConfig) -> None:
    """Entry point of `gantrans translate`."""
    opts = to_plain(cfg)
    out, written, failed = translate_folder(**opts)
    log.info("translated %d image(s) %s into %s", written, opts["direction"], out)
    if failed:
        shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
        raise DataError(f"{len(failed)} image(s) could not be read and were skipped: {shown}")
