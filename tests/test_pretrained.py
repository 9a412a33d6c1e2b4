"""`ckpt=pretrained:NAME`: downloaded once from a (local, test) server into the cache, then reused."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from gantrans.applying import pretrained
from gantrans.applying.loader import load_generator

from .conftest import one_line_error, write_image
from .test_reference import arch_of, reference_net

ARCH = arch_of("resnet", n_blocks=1)


class Server(ThreadingHTTPServer):
    """Serves `files` by name; counts requests; can cut every response in half."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.truncate = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/cyclegan/pretrained_models"


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:  # noqa: N802 -- the http.server API
        self.server.requests.append(self.path)
        data = self.server.files.get(self.path.rsplit("/", 1)[-1])
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if self.server.truncate else data)

    def log_message(self, *args) -> None:  # keep stderr for the CLI's own messages
        pass


def reference_bytes(seed: int = 0) -> tuple[torch.nn.Module, bytes]:
    net, state = reference_net(ARCH, seed)
    buf = io.BytesIO()
    torch.save(state, buf)
    return net, buf.getvalue()


@pytest.fixture
def server(monkeypatch, tmp_path) -> Iterator[Server]:
    """A local server holding apple2orange and horse2zebra; the cache in tmp_path/cache."""
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv(pretrained.URL_ENV, srv.url)
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Should a test forget the server, it gets a refused connection rather than the internet."""
    monkeypatch.setenv(pretrained.URL_ENV, f"http://127.0.0.1:{closed_port()}/models")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_downloads_once_then_uses_the_cache(gantrans, server, tmp_path):
    net, data = reference_bytes()
    server.files["apple2orange.pth"] = data
    write_image(tmp_path / "in" / "a.png", (20, 12), "RGB")
    args = ("translate", "ckpt=pretrained:apple2orange", f"input_dir={tmp_path / 'in'}")
    code, out, err = gantrans(*args, f"output_dir={tmp_path / 'o1'}", "progress=false")
    assert code == 0, err
    assert "downloading pretrained model apple2orange" in out
    assert "reference checkpoint: ResNet generator, 1 blocks, ngf 4" in out
    cached = tmp_path / "cache" / "pretrained" / "apple2orange.pth"
    assert cached.read_bytes() == data
    assert sorted(p.name for p in cached.parent.iterdir()) == ["apple2orange.pth"]  # no .part
    assert len(server.requests) == 1
    assert server.requests[0] == "/cyclegan/pretrained_models/apple2orange.pth"

    code, out, err = gantrans(*args, f"output_dir={tmp_path / 'o2'}", "progress=false")
    assert code == 0, err
    assert "downloading" not in out
    assert len(server.requests) == 1  # the second use did not download again
    assert (tmp_path / "o1" / "a.png").read_bytes() == (tmp_path / "o2" / "a.png").read_bytes()

    loaded, _ = load_generator("pretrained:apple2orange", "AtoB", torch.device("cpu"))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=1e-6)


def test_progress_bar_while_downloading(server, capsys):
    server.files["style_monet.pth"] = reference_bytes()[1]
    pretrained.fetch("style_monet", progress=True)
    err = capsys.readouterr().err
    assert "style_monet" in err and "100%" in err


def test_btoa_on_a_pretrained_model_points_to_the_other_direction(gantrans, server, tmp_path):
    server.files["horse2zebra.pth"] = reference_bytes()[1]
    write_image(tmp_path / "in" / "a.png", (16, 16), "RGB")
    code, out, err = gantrans(
        "translate",
        "ckpt=pretrained:horse2zebra",
        f"input_dir={tmp_path / 'in'}",
        f"output_dir={tmp_path / 'out'}",
        "direction=BtoA",
        "progress=false",
    )
    assert code == 0, err
    assert "used as is (for the other direction use ckpt=pretrained:zebra2horse)" in out


def test_unknown_name_lists_the_known_ones(gantrans, tmp_path):
    write_image(tmp_path / "a.png", (16, 16))  # an input to translate: it is checked first
    line = one_line_error(
        gantrans(
            "translate",
            "ckpt=pretrained:cat2dog",
            f"input_dir={tmp_path}",
            f"output_dir={tmp_path / 'out'}",
        )
    )
    assert "unknown pretrained model 'cat2dog'" in line
    for name in ("apple2orange", "horse2zebra", "style_vangogh", "iphone2dslr_flower"):
        assert name in line


@pytest.mark.parametrize("failure", ["refused", "404", "truncated"])
def test_failed_download_is_one_line_and_leaves_no_file(
    gantrans, server, monkeypatch, tmp_path, failure
):
    if failure == "refused":
        monkeypatch.setenv(pretrained.URL_ENV, f"http://127.0.0.1:{closed_port()}/models")
    elif failure == "truncated":
        server.files["zebra2horse.pth"] = reference_bytes()[1]
        server.truncate = True
    write_image(tmp_path / "in" / "a.png", (16, 16), "RGB")
    line = one_line_error(
        gantrans(
            "translate",
            "ckpt=pretrained:zebra2horse",
            f"input_dir={tmp_path / 'in'}",
            f"output_dir={tmp_path / 'out'}",
            "progress=false",
        )
    )
    cached = tmp_path / "cache" / "pretrained" / "zebra2horse.pth"
    assert "cannot download pretrained model zebra2horse" in line
    assert f"download {pretrained.model_url('zebra2horse')} by hand and save it as {cached}" in line
    assert {"refused": "refused", "404": "HTTP 404", "truncated": "before the end"}[failure] in line
    assert not cached.exists() and not cached.with_name("zebra2horse.pth.part").exists()


def test_a_file_placed_by_hand_is_used_without_network(gantrans, tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "monet2photo.pth").write_bytes(reference_bytes()[1])
    write_image(tmp_path / "in" / "a.png", (16, 16), "RGB")
    code, out, err = gantrans(
        "translate",
        "ckpt=pretrained:monet2photo",
        f"input_dir={tmp_path / 'in'}",
        f"output_dir={tmp_path / 'out'}",
    )
    assert code == 0, err


def test_cache_and_url_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv(pretrained.CACHE_ENV, raising=False)
    monkeypatch.delenv(pretrained.URL_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert pretrained.cache_dir() == tmp_path / ".cache" / "gantrans" / "pretrained"
    assert (
        pretrained.model_url("horse2zebra")
        == "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/horse2zebra.pth"
    )
    assert pretrained.reverse_of("winter2summer_yosemite") == "summer2winter_yosemite"
    assert pretrained.reverse_of("style_ukiyoe") is None


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_export_of_a_pretrained_model(gantrans, server, tmp_path, monkeypatch):
    net, data = reference_bytes()
    server.files["orange2apple.pth"] = data
    monkeypatch.chdir(tmp_path)
    code, out, err = gantrans(
        "export", "ckpt=pretrained:orange2apple", "format=torchscript", "progress=false"
    )
    assert code == 0, err
    module = torch.jit.load(str(tmp_path / "orange2apple_AtoB.pt"))
    assert (tmp_path / "orange2apple_AtoB.pt.json").is_file()
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x), rtol=0, atol=1e-4)
    assert Path(tmp_path / "cache" / "pretrained" / "orange2apple.pth").is_file()


def test_pix2pix_generators_by_name_with_their_method_and_urls(gantrans, server, tmp_path):
    """A published pix2pix generator (U-Net 256, batch norm) by name: fetched as NAME.pth from a
    mirror, from the authors' pix2pix folder (without our prefix) by default."""
    unet, state = reference_net(arch_of("unet", num_downs=8, norm="batch"))
    buf = io.BytesIO()
    torch.save(state, buf)
    server.files["pix2pix_edges2shoes.pth"] = buf.getvalue()
    write_image(tmp_path / "in" / "a.png", (256, 256), "RGB")
    code, out, err = gantrans("translate", "ckpt=pretrained:pix2pix_edges2shoes",
                              f"input_dir={tmp_path / 'in'}", f"output_dir={tmp_path / 'out'}",
                              "progress=false")  # fmt: skip
    assert code == 0, err
    assert "U-Net generator, 8 downsamplings" in out and "batch norm" in out
    assert server.requests == ["/cyclegan/pretrained_models/pix2pix_edges2shoes.pth"]
    for name in ("facades_label2photo", "sat2map", "map2sat", "edges2shoes", "day2night"):
        assert pretrained.method_of(f"pix2pix_{name}") == "pix2pix"
    assert pretrained.method_of("sat2map") == "cyclegan"  # the CycleGAN one keeps its name
    assert pretrained.reverse_of("pix2pix_sat2map") == "pix2pix_map2sat"


def test_pix2pix_default_url_and_the_name_list_says_the_method(gantrans, monkeypatch, tmp_path):
    monkeypatch.delenv(pretrained.URL_ENV, raising=False)
    assert (
        pretrained.model_url("pix2pix_day2night")
        == "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/day2night.pth"
    )
    write_image(tmp_path / "a.png", (16, 16))  # an input to translate: it is checked first
    line = one_line_error(gantrans("translate", "ckpt=pretrained:cat2dog",
                                   f"input_dir={tmp_path}"))  # fmt: skip
    assert "cyclegan: apple2orange" in line and "pix2pix: pix2pix_facades_label2photo" in line
    assert "pix2pix_day2night" in line
