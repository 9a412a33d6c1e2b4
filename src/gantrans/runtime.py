"""Device and precision selection shared by every command."""

from __future__ import annotations

import contextlib

import torch

from gantrans.errors import ConfigError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# what running out of device memory raises: torch.OutOfMemoryError from torch 2.5 on, the same
# class as torch.cuda.OutOfMemoryError, which is all that torch 2.4 has
OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; `cpu`, `cuda` and `cuda:N` are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device={name} is not a device: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={name} but no CUDA GPU is available: use device=auto or device=cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={name} but only {torch.cuda.device_count()} GPU(s) are visible"
            )
    elif device.type != "cpu":
        raise ConfigError(f"device={name} is not supported: use auto, cpu, cuda or cuda:N")
    return device


def bf16_supported(device: torch.device | str) -> bool:
    """Whether `device` runs bfloat16 natively: a CPU with AVX-512 BF16 or AMX, or a GPU with bf16.

    Elsewhere bf16 autocast still works, but emulated and slower than fp32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN
            return False
    return False


def resolve_precision(device: torch.device, precision: str) -> str:
    """`auto` becomes bf16 where `device` runs it natively (see bf16_supported), else fp32."""
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


def check_precision(device: torch.device, precision: str) -> None:
    """Raise ConfigError if `precision` cannot run on `device`.

    Commands call this next to `resolve_device`, before they create folders or files.
    """
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("precision=fp16 is for CUDA; on the CPU use precision=bf16")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for bf16/fp16 on the given device; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    check_precision(device, precision)
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])
