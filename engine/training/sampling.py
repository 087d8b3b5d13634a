"""Which supernet paths a training step trains: the sampling rules a supernet can be trained with.

- `uniform`: one random path per step (single-path one-shot, Guo et al. 2020).
- `sandwich`: the largest path (the teacher, in-place distillation), `paths` random ones and the smallest, every
  step (BigNAS / Once-for-All). The extremes get a whole update each step, the other paths share the rest, which
  biases the inherited ranking towards the extremes and their neighbours.
- `sandwich_rare`: the sandwich rule with the extremes on one step in `extremes_every`; the other steps train
  `paths` + 2 random paths, so every step costs as many passes.
- `fair`: strict fairness (FairNAS, Chu et al. 2021): each step trains as many paths as a layer has candidates,
  path i taking candidate perm_l[i] in layer l for an independent random permutation perm_l of each layer, so
  every candidate of every layer gets exactly one pass, and one update, per step.

Paths are drawn from a generator seeded by (seed, step), so every rank of a distributed run trains the same
paths at a step and a resumed run draws the same paths as an uninterrupted one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from spaces import Genotype, largest, sample, smallest
from spaces.space import skeleton as skeleton_of
from spaces.space import space_of


@dataclass(frozen=True)
class PathStep:
    """One path of a step; `teacher` marks the path whose output the others distil from (sandwich rules)."""

    genotype: Genotype
    teacher: bool = False


@dataclass(frozen=True)
class Rule:
    """A sampling rule's settings: random paths of a sandwich step, and how often a step holds the extremes."""

    paths: int = 2
    extremes_every: int = 4


def uniform(skeleton: str, rng: random.Random, step: int, rule: Rule) -> list[PathStep]:
    """One random path."""
    return [PathStep(sample(skeleton, rng))]


def sandwich(skeleton: str, rng: random.Random, step: int, rule: Rule) -> list[PathStep]:
    """The largest path (the teacher), `rule.paths` random ones and the smallest."""
    middle = [PathStep(sample(skeleton, rng)) for _ in range(rule.paths)]
    return [PathStep(largest(skeleton), teacher=True), *middle, PathStep(smallest(skeleton))]


def sandwich_rare(skeleton: str, rng: random.Random, step: int, rule: Rule) -> list[PathStep]:
    """The sandwich on one step in `rule.extremes_every`, as many random paths on the others."""
    if step % rule.extremes_every == 0:
        return sandwich(skeleton, rng, step, rule)
    return [PathStep(sample(skeleton, rng)) for _ in range(rule.paths + 2)]


def fair(skeleton: str, rng: random.Random, step: int, rule: Rule) -> list[PathStep]:
    """As many paths as candidates; every candidate of every layer in exactly one of them."""
    count = len(space_of(skeleton).candidates)
    columns = [rng.sample(range(count), count) for _ in range(skeleton_of(skeleton).num_layers)]
    return [PathStep(Genotype(skeleton, tuple(column[i] for column in columns))) for i in range(count)]


SAMPLING: dict[str, Callable[[str, random.Random, int, Rule], list[PathStep]]] = {
    "uniform": uniform, "sandwich": sandwich, "sandwich_rare": sandwich_rare, "fair": fair}
"""Sampling rules by the name `train.sampling` gives."""


def passes_per_step(skeleton: str, strategy: str, rule: Rule = Rule()) -> int:
    """Forward and backward passes of one step under the rule (the same on every step)."""
    return len(step_paths(skeleton, strategy, 0, 0, rule))


def step_paths(skeleton: str, strategy: str, seed: int, step: int, rule: Rule = Rule()) -> list[PathStep]:
    if strategy not in SAMPLING:
        raise ValueError(f"unknown sampling strategy {strategy!r}; known: {', '.join(SAMPLING)}")
    return SAMPLING[strategy](skeleton, random.Random(seed * 1_000_003 + step), step, rule)
