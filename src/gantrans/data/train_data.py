"""The training data of a run: batches in a resumable order, the run's length in steps and the
fixed images of its grids, assembled for the kind of data its method takes (`Method.data`:
"unpaired", "paired" or "single"; the table `TRAIN_DATA`)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from gantrans.config import to_plain
from gantrans.data import (
    PairedDataset,
    PairedSampler,
    SingleDataset,
    UnpairedDataset,
    UnpairedSampler,
    build_domain,
    build_domains,
    build_pairs,
)
from gantrans.errors import ConfigError

if TYPE_CHECKING:
    from gantrans.config import TrainConfig
    from gantrans.training.distributed import DistInfo

Batch = dict[str, torch.Tensor]  # as gantrans.methods.Batch: images by name, (N, C, H, W)


@dataclass
class TrainData:
    """The training batches of a run and its length."""

    loader: torch.utils.data.DataLoader
    sampler: UnpairedSampler
    sizes: tuple[int, ...]  # training images in A and B (one domain's: one count)
    global_batch: int  # images per domain per step, all ranks together
    steps_per_epoch: int
    total_steps: int  # this run's last step (train.max_steps caps the planned length)
    planned_steps: int  # (n_epochs + n_epochs_decay) * steps_per_epoch
    samples: dict[str, Batch]  # fixed images for the grids: {"train": {"A", "B"}, "test": ...}


def build_unpaired_data(cfg: TrainConfig, di: DistInfo, dev: torch.device) -> TrainData:
    """The training batches of an unpaired method: a random A and B per sample."""
    t, dataset, channels = cfg.train, to_plain(cfg.dataset), int(cfg.dataset.channels)
    train_A, train_B = build_domains(dataset, "train", channels)
    test_A, test_B = build_domains(dataset, "test", channels)
    data = UnpairedDataset(train_A, train_B, augment=True)
    sampler = UnpairedSampler(
        len(train_A), len(train_B), seed=cfg.seed, rank=di.rank, world_size=di.world_size
    )
    k = t.num_samples
    samples = {
        "train": {"A": _fixed_samples(train_A, k), "B": _fixed_samples(train_B, k)},
        "test": {"A": _fixed_samples(test_A, k), "B": _fixed_samples(test_B, k)},
    }
    return _train_data(cfg, di, dev, data, sampler, (len(train_A), len(train_B)), samples)


def build_single_data(cfg: TrainConfig, di: DistInfo, dev: torch.device) -> TrainData:
    """The training batches of a single-domain method: images of `dataset.domain` only
    ({"real": ...}), in the resumable order of an UnpairedSampler with one image in B."""
    t, dataset, channels = cfg.train, to_plain(cfg.dataset), int(cfg.dataset.channels)
    train = build_domain(dataset, "train", channels)
    test = build_domain(dataset, "test", channels)
    sampler = UnpairedSampler(len(train), 1, seed=cfg.seed, rank=di.rank, world_size=di.world_size)
    k = t.num_samples  # the grids: held-out real images above the generated ones
    samples = {"test": {"real": _fixed_samples(test, k)}}
    return _train_data(cfg, di, dev, SingleDataset(train), sampler, (len(train),), samples)


def _train_data(
    cfg: TrainConfig,
    di: DistInfo,
    dev: torch.device,
    data: torch.utils.data.Dataset,
    sampler: UnpairedSampler | PairedSampler,
    sizes: tuple[int, ...],
    samples: dict[str, Batch],
) -> TrainData:
    """The loader over `data` in `sampler`'s order and the run's length in steps."""
    t = cfg.train
    global_batch = t.batch_size * di.world_size
    steps_per_epoch = len(data) // global_batch
    if steps_per_epoch == 0:
        raise ConfigError(
            f"train.batch_size={t.batch_size} x {di.world_size} process(es) is larger than the "
            f"dataset ({len(data)} images per epoch)"
        )
    planned = (t.n_epochs + t.n_epochs_decay) * steps_per_epoch
    loader = torch.utils.data.DataLoader(
        data, batch_size=t.batch_size, sampler=sampler, num_workers=t.num_workers,
        persistent_workers=t.num_workers > 0, pin_memory=dev.type == "cuda", drop_last=True,
        worker_init_fn=_leave_sigterm_to_the_main_process,
        # a private generator: creating the iterator must not consume the global RNG, or a
        # resumed run would draw different dropout masks than an uninterrupted one
        generator=torch.Generator().manual_seed(cfg.seed),
    )  # fmt: skip
    return TrainData(
        loader, sampler, sizes, global_batch, steps_per_epoch,
        min(planned, t.max_steps) if t.max_steps is not None else planned, planned, samples,
    )  # fmt: skip


def build_paired_data(cfg: TrainConfig, di: DistInfo, dev: torch.device) -> TrainData:
    """The training batches of a paired method: pair i of A and B, cropped and flipped alike,
    each pair once per epoch in a random order."""
    t, dataset, channels = cfg.train, to_plain(cfg.dataset), int(cfg.dataset.channels)
    train_pairs = build_pairs(dataset, "train", channels)
    test_pairs = build_pairs(dataset, "test", channels)
    sampler = PairedSampler(len(train_pairs), seed=cfg.seed, rank=di.rank, world_size=di.world_size)
    samples = {}
    for split, pairs in (("train", train_pairs), ("test", test_pairs)):
        first = [pairs.load_pair(i) for i in range(min(t.num_samples, len(pairs)))]
        samples[split] = {
            "A": torch.stack([a for a, _ in first]),
            "B": torch.stack([b for _, b in first]),
        }
    data = PairedDataset(train_pairs, augment=True)
    sizes = (len(train_pairs), len(train_pairs))
    return _train_data(cfg, di, dev, data, sampler, sizes, samples)


def _leave_sigterm_to_the_main_process(_worker_id: int) -> None:
    """In a DataLoader worker: ignore SIGTERM. A SIGTERM sent to the whole process group (Slurm,
    `timeout`, `kill -TERM -PGID`) would otherwise kill the workers mid-step, and the main
    process would fail on the lost batch instead of finishing its step and saving; the main
    process shuts its workers down itself when it stops. (Ctrl-C's SIGINT already spares them.)"""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _fixed_samples(domain, k: int) -> torch.Tensor:
    """The first k images of a domain with test-time transforms: (k, C, H, W) in [-1, 1]."""
    return torch.stack([domain.load(i, None) for i in range(min(k, len(domain)))])


TRAIN_DATA: dict[str, Callable[[TrainConfig, DistInfo, torch.device], TrainData]] = {
    "unpaired": build_unpaired_data,
    "paired": build_paired_data,
    "single": build_single_data,
}
"""The builder of each kind of training data, by the `data` a method declares."""


def build_data(kind: str, cfg: TrainConfig, di: DistInfo, dev: torch.device) -> TrainData:
    """The training batches of a method that takes `kind` data (its `Method.data`)."""
    if kind not in TRAIN_DATA:
        raise ConfigError(f"method={cfg.method.name} needs {kind} data, which no dataset gives")
    return TRAIN_DATA[kind](cfg, di, dev)
