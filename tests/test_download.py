"""Tests of `gantrans download` against a local HTTP server (no network): resume, checks, safety."""

from __future__ import annotations

import hashlib
import io
import socket
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gantrans.data import DataError, build_domains
from gantrans.data import download as dl
from gantrans.data.download import SOURCES, download
from tests.conftest import one_line_error


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours Range when ``server.ranges``; ``server.cut[path] = n``
    sends only n bytes of the next response for path (with the full Content-Length) and closes."""

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start, header = 0, self.headers.get("Range")
        if header and srv.ranges:
            start = int(header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes" if srv.ranges else "none")
        self.end_headers()
        cut = srv.cut.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.requests, srv.cut, srv.ranges = {}, [], {}, True
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def make_zip(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the name exactly
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8))
    out = io.BytesIO()
    img.save(out, "JPEG")
    return out.getvalue()


def cyclegan_zip(name: str = "apple2orange") -> bytes:
    """A CycleGAN-style archive: NAME/trainA, trainB, testA, testB, plus 300 KB of noise."""
    noise = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    entries = {
        f"{name}/{sub}/{i}.jpg": jpeg(i) for sub in ("trainA", "trainB", "testA") for i in range(2)
    }
    entries[f"{name}/testB/noise.jpg"] = noise  # incompressible: the archive is > 300 KB
    return make_zip(entries)


def leftovers(root: Path) -> list[str]:
    """Hidden temporary folders and archives left in the data root."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".") or ".zip" in p.name)


def get(server, root: Path, name: str = "apple2orange", **kwargs) -> Path:
    return download(name, root=root, mirror=server.url, progress=False, timeout=10, **kwargs)


def test_download_extract_and_second_call_is_a_no_op(server, tmp_path: Path, caplog) -> None:
    server.files["/apple2orange.zip"] = archive = cyclegan_zip()
    root = tmp_path / "data"
    with caplog.at_level("INFO", logger="gantrans"):
        target = get(server, root)
    assert target == root / "apple2orange"
    assert sorted(p.name for p in target.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    assert (target / "trainA" / "1.jpg").read_bytes() == jpeg(1)
    assert leftovers(root) == []  # archive deleted, no .part, no temporary folder
    assert hashlib.sha256(archive).hexdigest() in caplog.text
    assert len(server.requests) == 1
    caplog.clear()
    with caplog.at_level("INFO", logger="gantrans"):
        assert get(server, root) == target
    assert "already in" in caplog.text and len(server.requests) == 1
    a, b = build_domains({"name": "apple2orange", "root": str(target)}, "train", 3)
    assert len(a) == len(b) == 2


def test_truncated_download_keeps_part_then_resumes(server, tmp_path: Path) -> None:
    server.files["/apple2orange.zip"] = archive = cyclegan_zip()
    server.cut["/apple2orange.zip"] = 100_000
    root = tmp_path / "data"
    with pytest.raises(DataError, match="stopped after 100000 of") as info:
        get(server, root)
    assert "run the same command again to resume" in str(info.value)
    part = root / "apple2orange.zip.part"
    assert part.stat().st_size == 100_000
    assert not (root / "apple2orange.zip").exists() and not (root / "apple2orange").exists()
    get(server, root, keep_archive=True)
    assert server.requests[-1] == ("/apple2orange.zip", "bytes=100000-")
    assert (root / "apple2orange.zip").read_bytes() == archive and not part.exists()
    assert (root / "apple2orange" / "trainB" / "0.jpg").is_file()


def test_server_without_range_support_restarts_cleanly(server, tmp_path: Path, caplog) -> None:
    server.ranges = False
    server.files["/apple2orange.zip"] = archive = cyclegan_zip()
    server.cut["/apple2orange.zip"] = 50_000
    root = tmp_path / "data"
    with pytest.raises(DataError, match="stopped after 50000"):
        get(server, root)
    with caplog.at_level("INFO", logger="gantrans"):
        get(server, root, keep_archive=True)
    assert "does not resume" in caplog.text
    assert server.requests[-1][1] == "bytes=50000-"  # asked, got the whole file (200)
    assert (root / "apple2orange.zip").read_bytes() == archive


def test_stale_part_longer_than_the_file_restarts(server, tmp_path: Path) -> None:
    server.files["/apple2orange.zip"] = archive = cyclegan_zip()
    root = tmp_path / "data"
    root.mkdir()
    (root / "apple2orange.zip.part").write_bytes(b"x" * (len(archive) + 10))  # HTTP 416
    get(server, root, keep_archive=True)
    assert (root / "apple2orange.zip").read_bytes() == archive


@pytest.mark.parametrize(
    "entries,links",
    [
        ({"apple2orange/trainA/a.jpg": b"ok", "../evil.txt": b"pwned"}, None),
        ({"apple2orange/trainA/a.jpg": b"ok", "apple2orange/../../evil.txt": b"pwned"}, None),
        ({"/tmp/evil_abs.txt": b"pwned", "apple2orange/trainA/a.jpg": b"ok"}, None),
        ({"apple2orange/trainA/a.jpg": b"ok"}, {"apple2orange/trainB/link": "/etc/passwd"}),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink"],
)
def test_unsafe_archives_are_refused_before_writing(
    server, tmp_path: Path, entries: dict, links: dict | None
) -> None:
    server.files["/apple2orange.zip"] = make_zip(entries, links)
    root = tmp_path / "deep" / "data"
    with pytest.raises(DataError, match="refusing to extract") as info:
        get(server, root)
    assert "\n" not in str(info.value)
    assert not (root / "apple2orange").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    assert not Path("/tmp/evil_abs.txt").exists()
    assert [p.name for p in root.iterdir()] == []  # the archive is deleted, nothing extracted


def test_corrupt_archives_are_refused(server, tmp_path: Path) -> None:
    root = tmp_path / "data"
    server.files["/apple2orange.zip"] = b"this is not a zip file " * 100
    with pytest.raises(DataError, match="not a valid zip archive.*deleted it"):
        get(server, root)
    assert leftovers(root) == []
    good = bytearray(make_zip({"apple2orange/trainA/a.bin": bytes(range(256)) * 400}))
    zf = zipfile.ZipFile(io.BytesIO(bytes(good)))
    offset = zf.infolist()[0].header_offset + 30 + len("apple2orange/trainA/a.bin") + 20
    good[offset] ^= 0xFF  # damage the compressed data
    server.files["/apple2orange.zip"] = bytes(good)
    with pytest.raises(
        DataError,
        match="apple2orange.zip is corrupt: entry apple2orange/trainA/a.bin fails its CRC",
    ):
        get(server, root)
    assert not (root / "apple2orange").exists() and leftovers(root) == []


def test_archive_without_the_layout(server, tmp_path: Path) -> None:
    server.files["/apple2orange.zip"] = make_zip({"something/else.txt": b"hello"})
    root = tmp_path / "data"
    with pytest.raises(DataError, match="does not hold apple2orange's layout"):
        get(server, root)
    assert not (root / "apple2orange").exists()
    assert [p.name for p in root.iterdir()] == []


def test_known_digest_is_checked(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server.files["/facades.zip"] = archive = cyclegan_zip("facades")
    source = SOURCES["facades"]
    monkeypatch.setitem(SOURCES, "facades", dl.Source(**{**source.__dict__, "sha256": "0" * 64}))
    with pytest.raises(DataError, match="has SHA-256 .*, expected 0000"):
        get(server, tmp_path / "a", "facades")
    digest = hashlib.sha256(archive).hexdigest()
    monkeypatch.setitem(SOURCES, "facades", dl.Source(**{**source.__dict__, "sha256": digest}))
    assert (get(server, tmp_path / "b", "facades") / "trainA").is_dir()
    assert all(s.sha256 is None for s in dl.SOURCES.values() if s.name != "facades")


def test_smiles_archive_becomes_the_unmodified_layout(server, tmp_path: Path) -> None:
    top = "SMILEsmileD-master/SMILEs"
    entries = {f"{top}/negatives/negatives7/{i}.jpg": jpeg(i) for i in range(6)}
    entries |= {f"{top}/positives/positives7/{i}.jpg": jpeg(10 + i) for i in range(3)}
    entries |= {"SMILEsmileD-master/README": b"SMILEsmileD", f"{top}/negatives/x.idx": b"1"}
    server.files["/SMILEsmileD.zip"] = make_zip(entries)
    root = tmp_path / "data"
    target = get(server, root, "SMILEsmileD")  # the alias of "smiles"
    assert target == root / "SMILEsmileD" and (target / "README").is_file()
    a, b = build_domains({"name": "smiles", "root": str(target)}, "train", 1)
    assert len(a) + len(b) > 0 and a.load(0).shape == (1, 64, 64)


def test_existing_incomplete_folder_and_force(server, tmp_path: Path) -> None:
    server.files["/apple2orange.zip"] = cyclegan_zip()
    root = tmp_path / "data"
    (root / "apple2orange" / "trainA").mkdir(parents=True)
    (root / "apple2orange" / "mine.txt").write_text("keep me?")
    with pytest.raises(DataError, match="exists but is not a complete apple2orange.*force=true"):
        get(server, root)
    assert server.requests == []
    get(server, root, force=True)
    assert (root / "apple2orange" / "trainB" / "0.jpg").is_file()
    assert not (root / "apple2orange" / "mine.txt").exists() and leftovers(root) == []


def test_env_mirror_url_option_and_errors(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files["/apple2orange.zip"] = cyclegan_zip()
    server.files["/custom/a.zip"] = cyclegan_zip("horse2zebra")
    monkeypatch.setenv("GANTRANS_DOWNLOAD_URL", server.url + "/")
    assert (download("apple2orange", root=tmp_path / "a", progress=False) / "trainA").is_dir()
    url = server.url + "/custom/a.zip"
    assert (download("horse2zebra", root=tmp_path / "b", url=url, progress=False)).is_dir()
    with pytest.raises(DataError, match=r"cannot download maps from .*/maps.zip: HTTP 404"):
        download("maps", root=tmp_path / "c", progress=False)
    with pytest.raises(DataError, match="not a dataset gantrans can fetch: choose one of"):
        download("apples", root=tmp_path)
    with pytest.raises(DataError, match="name is required"):
        download(None, root=tmp_path)
    with pytest.raises(DataError, match="CelebA cannot be downloaded automatically.*CelebA.html"):
        download("celeba", root=tmp_path)


def test_hand_placed_archive_needs_no_network(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "apple2orange.zip").write_bytes(cyclegan_zip())
    target = download("apple2orange", root=root, mirror="http://127.0.0.1:9", progress=False)
    assert (target / "trainA" / "0.jpg").is_file() and leftovers(root) == []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_end_to_end(gantrans, server, tmp_path: Path) -> None:
    server.files["/apple2orange.zip"] = cyclegan_zip()
    root = tmp_path / "data"
    args = (
        "download",
        "name=apple2orange",
        f"root={root}",
        f"mirror={server.url}",
        "progress=false",
    )
    code, out, err = gantrans(*args)
    assert code == 0, err
    assert "apple2orange is ready in" in out and (root / "apple2orange" / "testA").is_dir()
    code, out, _ = gantrans(*args)
    assert code == 0 and "already in" in out and len(server.requests) == 1
    code, out, _ = gantrans("download", "name=list", f"root={root}")
    assert code == 0 and "in place" in out


def test_cli_unreachable_server_is_one_line(gantrans, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code, out, err = gantrans(
        "download", "name=horse2zebra", f"root={tmp_path}", f"mirror={url}", "timeout=5"
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(
        f"gantrans download: error: cannot download horse2zebra from {url}/horse2zebra.zip: "
    )
    assert lines[0].endswith(
        f"check your connection or download it by hand to {tmp_path}/horse2zebra.zip"
    )
    assert not list(tmp_path.iterdir())


def test_cli_missing_name_and_celeba(gantrans, tmp_path: Path) -> None:
    code, _, err = gantrans("download", f"root={tmp_path}")
    assert code == 2 and "name is required" in err and "apple2orange" in err
    code, _, err = gantrans("download", "name=celeba", f"root={tmp_path}")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "Align&Cropped Images" in err and f"{tmp_path}/celeba/img_align_celeba" in err


def test_bare_name_form_is_accepted(gantrans, tmp_path):
    code, out, err = gantrans("download", "celeba", f"root={tmp_path}")
    assert code == 2 and "CelebA" in err and len(err.strip().splitlines()) == 1


def pix2pix_tar(name: str = "facades") -> bytes:
    """A pix2pix-style archive: NAME/train, NAME/val, NAME/test of side-by-side A|B images."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for split in ("train", "val", "test"):
            for i in range(2):
                img = Image.fromarray(
                    np.random.default_rng(i).integers(0, 256, (16, 32, 3), dtype=np.uint8)
                )
                out = io.BytesIO()
                img.save(out, "PNG")
                info = tarfile.TarInfo(f"{name}/{split}/{i}.png")
                info.size = len(out.getvalue())
                tf.addfile(info, io.BytesIO(out.getvalue()))
    return buf.getvalue()


def test_pix2pix_sets_download_as_tar_gz_and_read_as_aligned_pairs(gantrans, server, tmp_path):
    from gantrans.data import build_pairs

    names = {f"pix2pix_{n}" for n in ("facades", "cityscapes", "maps", "edges2shoes",
                                      "edges2handbags", "night2day")}  # fmt: skip
    assert names <= set(SOURCES)
    assert SOURCES["pix2pix_facades"].url == (
        "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz"
    )
    server.files["/pix2pix_facades.tar.gz"] = pix2pix_tar()
    root = tmp_path / "data"
    code, out, err = gantrans("download", "pix2pix_facades", f"root={root}",
                              f"mirror={server.url}", "progress=false")  # fmt: skip
    assert code == 0, err
    target = root / "pix2pix_facades"
    assert sorted(p.name for p in target.iterdir()) == ["test", "train", "val"]
    assert not [p for p in root.iterdir() if p.name != "pix2pix_facades"]  # archive removed
    pairs = build_pairs({"name": "aligned", "root": str(target), "load_size": 16,
                         "crop_size": 16}, "train", 3)  # fmt: skip
    a, b = pairs.load_pair(0)
    assert a.shape == b.shape == (3, 16, 16)


def test_pix2pix_tar_with_a_link_or_a_corrupt_body_is_refused(server, tmp_path: Path) -> None:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("facades/train/evil.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    server.files["/pix2pix_facades.tar.gz"] = buf.getvalue()
    with pytest.raises(DataError, match="link or special file"):
        get(server, tmp_path / "data", "pix2pix_facades")
    good = pix2pix_tar()
    server.files["/pix2pix_facades.tar.gz"] = good[: len(good) // 2]
    with pytest.raises(DataError, match="not a valid tar.gz archive"):
        get(server, tmp_path / "data2", "pix2pix_facades")
    assert not (tmp_path / "data2" / "pix2pix_facades").exists()


def test_a_root_that_cannot_be_created_is_one_line_before_any_transfer(gantrans, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    line = one_line_error(gantrans("download", "smiles", f"root={blocker / 'data'}"))
    assert "cannot create root=" in line and "choose a folder you can write to" in line
