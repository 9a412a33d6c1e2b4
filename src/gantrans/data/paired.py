"""Paired (aligned) datasets for pix2pix: A|B images, trainA/ + trainB/ by name, shapes pairs.

A paired set gives image ``i`` of domain A together with its counterpart in domain B. Training
draws one random crop and flip and applies it to both images of a pair, so they stay aligned.
Each set also offers its two sides as index-aligned domains (``pair_domains``), which is what
the evaluation, the judges and the sample grids read: the true target of test input ``i`` is
image ``i`` of the other side.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image
from torch.utils.data import Dataset

from .folder import folder_config, scan_folder, warn_skipped
from .imageio import IMAGE_EXTENSIONS, DataError, open_image, oriented_size, pil_to_tensor
from .shapes import ShapesDomain, build_shapes
from .transforms import eval_transform, train_transform
from .unpaired import SEED_HIGH, UnpairedSampler

PIX2PIX_SETS: tuple[str, ...] = (
    "facades",
    "cityscapes",
    "maps",
    "edges2shoes",
    "edges2handbags",
    "night2day",
)
"""The pix2pix paper's aligned sets, fetched by `gantrans download pix2pix_NAME`."""
SIDE_BY_SIDE_SPLITS: dict[str, tuple[str, ...]] = {"train": ("train",), "test": ("test", "val")}
"""The folders of the side-by-side layout each split reads, in order of preference."""
_EXTS = ", ".join(IMAGE_EXTENSIONS)
_MAX_NAMED = 3  # unmatched files named in the warning


class PairedSet(Protocol):
    """Pairs of images: ``load_pair(i)`` -> (A, B), each (C, H, W) in [-1, 1]."""

    def __len__(self) -> int: ...

    def load_pair(
        self, index: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair ``index``; with a generator one random augmentation for both images, else the
        test-time transform."""
        ...

    def name(self, index: int) -> str: ...


class AlignedPairs:
    """Pairs read from files: one side-by-side A|B file, or two files, per pair.

    Args:
        files: Per pair, one path (A on the left half, B on the right) or (path A, path B).
        channels: 1 ("L") or 3 ("RGB").
        preprocess, load_size, crop_size, flip: As for the folder dataset (one draw per pair).
        label: A name for messages.
    """

    def __init__(
        self,
        files: Sequence[Path | tuple[Path, Path]],
        channels: int = 3,
        preprocess: str = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        label: str = "",
    ) -> None:
        if not files:
            raise ValueError("AlignedPairs needs at least one pair")
        self.files = list(files)
        self.channels, self.preprocess = channels, preprocess
        self.load_size, self.crop_size, self.flip = load_size, crop_size, flip
        self.label = label
        self._bad: set[int] = set()  # pairs that failed to decode
        self._warned = False

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        """The pair's file name (domain A's file in the two-folder layout)."""
        entry = self.files[index]
        return (entry[0] if isinstance(entry, tuple) else entry).name

    def decode(self, index: int) -> tuple[Image.Image, Image.Image]:
        """The two images of pair ``index``, as decoded.

        Raises:
            DataError: A side-by-side image of odd width, two images of different sizes, or
                a file that cannot be decoded (one line).
        """
        entry = self.files[index]
        if isinstance(entry, tuple):
            a, b = open_image(entry[0], self.channels), open_image(entry[1], self.channels)
            check_pair_sizes(entry, a.size, b.size, self.label)
            return a, b
        image = open_image(entry, self.channels)
        check_side_by_side(entry, image.size)
        width, height = image.size
        half = width // 2
        return image.crop((0, 0, half, height)), image.crop((half, 0, width, height))

    def load_pair(
        self, index: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.files)
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} pairs in {self.label}")
        a, b = self._decode_or_next(index)
        if generator is None:
            a = eval_transform(a, self.preprocess, self.load_size, self.crop_size)
            b = eval_transform(b, self.preprocess, self.load_size, self.crop_size)
        else:
            # one draw for the pair: two generators in the same state crop and flip alike
            seed = int(torch.randint(0, SEED_HIGH, (), generator=generator))
            gens = [torch.Generator().manual_seed(seed) for _ in range(2)]
            a = train_transform(a, self.preprocess, self.load_size, self.crop_size, self.flip,
                                gens[0])  # fmt: skip
            b = train_transform(b, self.preprocess, self.load_size, self.crop_size, self.flip,
                                gens[1])  # fmt: skip
        return pil_to_tensor(a), pil_to_tensor(b)  # (C, H, W) in [-1, 1] each

    def _decode_or_next(self, index: int) -> tuple[Image.Image, Image.Image]:
        """Pair ``index``, or (like the folder dataset) the next one that decodes, with one
        warning: a file the header scan let through may still be truncated."""
        n = len(self.files)
        for step in range(n):
            j = (index + step) % n
            if j in self._bad:
                continue
            try:
                return self.decode(j)
            except DataError as exc:
                self._bad.add(j)
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"{exc}; using the next pair of {self.label} instead (further unreadable "
                        "pairs are skipped silently)",
                        stacklevel=3,
                    )
        raise DataError(
            f"no pair in {self.label} could be decoded: replace the corrupt files (run with "
            "dataset.strict=true to name them)"
        )

    def __repr__(self) -> str:
        return f"AlignedPairs({self.label!r}, n={len(self)}, crop_size={self.crop_size})"


def check_pair_sizes(
    files: tuple[Path, Path], size_a: tuple[int, int], size_b: tuple[int, int], where: str
) -> None:
    """Refuse a pair of two files whose images differ in size (one line)."""
    if size_a != size_b:
        raise DataError(
            f"the pair {files[0].name} / {files[1].name} in {where} has images of different "
            f"sizes ({size_a[0]}x{size_a[1]} and {size_b[0]}x{size_b[1]}): resize one of them so "
            "both have the same size"
        )


def check_side_by_side(path: Path, size: tuple[int, int]) -> None:
    """Refuse a side-by-side A|B image of odd width (one line)."""
    if size[0] % 2:
        raise DataError(
            f"{path} is {size[0]} px wide, an odd width: an aligned image holds A on the left "
            "half and B on the right, so its width must be even (crop it by one column)"
        )


def check_sizes(files: Sequence[Path | tuple[Path, Path]], where: str) -> None:
    """Check every pair's sizes from the file headers, so a bad pair stops the run at the start
    in one line rather than in a data-loading worker mid-epoch."""
    for entry in files:
        try:
            if isinstance(entry, tuple):
                check_pair_sizes(entry, oriented_size(entry[0]), oriented_size(entry[1]), where)
            else:
                check_side_by_side(entry, oriented_size(entry))
        except DataError:
            raise
        except Exception:  # noqa: BLE001 -- unreadable: skipped by the scan, or caught on load
            continue


class ShapesPairs:
    """The shapes set's circles (A) with their true counterparts, the squares of the same
    colour, place and size (B). Rendered on the fly; no augmentation."""

    def __init__(self, circles: ShapesDomain) -> None:
        self.circles = circles

    def __len__(self) -> int:
        return len(self.circles)

    def name(self, index: int) -> str:
        return self.circles.name(index)

    def load_pair(
        self, index: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        del generator
        return self.circles.load(index), self.circles.counterpart(index)

    def counterpart(self, index: int) -> torch.Tensor:
        """The true translation of circle ``index`` (for the shape metrics)."""
        return self.circles.counterpart(index)


class PairSide:
    """One side ("A" or "B") of a paired set, as a domain (gantrans.data.DomainDataset)."""

    def __init__(self, pairs: PairedSet, side: str) -> None:
        self.pairs, self.side = pairs, side

    def __len__(self) -> int:
        return len(self.pairs)

    def name(self, index: int) -> str:
        return self.pairs.name(index)

    def load(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.pairs.load_pair(index, generator)["AB".index(self.side)]


class PairedDataset(Dataset):
    """Training items of a paired set by key ``(index, index, sample_seed)``: the augmentation
    is drawn from a generator seeded by the key, so an item is the same in any worker."""

    def __init__(self, pairs: PairedSet, augment: bool = True) -> None:
        if len(pairs) == 0:
            raise ValueError("a paired dataset needs at least one pair")
        self.pairs, self.augment = pairs, augment

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: Sequence[int] | int) -> dict:
        """``{"A": (C, H, W) in [-1, 1], "B": its partner, "A_index", "B_index"}``."""
        if isinstance(key, (tuple, list)):
            index, _, seed = (int(k) for k in key)
        else:
            index = seed = operator.index(key)
        gen = torch.Generator().manual_seed(seed) if self.augment else None
        a, b = self.pairs.load_pair(index, gen)
        return {"A": a, "B": b, "A_index": index, "B_index": index}


class PairedSampler(UnpairedSampler):
    """``(index, index, sample_seed)`` keys: one pass over the pairs in a random order per epoch,
    drawn from (seed, epoch) only, resumable mid-epoch and split across ranks like
    ``UnpairedSampler``."""

    def __init__(
        self, n: int, seed: int, epoch: int = 0, start: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        super().__init__(n, n, seed, epoch, start, rank=rank, world_size=world_size)

    def keys(self) -> list[tuple[int, int, int]]:
        index, _, seeds = zip(*super().keys(), strict=True)  # a permutation and the seeds
        return list(zip(index, index, seeds, strict=True))


def _side_by_side(root: Path, split: str, opts: dict[str, Any]) -> tuple[list[Path], str] | None:
    for sub in SIDE_BY_SIDE_SPLITS[split]:
        if (root / sub).is_dir():
            return _scan(root / sub, opts), sub
    return None


def _scan(folder: Path, opts: dict[str, Any]) -> list[Path]:
    good, bad = scan_folder(folder, strict=opts["strict"])
    warn_skipped(f"dataset.root={opts['shown']}", bad, stacklevel=5)
    if not good:
        raise DataError(
            f"{folder} holds no readable image: put aligned image pairs ({_EXTS}) there"
        )
    return good


def match_by_name(
    files_a: Sequence[Path], files_b: Sequence[Path], where: str
) -> list[tuple[Path, Path]]:
    """Pairs of files whose names agree without the extension (``0001.png`` with ``0001.jpg``).

    Files without a partner are left out and counted in one warning.

    Raises:
        DataError: No file has a partner (one line).
    """
    by_stem = {p.stem: p for p in files_b}
    pairs = [(a, by_stem[a.stem]) for a in files_a if a.stem in by_stem]
    if not pairs:
        raise DataError(
            f"no file of {where}A/ has a partner of the same name in {where}B/ (e.g. "
            f"{files_a[0].name} and {files_b[0].name}): name the two images of a pair alike"
        )
    matched = {a.stem for a, _ in pairs}
    lone_a = [p.name for p in files_a if p.stem not in matched]
    lone_b = [p.name for p in files_b if p.stem not in matched]
    if lone_a or lone_b:
        named = ", ".join((lone_a + lone_b)[:_MAX_NAMED])
        warnings.warn(
            f"{where}A/ and {where}B/: {len(lone_a)} + {len(lone_b)} image(s) have no partner of "
            f"the same name and are left out (e.g. {named}); {len(pairs)} pairs are used",
            stacklevel=4,
        )
    return pairs


def build_aligned(cfg: Mapping[str, Any], split: str, channels: int) -> AlignedPairs:
    """The pairs of an aligned dataset for ``split``.

    ROOT/train (ROOT/test, else ROOT/val, for "test") of side-by-side A|B images; else ROOT/trainA
    and ROOT/trainB (testA/testB) matched by file name. A missing test split falls back to the
    training pairs, with one warning.

    Raises:
        DataError: A missing root or layout, no pair, or an invalid setting (one line).
    """
    opts = folder_config(cfg)
    root, shown = opts["root"], opts["shown"]
    kwargs = dict(
        channels=channels, preprocess=opts["preprocess"], load_size=opts["load_size"],
        crop_size=opts["crop_size"], flip=opts["flip"],
    )  # fmt: skip
    files: list[Any] | None = None
    for candidate in (split, "train") if split == "test" else (split,):
        found = _side_by_side(root, candidate, opts)
        if found is not None:
            files, label = found[0], str(root / found[1])
        elif (root / f"{candidate}A").is_dir() and (root / f"{candidate}B").is_dir():
            a, b = (_scan(root / f"{candidate}{d}", opts) for d in "AB")
            files, label = match_by_name(a, b, str(root / candidate)), str(root / candidate)
        if files is not None:
            if candidate != split:
                warnings.warn(
                    f"dataset.root={shown} has no test/, val/ nor testA/ + testB/: evaluating on "
                    "the training pairs (with the test-time transform)",
                    stacklevel=3,
                )
            break
    if files is None:
        raise DataError(
            f"dataset.root={shown} holds neither train/ (side-by-side A|B images) nor trainA/ and "
            "trainB/ (pairs named alike): point dataset.root at a paired dataset"
        )
    if opts["max_items"] is not None:
        files = files[: opts["max_items"]]
    check_sizes(files, label)
    return AlignedPairs(files, label=label, **kwargs)


def build_shapes_paired(cfg: Mapping[str, Any], split: str, channels: int) -> ShapesPairs:
    """The built-in paired shapes set for ``split`` (the shapes set's keys and defaults)."""
    circles, _ = build_shapes(cfg, split, channels)
    return ShapesPairs(circles)


PairBuilder = Callable[[Mapping[str, Any], str, int], PairedSet]
PAIRED_DATASETS: dict[str, PairBuilder] = {
    "aligned": build_aligned,
    "shapes_paired": build_shapes_paired,
}
"""Dataset name -> builder of its pairs, for the methods that train on pairs (pix2pix)."""


def pair_domains(builder: PairBuilder) -> Callable[[Mapping[str, Any], str, int], tuple]:
    """A domain builder (gantrans.data.DATASETS) of a paired set: its A and B sides."""

    def build(cfg: Mapping[str, Any], split: str, channels: int) -> tuple[PairSide, PairSide]:
        pairs = builder(cfg, split, channels)
        return PairSide(pairs, "A"), PairSide(pairs, "B")

    return build
