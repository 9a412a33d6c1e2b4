"""`gantrans serve`: the page in a real browser, the upload limits, and where it writes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from PIL import Image

from gantrans.models import build_generator

from .conftest import make_checkpoint, one_line_error, write_image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LIMIT_MB = 0.05  # the test server refuses uploads above 50 KiB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """`gantrans serve` on a free port with a two-direction checkpoint and a one-generator file,
    run in an empty folder with its own TMPDIR; yields (url, cwd, tmpdir)."""
    root = tmp_path_factory.mktemp("serve")
    two = make_checkpoint(root / "two.pt")
    one = root / "one.pt"
    arch = {"name": "resnet", "in_channels": 3, "out_channels": 3, "ngf": 4,
            "norm": "instance", "dropout": False, "n_blocks": 1}  # fmt: skip
    torch.save(build_generator(arch).state_dict(), one)  # a reference-style generator file
    cwd, tmpdir = root / "cwd", root / "tmp"
    cwd.mkdir()
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "gantrans", "serve", f"ckpt=[{two},{one}]", "port=0",
           f"max_upload_mb={LIMIT_MB}", "device=cpu"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    url, seen = None, []
    deadline = time.monotonic() + 120
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if "serving on http://" in line:
            url = line.split("serving on ", 1)[1].split()[0]
    if url is None:
        proc.kill()
        pytest.fail("the server did not start: " + "".join(seen))
    yield url, cwd, tmpdir
    proc.terminate()
    proc.wait(timeout=30)


def _post(url: str, data: bytes, **params: str) -> tuple[int, bytes, dict]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    req = urllib.request.Request(f"{url}/api/translate?{query}", data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, res.read(), dict(res.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_models_and_their_directions(server):
    url, _, _ = server
    with urllib.request.urlopen(f"{url}/api/models", timeout=30) as res:
        info = json.load(res)
    assert [m["name"] for m in info["models"]] == ["two.pt", "one.pt"]
    assert [m["directions"] for m in info["models"]] == [["AtoB", "BtoA"], ["AtoB"]]
    assert info["max_upload_mb"] == LIMIT_MB


def test_translate_returns_an_image_of_the_same_size_and_writes_nowhere_else(server, tmp_path):
    url, cwd, tmpdir = server
    data = write_image(tmp_path / "in.png", (37, 21)).read_bytes()
    outputs = {}
    for direction in ("AtoB", "BtoA"):
        status, body, headers = _post(url, data, model="0", direction=direction, name="in.png")
        assert status == 200 and headers["content-type"] == "image/png", body[:200]
        path = tmp_path / f"{direction}.png"
        path.write_bytes(body)
        with Image.open(path) as img:
            assert img.size == (37, 21)
        outputs[direction] = body
    assert outputs["AtoB"] != outputs["BtoA"]  # two generators
    status, body, _ = _post(url, data, model="1", direction="BtoA", name="in.png")
    assert status == 400 and "has no direction BtoA" in json.loads(body)["error"]
    assert list(cwd.iterdir()) == []  # nothing written where it runs
    # only its own temporary folder (beside torch's compile cache), emptied after each upload
    (work,) = (p for p in tmpdir.iterdir() if not p.name.startswith("torchinductor"))
    assert work.name.startswith("gantrans-serve-") and list(work.iterdir()) == []


def test_refuses_non_images_and_uploads_over_the_limit(server):
    url, _, _ = server
    status, body, _ = _post(url, b"plain text, not an image", name="notes.txt")
    assert status == 415
    assert json.loads(body)["error"] == (
        "notes.txt is not an image this page can read (PNG, JPEG, BMP, WebP, TIFF)"
    )
    status, body, _ = _post(url, b"\0" * int(LIMIT_MB * 2**20 + 1), name="big.png")
    assert status == 413
    assert json.loads(body)["error"] == "big.png is larger than the upload limit of 0.05 MB"


def test_port_in_use_is_one_line(gantrans, tiny_ckpt):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = one_line_error(gantrans("serve", f"ckpt={tiny_ckpt}", f"port={port}"))
    assert line == (
        f"gantrans serve: error: port {port} on 127.0.0.1 is already in use: stop what uses it "
        "or pass port=N (port=0 picks a free one)"
    )


def _browser():
    """A headless Chromium driven by Playwright, or a skip saying what is missing."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    return playwright.sync_playwright()


def test_the_page_translates_an_upload_in_a_real_browser(server, tmp_path):
    url, _, _ = server
    image = write_image(tmp_path / "photo.png", (48, 36))
    (tmp_path / "notes.txt").write_text("not an image")
    big = tmp_path / "huge.png"
    big.write_bytes(b"\0" * int(LIMIT_MB * 2**20 * 2))
    with _browser() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=CHROMIUM_FLAGS,
        )
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("#model option", state="attached")
            assert page.locator("#model option").all_inner_texts() == ["two.pt", "one.pt"]
            page.select_option("#direction", "BtoA")
            page.set_input_files("#files", str(image))
            page.wait_for_selector("img.output", timeout=60_000)
            size = page.eval_on_selector(
                "img.output", "i => i.decode().then(() => [i.naturalWidth, i.naturalHeight])"
            )
            assert size == [48, 36]
            link = page.locator("a.download")
            assert link.get_attribute("download") == "photo_BtoA.png"
            assert page.locator("section.row .info").first.inner_text() == "48x36, 8-bit"

            page.set_input_files("#files", str(tmp_path / "notes.txt"))
            page.wait_for_selector(".error")
            assert "notes.txt is not an image" in page.locator(".error").first.inner_text()
            page.set_input_files("#files", str(big))
            page.wait_for_function("document.querySelectorAll('.error').length == 2")
            assert "larger than the upload limit" in page.locator(".error").first.inner_text()

            page.select_option("#model", "1")  # one generator: no direction to choose
            assert page.locator("#direction").is_disabled()
        finally:
            browser.close()
