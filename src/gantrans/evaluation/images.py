"""Images as the evaluation sees them: evenly spaced subsets of a domain, loaded with the
test-time transform, rounded to 8 bits as saved files are, and translated in batches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from gantrans.data import DataError, DomainDataset


def spaced(n_total: int, limit: int | None) -> list[int]:
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
    for i in tqdm(spaced(len(domain), limit), desc=f"load {what}", disable=not progress):
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
