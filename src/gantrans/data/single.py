"""One domain of a dataset, for single-domain methods (DCGAN): its images and their loader.

Any two-domain dataset gives one of its domains (``dataset.domain``: A or B). The folder
dataset also takes a plain folder of images (no trainA/ nor trainB/): its files are split into
train and test by a hash of the file name, as SMILEsmileD's are (gantrans.data.smiles).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .folder import FolderDomain, folder_config, scan_domain, warn_skipped
from .imageio import DataError
from .smiles import TEST_FRACTION, split_files
from .unpaired import DomainDataset

DOMAINS = ("A", "B")


def build_single_domain(
    cfg: Mapping[str, Any], split: str, channels: int, builder: Any
) -> DomainDataset:
    """The images of ``cfg["domain"]`` for one split.

    Args:
        cfg: The dataset config section as a plain dict, with ``domain`` "A" or "B".
        split: "train" or "test".
        channels: 1 or 3.
        builder: ``build_domains`` (passed in: this module sits below gantrans.data).

    Raises:
        DataError: A bad domain, or any data problem of the dataset (one line).
    """
    domain = cfg.get("domain")
    if domain not in DOMAINS:
        raise DataError(f"dataset.domain={domain!r} is not a domain: choose A or B")
    if is_plain_folder(cfg, domain):
        return _plain_folder_domain(cfg, split, channels)
    return builder(cfg, split, channels)[DOMAINS.index(domain)]


def is_plain_folder(cfg: Mapping[str, Any], domain: str) -> bool:
    """Whether a folder dataset's root is a folder of images rather than the trainA/trainB
    layout (False for the other datasets)."""
    if cfg.get("name") != "folder":
        return False
    root = Path(str(cfg.get("root"))).expanduser()
    return root.is_dir() and not (root / f"train{domain}").is_dir()


def _plain_folder_domain(cfg: Mapping[str, Any], split: str, channels: int) -> FolderDomain:
    opts = folder_config(cfg)
    good, bad = scan_domain(opts["root"], "images", strict=opts["strict"])
    warn_skipped(f"dataset.root={opts['shown']}", bad, stacklevel=4)
    files = split_files(good, split, TEST_FRACTION)
    if not files:
        raise DataError(
            f"dataset.root={opts['shown']} has no image in its {split} split "
            f"({len(good)} image(s), {TEST_FRACTION:.0%} held out by file name): add images"
        )
    if opts["max_items"] is not None:
        files = files[: opts["max_items"]]
    return FolderDomain(
        files, channels=channels, preprocess=opts["preprocess"], load_size=opts["load_size"],
        crop_size=opts["crop_size"], flip=opts["flip"], label=str(opts["root"]),
        augment=opts["augment"],
    )  # fmt: skip


class SingleDataset(Dataset):
    """One domain's images by the keys of an ``UnpairedSampler(len(domain), 1, ...)``:
    ``(index, _, sample_seed)``; the seed draws the item's augmentation, so an item is the
    same in whichever worker process it is loaded."""

    def __init__(self, domain: DomainDataset, augment: bool = True) -> None:
        if len(domain) == 0:
            raise ValueError("the domain needs at least one image")
        self.domain, self.augment = domain, augment

    def __len__(self) -> int:
        return len(self.domain)

    def __getitem__(self, key: Sequence[int] | int) -> dict:
        """``{"real": (C, H, W) in [-1, 1], "index": int}``."""
        if not isinstance(key, (tuple, list)):
            index = seed = operator.index(key) % len(self.domain)
        else:
            index, seed = int(key[0]), int(key[2])
        gen = torch.Generator().manual_seed(seed) if self.augment else None
        return {"real": self.domain.load(index, gen), "index": index}
