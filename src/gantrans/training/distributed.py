"""Multi-process training through torchrun: process group, rank checks, small collectives.

`torchrun --nproc_per_node=N -m gantrans train ...` starts N processes with RANK, WORLD_SIZE
and LOCAL_RANK set (and MASTER_ADDR/PORT or a rendezvous endpoint for several nodes). Without
those variables everything here is a no-op and training runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's rank as torchrun set it (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def init(device: str) -> DistInfo:
    """Join the process group when launched by torchrun (NCCL on CUDA, gloo on the CPU)."""
    if not launched_by_torchrun():
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=int(os.environ["WORLD_SIZE"]),
    )
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's value of `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj`, in rank order (on every rank)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def any_rank(flags: list[bool], info: DistInfo, device: torch.device) -> list[bool]:
    """Element-wise OR of boolean flags across ranks, so every rank takes the same branch."""
    if not info.enabled:
        return flags
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def average_gradients(params: list[torch.Tensor], info: DistInfo) -> None:
    """Average the gradients of `params` across ranks (for a backward outside DDP's wrapper)."""
    if not info.enabled:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= info.world_size
