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


def _request(url: str, path: str, data: bytes | None = None, **headers: str):
    req = urllib.request.Request(f"{url}{path}", data=data, headers=headers,
                                 method="POST" if data is not None else "GET")  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_other_origins_and_other_host_names_are_refused(server, tmp_path):
    url, _, _ = server
    port = url.rsplit(":", 1)[1]
    data = write_image(tmp_path / "in.png", (16, 16)).read_bytes()
    # a page elsewhere posting a "simple" (no preflight) request
    status, body = _request(url, "/api/translate", data, Origin="http://evil.example",
                            **{"Content-Type": "text/plain"})  # fmt: skip
    assert status == 403 and "http://evil.example are refused" in json.loads(body)["error"]
    assert _request(url, "/api/translate", data, Origin="null")[0] == 403
    # the page's own requests carry its own origin
    assert _request(url, "/api/translate", data, Origin=url)[0] == 200
    # DNS rebinding: another name that resolves to this machine
    status, body = _request(url, "/api/models", Host=f"evil.example:{port}")
    assert status == 403 and "is not this server" in json.loads(body)["error"]
    assert _request(url, "/api/models", Host=f"127.0.0.1:{int(port) + 1}")[0] == 403
    for own in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert _request(url, "/api/models", Host=own)[0] == 200


def _call_guard(guard, path: str, headers: dict[str, str]) -> tuple[int, dict]:
    import asyncio

    sent: list[dict] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    path, _, query = path.partition("?")
    scope = {"type": "http", "path": path, "query_string": query.encode(),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    guard.app = app
    asyncio.run(guard(scope, receive, send))
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def test_a_token_guards_a_server_on_another_interface():
    from gantrans.applying.guard import Guard, resolve_token

    assert resolve_token("auto", "127.0.0.1") is None and resolve_token("off", "0.0.0.0") is None
    token = resolve_token("auto", "0.0.0.0")
    assert token and len(token) >= 24 and token != resolve_token("auto", "0.0.0.0")
    guard = Guard(None, "0.0.0.0", 7860, token)
    host = {"Host": "192.168.1.20:7860"}
    assert _call_guard(guard, "/", host)[0] == 403
    assert _call_guard(guard, "/?token=wrong", host)[0] == 403
    status, headers = _call_guard(guard, f"/?token={token}", host)
    assert status == 200 and f"gantrans_token_7860={token}" in headers["set-cookie"]
    assert "SameSite=Strict" in headers["set-cookie"]
    # the page's own later requests carry the cookie; a script may send the header instead
    cookie = {"Cookie": f"gantrans_token_7860={token}"}
    assert _call_guard(guard, "/api/models", {**host, **cookie})[0] == 200
    auth = {"Authorization": f"token {token}"}
    assert _call_guard(guard, "/api/models", {**host, **auth})[0] == 200
    # on another interface an address or this machine's name is fine, another name is not
    assert _call_guard(guard, "/api/models", {"Host": "evil.example:7860", **auth})[0] == 403
    assert (
        _call_guard(guard, "/api/models", {"Host": f"{socket.gethostname()}:7860", **auth})[0]
        == 200
    )
    loopback = Guard(None, "127.0.0.1", 7860, None, allowed_hosts=["box.lan"])
    assert _call_guard(loopback, "/", {"Host": "192.168.1.20:7860"})[0] == 403
    assert _call_guard(loopback, "/", {"Host": "[::1]:7860"})[0] == 200
    assert _call_guard(loopback, "/", {"Host": "box.lan:7860"})[0] == 200


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (the pixel data does not matter here)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_an_image_over_pillows_own_limit_gets_the_size_message(server):
    url, _, _ = server
    status, body, _ = _post(url, _png_header(20_000, 10_000), name="huge.png")
    assert status == 415
    assert json.loads(body)["error"].startswith("huge.png has 200 MP, more than this page's limit")


def _peak_rise_mb(pid: int, before_kb: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return (hwm - before_kb) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_concurrent_large_uploads_stay_within_the_memory_budget(tmp_path):
    """8 uploads at once of small PNGs that decode near the pixel limit: they are decoded,
    translated and encoded one at a time, and the server's peak memory rises by less than
    memory_gb."""
    import io
    import threading

    from gantrans.applying.serve import pixel_limit

    memory_gb = 1 / 16
    side = int(pixel_limit(memory_gb) ** 0.5 * 0.95)
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (120, 30, 200)).save(buf, "PNG")
    data = buf.getvalue()
    assert len(data) < 50_000  # compression bombs in miniature, as an attacker would send
    ckpt = make_checkpoint(tmp_path / "c.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "gantrans", "serve", f"ckpt={ckpt}", "port=0", "device=cpu",
           f"memory_gb={memory_gb}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        url = None
        for _ in range(200):  # bounded: the start-up log is a few lines
            line = proc.stdout.readline()
            if not line:
                break
            if "serving on http://" in line:
                url = line.split("serving on ", 1)[1].split()[0]
                break
        assert url is not None, "the server did not start"
        with open(f"/proc/{proc.pid}/status") as f:
            before = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        statuses: list[int] = []
        threads = [
            threading.Thread(target=lambda: statuses.append(_post(url, data, name="x.png")[0]))
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        rise = _peak_rise_mb(proc.pid, before)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert statuses == [200] * 8
    assert rise < memory_gb * 1024, f"peak rose by {rise:.0f} MB, over {memory_gb * 1024:.0f} MB"


def test_uploads_past_the_waiting_limit_are_asked_to_retry(server):
    import socket
    from urllib.parse import urlparse

    from gantrans.applying.serve import MAX_WAITING

    url, _, _ = server
    where = urlparse(url)
    held = []
    try:
        for _ in range(MAX_WAITING + 1):  # one translating, MAX_WAITING waiting: all unfinished
            s = socket.create_connection((where.hostname, where.port), timeout=30)
            s.sendall(
                f"POST /api/translate?name=slow.png HTTP/1.1\r\nHost: {where.netloc}\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n".encode()
                + b"\x89PNG"
            )
            held.append(s)
        time.sleep(1.0)  # let the server take them in
        status, body, _ = _post(url, b"\x89PNG" + bytes(100), name="one_more.png")
        assert status == 503 and b"busy" in body
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 30  # the held uploads end as interrupted; the server recovers
    while time.monotonic() < deadline:
        status, _, _ = _post(url, b"not an image", name="after.png")
        if status != 503:
            break
        time.sleep(0.2)
    assert status == 415  # an ordinary answer again: not an image
