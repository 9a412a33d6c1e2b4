"""Data layer: datasets (shapes, folder, smiles, celeba, CycleGAN sets, paired sets), sampling, I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .celeba import build_celeba
from .cyclegan_sets import CYCLEGAN_BUILDERS, CYCLEGAN_SETS, DATA_ENV, data_root
from .folder import FolderDomain, build_folder
from .imageio import (
    IMAGE_EXTENSIONS,
    DataError,
    list_images,
    open_image,
    pil_to_tensor,
    tensor_to_pil,
)
from .paired import (
    PAIRED_DATASETS,
    PairedDataset,
    PairedSampler,
    PairedSet,
    pair_domains,
)
from .shapes import ShapesDomain, build_shapes
from .single import SingleDataset, build_single_domain
from .smiles import build_smiles
from .transforms import derive_seed
from .unpaired import DomainDataset, UnpairedDataset, UnpairedSampler

DomainBuilder = Callable[[Mapping[str, Any], str, int], tuple[DomainDataset, DomainDataset]]
"""``builder(cfg, split, channels) -> (domain_a, domain_b)``."""

DATASETS: dict[str, DomainBuilder] = {
    "shapes": build_shapes,
    "folder": build_folder,
    "smiles": build_smiles,
    "celeba": build_celeba,
    **CYCLEGAN_BUILDERS,  # apple2orange, horse2zebra, ...: folder datasets under the data root
    # paired sets (aligned, shapes_paired) as their two index-aligned sides
    **{name: pair_domains(builder) for name, builder in PAIRED_DATASETS.items()},
}
"""Dataset name (``dataset.name``) -> builder. Add an entry to plug in a new dataset."""

SPLITS: tuple[str, ...] = ("train", "test")


def build_pairs(cfg: Mapping[str, Any], split: str, channels: int) -> PairedSet:
    """The pairs of a paired dataset for one split (what pix2pix trains on).

    Raises:
        DataError: The dataset is not a paired one (naming those that are), or any data
            problem the user can fix.
    """
    name = cfg.get("name", "shapes")
    builder = PAIRED_DATASETS.get(name) if isinstance(name, str) else None
    if builder is None:
        raise DataError(
            f"dataset={name} gives unpaired images, and this method trains on aligned pairs: "
            f"use dataset=shapes_paired (built in) or dataset=aligned dataset.root=DIR"
        )
    return builder(cfg, split, channels)


def is_paired(cfg: Mapping[str, Any]) -> bool:
    """Whether the dataset config names a paired set (its two sides are index-aligned)."""
    return cfg.get("name") in PAIRED_DATASETS


def build_domains(
    cfg: Mapping[str, Any], split: str, channels: int
) -> tuple[DomainDataset, DomainDataset]:
    """Build the two domains of the configured dataset for one split.

    Args:
        cfg: The dataset config section as a plain dict (``name`` plus the dataset's keys).
        split: "train" or "test". For "test" when the dataset has no test split, the train
            domains are returned, to be loaded with the test-time transform (with a warning).
        channels: 1 (grayscale) or 3 (RGB).

    Returns:
        (domain_a, domain_b).

    Raises:
        DataError: Unknown dataset name or any data problem the user can fix.
        ValueError: An invalid ``split`` or ``channels`` (a programming error).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    name = cfg.get("name", "shapes")
    builder = DATASETS.get(name) if isinstance(name, str) else None
    if builder is None:
        raise DataError(
            f"dataset.name={name!r} is unknown: choose one of {', '.join(sorted(DATASETS))}"
        )
    return builder(cfg, split, channels)


def build_domain(cfg: Mapping[str, Any], split: str, channels: int) -> DomainDataset:
    """The one domain ``cfg["domain"]`` ("A" or "B") of the configured dataset for one split,
    for single-domain methods; ``dataset=folder`` also takes a plain folder of images.

    Raises:
        DataError: A bad domain or any data problem the user can fix.
    """
    return build_single_domain(cfg, split, channels, build_domains)


__all__ = [
    "CYCLEGAN_SETS",
    "DATASETS",
    "DATA_ENV",
    "IMAGE_EXTENSIONS",
    "DataError",
    "DomainBuilder",
    "DomainDataset",
    "FolderDomain",
    "PAIRED_DATASETS",
    "PairedDataset",
    "PairedSampler",
    "PairedSet",
    "ShapesDomain",
    "SingleDataset",
    "UnpairedDataset",
    "UnpairedSampler",
    "build_domain",
    "build_domains",
    "build_pairs",
    "is_paired",
    "data_root",
    "derive_seed",
    "list_images",
    "open_image",
    "pil_to_tensor",
    "tensor_to_pil",
]
