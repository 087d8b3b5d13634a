"""The latency model of a run: the fitted predictor (predictors.latency) over the space's features of a genotype,
giving predicted latency and its interval; fitted by the latency stage, loaded by every later one.

The features are the space's per-layer costs, with or without the candidates' one-hot columns, whichever explains
the training measurements better (the additive base's exact leave-one-out error). With several skeletons the model
is either one predictor over all (the skeleton among its features: `joint`) or one per skeleton (`per_skeleton`),
whichever has the lower cross-validated MAPE on the training measurements (5 folds; leave-one-out below
LEAVE_ONE_OUT_BELOW measurements).

With sources (other devices' measurements of this space, engine/latency/transfer.py) a third candidate competes on
the same cross-validated error: the transferred predictor (`transfer`), a non-negative combination of the sources'
additive models fit on this device's measurements (predictors/fewshot.py), over the feature set of lower
leave-one-out error. It needs a handful of measurements where the plain predictor needs ten per fold, so it wins
while measurements are few and gives way to the plain one once they explain the device better. The sources' table
is saved beside the predictor, so a refit transfers from the same sources.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine.config import ExperimentConfig
from engine.files import write_json
from engine.latency.transfer import SOURCES_FILE, SourceTable
from engine.paths import RunPaths
from predictors.features import cost_features, one_hot
from predictors.fewshot import MIN_SHOTS, FewShotRegressor
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
class TransferredModel(LatencyModel):
    """A LatencyModel whose regressor is the sources' combination fit on this device's measurements; `transfer`
    says which sources carry the weight."""

    layout = "transfer"
    transfer: dict = field(default_factory=dict)


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


Model = LatencyModel | PerSkeletonModel


def load_latency_model(config: ExperimentConfig, folder: Path | None = None) -> Model:
    """The model saved in `folder` (default: the latency stage's runs/<name>/latency/predictor/)."""
    folder = RunPaths(config.run_dir).predictor if folder is None else folder
    return _load(folder, space_costs(config))


def load_sources(folder: Path) -> SourceTable | None:
    """The sources saved beside the predictor in `folder`, or None when it was fit without."""
    return SourceTable.load(folder / SOURCES_FILE)


def _load(folder: Path, costs: CostTables) -> Model:
    record = json.loads((folder / FEATURES_FILE).read_text())
    errors = record.get("errors", {})
    if record.get("layout") == "per_skeleton":
        models = {name: _load(folder / name, costs.only(name)) for name in costs.skeletons}
        return PerSkeletonModel(models, costs, errors)
    if record.get("layout") == "transfer":
        return TransferredModel(LatencyRegressor.load(folder), costs, record["feature_set"], errors,
                                record.get("transfer", {}))
    return LatencyModel(LatencyRegressor.load(folder), costs, record["feature_set"], errors)


def save_latency_model(model: Model, folder: Path, sources: SourceTable | None = None) -> None:
    """The regressors' JSON files, the feature sets and the sources (when given), written beside `folder` and then
    moved over it."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _save(model, tmp)
    if sources is not None:
        sources.save(tmp / SOURCES_FILE)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _save(model: Model, folder: Path) -> None:
    record = {"layout": model.layout, "errors": model.errors}
    if isinstance(model, PerSkeletonModel):
        for name, part in model.models.items():
            _save(part, folder / name)
    else:
        model.regressor.save(folder)
        record["feature_set"] = model.feature_set
    if isinstance(model, TransferredModel):
        record["transfer"] = model.transfer
    write_json(folder / FEATURES_FILE, record)


Fit = Callable[[CostTables, list[Genotype], np.ndarray, int], Model]


def fit_predictor(costs: CostTables, genotypes: list[Genotype], latency: np.ndarray, seed: int,
                  transfer: "Transfer | None" = None) -> Model:
    """The model on these measurements: with one skeleton and no transfer fit_joint; otherwise the candidate (joint,
    one per skeleton with several skeletons, transferred from the sources) with the lowest cross-validated MAPE
    (cross_validated_mape), every candidate's error kept in `errors`."""
    candidates: dict[str, Fit] = dict(LAYOUTS) if len(costs.skeletons) > 1 else {"joint": fit_joint}
    if transfer is not None:
        candidates["transfer"] = partial(fit_transferred, transfer=transfer)
    if len(candidates) == 1:
        return fit_joint(costs, genotypes, latency, seed)
    errors = {layout: cross_validated_mape(fit, costs, genotypes, latency, seed, MINIMUM[layout])
              for layout, fit in candidates.items()}
    layout = min(errors, key=lambda name: errors[name] if math.isfinite(errors[name]) else math.inf)
    model = candidates[layout](costs, genotypes, latency, seed)
    model.errors = errors
    return model


@dataclass
class Transfer:
    """The sources' additive models over the space's features, built once per feature set (fitting each source is
    the costly part; the combination is refit per fold)."""

    sources: SourceTable
    costs: CostTables
    built: dict[str, FewShotRegressor] = field(default_factory=dict)

    def regressor(self, feature_set: str) -> FewShotRegressor:
        """The sources' models over `feature_set` (fit on first use)."""
        if feature_set not in self.built:
            X = space_features(self.sources.genotypes(), self.costs, feature_set)
            self.built[feature_set] = FewShotRegressor(X, self.sources.latency)
        return self.built[feature_set]


def fit_transferred(costs: CostTables, genotypes: list[Genotype], latency: np.ndarray, seed: int, transfer: Transfer
                    ) -> TransferredModel:
    """The sources' combination on these measurements, over the feature set of lower leave-one-out MAPE; the
    sources' weights in `transfer`."""
    best: tuple[float, str, LatencyRegressor, dict] | None = None
    for feature_set in FEATURE_SETS:
        few = transfer.regressor(feature_set).fit(space_features(genotypes, costs, feature_set), latency)
        if best is None or few.loo_mape < best[0]:
            best = (few.loo_mape, feature_set, few.regressor(seed), weights_record(few, transfer.sources))
    _, feature_set, regressor, record = best
    return TransferredModel(regressor, costs, feature_set, transfer=record)


def weights_record(few: FewShotRegressor, sources: SourceTable) -> dict:
    """Which sources carry the fit: each one's share of the (standardised) weight and its ms of this device per ms
    of the source, largest share first; the penalty, the residual correction's ridge penalty (null: none) and the
    leave-one-out MAPE (percent)."""
    total = float(few.weights.sum()) or 1.0
    rows = sources.rows()
    carried = [{"source": label, "share": float(w) / total, "ms_per_ms": float(w / scale), "rows": rows[label]}
               for label, w, scale in zip(sources.sources, few.weights, few.scale)]
    correction = None if few.correction is None else few.correction.alpha
    return {"sources": sorted(carried, key=lambda entry: -entry["share"]), "penalty": few.penalty,
            "correction_alpha": correction, "loo_mape": 100 * few.loo_mape, "shots": len(few.loo_residuals)}


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


LAYOUTS: dict[str, Fit] = {"joint": fit_joint, "per_skeleton": fit_per_skeleton}
FOLDS = 5
LEAVE_ONE_OUT_BELOW = 20
"""Below this many measurements the candidates are cross-validated leave-one-out: five folds of a dozen leave the
plain predictor fewer than the ten it needs, and the transferred one would win without a comparison."""


def _fewest(costs: CostTables, genotypes: list[Genotype]) -> int:
    return min(sum(genotype.skeleton == name for genotype in genotypes) for name in costs.skeletons)


MINIMUM: dict[str, Callable[[CostTables, list[Genotype]], bool]] = {
    "joint": lambda costs, genotypes: len(genotypes) >= MIN_ROWS,
    "per_skeleton": lambda costs, genotypes: _fewest(costs, genotypes) >= MIN_ROWS,
    "transfer": lambda costs, genotypes: len(genotypes) >= MIN_SHOTS,
}
"""Whether a candidate can be fit on these measurements (the joint one needs ten, one per skeleton ten of each, the
transferred one three)."""


def cross_validated_mape(fit: Fit, costs: CostTables, genotypes: list[Genotype], latency: np.ndarray, seed: int,
                         enough: Callable[[CostTables, list[Genotype]], bool] = MINIMUM["joint"]) -> float:
    """MAPE (percent) of `fit` over 5 seeded folds of the measurements (leave-one-out below LEAVE_ONE_OUT_BELOW); NaN
    when a fold leaves the candidate fewer measurements than it needs (`enough`)."""
    latency = np.asarray(latency, dtype=np.float64)
    count = len(genotypes)
    folds = np.array_split(np.random.default_rng(seed).permutation(count),
                           count if count < LEAVE_ONE_OUT_BELOW else FOLDS)
    errors = []
    for held in folds:
        train = np.setdiff1d(np.arange(len(genotypes)), held)
        if not enough(costs, [genotypes[i] for i in train]):
            return math.nan
        model = fit(costs, [genotypes[i] for i in train], latency[train], seed)
        predicted, _, _ = model.predict([genotypes[i] for i in held])
        errors.append(np.abs(predicted - latency[held]) / latency[held])
    return 100 * float(np.concatenate(errors).mean())
