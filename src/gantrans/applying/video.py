"""Translating videos frame by frame with PyAV: the same frame rate and count, the audio kept."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from gantrans.data.imageio import DataError, one_line
from gantrans.errors import ConfigError, GantransError

if TYPE_CHECKING:
    from gantrans.applying.translator import Translator

log = logging.getLogger("gantrans")

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
              ".avi": "avi"}  # fmt: skip
DEFAULT_CODECS = {".webm": "libvpx-vp9", ".avi": "mpeg4"}  # everything else: libx264
AUDIO_FALLBACK = {".webm": "libopus", ".avi": "libmp3lame"}  # everything else: aac
INSTALL = 'video needs PyAV: pip install "gantrans[video]"'
MOTION_SCALE = 0.1  # input change (in [-1, 1] units, ~13 of 255 levels) at which smoothing stops


def is_video(path: Path) -> bool:
    """Whether `translate` reads `path` as a video (by extension; hidden files excluded)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def require_av():
    """The `av` module, or GantransError saying how to install it."""
    try:
        import av
    except ImportError:
        raise GantransError(INSTALL) from None
    return av


@dataclass
class VideoOptions:
    """Encoding and temporal options of `translate` for videos.

    Attributes:
        codec: FFmpeg video encoder; None: libx264 (vp9 for .webm, mpeg4 for .avi).
        crf: Constant-rate-factor quality for x264/vp9 (lower is better); None: the
            encoder's default for x264 (23) lowered to 18, visually lossless.
        temporal_smoothing: 0 (off) to <1: where the input pixel did not change from the
            previous frame, the output is blended with the previous output by this weight,
            fading out as the input changes (reduces flicker on still regions).
    """

    codec: str | None = None
    crf: int | None = None
    temporal_smoothing: float = 0.0


@dataclass
class VideoResult:
    """What `translate_video` did."""

    frames: int
    rate: Fraction | None
    seconds: float
    audio: str  # "copied", "re-encoded as CODEC", or "none"
    input_change: float  # mean |in_t - in_{t-1}| over frames, in 0..255 levels
    output_change: float  # mean |out_t - out_{t-1}|, in 0..255 levels

    @property
    def fps(self) -> float:
        """Frames translated per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def check_video_options(options: VideoOptions, names: list[str]) -> None:
    """Raise a one-line error for options that cannot work, before any video is decoded."""
    if not 0.0 <= options.temporal_smoothing < 1.0:
        raise ConfigError(
            f"temporal_smoothing={options.temporal_smoothing} must be in [0, 1): 0 is off, "
            "0.5 blends still regions half with the previous frame"
        )
    if options.crf is not None and not 0 <= options.crf <= 63:
        raise ConfigError(f"video_crf={options.crf} must be between 0 and 63")
    av = require_av()
    for name in names:
        codec = options.codec or DEFAULT_CODECS.get(Path(name).suffix.lower(), "libx264")
        try:
            found = av.Codec(codec, "w")
        except Exception as exc:  # UnknownCodecError, or a decoder-only name
            raise ConfigError(
                f"video_codec={codec} is not a video encoder of this FFmpeg: use libx264, "
                "libvpx-vp9, libsvtav1 or mpeg4"
            ) from exc
        if found.type != "video":
            raise ConfigError(
                f"video_codec={codec} is not a video codec ({found.type}): name a video encoder "
                "such as libx264"
            )


def _open_input(av, path: Path):
    try:
        container = av.open(str(path))
    except Exception as exc:  # av.error.InvalidDataError, FileNotFoundError, ...
        raise DataError(f"cannot read video {path}: {one_line(exc)}") from exc
    if not container.streams.video:
        container.close()
        raise DataError(f"cannot read video {path}: it holds no video stream")
    return container


def _add_video_stream(av, out, vin, codec: str, crf: int | None, suffix: str):
    if (
        codec not in out.supported_codecs
        and av.Codec(codec, "w").canonical_name not in out.supported_codecs
    ):
        raise ConfigError(
            f"video_codec={codec} cannot be stored in a {suffix} file: leave video_codec unset "
            "or pick another output format"
        )
    rate = vin.average_rate or vin.guessed_rate or Fraction(25)
    try:
        vout = out.add_stream(codec, rate=rate)
    except Exception as exc:
        raise ConfigError(f"video_codec={codec} cannot be used: {one_line(exc)}") from exc
    vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
    even = vout.width % 2 == 0 and vout.height % 2 == 0
    vout.pix_fmt = "yuv420p" if even or codec == "mpeg4" else "yuv444p"
    if codec != "mpeg4":
        vout.codec_context.time_base = vin.time_base  # keep every frame's own timestamp
    options = {}
    if codec in ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1"):
        options["crf"] = str(18 if crf is None else crf)
        if codec == "libvpx-vp9":
            options["b:v"] = "0"  # constant quality
    vout.options = options
    return vout


def _add_audio_stream(out, ain, suffix: str):
    """(stream, how): a copy of `ain` where the container takes its codec, else an encoder."""
    if ain.codec_context.name in out.supported_codecs:
        return out.add_stream_from_template(ain), "copied"
    codec = AUDIO_FALLBACK.get(suffix, "aac")
    aout = out.add_stream(codec, rate=ain.codec_context.sample_rate or 48000)
    return aout, f"re-encoded as {codec}"


def translate_video(
    translator: Translator,
    src: Path,
    dst: Path,
    options: VideoOptions | None = None,
    progress: bool = True,
) -> VideoResult:
    """Translate every frame of `src` into the video `dst`, written atomically.

    Frames are decoded, translated in batches (tiled when large, as for images) and encoded
    with the input's timestamps, so the frame rate and frame count are the input's; the first
    audio track is copied (re-encoded where the output container cannot hold its codec).

    Raises:
        DataError: One line for a video that cannot be decoded.
        ConfigError: One line for an encoder that cannot be used.
    """
    av = require_av()
    options = options or VideoOptions()
    suffix = dst.suffix.lower()
    codec = options.codec or DEFAULT_CODECS.get(suffix, "libx264")
    inp = _open_input(av, src)
    tmp = dst.with_name(f".{dst.name}.part")
    out = None
    try:
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        out = av.open(str(tmp), "w", format=CONTAINERS[suffix])
        vout = _add_video_stream(av, out, vin, codec, options.crf, suffix)
        aout, audio = (None, "none") if ain is None else _add_audio_stream(out, ain, suffix)
        frames = _run(translator, inp, out, vin, vout, ain, aout, audio, options, progress, src)
        out.close()
        out = None
        tmp.replace(dst)  # never leave a half-written video under the final name
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise DataError(f"cannot translate video {src}: {one_line(exc)}") from exc
    finally:
        inp.close()
        if out is not None:
            try:
                out.close()
            except Exception:  # the muxer may refuse to finish a broken file; it is removed anyway
                pass
        tmp.unlink(missing_ok=True)
    log.info(
        "%s: %d frames at %s fps in %.1f s (%.2f frames/s), audio %s; frame-to-frame change "
        "%.2f in the input, %.2f in the output (0..255)",
        dst,
        frames.frames,
        f"{float(frames.rate):.3g}" if frames.rate else "?",
        frames.seconds,
        frames.fps,
        frames.audio,
        frames.input_change,
        frames.output_change,
    )
    return frames


class _Flicker:
    """Running mean |x_t - x_{t-1}| of a frame sequence, in 0..255 levels."""

    def __init__(self) -> None:
        self.prev: torch.Tensor | None = None
        self.total, self.count = 0.0, 0

    def add(self, frame: torch.Tensor) -> None:  # (C, H, W) in [-1, 1]
        if self.prev is not None and self.prev.shape == frame.shape:
            self.total += float((frame - self.prev).abs().mean()) * 127.5
            self.count += 1
        self.prev = frame

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


def _run(translator, inp, out, vin, vout, ain, aout, audio, options, progress, src) -> VideoResult:
    """Demux, translate and mux every packet; returns the counts and timings."""
    av = require_av()
    channels = translator.in_channels
    fmt = "gray" if channels == 1 else "rgb24"
    total = vin.frames or None
    bar = tqdm(total=total, disable=not progress, unit="frame", desc=src.name)
    pending: list[tuple[torch.Tensor, int | None]] = []  # (C, H, W) uint8 frames, their pts
    state = {"prev_in": None, "prev_out": None, "frames": 0}
    flicker_in, flicker_out = _Flicker(), _Flicker()
    copy_audio = audio == "copied"
    started = time.perf_counter()

    def flush() -> None:
        if not pending:
            return
        outputs = _translate_frames(translator, [f for f, _ in pending])
        for (frame, pts), result in zip(pending, outputs, strict=True):
            unit_in = frame.float().div_(127.5).sub_(1.0)  # (C, H, W) in [-1, 1]
            result = _smooth(result, unit_in, state, options.temporal_smoothing)
            flicker_in.add(unit_in)
            flicker_out.add(result)
            arr = result.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)  # (C', H, W)
            arr = arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()
            video_frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(arr), format="gray" if arr.ndim == 2 else "rgb24"
            )
            video_frame.pts, video_frame.time_base = pts, vin.time_base
            for packet in vout.encode(video_frame):
                out.mux(packet)
            state["frames"] += 1
        bar.update(len(pending))
        pending.clear()

    streams = [vin] + ([ain] if ain is not None else [])
    batch = translator.plan(vin.codec_context.height, vin.codec_context.width).batch
    for packet in inp.demux(*streams):
        if ain is not None and packet.stream is ain:
            if copy_audio:
                if packet.dts is not None:
                    packet.stream = aout
                    out.mux(packet)
            else:
                for frame in packet.decode():
                    frame.pts = None
                    for p in aout.encode(frame):
                        out.mux(p)
            continue
        for frame in packet.decode():
            arr = frame.to_ndarray(format=fmt)  # (H, W) or (H, W, 3) uint8
            t = torch.from_numpy(arr)
            t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)  # (C, H, W) uint8
            pending.append((t.contiguous(), frame.pts))
            if len(pending) >= batch:
                flush()
    flush()
    for packet in vout.encode(None):
        out.mux(packet)
    if aout is not None and not copy_audio:
        for packet in aout.encode(None):
            out.mux(packet)
    bar.close()
    if state["frames"] == 0:
        raise DataError(f"cannot read video {src}: no frame could be decoded")
    rate = vin.average_rate or vin.guessed_rate
    return VideoResult(
        state["frames"],
        rate,
        time.perf_counter() - started,
        audio,
        flicker_in.mean,
        flicker_out.mean,
    )


def _translate_frames(translator: Translator, frames: list[torch.Tensor]) -> list[torch.Tensor]:
    """uint8 frames (C, H, W) -> translated frames (C_out, H, W) float in [-1, 1]."""
    h, w = frames[0].shape[-2:]
    plan = translator.plan(h, w)
    channels = translator.in_channels

    def to_unit(crop: torch.Tensor) -> torch.Tensor:
        return crop.float().div_(127.5).sub_(1.0)  # (C, h, w) in [-1, 1]

    if plan.tiling is None:
        batch = torch.stack([to_unit(f) for f in frames])  # (N, C, H, W)
        if batch.shape[1] != channels:
            batch = batch.expand(-1, channels, -1, -1)
        return list(translator.whole(batch))
    results = []
    for frame in frames:
        out = torch.empty(translator.out_channels, h, w)
        translator.translate(frame, to_unit, out, lambda u: u, tiling=plan.tiling)
        results.append(out)
    return results


def _smooth(result: torch.Tensor, unit_in: torch.Tensor, state: dict, alpha: float) -> torch.Tensor:
    """Blend `result` with the previous output where the input stayed still (weight `alpha`,
    fading to 0 as the input's change reaches MOTION_SCALE)."""
    prev_in, prev_out = state["prev_in"], state["prev_out"]
    if alpha > 0 and prev_out is not None and prev_out.shape == result.shape:
        change = (unit_in - prev_in).abs().mean(dim=0, keepdim=True)  # (1, H, W)
        weight = alpha * (1.0 - change / MOTION_SCALE).clamp(0.0, 1.0)
        result = result + weight * (prev_out - result)
    state["prev_in"], state["prev_out"] = unit_in, result
    return result
