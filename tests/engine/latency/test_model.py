"""The latency model over several skeletons: one predictor over all or one per skeleton, chosen by cross-validated
error; either saved and loaded back to the same predictions."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from engine.latency.model import (
    LatencyModel,
    PerSkeletonModel,
    _load,
    fit_joint,
    fit_per_skeleton,
    fit_predictor,
    save_latency_model,
)
from spaces import sample_of
from spaces.costs import cost_tables

TABLES = cost_tables(("small", "large"), (64, 128), 0.5, 19)


def measured(count: int, seed: int, large_overhead: float) -> tuple[list, np.ndarray]:
    """Genotypes of both skeletons with a latency linear in their MACs, plus a fixed overhead on large."""
    rng = random.Random(seed)
    genotypes = [sample_of(("small", "large"), rng) for _ in range(count)]
    macs = np.array([TABLES.genotype_macs(g) for g in genotypes], dtype=float)
    noise = np.random.default_rng(seed).normal(1.0, 0.01, count)
    latency = (0.5 + macs / 2e7 + np.array([large_overhead * (g.skeleton == "large") for g in genotypes])) * noise
    return genotypes, latency


@pytest.mark.parametrize("fit", [fit_joint, fit_per_skeleton])
def test_either_layout_saves_and_loads_to_the_same_predictions(tmp_path: Path, fit) -> None:
    genotypes, latency = measured(80, 0, 2.0)
    model = fit(TABLES, genotypes, latency, 0)
    save_latency_model(model, tmp_path / "predictor")
    loaded = _load(tmp_path / "predictor", TABLES)
    assert type(loaded) is type(model) and loaded.layout == model.layout
    tests, _ = measured(20, 1, 2.0)
    for a, b in zip(model.predict(tests), loaded.predict(tests)):
        assert np.array_equal(a, b)


def test_several_skeletons_choose_the_layout_by_cross_validated_error() -> None:
    genotypes, latency = measured(80, 0, 2.0)
    model = fit_predictor(TABLES, genotypes, latency, 0)
    assert set(model.errors) == {"joint", "per_skeleton"}
    assert model.layout == min(model.errors, key=model.errors.get)
    assert isinstance(model, PerSkeletonModel if model.layout == "per_skeleton" else LatencyModel)
    tests, truth = measured(40, 2, 2.0)
    predicted, lower, upper = model.predict(tests)
    assert np.median(np.abs(predicted - truth) / truth) < 0.10 and (lower <= upper).all()
    few, few_latency = measured(20, 3, 2.0)  # a fold would leave a skeleton with under 10 measurements
    assert np.isnan(fit_predictor(TABLES, few, few_latency, 0).errors["per_skeleton"])


def test_one_skeleton_fits_one_predictor_without_choosing() -> None:
    small = cost_tables(("small",), (64, 128), 0.5, 19)
    rng = random.Random(0)
    genotypes = [sample_of(("small",), rng) for _ in range(30)]
    latency = np.array([1 + small.genotype_macs(g) / 2e7 for g in genotypes])
    model = fit_predictor(small, genotypes, latency, 0)
    assert isinstance(model, LatencyModel) and model.errors == {}
