"""Per-layer cost tables: MACs, parameters and output activations of every candidate at every position.

A genotype's MACs are then a sum of table entries plus the fixed part (stem, neck, head), which makes MACs
constraints and cost features cheap for millions of genotypes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from spaces.candidates import build_candidate
from spaces.counting import count_macs, count_params
from spaces.genotype import Genotype, smallest
from spaces.network import build
from spaces.space import skeleton, space_of


@dataclass(frozen=True)
class CostTable:
    """Arrays of shape [layers, candidates]; `fixed_*` is what the stem, neck and head add to any genotype."""

    skeleton: str
    size: tuple[int, int]
    macs: np.ndarray
    params: np.ndarray
    activations: np.ndarray
    fixed_macs: int
    fixed_params: int

    def _pick(self, table: np.ndarray, genotype: Genotype) -> np.ndarray:
        if genotype.skeleton != self.skeleton:
            raise ValueError(f"genotype of skeleton {genotype.skeleton!r} priced with a {self.skeleton!r} table")
        return table[np.arange(len(genotype.choices)), genotype.choices]

    def genotype_macs(self, genotype: Genotype) -> int:
        return self.fixed_macs + int(self._pick(self.macs, genotype).sum())

    def genotype_params(self, genotype: Genotype) -> int:
        return self.fixed_params + int(self._pick(self.params, genotype).sum())

    def layer_costs(self, genotype: Genotype) -> np.ndarray:
        """[layers, 3]: MACs, parameters and output activations of the chosen candidate at each layer."""
        return np.stack([self._pick(t, genotype) for t in (self.macs, self.params, self.activations)], axis=1)


class CostTables:
    """The cost tables of several skeletons (at one size, width and number of classes): each genotype is priced by
    its own skeleton's table."""

    def __init__(self, tables: dict[str, CostTable]):
        self.tables = dict(tables)

    @property
    def skeletons(self) -> tuple[str, ...]:
        return tuple(self.tables)

    def only(self, skeleton: str) -> "CostTables":
        """The tables of one of the skeletons."""
        return CostTables({skeleton: self.tables[skeleton]})

    def table(self, genotype: Genotype) -> CostTable:
        if genotype.skeleton not in self.tables:
            raise ValueError(f"genotype of skeleton {genotype.skeleton!r} priced with tables of "
                             f"{', '.join(self.tables)}")
        return self.tables[genotype.skeleton]

    def genotype_macs(self, genotype: Genotype) -> int:
        return self.table(genotype).genotype_macs(genotype)

    def genotype_params(self, genotype: Genotype) -> int:
        return self.table(genotype).genotype_params(genotype)

    def layer_costs(self, genotype: Genotype) -> np.ndarray:
        return self.table(genotype).layer_costs(genotype)


@lru_cache(maxsize=32)
def cost_table(skeleton_name: str, size: tuple[int, int], width: float = 1.0,
               num_classes: int | None = None) -> CostTable:
    """The cost table of a skeleton at input `size` (H, W), width multiplier and number of classes."""
    frame = skeleton(skeleton_name).scaled(width, num_classes)
    space = space_of(skeleton_name)
    shape = (frame.num_layers, len(space.candidates))
    macs, params, activations = (np.zeros(shape, dtype=np.int64) for _ in range(3))
    layers = zip(frame.layers(), frame.input_sizes(size), frame.output_sizes(size))
    for i, (spec, (h, w), (out_h, out_w)) in enumerate(layers):
        for j, candidate in enumerate(space.candidates):
            module = build_candidate(candidate, spec.c_in, spec.c_out, spec.stride, space.skip_style)
            macs[i, j] = count_macs(module, (h, w), channels=spec.c_in)
            params[i, j] = count_params(module)
            activations[i, j] = spec.c_out * out_h * out_w
    base = smallest(skeleton_name)
    network = build(base, width, num_classes)
    layer = np.arange(frame.num_layers), np.array(base.choices)
    return CostTable(
        skeleton_name, tuple(size), macs, params, activations,
        fixed_macs=count_macs(network, size) - int(macs[layer].sum()),
        fixed_params=count_params(network) - int(params[layer].sum()),
    )


def cost_tables(skeletons: tuple[str, ...], size: tuple[int, int], width: float = 1.0,
                num_classes: int | None = None) -> CostTables:
    """The cost tables of every skeleton of a run."""
    return CostTables({name: cost_table(name, size, width, num_classes) for name in skeletons})
