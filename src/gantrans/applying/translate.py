"""`gantrans translate`: apply one direction of a trained model to images, videos or a folder."""

from __future__ import annotations

import logging
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import UnidentifiedImageError
from tqdm import tqdm

from gantrans.applying.loader import load_generator
from gantrans.applying.tiling import pad_to_multiple
from gantrans.applying.translator import ApplyOptions, Plan, Translator, tiles_in
from gantrans.applying.video import (
    VIDEO_EXTENSIONS,
    VideoOptions,
    check_video_options,
    is_video,
    translate_video,
)
from gantrans.config import TranslateConfig, to_plain
from gantrans.data import DataError
from gantrans.data.imageio import oriented_size
from gantrans.data.pixels import (
    BIT_DEPTHS,
    PICTURE_EXTENSIONS,
    Picture,
    check_output_depth,
    check_value_range,
    from_unit,
    output_depth,
    output_range,
    read_picture,
    save_picture,
)
from gantrans.errors import ConfigError, GantransError
from gantrans.runtime import check_precision, resolve_device, resolve_precision

log = logging.getLogger("gantrans")

_pad = pad_to_multiple  # kept for callers of the earlier private name


@dataclass
class Job:
    """What one `gantrans translate` call does, resolved from its options."""

    inputs: list[Path]  # image and video files
    output_dir: Path  # where outputs go (for a single file: its folder)
    names: dict[Path, str]  # input -> output file name
    single: bool  # one file named by the user (its errors stop the command)


def _resolve(input: str | None, input_dir: str | None, output: str | None, direction: str) -> Job:
    """Inputs and output names from `input=` (a file or a folder) or `input_dir=`."""
    if input is not None and input_dir is not None:
        raise GantransError("give input= or input_dir=, not both (they mean the same)")
    if input is None and input_dir is None:
        raise GantransError("input is required: pass input=FILE_OR_FOLDER on the command line")
    key = "input" if input is not None else "input_dir"
    src = Path(input if input is not None else input_dir)
    if key == "input_dir" and not src.is_dir():
        raise DataError(f"input_dir={src} is not a folder: point it at a folder of images")
    if not src.exists():
        raise DataError(f"input={src} does not exist: give an image, a video or a folder")
    if src.is_file():
        if not (is_picture(src) or is_video(src)):
            raise DataError(
                f"input={src} is neither an image ({', '.join(PICTURE_EXTENSIONS)}) nor a "
                f"video ({', '.join(VIDEO_EXTENSIONS)})"
            )
        if output is None:
            dst = Path("translated") / f"{src.stem}_{direction}{src.suffix}"
        elif Path(output).is_dir() or output.endswith(("/", "\\")):
            dst = Path(output) / src.name
        else:
            dst = Path(output)
        kind, known = (
            ("image", PICTURE_EXTENSIONS) if is_picture(src) else ("video", VIDEO_EXTENSIONS)
        )
        if dst.suffix.lower() not in known:
            raise ConfigError(
                f"output={dst} is not {kind} output for {src.name}: end it in one of "
                f"{', '.join(known)}"
            )
        if dst.resolve() == src.resolve():
            raise GantransError("output is the input file: choose another name so it is kept")
        return Job([src], dst.parent, {src: dst.name}, single=True)
    files = sorted(
        (p for p in src.iterdir() if p.is_file() and (is_picture(p) or is_video(p))),
        key=lambda p: p.name,
    )
    if not files:
        raise DataError(
            f"{key}={src} holds no images ({', '.join(PICTURE_EXTENSIONS)}) or videos "
            f"({', '.join(VIDEO_EXTENSIONS)})"
        )
    out = (
        Path(output)
        if output is not None
        else Path("translated") / f"{src.resolve().name}_{direction}"
    )
    if out.resolve() == src.resolve():
        raise GantransError(
            "output_dir is the input folder: choose another one so no input is overwritten"
        )
    return Job(files, out, {p: p.name for p in files}, single=False)


WRITE_FAILED = "not written: "  # marks the messages of outputs that could not be written


def occupied(dst: Path) -> OSError | None:
    """Why `dst` cannot take an output file (a folder stands there), or None."""
    if dst.is_dir():
        return IsADirectoryError(21, "a folder of that name is in the way")
    return None


def write_failure(src: Path, dst: Path, exc: OSError, strict: bool = False) -> str:
    """Log (or with `strict`, raise) one line for an output that cannot be written; the
    message for the summary."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if strict:
        raise GantransError(f"cannot write {dst} ({reason}): choose another output=")
    log.error("cannot write %s (%s): %s skipped", dst, reason, src.name)
    return f"{src.name} ({WRITE_FAILED}{reason})"


def check_writable(folder: Path, key: str = "output") -> None:
    """Create `folder` and check a file can be written in it, or stop with one line before any
    translation."""
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(20, "it is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".gantrans-", delete=True)
        probe.close()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise GantransError(
            f"cannot write into {folder} ({reason}): choose another {key}= or fix its permissions"
        ) from None


def is_picture(path: Path) -> bool:
    """Whether `translate` reads `path` as an image (by extension; hidden files excluded)."""
    return path.suffix.lower() in PICTURE_EXTENSIONS and not path.name.startswith(".")


def _check_outputs(job: Job, translator: Translator, bit_depth: str) -> None:
    for path in job.inputs:
        if is_picture(path):
            name = job.names[path]
            check_output_depth(bit_depth, translator.out_channels, Path(name).suffix, name)


def _group_by_size(
    paths: list[Path], strict: bool
) -> tuple[dict[tuple[int, int], list[Path]], list[str]]:
    """Image files grouped by (height, width), read from headers only, so each batch stacks;
    and one message per file that cannot be read (with `strict`, the first one raises)."""
    groups: dict[tuple[int, int], list[Path]] = defaultdict(list)
    failed: list[str] = []
    for path in paths:
        try:
            w, h = oriented_size(path)  # the size after EXIF rotation
            groups[(h, w)].append(path)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            if strict:
                raise DataError(f"cannot read image {path}: {type(exc).__name__}") from exc
            failed.append(f"{path.name} ({type(exc).__name__})")
    return groups, failed


@dataclass
class _PictureRun:
    """One `translate_pictures` call: reads, translates and writes its images a chunk at a
    time, collecting one message per file that could not be read or written in `failed`."""

    translator: Translator
    names: dict[Path, str]  # input -> output file name
    output_dir: Path
    bit_depth: str
    value_range: object
    strict: bool
    failed: list[str]
    bar: tqdm

    def read(self, paths: list[Path], plan: Plan, h: int, w: int) -> list[tuple[Path, Picture]]:
        """The pictures of `paths` that can be read and whose output can be written."""
        chunk: list[tuple[Path, Picture]] = []
        channels = self.translator.in_channels
        for path in paths:
            dst = self.output_dir / self.names[path]
            taken = occupied(dst)
            if taken is not None:  # fails before any work is spent on it
                self.failed.append(write_failure(path, dst, taken, self.strict))
                self.bar.update(tiles_in(plan, h, w))
                continue
            try:
                chunk.append((path, read_picture(path, channels, self.value_range)))
            except DataError:
                if self.strict:
                    raise
                self.failed.append(f"{path.name} (corrupt)")
                self.bar.update(tiles_in(plan, h, w))
        return chunk

    def save(
        self, path: Path, picture: Picture, out_unit: torch.Tensor | None, values=None
    ) -> bool:
        """Write one output at its bit depth; False (and a message in `failed`) if it cannot."""
        depth = output_depth(self.bit_depth, picture, self.translator.out_channels)
        if values is None:
            values = from_unit(out_unit, depth, *output_range(picture, depth))
        dst = self.output_dir / self.names[path]
        try:
            save_picture(values, depth, picture.alpha, dst)
        except OSError as exc:
            self.failed.append(write_failure(path, dst, exc, self.strict))
            return False
        return True

    def whole(self, chunk: list[tuple[Path, Picture]]) -> int:
        """Translate `chunk` (images of one size) in one batch; the number written."""
        channels = self.translator.in_channels
        batch = torch.stack([p.to_unit(p.pixels, channels) for _, p in chunk])
        written = 0
        for (path, picture), out_unit in zip(chunk, self.translator.whole(batch), strict=True):
            written += self.save(path, picture, out_unit)
        self.bar.update(len(chunk))
        return written

    def tiled(self, chunk: list[tuple[Path, Picture]], plan: Plan, h: int, w: int) -> int:
        """Translate `chunk` one large image at a time, in blended tiles; the number written."""
        translator, channels = self.translator, self.translator.in_channels
        written = 0
        for path, picture in chunk:
            depth = output_depth(self.bit_depth, picture, translator.out_channels)
            lo, hi = output_range(picture, depth)
            sample = from_unit(torch.zeros(1, 1, 1), depth, lo, hi)
            out = torch.empty((translator.out_channels, h, w), dtype=sample.dtype)
            translator.translate(
                picture.pixels,
                lambda crop, p=picture: p.to_unit(crop, channels),
                out,
                lambda unit, d=depth, a=lo, b=hi: from_unit(unit, d, a, b),
                on_tiles=self.bar.update,
                tiling=plan.tiling,
            )
            written += self.save(path, picture, None, values=out)
        return written


def translate_pictures(
    translator: Translator,
    paths: list[Path],
    names: dict[Path, str],
    output_dir: Path,
    *,
    bit_depth: str = "same",
    value_range: object = "auto",
    progress: bool = True,
    desc: str = "",
    strict: bool = False,
) -> tuple[int, list[str]]:
    """Translate image files, whole (same sizes batched) or tiled, at their own bit depth.

    Unreadable files and outputs that cannot be written are skipped, each logged in one line,
    and the others translated (with `strict`, the first one raises a one-line error).

    Returns:
        (images written, one message per file that could not be read or written).
    """
    if not paths:
        return 0, []
    groups, failed = _group_by_size(paths, strict)
    written = 0
    plans = {size: translator.plan(*size) for size in groups}
    units = sum(tiles_in(plans[s], *s) * len(p) for s, p in groups.items())
    tiled = any(plan.tiling is not None for plan in plans.values())
    bar = tqdm(total=units, disable=not progress, unit="tile" if tiled else "img", desc=desc)
    run = _PictureRun(translator, names, output_dir, bit_depth, value_range, strict, failed, bar)
    for (h, w), group in groups.items():
        plan = plans[(h, w)]
        for i in range(0, len(group), plan.batch):
            chunk = run.read(group[i : i + plan.batch], plan, h, w)
            if not chunk:
                continue
            if plan.tiling is None:
                written += run.whole(chunk)
            else:
                written += run.tiled(chunk, plan, h, w)
    bar.close()
    return written, failed


def _check_arguments(
    input: str | Path | None,
    input_dir: str | Path | None,
    output: str | Path | None,
    output_dir: str | Path | None,
    output_bit_depth: str,
    value_range: object,
) -> None:
    """The checks of `translate_folder`'s arguments that need neither files nor a device."""
    if output is not None and output_dir is not None:
        raise GantransError("give output= or output_dir=, not both (they mean the same)")
    check_value_range(value_range)
    if output_bit_depth not in BIT_DEPTHS:
        raise ConfigError(f"output_bit_depth={output_bit_depth} is not known: use 8, 16 or same")
    if input is None and input_dir is None:
        raise GantransError("input is required: pass input=FILE_OR_FOLDER on the command line")


def _check_output_dir(job: Job) -> None:
    """Stop with one line, before any translation, if the outputs cannot be written: the output
    folder is not writable, or a single file's output name is taken by a folder."""
    check_writable(job.output_dir)
    if job.single:
        dst = job.output_dir / job.names[job.inputs[0]]
        taken = occupied(dst)
        if taken is not None:
            write_failure(job.inputs[0], dst, taken, True)


def _translate_videos(
    translator: Translator, job: Job, videos: list[Path], opts: VideoOptions, progress: bool
) -> tuple[int, list[str]]:
    """Translate the video files of `job`; (videos written, one message per video that failed).
    A single file named by the user raises instead."""
    done, failed = 0, []
    for path in videos:
        dst = job.output_dir / job.names[path]
        taken = occupied(dst)
        if taken is not None:
            failed.append(write_failure(path, dst, taken, job.single))
            continue
        try:
            translate_video(translator, path, dst, opts, progress=progress)
            done += 1
        except DataError as exc:
            if job.single:
                raise
            log.error("%s", exc)
            failed.append(f"{path.name} ({exc})")
    return done, failed


def translate_folder(cfg: TranslateConfig | DictConfig) -> tuple[Path, int, list[str]]:
    """Translate an image, a video, or every image and video in a folder.

    Images of any size are padded to what the network needs and cropped back, or translated
    in blended tiles when large (`tile`); images of the same size are batched together;
    16-bit and float grayscale keep their depth. Videos keep their frame rate, frame count
    and audio. Unreadable files in a folder are skipped and returned.

    `cfg` holds the options of `gantrans translate` (gantrans.config.TranslateConfig, whose
    fields and defaults are documented there), for example
    `translate_folder(TranslateConfig(ckpt="run/checkpoints/latest.pt", input="photos"))`.

    Returns:
        (output folder, number of files written, messages for the files that failed).
    """
    c = TranslateConfig(**to_plain(cfg))
    _check_arguments(
        c.input, c.input_dir, c.output, c.output_dir, c.output_bit_depth, c.value_range
    )
    dev = resolve_device(c.device)
    precision = resolve_precision(dev, c.precision)
    check_precision(dev, precision)
    out_arg = c.output if c.output is not None else c.output_dir
    job = _resolve(  # the inputs are checked before the checkpoint is loaded (or downloaded)
        None if c.input is None else str(c.input),
        None if c.input_dir is None else str(c.input_dir),
        None if out_arg is None else str(out_arg),
        c.direction,
    )
    net, arch = load_generator(c.ckpt, c.direction, dev, progress=c.progress)
    videos = [p for p in job.inputs if is_video(p)]
    video_opts = VideoOptions(c.video_codec, c.video_crf, c.temporal_smoothing)
    if videos:
        check_video_options(video_opts, [job.names[p] for p in videos])
    options = ApplyOptions(
        c.batch_size,
        c.tile,
        c.overlap,
        c.blend,
        c.tile_stats,
        c.stats_pixels,
        c.max_pixels,
        c.memory_gb,
    )
    translator = Translator(net, arch, dev, precision, options)
    _check_outputs(job, translator, c.output_bit_depth)
    _check_output_dir(job)

    pictures = [p for p in job.inputs if is_picture(p)]
    written, failed = translate_pictures(
        translator,
        pictures,
        job.names,
        job.output_dir,
        bit_depth=c.output_bit_depth,
        value_range=c.value_range,
        progress=c.progress,
        desc=c.direction,
        strict=job.single,
    )
    done_videos, video_failed = _translate_videos(translator, job, videos, video_opts, c.progress)
    failed.extend(video_failed)
    what = " and ".join(
        [f"{written} image(s)"] * bool(pictures or not videos)
        + [f"{done_videos} video(s)"] * bool(videos)
    )
    log.info("translated %s %s into %s", what, c.direction, job.output_dir)
    return job.output_dir, written + done_videos, failed


def summary(failed: list[str]) -> str:
    """The closing line of a run where some files failed: how many could not be read, how many
    not written, and the first few names."""
    unwritten = sum(WRITE_FAILED in f for f in failed)
    unread = len(failed) - unwritten
    counts = " and ".join(
        [f"{unread} file(s) could not be read"] * bool(unread)
        + [f"{unwritten} output(s) could not be written"] * bool(unwritten)
    )
    shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
    return f"{counts} and were skipped: {shown}"


def main(cfg: DictConfig) -> None:
    """Entry point of `gantrans translate`."""
    _, _, failed = translate_folder(cfg)
    if failed:
        raise DataError(summary(failed))
