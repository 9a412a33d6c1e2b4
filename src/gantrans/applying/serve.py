"""`gantrans serve`: a local web page that applies one or more checkpoints to uploaded images."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import ipaddress
import logging
import re
import socket
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from PIL import Image

from gantrans.applying.guard import Guard, resolve_token
from gantrans.applying.loader import load_generator
from gantrans.applying.translator import ApplyOptions, Translator
from gantrans.config import to_plain
from gantrans.data.imageio import DataError
from gantrans.data.pixels import from_unit, output_depth, output_range, read_picture, save_picture
from gantrans.errors import CheckpointError, ConfigError, GantransError
from gantrans.runtime import check_precision, resolve_device, resolve_precision

log = logging.getLogger("gantrans")

NOT_AN_IMAGE = "is not an image this page can read (PNG, JPEG, BMP, WebP, TIFF)"
INSTALL = 'gantrans serve needs Starlette and uvicorn: pip install "gantrans[serve]"'
IMAGE_BYTES_PER_PIXEL = 48  # decoded input, output, the PNG encoder's copies and the tiles' buffers
NETWORK_OVERHEAD = (
    4  # a pass on the CPU takes up to 4x the activations gantrans.applying.tiling counts
)
MAX_WAITING = 8  # uploads held in memory while one is translated; more are asked to retry


@dataclass
class Model:
    """One checkpoint offered by the page, with a translator per direction."""

    id: str
    name: str
    translators: dict[str, Translator]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def load_models(
    ckpts: list[str], device: torch.device, precision: str, options: ApplyOptions
) -> list[Model]:
    """Load every checkpoint with each direction it really holds.

    A file with one generator (a reference or pretrained file, a one-direction method) offers
    AtoB only: BtoA counts only when it loads and differs from AtoB.
    """
    models = []
    for i, ckpt in enumerate(ckpts):
        net, arch = load_generator(ckpt, "AtoB", device)
        translators = {"AtoB": Translator(net, arch, device, precision, options)}
        try:
            logging.disable(logging.WARNING)  # "holds a single generator" is expected here
            other, other_arch = load_generator(ckpt, "BtoA", device)
        except (CheckpointError, KeyError):
            other = None
        finally:
            logging.disable(logging.NOTSET)
        if other is not None and not _same_weights(net, other):
            translators["BtoA"] = Translator(other, other_arch, device, precision, options)
        models.append(Model(str(i), _label(ckpt, ckpts), translators))
    for model in models:
        for translator in model.translators.values():
            warm_up(translator)
    return models


def warm_up(translator: Translator) -> None:
    """Run one small image through `translator`: the compute libraries set up their threads and
    kernels now, as part of the server's own footprint, rather than within the first upload's
    memory budget (and a network that cannot run fails at start)."""
    side = max(64, translator.multiple)
    source = torch.zeros(translator.in_channels, side, side)
    out = torch.empty(translator.out_channels, side, side)
    translator.translate(source, lambda crop: crop, out, lambda unit: unit)


def _label(ckpt: str, ckpts: list[str]) -> str:
    """A short name for the menu: the file name, with its folder where two files share it."""
    if ckpt.startswith("pretrained:"):
        return ckpt.split(":", 1)[1]
    path = Path(ckpt)
    if sum(Path(c).name == path.name for c in ckpts) > 1:
        return f"{path.parent.name}/{path.name}"
    return path.name


class TranslateService:
    """Decodes an upload in a private temporary folder, translates it, returns PNG bytes.

    Args:
        models: The checkpoints on offer.
        workdir: The only folder written to (one file per upload, removed after use).
        max_upload_bytes: Larger uploads are refused.
        max_pixels: Larger images (after decoding) are refused.
    """

    def __init__(self, models: list[Model], workdir: Path, max_upload_bytes: int, max_pixels: int):
        self.models = {m.id: m for m in models}
        self.workdir = workdir
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels
        self.lock = threading.Lock()  # one translation at a time bounds memory

    def describe(self) -> dict[str, Any]:
        return {
            "models": [
                {"id": m.id, "name": m.name, "directions": list(m.translators)}
                for m in self.models.values()
            ],
            "max_upload_mb": round(self.max_upload_bytes / 2**20, 2),
        }

    def translate(self, data: bytes, model_id: str, direction: str) -> tuple[bytes, str]:
        """(PNG bytes, a short description) for an uploaded image file.

        Raises:
            DataError: The upload is not an image, or too large once decoded.
            ConfigError: Unknown model or direction.
        """
        model = self.models.get(model_id)
        if model is None:
            raise ConfigError(f"there is no model {model_id!r}")
        translator = model.translators.get(direction)
        if translator is None:
            raise ConfigError(
                f"{model.name} has no direction {direction}: use {', '.join(model.translators)}"
            )
        path = self.workdir / f"{uuid.uuid4().hex}.upload"
        out_path = self.workdir / f"{uuid.uuid4().hex}.png"
        try:
            path.write_bytes(data)
            with self.lock:  # decoding, translating and encoding: one upload at a time
                try:
                    return self._translate_file(path, out_path, translator)
                finally:
                    release_freed_memory()
        finally:
            path.unlink(missing_ok=True)
            out_path.unlink(missing_ok=True)

    def _too_large(self, pixels: int) -> DataError:
        return DataError(
            f"has {pixels / 1e6:.0f} MP, more than this page's limit of "
            f"{self.max_pixels / 1e6:.0f} MP"
        )

    def _translate_file(self, path: Path, out_path: Path, translator: Translator):
        try:
            with Image.open(path) as img:
                pixels = img.size[0] * img.size[1]
        except Image.DecompressionBombError as exc:  # over Pillow's own limit: still a size
            found = re.search(r"\((\d+) pixels\)", str(exc))
            raise self._too_large(int(found.group(1)) if found else self.max_pixels + 1) from None
        except Exception as exc:  # PIL raises many types on non-images
            raise DataError(NOT_AN_IMAGE) from exc
        if pixels > self.max_pixels:
            raise self._too_large(pixels)
        try:
            picture = read_picture(path, translator.in_channels)
        except Exception as exc:  # a header that decodes, then data that does not
            raise DataError(NOT_AN_IMAGE) from exc
        h, w = picture.size
        depth = output_depth("same", picture, translator.out_channels)
        lo, hi = output_range(picture, depth)
        sample = from_unit(torch.zeros(1, 1, 1), depth, lo, hi)
        out = torch.empty((translator.out_channels, h, w), dtype=sample.dtype)
        translator.translate(
            picture.pixels,
            lambda crop: picture.to_unit(crop, translator.in_channels),
            out,
            lambda unit: from_unit(unit, depth, lo, hi),
        )
        save_picture(out, depth, picture.alpha, out_path)
        return out_path.read_bytes(), f"{w}x{h}, {depth}-bit"


def release_freed_memory() -> None:
    """Hand the heap's freed pages back to the system (glibc's malloc_trim), so uploads of
    different sizes do not ratchet the server's footprint up; a no-op elsewhere."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def build_app(service: TranslateService):
    """The Starlette app: the page, the list of models, and the translate endpoint."""
    try:
        from starlette.applications import Starlette
        from starlette.requests import ClientDisconnect
        from starlette.responses import HTMLResponse, JSONResponse, Response
        from starlette.routing import Route
    except ImportError:
        raise GantransError(INSTALL) from None

    page = (
        resources.files("gantrans.applying").joinpath("web/index.html").read_text(encoding="utf-8")
    )

    async def index(request):
        return HTMLResponse(page)

    async def models(request):
        return JSONResponse(service.describe())

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    # every translation on one thread: its buffers reuse one allocator arena instead of each
    # pool thread keeping its own high-water mark
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gantrans-translate")
    waiting = {"uploads": 0}  # requests past the guard whose body is held in memory

    async def translate(request):
        if waiting["uploads"] >= MAX_WAITING + 1:
            return error(503, "the server is busy with other uploads: try again in a moment")
        waiting["uploads"] += 1
        try:
            return await receive_and_translate(request)
        finally:
            waiting["uploads"] -= 1

    async def receive_and_translate(request):
        name = request.query_params.get("name", "upload")[:200]
        limit = service.max_upload_bytes
        mb = f"{limit / 2**20:.3g} MB"
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error(413, f"{name} is larger than the upload limit of {mb}")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return error(413, f"{name} is larger than the upload limit of {mb}")
                chunks.append(chunk)
        except ClientDisconnect:
            return error(400, "the upload was interrupted")
        if size == 0:
            return error(400, f"{name} is empty")
        model_id = request.query_params.get("model", "0")
        direction = request.query_params.get("direction", "AtoB")
        try:
            loop = asyncio.get_running_loop()
            png, info = await loop.run_in_executor(
                worker, service.translate, b"".join(chunks), model_id, direction
            )
        except DataError as exc:
            return error(415, f"{name} {exc}")
        except ConfigError as exc:
            return error(400, str(exc))
        return Response(png, media_type="image/png", headers={"X-Gantrans-Info": info})

    routes = [
        Route("/", index),
        Route("/api/models", models),
        Route("/api/translate", translate, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port); ConfigError if it is taken."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name such as localhost
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise ConfigError(
                f"port {port} on {host} is already in use: stop what uses it or pass port=N "
                "(port=0 picks a free one)"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(64)
    return sock


def pixel_limit(memory_gb: float) -> int:
    """The default `max_pixels`: what half of the memory budget holds (the other half is the
    network's, its passes tiled to fit)."""
    return int(memory_gb / 2 * 2**30 / IMAGE_BYTES_PER_PIXEL)


def serve(
    *,
    ckpt: str | list[str],
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str = "auto",
    precision: str = "fp32",
    tile: str = "auto",
    overlap: int = 64,
    max_upload_mb: float = 25.0,
    max_pixels: int | None = None,
    memory_gb: float = 2.0,
    token: str | None = "auto",
    allowed_hosts: list[str] | None = None,
) -> None:
    """Load the checkpoints and serve the page until interrupted (Ctrl-C).

    One upload is decoded, translated and encoded at a time within `memory_gb`: half for the
    network's passes (tiled to fit), half for the image's buffers, which sets the default
    `max_pixels`.
    """
    try:
        import uvicorn
    except ImportError:
        raise GantransError(INSTALL) from None
    ckpts = [ckpt] if isinstance(ckpt, str) else [str(c) for c in ckpt]
    if not ckpts:
        raise ConfigError("ckpt is empty: pass ckpt=PATH or ckpt=[a.pt,b.pt]")
    if memory_gb <= 0:
        raise ConfigError(f"memory_gb={memory_gb} must be positive (GiB for one translation)")
    if max_pixels is None:
        max_pixels = pixel_limit(memory_gb)
    if max_upload_mb <= 0 or max_pixels <= 0:
        raise ConfigError("max_upload_mb and max_pixels must be positive")
    if not 0 <= port <= 65535:
        raise ConfigError(f"port={port} is not a port: use 1-65535 (or 0 for any free port)")
    secret = resolve_token(token, host)
    dev = resolve_device(device)
    precision = resolve_precision(dev, precision)
    check_precision(dev, precision)
    try:
        import starlette  # noqa: F401
    except ImportError:
        raise GantransError(INSTALL) from None
    sock = bind(host, port)
    try:
        network_gb = memory_gb / 2 / NETWORK_OVERHEAD  # the passes are tiled to fit this
        options = ApplyOptions(batch_size=1, tile=tile, overlap=overlap, memory_gb=network_gb)
        models = load_models(ckpts, dev, precision, options)
        with tempfile.TemporaryDirectory(prefix="gantrans-serve-") as tmp:
            service = TranslateService(models, Path(tmp), int(max_upload_mb * 2**20), max_pixels)
            bound_host, bound_port = sock.getsockname()[:2]
            app = Guard(build_app(service), bound_host, bound_port, secret, allowed_hosts or ())
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            for m in models:
                log.info("model %s: %s", m.name, ", ".join(m.translators))
            log.info(
                "memory: one upload at a time, up to %.0f MP, within %.3g GiB (memory_gb)",
                max_pixels / 1e6,
                memory_gb,
            )
            if not ipaddress.ip_address(bound_host).is_loopback:
                log.warning(
                    "listening on %s: anyone who can reach this machine can use the page%s",
                    bound_host,
                    " (with the token)" if secret else "",
                )
            query = f"/?token={secret}" if secret else ""
            log.info("serving on http://%s:%d%s (Ctrl-C stops)", shown, bound_port, query)
            config = uvicorn.Config(app, log_level="warning", access_log=False)
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def main(cfg: DictConfig) -> None:
    """Entry point of `gantrans serve`."""
    opts = to_plain(cfg)
    serve(**opts)
