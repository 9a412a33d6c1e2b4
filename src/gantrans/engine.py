"""The training state, its builder and one training step: what the loop and the benchmarks share.

`build_training` makes the state of a run from its typed config (the method's networks,
initialised, one Adam optimiser and LR schedule per parameter group, the gradient scaler,
the image buffers); `train_step` runs one step of any method on a batch. The training loop
(gantrans.train) and the benchmarks in scripts/ both build through here, so a benchmark times
exactly what training runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from gantrans import checkpoint, distributed
from gantrans.checkpoint import TrainingRecord, load_state, rng_state, save_atomic, set_rng_state
from gantrans.config import TrainConfig
from gantrans.distributed import DistInfo
from gantrans.errors import CheckpointError, GantransError
from gantrans.image_pool import ImagePool
from gantrans.methods import Batch, Method, Terms, method_class
from gantrans.runtime import autocast, resolve_precision

log = logging.getLogger("gantrans")

POOL_SEED_OFFSET = {"A": 1, "B": 2}  # each domain's buffer draws from its own seeded stream


class TrainingError(GantransError):
    """Training cannot go on (a non-finite loss, say)."""


def lr_factor(step: int, steps_per_epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """Learning-rate multiplier at a global step: 1 for n_epochs, then linear to 0 over n_epochs_decay.

    Computed per step from the fractional epoch, so the decay is smooth and reaches zero on the
    last step, and it is a pure function of the step: a resumed run follows the same schedule.
    """
    epoch = step / steps_per_epoch
    if n_epochs_decay == 0 or epoch < n_epochs:
        return 1.0
    return max(0.0, 1.0 - (epoch - n_epochs) / n_epochs_decay)


@dataclass
class TrainState:
    """Everything a checkpoint captures, and how to write it out and read it back."""

    method: Method
    optimizers: dict[str, torch.optim.Optimizer]  # one per parameter group ("G", "D")
    schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR]
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: str  # fp32 | bf16 | fp16 (resolved)
    step: int = 0
    epoch: int = 0
    epoch_step: int = 0  # batches of `epoch` already consumed
    dist_info: DistInfo = field(default_factory=DistInfo)
    best: dict | None = None  # {"metric", "value", "step"} of checkpoints/best.pt

    def _rank_state(self) -> dict:
        """What differs between DDP ranks: their image buffers and RNG streams."""
        return {
            "pools": {d: pool.state_dict() for d, pool in self.method.pools.items()},
            "rng": rng_state(),
        }

    def state_dict(self, config: dict | None = None) -> dict:
        """The checkpoint (a collective under DDP: every rank must call it)."""
        ranks = distributed.gather_objects(self._rank_state(), self.dist_info)
        own = self._rank_state()
        record = TrainingRecord(
            optimizers={k: opt.state_dict() for k, opt in self.optimizers.items()},
            schedulers={k: sched.state_dict() for k, sched in self.schedulers.items()},
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            pools=own["pools"], rng=own["rng"], step=self.step, epoch=self.epoch,
            epoch_step=self.epoch_step, ranks=ranks if self.dist_info.enabled else [],
            best=self.best,
        )  # fmt: skip
        return checkpoint.pack(
            method=self.method.name,
            directions=self.method.directions,
            arch=self.method.arch(),
            models={n: net.state_dict() for n, net in self.method.networks().items()},
            config=config,
            training=record,
        )

    def load_state_dict(self, ckpt: dict, path: Path) -> None:
        """Continue from a checkpoint of the same method and architecture."""
        if checkpoint.method(ckpt) != self.method.name:
            raise CheckpointError(
                f"{path} was trained with method={checkpoint.method(ckpt)}: resume it with that "
                f"method, not method={self.method.name}"
            )
        if checkpoint.arch(ckpt) != self.method.arch():
            raise CheckpointError(
                f"{path} was trained with another architecture ({checkpoint.generator_arch(ckpt)}): "
                "resume with the model/discriminator/dataset options it was trained with"
            )
        record = checkpoint.training_record(ckpt, path)
        weights = checkpoint.network_weights(ckpt)
        for name, net in self.method.networks().items():
            load_state(net, weights[name], name, path)
        for key, opt in self.optimizers.items():
            opt.load_state_dict(record.optimizers[key])
        for key, sched in self.schedulers.items():
            sched.load_state_dict(record.schedulers[key])
        if record.scaler:
            self.scaler.load_state_dict(record.scaler)
        di = self.dist_info
        pools, rng = record.pools, record.rng
        if di.enabled and len(record.ranks) == di.world_size:
            pools, rng = record.ranks[di.rank]["pools"], record.ranks[di.rank]["rng"]
        elif di.enabled and di.rank > 0:
            log.warning(
                "rank %d: the checkpoint has no state for %d ranks; using rank 0's image buffers",
                di.rank, di.world_size,
            )  # fmt: skip
        for domain, pool in self.method.pools.items():
            pool.load_state_dict(pools[domain])
        if di.rank == 0 or len(record.ranks) == di.world_size:
            set_rng_state(rng)
        self.step, self.epoch, self.epoch_step = record.step, record.epoch, record.epoch_step
        self.best = record.best

    def save(self, path: Path, config: dict | None = None) -> None:
        """Write a checkpoint atomically; refuse to write weights that are not finite."""
        for name, net in self.method.networks().items():
            if not all(torch.isfinite(p).all() for p in net.parameters()):
                raise TrainingError(
                    f"the weights of {name} are not finite at step {self.step}; {path} is left "
                    "as it was: resume=auto from it with a lower train.lr"
                )
        state = self.state_dict(config)  # a collective under DDP: every rank gets here
        if self.dist_info.is_main:
            save_atomic(state, path)

    def scale_lr(self, factor: float) -> None:
        """Multiply the base learning rates (the schedule's factor still applies on top)."""
        for sched in self.schedulers.values():
            sched.base_lrs = [lr * factor for lr in sched.base_lrs]
            for group, base in zip(sched.optimizer.param_groups, sched.base_lrs, strict=True):
                group["lr"] = base * sched.lr_lambdas[0](self.step)

    def learning_rates(self) -> dict[str, float]:
        """The current learning rate of each optimiser."""
        return {k: opt.param_groups[0]["lr"] for k, opt in self.optimizers.items()}


def build_training(
    cfg: TrainConfig,
    device: torch.device,
    *,
    schedule: Callable[[int], float] | None = None,
    dist_info: DistInfo | None = None,
) -> TrainState:
    """The state of a run: the method's networks (initialised), optimisers, LR schedulers,
    scaler and image buffers, from its typed config.

    Initialisation draws from the global RNG: seed it first. Under DDP each phase's runner is
    wrapped in DistributedDataParallel; with train.compile, in torch.compile after that.

    Args:
        cfg: The run's config (`gantrans.config.prepare_train_config`).
        device: Where the networks live.
        schedule: The LR multiplier as a function of the step (constant 1 if None).
        dist_info: Rank and world size under torchrun; None = one process.
    """
    di = dist_info or DistInfo()
    t = cfg.train
    pools = {
        d: ImagePool(t.pool_size, seed=cfg.seed + POOL_SEED_OFFSET[d] + 1000 * di.rank)
        for d in method_class(str(cfg.method.name)).pooled
    }  # per-rank buffers
    method = method_class(str(cfg.method.name)).build(cfg, int(cfg.dataset.channels), pools)
    if di.enabled and device.type == "cuda":
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)  # no-op without batch norm
    method.to(device)
    if t.channels_last:
        method.to(memory_format=torch.channels_last)
    optimizers = {
        # fused: one kernel per step for all parameters instead of a handful of passes over them
        k: torch.optim.Adam(params, lr=t.lr, betas=(t.beta1, t.beta2), fused=True)
        for k, params in method.param_groups().items()
    }
    schedule = schedule or (lambda step: 1.0)
    precision = resolve_precision(device, str(cfg.precision))
    if di.enabled:  # gradients of each phase are averaged across ranks during backward
        ids = [device.index] if device.type == "cuda" else None
        method.wrap_runners(lambda module: DistributedDataParallel(module, device_ids=ids))
    if t.compile:  # after DDP, as PyTorch recommends, so DDP's bucketing sees the graph breaks
        method.wrap_runners(torch.compile)
    return TrainState(
        method=method,
        optimizers=optimizers,
        schedulers={
            k: torch.optim.lr_scheduler.LambdaLR(o, schedule) for k, o in optimizers.items()
        },
        scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        device=device,
        precision=precision,
        dist_info=di,
    )


def train_step(state: TrainState, batch: Batch) -> Terms:
    """One optimisation step of every phase the method runs now; returns the detached terms.

    Each phase zeroes its optimiser's gradients, computes its loss under autocast, and steps;
    the scaler is updated and the LR schedules advance once per step. The step counter is the
    caller's to advance.

    Args:
        state: The run's state.
        batch: {"A": (N, C, H, W) in [-1, 1], "B": ...} on the state's device.
    """
    terms: Terms = {}
    cache: dict = {}  # shared by the phases of this step
    for phase in state.method.phases(state.step):
        optimizer = state.optimizers[phase.optimizer]
        optimizer.zero_grad(set_to_none=True)
        with autocast(state.device, state.precision):
            total, phase_terms = phase.loss(batch, cache)
        state.scaler.scale(total).backward()
        state.scaler.step(optimizer)
        terms.update(phase_terms)
    state.scaler.update()
    for sched in state.schedulers.values():
        sched.step()
    return terms
