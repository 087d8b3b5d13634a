"""The latency model of a run: the fitted predictor (predictors.latency) over the space's features of a genotype,
giving predicted latency and its interval; fitted by the latency stage, loaded by every later one.

The features are the space's per-layer costs, with or without the candidates' one-hot columns, whichever explains
the training measurements better (the additive base's exact leave-one-out error). With several skeletons the model
is either one predictor over all (the skeleton among its features: `joint`) or one per skeleton (`per_skeleton`),
whichever has the lower 5-fold cross-validated MAPE on the training measurements.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.config import ExperimentConfig
from engine.files import write_json
from engine.paths import RunPaths
from predictors.features import cost_features, one_hot
from predictors.latency import MIN_ROWS, LatencyRegressor, additive_loo_mape
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
    layout = "joint"
    errors: dict[str, float] = field(default_factory=dict)  # cross-validated MAPE of each layout, when chosen

    def features(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        return space_features(genotypes, self.costs, self.feature_set)

    def predict(self, genotypes: Sequence[Genotype]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(predicted, lower, upper) in ms."""
        X = self.features(genotypes)
        lower, upper = self.regressor.predict_interval(X)
        return self.regressor.predict(X), lower, upper


@dataclass
class PerSkeletonModel:
    """One LatencyModel per skeleton; each genotype is predicted by its skeleton's."""

    models: dict[str, LatencyModel]
    costs: CostTables
    layout = "per_skeleton"
    errors: dict[str, float] = field(default_factory=dict)

    def predict(self, genotypes: Sequence[Genotype]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = np.empty((3, len(genotypes)))
        for name, model in self.models.items():
            rows = [i for i, genotype in enumerate(genotypes) if genotype.skeleton == name]
            if rows:
                out[:, rows] = model.predict([genotypes[i] for i in rows])
        return out[0], out[1], out[2]


def space_costs(config: ExperimentConfig) -> CostTables:
    """The cost tables of the run's skeletons."""
    space = config.space
    return cost_tables(space.skeletons, tuple(space.input_size), space.width, space.num_classes)


def load_latency_model(config: ExperimentConfig, folder: Path | None = None) -> LatencyModel | PerSkeletonModel:
    """The model saved in `folder` (default: the latency stage's runs/<name>/latency/predictor/)."""
    folder = RunPaths(config.run_dir).predictor if folder is None else folder
    return _load(folder, space_costs(config))


def _load(folder: Path, costs: CostTables) -> LatencyModel | PerSkeletonModel:
    record = json.loads((folder / FEATURES_FILE).read_text())
    errors = record.get("errors", {})
    if record.get("layout") == "per_skeleton":
        models = {name: _load(folder / name, costs.only(name)) for name in costs.skeletons}
        return PerSkeletonModel(models, costs, errors)
    return LatencyModel(LatencyRegressor.load(folder), costs, record["feature_set"], errors)


def save_latency_model(model: LatencyModel | PerSkeletonModel, folder: Path) -> None:
    """The regressors' JSON files and the feature sets, written beside `folder` and then moved over it."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _save(model, tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _save(model: LatencyModel | PerSkeletonModel, folder: Path) -> None:
    record = {"layout": model.layout, "errors": model.errors}
    if isinstance(model, PerSkeletonModel):
        for name, part in model.models.items():
            _save(part, folder / name)
    else:
        model.regressor.save(folder)
        record["feature_set"] = model.feature_set
    write_json(folder / FEATURES_FILE, record)


def fit_predictor(costs: CostTables, genotypes: list[Genotype], latency: np.ndarray, seed: int
                  ) -> LatencyModel | PerSkeletonModel:
    """The model on these measurements: with one skeleton fit_joint; with several the layout (joint or one per
    skeleton) with the lower 5-fold cross-validated MAPE, its errors kept in `errors`."""
    if len(costs.skeletons) == 1:
        return fit_joint(costs, genotypes, latency, seed)
    errors = {layout: cross_validated_mape(fit, costs, genotypes, latency, seed) for layout, fit in LAYOUTS.items()}
    layout = min(errors, key=lambda name: errors[name] if math.isfinite(errors[name]) else math.inf)
    model = LAYOUTS[layout](costs, genotypes, latency, seed)
    model.errors = errors
    return model


def fit_joint(costs: CostTables, genotypes: list[Genotype], latency: np.ndarray, seed: int) -> LatencyModel:
    """The regressor on the feature set whose additive base has the lower leave-one-out error on these
    measurements (one-hot columns help on large tables and overfit small ones, see BENCHMARKS.md)."""
    feature_set = min(FEATURE_SETS, key=lambda kind: additive_loo_mape(space_features(genotypes, costs, kind),
                                                                         latency))
    model = LatencyModel(LatencyRegressor(seed=seed), costs, feature_set)
    model.regressor.fit(model.features(genotypes), latency)
    return model


def fit_per_skeleton(costs: CostTables, genotypes: list[Genotype], latency: np.ndarray, seed: int
                     ) -> PerSkeletonModel:
    """fit_joint on each skeleton's measurements alone."""
    latency = np.asarray(latency, dtype=np.float64)
    models = {}
    for name in costs.skeletons:
        rows = [i for i, genotype in enumerate(genotypes) if genotype.skeleton == name]
        models[name] = fit_joint(costs.only(name), [genotypes[i] for i in rows], latency[rows], seed)
    return PerSkeletonModel(models, costs)


LAYOUTS = {"joint": fit_joint, "per_skeleton": fit_per_skeleton}
FOLDS = 5


def cross_validated_mape(fit, costs: CostTables, genotypes: list[Genotype], latency: np.ndarray, seed: int) -> float:
    """MAPE (percent) of `fit` over 5 seeded folds of the measurements; NaN when a fold leaves a regressor fewer
    measurements than it needs (the joint one all of them, one per skeleton its skeleton's)."""
    latency = np.asarray(latency, dtype=np.float64)
    folds = np.array_split(np.random.default_rng(seed).permutation(len(genotypes)), FOLDS)
    errors = []
    for held in folds:
        train = np.setdiff1d(np.arange(len(genotypes)), held)
        counts = [sum(genotypes[i].skeleton == name for i in train) for name in costs.skeletons]
        if (min(counts) if fit is fit_per_skeleton else len(train)) < MIN_ROWS:
            return math.nan
        model = fit(costs, [genotypes[i] for i in train], latency[train], seed)
        predicted, _, _ = model.predict([genotypes[i] for i in held])
        errors.append(np.abs(predicted - latency[held]) / latency[held])
    return 100 * float(np.concatenate(errors).mean())
