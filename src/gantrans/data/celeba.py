"""CelebA faces split by one of the 40 attributes: A = attribute -1, B = +1 (Align&Cropped set).

Expected under ROOT (default ``$GANTRANS_DATA/celeba``): ``img_align_celeba/*.jpg`` (178x218),
``list_attr_celeba.txt`` and ``list_eval_partition.txt`` (also found in the ``Anno/`` and
``Eval/`` sub-folders of the official distribution). Train = partition 0, test = partition 2.
"""

from __future__ import annotations

import difflib
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .cyclegan_sets import dataset_root, shown_path
from .folder import FolderDomain
from .imageio import DataError, config_int, convert_mode, one_line
from .smiles import balance_domains, config_bool, config_max_items
from .transforms import affine_from_config, center_crop
from .unpaired import DomainDataset

CELEBA_FOLDER = "celeba"
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
IMAGES_DIR = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
_SUBDIRS = {ATTR_FILE: "Anno", PARTITION_FILE: "Eval"}  # where the official zip puts them
PARTITIONS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
FACE_CROP = 178  # the usual centre crop of the 178x218 aligned faces


def celeba_instructions(root: Path) -> str:
    """One line saying where to get CelebA by hand and where to put it.

    Args:
        root: The CelebA folder the files must go to.

    Returns:
        The instructions (CelebA's licence forbids redistribution, so there is no download).
    """
    return (
        f"CelebA cannot be downloaded automatically: get 'Align&Cropped Images' "
        f"(img_align_celeba.zip) and the annotations {ATTR_FILE} and {PARTITION_FILE} from "
        f"the official page {CELEBA_URL} and put them as {root}/{IMAGES_DIR}/*.jpg, "
        f"{root}/{ATTR_FILE} and {root}/{PARTITION_FILE}"
    )


def find_annotation(root: Path, name: str) -> Path | None:
    """``root/name``, or ``root/Anno|Eval/name`` as in the official layout; None if absent."""
    for path in (root / name, root / _SUBDIRS[name] / name):
        if path.is_file():
            return path
    return None


def read_attribute(path: Path, attribute: str) -> dict[str, int]:
    """One column of ``list_attr_celeba.txt``.

    The file holds the image count, then the 40 attribute names, then one row per image:
    ``000001.jpg  -1  1 ...`` (any whitespace).

    Args:
        path: The attribute file.
        attribute: One of the 40 names, e.g. "Smiling".

    Returns:
        File name -> -1 or 1.

    Raises:
        DataError: An unknown attribute (listing close and valid names) or a malformed file.
    """
    with path.open("r", encoding="utf-8") as f:
        f.readline()  # the image count
        names = f.readline().split()
        if attribute not in names:
            close = difflib.get_close_matches(attribute, names, n=3)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise DataError(
                f"dataset.attribute={attribute!r} is not a CelebA attribute: {hint}valid names "
                f"include {', '.join(names[:8])}, ... ({len(names)} in {path}, case-sensitive)"
            )
        column = names.index(attribute) + 1
        values: dict[str, int] = {}
        for line_no, line in enumerate(f, start=3):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != len(names) + 1 or fields[column] not in ("-1", "1"):
                raise DataError(
                    f"{path} line {line_no} is malformed (expected a file name and "
                    f"{len(names)} values of -1 or 1): replace the file with the official one"
                )
            values[fields[0]] = int(fields[column])
    return values


def read_partitions(path: Path) -> dict[str, int]:
    """``list_eval_partition.txt``: file name -> 0 (train), 1 (val) or 2 (test).

    Raises:
        DataError: A malformed line.
    """
    parts: dict[str, int] = {}
    with path.open("r", encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise DataError(
                    f"{path} line {line_no} is malformed (expected 'NAME.jpg 0|1|2'): "
                    "replace the file with the official one"
                )
            parts[fields[0]] = int(fields[1])
    return parts


class CelebADomain(FolderDomain):
    """A ``FolderDomain`` whose decoder centre-crops the face and lets the JPEG decoder downscale.

    ``decode`` asks PIL's JPEG decoder (``Image.draft``) for the smallest power-of-two
    reduction that still leaves at least ``crop_size`` pixels across the face crop, so a
    64 px run decodes the 178x218 files at half size.
    """

    def __init__(self, *args: Any, face_crop: int = FACE_CROP, **kwargs: Any) -> None:
        """Create a domain; ``face_crop`` is the side of the centre crop in full-size pixels."""
        super().__init__(*args, **kwargs)
        self.face_crop = int(face_crop)

    def decode(self, path: Path) -> Image.Image:
        """Decode ``path`` as "L"/"RGB" and centre-crop the face (a square, before resizing).

        Raises:
            DataError: The file cannot be decoded.
        """
        try:
            if path.stat().st_size == 0:
                raise DataError(f"cannot read image {path}: the file is empty")
            with Image.open(path) as img:
                full_width, full_height = img.size
                side = min(self.face_crop, full_width, full_height)
                if img.format == "JPEG":
                    scale = self.crop_size / side  # fraction of the full size that is needed
                    request = (math.ceil(full_width * scale), math.ceil(full_height * scale))
                    img.draft("L" if self.channels == 1 else "RGB", request)
                img.load()
                img = convert_mode(img, self.channels)
        except DataError:
            raise
        except Exception as exc:  # PIL raises many types on corrupt data
            raise DataError(
                f"cannot read image {path}: {one_line(exc) or type(exc).__name__}"
            ) from exc
        side = min(img.width, img.height, round(side * img.width / full_width))
        return center_crop(img, side)


@dataclass(frozen=True)
class _CelebASettings:
    """The settings ``build_celeba`` reads from the dataset config."""

    attribute: str
    image_size: int
    face_crop: int
    flip: bool
    balance: bool
    max_items: int | None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> _CelebASettings:
        """Read and check the settings (a bad value is a one-line DataError)."""
        return cls(
            attribute=str(cfg.get("attribute") or "Smiling"),
            image_size=config_int(cfg, "image_size", 128, 8),
            face_crop=config_int(cfg, "face_crop", FACE_CROP, 8),
            flip=config_bool(cfg, "flip", True),
            balance=config_bool(cfg, "balance", False),
            max_items=config_max_items(cfg),
        )


def _celeba_files(root: Path) -> tuple[Path, Path, Path]:
    """CelebA's image folder, attribute file and partition file in ``root``.

    Raises:
        DataError: Any of them missing (saying where to get CelebA).
    """
    images = root / IMAGES_DIR
    attr_path = find_annotation(root, ATTR_FILE)
    part_path = find_annotation(root, PARTITION_FILE)
    missing = [
        name
        for name, ok in (
            (f"{IMAGES_DIR}/", images.is_dir()),
            (ATTR_FILE, attr_path),
            (PARTITION_FILE, part_path),
        )
        if not ok
    ]
    if len(missing) == 3:
        raise DataError(f"CelebA is not in {shown_path(root)}: {celeba_instructions(root)}")
    if missing or attr_path is None or part_path is None:  # (None only when missing)
        raise DataError(
            f"CelebA is incomplete in {shown_path(root)} ({', '.join(missing)} missing): "
            f"{celeba_instructions(root)}"
        )
    return images, attr_path, part_path


def _split_on_disk(images: Path, listed: list[str], split: str) -> list[str]:
    """The names of ``listed`` (``split``'s images) present in ``images``, warning about the
    others (the warning points at ``build_celeba``'s caller's caller)."""
    on_disk = set(os.listdir(images))
    absent = [n for n in listed if n not in on_disk]
    if absent:
        warnings.warn(
            f"CelebA: {len(absent)} {split} image(s) listed in {PARTITION_FILE} are not in "
            f"{images} (e.g. {absent[0]}): using the {len(listed) - len(absent)} that are",
            stacklevel=4,
        )
    return [n for n in listed if n in on_disk]


def build_celeba(
    cfg: Mapping[str, Any], split: str, channels: int
) -> tuple[DomainDataset, DomainDataset]:
    """Build CelebA's two domains for ``split``: A = ``attribute`` -1, B = ``attribute`` +1.

    Args:
        cfg: The dataset config: ``root`` (null: ``$GANTRANS_DATA/celeba``), ``attribute``
            ("Smiling"), ``image_size`` (128), ``face_crop`` (178), ``flip`` (true), the
            optional affine keys (off), ``balance`` (false), ``max_items`` (null).
        split: "train" (partition 0) or "test" (partition 2).
        channels: 1 or 3.

    Returns:
        (domain_a, domain_b).

    Raises:
        DataError: CelebA missing or incomplete (saying where to get it), an unknown
            attribute, a malformed annotation file, or an empty domain.
    """
    images, attr_path, part_path = _celeba_files(dataset_root(cfg, CELEBA_FOLDER))
    settings = _CelebASettings.from_config(cfg)
    attribute = settings.attribute
    values = read_attribute(attr_path, attribute)
    partitions = read_partitions(part_path)
    wanted = PARTITIONS[split]
    listed = sorted(n for n, p in partitions.items() if p == wanted and n in values)
    present = _split_on_disk(images, listed, split)
    affine = affine_from_config(cfg)
    domains: list[FolderDomain] = []
    for domain, sign in (("A", -1), ("B", 1)):
        files = [images / n for n in present if values[n] == sign]
        if not files:
            raise DataError(
                f"CelebA has no {split} image with {attribute}={sign:+d} in {images}: "
                f"check {ATTR_FILE} and {PARTITION_FILE}, or choose another dataset.attribute"
            )
        if settings.max_items is not None:
            files = files[: settings.max_items]
        domains.append(
            CelebADomain(
                files,
                channels=channels,
                preprocess="resize_and_crop",  # resize the face crop to image_size
                load_size=settings.image_size,
                crop_size=settings.image_size,
                flip=settings.flip,
                label=f"{images} ({split}, {attribute}={sign:+d}, domain {domain})",
                augment=affine,
                face_crop=settings.face_crop,
            )
        )
    if settings.balance and split == "train":
        return balance_domains(domains[0], domains[1])
    return domains[0], domains[1]
