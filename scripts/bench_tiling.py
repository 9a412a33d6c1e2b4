"""Tiled translation: seams against a whole-image translation, and the largest image's time and memory.

    python scripts/bench_tiling.py --ckpt CKPT --size 1536x1536 --tile 512 --overlap 64
    python scripts/bench_tiling.py --ckpt CKPT --large 10000x8000 --tile 512 --overlap 64

The seam part translates one image whole and in tiles (every blend and statistics option, and
plain tiles without overlap) and reports |tiled - whole| in 0..255 levels inside the tiles and
in the bands where tiles meet, plus the step across each cut line against the whole image's.
The large part writes a synthetic image and times `gantrans translate` on it in a child
process, reporting its wall time and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from gantrans.applying.loader import load_generator
from gantrans.applying.tiling import Tiling, tile_spans
from gantrans.applying.translator import ApplyOptions, Translator
from gantrans.data.pixels import read_picture
from gantrans.runtime import resolve_precision


def shapes_scene(width: int, height: int, seed: int = 0) -> Image.Image:
    """A large image in the shapes model's domain A: bright circles on a dark, slowly varying
    background, one circle per 32-px cell at a random place, size and colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 20 + 12 * np.sin(xx / 700.0) * np.cos(yy / 900.0)  # dark grey, slowly varying
    bg = np.stack([base + 4, base, base - 3], axis=-1).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(bg)
    draw = ImageDraw.Draw(img)
    for cy in range(0, height, 32):
        for cx in range(0, width, 32):
            d = rng.uniform(7, 16)
            x, y = cx + rng.uniform(d / 2 + 2, 30 - d / 2), cy + rng.uniform(d / 2 + 2, 30 - d / 2)
            colour = tuple(int(v) for v in rng.integers(90, 256, 3))
            draw.ellipse([x - d / 2, y - d / 2, x + d / 2, y + d / 2], fill=colour)
    return img


def border_mask(h: int, w: int, tile: int, overlap: int, align: int) -> torch.Tensor:
    """(H, W) bool: True in the bands where neighbouring tiles overlap (a line where they
    only touch)."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    for length, axis in ((h, 0), (w, 1)):
        spans = tile_spans(length, tile, overlap, align)
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            band = slice(start, max(end, start + 1))
            if axis == 0:
                mask[band] = True
            else:
                mask[:, band] = True
    return mask


def cut_lines(length: int, tile: int, overlap: int, align: int) -> list[int]:
    """Where the hard cut of blend=none falls between neighbouring tiles."""
    spans = tile_spans(length, tile, overlap, align)
    return [s + (e - s) // 2 for (_, e), (s, _) in zip(spans, spans[1:], strict=False)]


def step(img: torch.Tensor, cuts_y: list[int], cuts_x: list[int]) -> float:
    """Mean |difference| across the cut lines, (C, H, W) in [-1, 1] -> 0..255 levels."""
    steps = [(img[:, c] - img[:, c - 1]).abs().mean() for c in cuts_y]
    steps += [(img[:, :, c] - img[:, :, c - 1]).abs().mean() for c in cuts_x]
    return float(torch.stack(steps).mean()) * 127.5 if steps else 0.0


def seams(args: argparse.Namespace) -> dict:
    device = torch.device("cpu")
    precision = resolve_precision(device, args.precision)
    net, arch = load_generator(args.ckpt, args.direction, device)
    if args.image:
        picture = read_picture(args.image, int(arch["in_channels"]))
    else:
        w, h = (int(v) for v in args.size.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            shapes_scene(w, h).save(Path(tmp) / "scene.png")
            picture = read_picture(Path(tmp) / "scene.png", int(arch["in_channels"]))
    channels = int(arch["in_channels"])
    h, w = picture.size

    def to_unit(crop: torch.Tensor) -> torch.Tensor:
        return picture.to_unit(crop, channels)

    base = Translator(net, arch, device, precision, ApplyOptions(tile="off"))
    started = time.perf_counter()
    whole = base.whole(to_unit(picture.pixels)[None])[0]  # (C, H, W) in [-1, 1]
    rows = [{"variant": "whole image", "seconds": round(time.perf_counter() - started, 2)}]
    m = base.multiple
    if args.variants:
        chosen = [v.split(":") for v in args.variants.split(",")]
    else:
        chosen = [("0", "none", "tile")]
        chosen += [(str(args.overlap), b, s) for s in ("tile", "image", "sampled")
                   for b in ("none", "smooth")]  # fmt: skip
        chosen += [("16", b, "sampled") for b in ("none", "smooth")]
    variants = [
        (f"overlap {o}, blend={b}, tile_stats={s}" if int(o) else "no overlap", int(o), b, s)
        for o, b, s in chosen
    ]
    for name, overlap, blend, stats in variants:
        tiling = Tiling(args.tile, overlap, blend, stats, args.stats_pixels, batch_size=4)
        out = torch.empty_like(whole)
        started = time.perf_counter()
        base.translate(picture.pixels, to_unit, out, lambda u: u, tiling=tiling)
        seconds = time.perf_counter() - started
        diff = (out - whole).abs().amax(dim=0) * 127.5  # (H, W) in levels
        cy, cx = cut_lines(h, args.tile, overlap, m), cut_lines(w, args.tile, overlap, m)
        mask = border_mask(h, w, args.tile, overlap, m) if overlap else _lines(h, w, cy, cx)
        rows.append(
            {
                "variant": name,
                "seconds": round(seconds, 2),
                "mean_inside": round(float(diff[~mask].mean()), 3),
                "max_inside": round(float(diff[~mask].max()), 2),
                "mean_border": round(float(diff[mask].mean()), 3),
                "max_border": round(float(diff[mask].max()), 2),
                "step_at_cuts": round(step(out, cy, cx), 3),
                "whole_step_at_cuts": round(step(whole, cy, cx), 3),
            }
        )
        print(rows[-1], flush=True)
    return {
        "image": args.image or f"synthetic shapes scene {w}x{h}",
        "ckpt": str(args.ckpt),
        "arch": arch,
        "precision": precision,
        "tile": args.tile,
        "overlap": args.overlap,
        "stats_pixels": args.stats_pixels,
        "rows": rows,
    }


def _lines(h: int, w: int, cuts_y: list[int], cuts_x: list[int], width: int = 4) -> torch.Tensor:
    """(H, W) bool: `width` pixels either side of each cut line."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    for c in cuts_y:
        mask[max(0, c - width) : c + width] = True
    for c in cuts_x:
        mask[:, max(0, c - width) : c + width] = True
    return mask


def large(args: argparse.Namespace) -> dict:
    w, h = (int(v) for v in args.large.split("x"))
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_tiling_"))
    (root / "in").mkdir(parents=True, exist_ok=True)
    src = root / "in" / f"scene_{w}x{h}.jpg"
    if not src.exists():
        shapes_scene(w, h).save(src, quality=92)
    gantrans = Path(sys.executable).with_name("gantrans")
    cmd = [str(gantrans), "translate", f"ckpt={args.ckpt}", f"input={src}",
           f"output={root / 'out' / src.name}", f"tile={args.tile}", f"overlap={args.overlap}",
           f"precision={args.precision}", f"direction={args.direction}"]  # fmt: skip
    print(" ".join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    with Image.open(root / "out" / src.name) as img:
        size = img.size
    return {
        "image": f"synthetic shapes scene {w}x{h} (JPEG)",
        "ckpt": str(args.ckpt),
        "command": " ".join(cmd),
        "output_size": list(size),
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(peak / 2**30, 2),
        "megapixels_per_second": round(w * h / 1e6 / seconds, 3),
        "threads": os.environ.get("OMP_NUM_THREADS", str(torch.get_num_threads())),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--direction", default="AtoB")
    p.add_argument("--image", help="an image file for the seam part (default: a shapes scene)")
    p.add_argument("--size", default="1536x1536", help="WxH of the synthetic seam image")
    p.add_argument("--large", help="WxH: time `gantrans translate` on a synthetic image this big")
    p.add_argument("--workdir", help="folder for the large image and its output")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--stats-pixels", type=int, default=1024 * 1024)
    p.add_argument("--variants", help="OVERLAP:BLEND:STATS,... (default: every blend and "
                   "statistics option at --overlap, plain tiles, and overlap 16)")  # fmt: skip
    p.add_argument("--precision", default="fp32")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    write_json(large(args) if args.large else seams(args), args.json)


def write_json(result: dict, path: str | None) -> None:
    """Print `result` as JSON and write it to `path` if given."""
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")


if __name__ == "__main__":
    main()
