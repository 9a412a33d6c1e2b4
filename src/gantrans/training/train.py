"""`gantrans train`: the training loop, read top to bottom, and the command that runs it.

`train` is the loop; what it does at each point has a named function below it: `start` (data,
state, resume, reporting), `guarded_step`, `host_work_due`, `nonfinite_terms` and `recover`
(a NaN or Inf loss), `log_scalars`, `log_images`, `end_of_step` (end of epoch, checkpoints,
evaluation, best.pt) and `finish`.

The loop never waits for the device on a step that does nothing on the host: the loss terms
are averaged on the device, and whether they are finite is recorded there too (FiniteWatch);
both are read back only on the steps that log, write images or checkpoints, or stop. A NaN is
then reported with the step it appeared at, and nothing it touched reaches a checkpoint. The method being trained (gantrans.methods) is a plug-in: nothing here knows of
cycles or contrastive losses.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from gantrans.checkpoint import find_latest, latest_of, load_checkpoint, remove_interrupted_saves
from gantrans.config import TrainConfig, prepare_train_config, to_plain
from gantrans.data.train_data import TrainData, build_data
from gantrans.errors import CheckpointError, ConfigError, GantransError
from gantrans.evaluation.names import LOWER_IS_BETTER
from gantrans.methods import Batch, Terms
from gantrans.methods.registry import schema_of
from gantrans.runtime import (
    OutOfMemoryError,
    autocast,
    check_precision,
    resolve_device,
    resolve_precision,
)
from gantrans.training import distributed
from gantrans.training.diagnostics import Diagnostics
from gantrans.training.distributed import DistInfo
from gantrans.training.engine import (
    TrainingError,
    TrainState,
    build_training,
    lr_factor,
    train_step,
)
from gantrans.training.guards import FiniteWatch, StopRequest
from gantrans.training.reporting import Reporter, RunningMeans, image_rows

log = logging.getLogger("gantrans")


@dataclass
class Run:
    """One run of the loop: its config, state, data and what it reports to."""

    cfg: TrainConfig
    run_dir: Path
    record: dict  # the resolved config, written into every checkpoint
    state: TrainState
    data: TrainData
    reporter: Reporter
    bar: tqdm
    diag: Diagnostics | None = None
    evaluator: Any = None  # an evaluation.evaluator.Evaluator with train.eval_every, on rank 0
    means: RunningMeans = field(default_factory=RunningMeans)
    watch: FiniteWatch = field(default_factory=FiniteWatch)
    rollbacks: int = 0
    clock: tuple[float, int] = (0.0, 0)  # (time, step) of the last scalar log

    @property
    def latest(self) -> Path:
        return latest_of(self.run_dir)

    def save(self, path: Path | None = None) -> None:
        self.state.save(path or self.latest, self.record)


def train(cfg: TrainConfig, run_dir: Path, dist_info: DistInfo | None = None) -> Path:
    """Train `cfg.method` and return the path of its latest checkpoint.

    Args:
        cfg: The typed config (`gantrans.config.prepare_train_config`); `cfg.resume` is None
            (start fresh), "auto" (continue from run_dir's latest checkpoint if there is one) or
            the path of a checkpoint to continue from.
        run_dir: Where checkpoints/, tb/ (TensorBoard), samples/ and config.yaml go.
        dist_info: Rank and world size under torchrun (DistributedDataParallel); None = one process.
    """
    stopping = False  # a stop request, agreed on by every rank
    # the handlers are in place before the run's folders appear: a SIGTERM sent as soon as
    # tb/ exists (a scheduler, a test) stops at the first step with a checkpoint
    with StopRequest() as stop:
        run = start(cfg, run_dir, dist_info or DistInfo())
        st, data = run.state, run.data
        while st.step < data.total_steps and not stopping:
            data.sampler.set_epoch(st.epoch, start=st.epoch_step * data.global_batch)
            for batch in _batches(run):
                terms = guarded_step(run, batch)
                run.watch.add(st.step + 1, terms)  # no sync: read back when host work is due
                st.step += 1
                st.epoch_step += 1
                run.means.add(terms)
                run.bar.update(1)
                if not host_work_due(run, stop):
                    continue  # the device runs ahead: nothing here waits for it
                bad_step, bad, stopping = nonfinite_terms(run, stop)
                if bad:  # never let a non-finite state reach a log, a grid or a checkpoint
                    recover(run, bad_step, bad)
                    break  # restart the epoch's data at the restored position
                if st.step % cfg.train.log_every == 0 or st.step == data.total_steps:
                    log_scalars(run)
                if st.step % cfg.train.image_every == 0 or st.step == data.total_steps:
                    log_images(run)
                end_of_step(run)
                if st.step >= data.total_steps or stopping:
                    break
        if stopping:
            run.save()
    return finish(run, stop.signal_name if stopping else None)


def start(cfg: TrainConfig, run_dir: Path, di: DistInfo) -> Run:
    """Everything the loop needs: device, data, the state (resumed if asked), reporting."""
    dev = resolve_device(cfg.device)
    precision = resolve_precision(dev, str(cfg.precision))
    check_precision(dev, precision)
    if di.enabled and dev.type == "cuda":
        dev = torch.device("cuda", di.local_rank)  # one GPU per process
    latest = latest_of(run_dir)
    resume_path = _resume_source(cfg, run_dir, latest, di)
    if di.is_main:
        remove_interrupted_saves(latest.parent)  # a kill -9 during a save leaves its temp file
    torch.manual_seed(cfg.seed)
    data_kind = schema_of(str(cfg.method.name)).data
    data = build_data(data_kind, cfg, di, dev)
    t = cfg.train

    def schedule(step: int) -> float:
        return lr_factor(step, data.steps_per_epoch, t.n_epochs, t.n_epochs_decay)

    st = build_training(cfg, dev, schedule=schedule, dist_info=di)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = (
            True  # fixed image sizes: let cuDNN pick its fastest kernels
        )
    if di.rank > 0:
        torch.manual_seed(cfg.seed + 1000 * di.rank)  # same initial weights, own random draws
    record = to_plain(cfg)
    if resume_path is not None:
        st.load_state_dict(load_checkpoint(resume_path, map_location=dev), resume_path)
        log.info("resumed from %s at step %d (epoch %d)", resume_path, st.step, st.epoch)
    elif cfg.resume == "auto":
        log.info("resume=auto: no checkpoint in %s yet, starting a new run", run_dir)
    if str(t.on_nonfinite) == "rollback" and not distributed.broadcast_object(latest.exists(), di):
        st.save(latest, record)  # something to roll back to before the first checkpoint

    reporter = Reporter(
        run_dir, purge_step=st.step if resume_path is not None else None, enabled=di.is_main
    )
    bar = tqdm(total=data.total_steps, initial=st.step, disable=not (t.progress and di.is_main),
               unit="step", dynamic_ncols=True)  # fmt: skip
    run = Run(cfg, run_dir, record, st, data, reporter, bar, clock=(time.perf_counter(), st.step))
    if t.diagnostics and di.is_main:
        m = st.method
        run.diag = Diagnostics(gan_mode=str(cfg.loss.name), discriminators=m.discriminator_terms,
                               adversarial=m.adversarial_terms)  # fmt: skip
    if t.eval_every and di.is_main:
        # loads torchmetrics: only when evaluating
        from gantrans.evaluation.evaluator import Evaluator, EvaluatorOptions

        options = EvaluatorOptions(
            features=t.eval_features, max_images=t.eval_max_images, seed=cfg.seed,
            c2st=t.eval_c2st, progress=t.progress,
            judge_max_images=None,  # the judges learn from every training image
        )  # fmt: skip
        run.evaluator = Evaluator(to_plain(cfg.dataset), int(cfg.dataset.channels), dev, options)
    sizes = ", ".join(
        f"{name} {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M"
        for name, net in st.method.networks().items()
    )
    images = (
        f"{data.sizes[0]} A + {data.sizes[1]} B images"
        if len(data.sizes) == 2
        else f"{data.sizes[0]} images of domain {cfg.dataset.domain}"
    ) + (" (aligned pairs)" if data_kind == "paired" else "")
    log.info(
        "run dir: %s\nmethod %s | device: %s, precision %s | data: %s, "
        "%d steps/epoch, %d steps in all | parameters: %s%s",
        run_dir, st.method.name, dev, precision, images, data.steps_per_epoch,
        data.total_steps, sizes,
        f" | {di.world_size} processes (DDP), {data.global_batch} images per step" if di.enabled else "",
    )  # fmt: skip
    st.method.train()
    return run


def _resume_source(cfg: TrainConfig, run_dir: Path, latest: Path, di: DistInfo) -> Path | None:
    """The checkpoint to continue from, if any; refuses to overwrite a run by accident."""
    if cfg.resume == "auto":
        return distributed.broadcast_object(find_latest(run_dir), di)
    if cfg.resume:
        path = Path(cfg.resume)
        if not path.is_file():
            raise CheckpointError(
                f"resume={cfg.resume}: no such checkpoint file (use resume=auto or a .pt path)"
            )
        return path
    if distributed.broadcast_object(latest.exists(), di):
        raise ConfigError(
            f"{run_dir} already holds a checkpoint: pass resume=auto to continue that run, "
            "or choose a new hydra.run.dir"
        )
    return None


def _batches(run: Run):
    """The loader's batches on the device, a killed worker process turned into one clear line."""
    layout = torch.channels_last if run.cfg.train.channels_last else torch.contiguous_format
    dev = run.state.device
    try:
        for batch in run.data.loader:  # (N, C, H, W) in [-1, 1] for each image entry
            yield {
                k: v.to(dev, non_blocking=True, memory_format=layout)
                for k, v in batch.items()
                if torch.is_tensor(v) and v.ndim == 4
            }
    except RuntimeError as exc:
        if "DataLoader worker" not in str(exc):
            raise
        raise TrainingError(
            f"a data-loading worker died ({str(exc).splitlines()[0]}): often the system ran out "
            f"of memory; lower train.num_workers, then resume=auto from {run.latest}"
        ) from exc


def guarded_step(run: Run, batch: Batch) -> Terms:
    """`train_step`, running out of memory turned into one line that says what to lower."""
    try:
        return train_step(run.state, batch)
    except OutOfMemoryError as exc:
        raise TrainingError(
            f"out of memory at step {run.state.step + 1} (train.batch_size="
            f"{run.cfg.train.batch_size}): lower train.batch_size or the image size "
            "(dataset.crop_size or dataset.image_size), or use precision=bf16 (fp16 on CUDA)"
        ) from exc


def host_work_due(run: Run, stop: StopRequest) -> bool:
    """Whether this step logs, writes grids or a checkpoint, or ends the run: the steps that
    read results back from the device (and so wait for it). Under DDP it depends on the step
    alone, so every rank synchronises on the same steps; a stop request is acted on at the
    next of these (within train.log_every steps)."""
    st, t, data = run.state, run.cfg.train, run.data
    return (
        st.step % t.log_every == 0
        or st.step % t.image_every == 0
        or st.step % t.checkpoint_every == 0
        or st.epoch_step == data.steps_per_epoch
        or st.step >= data.total_steps
        or (stop.signal_name is not None and not st.dist_info.enabled)
    )


def nonfinite_terms(run: Run, stop: StopRequest) -> tuple[int, list[str], bool]:
    """The first step since the last check whose loss terms were NaN or Inf, those terms, and
    whether to stop. Under DDP every rank must take the same branch or the collectives hang,
    so the ranks agree here on both."""
    found = run.watch.first_bad()
    step, bad = found if found is not None else (run.state.step, [])
    stopping = stop.signal_name is not None
    di = run.state.dist_info
    if di.enabled:
        stop_any, bad_any = distributed.any_rank([stopping, bool(bad)], di, run.state.device)
        if stop_any and not stopping:
            stop.signal_name = "SIGTERM"  # another rank was told to stop
        stopping = stop_any
        if bad_any and not bad:
            bad = ["(on another rank)"]
    return step, bad, stopping


def recover(run: Run, bad_step: int, bad: list[str]) -> None:
    """Stop with one line, or (train.on_nonfinite=rollback) go back to the last checkpoint with
    a lower learning rate."""
    t, st = run.cfg.train, run.state
    where = f"loss {', '.join(bad)} became non-finite at step {bad_step}"
    if str(t.on_nonfinite) != "rollback" or run.rollbacks >= t.max_rollbacks:
        raise TrainingError(
            f"{where}: lower train.lr, use precision=fp32, or set train.on_nonfinite=rollback; "
            f"the last good checkpoint is {run.latest}"
        )
    run.rollbacks += 1
    st.load_state_dict(load_checkpoint(run.latest, map_location=st.device), run.latest)
    st.scale_lr(t.rollback_lr_factor)
    log.warning(
        "%s: rolled back to step %d with the learning rate x%g (rollback %d of %d)",
        where, st.step, t.rollback_lr_factor, run.rollbacks, t.max_rollbacks,
    )  # fmt: skip
    run.reporter.text("diagnostics", where)
    run.bar.n = st.step
    run.means.reset()
    run.watch.reset()


def log_scalars(run: Run) -> None:
    """The interval's mean loss terms, learning rates and speed; the diagnostics' warnings."""
    st, values = run.state, run.means.means()
    run.means.reset()
    now, (then, step_then) = time.perf_counter(), run.clock
    run.reporter.scalars(st.step, values, "loss")
    run.reporter.scalars(st.step, st.learning_rates(), "lr")
    rate = (st.step - step_then) * run.data.global_batch / max(now - then, 1e-9)
    run.reporter.scalars(st.step, {"images_per_sec": rate, "epoch": st.epoch}, "speed")
    run.clock = now, st.step
    for warning in run.diag.observe(st.step, values) if run.diag else []:
        _warn(run, warning)
    shown = {k: f"{values[k]:.3f}" for k in st.method.progress_terms if k in values}
    run.bar.set_postfix(shown, refresh=False)


@torch.no_grad()
def log_images(run: Run) -> None:
    """Grids of the fixed samples (rank 0), and the output-diversity check on the test ones."""
    if not run.state.dist_info.is_main:
        return
    st, method = run.state, run.state.method
    was_training = method.training
    method.eval()
    with autocast(st.device, st.precision), st.averaged():
        for split, real in run.data.samples.items():
            real = {d: x.to(st.device) for d, x in real.items()}
            for name, rows in method.grids(real).items():
                run.reporter.grid(st.step, f"{split}/{name}", image_rows(rows))
            for direction, rows in method.mask_grids(real).items():
                run.reporter.grid(st.step, f"{split}/mask_{direction}", image_rows(rows))
            if run.diag is None or split != "test":
                continue
            for direction in method.directions:
                inputs = real[direction[0]]  # AtoB translates A
                outputs = method.translator(direction)(inputs)
                ratio, warnings = run.diag.observe_samples(st.step, inputs, outputs, direction)
                run.reporter.scalars(st.step, {f"diversity_{direction}": ratio}, "diagnostics")
                for warning in warnings:
                    _warn(run, warning)
    method.train(was_training)


def _warn(run: Run, warning: str) -> None:
    log.warning("warning: %s", warning)
    run.reporter.text("diagnostics", warning)


def end_of_step(run: Run) -> None:
    """At the end of an epoch: evaluation when due, then a checkpoint; else a checkpoint every
    train.checkpoint_every steps and at the last step (with the final evaluation)."""
    st, t, last = run.state, run.cfg.train, run.data.total_steps
    if st.epoch_step == run.data.steps_per_epoch:
        st.epoch, st.epoch_step = st.epoch + 1, 0
        if t.eval_every and (st.epoch % t.eval_every == 0 or st.step == last):
            evaluate_and_keep_best(run)
        run.save()
    elif st.step % t.checkpoint_every == 0 or st.step == last:
        if t.eval_every and st.step == last:
            evaluate_and_keep_best(run)
        run.save()


def evaluate_and_keep_best(run: Run) -> None:
    """Score the test split (rank 0), log it, and write best.pt when the metric improves."""
    st, metric, improved = run.state, run.cfg.train.eval_metric, False
    if run.evaluator is not None:
        method = st.method
        with st.averaged():
            scores, _ = run.evaluator.run({d: method.translator(d) for d in method.directions})
        accuracies = [j["test_balanced_acc"] for j in run.evaluator.judge_info]
        run.reporter.scalars(st.step, {**scores, "judge_balanced_acc": accuracies[0]}, "eval")
        value, best = scores[metric], (st.best["value"] if st.best else None)
        lower = LOWER_IS_BETTER[metric]
        improved = best is None or (value < best if lower else value > best)
        targets = ", ".join(
            f"{d[0]}->{d[-1]} {100 * scores[f'panel_domain_acc_{d}']:.1f}% (judges "
            f"{100 * scores[f'panel_min_domain_acc_{d}']:.1f}-"
            f"{100 * scores[f'panel_max_domain_acc_{d}']:.1f}%)"
            for d in method.directions
        )
        log.info(
            "evaluation at step %d: %s = %.4g%s; classified as the target by the panel's mean: "
            "%s; judges' balanced accuracy on real test images: %s",
            st.step, metric, value, " (best so far)" if improved else f" (best {best:.4g})",
            targets, ", ".join(f"{100 * a:.1f}%" for a in accuracies),
        )  # fmt: skip
        if improved:
            st.best = {"metric": metric, "value": value, "step": st.step}
    if distributed.broadcast_object(improved, st.dist_info):
        st.best = distributed.broadcast_object(st.best, st.dist_info)
        run.save(run.latest.with_name("best.pt"))


def finish(run: Run, stopped_by: str | None) -> Path:
    """Close the logs; after a stop request, say how to resume and exit 130 (SIGINT) or 143."""
    run.bar.close()
    run.reporter.close()
    st, t = run.state, run.cfg.train
    if stopped_by is not None:
        log.warning(
            "stopped by %s at step %d/%d; checkpoint %s\ncontinue with: gantrans train "
            "hydra.run.dir=%s resume=auto (and the same overrides)",
            stopped_by, st.step, run.data.total_steps, run.latest, run.run_dir,
        )  # fmt: skip
        raise SystemExit(130 if stopped_by == "SIGINT" else 143)
    log.info("done: %d steps; checkpoint %s", st.step, run.latest)
    if t.max_steps is not None and st.step == t.max_steps < run.data.planned_steps:
        log.info(
            "stopped at train.max_steps=%d; raise it and pass resume=auto to continue", t.max_steps
        )
    return run.latest


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
    typed = prepare_train_config(cfg)  # checks, and fills the method's defaults into cfg too
    logging.captureWarnings(True)  # data warnings (skipped files, ...) go to the console and log
    di = distributed.init(typed.device)
    try:
        run_dir = Path(distributed.broadcast_object(HydraConfig.get().runtime.output_dir, di))
        if di.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(to_plain(cfg)))
        else:
            logging.getLogger().setLevel(logging.WARNING)  # one console voice: rank 0's
        train(typed, run_dir, di)
    finally:
        distributed.shutdown()
