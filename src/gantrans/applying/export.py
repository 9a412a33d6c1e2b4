"""`gantrans export`: write one direction's generator as ONNX or TorchScript, plus a metadata JSON.

The exported model takes ``input`` of shape (batch, in_channels, height, width), float32 in
[-1, 1] (8-bit pixels as ``x / 127.5 - 1``), and returns ``output`` of shape
(batch, out_channels, height, width) in [-1, 1]; batch, height and width are dynamic. Height and
width must be multiples of the generator's size multiple (4 for ResNet, 2**num_downs for U-Net):
callers pad other sizes (bottom and right, reflection) and crop the output back, as
`gantrans translate` does. ``<output>.json`` records all of this.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from gantrans import __version__
from gantrans.applying.loader import load_generator
from gantrans.applying.pretrained import PREFIX, is_pretrained
from gantrans.config import check_known_keys, to_plain
from gantrans.errors import ConfigError, GantransError
from gantrans.models import size_multiple

log = logging.getLogger("gantrans")

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
MIN_OPSET = 17  # the TorchScript-based exporter; the torch.export-based one starts at 18
DYNAMO_MIN_OPSET = 18
QUIET_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx")
TOLERANCE = (
    1e-3  # max |exported - PyTorch| accepted by the check after writing (outputs in [-1, 1])
)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' deprecation warnings and INFO logs (they would reach the console)."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def default_output(ckpt: str, direction: str, fmt: str) -> Path:
    """``<ckpt stem>_<direction>.onnx|.pt`` next to the checkpoint (in the current folder for
    ``pretrained:NAME``)."""
    if is_pretrained(ckpt):
        return Path(f"{ckpt[len(PREFIX) :]}_{direction}{FORMATS[fmt]}")
    path = Path(ckpt)
    return path.with_name(f"{path.stem}_{direction}{FORMATS[fmt]}")


def check_shapes(arch: dict) -> list[tuple[int, int, int, int]]:
    """Input shapes on which an exported model is compared with PyTorch: two sizes, two batches."""
    m, c = size_multiple(arch), int(arch["in_channels"])
    if m < 16:  # ResNet: 44x60 and 32x48 for a multiple of 4
        return [(1, c, 11 * m, 15 * m), (2, c, 8 * m, 12 * m)]
    return [(1, c, m, 2 * m), (2, c, m, m)]


def _onnx(net: nn.Module, x: torch.Tensor, path: Path, opset: int) -> str:
    """Export to ONNX; returns which exporter did it."""
    names: dict[str, Any] = {"input_names": ["input"], "output_names": ["output"]}
    # torch 2.4's exporter is TorchScript-based only: no `dynamo` argument (2.5), no
    # torch.export.Dim.DYNAMIC (2.6); from 2.9 on `dynamo` defaults to True
    has_dynamo = "dynamo" in inspect.signature(torch.onnx.export).parameters
    if opset >= DYNAMO_MIN_OPSET and has_dynamo:
        try:
            dim = torch.export.Dim.DYNAMIC
            torch.onnx.export(
                net,
                (x,),
                str(path),
                dynamo=True,
                external_data=False,
                verbose=False,
                opset_version=opset,
                dynamic_shapes=({0: dim, 2: dim, 3: dim},),
                **names,
            )
            return "torch.export"
        except Exception as exc:  # noqa: BLE001 -- any failure: try the other exporter
            log.warning(
                "the torch.export-based ONNX exporter failed (%s); using the TorchScript-based one",
                _first_line(exc),
            )
    axes = {0: "batch", 2: "height", 3: "width"}
    try:
        torch.onnx.export(
            net,
            (x,),
            str(path),
            **({"dynamo": False} if has_dynamo else {}),
            opset_version=opset,
            dynamic_axes={"input": axes, "output": axes},
            **names,
        )
    except Exception as exc:  # noqa: BLE001
        hint = " (pip install 'gantrans[export]')" if isinstance(exc, ImportError) else ""
        raise GantransError(f"cannot export to ONNX: {_first_line(exc)}{hint}") from None
    return "torchscript-onnx"


def _torchscript(net: nn.Module, x: torch.Tensor, path: Path) -> str:
    """Save a TorchScript module (scripted, or traced if scripting fails); returns which."""
    try:
        module, how = torch.jit.script(net), "script"
    except Exception as exc:  # noqa: BLE001
        log.warning("torch.jit.script failed (%s); tracing instead", _first_line(exc))
        module, how = torch.jit.trace(net, x), "trace"
    module.save(str(path))
    return how


def _runner(fmt: str, path: Path) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function running the written model, or None when onnxruntime is missing."""
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu")
        return lambda x: module(x)
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def verify(fmt: str, path: Path, net: nn.Module, arch: dict) -> bool:
    """Compare the written model with `net` on `check_shapes`; False if it could not be run.

    Raises:
        GantransError: If the outputs differ (e.g. a traced model with baked-in sizes).
    """
    run = _runner(fmt, path)
    if run is None:
        log.warning("onnxruntime is not installed: the exported model was not checked")
        return False
    g = torch.Generator().manual_seed(0)
    for shape in check_shapes(arch):
        x = torch.rand(shape, generator=g) * 2 - 1
        with torch.no_grad():
            expected = net(x)
            try:
                got = run(x)
            except Exception as exc:  # noqa: BLE001 -- onnxruntime raises its own types
                raise GantransError(
                    f"the exported model fails on a {shape[2]}x{shape[3]} input (batch "
                    f"{shape[0]}): {_first_line(exc)}"
                ) from None
        diff = (got - expected).abs().max().item() if got.shape == expected.shape else float("inf")
        if diff > TOLERANCE:
            raise GantransError(
                f"the exported model differs from PyTorch on a {shape[2]}x{shape[3]} input "
                f"(batch {shape[0]}): max difference {diff:.2g}"
            )
    return True


def metadata(fmt: str, how: str, opset: int, direction: str, ckpt: str, arch: dict) -> dict:
    """What a caller needs to run the exported model."""
    c_in, c_out, m = int(arch["in_channels"]), int(arch["out_channels"]), size_multiple(arch)
    meta: dict[str, Any] = {"format": fmt, "exporter": how}
    if fmt == "onnx":
        meta["opset"] = opset
    meta |= {
        "direction": direction,
        "source": str(ckpt),
        "input": {"name": "input", "shape": ["batch", c_in, "height", "width"], "dtype": "float32"},
        "output": {
            "name": "output",
            "shape": ["batch", c_out, "height", "width"],
            "dtype": "float32",
        },
        "in_channels": c_in,
        "out_channels": c_out,
        "normalization": {
            "input": "x / 127.5 - 1 (8-bit pixels to [-1, 1]; RGB, or L for 1 channel)",
            "output": "(y + 1) * 127.5, rounded and clipped to 0..255",
            "range": [-1.0, 1.0],
        },
        "size_multiple": m,
        "padding": f"height and width must be multiples of {m}: pad bottom and right "
        "(reflection) and crop the output back, as gantrans translate does",
        "architecture": dict(arch),
        "gantrans_version": __version__,
    }
    return meta


def _writable(out: Path) -> Path:
    """Create the output folder and check a file can be written there; the temporary path."""
    tmp = out.with_name(f".{out.name}.part")
    try:
        if out.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.open("wb").close()
    except OSError as exc:
        raise GantransError(
            f"cannot write output={out} ({exc.strerror or exc}): choose another output=FILE"
        ) from None
    return tmp


def export_generator(
    *,
    ckpt: str | Path,
    format: str,
    direction: str = "AtoB",
    output: str | Path | None = None,
    opset: int = DYNAMO_MIN_OPSET,
    verify_output: bool = True,
    progress: bool = True,
) -> tuple[Path, Path]:
    """Export the `direction` generator of a checkpoint.

    Args:
        ckpt: A gantrans checkpoint, a pytorch-CycleGAN-and-pix2pix generator file or
            ``pretrained:NAME``.
        format: ``"onnx"`` or ``"torchscript"``.
        direction: ``"AtoB"`` or ``"BtoA"`` (reference files hold a single generator).
        output: The file to write; default `default_output`.
        opset: ONNX opset (>= 17; 18 and up use the torch.export-based exporter first).
        verify_output: Run the written model at two sizes and batches and compare with PyTorch.
        progress: Progress bar while a pretrained model downloads.

    Returns:
        (the model file, its metadata JSON file ``<model file>.json``).

    Raises:
        GantransError: One line, for a bad option, checkpoint, output or export failure.
    """
    if format not in FORMATS:
        raise ConfigError(f"format={format} is not supported: choose one of {', '.join(FORMATS)}")
    if format == "onnx" and opset < MIN_OPSET:
        raise ConfigError(f"opset={opset} is too old: use {MIN_OPSET} or newer")
    out = Path(output) if output else default_output(str(ckpt), direction, format)
    if not is_pretrained(str(ckpt)) and out.resolve() == Path(ckpt).resolve():
        raise GantransError(f"output={out} is the checkpoint itself: choose another output=FILE")
    net, arch = load_generator(ckpt, direction, torch.device("cpu"), progress=progress)
    net = net.float().eval()
    side = max(64, 2 * size_multiple(arch))  # batch 2: a size-1 dim would be specialised
    example = torch.zeros(2, int(arch["in_channels"]), side, side)
    tmp = _writable(out)
    try:
        with _quiet():
            if format == "onnx":
                how = _onnx(net, example, tmp, opset)
            else:
                how = _torchscript(net, example, tmp)
            if verify_output or how == "trace":
                verify(format, tmp, net, arch)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    meta_path = out.with_name(out.name + ".json")
    meta = metadata(format, how, opset, direction, str(ckpt), arch)
    meta_tmp = meta_path.with_name(f".{meta_path.name}.part")
    meta_tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    os.replace(meta_tmp, meta_path)
    return out, meta_path


def main(cfg: DictConfig) -> None:
    """Entry point of `gantrans export`."""
    check_known_keys(cfg)
    opts = to_plain(cfg)
    out, meta = export_generator(
        ckpt=opts["ckpt"],
        format=opts["format"],
        direction=opts["direction"],
        output=opts["output"],
        opset=opts["opset"],
        verify_output=opts["verify"],
        progress=opts["progress"],
    )
    log.info("exported %s %s to %s (metadata: %s)", opts["direction"], opts["format"], out, meta)
