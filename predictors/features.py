"""Features of genotypes for latency predictors, built from their space: one-hot candidates and per-layer costs."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spaces.costs import CostTable
from spaces.genotype import Genotype
from spaces.space import space_of

COST_KINDS = ("macs", "params", "activations")


def _same_skeleton(genotypes: Sequence[Genotype]) -> str:
    names = {g.skeleton for g in genotypes}
    if len(names) != 1:
        raise ValueError(f"features need genotypes of one skeleton, got {sorted(names) or 'none'}")
    return names.pop()


def one_hot(genotypes: Sequence[Genotype]) -> np.ndarray:
    """[n, layers * candidates] indicators, layer-major: column layer * candidates + choice."""
    n_candidates = len(space_of(_same_skeleton(genotypes)).candidates)
    choices = np.array([g.choices for g in genotypes])
    out = np.zeros((len(genotypes), choices.shape[1] * n_candidates), dtype=np.float32)
    columns = np.arange(choices.shape[1]) * n_candidates + choices
    np.put_along_axis(out, columns, 1.0, axis=1)
    return out


def one_hot_names(skeleton_name: str, layers: int) -> list[str]:
    return [f"layer{i}_{c.name}" for i in range(layers) for c in space_of(skeleton_name).candidates]


def cost_features(genotypes: Sequence[Genotype], table: CostTable) -> np.ndarray:
    """[n, 3 * layers + 3]: per-layer MACs, parameters and output activations of the chosen candidates, then the
    network's total MACs, parameters and activations (stem, neck and head included in the MACs and parameters)."""
    _same_skeleton(genotypes)
    per_layer = np.stack([table.layer_costs(g) for g in genotypes]).astype(np.float64)  # [n, layers, 3]
    totals = per_layer.sum(axis=1) + np.array([table.fixed_macs, table.fixed_params, 0])
    return np.concatenate([per_layer.transpose(0, 2, 1).reshape(len(genotypes), -1), totals], axis=1)


def cost_feature_names(layers: int) -> list[str]:
    return [f"layer{i}_{kind}" for kind in COST_KINDS for i in range(layers)] + [f"total_{k}" for k in COST_KINDS]


def lookup_features(genotypes: Sequence[Genotype], latency_ms: np.ndarray, fixed_ms: float) -> np.ndarray:
    """[n, layers + 1]: each layer's entry of a per-block latency lookup table [layers, candidates] for the chosen
    candidate, then the table's whole-network sum (fixed part included)."""
    _same_skeleton(genotypes)
    choices = np.array([g.choices for g in genotypes])
    terms = np.asarray(latency_ms, dtype=np.float64)[np.arange(choices.shape[1]), choices]
    return np.concatenate([terms, terms.sum(axis=1, keepdims=True) + fixed_ms], axis=1)
