"""Which supernet paths a training step trains: uniform single path, or the sandwich rule.

Paths are drawn from a generator seeded by (seed, step), so every rank of a distributed run trains the same
paths at a step and a resumed run draws the same paths as an uninterrupted one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from spaces import Genotype, largest, sample, smallest


@dataclass(frozen=True)
class PathStep:
    """One path of a step; `teacher` marks the path whose output the others distil from (sandwich rule)."""

    genotype: Genotype
    teacher: bool = False


def step_paths(skeleton: str, strategy: str, seed: int, step: int, random_paths: int = 2) -> list[PathStep]:
    rng = random.Random(seed * 1_000_003 + step)
    if strategy == "uniform":
        return [PathStep(sample(skeleton, rng))]
    if strategy == "sandwich":
        middle = [PathStep(sample(skeleton, rng)) for _ in range(random_paths)]
        return [PathStep(largest(skeleton), teacher=True), *middle, PathStep(smallest(skeleton))]
    raise ValueError(f"unknown sampling strategy {strategy!r}; known: uniform, sandwich")
