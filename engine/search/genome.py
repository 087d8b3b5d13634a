"""The search's genome: the integer genes pymoo evolves and the genotype they stand for, over one skeleton or several.

One skeleton: one gene per searchable layer, its candidate index. Several (`space.skeleton: [small, large]`): a
first gene chooses the skeleton, then one gene per layer of the longest skeleton; a genotype of a shorter skeleton
takes the first genes and leaves the others inert. Every genome therefore decodes to a valid genotype, whatever
crossover and mutation do to the skeleton gene (a child that moves to a longer skeleton makes its inert genes its
own), and genomes are told apart by the genotype they decode to, not by their inert genes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution

from spaces import Genotype, extremes, skeleton, space_of


@dataclass(frozen=True)
class Genome:
    """The genes of a run's skeletons (module docstring)."""

    skeletons: tuple[str, ...]

    @property
    def several(self) -> bool:
        return len(self.skeletons) > 1

    @cached_property
    def layers(self) -> int:
        """Layer genes: the longest skeleton's searchable layers."""
        return max(skeleton(name).num_layers for name in self.skeletons)

    @cached_property
    def names(self) -> list[str]:
        """The candidates' names (one search space for every skeleton)."""
        return [candidate.name for candidate in space_of(self.skeletons[0]).candidates]

    @property
    def choices(self) -> list[int]:
        """How many values each gene takes."""
        return [len(self.skeletons)] * self.several + [len(self.names)] * self.layers

    def decode(self, x: np.ndarray) -> Genotype:
        genes = [int(v) for v in x]
        name = self.skeletons[genes[0]] if self.several else self.skeletons[0]
        layers = genes[1:] if self.several else genes
        return Genotype(name, tuple(layers[: skeleton(name).num_layers]))

    def key(self, x: np.ndarray) -> str:
        """What tells genomes apart: the key of the genotype they decode to."""
        return self.decode(x).key

    def encode(self, genotype: Genotype) -> np.ndarray:
        """The genome of a genotype, inert genes 0."""
        layers = list(genotype.choices) + [0] * (self.layers - len(genotype.choices))
        head = [self.skeletons.index(genotype.skeleton)] if self.several else []
        return np.array(head + layers, dtype=int)

    def initial(self) -> np.ndarray:
        """The largest and smallest genotype of each skeleton, as genomes."""
        return np.array([self.encode(genotype) for genotype in extremes(self.skeletons)])

    def params(self, genotype: Genotype) -> dict[str, str]:
        """The genotype as Optuna parameters: its skeleton (with several) and its layers' candidate names."""
        head = {"skeleton": genotype.skeleton} if self.several else {}
        return {**head, **{f"layer_{i:02d}": name for i, name in enumerate(genotype.names)}}

    def distributions(self, genotype: Genotype) -> dict[str, BaseDistribution]:
        head = {"skeleton": CategoricalDistribution(list(self.skeletons))} if self.several else {}
        layers = skeleton(genotype.skeleton).num_layers
        return {**head, **{f"layer_{i:02d}": CategoricalDistribution(self.names) for i in range(layers)}}
