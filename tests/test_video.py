"""Video: frame rate, frame count and audio kept; tiles for large frames; errors are one line."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from gantrans.applying.loader import load_generator
from gantrans.applying.translator import ApplyOptions, Translator
from gantrans.applying.video import VideoOptions, translate_video

from .conftest import one_line_error, write_image

av = pytest.importorskip("av")


def make_video(path: Path, frames: int = 6, size=(32, 24), rate=12, audio=True, noise=0.0) -> Path:
    """A tiny synthetic clip: a bright square sliding over a dark background, optional tone."""
    w, h = size
    rng = np.random.default_rng(0)
    out = av.open(str(path), "w")
    codec = {".webm": "libvpx-vp9", ".avi": "mpeg4"}.get(path.suffix, "libx264")
    v = out.add_stream(codec, rate=Fraction(rate))
    v.width, v.height, v.pix_fmt = w, h, "yuv420p"
    a = (
        out.add_stream("libopus" if path.suffix == ".webm" else "aac", rate=48000)
        if audio
        else None
    )
    for i in range(frames):
        arr = np.full((h, w, 3), 30.0)
        arr[4:12, 2 + 2 * i : 10 + 2 * i] = (230, 200, 60)
        arr += noise * rng.standard_normal(arr.shape)
        frame = av.VideoFrame.from_ndarray(arr.clip(0, 255).astype(np.uint8), format="rgb24")
        for p in v.encode(frame):
            out.mux(p)
    for p in v.encode(None):
        out.mux(p)
    if a is not None:
        t = np.arange(48000 * frames // rate) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        samples = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        samples.sample_rate, samples.pts = 48000, 0
        for p in a.encode(samples):
            out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    out.close()
    return path


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {
            "frames": sum(1 for _ in c.decode(video=0)),
            "rate": v.average_rate,
            "size": (v.codec_context.width, v.codec_context.height),
            "audio": [s.codec_context.name for s in c.streams.audio],
        }
    return info


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_a_clip_keeps_rate_frame_count_size_and_audio(gantrans, tiny_ckpt, tmp_path, suffix):
    src = make_video(tmp_path / f"clip{suffix}", frames=7, rate=12)
    out = tmp_path / "out" / f"translated{suffix}"
    code, stdout, err = gantrans("translate", f"ckpt={tiny_ckpt}", f"input={src}", f"output={out}",
                                 "progress=false", "batch_size=3")  # fmt: skip
    assert code == 0, err
    before, after = probe(src), probe(out)
    assert after == before, (before, after)
    assert after["audio"] == (["opus"] if suffix == ".webm" else ["aac"])
    assert "7 frames at 12 fps" in stdout and "audio copied" in stdout
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no .part left behind


def test_a_folder_of_videos_and_images_with_tiled_frames(gantrans, tiny_ckpt, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    make_video(folder / "a.mp4", frames=4, size=(48, 40), audio=False)
    make_video(folder / "b.mov", frames=3, size=(48, 40))
    write_image(folder / "still.png", (30, 20))
    out = tmp_path / "out"
    code, stdout, err = gantrans("translate", f"ckpt={tiny_ckpt}", f"input={folder}",
                                 f"output={out}", "tile=32", "overlap=8", "progress=false")  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mov", "still.png"]
    assert probe(out / "a.mp4") == probe(folder / "a.mp4")
    assert probe(out / "b.mov") == probe(folder / "b.mov")
    assert "translated 1 image(s) and 2 video(s)" in stdout


def test_temporal_smoothing_reduces_flicker_on_a_still_noisy_scene(tiny_ckpt, tmp_path):
    src = make_video(tmp_path / "still.mp4", frames=8, size=(32, 32), audio=False, noise=6.0)
    net, arch = load_generator(tiny_ckpt, "AtoB", torch.device("cpu"))
    translator = Translator(net, arch, torch.device("cpu"), "fp32", ApplyOptions(tile="off"))
    plain = translate_video(translator, src, tmp_path / "plain.mp4", progress=False)
    smooth = translate_video(translator, src, tmp_path / "smooth.mp4",
                             VideoOptions(temporal_smoothing=0.8), progress=False)  # fmt: skip
    assert plain.frames == smooth.frames == 8
    assert plain.input_change == pytest.approx(smooth.input_change)
    assert smooth.output_change < 0.7 * plain.output_change, (plain, smooth)


def test_unreadable_video_unknown_codec_and_missing_pyav_are_one_line(
    gantrans, tiny_ckpt, tmp_path, monkeypatch
):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    out = tmp_path / "out.mp4"
    line = one_line_error(
        gantrans("translate", f"ckpt={tiny_ckpt}", f"input={bad}", f"output={out}")
    )
    assert line.startswith(f"gantrans translate: error: cannot read video {bad}")
    assert not out.exists() and not (tmp_path / ".out.mp4.part").exists()

    good = make_video(tmp_path / "good.mp4", frames=2, audio=False)
    line = one_line_error(gantrans("translate", f"ckpt={tiny_ckpt}", f"input={good}",
                                   f"output={out}", "video_codec=nope264"))  # fmt: skip
    assert "video_codec=nope264 is not a video encoder of this FFmpeg" in line
    line = one_line_error(gantrans("translate", f"ckpt={tiny_ckpt}", f"input={good}",
                                   f"output={out}", "video_codec=aac"))  # fmt: skip
    assert "video_codec=aac is not a video codec (audio)" in line
    webm = tmp_path / "out.webm"
    line = one_line_error(gantrans("translate", f"ckpt={tiny_ckpt}", f"input={good}",
                                   f"output={webm}", "video_codec=libx264"))  # fmt: skip
    assert "video_codec=libx264 cannot be stored in a .webm file" in line
    assert list(tmp_path.glob("*.webm*")) == [] and list(tmp_path.glob(".*part")) == []
    assert not out.exists()

    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    line = one_line_error(
        gantrans("translate", f"ckpt={tiny_ckpt}", f"input={good}", f"output={out}")
    )
    assert line == 'gantrans translate: error: video needs PyAV: pip install "gantrans[video]"'


def test_a_video_that_breaks_mid_way_leaves_no_output(tiny_ckpt, tmp_path):
    src = make_video(tmp_path / "clip.mp4", frames=30, size=(64, 48), audio=False, noise=20)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])  # the index (moov) is at the end: unreadable
    net, arch = load_generator(tiny_ckpt, "AtoB", torch.device("cpu"))
    translator = Translator(net, arch, torch.device("cpu"), "fp32", ApplyOptions(tile="off"))
    dst = tmp_path / "out" / "cut.mp4"
    dst.parent.mkdir()
    with pytest.raises(Exception, match="video"):
        translate_video(translator, cut, dst, progress=False)
    assert list(dst.parent.iterdir()) == []
