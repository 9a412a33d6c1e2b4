"""`gantrans download NAME`: fetch a dataset archive (resumable, verified), unpack it safely.

The archive is downloaded to ``ROOT/FOLDER.zip.part`` (``.tar.gz.part`` for the pix2pix sets)
and renamed to ``FOLDER.zip`` only when the byte count matches the server's Content-Length; an
interrupted download resumes with an HTTP Range request (or starts over when the server ignores
it). A zip is checked with ``ZipFile.testzip()``, a tar.gz by reading every member through (the
gzip CRC), and its SHA-256 is computed (and compared where a digest is known), every
entry is checked to stay inside the target folder before anything is written, and the files
are extracted into a hidden temporary folder beside the target that is renamed into place, so
a dataset folder is either complete or absent. Only the standard library does HTTP.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig
from tqdm import tqdm

from gantrans import __version__
from gantrans.config import to_plain
from gantrans.data.archives import (
    CHUNK,
    ArchiveError,
    check_members,
    check_tar_members,
    verify_archive,
)
from gantrans.data.celeba import (
    ATTR_FILE,
    CELEBA_FOLDER,
    IMAGES_DIR,
    PARTITION_FILE,
    celeba_instructions,
    find_annotation,
)
from gantrans.data.cyclegan_sets import CYCLEGAN_SETS, DATA_ENV, data_root, shown_path
from gantrans.data.imageio import DataError, one_line
from gantrans.data.paired import PIX2PIX_SETS
from gantrans.data.smiles import DOMAIN_DIRS, SMILES_FOLDER

log = logging.getLogger("gantrans")

CYCLEGAN_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
"""Where the CycleGAN authors publish their sets, as NAME.zip."""
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
"""Where the pix2pix authors publish their aligned sets, as NAME.tar.gz (A|B images)."""
SMILES_URL = "https://github.com/hromi/SMILEsmileD/archive/refs/heads/master.zip"
MIRROR_ENV = "GANTRANS_DOWNLOAD_URL"
"""Environment variable: a base URL serving FOLDER.zip for every set (replaces the official
sources; the ``mirror=`` option takes precedence)."""
# DataErrors below are raised `from None`: their message already carries the reason, and the
# CLI would print the cause again after it.


@dataclass(frozen=True)
class Source:
    """A dataset that ``gantrans download`` knows."""

    name: str  # the download name (name=...)
    folder: str  # the folder it becomes under the data root
    url: str | None  # the official archive; None: cannot be downloaded automatically
    required: tuple[str, ...]  # sub-folders that must hold files for the set to be in place
    # SHA-256 of the official archive, checked when known. None for every entry so far: the
    # digests are not published, and they could not be looked up when this was written
    # (offline), so only the size and the zip's own CRCs are checked.
    sha256: str | None = None
    archive: str = "zip"  # the archive format: "zip" or "tar.gz"

    @property
    def archive_name(self) -> str:
        """The archive's file name under the data root (and on a mirror): FOLDER.zip."""
        return f"{self.folder}.{self.archive}"


SOURCES: dict[str, Source] = {
    **{
        n: Source(n, n, f"{CYCLEGAN_URL}/{n}.zip", ("trainA", "trainB"), sha256=None)
        for n in CYCLEGAN_SETS
    },
    # the pix2pix sets (side-by-side A|B images in train/, val/, test/): pix2pix_facades, ...
    **{
        f"pix2pix_{n}": Source(
            f"pix2pix_{n}", f"pix2pix_{n}", f"{PIX2PIX_URL}/{n}.tar.gz", ("train",), None, "tar.gz"
        )
        for n in PIX2PIX_SETS
    },
    "smiles": Source("smiles", SMILES_FOLDER, SMILES_URL, tuple(DOMAIN_DIRS.values()), None),
    "celeba": Source("celeba", CELEBA_FOLDER, None, (IMAGES_DIR,), None),
}
ALIASES = {"smilesmiled": "smiles"}


def lookup(name: str | None) -> Source:
    """The source called ``name`` (case-insensitive; "SMILEsmileD" is "smiles").

    Raises:
        DataError: A missing or unknown name (listing the known ones).
    """
    known = ", ".join(SOURCES)
    if not name:
        raise DataError(f"name is required: gantrans download NAME, NAME one of {known}")
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in SOURCES:
        raise DataError(f"name={name!r} is not a dataset gantrans can fetch: choose one of {known}")
    return SOURCES[key]


def archive_url(source: Source, url: str | None = None, mirror: str | None = None) -> str | None:
    """The URL to fetch: ``url``, else ``MIRROR/FOLDER.zip`` (``mirror`` or ``$GANTRANS_DOWNLOAD_URL``),
    else the official one (None for a set that cannot be downloaded)."""
    if url:
        return url
    mirror = mirror or os.environ.get(MIRROR_ENV)
    if mirror and source.url is not None:
        return f"{mirror.rstrip('/')}/{source.archive_name}"
    return source.url


def missing_parts(target: Path, source: Source) -> list[str]:
    """The required parts of ``source`` absent from ``target`` (empty: the set is in place)."""
    missing = [f"{sub}/" for sub in source.required if not _has_files(target / sub)]
    if source.name == "celeba":
        missing += [f for f in (ATTR_FILE, PARTITION_FILE) if find_annotation(target, f) is None]
    return missing


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """Parse "bytes START-END/TOTAL" into (START, TOTAL or None); None if malformed."""
    try:
        unit, _, rest = (value or "").partition(" ")
        span, _, total = rest.partition("/")
        start = int(span.split("-")[0])
        return (start, None if total in ("", "*") else int(total)) if unit == "bytes" else None
    except ValueError:
        return None


class _Plan(NamedTuple):
    """How a response's body is written: appended to the part or written over it."""

    offset: int  # the bytes of the part kept before this response's body
    mode: str  # "ab" (resume) or "wb" (start over)
    total: int | None  # the archive's full size, when the server says


def fetch(
    url: str,
    part: Path,
    dest: Path,
    name: str,
    timeout: float = 60.0,
    progress: bool = True,
    _restarted: bool = False,
) -> None:
    """Download ``url`` into ``part`` (resuming it if present), then rename it to ``dest``.

    Args:
        url: The archive's URL.
        part: The partial file; kept when the download stops early, so a new call resumes.
        dest: The final name, given only to a complete download.
        name: The dataset, for messages.
        timeout: Seconds to wait for a connection or for data.
        progress: Show a tqdm bar.

    Raises:
        DataError: The server cannot be reached or fails, or the transfer stops early (one line).
    """
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _request(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset and not _restarted:  # the part does not fit: start over
            log.info("%s cannot be resumed (HTTP 416): downloading it again", part.name)
            part.unlink()
            return fetch(url, part, dest, name, timeout, progress, _restarted=True)
        raise DataError(_unreachable(name, url, f"HTTP {exc.code} {exc.reason}", dest)) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise DataError(_unreachable(name, url, reason, dest)) from None
    with response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None  # bytes in this response
        plan = _plan(response, offset, expected, part, name)
        if plan is None:  # a part we did not ask for: never append it
            if not offset or _restarted:
                raise DataError(_unreachable(name, url, "unexpected partial response", dest))
            log.info("the server resumed %s at the wrong offset: downloading it again", name)
            part.unlink()
            response.close()
            return fetch(url, part, dest, name, timeout, progress, _restarted=True)
        received = _receive(response, part, plan, name, progress)
    if expected is not None and received != expected:
        of = f" of {plan.offset + expected}" if plan.total is None else f" of {plan.total}"
        raise DataError(
            f"the download of {name} stopped after {plan.offset + received}{of} bytes: run the "
            f"same command again to resume ({part} is kept)"
        )
    os.replace(part, dest)


def _request(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """Open ``url``, asking for the bytes from ``offset`` on (a Range request) when it is > 0."""
    headers = {"User-Agent": f"gantrans/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _plan(
    response: http.client.HTTPResponse, offset: int, expected: int | None, part: Path, name: str
) -> _Plan | None:
    """Resume ``part`` when the server sent the asked-for range, else start it over; None for a
    partial response at another offset (or one not asked for), which must not be written."""
    span = _content_range(response.headers.get("Content-Range"))
    if offset and response.status == 206 and span is not None and span[0] == offset:
        log.info("resuming %s at %d bytes", part.name, offset)
        return _Plan(offset, "ab", span[1])
    if response.status == 206:
        return None
    if offset:
        log.info("the server does not resume downloads: downloading %s again", name)
    return _Plan(0, "wb", expected)


def _receive(
    response: http.client.HTTPResponse, part: Path, plan: _Plan, name: str, progress: bool
) -> int:
    """Write ``response``'s body to ``part`` as ``plan`` says, under a progress bar.

    Returns:
        The bytes received.

    Raises:
        DataError: The transfer broke off (``part`` is kept, so the next call resumes).
    """
    received = 0
    bar = tqdm(
        total=plan.total,
        initial=plan.offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        with part.open(plan.mode) as f:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    except (http.client.HTTPException, OSError) as exc:  # reset, timeout, IncompleteRead
        raise DataError(
            f"the download of {name} stopped after {plan.offset + received} bytes "
            f"({one_line(exc) or type(exc).__name__}): run the same command again to resume "
            f"({part} is kept)"
        ) from None
    finally:
        bar.close()
    return received


def _unreachable(name: str, url: str, reason: object, dest: Path) -> str:
    return (
        f"cannot download {name} from {url}: {one_line(reason)}; check your connection or "
        f"download it by hand to {dest}"
    )


def _dataset_top(folder: Path, source: Source) -> Path | None:
    """``folder`` or its single sub-folder, whichever holds ``source``'s layout; else None."""
    if not missing_parts(folder, source):
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir() and p.name not in ("__MACOSX",)]
    if len(subs) == 1 and not missing_parts(subs[0], source):
        return subs[0]
    return None


def extract(archive: Path, target: Path, source: Source) -> None:
    """Extract ``archive`` so that ``target`` becomes the dataset folder, atomically.

    The entries are checked first (``check_members``), then extracted into a hidden temporary
    folder beside ``target``; the folder holding the dataset's layout (the archive's top folder,
    e.g. SMILEsmileD-master/) is renamed to ``target``. An existing ``target`` is replaced.

    Raises:
        DataError: An unsafe entry, too little disk space, or an archive without the layout.
    """
    parent = target.parent
    is_tar = archive.name.endswith(".tar.gz")
    with tarfile.open(archive, "r:gz") if is_tar else zipfile.ZipFile(archive) as zf:
        if is_tar:
            size = check_tar_members(zf, archive, target)
        else:
            size = check_members(zf, archive, target)
        free = shutil.disk_usage(parent).free
        if size > free:
            raise DataError(
                f"extracting {archive} needs {size / 2**20:.0f} MiB but {parent} has "
                f"{free / 2**20:.0f} MiB free: free some space or pass root=DIR"
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=parent))
        try:
            if is_tar and hasattr(tarfile, "data_filter"):  # checked above; the filter as well
                zf.extractall(tmp, filter="data")
            else:
                zf.extractall(tmp)
            top = _dataset_top(tmp, source)
            if top is None:
                raise ArchiveError(
                    f"{archive} does not hold {source.name}'s layout ({', '.join(source.required)})"
                )
            old = None
            if target.exists():  # force=true: swap the new folder in, then drop the old one
                old = parent / f".{target.name}.old-{os.getpid()}"
                os.replace(target, old)
            os.replace(top, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def download(
    name: str | None,
    root: str | Path | None = None,
    mirror: str | None = None,
    url: str | None = None,
    force: bool = False,
    keep_archive: bool = False,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Fetch dataset ``name`` into ``root`` unless it is already there.

    Args:
        name: A key of ``SOURCES`` (e.g. "apple2orange", "smiles"), or "list".
        root: The data root (None: ``$GANTRANS_DATA``, else ./data).
        mirror: A base URL serving FOLDER.zip (None: ``$GANTRANS_DOWNLOAD_URL`` or the official
            source).
        url: The archive's full URL (overrides ``mirror``).
        force: Replace the dataset even if it is in place (an archive kept in ROOT by
            ``keep_archive`` is reused rather than downloaded again).
        keep_archive: Keep ROOT/FOLDER.zip after extracting it.
        timeout: Seconds to wait for a connection or for data.
        progress: Show a progress bar.

    Returns:
        The dataset folder, ROOT/FOLDER.

    Raises:
        DataError: Any failure, as one line (see ``fetch``, ``verify_archive``, ``extract``).
    """
    root_path = Path(root).expanduser() if root else data_root()
    if str(name).lower() == "list":
        log.info("datasets in %s:", shown_path(root_path))
        for source in SOURCES.values():
            there = not missing_parts(root_path / source.folder, source)
            log.info("%-24s %s", source.name, "in place" if there else "-")
        return root_path
    source = lookup(name)
    target = root_path / source.folder
    missing = missing_parts(target, source)
    if not missing and not force:
        log.info("%s is already in %s: nothing to download", source.name, shown_path(target))
        return target
    if target.exists() and missing and not force:
        raise DataError(
            f"{target} exists but is not a complete {source.name} ({', '.join(missing)} "
            "missing): move it away, or pass force=true to replace it"
        )
    href = archive_url(source, url, mirror)
    if href is None:
        raise DataError(celeba_instructions(target))
    make_root(root_path)
    archive = root_path / source.archive_name
    part = archive.with_name(archive.name + ".part")
    fresh = not archive.exists()
    if fresh:
        log.info("downloading %s from %s", source.name, href)
        fetch(href, part, archive, source.name, timeout, progress)
    else:
        log.info("using the archive already in %s", archive)
    try:
        digest = verify_archive(archive, source.sha256)
        checked = "matches the known digest" if source.sha256 else "no published digest to compare"
        log.info(
            "%s: %d bytes, SHA-256 %s (%s)", archive.name, archive.stat().st_size, digest, checked
        )
        extract(archive, target, source)
    except ArchiveError as exc:
        if not fresh:  # the user's file: leave it to them
            raise DataError(f"{exc}: delete it, or fetch it from {href}") from None
        archive.unlink()
        raise DataError(f"{exc}: deleted it; run the command again to download it afresh") from None
    if not keep_archive:
        archive.unlink()
    log.info("%s is ready in %s", source.name, shown_path(target))
    if root is None and DATA_ENV not in os.environ:
        log.info("(set %s=%s to train on it from any directory)", DATA_ENV, root_path.resolve())
    return target


def make_root(root_path: Path) -> None:
    """Create the download folder, or stop in one line if it cannot be made or written to."""
    try:
        root_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create root={root_path} ({exc.strerror or type(exc).__name__}): "
            "choose a folder you can write to"
        ) from None
    if not os.access(root_path, os.W_OK | os.X_OK):
        raise DataError(f"root={root_path} is not writable: choose a folder you can write to")


def main(cfg: DictConfig) -> None:
    """`gantrans download NAME [root=DIR] [mirror=URL] [url=URL] [force=true]`."""
    download(**to_plain(cfg))
