"""Training batches that depend only on (seed, step): the same for any number of workers, ranks or restarts.

Step s of a run reads global batch s of a seeded permutation per epoch (the last incomplete batch of an epoch is
dropped); rank r of R takes the r-th slice of it, so R processes with batch B / R see exactly the samples one
process with batch B sees. Each sample's augmentation is drawn from a generator seeded by (seed, step, position),
so a run resumed at step s continues with the very batches an uninterrupted run would have used.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class SeededSamples(Dataset):
    """A dataset read by (index, seed): the raw sample of `index`, transformed with a generator seeded by `seed`."""

    def __init__(self, dataset: Dataset):
        if not (hasattr(dataset, "load") and hasattr(dataset, "transform")):
            raise TypeError(f"{type(dataset).__name__} has no load(index) / transform(image, label, rng)")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = item
        return self.dataset.transform(*self.dataset.load(index), rng=np.random.default_rng(seed))


def global_batch(size: int, batch: int, seed: int, step: int) -> list[int]:
    """Dataset indices of global batch `step`: epoch-wise seeded permutations, incomplete batches dropped."""
    per_epoch = size // batch
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    return order[position * batch:(position + 1) * batch].tolist()


class StepSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for steps start..total-1, this rank's slice of each global batch as (index, sample seed) pairs."""

    def __init__(self, size: int, batch: int, seed: int, start: int, total: int, rank: int = 0, world: int = 1):
        if batch % world:
            raise ValueError(f"train.batch_size {batch} is not divisible by the {world} processes")
        if size < batch:
            raise ValueError(f"the training set has {size} samples, fewer than train.batch_size {batch}")
        self.size, self.batch, self.seed = size, batch, seed
        self.start, self.total, self.rank, self.world = start, total, rank, world

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        local = self.batch // self.world
        for step in range(self.start, self.total):
            indices = global_batch(self.size, self.batch, self.seed, step)
            first = self.rank * local
            yield [(indices[i], (self.seed * 1_000_003 + step) * self.batch + i) for i in range(first, first + local)]


def step_batches(dataset: Dataset, batch: int, seed: int, total: int, rank: int = 0, world: int = 1,
                 num_workers: int = 0):
    """A function start_step -> iterator of (images, labels) batches for engine.train.train."""

    def batches(start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sampler = StepSampler(len(dataset), batch, seed, start, total, rank, world)
        loader = DataLoader(SeededSamples(dataset), batch_sampler=sampler, num_workers=num_workers,
                            pin_memory=torch.cuda.is_available(), persistent_workers=False)
        return iter(loader)

    return batches
