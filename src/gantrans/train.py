"""The CycleGAN training loop: one function, read top to bottom, every knob an argument."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

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
from gantrans.errors import CheckpointError, ConfigError, GantransError
from gantrans.image_pool import ImagePool
from gantrans.reporting import Reporter, RunningMeans, cycle_grid
from gantrans.runtime import autocast, resolve_device

log = logging.getLogger("gantrans")


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
    reporter: Reporter, step: int, model: CycleGAN, samples: dict, device, precision
) -> None:
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
    model.train(was_training)


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
    seed: int = 0,
    device: str = "auto",
    precision: str = "fp32",
    resume: str | None = None,
    config: dict | None = None,
) -> Path:
    """Train a CycleGAN and return the path of its latest checkpoint.

    Args:
        run_dir: where checkpoints/, tb/ (TensorBoard), samples/ and config.yaml go.
        dataset, model, discriminator, loss: the config sections as plain dicts.
        resume: None (start fresh), "auto" (continue from run_dir's latest checkpoint if there
            is one) or the path of a checkpoint to continue from.
        config: the whole resolved config, stored in every checkpoint.
        The other arguments are the `train.*` options, documented in gantrans.config.
    """
    dev = resolve_device(device)
    ckpt_dir = run_dir / "checkpoints"
    latest_path = ckpt_dir / LATEST

    # ---- what to resume from -------------------------------------------------------------
    resume_path: Path | None = None
    if resume == "auto":
        resume_path = find_latest(run_dir)
    elif resume:
        resume_path = Path(resume)
        if not resume_path.is_file():
            raise CheckpointError(
                f"resume={resume}: no such checkpoint file (use resume=auto or a .pt path)"
            )
    elif latest_path.exists():
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
    steps_per_epoch = len(data) // batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"train.batch_size={batch_size} is larger than the dataset ({len(data)} images per epoch)"
        )
    total_steps = (n_epochs + n_epochs_decay) * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    sampler = UnpairedSampler(len(train_A), len(train_B), seed=seed)
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
    gen_arch = generator_arch(model, channels)
    disc_arch = discriminator_arch(discriminator, channels)
    net = CycleGAN(gen_arch, disc_arch)
    net.init_weights(
        (model.get("init_type", "normal"), model.get("init_gain", 0.02)),
        (discriminator.get("init_type", "normal"), discriminator.get("init_gain", 0.02)),
    )
    net.to(dev)
    objective = CycleGANLoss(
        gan_mode=loss["name"],
        lambda_cycle=loss["lambda_cycle"],
        lambda_identity=loss["lambda_identity"],
        lambda_gp=loss["lambda_gp"],
    )
    critic_steps = int(loss.get("critic_steps", 1))
    g_params = [p for g in net.generators() for p in g.parameters()]
    d_params = [p for d in net.discriminators() for p in d.parameters()]
    opt_G = torch.optim.Adam(g_params, lr=lr, betas=(beta1, beta2))
    opt_D = torch.optim.Adam(d_params, lr=lr, betas=(beta1, beta2))

    def schedule(s: int) -> float:
        return lr_factor(s, steps_per_epoch, n_epochs, n_epochs_decay)

    sched_G = torch.optim.lr_scheduler.LambdaLR(opt_G, schedule)
    sched_D = torch.optim.lr_scheduler.LambdaLR(opt_D, schedule)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    pool_A, pool_B = ImagePool(pool_size, seed=seed + 1), ImagePool(pool_size, seed=seed + 2)

    step, epoch, epoch_step = 0, 0, 0
    if resume_path is not None:
        ckpt = load_checkpoint(resume_path, map_location=dev)
        if ckpt["arch"] != {"generator": gen_arch, "discriminator": disc_arch}:
            raise CheckpointError(
                f"{resume_path} was trained with another architecture ({ckpt['arch']['generator']}): "
                "resume with the model/discriminator/dataset options it was trained with"
            )
        for name in ("G_A", "G_B", "D_A", "D_B"):
            load_state(getattr(net, name), ckpt["models"][name], name, resume_path)
        opt_G.load_state_dict(ckpt["optimizers"]["G"])
        opt_D.load_state_dict(ckpt["optimizers"]["D"])
        sched_G.load_state_dict(ckpt["schedulers"]["G"])
        sched_D.load_state_dict(ckpt["schedulers"]["D"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        pool_A.load_state_dict(ckpt["pools"]["A"])
        pool_B.load_state_dict(ckpt["pools"]["B"])
        set_rng_state(ckpt["rng"])
        step, epoch, epoch_step = ckpt["step"], ckpt["epoch"], ckpt["epoch_step"]
        log.info("resumed from %s at step %d (epoch %d)", resume_path, step, epoch)
    elif resume == "auto":
        log.info("resume=auto: no checkpoint in %s yet, starting a new run", run_dir)

    def save(path: Path) -> None:
        save_atomic(
            {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "arch": {"generator": gen_arch, "discriminator": disc_arch},
                "models": {n: getattr(net, n).state_dict() for n in ("G_A", "G_B", "D_A", "D_B")},
                "optimizers": {"G": opt_G.state_dict(), "D": opt_D.state_dict()},
                "schedulers": {"G": sched_G.state_dict(), "D": sched_D.state_dict()},
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "pools": {"A": pool_A.state_dict(), "B": pool_B.state_dict()},
                "rng": rng_state(),
                "step": step,
                "epoch": epoch,
                "epoch_step": epoch_step,
                "config": config or {},
            },
            path,
        )

    # ---- reporting -----------------------------------------------------------------------
    reporter = Reporter(run_dir, purge_step=step if resume_path is not None else None)
    samples = {
        "train": (_fixed_samples(train_A, num_samples), _fixed_samples(train_B, num_samples))
    }
    if test_A is not train_A:
        samples["test"] = (_fixed_samples(test_A, num_samples), _fixed_samples(test_B, num_samples))
    n_params = sum(p.numel() for p in g_params) // 2
    log.info(
        "run dir: %s\ndevice: %s, precision %s | data: %d A + %d B images, %d steps/epoch, %d steps in all "
        "| generator %.2fM params",
        run_dir,
        dev,
        precision,
        len(train_A),
        len(train_B),
        steps_per_epoch,
        total_steps,
        n_params / 1e6,
    )
    means = RunningMeans()
    bar = tqdm(
        total=total_steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True
    )
    t_last, step_last = time.perf_counter(), step
    net.train()

    # ---- the loop --------------------------------------------------------------------------
    with StopRequest() as stop:
        while step < total_steps and stop.signal_name is None:
            sampler.set_epoch(epoch, start=epoch_step * batch_size)
            for batch in loader:
                real_A = batch["A"].to(dev, non_blocking=True)  # (N, C, H, W) in [-1, 1]
                real_B = batch["B"].to(dev, non_blocking=True)

                # generator phase: adversarial both ways + cycle + identity; every critic_steps batches
                terms: dict[str, torch.Tensor] = {}
                if step % critic_steps == 0:
                    opt_G.zero_grad(set_to_none=True)
                    with autocast(dev, precision):
                        g_total, g_terms, fakes = objective.generator_phase(net, real_A, real_B)
                    scaler.scale(g_total).backward()
                    scaler.step(opt_G)
                    terms.update(g_terms, G=g_total.detach())
                    fake_A, fake_B = fakes.fake_A.detach(), fakes.fake_B.detach()
                else:  # critic-only step (wgangp with critic_steps > 1): fresh fakes, no G update
                    with torch.no_grad(), autocast(dev, precision):
                        fake_B, fake_A = net.G_A(real_A), net.G_B(real_B)

                # discriminator phase: real versus fakes drawn from the history buffers
                opt_D.zero_grad(set_to_none=True)
                with autocast(dev, precision):
                    d_total, d_terms = objective.discriminator_phase(
                        net, real_A, real_B, pool_A.query(fake_A), pool_B.query(fake_B)
                    )
                scaler.scale(d_total).backward()
                scaler.step(opt_D)
                scaler.update()
                terms.update(d_terms)
                sched_G.step()
                sched_D.step()

                bad = [k for k, v in terms.items() if not torch.isfinite(v).all()]
                if bad:  # never let a non-finite state reach a checkpoint
                    raise TrainingError(
                        f"loss {', '.join(bad)} became non-finite at step {step + 1}: lower train.lr, "
                        f"use precision=fp32, or resume=auto from the last checkpoint ({latest_path})"
                    )
                step += 1
                epoch_step += 1
                means.add(terms)
                bar.update(1)

                if step % log_every == 0 or step == total_steps:
                    values = means.means()
                    means.reset()
                    now = time.perf_counter()
                    reporter.scalars(step, values, "loss")
                    reporter.scalars(
                        step,
                        {"G": opt_G.param_groups[0]["lr"], "D": opt_D.param_groups[0]["lr"]},
                        "lr",
                    )
                    rate = (step - step_last) * batch_size / max(now - t_last, 1e-9)
                    reporter.scalars(step, {"images_per_sec": rate, "epoch": epoch}, "speed")
                    t_last, step_last = now, step
                    bar.set_postfix(
                        {
                            k: f"{values[k]:.3f}"
                            for k in ("G", "D_A", "D_B", "cycle_A")
                            if k in values
                        },
                        refresh=False,
                    )
                if step % image_every == 0 or step == total_steps:
                    _log_grids(reporter, step, net, samples, dev, precision)
                if epoch_step == steps_per_epoch:
                    epoch, epoch_step = epoch + 1, 0
                    save(latest_path)
                elif step % checkpoint_every == 0 or step == total_steps:
                    save(latest_path)
                if step >= total_steps or stop.signal_name is not None:
                    break
        if stop.signal_name is not None:
            save(latest_path)
    bar.close()
    reporter.close()

    if stop.signal_name is not None:
        log.warning(
            "stopped by %s at step %d/%d; checkpoint %s\ncontinue with: gantrans train "
            "hydra.run.dir=%s resume=auto (and the same overrides)",
            stop.signal_name,
            step,
            total_steps,
            latest_path,
            run_dir,
        )
        raise SystemExit(130 if stop.signal_name == "SIGINT" else 143)
    log.info("done: %d steps; checkpoint %s", step, latest_path)
    if (
        max_steps is not None
        and step == max_steps
        and step < (n_epochs + n_epochs_decay) * steps_per_epoch
    ):
        log.info(
            "stopped at train.max_steps=%d; raise it and pass resume=auto to continue", max_steps
        )
    return latest_path


def main(cfg: DictConfig) -> None:
    """`gantrans train`: check the composed config, save it with the run, and train."""
    check_train_config(cfg)
    logging.captureWarnings(
        True
    )  # data warnings (skipped files, ...) go to the console and train.log
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    plain = to_plain(cfg)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(plain))
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
    )
