"""The training state, its builder and one training step: what the loop and the benchmarks share.

`build_training` makes the state of a run from its typed config (the method's networks,
initialised, one Adam optimiser and LR schedule per parameter group, the gradient scaler,
the image buffers); `train_step` runs one step of any method on a batch. The training loop
(gantrans.training.train) and the benchmarks in scripts/ both build through here, so a benchmark times
exactly what training runs.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gantrans import checkpoint
from gantrans.checkpoint import (
    EMA_SUFFIX,
    TrainingRecord,
    load_state,
    rng_state,
    save_atomic,
    set_rng_state,
)
from gantrans.config import TrainConfig
from gantrans.errors import CheckpointError, GantransError
from gantrans.methods import Batch, Method, Terms, method_class
from gantrans.methods.image_pool import ImagePool
from gantrans.runtime import autocast, resolve_precision
from gantrans.training import distributed
from gantrans.training.distributed import DistInfo

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


class GeneratorAverage:
    """An exponential moving average of the generators' weights (train.ema).

    The average of a generator is smoother than its latest weights, which follow the
    adversarial game step by step; GANs' samples are commonly drawn from it (Karras et al.
    2018; Yazici et al. 2019). Early on the decay is lowered to (1 + step) / (10 + step), so
    the average does not keep the random initialisation for thousands of steps. Buffers
    (batch-norm statistics) are copied, not averaged.

    Args:
        method: The method whose `generator_names()` networks are averaged.
        decay: The weight of the old average at each step, in (0, 1).
    """

    def __init__(self, method: Method, decay: float) -> None:
        self.decay = decay
        nets = method.networks()
        self.nets = {
            name: copy.deepcopy(nets[name]).requires_grad_(False)
            for name in method.generator_names()
        }

    @torch.no_grad()
    def update(self, method: Method, step: int) -> None:
        """Move the average towards the method's current weights (after step `step`)."""
        weight = 1 - min(self.decay, (1 + step) / (10 + step))
        nets = method.networks()
        for name, avg in self.nets.items():
            live = nets[name]
            torch._foreach_lerp_(list(avg.parameters()), list(live.parameters()), weight)
            for a, b in zip(avg.buffers(), live.buffers(), strict=True):
                a.copy_(b)

    def reset(self, method: Method) -> None:
        """Start the average from the method's current weights."""
        nets = method.networks()
        for name, avg in self.nets.items():
            avg.load_state_dict(nets[name].state_dict())

    @contextmanager
    def swapped(self, method: Method) -> Iterator[None]:
        """Within the block, the method's generators hold the averaged weights."""
        nets = method.networks()
        saved = {n: copy.deepcopy(nets[n].state_dict()) for n in self.nets}
        try:
            for name, avg in self.nets.items():
                nets[name].load_state_dict(avg.state_dict())
            yield
        finally:
            for name, state in saved.items():
                nets[name].load_state_dict(state)


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
    ema: GeneratorAverage | None = None  # train.ema
    r1: tuple[float, int] | None = None  # (loss.r1_gamma, loss.r1_every) when R1 is on

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """Within the block the generators hold their averaged weights (as is without EMA)."""
        if self.ema is None:
            yield
            return
        with self.ema.swapped(self.method):
            yield

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
        models = {n: net.state_dict() for n, net in self.method.networks().items()}
        if self.ema is not None:
            models.update({n + EMA_SUFFIX: net.state_dict() for n, net in self.ema.nets.items()})
        return checkpoint.pack(
            method=self.method.name,
            directions=self.method.directions,
            arch=self.method.arch(),
            models=models,
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
        if self.ema is not None:
            self.ema.reset(self.method)  # a checkpoint without the average starts it here
            for name, net in self.ema.nets.items():
                if name + EMA_SUFFIX in weights:
                    load_state(net, weights[name + EMA_SUFFIX], name + EMA_SUFFIX, path)
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
    method.lambda_mask = float(cfg.loss.lambda_mask)
    method.mask_area = None if cfg.loss.mask_area is None else float(cfg.loss.mask_area)
    method.lambda_mask_tv = float(cfg.loss.lambda_mask_tv)
    method.lambda_tone = float(cfg.loss.lambda_tone or 0)  # null: off
    method.tone_cells = int(cfg.loss.tone_cells)
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
    r1 = (float(cfg.loss.r1_gamma), int(cfg.loss.r1_every)) if cfg.loss.r1_gamma else None
    if r1 is not None and not method.real_domains:
        raise GantransError(f"loss.r1_gamma does not apply to method={method.name}: remove it")
    return TrainState(
        ema=GeneratorAverage(method, float(t.ema)) if t.ema else None,
        r1=r1,
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
    if state.r1 is not None and state.step % state.r1[1] == 0:
        terms.update(r1_phase(state, batch))
    state.scaler.update()
    for sched in state.schedulers.values():
        sched.step()
    if state.ema is not None:
        state.ema.update(state.method, state.step)
    return terms


def r1_penalty(net: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 over real images x (N, C, H, W): the R1 penalty, kept in the graph.

    D(x) is one score per image: a patch discriminator's map is averaged, so gamma weighs the
    same whatever the number of patches (summing a 6x6 map would multiply it by up to 36^2)."""
    real = real.detach().float().requires_grad_(True)
    scores = net(real).float().flatten(1).mean(1)
    (grad,) = torch.autograd.grad(scores.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def r1_phase(state: TrainState, batch: Batch) -> Terms:
    """One lazy R1 step of the discriminators (Mescheder et al. 2018; Karras et al. 2020).

    The penalty keeps each discriminator flat around the real images, which stops it from
    separating them from close fakes by sharp ridges. It runs every r1_every steps, in fp32
    (a second derivative), weighted gamma / 2 x r1_every so that it weighs as much as one
    applied every step; its own optimiser step on the "D" parameters. Under DDP the gradients
    are averaged across ranks.
    """
    gamma, every = state.r1
    nets = state.method.networks()
    optimizer = state.optimizers["D"]
    optimizer.zero_grad(set_to_none=True)
    penalties = {f"{name}_r1": r1_penalty(nets[name], batch[domain])
                 for name, domain in state.method.real_domains.items()}  # fmt: skip
    (sum(penalties.values()) * (gamma / 2 * every)).backward()
    if state.dist_info.enabled:
        for group in optimizer.param_groups:
            distributed.average_gradients(group["params"], state.dist_info)
    optimizer.step()
    return {k: v.detach() for k, v in penalties.items()}
