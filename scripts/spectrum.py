"""The mean power spectrum of folders of images, each relative to a reference folder's.

Generated images often differ from real ones by frequency: too little power in the fine detail
(a blur) or a peak at the highest frequency, the checkerboard that stride-2 transposed
convolutions draw (Odena et al. 2016). A two-sample test sees either at once. For each folder
this prints its power in radial bands of frequency and at a few single frequencies, divided by
the reference's (1.0 = as the reference; 14 at the checkerboard = 14 times its power there):

    gantrans evaluate dataset=smiles direction=AtoB export_inputs=inputs
    gantrans evaluate dataset=smiles direction=BtoA export_inputs=real_B
    gantrans translate ckpt=runs/a/checkpoints/latest.pt input=inputs output=out_a
    python scripts/spectrum.py real_B inputs out_a

Images are read as grey levels in [-1, 1]; each image's mean is removed before its transform.
All images must have one size (a square one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from gantrans.data.imageio import (
    IMAGE_EXTENSIONS,
    DataError,
    list_images,
    open_image,
    pil_to_tensor,
)

BANDS = 8  # radial bands from 0 to the Nyquist frequency, the corners (beyond it) a ninth


class SpectrumError(Exception):
    """A folder that cannot be measured; main prints it as one line."""


def load_grey(folder: Path) -> torch.Tensor:
    """(N, S, S) grey levels in [-1, 1] of the images of a folder (not recursive)."""
    if not folder.is_dir():
        raise SpectrumError(f"{folder} is not a folder")
    paths = list_images(folder)
    if not paths:
        raise SpectrumError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    images = [pil_to_tensor(open_image(path, channels=1))[0] for path in paths]
    sizes = {tuple(im.shape) for im in images}
    if len(sizes) > 1 or images[0].shape[0] != images[0].shape[1]:
        raise SpectrumError(f"{folder}: the images must be square and of one size, got {sizes}")
    return torch.stack(images)


def power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """(S, S) mean power |FFT|^2 over the images, zero frequency at the centre (S // 2)."""
    x = images - images.mean(dim=(1, 2), keepdim=True)
    return torch.fft.fftshift(torch.fft.fft2(x).abs().square().mean(0))


def peaks(side: int) -> dict[str, tuple[int, int]]:
    """Single frequencies (fy, fx) in cycles per image: the checkerboard and its neighbours."""
    n, q = side // 2, side // 4
    return {"checkerboard": (n, n), "rows": (n, 0), "columns": (0, n), "period 4": (q, q)}


def relative_spectrum(spectrum: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Power in each band and at each peak, divided by the reference's there."""
    side = spectrum.shape[0]
    c = side // 2
    f = torch.arange(side) - c
    radius = torch.hypot(f[:, None].float(), f[None, :].float()) / c  # 1 = Nyquist on an axis
    band = torch.clamp((radius * BANDS).long(), max=BANDS)  # the corners above 1 are the last
    out = {}
    for b in range(BANDS + 1):
        sel = band == b
        name = f"band {b / BANDS:.3f}-{(b + 1) / BANDS:.3f}" if b < BANDS else "band >1"
        out[name] = float(spectrum[sel].mean() / reference[sel].mean())
    for name, (fy, fx) in peaks(side).items():
        y, x = (c - fy) % side, (c - fx) % side  # -fy: the shifted array holds -S/2 .. S/2 - 1
        out[name] = float(spectrum[y, x] / reference[y, x])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path, help="folder of real images of the target domain")
    parser.add_argument("folders", nargs="+", type=Path, help="folders to compare with it")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        ref_images = load_grey(args.reference)
        reference = power_spectrum(ref_images)
        rows = {}
        for folder in args.folders:
            images = load_grey(folder)
            if images.shape[1:] != ref_images.shape[1:]:
                raise SpectrumError(
                    f"{folder}: {images.shape[-1]} px images against the reference's "
                    f"{ref_images.shape[-1]} px; resize them to one size first"
                )
            rows[str(folder)] = relative_spectrum(power_spectrum(images), reference)
    except (SpectrumError, DataError) as err:
        print(f"spectrum: error: {err}", file=sys.stderr)
        return 2
    columns = list(next(iter(rows.values())))
    width = max(len(name) for name in rows)
    print(f"power relative to {args.reference} ({len(ref_images)} images); bands in units of")
    print("the Nyquist frequency (0.5 cycles per pixel)")
    for col in columns:
        print(f"{col:>20} " + " ".join(f"{rows[name][col]:>{max(width, 8)}.2f}" for name in rows))
    print(f"{'':>20} " + " ".join(f"{name:>{max(width, 8)}}" for name in rows))
    if args.json:
        args.json.write_text(json.dumps({"reference": str(args.reference), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
