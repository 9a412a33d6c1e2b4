"""A loaded generator ready to apply to images of any size: batching, tiling and memory planning
shared by `translate` (images and video) and `serve`."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gantrans.applying.tiling import (
    Runner,
    Tiling,
    auto_tile,
    bytes_per_pixel,
    check_tiling,
    memory_budget,
    translate_tiled,
)
from gantrans.errors import ConfigError
from gantrans.models import size_multiple

log = logging.getLogger("gantrans")


@dataclass
class ApplyOptions:
    """How to apply a generator (the `translate` options of the same names).

    Attributes:
        batch_size: Images (or tiles) per forward pass.
        tile: "auto" (tiles only where a whole image would not fit the memory budget), "off"
            (always whole), or a tile side in pixels (images larger than it are tiled).
        overlap: Pixels shared by neighbouring tiles.
        blend: "smooth" or "none" (see `gantrans.applying.tiling.Tiling`).
        tile_stats: "image", "sampled" or "tile" (see `gantrans.applying.tiling.Tiling`).
        stats_pixels: Pixel budget of the pass that gathers the shared statistics.
        max_pixels: With tile=auto, the most pixels one forward pass may take (overrides the
            memory budget).
        memory_gb: With tile=auto, the memory budget in GiB (default: 80 % of free GPU memory
            on CUDA, half the available RAM on the CPU).
    """

    batch_size: int = 8
    tile: str | int = "auto"
    overlap: int = 64
    blend: str = "smooth"
    tile_stats: str = "sampled"
    stats_pixels: int = 1024 * 1024
    max_pixels: int | None = None
    memory_gb: float | None = None


def parse_tile(tile: object) -> str | int:
    """`tile=` as "auto", "off" or a positive int; ConfigError otherwise."""
    text = str(tile).strip().lower()
    if text in ("auto", "off"):
        return text
    if text in ("none", "null", "false", "0"):
        return "off"
    try:
        number = float(text)  # tile=1e9 arrives from the command line as a float
    except ValueError:
        number = 0.0
    shown = f"{tile:g}" if isinstance(tile, float) else tile
    if not math.isfinite(number) or number <= 0 or number != int(number):
        raise ConfigError(f"tile={shown} is not a tile size: use auto, off or a side in pixels")
    return int(number)


@dataclass(frozen=True)
class Plan:
    """How one image size is translated: whole (`tiling` None) `batch` images at a time, or
    in tiles."""

    tiling: Tiling | None
    batch: int
    align: int = 1  # tile starts are multiples of this (the network's size multiple)


class Translator:
    """One direction of a model with the options to apply it.

    Args:
        net: The generator from `load_generator`, in eval mode.
        arch: Its architecture dict (channels, size multiple).
        device: Where it runs.
        precision: "fp32", "bf16" or "fp16" (already resolved).
        options: Batching, tiling and memory options.
    """

    def __init__(
        self,
        net: nn.Module,
        arch: dict,
        device: torch.device,
        precision: str,
        options: ApplyOptions | None = None,
    ) -> None:
        self.options = opts = options or ApplyOptions()
        self.in_channels = int(arch["in_channels"])
        self.out_channels = int(arch.get("out_channels", self.in_channels))
        self.multiple = size_multiple(arch)
        self.runner = Runner(net, self.multiple, device, precision)
        self.tile = parse_tile(opts.tile)
        if isinstance(self.tile, int) and self.tile % self.multiple and self.tile > self.multiple:
            rounded = self.tile // self.multiple * self.multiple
            log.info(
                "tile=%d: using %d, a multiple of this network's %d",
                self.tile,
                rounded,
                self.multiple,
            )
            self.tile = rounded
        if opts.batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {opts.batch_size}")
        if opts.max_pixels is not None and opts.max_pixels < 1:
            raise ConfigError(f"max_pixels must be positive, got {opts.max_pixels}")
        if opts.memory_gb is not None and opts.memory_gb <= 0:
            raise ConfigError(f"memory_gb must be positive, got {opts.memory_gb}")
        if opts.stats_pixels < 64 * 64:
            raise ConfigError(f"stats_pixels={opts.stats_pixels} is too small: use >= 4096")
        # check the options once, with the tile side they would use
        side = self.tile if isinstance(self.tile, int) else max(512, 2 * opts.overlap + 64)
        check_tiling(side, opts.overlap, opts.blend, opts.tile_stats, self.multiple)
        self._per_pixel: float | None = None
        self._budget: int | None = None
        self._plans: dict[tuple[int, int], Plan] = {}

    @property
    def net(self) -> nn.Module:
        return self.runner.net

    def _tiling(
        self, side: int, batch: int, overlap: int | None = None, stats_pixels: int | None = None
    ) -> Tiling:
        o = self.options
        overlap = o.overlap if overlap is None else overlap
        stats = o.stats_pixels if stats_pixels is None else stats_pixels
        return Tiling(side, overlap, o.blend, o.tile_stats, stats, batch)

    def _memory(self) -> tuple[float, int]:
        """(bytes per pixel of a forward pass, budget in bytes), measured once."""
        if self._per_pixel is None:
            self._per_pixel = bytes_per_pixel(
                self.net, self.in_channels, self.multiple, self.runner.precision
            )
            if self.options.max_pixels is not None:
                self._budget = int(self.options.max_pixels * self._per_pixel)
            else:
                self._budget = memory_budget(self.runner.device, self.options.memory_gb)
        return self._per_pixel, self._budget

    def plan(self, h: int, w: int) -> Plan:
        """Whole or tiled, and how many images or tiles per pass, for an h x w image."""
        if (h, w) in self._plans:
            return self._plans[(h, w)]
        batch = self.options.batch_size
        if self.tile == "off":
            plan = Plan(None, batch)
        elif isinstance(self.tile, int):
            plan = (
                Plan(None, batch)
                if max(h, w) <= self.tile
                else Plan(self._tiling(self.tile, batch), 1, self.multiple)
            )
        else:
            per_pixel, budget = self._memory()
            padded = (-(-h // self.multiple) * self.multiple) * (
                -(-w // self.multiple) * self.multiple
            )
            fits = int(budget // (padded * per_pixel))
            if fits >= 1:
                plan = Plan(None, min(batch, fits))
            else:
                tiles = max(1, min(batch, 4))  # a few tiles per pass, unless that shrinks them
                side = auto_tile(budget, per_pixel, self.multiple, tiles)
                if side < 512:
                    tiles = 1
                    side = auto_tile(budget, per_pixel, self.multiple, tiles)
                overlap = min(self.options.overlap, side // 4)  # a small budget: less overlap
                # the pass that gathers the statistics fits the budget too
                stats = min(self.options.stats_pixels, max(64 * 64, int(budget // per_pixel)))
                plan = Plan(self._tiling(side, tiles, overlap, stats), 1, self.multiple)
                log.info(
                    "%dx%d does not fit in %s whole: tiles of %d px, overlap %d",
                    w,
                    h,
                    f"{budget / 2**30:.1f} GiB" if budget >= 2**30 else f"{budget / 2**20:.0f} MiB",
                    side,
                    overlap,
                )
        self._plans[(h, w)] = plan
        return plan

    def whole(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, C_out, H, W) float32 in [-1, 1] on the CPU."""
        return self.runner(batch)

    def translate(
        self,
        source: torch.Tensor,
        to_unit: Callable[[torch.Tensor], torch.Tensor],
        out: torch.Tensor,
        from_unit: Callable[[torch.Tensor], torch.Tensor],
        on_tiles: Callable[[int], None] | None = None,
        tiling: Tiling | None = None,
    ) -> None:
        """Translate one image (C, H, W) into `out`: in `tiling`'s tiles if given, else whole
        or tiled as `plan` decides (see `gantrans.applying.tiling.translate_tiled` for the arguments)."""
        tiling = tiling or self.plan(*source.shape[-2:]).tiling
        if tiling is None:
            out[:] = from_unit(self.whole(to_unit(source)[None])[0])
        else:
            translate_tiled(self.runner, source, to_unit, out, from_unit, tiling, on_tiles)


def tiles_in(plan: Plan, h: int, w: int) -> int:
    """Forward-pass units of an image under `plan` (1 when whole), for progress bars."""
    if plan.tiling is None:
        return 1
    from gantrans.applying.tiling import count_tiles

    return count_tiles(h, w, plan.tiling.tile, plan.tiling.overlap, plan.align)


def megapixels(h: int, w: int) -> str:
    """ "12.3 MP" for log lines."""
    return f"{h * w / 1e6:.1f} MP" if h * w >= 1e5 else f"{math.ceil(h * w / 1e3)} kP"
