"""The latency model of a run: the fitted predictor (predictors.latency) over the space's features of a genotype,
giving predicted latency and its interval; fitted by the latency stage, loaded by every later one.

The features are the space's per-layer costs, with or without the candidates' one-hot columns, whichever explains
the training measurements better (the additive base's exact leave-one-out error).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.config import ExperimentConfig
from engine.files import write_json
from engine.paths import RunPaths
from predictors.features import cost_features, one_hot
from predictors.latency import LatencyRegressor, additive_loo_mape
from spaces import Genotype
from spaces.costs import CostTables, cost_tables

FEATURE_SETS = ("costs", "one-hot+costs")
FEATURES_FILE = "features.json"


def space_features(genotypes: Sequence[Genotype], costs: CostTables, feature_set: str) -> np.ndarray:
    """'costs': per-layer and total MACs, params and activations (and the skeleton, when the run has several);
    'one-hot+costs': the candidates' one-hot too (layers up to the longest skeleton's)."""
    features = cost_features(genotypes, costs)
    if feature_set != "one-hot+costs":
        return features
    layers = max(table.macs.shape[0] for table in costs.tables.values())
    return np.concatenate([one_hot(genotypes, layers), features], axis=1)


@dataclass
class LatencyModel:
    """The fitted predictor with the space's features: predicted latency and its interval per genotype."""

    regressor: LatencyRegressor
    costs: CostTables
    feature_set: str

    def features(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        return space_features(genotypes, self.costs, self.feature_set)

    def predict(self, genotypes: Sequence[Genotype]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(predicted, lower, upper) in ms."""
        X = self.features(genotypes)
        lower, upper = self.regressor.predict_interval(X)
        return self.regressor.predict(X), lower, upper


def space_costs(config: ExperimentConfig) -> CostTables:
    """The cost tables of the run's skeletons."""
    space = config.space
    return cost_tables(space.skeletons, tuple(space.input_size), space.width, space.num_classes)


def load_latency_model(config: ExperimentConfig, folder: Path | None = None) -> LatencyModel:
    """The model saved in `folder` (default: the latency stage's runs/<name>/latency/predictor/)."""
    folder = RunPaths(config.run_dir).predictor if folder is None else folder
    feature_set = json.loads((folder / FEATURES_FILE).read_text())["feature_set"]
    return LatencyModel(LatencyRegressor.load(folder), space_costs(config), feature_set)


def save_latency_model(model: LatencyModel, folder: Path) -> None:
    """The regressor's JSON files and the feature set, written beside `folder` and then moved over it."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.regressor.save(tmp)
    write_json(tmp / FEATURES_FILE, {"feature_set": model.feature_set})
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def fit_predictor(costs: CostTables, genotypes: list[Genotype], latency: np.ndarray, seed: int) -> LatencyModel:
    """The regressor on the feature set whose additive base has the lower leave-one-out error on these
    measurements (one-hot columns help on large tables and overfit small ones, see BENCHMARKS.md)."""
    feature_set = min(FEATURE_SETS, key=lambda kind: additive_loo_mape(space_features(genotypes, costs, kind),
                                                                         latency))
    model = LatencyModel(LatencyRegressor(seed=seed), costs, feature_set)
    model.regressor.fit(model.features(genotypes), latency)
    return model
