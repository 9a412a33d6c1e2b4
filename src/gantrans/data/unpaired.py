"""Unpaired two-domain dataset and its resumable, seeded sampler of (index_a, index_b, seed) keys."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch.utils.data import Dataset, Sampler

from .transforms import derive_seed

SEED_HIGH = (1 << 63) - 1  # sample seeds are drawn from [0, SEED_HIGH)
_SAMPLER_TAG = 0x53_414D_504C  # "SAMPL"
_DOMAIN_B_TAG = 0x42  # mixes a sample seed into domain B's augmentation seed


@runtime_checkable
class DomainDataset(Protocol):
    """One domain and split of a dataset: indexed images with stable names."""

    def __len__(self) -> int:
        """Number of images."""
        ...

    def load(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Image ``index`` as (C, H, W) in [-1, 1].

        With a generator: training augmentation drawn from it; None: the deterministic
        test-time transform.
        """
        ...

    def name(self, index: int) -> str:
        """A stable identifier, e.g. the file name."""
        ...


def domain_b_seed(sample_seed: int) -> int:
    """The augmentation seed of domain B for an item whose key carries ``sample_seed``.

    Args:
        sample_seed: The key's seed (domain A's augmentation uses it directly).

    Returns:
        A different 63-bit seed, a pure function of ``sample_seed``.
    """
    return derive_seed(sample_seed, _DOMAIN_B_TAG)


class UnpairedDataset(Dataset):
    """Pairs images of two domains by explicit keys ``(index_a, index_b, sample_seed)``.

    All augmentation randomness comes from generators seeded by the key, so an item is the
    same whichever process (DataLoader worker) loads it and whenever it is loaded.
    """

    def __init__(
        self, domain_a: DomainDataset, domain_b: DomainDataset, augment: bool = True
    ) -> None:
        """Create the dataset.

        Args:
            domain_a: Domain A.
            domain_b: Domain B.
            augment: Apply training augmentation; False loads with the test-time transform.
        """
        if len(domain_a) == 0 or len(domain_b) == 0:
            raise ValueError("both domains need at least one image")
        self.domain_a = domain_a
        self.domain_b = domain_b
        self.augment = augment

    def __len__(self) -> int:
        """One epoch: max(len(a), len(b)) items."""
        return max(len(self.domain_a), len(self.domain_b))

    def __getitem__(self, key: Sequence[int] | int) -> dict:
        """Load one pair.

        Args:
            key: ``(index_a, index_b, sample_seed)`` from ``UnpairedSampler``. A plain int i is
                accepted too and means ``(i % len_a, i % len_b, i)``.

        Returns:
            ``{"A": (C, H, W) in [-1, 1], "B": (C, H, W) in [-1, 1], "A_index": int,
            "B_index": int}``.
        """
        if not isinstance(key, (tuple, list)):
            i = operator.index(key)
            index_a, index_b, sample_seed = i % len(self.domain_a), i % len(self.domain_b), i
        else:
            index_a, index_b, sample_seed = (int(k) for k in key)
        gen_a = gen_b = None
        if self.augment:
            gen_a = torch.Generator().manual_seed(sample_seed)
            gen_b = torch.Generator().manual_seed(domain_b_seed(sample_seed))
        return {
            "A": self.domain_a.load(index_a, gen_a),  # (C, H, W) in [-1, 1]
            "B": self.domain_b.load(index_b, gen_b),  # (C, H, W) in [-1, 1]
            "A_index": index_a,
            "B_index": index_b,
        }


class UnpairedSampler(Sampler):
    """Yields ``(index_a, index_b, sample_seed)`` keys for one epoch, resumable mid-epoch.

    The epoch has max(len_a, len_b) items. The larger domain (A on a tie) is walked in a random
    permutation; the other is drawn uniformly at random for each item ("unaligned" pairing).
    Every draw comes from one ``torch.Generator`` seeded by a function of (seed, epoch) only,
    and the whole epoch is drawn before slicing at ``start``, so ``sequence[start:]`` is the
    tail of the full one. With ``serial`` the indices are ``i % len_a`` and ``i % len_b``
    (seeds are still drawn).
    """

    def __init__(
        self,
        len_a: int,
        len_b: int,
        seed: int,
        epoch: int = 0,
        start: int = 0,
        serial: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """Create the sampler.

        Args:
            len_a: Number of images in domain A (>= 1).
            len_b: Number of images in domain B (>= 1).
            seed: The run seed.
            epoch: The epoch whose order to produce.
            start: Position in the epoch to start from (items already consumed).
            serial: Deterministic ``i % len`` indices instead of random ones.
            rank: This process's rank in distributed training.
            world_size: Number of processes; each takes every world_size-th key from ``start``
                (the same count on every rank), so together they cover the epoch once.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.rank = int(rank)
        self.world_size = int(world_size)
        if len_a < 1 or len_b < 1:
            raise ValueError(f"both domains need at least one image, got {len_a} and {len_b}")
        self.len_a = int(len_a)
        self.len_b = int(len_b)
        self.seed = int(seed)
        self.serial = serial
        self.epoch = 0
        self.start = 0
        self.set_epoch(epoch, start)

    @property
    def epoch_length(self) -> int:
        """Items in a full epoch: max(len_a, len_b)."""
        return max(self.len_a, self.len_b)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch to produce and the position to start from.

        Args:
            epoch: The epoch number.
            start: Items of that epoch already consumed, in [0, epoch_length].
        """
        if not 0 <= start <= self.epoch_length:
            raise ValueError(f"start must be in [0, {self.epoch_length}], got {start}")
        self.epoch = int(epoch)
        self.start = int(start)

    def keys(self) -> list[tuple[int, int, int]]:
        """The full epoch's keys (ignoring ``start``)."""
        n = self.epoch_length
        g = torch.Generator().manual_seed(derive_seed(_SAMPLER_TAG, self.seed, self.epoch))
        if self.len_a >= self.len_b:
            index_a = torch.randperm(self.len_a, generator=g)  # (n,)
            index_b = torch.randint(0, self.len_b, (n,), generator=g)  # (n,)
        else:
            index_b = torch.randperm(self.len_b, generator=g)  # (n,)
            index_a = torch.randint(0, self.len_a, (n,), generator=g)  # (n,)
        seeds = torch.randint(0, SEED_HIGH, (n,), generator=g, dtype=torch.int64)  # (n,)
        if self.serial:
            position = torch.arange(n)
            index_a, index_b = position % self.len_a, position % self.len_b
        return list(zip(index_a.tolist(), index_b.tolist(), seeds.tolist(), strict=True))

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        """Iterate over this rank's keys from position ``start``."""
        end = self.start + len(self) * self.world_size
        return iter(self.keys()[self.start + self.rank : end : self.world_size])

    def __len__(self) -> int:
        """This rank's items remaining from ``start``."""
        return (self.epoch_length - self.start) // self.world_size

    def __repr__(self) -> str:
        return (
            f"UnpairedSampler(len_a={self.len_a}, len_b={self.len_b}, seed={self.seed}, "
            f"epoch={self.epoch}, start={self.start}, serial={self.serial})"
        )
