"""Two-domain image folder dataset: ROOT/trainA, ROOT/trainB and optional ROOT/testA, ROOT/testB."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .imageio import (
    IMAGE_EXTENSIONS,
    DataError,
    check_image_header,
    config_int,
    is_image_file,
    open_image,
    pil_to_tensor,
)
from .transforms import (
    PREPROCESS_MODES,
    AffineAugment,
    affine_from_config,
    eval_transform,
    train_transform,
)

_EXTS = ", ".join(IMAGE_EXTENSIONS)
_MAX_LISTED = 5  # bad files named in a warning


class FolderDomain:
    """One domain of a folder dataset: a fixed, sorted list of image files.

    ``load(i, generator)`` decodes file i and applies the training augmentation drawn from
    ``generator``; ``load(i)`` applies the deterministic test-time transform. A file that fails
    to decode falls back to the next index (deterministically) with a single warning.
    """

    def __init__(
        self,
        files: Sequence[Path],
        channels: int = 3,
        preprocess: str = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        label: str = "",
        augment: AffineAugment | None = None,
    ) -> None:
        """Create a domain.

        Args:
            files: The image files, in index order (at least one).
            channels: 1 ("L") or 3 ("RGB").
            preprocess: One of ``PREPROCESS_MODES``.
            load_size: Resize target before cropping (modes "resize_and_crop" and
                "scale_width_and_crop").
            crop_size: Output side of the cropping modes.
            flip: Random horizontal flips during training.
            label: A name for messages, e.g. the folder path.
            augment: A random affine/brightness augmentation applied after the crop and flip
                during training (None: off).
        """
        if not files:
            raise ValueError("a FolderDomain needs at least one file")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if preprocess not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got {preprocess!r}")
        self.files = [Path(f) for f in files]
        self.channels = channels
        self.preprocess = preprocess
        self.load_size = load_size
        self.crop_size = crop_size
        self.flip = flip
        self.label = label or str(self.files[0].parent)
        self.augment = augment if augment is not None and augment.active else None
        self._bad: set[int] = set()  # indices found undecodable in this process
        self._warned = False

    def __len__(self) -> int:
        """Number of image files."""
        return len(self.files)

    def name(self, index: int) -> str:
        """The file name of image ``index`` (unique within the folder)."""
        return self.files[index].name

    def path(self, index: int) -> Path:
        """The path of image ``index``."""
        return self.files[index]

    def load(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Image ``index`` as (C, H, W) in [-1, 1].

        Args:
            index: In [0, len).
            generator: Draws the training augmentation (crop offset, flip); None gives the
                deterministic test-time transform.

        Returns:
            (C, H, W) float32 in [-1, 1]; H = W = crop_size except for preprocess "none".

        Raises:
            DataError: If no file of the domain can be decoded.
        """
        n = len(self.files)
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} images in {self.label}")
        for step in range(n):
            j = (index + step) % n
            if j in self._bad:
                continue
            try:
                img = self.decode(self.files[j])
            except DataError as exc:
                self._bad.add(j)
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"{exc}; using the next image of {self.label} instead "
                        "(further unreadable images are skipped silently)",
                        stacklevel=2,
                    )
                continue
            if generator is None:
                img = eval_transform(img, self.preprocess, self.load_size, self.crop_size)
            else:
                img = train_transform(
                    img, self.preprocess, self.load_size, self.crop_size, self.flip, generator
                )
                if self.augment is not None:
                    img = self.augment(img, generator)
            return pil_to_tensor(img)  # (C, H, W) in [-1, 1]
        raise DataError(
            f"no image in {self.label} could be decoded: replace the corrupt files "
            "(run with dataset.strict=true to name them)"
        )

    def decode(self, path: Path) -> Image.Image:
        """Open and fully decode one file as "L"/"RGB" (subclasses add e.g. a face crop).

        Raises:
            DataError: The file cannot be decoded.
        """
        return open_image(path, self.channels)

    def __repr__(self) -> str:
        extra = f", augment={self.augment}" if self.augment is not None else ""
        return (
            f"{type(self).__name__}({self.label!r}, n={len(self)}, channels={self.channels}, "
            f"preprocess={self.preprocess!r}, load_size={self.load_size}, "
            f"crop_size={self.crop_size}, flip={self.flip}{extra})"
        )


def scan_folder(folder: Path, strict: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """List a domain folder's usable images and the files that were skipped.

    Every image file's header is checked cheaply (size > 0 and PIL identifies it); with
    ``strict`` each image is fully decoded instead and the first failure raises. Hidden files
    and sub-folders are ignored silently; other files without an image extension are
    reported as skipped.

    Args:
        folder: The domain folder.
        strict: Fully decode every image and raise on the first unreadable one.

    Returns:
        (good files sorted by name, [(skipped file, one-line reason), ...]).

    Raises:
        DataError: With ``strict``, for the first image that cannot be decoded.
    """
    good: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or not path.is_file():
            continue
        if not is_image_file(path):
            skipped.append((path, f"not an image file ({_EXTS})"))
            continue
        if strict:
            try:
                open_image(path, 3)
            except DataError as exc:
                raise DataError(
                    f"{exc}: fix or delete it, or set dataset.strict=false to skip unreadable files"
                ) from exc
            good.append(path)
            continue
        reason = check_image_header(path)
        if reason is None:
            good.append(path)
        else:
            skipped.append((path, reason))
    return good, skipped


def folder_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the folder dataset settings, raising a one-line DataError for a bad one."""
    root = cfg.get("root")
    if root is None or str(root).strip() in ("", "???"):
        raise DataError(
            "dataset.root is not set: point dataset.root at a folder holding trainA/ and trainB/"
        )
    root_path = Path(str(root)).expanduser()
    shown = str(root) if root_path.is_absolute() else f"{root} (resolved to {root_path.resolve()})"
    if not root_path.exists():
        raise DataError(
            f"dataset.root={shown} does not exist: "
            "point dataset.root at a folder holding trainA/ and trainB/"
        )
    if not root_path.is_dir():
        raise DataError(
            f"dataset.root={shown} is not a folder: "
            "point dataset.root at a folder holding trainA/ and trainB/"
        )
    preprocess = cfg.get("preprocess", "resize_and_crop")
    if preprocess not in PREPROCESS_MODES:
        raise DataError(
            f"dataset.preprocess={preprocess!r} is unknown: choose one of {', '.join(PREPROCESS_MODES)}"
        )
    load_size = config_int(cfg, "load_size", 286, 1)
    crop_size = config_int(cfg, "crop_size", 256, 1)
    if preprocess in ("resize_and_crop", "scale_width_and_crop") and crop_size > load_size:
        raise DataError(
            f"dataset.crop_size={crop_size} is larger than dataset.load_size={load_size}: "
            "set crop_size <= load_size"
        )
    flip = cfg.get("flip", True)
    if not isinstance(flip, bool):
        raise DataError(f"dataset.flip={flip!r} is not a boolean: set it to true or false")
    strict = cfg.get("strict", False)
    if not isinstance(strict, bool):
        raise DataError(f"dataset.strict={strict!r} is not a boolean: set it to true or false")
    max_items = cfg.get("max_items")
    if max_items is not None:
        max_items = config_int(cfg, "max_items", None, 1)
    augment = affine_from_config(cfg)
    return {
        "root": root_path,
        "shown": shown,
        "preprocess": preprocess,
        "load_size": load_size,
        "crop_size": crop_size,
        "flip": flip,
        "strict": strict,
        "max_items": max_items,
        "augment": augment,
    }


def build_folder(
    cfg: Mapping[str, Any], split: str, channels: int
) -> tuple[FolderDomain, FolderDomain]:
    """Build the two domains of a folder dataset for ``split``.

    For "test", ROOT/testA and ROOT/testB are used where they exist; a missing one falls back
    to the train folder of that domain (loaded with the test-time transform) with one warning.
    Unreadable files are skipped with one warning that counts them (or raise with
    ``dataset.strict=true``).

    Args:
        cfg: The dataset config: ``root``, ``load_size`` (286), ``crop_size`` (256), ``flip``
            (true), ``preprocess`` ("resize_and_crop"), ``max_items`` (null), ``strict``
            (false), and the optional random affine augmentation ``rotate``, ``translate``,
            ``shear``, ``zoom``, ``brightness`` (all off by default; see ``AffineAugment``).
        split: "train" or "test".
        channels: 1 ("L") or 3 ("RGB").

    Returns:
        (domain_a, domain_b).

    Raises:
        DataError: A missing root or domain folder, a domain without usable images, or an
            invalid setting.
    """
    opts = folder_config(cfg)
    root: Path = opts["root"]
    shown: str = opts["shown"]
    fallbacks: list[str] = []
    skipped: list[tuple[Path, str]] = []
    domains: list[FolderDomain] = []
    for domain in ("A", "B"):
        sub = f"{split}{domain}"
        folder = root / sub
        if split == "test" and not folder.is_dir():
            fallbacks.append(sub)
            sub = f"train{domain}"
            folder = root / sub
        if not folder.is_dir():
            raise DataError(
                f"dataset.root={shown} has no {sub}/ folder: "
                f"create {folder} holding the domain {domain} images ({_EXTS})"
            )
        good, bad = scan_domain(folder, domain, strict=opts["strict"])
        skipped.extend(bad)
        if opts["max_items"] is not None:
            good = good[: opts["max_items"]]
        domains.append(
            FolderDomain(
                good,
                channels=channels,
                preprocess=opts["preprocess"],
                load_size=opts["load_size"],
                crop_size=opts["crop_size"],
                flip=opts["flip"],
                label=str(folder),
                augment=opts["augment"],
            )
        )
    if fallbacks:
        missing = " and ".join(f"{s}/" for s in fallbacks)
        warnings.warn(
            f"dataset.root={shown} has no {missing}: evaluating on the train images of that "
            "domain instead (with the test-time transform)",
            stacklevel=3,
        )
    warn_skipped(f"dataset.root={shown}", skipped, stacklevel=4)
    return domains[0], domains[1]


def scan_domain(
    folder: Path, domain: str, strict: bool = False
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """``scan_folder`` for one domain, refusing a domain without a usable image.

    Args:
        folder: The domain folder (must exist).
        domain: "A" or "B", for the message.
        strict: Fully decode every image and raise on the first unreadable one.

    Returns:
        (good files sorted by name, [(skipped file, one-line reason), ...]); good is not empty.

    Raises:
        DataError: No readable image in the folder (one line), or a bad file with ``strict``.
    """
    good, bad = scan_folder(folder, strict=strict)
    if not good:
        if bad:
            raise DataError(
                f"{folder} has no readable image ({len(bad)} file(s) skipped, e.g. "
                f"{bad[0][0].name}: {bad[0][1]}): put valid {_EXTS} images there"
            )
        raise DataError(
            f"{folder} holds no image files: put domain {domain} images ({_EXTS}) there"
        )
    return good, bad


def warn_skipped(where: str, skipped: Sequence[tuple[Path, str]], stacklevel: int = 3) -> None:
    """One warning naming up to 5 skipped files and counting them all (none if nothing skipped).

    Args:
        where: How the dataset is named in the message, e.g. "dataset.root=DIR".
        skipped: [(file, one-line reason), ...] as returned by ``scan_folder``.
        stacklevel: Passed to ``warnings.warn``.
    """
    if not skipped:
        return
    listed = "; ".join(f"{p.parent.name}/{p.name}: {why}" for p, why in skipped[:_MAX_LISTED])
    more = f"; and {len(skipped) - _MAX_LISTED} more" if len(skipped) > _MAX_LISTED else ""
    warnings.warn(
        f"{where}: skipped {len(skipped)} file(s) that are not readable images ({listed}{more})",
        stacklevel=stacklevel,
    )
