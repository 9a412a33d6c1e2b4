"""What a run shows: TensorBoard scalars and image grids, sample PNGs, and loss averages."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image

log = logging.getLogger("gantrans")

MIN_TILE = 96  # grid tiles are upscaled (nearest neighbour) to at least this many pixels


class RunningMeans:
    """Averages of scalar tensors over a logging interval, synchronised only when read."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
            self.counts[key] += 1

    def means(self) -> dict[str, float]:
        """The averages, read back from the device in one transfer (one synchronisation)."""
        if not self.sums:
            return {}
        values = torch.stack([v / self.counts[k] for k, v in self.sums.items()]).tolist()
        return dict(zip(self.sums, values, strict=True))

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()


def image_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """Rows of images (one column per sample) as one (3, H, W) image in [0, 1].

    Images smaller than MIN_TILE pixels are enlarged by an integer factor so they stay legible.

    Args:
        rows: Tensors (N, C, H, W) in [-1, 1] of the same shape, e.g. inputs, translations.
    """
    images = torch.cat([r.detach().float().cpu() for r in rows])
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    images = (images.clamp(-1, 1) + 1) / 2
    scale = max(1, MIN_TILE // max(images.shape[-2:]))
    if scale > 1:  # small images (32 px shapes, 64 px faces) are unreadable at their own size
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    return make_grid(images, nrow=rows[0].shape[0], padding=2, pad_value=1.0)


class Reporter:
    """TensorBoard writer plus PNG copies of the image grids under <run>/samples."""

    def __init__(self, run_dir: Path, purge_step: int | None = None, enabled: bool = True) -> None:
        """`enabled=False` gives a reporter that writes nothing (non-zero ranks in DDP)."""
        self.run_dir = run_dir
        self.enabled = enabled
        self.samples_dir = run_dir / "samples"
        self.writer = None
        if enabled:
            self.samples_dir.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def grid(self, step: int, tag: str, grid: torch.Tensor) -> None:
        """Log a (3, H, W) grid in [0, 1] to TensorBoard and save it as a PNG."""
        if self.writer is None:
            return
        self.writer.add_image(tag, grid, step)
        save_image(grid, self.samples_dir / f"{tag.replace('/', '_')}_{step:07d}.png")

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, 0)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
