"""`ckpt=pretrained:NAME`: download a published CycleGAN or pix2pix generator once and cache it.

The files are the generators the pytorch-CycleGAN-and-pix2pix authors publish (the lists of
their ``scripts/download_cyclegan_model.sh`` and ``download_pix2pix_model.sh``); each holds one
direction, e.g. ``horse2zebra``. The pix2pix ones are named ``pix2pix_<their name>`` here
(``pix2pix_sat2map``), as three of their names are also CycleGAN models'. They are cached in
``$GANTRANS_CACHE/pretrained`` (default ``~/.cache/gantrans/pretrained``; a file placed directly
in ``$GANTRANS_CACHE``, where older versions kept them, is used too) and fetched from
``$GANTRANS_PRETRAINED_URL/NAME.pth`` (default: the authors' server).
"""

from __future__ import annotations

import http.client
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from gantrans.cache import CACHE_ENV, cache_root
from gantrans.errors import CheckpointError

log = logging.getLogger("gantrans")

PREFIX = "pretrained:"
DEFAULT_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"  # NAME.pth, unprefixed
PIX2PIX_PREFIX = "pix2pix_"
URL_ENV = "GANTRANS_PRETRAINED_URL"
TIMEOUT_S = 60.0
MODELS = (
    "apple2orange",
    "orange2apple",
    "summer2winter_yosemite",
    "winter2summer_yosemite",
    "horse2zebra",
    "zebra2horse",
    "monet2photo",
    "style_monet",
    "style_cezanne",
    "style_ukiyoe",
    "style_vangogh",
    "sat2map",
    "map2sat",
    "cityscapes_photo2label",
    "cityscapes_label2photo",
    "facades_photo2label",
    "facades_label2photo",
    "iphone2dslr_flower",
    # pix2pix generators (U-Net 256, batch norm), trained on aligned pairs
    "pix2pix_facades_label2photo",
    "pix2pix_sat2map",
    "pix2pix_map2sat",
    "pix2pix_edges2shoes",
    "pix2pix_day2night",
)
PAIRS = (  # models published for both directions of one dataset
    ("apple2orange", "orange2apple"),
    ("summer2winter_yosemite", "winter2summer_yosemite"),
    ("horse2zebra", "zebra2horse"),
    ("sat2map", "map2sat"),
    ("cityscapes_photo2label", "cityscapes_label2photo"),
    ("facades_photo2label", "facades_label2photo"),
    ("pix2pix_sat2map", "pix2pix_map2sat"),
)


def method_of(name: str) -> str:
    """The method that trained published model `name`: "cyclegan" or "pix2pix"."""
    return "pix2pix" if name.startswith(PIX2PIX_PREFIX) else "cyclegan"


def names_by_method() -> str:
    """The known names, grouped by method, for messages."""
    groups = {m: [n for n in MODELS if method_of(n) == m] for m in ("cyclegan", "pix2pix")}
    return "; ".join(f"{m}: {', '.join(names)}" for m, names in groups.items())


def is_pretrained(spec: str | os.PathLike) -> bool:
    """Whether a ``ckpt=`` value names a pretrained model (``pretrained:NAME``)."""
    return str(spec).startswith(PREFIX)


def reverse_of(name: str) -> str | None:
    """The published model for the opposite direction (``zebra2horse`` for ``horse2zebra``)."""
    for a, b in PAIRS:
        if name in (a, b):
            return b if name == a else a
    return None


def cache_dir() -> Path:
    """Where downloaded models are kept: ``$GANTRANS_CACHE/pretrained`` (~/.cache/gantrans/...)."""
    return cache_root() / "pretrained"


def model_url(name: str) -> str:
    """The download address of a pretrained model: ``$GANTRANS_PRETRAINED_URL/NAME.pth`` when
    set, else the authors' (whose pix2pix files drop the ``pix2pix_`` of our names)."""
    base = os.environ.get(URL_ENV)
    if base:
        return base.rstrip("/") + f"/{name}.pth"
    if method_of(name) == "pix2pix":
        return f"{PIX2PIX_URL}/{name[len(PIX2PIX_PREFIX) :]}.pth"
    return f"{DEFAULT_URL}/{name}.pth"


def _download(url: str, dest: Path, progress: bool) -> None:
    """Fetch `url` into `dest` through ``dest.part``, renamed only once complete."""
    part = dest.with_name(dest.name + ".part")
    received = 0
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with (
            open(part, "wb") as f,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.stem,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(1 << 16):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)
    if received == 0:
        raise http.client.HTTPException("the server sent an empty file")
    os.replace(part, dest)


def fetch(name: str, progress: bool = True) -> Path:
    """The cached file of pretrained model `name`, downloading it the first time.

    Args:
        name: One of `MODELS` (the part after ``pretrained:``; see `method_of`).
        progress: Show a tqdm progress bar while downloading.

    Returns:
        The path of the ``.pth`` file in the cache.

    Raises:
        CheckpointError: One line, for an unknown name or a failed download (saying where to
            put the file by hand).
    """
    if name not in MODELS:
        raise CheckpointError(
            f"unknown pretrained model {name!r}: choose one of ({names_by_method()})"
        )
    dest = cache_dir() / f"{name}.pth"
    for path in (dest, cache_root() / f"{name}.pth"):  # the second: where older versions kept it
        if path.is_file() and path.stat().st_size > 0:
            return path
    url = model_url(name)
    hint = f"download {url} by hand and save it as {dest}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"cannot create the cache folder {dest.parent} ({exc.strerror or exc}): "
            f"set {CACHE_ENV} to a writable folder"
        ) from None
    log.info("downloading pretrained model %s from %s to %s", name, url, dest)
    try:
        _download(url, dest, progress)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        dest.with_name(dest.name + ".part").unlink(missing_ok=True)
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        elif isinstance(exc, urllib.error.URLError):
            reason = str(exc.reason)
        elif isinstance(exc, http.client.IncompleteRead):
            reason = f"the connection closed {exc.expected} bytes before the end"
        else:
            reason = str(exc) or type(exc).__name__
        raise CheckpointError(
            f"cannot download pretrained model {name} ({reason}): {hint}"
        ) from None
    return dest
