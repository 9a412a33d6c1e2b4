"""One image of the same inputs translated by several models: a row per folder.

The folders are matched by file stem (as `gantrans evaluate translations=DIR` pairs them), so
the outputs of any tool can be set beside gantrans's:

    gantrans evaluate dataset=smiles direction=AtoB export_inputs=inputs
    gantrans translate ckpt=runs/a/checkpoints/latest.pt input=inputs output=out_a
    gantrans translate ckpt=runs/b/checkpoints/latest.pt input=inputs output=out_b
    python scripts/compare_grid.py inputs out_a out_b --n 8 --out compare.png

Prints the labels of the rows in order (the folder names unless --labels).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from gantrans.training.reporting import image_rows

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def images_by_stem(folder: Path) -> dict[str, Path]:
    """The image files of a folder (not recursive) by file stem."""
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in EXTENSIONS}


def load_row(paths: list[Path], mode: str, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1]: the files, converted to `mode` and resized to `size` (W, H)."""
    tensors = []
    for path in paths:
        with Image.open(path) as im:
            im = im.convert(mode)
            if im.size != size:
                im = im.resize(size, Image.Resampling.BICUBIC)
            tensors.append(pil_to_tensor(im).float() / 127.5 - 1)
    return torch.stack(tensors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="inputs first, then outputs")
    parser.add_argument("--n", type=int, default=8, help="images per row (default 8)")
    parser.add_argument("--labels", nargs="*", help="one label per folder, for the printout")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"compare_grid: error: {message}", file=sys.stderr)
        return 2

    if args.n < 1:
        return fail(f"--n must be positive, got {args.n}")
    if args.labels and len(args.labels) != len(args.folders):
        return fail(f"--labels needs one label per folder ({len(args.folders)})")
    for folder in args.folders:
        if not folder.is_dir():
            return fail(f"{folder} is not a folder")
    files = [images_by_stem(f) for f in args.folders]
    common = sorted(set.intersection(*(set(f) for f in files)))
    if not common:
        return fail("the folders share no file stem: translate the same inputs into each")
    stems = common[: args.n]
    with Image.open(files[0][stems[0]]) as first:
        size = first.size
        mode = "L" if first.mode in ("L", "I;16", "I") else "RGB"
    rows = [load_row([f[s] for s in stems], mode, size) for f in files]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    to_pil_image(image_rows(rows)).save(args.out)
    labels = args.labels or [f.name for f in args.folders]
    print(f"wrote {args.out}: {len(stems)} images per row; rows: {', '.join(labels)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
