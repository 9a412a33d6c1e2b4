"""Where datasets live (GANTRANS_DATA or ./data) and the standard CycleGAN sets as folder datasets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from .folder import FolderDomain, build_folder
from .imageio import DataError

DATA_ENV = "GANTRANS_DATA"
"""Environment variable naming the folder that holds every dataset."""

DEFAULT_DATA_DIR = "data"
"""The data root when ``GANTRANS_DATA`` is unset or empty: ./data, relative to the current
directory (the YAML files spell it ``${oc.env:GANTRANS_DATA,data}``)."""

CYCLEGAN_SETS: tuple[str, ...] = (
    "apple2orange",
    "horse2zebra",
    "summer2winter_yosemite",
    "monet2photo",
    "vangogh2photo",
    "cezanne2photo",
    "ukiyoe2photo",
    "maps",
    "facades",
    "iphone2dslr_flower",
)
"""The CycleGAN paper's unpaired sets, each a zip of trainA/ trainB/ testA/ testB/."""


def data_root() -> Path:
    """The folder that holds the datasets: ``$GANTRANS_DATA`` if set and not empty, else ./data.

    Returns:
        The path as given (a relative one is relative to the current directory).
    """
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser()


def dataset_root(cfg: Mapping[str, Any], folder: str) -> Path:
    """The folder of one dataset: ``dataset.root`` if set, else ``data_root() / folder``.

    Args:
        cfg: The dataset config section.
        folder: The dataset's folder name under the data root, e.g. "SMILEsmileD".

    Returns:
        The dataset folder (not checked to exist).
    """
    root = cfg.get("root")
    if root is None or str(root).strip() in ("", "???"):
        return data_root() / folder
    return Path(str(root)).expanduser()


def download_command(name: str, root: Path, folder: str) -> str:
    """The ``gantrans download`` command that puts dataset ``name`` at ``root``.

    Args:
        name: The download name, e.g. "apple2orange".
        root: Where the dataset is expected.
        folder: The folder the download creates under its ``root=`` option.

    Returns:
        e.g. "gantrans download apple2orange", with ``root=PARENT`` when ``root`` is not
        under the default data root.
    """
    command = f"gantrans download {name}"
    if root.name == folder and root.parent.resolve() == data_root().resolve():
        return command
    return f"{command} root={root.parent}"


def shown_path(path: Path) -> str:
    """A path for messages: as given, plus its absolute form when it is relative."""
    return str(path) if path.is_absolute() else f"{path} (resolved to {path.resolve()})"


def build_cyclegan_set(
    name: str, cfg: Mapping[str, Any], split: str, channels: int
) -> tuple[FolderDomain, FolderDomain]:
    """Build one of ``CYCLEGAN_SETS``: the folder dataset at ``dataset.root`` (default
    ``data_root() / name``).

    Args:
        name: The set, e.g. "apple2orange".
        cfg: The dataset config (the folder dataset's keys; ``root`` may be null).
        split: "train" or "test".
        channels: 1 or 3.

    Returns:
        (domain_a, domain_b).

    Raises:
        DataError: The set is not there (naming the command that fetches it), or any folder
            dataset error.
    """
    root = dataset_root(cfg, name)
    if not (root / "trainA").is_dir() and not (root / "trainB").is_dir():
        command = download_command(name, root, name)
        hint = "" if root.name == name else f", then set dataset.root={root.parent / name}"
        raise DataError(
            f"dataset {name} is not in {shown_path(root)}: fetch it with `{command}`{hint} "
            f"(or set {DATA_ENV} to the folder that holds {name}/)"
        )
    return build_folder({**cfg, "root": str(root)}, split, channels)


CYCLEGAN_BUILDERS = {name: partial(build_cyclegan_set, name) for name in CYCLEGAN_SETS}
"""Dataset name -> builder, for ``gantrans.data.DATASETS``."""
