"""Video translation: frames per second, and flicker with and without temporal smoothing.

    python scripts/bench_video.py --ckpt CKPT --size 256x256 --frames 48 --smoothing 0,0.5,0.8

Writes a synthetic clip (a still scene of circles with a few circles moving across it and
sensor noise on every frame), translates it with each `temporal_smoothing`, and reports the
speed and the mean frame-to-frame change |out_t - out_{t-1}| against the input's own, in
0..255 levels, over the whole frame and over the pixels where the clean scene does not move.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tiling import shapes_scene, write_json  # noqa: E402

from gantrans.applying.loader import load_generator  # noqa: E402
from gantrans.applying.translator import ApplyOptions, Translator  # noqa: E402
from gantrans.applying.video import VideoOptions, translate_video  # noqa: E402
from gantrans.runtime import resolve_precision  # noqa: E402


def make_clip(path: Path, w: int, h: int, frames: int, rate: int, noise: float) -> np.ndarray:
    """Write the clip; returns the (frames, H, W) mask of pixels where the clean scene moves."""
    rng = np.random.default_rng(0)
    base = shapes_scene(w, h, seed=1)
    movers = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(-3, 3), rng.uniform(-2, 2))
              for _ in range(max(1, w * h // 20000))]  # fmt: skip
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=Fraction(rate))
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = {"crf": "12"}
    clean_prev, moving = None, []
    for t in range(frames):
        img = base.copy()
        draw = ImageDraw.Draw(img)
        for x, y, dx, dy in movers:
            cx, cy = (x + dx * t) % w, (y + dy * t) % h
            draw.ellipse([cx - 9, cy - 9, cx + 9, cy + 9], fill=(240, 220, 90))
        clean = np.asarray(img, dtype=np.float32)
        if clean_prev is not None:
            moving.append(np.abs(clean - clean_prev).max(axis=-1) > 0)
        clean_prev = clean
        noisy = (clean + noise * rng.standard_normal(clean.shape)).clip(0, 255).astype(np.uint8)
        for p in stream.encode(av.VideoFrame.from_ndarray(noisy, format="rgb24")):
            out.mux(p)
    for p in stream.encode(None):
        out.mux(p)
    out.close()
    return np.stack(moving)


def still_change(path: Path, moving: np.ndarray) -> float:
    """Mean |x_t - x_{t-1}| of a video over the pixels where the clean scene is still."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24").astype(np.float32) for f in c.decode(video=0)]
    diffs = [
        np.abs(b - a).mean(axis=-1)[~m] for a, b, m in zip(frames, frames[1:], moving, strict=False)
    ]
    return float(np.concatenate(diffs).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--direction", default="AtoB")
    p.add_argument("--size", default="256x256")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--rate", type=int, default=24)
    p.add_argument("--noise", type=float, default=4.0, help="sensor noise, in levels")
    p.add_argument("--smoothing", default="0,0.5,0.8")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", default="auto")
    p.add_argument("--json")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    device = torch.device("cpu")
    precision = resolve_precision(device, args.precision)
    net, arch = load_generator(args.ckpt, args.direction, device)
    translator = Translator(net, arch, device, precision, ApplyOptions(batch_size=args.batch_size))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clip.mp4"
        moving = make_clip(src, w, h, args.frames, args.rate, args.noise)
        input_still = still_change(src, moving)
        translator.whole(torch.zeros(1, translator.in_channels, h, w))  # warm-up, not timed
        for alpha in (float(a) for a in args.smoothing.split(",")):
            dst = Path(tmp) / f"out_{alpha}.mp4"
            r = translate_video(translator, src, dst, VideoOptions(temporal_smoothing=alpha),
                                progress=False)  # fmt: skip
            rows.append({
                "temporal_smoothing": alpha,
                "frames": r.frames,
                "seconds": round(r.seconds, 2),
                "frames_per_second": round(r.fps, 2),
                "input_change": round(r.input_change, 3),
                "output_change": round(r.output_change, 3),
                "input_change_still": round(input_still, 3),
                "output_change_still": round(still_change(dst, moving), 3),
            })  # fmt: skip
            print(rows[-1], flush=True)
    result = {"ckpt": args.ckpt, "arch": arch, "precision": precision, "size": [w, h],
              "frames": args.frames, "rate": args.rate, "noise": args.noise, "rows": rows}  # fmt: skip
    write_json(result, args.json)


if __name__ == "__main__":
    main()
