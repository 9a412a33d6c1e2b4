"""Checks of a downloaded archive before it is unpacked: its checksum, that it opens, and that
no member could land outside the dataset folder (absolute paths, "..", links)."""

from __future__ import annotations

import hashlib
import stat
import tarfile
import zipfile
from pathlib import Path

from gantrans.data.imageio import DataError, one_line

CHUNK = 1 << 20  # bytes read per call


class ArchiveError(DataError):
    """The archive itself is bad (corrupt, unsafe, wrong layout): downloading again may help."""


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_archive(archive: Path, expected_sha256: str | None) -> str:
    """Check a downloaded zip: the known SHA-256 if any, then every entry's CRC.

    Args:
        archive: The zip file.
        expected_sha256: The known digest, or None.

    Returns:
        The archive's SHA-256 (hex).

    Raises:
        DataError: A digest mismatch, or a file that is not a valid, intact zip.
    """
    digest = sha256_of(archive)
    if expected_sha256 and digest != expected_sha256.lower():
        raise ArchiveError(f"{archive} has SHA-256 {digest}, expected {expected_sha256}")
    if archive.name.endswith(".tar.gz"):
        try:
            with tarfile.open(archive, "r:gz") as tf:
                for member in tf:  # reading every file through checks the gzip CRC at the end
                    if member.isfile():
                        with tf.extractfile(member) as f:  # type: ignore[union-attr]
                            while f.read(CHUNK):
                                pass
        except Exception as exc:  # tarfile.TarError, EOFError, zlib.error, OSError, ...
            raise ArchiveError(
                f"{archive} is not a valid tar.gz archive ({one_line(exc) or type(exc).__name__})"
            ) from None
        return digest
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()  # decompresses every entry and checks its CRC-32
    except Exception as exc:  # BadZipFile, zlib.error, EOFError, NotImplementedError, ...
        raise ArchiveError(
            f"{archive} is not a valid zip archive ({one_line(exc) or type(exc).__name__})"
        ) from None
    if bad is not None:
        raise ArchiveError(f"{archive} is corrupt: entry {bad} fails its CRC check")
    return digest


def check_members(zf: zipfile.ZipFile, archive: Path, dest: Path) -> int:
    """Refuse an archive with an entry that would land outside ``dest``.

    Rejects absolute paths, drive letters, ``..`` components (with / or \\ as separator),
    symbolic links and anything whose resolved path is not inside ``dest``.

    Args:
        zf: The open archive.
        archive: Its path, for messages.
        dest: The folder it is to be extracted into.

    Returns:
        The total uncompressed size in bytes.

    Raises:
        DataError: For the first unsafe entry (nothing has been written).
    """
    base = dest.resolve()
    total = 0
    for info in zf.infolist():
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        unsafe = (
            name.startswith(("/", "\\"))
            or (len(name) > 1 and name[1] == ":")
            or ".." in parts
            or not (base / name).resolve().is_relative_to(base)
        )
        if unsafe:
            raise ArchiveError(
                f"{archive} holds an entry outside its folder ({name!r}): refusing to extract it"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArchiveError(
                f"{archive} holds a symbolic link ({name!r}): refusing to extract it"
            )
        total += info.file_size
    return total


def check_tar_members(tf: tarfile.TarFile, archive: Path, dest: Path) -> int:
    """`check_members` for a tar archive: regular files and folders inside ``dest`` only (no
    links, devices or absolute paths). Returns the total size in bytes."""
    base = dest.resolve()
    total = 0
    for info in tf.getmembers():
        name = info.name
        parts = name.replace("\\", "/").split("/")
        if (
            name.startswith(("/", "\\"))
            or ".." in parts
            or not (base / name).resolve().is_relative_to(base)
        ):
            raise ArchiveError(
                f"{archive} holds an entry outside its folder ({name!r}): refusing to extract it"
            )
        if not (info.isfile() or info.isdir()):
            raise ArchiveError(
                f"{archive} holds a link or special file ({name!r}): refusing to extract it"
            )
        total += info.size
    return total
