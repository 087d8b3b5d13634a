"""Features of genotypes for latency predictors, built from their space: one-hot candidates and per-layer costs."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spaces.costs import CostTable, CostTables
from spaces.genotype import Genotype
from spaces.space import space_of

COST_KINDS = ("macs", "params", "activations")


def _same_skeleton(genotypes: Sequence[Genotype]) -> str:
    names = {g.skeleton for g in genotypes}
    if len(names) != 1:
        raise ValueError(f"features need genotypes of one skeleton, got {sorted(names) or 'none'}")
    return names.pop()


def _same_space(genotypes: Sequence[Genotype]) -> int:
    """The number of candidates of the genotypes' one search space."""
    counts = {len(space_of(name).candidates) for name in {g.skeleton for g in genotypes}}
    if len(counts) != 1:
        raise ValueError(f"features need genotypes of one search space, got {sorted({g.skeleton for g in genotypes})}")
    return counts.pop()


def one_hot(genotypes: Sequence[Genotype], layers: int | None = None) -> np.ndarray:
    """[n, layers * candidates] indicators, layer-major: column layer * candidates + choice; `layers` (default: the
    longest genotype's) pads shorter skeletons' genotypes with zeros."""
    n_candidates = _same_space(genotypes)
    layers = max(len(g.choices) for g in genotypes) if layers is None else layers
    choices = np.array([g.choices + (-1,) * (layers - len(g.choices)) for g in genotypes])  # -1: no such layer
    rows, columns = np.nonzero(choices >= 0)
    out = np.zeros((len(genotypes), layers * n_candidates), dtype=np.float32)
    out[rows, columns * n_candidates + choices[rows, columns]] = 1.0
    return out


def one_hot_names(skeleton_name: str, layers: int) -> list[str]:
    return [f"layer{i}_{c.name}" for i in range(layers) for c in space_of(skeleton_name).candidates]


def cost_features(genotypes: Sequence[Genotype], table: CostTable | CostTables) -> np.ndarray:
    """[n, 3 * layers + 3]: per-layer MACs, parameters and output activations of the chosen candidates, then the
    network's total MACs, parameters and activations (stem, neck and head included in the MACs and parameters).
    With the tables of several skeletons: layers up to the longest skeleton's (zeros past a genotype's own), and
    one indicator column per skeleton after the totals."""
    if isinstance(table, CostTable):
        _same_skeleton(genotypes)
        table = CostTables({table.skeleton: table})
    layers = max(t.macs.shape[0] for t in table.tables.values())
    per_layer = np.zeros((len(genotypes), layers, 3), dtype=np.float64)
    totals = np.zeros((len(genotypes), 3), dtype=np.float64)
    for row, genotype in enumerate(genotypes):
        own = table.table(genotype)
        costs = own.layer_costs(genotype)
        per_layer[row, : len(costs)] = costs
        totals[row] = costs.sum(axis=0) + np.array([own.fixed_macs, own.fixed_params, 0])
    features = [per_layer.transpose(0, 2, 1).reshape(len(genotypes), -1), totals]
    if len(table.skeletons) > 1:
        features.append(np.array([[g.skeleton == name for name in table.skeletons] for g in genotypes], dtype=float))
    return np.concatenate(features, axis=1)


def cost_feature_names(layers: int) -> list[str]:
    return [f"layer{i}_{kind}" for kind in COST_KINDS for i in range(layers)] + [f"total_{k}" for k in COST_KINDS]


def lookup_features(genotypes: Sequence[Genotype], latency_ms: np.ndarray, fixed_ms: float) -> np.ndarray:
    """[n, layers + 1]: each layer's entry of a per-block latency lookup table [layers, candidates] for the chosen
    candidate, then the table's whole-network sum (fixed part included)."""
    _same_skeleton(genotypes)
    choices = np.array([g.choices for g in genotypes])
    terms = np.asarray(latency_ms, dtype=np.float64)[np.arange(choices.shape[1]), choices]
    return np.concatenate([terms, terms.sum(axis=1, keepdims=True) + fixed_ms], axis=1)
