"""The CycleGAN training loop: one function, read top to bottom, every knob an argument."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from gantrans import distributed
from gantrans.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    LATEST,
    find_latest,
    load_checkpoint,
    load_state,
    rng_state,
    save_atomic,
    set_rng_state,
)
from gantrans.config import check_train_config, to_plain
from gantrans.cyclegan import CycleGAN, CycleGANLoss, discriminator_arch, generator_arch
from gantrans.data import UnpairedDataset, UnpairedSampler, build_domains
from gantrans.diagnostics import Diagnostics
from gantrans.distributed import DistInfo
from gantrans.errors import CheckpointError, ConfigError, GantransError
from gantrans.image_pool import ImagePool
from gantrans.reporting import Reporter, RunningMeans, cycle_grid
from gantrans.runtime import autocast, check_precision, resolve_device, resolve_precision

log = logging.getLogger("gantrans")

NETWORKS = ("G_A", "G_B", "D_A", "D_B")


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


class StopRequest:
    """SIGINT/SIGTERM ask the loop to stop after the current step; a second SIGINT stops at once."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: leave now (checkpoints are written atomically)
        self.signal_name = signal.Signals(signum).name
        log.warning(
            "\n%s received: finishing this step and writing a checkpoint (Ctrl-C again to quit at once)",
            self.signal_name,
        )

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the default handlers
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _fixed_samples(domain, k: int) -> torch.Tensor:
    """The first k images of a domain with test-time transforms: (k, C, H, W) in [-1, 1]."""
    k = min(k, len(domain))
    return torch.stack([domain.load(i, None) for i in range(k)])


@torch.no_grad()
def _log_grids(
    reporter: Reporter,
    step: int,
    model: CycleGAN,
    samples: dict,
    device: torch.device,
    precision: str,
    diag: Diagnostics | None,
) -> None:
    """Image grids of the fixed samples, and the output-diversity check on the test ones."""
    was_training = model.training
    model.eval()
    with autocast(device, precision):
        for split, (real_A, real_B) in samples.items():
            real_A, real_B = real_A.to(device), real_B.to(device)
            fake_B = model.G_A(real_A)
            fake_A = model.G_B(real_B)
            grid_A = cycle_grid(real_A, fake_B, model.G_B(fake_B))  # A -> B -> A
            grid_B = cycle_grid(real_B, fake_A, model.G_A(fake_A))  # B -> A -> B
            reporter.grid(step, f"{split}/A2B2A", grid_A)
            reporter.grid(step, f"{split}/B2A2B", grid_B)
            if diag is not None and split == "test":
                for direction, inputs, outputs in (
                    ("AtoB", real_A, fake_B),
                    ("BtoA", real_B, fake_A),
                ):
                    ratio, warnings = diag.observe_samples(step, inputs, outputs, direction)
                    reporter.scalars(step, {f"diversity_{direction}": ratio}, "diagnostics")
                    for warning in warnings:
                        log.warning("warning: %s", warning)
                        reporter.text("diagnostics", warning)
    model.train(was_training)


OPTIONAL_ARCH_KEYS = {"input_skip": False}
"""Architecture keys added after checkpoints without them were written, with the value those
checkpoints mean."""


def same_arch(a: dict, b: dict) -> bool:
    """Whether two recorded architectures are the same, reading a missing optional key as its
    default (so checkpoints written before the key existed still resume)."""

    def full(arch: dict) -> dict:
        return {part: {**OPTIONAL_ARCH_KEYS, **spec} if part == "generator" else spec
                for part, spec in arch.items()}  # fmt: skip

    return full(a) == full(b)


@dataclass
class TrainState:
    """Everything a checkpoint captures, and how to write it out and read it back."""

    net: CycleGAN
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    sched_G: torch.optim.lr_scheduler.LambdaLR
    sched_D: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    pool_A: ImagePool
    pool_B: ImagePool
    step: int = 0
    epoch: int = 0
    epoch_step: int = 0  # batches of `epoch` already consumed
    dist_info: DistInfo = field(default_factory=DistInfo)
    best: dict | None = None  # {"metric", "value", "step"} of checkpoints/best.pt

    def arch(self) -> dict:
        return {"generator": self.net.gen_arch, "discriminator": self.net.disc_arch}

    def _rank_state(self) -> dict:
        """What differs between DDP ranks: their image buffers and RNG streams."""
        return {
            "pools": {"A": self.pool_A.state_dict(), "B": self.pool_B.state_dict()},
            "rng": rng_state(),
        }

    def state_dict(self, config: dict | None = None) -> dict:
        ranks = distributed.gather_objects(self._rank_state(), self.dist_info)
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "arch": self.arch(),
            "models": {n: getattr(self.net, n).state_dict() for n in NETWORKS},
            "optimizers": {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict()},
            "schedulers": {"G": self.sched_G.state_dict(), "D": self.sched_D.state_dict()},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "pools": {"A": self.pool_A.state_dict(), "B": self.pool_B.state_dict()},
            "rng": rng_state(),
            "step": self.step,
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "config": config or {},
            "ranks": ranks if self.dist_info.enabled else [],
            "best": self.best,
        }

    def load_state_dict(self, ckpt: dict, path: Path) -> None:
        if not same_arch(ckpt["arch"], self.arch()):
            raise CheckpointError(
                f"{path} was trained with another architecture ({ckpt['arch']['generator']}): "
                "resume with the model/discriminator/dataset options it was trained with"
            )
        for name in NETWORKS:
            load_state(getattr(self.net, name), ckpt["models"][name], name, path)
        self.opt_G.load_state_dict(ckpt["optimizers"]["G"])
        self.opt_D.load_state_dict(ckpt["optimizers"]["D"])
        self.sched_G.load_state_dict(ckpt["schedulers"]["G"])
        self.sched_D.load_state_dict(ckpt["schedulers"]["D"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        own = ckpt["pools"], ckpt["rng"]
        ranks = ckpt.get("ranks") or []
        if self.dist_info.enabled and len(ranks) == self.dist_info.world_size:
            own = ranks[self.dist_info.rank]["pools"], ranks[self.dist_info.rank]["rng"]
        elif self.dist_info.enabled and self.dist_info.rank > 0:
            log.warning(
                "rank %d: the checkpoint has no state for %d ranks; using rank 0's image buffers",
                self.dist_info.rank, self.dist_info.world_size,
            )  # fmt: skip
        self.pool_A.load_state_dict(own[0]["A"])
        self.pool_B.load_state_dict(own[0]["B"])
        if self.dist_info.rank == 0 or len(ranks) == self.dist_info.world_size:
            set_rng_state(own[1])
        self.step, self.epoch, self.epoch_step = ckpt["step"], ckpt["epoch"], ckpt["epoch_step"]
        self.best = ckpt.get("best")

    def save(self, path: Path, config: dict | None = None) -> None:
        """Write a checkpoint atomically; refuse to write weights that are not finite."""
        for name in NETWORKS:
            if not all(torch.isfinite(p).all() for p in getattr(self.net, name).parameters()):
                raise TrainingError(
                    f"the weights of {name} are not finite at step {self.step}; {path} is left "
                    "as it was: resume=auto from it with a lower train.lr"
                )
        state = self.state_dict(config)  # a collective under DDP: every rank gets here
        if self.dist_info.is_main:
            save_atomic(state, path)

    def scale_lr(self, factor: float) -> None:
        """Multiply the base learning rates (the schedule's factor still applies on top)."""
        for sched in (self.sched_G, self.sched_D):
            sched.base_lrs = [lr * factor for lr in sched.base_lrs]
            for group, base in zip(sched.optimizer.param_groups, sched.base_lrs, strict=True):
                group["lr"] = base * sched.lr_lambdas[0](self.step)


def build_training(
    *,
    model: dict,
    discriminator: dict,
    loss: dict,
    channels: int,
    device: torch.device,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    schedule: Callable[[int], float] = lambda step: 1.0,
    pool_size: int = 50,
    seed: int = 0,
    precision: str = "fp32",
    fuse_passes: bool = True,
    channels_last: bool = False,
    dist_info: DistInfo | None = None,
) -> tuple[TrainState, CycleGANLoss]:
    """The networks (initialised), objective, optimizers, LR schedulers, scaler and image
    buffers of a run, from the config sections as plain dicts.

    The training loop and the benchmarks in scripts/ build through here, so a benchmark times
    exactly what training runs. Initialisation draws from the global RNG: seed it first.
    """
    di = dist_info or DistInfo()
    net = CycleGAN(generator_arch(model, channels), discriminator_arch(discriminator, channels))
    net.init_weights(
        (model.get("init_type", "normal"), model.get("init_gain", 0.02)),
        (discriminator.get("init_type", "normal"), discriminator.get("init_gain", 0.02)),
    )
    if di.enabled and device.type == "cuda":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)  # no-op without batch norm
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    objective = CycleGANLoss(
        gan_mode=loss["name"],
        lambda_cycle=loss["lambda_cycle"],
        lambda_identity=loss["lambda_identity"],
        lambda_gp=loss["lambda_gp"],
        # batch norm mixes the samples of a batch, so only fuse calls without it
        fuse_generators=fuse_passes and model.get("norm") != "batch",
        fuse_discriminators=fuse_passes and discriminator.get("norm") != "batch",
    )
    g_params = [p for g in net.generators() for p in g.parameters()]
    d_params = [p for d in net.discriminators() for p in d.parameters()]
    # fused: one kernel per step for all parameters instead of a handful of passes over them
    opt_G = torch.optim.Adam(g_params, lr=lr, betas=betas, fused=True)
    opt_D = torch.optim.Adam(d_params, lr=lr, betas=betas, fused=True)
    state = TrainState(
        net=net,
        opt_G=opt_G,
        opt_D=opt_D,
        sched_G=torch.optim.lr_scheduler.LambdaLR(opt_G, schedule),
        sched_D=torch.optim.lr_scheduler.LambdaLR(opt_D, schedule),
        scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        pool_A=ImagePool(pool_size, seed=seed + 1 + 1000 * di.rank),  # per-rank buffers
        pool_B=ImagePool(pool_size, seed=seed + 2 + 1000 * di.rank),
        dist_info=di,
    )
    return state, objective


def train(
    *,
    run_dir: Path,
    dataset: dict,
    model: dict,
    discriminator: dict,
    loss: dict,
    batch_size: int = 1,
    n_epochs: int = 100,
    n_epochs_decay: int = 100,
    max_steps: int | None = None,
    lr: float = 2e-4,
    beta1: float = 0.5,
    beta2: float = 0.999,
    pool_size: int = 50,
    num_workers: int = 2,
    log_every: int = 50,
    image_every: int = 500,
    checkpoint_every: int = 1000,
    num_samples: int = 4,
    progress: bool = True,
    fuse_passes: bool = True,
    diagnostics: bool = True,
    on_nonfinite: str = "stop",
    rollback_lr_factor: float = 0.5,
    max_rollbacks: int = 3,
    channels_last: bool = False,
    compile: bool = False,
    eval_every: int = 0,
    eval_metric: str = "fid_AtoB",
    eval_features: str = "classifier",
    eval_max_images: int | None = 200,
    eval_c2st: bool = False,
    seed: int = 0,
    device: str = "auto",
    precision: str = "fp32",
    resume: str | None = None,
    config: dict | None = None,
    dist_info: DistInfo | None = None,
) -> Path:
    """Train a CycleGAN and return the path of its latest checkpoint.

    Args:
        run_dir: where checkpoints/, tb/ (TensorBoard), samples/ and config.yaml go.
        dataset, model, discriminator, loss: the config sections as plain dicts.
        resume: None (start fresh), "auto" (continue from run_dir's latest checkpoint if there
            is one) or the path of a checkpoint to continue from.
        config: the whole resolved config, stored in every checkpoint.
        dist_info: rank and world size under torchrun (DistributedDataParallel); None = one process.
        The other arguments are the `train.*` options, documented in gantrans.config.
    """
    di = dist_info or DistInfo()
    dev = resolve_device(device)
    precision = resolve_precision(dev, precision)
    check_precision(dev, precision)
    if di.enabled and dev.type == "cuda":
        dev = torch.device("cuda", di.local_rank)  # one GPU per process
    latest_path = run_dir / "checkpoints" / LATEST

    # ---- what to resume from -------------------------------------------------------------
    resume_path: Path | None = None
    if resume == "auto":
        resume_path = distributed.broadcast_object(find_latest(run_dir), di)
    elif resume:
        resume_path = Path(resume)
        if not resume_path.is_file():
            raise CheckpointError(
                f"resume={resume}: no such checkpoint file (use resume=auto or a .pt path)"
            )
    elif distributed.broadcast_object(latest_path.exists(), di):
        raise ConfigError(
            f"{run_dir} already holds a checkpoint: pass resume=auto to continue that run, "
            "or choose a new hydra.run.dir"
        )

    # ---- data ----------------------------------------------------------------------------
    torch.manual_seed(seed)
    channels = int(dataset["channels"])
    train_A, train_B = build_domains(dataset, "train", channels)
    test_A, test_B = build_domains(dataset, "test", channels)
    data = UnpairedDataset(train_A, train_B, augment=True)
    global_batch = batch_size * di.world_size  # images per domain per step, all ranks together
    steps_per_epoch = len(data) // global_batch
    if steps_per_epoch == 0:
        raise ConfigError(
            f"train.batch_size={batch_size} x {di.world_size} process(es) is larger than the dataset "
            f"({len(data)} images per epoch)"
        )
    total_steps = (n_epochs + n_epochs_decay) * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    sampler = UnpairedSampler(
        len(train_A), len(train_B), seed=seed, rank=di.rank, world_size=di.world_size
    )
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=dev.type == "cuda",
        drop_last=True,
        # a private generator: creating the iterator must not consume the global RNG, or a
        # resumed run would draw different dropout masks than an uninterrupted one
        generator=torch.Generator().manual_seed(seed),
    )

    # ---- networks, losses, optimizers ----------------------------------------------------
    def schedule(s: int) -> float:
        return lr_factor(s, steps_per_epoch, n_epochs, n_epochs_decay)

    st, objective = build_training(
        model=model, discriminator=discriminator, loss=loss, channels=channels, device=dev,
        lr=lr, betas=(beta1, beta2), schedule=schedule, pool_size=pool_size, seed=seed,
        precision=precision, fuse_passes=fuse_passes, channels_last=channels_last, dist_info=di,
    )  # fmt: skip
    net, opt_G, opt_D = st.net, st.opt_G, st.opt_D
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = (
            True  # fixed image sizes: let cuDNN pick its fastest kernels
        )
    if di.rank > 0:
        torch.manual_seed(seed + 1000 * di.rank)  # same initial weights, own dropout/penalty draws
    critic_steps = int(loss.get("critic_steps", 1))
    generators, discriminators = objective.pairs(net)
    if di.enabled:  # gradients of each phase are averaged across ranks during backward
        ids = [dev.index] if dev.type == "cuda" else None
        generators = DistributedDataParallel(generators, device_ids=ids)
        discriminators = DistributedDataParallel(discriminators, device_ids=ids)
    if compile:  # after DDP, as PyTorch recommends, so DDP's bucketing sees the graph breaks
        generators, discriminators = torch.compile(generators), torch.compile(discriminators)
    if resume_path is not None:
        st.load_state_dict(load_checkpoint(resume_path, map_location=dev), resume_path)
        log.info("resumed from %s at step %d (epoch %d)", resume_path, st.step, st.epoch)
    elif resume == "auto":
        log.info("resume=auto: no checkpoint in %s yet, starting a new run", run_dir)
    if on_nonfinite == "rollback" and not distributed.broadcast_object(latest_path.exists(), di):
        st.save(latest_path, config)  # something to roll back to before the first checkpoint

    # ---- reporting -----------------------------------------------------------------------
    reporter = Reporter(
        run_dir, purge_step=st.step if resume_path is not None else None, enabled=di.is_main
    )
    samples = {
        "train": (_fixed_samples(train_A, num_samples), _fixed_samples(train_B, num_samples)),
        "test": (_fixed_samples(test_A, num_samples), _fixed_samples(test_B, num_samples)),
    }
    diag = Diagnostics(gan_mode=loss["name"]) if diagnostics and di.is_main else None
    evaluator = None
    if eval_every and di.is_main:
        from gantrans.evaluate import Evaluator
        from gantrans.metric_names import LOWER_IS_BETTER

        evaluator = Evaluator(
            dataset, channels, dev, features=eval_features, max_images=eval_max_images,
            seed=seed, c2st=eval_c2st, progress=progress,
        )  # fmt: skip

    def evaluate_and_keep_best() -> None:
        """Score the test split (rank 0), log it, and write best.pt when the metric improves."""
        improved = False
        if evaluator is not None:
            scores = evaluator(net.G_A, net.G_B)
            judge_acc = evaluator.judge_info[0]["test_balanced_acc"]
            reporter.scalars(st.step, {**scores, "judge_balanced_acc": judge_acc}, "eval")
            value = scores[eval_metric]
            lower = LOWER_IS_BETTER[eval_metric]
            best = st.best["value"] if st.best else None
            improved = best is None or (value < best if lower else value > best)
            log.info(
                "evaluation at step %d: %s = %.4g%s; classified as the target: A->B %.1f%%, "
                "B->A %.1f%% (judge: %.1f%% balanced accuracy on real test images)",
                st.step, eval_metric, value,
                " (best so far)" if improved else f" (best {best:.4g})",
                100 * scores["domain_acc_AtoB"], 100 * scores["domain_acc_BtoA"], 100 * judge_acc,
            )  # fmt: skip
            if improved:
                st.best = {"metric": eval_metric, "value": value, "step": st.step}
        if distributed.broadcast_object(improved, di):
            st.best = distributed.broadcast_object(st.best, di)
            st.save(latest_path.with_name("best.pt"), config)

    log.info(
        "run dir: %s\ndevice: %s, precision %s | data: %d A + %d B images, %d steps/epoch, "
        "%d steps in all | generator %.2fM params%s",
        run_dir, dev, precision, len(train_A), len(train_B), steps_per_epoch, total_steps,
        sum(p.numel() for p in net.G_A.parameters()) / 1e6,
        f" | {di.world_size} processes (DDP), {global_batch} images per step" if di.enabled else "",
    )  # fmt: skip
    means = RunningMeans()
    bar = tqdm(
        total=total_steps,
        initial=st.step,
        disable=not (progress and di.is_main),
        unit="step",
        dynamic_ncols=True,
    )
    t_last, step_last = time.perf_counter(), st.step
    rollbacks = 0
    net.train()

    # ---- the loop --------------------------------------------------------------------------
    with StopRequest() as stop:
        while st.step < total_steps and stop.signal_name is None:
            sampler.set_epoch(st.epoch, start=st.epoch_step * global_batch)
            for batch in _batches(loader, latest_path):
                # (N, C, H, W) in [-1, 1]
                real_A = batch["A"].to(dev, non_blocking=True, memory_format=layout)
                real_B = batch["B"].to(dev, non_blocking=True, memory_format=layout)
                try:
                    terms = _train_step(
                        st, objective, (generators, discriminators), real_A, real_B, dev, precision,
                        critic_steps,
                    )  # fmt: skip
                except torch.OutOfMemoryError as exc:
                    raise TrainingError(
                        f"out of memory at step {st.step + 1} (train.batch_size={batch_size}): "
                        "lower train.batch_size or the image size (dataset.crop_size or "
                        "dataset.image_size), or use precision=bf16 (fp16 on CUDA)"
                    ) from exc

                bad = [k for k, v in terms.items() if not torch.isfinite(v).all()]
                if di.enabled:  # every rank must take the same branch, or the collectives hang
                    stop_any, bad_any = distributed.any_rank(
                        [stop.signal_name is not None, bool(bad)], di, dev
                    )
                    if stop_any and stop.signal_name is None:
                        stop.signal_name = "SIGTERM"  # another rank was told to stop
                    if bad_any and not bad:
                        bad = ["(on another rank)"]
                if bad:  # never let a non-finite state reach a checkpoint
                    where = f"loss {', '.join(bad)} became non-finite at step {st.step + 1}"
                    if on_nonfinite != "rollback" or rollbacks >= max_rollbacks:
                        raise TrainingError(
                            f"{where}: lower train.lr, use precision=fp32, or set "
                            f"train.on_nonfinite=rollback; the last good checkpoint is {latest_path}"
                        )
                    rollbacks += 1
                    st.load_state_dict(load_checkpoint(latest_path, map_location=dev), latest_path)
                    st.scale_lr(rollback_lr_factor)
                    log.warning(
                        "%s: rolled back to step %d with the learning rate x%g (rollback %d of %d)",
                        where, st.step, rollback_lr_factor, rollbacks, max_rollbacks,
                    )  # fmt: skip
                    reporter.text("diagnostics", where)
                    bar.n = st.step
                    means.reset()
                    break  # restart the epoch's data at the restored position
                st.step += 1
                st.epoch_step += 1
                means.add(terms)
                bar.update(1)

                if st.step % log_every == 0 or st.step == total_steps:
                    values = means.means()
                    means.reset()
                    now = time.perf_counter()
                    reporter.scalars(st.step, values, "loss")
                    lrs = {"G": opt_G.param_groups[0]["lr"], "D": opt_D.param_groups[0]["lr"]}
                    reporter.scalars(st.step, lrs, "lr")
                    rate = (st.step - step_last) * global_batch / max(now - t_last, 1e-9)
                    reporter.scalars(st.step, {"images_per_sec": rate, "epoch": st.epoch}, "speed")
                    t_last, step_last = now, st.step
                    for warning in diag.observe(st.step, values) if diag else []:
                        log.warning("warning: %s", warning)
                        reporter.text("diagnostics", warning)
                    bar.set_postfix(
                        {
                            k: f"{values[k]:.3f}"
                            for k in ("G", "D_A", "D_B", "cycle_A")
                            if k in values
                        },
                        refresh=False,
                    )
                if (st.step % image_every == 0 or st.step == total_steps) and di.is_main:
                    _log_grids(reporter, st.step, net, samples, dev, precision, diag)
                if st.epoch_step == steps_per_epoch:
                    st.epoch, st.epoch_step = st.epoch + 1, 0
                    if eval_every and (st.epoch % eval_every == 0 or st.step == total_steps):
                        evaluate_and_keep_best()
                    st.save(latest_path, config)
                elif st.step % checkpoint_every == 0 or st.step == total_steps:
                    if eval_every and st.step == total_steps:
                        evaluate_and_keep_best()
                    st.save(latest_path, config)
                if st.step >= total_steps or stop.signal_name is not None:
                    break
        if stop.signal_name is not None:
            st.save(latest_path, config)
    bar.close()
    reporter.close()

    if stop.signal_name is not None:
        log.warning(
            "stopped by %s at step %d/%d; checkpoint %s\ncontinue with: gantrans train "
            "hydra.run.dir=%s resume=auto (and the same overrides)",
            stop.signal_name, st.step, total_steps, latest_path, run_dir,
        )  # fmt: skip
        raise SystemExit(130 if stop.signal_name == "SIGINT" else 143)
    log.info("done: %d steps; checkpoint %s", st.step, latest_path)
    planned = (n_epochs + n_epochs_decay) * steps_per_epoch
    if max_steps is not None and st.step == max_steps < planned:
        log.info(
            "stopped at train.max_steps=%d; raise it and pass resume=auto to continue", max_steps
        )
    return latest_path


def _batches(loader: torch.utils.data.DataLoader, latest_path: Path):
    """Iterate the loader, turning a killed worker process into one clear line."""
    try:
        yield from loader
    except RuntimeError as exc:
        if "DataLoader worker" not in str(exc):
            raise
        raise TrainingError(
            f"a data-loading worker died ({str(exc).splitlines()[0]}): often the system ran out "
            f"of memory; lower train.num_workers, then resume=auto from {latest_path}"
        ) from exc


def _train_step(
    st: TrainState,
    objective: CycleGANLoss,
    pairs: tuple[torch.nn.Module, torch.nn.Module],
    real_A: torch.Tensor,
    real_B: torch.Tensor,
    dev: torch.device,
    precision: str,
    critic_steps: int,
) -> dict[str, torch.Tensor]:
    """One optimisation step of both phases; returns the detached loss terms."""
    net, scaler = st.net, st.scaler
    terms: dict[str, torch.Tensor] = {}
    # generator phase: adversarial both ways + cycle + identity; every critic_steps batches
    if st.step % critic_steps == 0:
        st.opt_G.zero_grad(set_to_none=True)
        with autocast(dev, precision):
            g_total, g_terms, fakes = objective.generator_phase(net, real_A, real_B, pairs[0])
        scaler.scale(g_total).backward()
        scaler.step(st.opt_G)
        terms.update(g_terms, G=g_total.detach())
        fake_A, fake_B = fakes.fake_A.detach(), fakes.fake_B.detach()
    else:  # critic-only step (wgangp with critic_steps > 1): fresh fakes, no G update
        with torch.no_grad(), autocast(dev, precision):
            fake_B, fake_A = net.G_A(real_A), net.G_B(real_B)

    # discriminator phase: real versus fakes drawn from the history buffers
    st.opt_D.zero_grad(set_to_none=True)
    with autocast(dev, precision):
        d_total, d_terms = objective.discriminator_phase(
            net, real_A, real_B, st.pool_A.query(fake_A), st.pool_B.query(fake_B),
            discriminators=pairs[1],
        )  # fmt: skip
    scaler.scale(d_total).backward()
    scaler.step(st.opt_D)
    scaler.update()
    terms.update(d_terms)
    st.sched_G.step()
    st.sched_D.step()
    return terms


# what Hydra and main() write into a run directory before training starts
_STARTUP_FILES = ("train.log", "config.yaml", ".hydra/config.yaml", ".hydra/hydra.yaml",
                  ".hydra/overrides.yaml")  # fmt: skip


def discard_failed_start(run_dir: Path) -> bool:
    """Remove a run directory that a start-up error left holding nothing but start-up files.

    A mistyped path or dataset name should not leave one more timestamped folder under runs/.
    Only the files Hydra and `main` write before training are removed, and only when nothing
    else is there: a directory with a checkpoint, TensorBoard events or the user's own files
    is left as it was. Parent folders under the working directory that end up empty go too.
    Returns whether the directory was removed.
    """
    try:
        present = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
        extra_dirs = {p for p in run_dir.rglob("*") if p.is_dir() and p.name != ".hydra"}
        if extra_dirs or not present <= set(_STARTUP_FILES) or run_dir.resolve() == Path.cwd():
            return False
        for name in present:
            (run_dir / name).unlink()
        if (run_dir / ".hydra").is_dir():
            (run_dir / ".hydra").rmdir()
        run_dir.rmdir()
        cwd, parent = Path.cwd(), run_dir.resolve().parent
        while parent != cwd and cwd in parent.parents and not any(parent.iterdir()):
            parent.rmdir()  # runs/<dataset>/ and runs/, if this attempt made them
            parent = parent.parent
    except OSError:  # best effort: never turn the user's error into a different one
        return False
    return True


def main(cfg: DictConfig) -> None:
    """`gantrans train`: check the composed config, save it with the run, and train.

    Under torchrun every process runs this; rank 0 owns the run directory and tells the others.
    A user error (bad config, missing data, ...) removes the run directory Hydra made for this
    attempt if nothing but start-up files is in it.
    """
    try:
        _main(cfg)
    except GantransError:
        if distributed.env_rank() == 0:
            discard_failed_start(Path(HydraConfig.get().runtime.output_dir))
        raise


def _main(cfg: DictConfig) -> None:
    check_train_config(cfg)
    logging.captureWarnings(
        True
    )  # data warnings (skipped files, ...) go to the console and train.log
    plain = to_plain(cfg)
    di = distributed.init(plain["device"])
    try:
        run_dir = Path(distributed.broadcast_object(HydraConfig.get().runtime.output_dir, di))
        if di.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(plain))
        else:
            logging.getLogger().setLevel(logging.WARNING)  # one console voice: rank 0's
        train(
            run_dir=run_dir,
            dataset=plain["dataset"],
            model=plain["model"],
            discriminator=plain["discriminator"],
            loss=plain["loss"],
            **plain["train"],
            seed=plain["seed"],
            device=plain["device"],
            precision=plain["precision"],
            resume=plain["resume"],
            config=plain,
            dist_info=di,
        )
    finally:
        distributed.shutdown()
