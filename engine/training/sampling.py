"""Which supernet paths a training step trains: uniform single path, or the sandwich rule.

Paths are drawn from a generator seeded by (seed, step), so every rank of a distributed run trains the same
paths at a step and a resumed run draws the same paths as an uninterrupted one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from spaces import Genotype, largest, sample, smallest


@dataclass(frozen=True)
class PathStep:
    """One path of a step; `teacher` marks the path whose output the others distil from (sandwich rule)."""

    genotype: Genotype
    teacher: bool = False


def uniform(skeleton: str, rng: random.Random, random_paths: int) -> list[PathStep]:
    """One random path."""
    return [PathStep(sample(skeleton, rng))]


def sandwich(skeleton: str, rng: random.Random, random_paths: int) -> list[PathStep]:
    """The largest path (the teacher), `random_paths` random ones and the smallest."""
    middle = [PathStep(sample(skeleton, rng)) for _ in range(random_paths)]
    return [PathStep(largest(skeleton), teacher=True), *middle, PathStep(smallest(skeleton))]


SAMPLING: dict[str, Callable[[str, random.Random, int], list[PathStep]]] = {"uniform": uniform, "sandwich": sandwich}
"""Sampling rules by the name `train.sampling` gives."""


def step_paths(skeleton: str, strategy: str, seed: int, step: int, random_paths: int = 2) -> list[PathStep]:
    if strategy not in SAMPLING:
        raise ValueError(f"unknown sampling strategy {strategy!r}; known: {', '.join(SAMPLING)}")
    return SAMPLING[strategy](skeleton, random.Random(seed * 1_000_003 + step), random_paths)
