"""Checkpoints: atomic writes, safe loads (weights_only), and what a checkpoint must hold.

A checkpoint is a plain dict of tensors and Python primitives, so `torch.load(weights_only=True)`
reads it and nothing in it can run code:

    format        "gantrans-checkpoint"
    version       CHECKPOINT_VERSION
    arch          {"generator": {...}, "discriminator": {...}}: enough to rebuild the networks
    models        {"G_A", "G_B", "D_A", "D_B"}: state dicts
    optimizers, schedulers, scaler, pools, rng: the full training state, for exact resume
    step, epoch, epoch_step: progress (epoch_step = batches of `epoch` already consumed)
    config        the resolved run config
"""

from __future__ import annotations

import errno
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gantrans.errors import CheckpointError

CHECKPOINT_FORMAT = "gantrans-checkpoint"
CHECKPOINT_VERSION = 1
LATEST = "latest.pt"


def save_atomic(obj: Any, path: str | Path) -> None:
    """Write `obj` with torch.save so that `path` is always either the old file or the new one.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over
    `path` (an atomic operation on POSIX). A failure (disk full, kill) leaves the previous file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise CheckpointError(
                f"no space left on the device while writing {path}; the previous checkpoint is "
                "intact: free some space and resume with resume=auto"
            ) from exc
        if isinstance(exc, OSError):
            raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from exc
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def load_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """torch.load with weights_only=True, turning every way a file can be bad into one line."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist: check the ckpt= path")
    if path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} is a folder: point ckpt= at a .pt file such as {path / 'checkpoints' / LATEST}"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes): it was never written completely"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        if "Weights only load failed" in str(exc):
            reason = "it holds Python objects that a safe load refuses to run"
        raise CheckpointError(
            f"refusing to load {path}: {reason}; only load checkpoints from sources you trust"
        ) from exc
    except Exception as exc:  # noqa: BLE001 -- random bytes fail in many ways inside the unpickler
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint "
            f"({type(exc).__name__})"
        ) from exc


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load and check a gantrans checkpoint."""
    return check_checkpoint(load_file(path, map_location), path)


def is_gantrans_checkpoint(obj: Any) -> bool:
    """Whether a loaded object carries the gantrans checkpoint marker."""
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def check_checkpoint(ckpt: Any, path: str | Path) -> dict:
    """Check that an object read by `load_file` is a complete gantrans checkpoint and return it."""
    if not is_gantrans_checkpoint(ckpt):
        raise CheckpointError(
            f"{path} is not a gantrans checkpoint (no '{CHECKPOINT_FORMAT}' marker): "
            "pass a file written by `gantrans train`"
        )
    if ckpt.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer gantrans (checkpoint version {ckpt['version']}): upgrade gantrans"
        )
    missing = [k for k in ("arch", "models", "step") if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path} is an incomplete gantrans checkpoint (missing {', '.join(missing)})"
        )
    return ckpt


def load_state(net: nn.Module, state: dict, what: str, path: str | Path) -> None:
    """load_state_dict with a one-line error when the architecture does not match."""
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: the weights of {what} do not fit the architecture ({first}); "
            "the checkpoint was trained with another model configuration"
        ) from exc


def find_latest(run_dir: str | Path) -> Path | None:
    """The latest checkpoint of a run directory, if any."""
    path = Path(run_dir) / "checkpoints" / LATEST
    return path if path.is_file() else None


def rng_state() -> dict:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
