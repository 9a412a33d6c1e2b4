"""Checkpoints: their layout (this module alone reads and writes it), atomic writes, safe loads.

A checkpoint is a plain dict of tensors and Python primitives, so `torch.load(weights_only=True)`
reads it and nothing in it can run code:

    format        "gantrans-checkpoint"
    version       CHECKPOINT_VERSION
    method        the training method's name (gantrans.methods.registry: "cyclegan", "cut", ...)
    directions    {direction: network name}: what it translates ({"AtoB": "G"} for CUT; {} for
                  DCGAN, which generates from latent vectors: its generator is "G")
    arch          {"generator": {...}, "discriminator": {...}, ...}: enough to rebuild the networks
    models        {network name: state dict} ("G_A", "G_B", "D_A", "D_B"; CUT "G", "D", "F";
                  DCGAN "G", "D"); with train.ema also NAME_ema, each generator's moving average
                  of weights, which translation, sampling and export use
    optimizers, schedulers, scaler, pools, rng, ranks: the full training state, for exact resume
    step, epoch, epoch_step: progress (epoch_step = batches of `epoch` already consumed)
    config        the resolved run config
    best          {"metric", "value", "step"} of checkpoints/best.pt, or None

Version 1 (before training methods) had no `method` nor `directions`: a CycleGAN.
Other modules use the accessors below (`generator_arch`, `generator_weights`, ...), never the keys.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gantrans.errors import CheckpointError

log = logging.getLogger("gantrans")

CHECKPOINT_FORMAT = "gantrans-checkpoint"
CHECKPOINT_VERSION = 2
LATEST = "latest.pt"
CHECKPOINTS_DIR = "checkpoints"  # <run>/checkpoints/latest.pt, best.pt
V1_METHOD, V1_DIRECTIONS = "cyclegan", {"AtoB": "G_A", "BtoA": "G_B"}  # version 1: CycleGAN
EMA_SUFFIX = "_ema"  # models[NAME + EMA_SUFFIX]: the moving average of network NAME's weights


@dataclass
class TrainingRecord:
    """What a checkpoint holds to resume a run exactly (beyond the networks' weights)."""

    optimizers: dict[str, Any]
    schedulers: dict[str, Any]
    scaler: dict | None
    pools: dict[str, Any]  # this process's image buffers by domain
    rng: dict[str, Any]  # this process's RNG states
    step: int
    epoch: int
    epoch_step: int
    ranks: list[dict] = field(default_factory=list)  # every rank's {"pools", "rng"} under DDP
    best: dict | None = None


def pack(
    *,
    method: str,
    directions: dict[str, str],
    arch: dict[str, Any],
    models: dict[str, dict],
    config: dict | None = None,
    training: TrainingRecord | None = None,
) -> dict:
    """A checkpoint dict; without `training`, one that translates but cannot resume."""
    ckpt: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "method": method,
        "directions": dict(directions),
        "arch": arch,
        "models": models,
        "config": config or {},
    }
    if training is None:
        return {**ckpt, "step": 0, "epoch": 0, "epoch_step": 0}
    return {
        **ckpt,
        "optimizers": training.optimizers,
        "schedulers": training.schedulers,
        "scaler": training.scaler,
        "pools": training.pools,
        "rng": training.rng,
        "step": training.step,
        "epoch": training.epoch,
        "epoch_step": training.epoch_step,
        "ranks": training.ranks,
        "best": training.best,
    }


def method(ckpt: dict) -> str:
    """The training method that wrote the checkpoint."""
    return ckpt.get("method", V1_METHOD)


def directions(ckpt: dict) -> list[str]:
    """The directions the checkpoint translates, e.g. ["AtoB", "BtoA"] or ["AtoB"]."""
    return list(ckpt.get("directions", V1_DIRECTIONS))


def generates(ckpt: dict) -> bool:
    """Whether the checkpoint is of an unconditional model (DCGAN): it has no direction and
    draws images from latent vectors."""
    return not ckpt.get("directions", V1_DIRECTIONS)


def sampler_weights(ckpt: dict, path: str | Path) -> dict:
    """The state dict of an unconditional model's generator ("G").

    Raises:
        CheckpointError: One line, if the checkpoint is of a translation model.
    """
    if not generates(ckpt):
        raise CheckpointError(
            f"{path} is a {method(ckpt)} model, which translates images rather than generating "
            f"them: apply it with `gantrans translate ckpt={path} input=...`"
        )
    return _averaged(ckpt, "G")


def _averaged(ckpt: dict, name: str) -> dict:
    """Network `name`'s weights: the moving average of them when the run kept one (train.ema)."""
    models = ckpt["models"]
    return models.get(name + EMA_SUFFIX, models[name])


def not_a_translator(ckpt: dict, path: str | Path) -> CheckpointError:
    """The one-line error of a command that translates, given an unconditional checkpoint."""
    return CheckpointError(
        f"{path} is a {method(ckpt)} model: it generates images from noise rather than "
        f"translating them; draw images with `gantrans sample ckpt={path} n=64`"
    )


OPTIONAL_GENERATOR_KEYS = {
    "resnet": {"input_skip": False, "mask": False, "upsample": "transpose"},
    "unet": {"mask": False},
}
"""Generator keys (by generator name) added after checkpoints without them were written, with
the value those checkpoints mean."""
OPTIONAL_DISCRIMINATOR_KEYS = {"spectral_norm": False, "augment": None}
"""The same for the discriminators (every kind)."""


def arch(ckpt: dict) -> dict[str, Any]:
    """Everything recorded to rebuild the networks (resume compares it with the run's).

    A key added to the networks since the checkpoint was written reads as its default, so
    such a checkpoint still resumes.
    """
    recorded = dict(ckpt["arch"])
    gen = recorded.get("generator")
    if isinstance(gen, dict) and gen.get("name") in OPTIONAL_GENERATOR_KEYS:
        recorded["generator"] = {**OPTIONAL_GENERATOR_KEYS[gen["name"]], **gen}
    if isinstance(recorded.get("discriminator"), dict):
        recorded["discriminator"] = {**OPTIONAL_DISCRIMINATOR_KEYS, **recorded["discriminator"]}
    return recorded


def generator_arch(ckpt: dict) -> dict[str, Any]:
    """The generators' architecture (as for `gantrans.models.build_generator`)."""
    return ckpt["arch"]["generator"]


def channels(ckpt: dict) -> int:
    """The image channels the generators take and give (1 or 3; a DCGAN's: that it gives)."""
    arch = generator_arch(ckpt)
    return int(arch["in_channels"] if "in_channels" in arch else arch["out_channels"])


def generator_weights(ckpt: dict, direction: str, path: str | Path) -> dict:
    """The state dict of the generator that translates `direction` (its moving average of
    weights where the run kept one: train.ema).

    Raises:
        CheckpointError: One line, if the checkpoint does not translate that way (CUT: AtoB).
    """
    names = ckpt.get("directions", V1_DIRECTIONS)
    if not names:
        raise not_a_translator(ckpt, path)
    if direction not in names:
        raise CheckpointError(
            f"direction={direction}: {path} is a {method(ckpt)} model, which translates "
            f"{' and '.join(names) or 'nothing'} only: use direction={next(iter(names), 'AtoB')}"
        )
    return _averaged(ckpt, names[direction])


def network_weights(ckpt: dict) -> dict[str, dict]:
    """Every network's state dict by name."""
    return ckpt["models"]


def recorded_config(ckpt: dict) -> dict[str, Any]:
    """The resolved config of the run that wrote the checkpoint ({} if none was recorded)."""
    return ckpt.get("config") or {}


def progress(ckpt: dict) -> dict[str, int | None]:
    """{"step", "epoch"} of the checkpoint."""
    return {"step": ckpt.get("step"), "epoch": ckpt.get("epoch")}


def best(ckpt: dict) -> dict | None:
    """{"metric", "value", "step"} of the best evaluation so far, if the run evaluated."""
    return ckpt.get("best")


def training_record(ckpt: dict, path: str | Path) -> TrainingRecord:
    """The training state to resume from.

    Raises:
        CheckpointError: One line, if the checkpoint holds weights only.
    """
    missing = [k for k in ("optimizers", "schedulers", "pools", "rng") if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path} holds weights only (no {', '.join(missing)}): it can translate but not "
            "resume a run"
        )
    return TrainingRecord(
        optimizers=ckpt["optimizers"], schedulers=ckpt["schedulers"], scaler=ckpt.get("scaler"),
        pools=ckpt["pools"], rng=ckpt["rng"], step=ckpt["step"], epoch=ckpt["epoch"],
        epoch_step=ckpt["epoch_step"], ranks=ckpt.get("ranks") or [], best=ckpt.get("best"),
    )  # fmt: skip


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


def _folder_hint(path: Path) -> Path:
    """The checkpoint a user most likely meant by a folder: its own latest.pt, or its run's."""
    for candidate in (path / LATEST, latest_of(path)):
        if candidate.is_file():
            return candidate
    return path / LATEST if path.name == CHECKPOINTS_DIR else latest_of(path)


def _unpickler_reason(exc: BaseException) -> str:
    """What the safe unpickler objected to, in a few words (its message runs to 500 characters
    and advises a load that would run the file's code)."""
    text = " ".join(str(exc).split())
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return found.group(1)
    found = re.search(r"WeightsUnpickler error: (.+?)(?: Check the documentation|$)", text)
    return found.group(1).strip()[:80] if found else ""


_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what save_atomic writes before its rename


def remove_interrupted_saves(folder: str | Path) -> list[Path]:
    """Delete the temporary files that `save_atomic` leaves when it is killed mid-write (each
    can be as large as a checkpoint), with a note in the log; returns what was removed.

    Call it only where no save is running (the start of a run, on its main process).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed, size = [], 0
    for path in sorted(folder.glob(".*.tmp")):
        if not _TEMPORARY.match(path.name) or not path.is_file():
            continue
        try:
            size += path.stat().st_size
            path.unlink()
        except OSError as exc:
            log.warning("cannot remove %s, left by an interrupted save: %s", path, exc.strerror)
            continue
        removed.append(path)
    if removed:
        log.info(
            "removed %d temporary file(s) (%.1f MB) left in %s by an interrupted save: %s",
            len(removed),
            size / 2**20,
            folder,
            ", ".join(p.name for p in removed),
        )
    return removed


def load_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """torch.load with weights_only=True, turning every way a file can be bad into one line.

    The detail of a refusal or a read error goes to the debug log, never into the message, so
    the line stays short and never suggests a load that is not safe.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist: check the ckpt= path")
    if path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} is a folder: point ckpt= at a .pt file such as {_folder_hint(path)}"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes): it was never written completely"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        log.debug("torch.load(%s, weights_only=True): %s", path, exc)
        reason = _unpickler_reason(exc)
        if "Unsupported global" in str(exc):
            raise CheckpointError(
                f"refusing to load {path}: it holds Python objects ({reason}) that a safe load "
                "refuses to run; only load checkpoints from sources you trust"
            ) from None
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint "
            "(bad pickle data)"
        ) from None
    except Exception as exc:  # noqa: BLE001 -- random bytes fail in many ways inside the unpickler
        log.debug("torch.load(%s, weights_only=True): %s", path, exc)
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint "
            f"({type(exc).__name__})"
        ) from None


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
    names = ckpt.get("directions", V1_DIRECTIONS)
    if (
        not isinstance(ckpt["arch"], dict)
        or not isinstance(ckpt["arch"].get("generator"), dict)
        or not isinstance(ckpt["models"], dict)
        or not isinstance(names, dict)
        or not all(isinstance(n, str) for n in names.values())
    ):
        raise CheckpointError(
            f"{path} is a malformed gantrans checkpoint (its arch, models or directions): the "
            "file is damaged or was not written by `gantrans train`"
        )
    absent = [n for n in names.values() if n not in ckpt["models"]]
    if absent:
        raise CheckpointError(
            f"{path} is an incomplete gantrans checkpoint (no {absent[0]} weights)"
        )
    return ckpt


def build_network(build, arch: Any, what: str, path: str | Path) -> nn.Module:
    """`build(arch)`, with a one-line CheckpointError when the recorded architecture is
    malformed (a damaged or hand-made file)."""
    try:
        return build(arch)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        log.debug("%s: building %s from %r: %s", path, what, arch, exc)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
        raise CheckpointError(
            f"{path} records a malformed {what} ({first}): the file is damaged or was not "
            "written by `gantrans train`"
        ) from None


def load_state(net: nn.Module, state: dict, what: str, path: str | Path) -> None:
    """load_state_dict with a one-line error when the architecture does not match."""
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, ValueError, KeyError) as exc:
        log.debug("%s: loading the weights of %s: %s", path, what, exc)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
        raise CheckpointError(
            f"{path}: the weights of {what} do not fit the architecture ({first}); "
            "the checkpoint was trained with another model configuration"
        ) from None


def checkpoints_dir(run_dir: str | Path) -> Path:
    """The folder of a run directory's checkpoints: <run>/checkpoints."""
    return Path(run_dir) / CHECKPOINTS_DIR


def latest_of(run_dir: str | Path) -> Path:
    """Where a run directory's latest checkpoint is written: <run>/checkpoints/latest.pt."""
    return checkpoints_dir(run_dir) / LATEST


def run_dir_of(ckpt: str | Path) -> Path:
    """The run directory of a checkpoint: <run>/checkpoints/x.pt -> <run>; else its folder."""
    ckpt = Path(ckpt).resolve()
    return ckpt.parent.parent if ckpt.parent.name == CHECKPOINTS_DIR else ckpt.parent


def find_latest(run_dir: str | Path) -> Path | None:
    """The latest checkpoint of a run directory, if any."""
    path = latest_of(run_dir)
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
