"""SMILEsmileD faces: A = not smiling, B = smiling, 64x64 grayscale, with a hash-based test split.

The set (https://github.com/hromi/SMILEsmileD) is used unmodified:
``ROOT/SMILEs/negatives/negatives7/*.jpg`` (9,475 faces, domain A) and
``ROOT/SMILEs/positives/positives7/*.jpg`` (3,690 faces, domain B). It has no test split, so
one is defined here: a file is held out for testing when the SHA-256 of its file name, read as a
number in [0, 1), is below ``test_fraction`` (10 %). The split depends on nothing but the name,
so it is the same on every machine and for every order of listing, and adding files never
moves an existing file from one side to the other.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cyclegan_sets import DATA_ENV, dataset_root, download_command, shown_path
from .folder import FolderDomain, scan_domain, warn_skipped
from .imageio import DataError, config_int
from .transforms import AffineAugment, affine_from_config
from .unpaired import DomainDataset

SMILES_FOLDER = "SMILEsmileD"
"""The dataset's folder under the data root (the name of the GitHub repository)."""

DOMAIN_DIRS: dict[str, str] = {
    "A": "SMILEs/negatives/negatives7",  # not smiling
    "B": "SMILEs/positives/positives7",  # smiling
}
TEST_FRACTION = 0.1
"""Default share of each domain held out for testing."""


def is_test_file(name: str, fraction: float = TEST_FRACTION) -> bool:
    """Whether a file belongs to the held-out test split.

    Args:
        name: The file name (not the path), e.g. "10007.jpg".
        fraction: The share of files held out, in [0, 1).

    Returns:
        True when the first 8 bytes of SHA-256(name), as a fraction of 2**64, are < fraction.
    """
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2.0**64


_SCANS: dict[tuple[str, bool, int], tuple[list[Path], list[tuple[Path, str]]]] = {}


def scan_cached(
    folder: Path, domain: str, strict: bool
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """``scan_domain``, remembered per process while the folder's modification time is unchanged.

    Building the train and the test split reads each 9,475-file folder once instead of twice.
    """
    key = (str(folder.resolve()), strict, folder.stat().st_mtime_ns)
    if key not in _SCANS:
        _SCANS[key] = scan_domain(folder, domain, strict=strict)
    good, bad = _SCANS[key]
    return list(good), list(bad)


def split_files(files: Sequence[Path], split: str, fraction: float) -> list[Path]:
    """The files of one split ("train" or "test"), keeping their order."""
    want_test = split == "test"
    return [f for f in files if is_test_file(f.name, fraction) == want_test]


class BalancedDomain:
    """A larger domain seen through ``length`` virtual indices, for epochs that use both domains
    equally.

    Virtual index i covers the real indices [i * n / length, (i + 1) * n / length); during
    training the real index is drawn uniformly from that stretch with the item's generator, so
    a fresh share of the domain is used every epoch and, over epochs, every image is. Without a
    generator (test time) the first index of the stretch is used.
    """

    def __init__(self, domain: DomainDataset, length: int) -> None:
        """Wrap ``domain``.

        Args:
            domain: The domain to thin out.
            length: The number of virtual indices, 1 <= length <= len(domain).
        """
        if not 1 <= length <= len(domain):
            raise ValueError(f"length must be in [1, {len(domain)}], got {length}")
        self.domain = domain
        self.length = int(length)

    def __len__(self) -> int:
        """The virtual length."""
        return self.length

    def real_index(self, index: int, generator: torch.Generator | None = None) -> int:
        """The underlying index of virtual ``index`` (one draw from ``generator`` if given)."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        u = torch.rand((1,), generator=generator).item() if generator is not None else 0.0
        n = len(self.domain)
        return min(n - 1, int((index + u) * n / self.length))

    def load(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Image at virtual ``index`` as (C, H, W) in [-1, 1] (see the class docstring)."""
        return self.domain.load(self.real_index(index, generator), generator)

    def name(self, index: int) -> str:
        """The name of the first image of virtual ``index``'s stretch."""
        return self.domain.name(self.real_index(index))

    def __repr__(self) -> str:
        return f"BalancedDomain({self.domain!r}, length={self.length})"


def balance_domains(a: DomainDataset, b: DomainDataset) -> tuple[DomainDataset, DomainDataset]:
    """Thin the larger domain to the smaller one's size with ``BalancedDomain``.

    With equal lengths the unpaired sampler's epoch is one pass of len(smaller) items, each an
    image of each domain, instead of len(larger) items in which the smaller domain's images
    repeat (2.6 times per epoch on SMILEs).

    Args:
        a: Domain A.
        b: Domain B.

    Returns:
        (a, b) with the larger one wrapped (both unchanged when the sizes are equal).
    """
    if len(a) > len(b):
        return BalancedDomain(a, len(b)), b
    if len(b) > len(a):
        return a, BalancedDomain(b, len(a))
    return a, b


def config_bool(cfg: Mapping[str, Any], key: str, default: bool) -> bool:
    """A boolean dataset setting; a non-boolean is a one-line DataError."""
    value = cfg.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, bool):
        raise DataError(f"dataset.{key}={value!r} is not a boolean: set it to true or false")
    return value


def config_fraction(cfg: Mapping[str, Any], key: str, default: float) -> float:
    """A number in [0, 1) from the dataset config; anything else is a one-line DataError."""
    value = cfg.get(key, default)
    if value is None:
        value = default
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating))
        or not 0 <= value < 1
    ):
        raise DataError(f"dataset.{key}={value!r} is out of range: set a number in [0, 1)")
    return float(value)


def config_max_items(cfg: Mapping[str, Any]) -> int | None:
    """``max_items``: None (every file) or an integer >= 1; anything else is a one-line DataError."""
    if cfg.get("max_items") is None:
        return None
    return config_int(cfg, "max_items", None, 1)


@dataclass(frozen=True)
class _SmilesSettings:
    """The settings ``build_smiles`` reads from the dataset config."""

    image_size: int
    fraction: float  # the test fraction
    flip: bool  # false when augment is
    balance: bool
    strict: bool
    max_items: int | None
    affine: AffineAugment | None  # None when augment is false

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> _SmilesSettings:
        """Read and check the settings (a bad value is a one-line DataError)."""
        image_size = config_int(cfg, "image_size", 64, 8)
        fraction = config_fraction(cfg, "test_fraction", TEST_FRACTION)
        augment = config_bool(cfg, "augment", True)
        return cls(
            image_size=image_size,
            fraction=fraction,
            flip=config_bool(cfg, "flip", True) and augment,
            balance=config_bool(cfg, "balance", False),
            strict=config_bool(cfg, "strict", False),
            max_items=config_max_items(cfg),
            affine=affine_from_config(cfg) if augment else None,
        )


def _split_to_read(split: str, fraction: float) -> str:
    """``split``, except "train" for "test" when nothing is held out (with a warning that points
    at ``build_smiles``'s caller's caller)."""
    if split == "test" and fraction == 0:
        warnings.warn(
            "dataset.test_fraction=0: SMILEsmileD has no test split, evaluating on the train "
            "images (with the test-time transform)",
            stacklevel=4,
        )
        return "train"
    return split


def _domain_files(
    root: Path, folder: Path, domain: str, split: str, settings: _SmilesSettings
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The images of ``split`` in one domain folder of the set at ``root`` (every image, with a
    warning, when none falls in the split; at most ``max_items``), and the unreadable files
    skipped.

    Raises:
        DataError: The folder is missing, or an unreadable file when ``strict``.
    """
    if not folder.is_dir():
        raise DataError(
            f"{folder} is missing: SMILEsmileD must keep its original layout under "
            f"{shown_path(root)} (fetch it again with "
            f"`{download_command('smiles', root, SMILES_FOLDER)}`)"
        )
    good, bad = scan_cached(folder, domain, settings.strict)
    files = split_files(good, split, settings.fraction)
    if not files:  # a tiny domain: every image hashed to the other side
        warnings.warn(
            f"{folder}: none of its {len(good)} image(s) falls in the {split} split "
            f"(test_fraction={settings.fraction}); using all of them for {split}",
            stacklevel=4,
        )
        files = good
    if settings.max_items is not None:
        files = files[: settings.max_items]
    return files, bad


def build_smiles(
    cfg: Mapping[str, Any], split: str, channels: int
) -> tuple[DomainDataset, DomainDataset]:
    """Build the (not smiling, smiling) domains of SMILEsmileD for ``split``.

    Args:
        cfg: The dataset config: ``root`` (null: ``$GANTRANS_DATA/SMILEsmileD``),
            ``image_size`` (64), ``test_fraction`` (0.1), ``augment`` (true: the random
            ``rotate``/``translate``/``shear``/``zoom``/``brightness`` warp and ``flip``;
            false: none), ``balance`` (false), ``strict`` (false), ``max_items`` (null).
        split: "train" or "test" (the hash split; with ``test_fraction: 0`` the test split is
            the train images, with a warning).
        channels: 1 (the files are grayscale) or 3 (the gray replicated).

    Returns:
        (domain_a, domain_b): ``FolderDomain``s, the larger one wrapped in a ``BalancedDomain``
        for "train" when ``balance`` is true.

    Raises:
        DataError: The set is missing (naming the command that fetches it), a domain folder is
            missing or has no image of the split, or a setting is invalid.
    """
    root = dataset_root(cfg, SMILES_FOLDER)
    shown = shown_path(root)
    if not (root / "SMILEs").is_dir():
        command = download_command("smiles", root, SMILES_FOLDER)
        raise DataError(
            f"SMILEsmileD is not in {shown}: fetch it with `{command}` "
            f"(or set {DATA_ENV} to the folder that holds SMILEsmileD/)"
        )
    settings = _SmilesSettings.from_config(cfg)
    split = _split_to_read(split, settings.fraction)
    skipped: list[tuple[Path, str]] = []
    domains: list[FolderDomain] = []
    for domain, sub in DOMAIN_DIRS.items():
        folder = root / sub
        files, bad = _domain_files(root, folder, domain, split, settings)
        skipped.extend(bad)
        domains.append(
            FolderDomain(
                files,
                channels=channels,
                preprocess="resize_and_crop",  # resize to image_size; the crop keeps it all
                load_size=settings.image_size,
                crop_size=settings.image_size,
                flip=settings.flip,
                label=f"{folder} ({split})",
                augment=settings.affine,
            )
        )
    warn_skipped(f"SMILEsmileD in {shown}", skipped, stacklevel=4)
    if settings.balance and split == "train":
        return balance_domains(domains[0], domains[1])
    return domains[0], domains[1]
