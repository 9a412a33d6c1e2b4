"""Apply a generator to an image of any size: whole, or in overlapping tiles blended smoothly."""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gantrans.errors import ConfigError
from gantrans.runtime import autocast

BLENDS = ("smooth", "none")
TILE_STATS = ("tile", "image", "sampled")
MAX_AUTO_TILE = 2048  # tile=auto never picks a larger side: more gains nothing and costs memory
PROBE_SIDE = 64  # side of the probe that measures a network's memory per pixel


@dataclass(frozen=True)
class Tiling:
    """How to cut an image: tiles of `tile` px overlapping by `overlap` px.

    Attributes:
        tile: Tile side in pixels (a multiple of the network's size multiple).
        overlap: Pixels shared by neighbouring tiles (at least; tiles are spread evenly).
        blend: "smooth" cross-fades the overlaps with a sin^2 window; "none" cuts each
            overlap in the middle.
        stats: Instance-norm statistics: "tile" (each tile its own, as the network does),
            "image" (once from the whole image, downscaled to `stats_pixels`), "sampled"
            (once from full-resolution tiles spread over the image, `stats_pixels` in all).
        stats_pixels: Pixel budget of the one pass that gathers the statistics.
        batch_size: Tiles per forward pass.
    """

    tile: int
    overlap: int = 64
    blend: str = "smooth"
    stats: str = "sampled"
    stats_pixels: int = 1024 * 1024
    batch_size: int = 4


def check_tiling(tile: int, overlap: int, blend: str, stats: str, multiple: int) -> None:
    """Raise ConfigError (one line) for tile options that cannot work with this network."""
    if overlap < 0:
        raise ConfigError(f"overlap={overlap} must be >= 0")
    if tile < multiple:
        raise ConfigError(
            f"tile={tile} is smaller than {multiple}, the size multiple of this network: "
            f"use tile={max(multiple, 512)} or larger"
        )
    if 2 * overlap >= tile:
        raise ConfigError(
            f"tile={tile} is too small for overlap={overlap}: the overlap must be less than "
            f"half the tile (use tile>={2 * overlap + multiple} or a smaller overlap)"
        )
    if blend not in BLENDS:
        raise ConfigError(f"blend={blend} is not known: use {' or '.join(BLENDS)}")
    if stats not in TILE_STATS:
        raise ConfigError(f"tile_stats={stats} is not known: use one of {', '.join(TILE_STATS)}")


def tile_spans(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """(start, end) of the tiles covering [0, length) along one axis.

    Starts are multiples of `align` (the network's size multiple: its strided layers then see
    every tile in the same phase as the whole image), neighbours overlap by at least
    `overlap`, and the last tile ends at `length` (it may be shorter than `tile`).
    """
    if length <= tile:
        return [(0, length)]
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, length - tile, stride))
    last = -(-(length - tile) // align) * align  # aligned up: the last tile reaches the end
    if last > starts[-1]:
        starts.append(last)
    return [(s, min(s + tile, length)) for s in starts]


def axis_weights(spans: list[tuple[int, int]], i: int, blend: str) -> torch.Tensor:
    """Blending weights (end - start,) of tile `i` along one axis, in [0, 1].

    "smooth": in each overlap with a neighbour, the outer quarter next to the tile's edge
    (where its padding shows) gets no weight and the middle half a sin^2 ramp, so the two
    tiles' weights sum to 1 and the result fades from one to the other; no ramp at the
    image's own edges. "none": 1 on the tile's half of each overlap, 0 on the neighbour's
    (a hard cut in the middle).
    """
    start, end = spans[i]
    size = end - start
    w = torch.ones(size, dtype=torch.float64)
    pos = torch.arange(size, dtype=torch.float64)
    sides = []
    if i > 0:  # overlap with the previous tile: [start, previous end)
        sides.append((pos, spans[i - 1][1] - start))
    if i + 1 < len(spans):  # overlap with the next tile: [next start, end)
        sides.append((size - 1 - pos, end - spans[i + 1][0]))
    for k, (depth, shared) in enumerate(sides):  # depth: distance from this tile's edge
        if blend == "smooth":
            margin = shared // 4
            ramp = max(shared - 2 * margin, 1)
            t = ((depth - margin + 0.5) / ramp).clamp(0.0, 1.0)
            w = w * torch.where(
                depth < margin, torch.zeros_like(w), torch.sin(0.5 * math.pi * t) ** 2
            )
        else:
            previous = k == 0 and i > 0  # the cut gives the previous tile the smaller half
            w = w * (depth >= (shared // 2 if previous else shared - shared // 2))
    return w.float()


# ---------------------------------------------------------------------------------------------
# instance-norm statistics shared by all tiles
# ---------------------------------------------------------------------------------------------
def _instance_norms(net: nn.Module) -> list[nn.modules.instancenorm._InstanceNorm]:
    """The instance-norm layers that compute statistics per image (not running ones)."""
    return [
        m
        for m in net.modules()
        if isinstance(m, nn.modules.instancenorm._InstanceNorm)
        and not (m.track_running_stats and not m.training)
    ]


def _normalise(
    m: nn.modules.instancenorm._InstanceNorm,
    x: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
) -> torch.Tensor:
    """What `m` computes, with per-channel `mean` and `var` (C,) in place of its own."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x.float() - mean.view(shape)) * torch.rsqrt(var.view(shape) + m.eps)
    if m.affine:
        y = y * m.weight.float().view(shape) + m.bias.float().view(shape)
    return y.to(x.dtype)


@contextlib.contextmanager
def _patched(net: nn.Module, forward: Callable) -> Iterator[None]:
    norms = _instance_norms(net)
    for m in norms:
        m.forward = forward.__get__(m)  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        for m in norms:
            del m.forward


def gather_norm_stats(net: nn.Module, views: torch.Tensor, device: torch.device, precision: str):
    """Instance-norm statistics of `views` (N, C, H, W) in [-1, 1], pooled over the batch.

    Every layer normalises with the statistics pooled over all views (batch and space), so
    the result describes the views together as one image.

    Returns:
        {layer: (mean (C,), var (C,))} for every per-image instance-norm layer of `net`.
    """
    stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def pooled(m, x):
        dims = [0, *range(2, x.ndim)]
        var, mean = torch.var_mean(x.float(), dim=dims, correction=0)
        stats[m] = (mean, var)
        return _normalise(m, x, mean, var)

    with _patched(net, pooled), torch.inference_mode(), autocast(device, precision):
        net(views.to(device))
    return stats


@contextlib.contextmanager
def fixed_norm_stats(net: nn.Module, stats: dict | None) -> Iterator[None]:
    """Within the block, `net`'s instance norms use `stats` (from `gather_norm_stats`)."""
    if not stats:
        yield
        return

    def fixed(m, x):
        mean, var = stats[m]
        return _normalise(m, x, mean, var)

    with _patched(net, fixed):
        yield


def has_instance_norm(net: nn.Module) -> bool:
    """Whether tiles of `net` would each get their own normalisation statistics."""
    return bool(_instance_norms(net))


# ---------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------
def bytes_per_pixel(net: nn.Module, channels: int, multiple: int, precision: str) -> float:
    """Peak memory per input pixel of one forward pass of `net`, estimated on the meta device.

    Every module is taken to keep its input alive while its children run (true of residual
    and skip blocks, conservative for plain sequences); the peak is the largest sum of those
    inputs plus one layer's input and output. Activation memory grows with the pixel count,
    so the figure scales to any size.
    """
    probe = copy.deepcopy(net).to("meta")
    side = max(PROBE_SIDE, multiple)
    stack: list[list[torch.Tensor]] = []
    peak = 0

    def tensors(obj) -> list[torch.Tensor]:
        if isinstance(obj, torch.Tensor):
            return [obj]
        if isinstance(obj, (tuple, list)):
            return [t for o in obj for t in tensors(o)]
        return []

    def pre(module, inputs):
        stack.append(tensors(inputs))

    def post(module, inputs, output):
        nonlocal peak
        held = stack.pop()
        if not any(True for _ in module.children()):
            live = {id(t): t for frame in stack for t in frame}
            live.update({id(t): t for t in held + tensors(output)})
            peak = max(peak, sum(t.numel() for t in live.values()))

    handles = []
    for m in probe.modules():
        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with torch.inference_mode():
            probe(torch.zeros(1, channels, side, side, device="meta"))
    finally:
        for h in handles:
            h.remove()
    element = 4 if precision == "fp32" else 3  # autocast keeps norms and some outputs in fp32
    return 1.5 * peak * element / (side * side)  # 1.5: library workspaces and layout copies


def memory_budget(device: torch.device, memory_gb: float | None = None) -> int:
    """Bytes a forward pass may use: `memory_gb` if given, else 80 % of the GPU's free memory
    on CUDA, or half of the available RAM on the CPU."""
    if memory_gb is not None:
        return int(memory_gb * 2**30)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.8 * free)
    return available_ram() // 2


def available_ram() -> int:
    """Bytes of RAM available to new allocations (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def auto_tile(budget: int, per_pixel: float, multiple: int, batch: int) -> int:
    """The largest tile side (a multiple of `multiple`, at most MAX_AUTO_TILE) whose batch
    of `batch` tiles fits `budget` bytes."""
    side = int(math.sqrt(budget / max(per_pixel * batch, 1e-9)))
    return max(min(side, MAX_AUTO_TILE) // multiple * multiple, multiple)


# ---------------------------------------------------------------------------------------------
# running the network
# ---------------------------------------------------------------------------------------------
def pad_to_multiple(batch: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Pad (N, C, H, W) on the bottom and right to what the generator takes (reflection where
    possible). Sides become multiples of `multiple` and at least 8, so even a 3-pixel image
    keeps a bottleneck wide enough for the ResNet blocks' reflection padding."""
    h, w = batch.shape[-2:]
    minimum = max(multiple, 8)
    ph = max(minimum, -(-h // multiple) * multiple) - h
    pw = max(minimum, -(-w // multiple) * multiple) - w
    if ph == 0 and pw == 0:
        return batch, h, w
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(batch, (0, pw, 0, ph), mode=mode), h, w


class Runner:
    """Calls a generator on batches in [-1, 1]: pads to its size multiple, autocasts, crops.

    Args:
        net: The generator, in eval mode.
        multiple: What its input sides must be a multiple of.
        device: Where it runs.
        precision: "fp32", "bf16" or "fp16".
    """

    def __init__(self, net: nn.Module, multiple: int, device: torch.device, precision: str):
        self.net, self.multiple, self.device, self.precision = net, multiple, device, precision

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, C_out, H, W) float32 on the CPU in [-1, 1]."""
        padded, h, w = pad_to_multiple(batch.to(self.device), self.multiple)
        with torch.inference_mode(), autocast(self.device, self.precision):
            return self.net(padded)[..., :h, :w].float().cpu()


def _downscaled(source: torch.Tensor, to_unit: Callable, pixels: int) -> torch.Tensor:
    """The whole of `source` (C, H, W) shrunk by an integer area average to <= `pixels`
    pixels, as (1, C, h, w) in [-1, 1], converted a strip at a time to bound memory."""
    _, h, w = source.shape
    k = max(1, math.ceil(math.sqrt(h * w / pixels)))
    rows = k * max(1, 256 // k)
    strips = [
        F.avg_pool2d(to_unit(source[:, y : y + rows])[None], k, ceil_mode=True)
        for y in range(0, h, rows)
    ]
    return torch.cat(strips, dim=2)


def _spread(length: int, size: int, n: int) -> list[int]:
    """`n` start offsets of windows of `size` spread evenly over [0, length)."""
    if n == 1:
        return [(length - size) // 2]
    return [round(i * (length - size) / (n - 1)) for i in range(n)]


def _sampled(source: torch.Tensor, to_unit: Callable, tile: int, pixels: int) -> torch.Tensor:
    """Full-resolution tiles spread evenly over `source` (C, H, W), `pixels` in all, as
    (N, C, t, t) in [-1, 1]."""
    _, h, w = source.shape
    th, tw = min(tile, h), min(tile, w)
    n = max(1, pixels // (th * tw))
    ny = max(1, min(round(math.sqrt(n * h / w)), math.ceil(h / th)))
    nx = max(1, min(n // ny, math.ceil(w / tw)))
    ys, xs = _spread(h, th, ny), _spread(w, tw, nx)
    return torch.stack([to_unit(source[:, y : y + th, x : x + tw]) for y in ys for x in xs])


def norm_stats_for(
    runner: Runner, source: torch.Tensor, to_unit: Callable, tiling: Tiling
) -> dict | None:
    """The shared instance-norm statistics `tiling.stats` asks for, or None ("tile", or a
    network without instance norm)."""
    if tiling.stats == "tile" or not has_instance_norm(runner.net):
        return None
    if tiling.stats == "image":
        views = _downscaled(source, to_unit, tiling.stats_pixels)
    else:
        views = _sampled(source, to_unit, tiling.tile, tiling.stats_pixels)
    views, _, _ = pad_to_multiple(views, runner.multiple)
    return gather_norm_stats(runner.net, views, runner.device, runner.precision)


def translate_tiled(
    runner: Runner,
    source: torch.Tensor,
    to_unit: Callable[[torch.Tensor], torch.Tensor],
    out: torch.Tensor,
    from_unit: Callable[[torch.Tensor], torch.Tensor],
    tiling: Tiling,
    on_tiles: Callable[[int], None] | None = None,
) -> None:
    """Translate `source` tile by tile into `out`, blending the overlaps.

    Memory beyond `source` and `out` is bounded by the tile size: the blended result is
    accumulated in a band of at most two tile rows and written to `out` row band by row band.

    Args:
        runner: The network (see `Runner`).
        source: The image (C, H, W) in its stored dtype (uint8, int32 for 16 bits, float32).
        to_unit: Maps a crop of `source` to float32 in [-1, 1].
        out: Filled in place: (C_out, H, W), in whatever dtype `from_unit` returns.
        from_unit: Maps float32 (C_out, h, W) in [-1, 1] to `out`'s dtype and range.
        tiling: Tile side, overlap, blending, statistics.
        on_tiles: Called with the number of tiles done after each batch (progress).
    """
    _, h, w = source.shape
    m = runner.multiple
    ys, xs = (
        tile_spans(h, tiling.tile, tiling.overlap, m),
        tile_spans(w, tiling.tile, tiling.overlap, m),
    )
    wy = [axis_weights(ys, i, tiling.blend) for i in range(len(ys))]
    wx = [axis_weights(xs, j, tiling.blend) for j in range(len(xs))]
    c_out = out.shape[0]
    top = 0  # first row not yet written to `out`; `acc` holds rows [top, top + acc height)
    acc = torch.zeros(c_out, 0, w)  # weighted sum of tile outputs, (C_out, rows, W)
    weight = torch.zeros(1, 0, w)  # sum of weights, (1, rows, W)
    stats = norm_stats_for(runner, source, to_unit, tiling)
    with fixed_norm_stats(runner.net, stats):
        for r, (y0, y1) in enumerate(ys):
            grow = y1 - top - acc.shape[1]
            if grow > 0:
                acc = torch.cat([acc, torch.zeros(c_out, grow, w)], dim=1)
                weight = torch.cat([weight, torch.zeros(1, grow, w)], dim=1)
            for cols in _same_width_batches(xs, tiling.batch_size):
                crops = [to_unit(source[:, y0:y1, xs[j][0] : xs[j][1]]) for j in cols]
                result = runner(torch.stack(crops))  # (n, C_out, y1 - y0, width) in [-1, 1]
                for j, tile_out in zip(cols, result, strict=True):
                    win = wy[r][:, None] * wx[j][None, :]  # (tile height, tile width)
                    rows, span = slice(y0 - top, y1 - top), slice(*xs[j])
                    acc[:, rows, span] += tile_out * win
                    weight[:, rows, span] += win
                if on_tiles is not None:
                    on_tiles(len(cols))
            done = ys[r + 1][0] if r + 1 < len(ys) else h  # rows above the next tile row are final
            n = done - top
            out[:, top:done] = from_unit(acc[:, :n] / weight[:, :n].clamp_min(1e-12))
            acc, weight, top = acc[:, n:].clone(), weight[:, n:].clone(), done


def _same_width_batches(spans: list[tuple[int, int]], size: int) -> list[list[int]]:
    """Indices of `spans` in batches of at most `size` tiles of one width (they must stack)."""
    batches: list[list[int]] = []
    for j, (a, b) in enumerate(spans):
        if (
            batches
            and len(batches[-1]) < size
            and spans[batches[-1][0]][1] - spans[batches[-1][0]][0] == b - a
        ):
            batches[-1].append(j)
        else:
            batches.append([j])
    return batches


def count_tiles(h: int, w: int, tile: int, overlap: int, align: int = 1) -> int:
    """How many tiles `translate_tiled` runs for an image of h x w."""
    return len(tile_spans(h, tile, overlap, align)) * len(tile_spans(w, tile, overlap, align))
