"""Stage 3: measure chosen genotypes on the target device, fit the latency predictor, report its accuracy.

The device is this machine (a backend of hardware/backends.py) or a device agent reached over HTTP
(`python -m hardware.agent` on the target, hardware/client.py here). Every measurement goes through the per-device
measurement store, so a genotype measured by any earlier run is not measured again.

Which genotypes: `latency.measurements` spread over the MACs range of a seeded random pool (predictors/design.py),
`latency.heldout` other random genotypes measured only to test the predictor, and optionally `latency.active`
more, chosen where the predictor's interval is widest near the optimistic front of the pool (inherited mIoU vs
predicted latency). The predictor's features are the space's per-layer costs, with or without the candidates'
one-hot columns, whichever explains the training measurements better (leave-one-out). Writes
runs/<name>/latency/: measurements.csv, predictor/ (JSON files), heldout.csv and accuracy.json. The stage is
skipped when accuracy.json exists.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from rich.progress import track
from torch import nn

from engine.config import ConfigError, ExperimentConfig
from hardware.backends import Backend, BackendUnavailable, backend, to_onnx
from hardware.client import AgentClient, AgentUnreachable, read_token
from hardware.protocol import Measurement, MeasurementProtocol, measure
from hardware.provenance import device_name
from hardware.store import MeasurementKey, MeasurementStore, space_label
from predictors.design import active, spread
from predictors.evaluation import accuracy_report
from predictors.features import cost_features, one_hot
from predictors.latency import LatencyRegressor, additive_loo_mape
from spaces import Genotype, build, largest, sample, smallest
from spaces.costs import CostTable, cost_table

STAT_FIELD = {"median": "median_ms", "mean": "mean_ms", "p90": "p90_ms"}
FEATURE_SETS = ("costs", "one-hot+costs")
FEATURES_FILE = "features.json"


class DeviceError(RuntimeError):
    """The configured device cannot measure and nothing stored can stand in; the message says what to do."""


def latency_dir(config: ExperimentConfig) -> Path:
    return config.run_dir / "latency"


def protocol_of(config: ExperimentConfig) -> MeasurementProtocol:
    settings = config.latency
    return MeasurementProtocol(settings.warmup, settings.repeats, settings.batch, tuple(config.space.input_size),
                               settings.threads)


def experiment_space(config: ExperimentConfig) -> str:
    """The measurement store's label of the experiment's space (skeleton, width, classes)."""
    return space_label(config.space.skeleton, config.space.width, config.space.num_classes)


class Meter:
    """Measures networks of the experiment's space on its device, through the measurement store."""

    def __init__(self, config: ExperimentConfig):
        settings = config.latency
        self.config = config
        self.protocol = protocol_of(config)
        self.space = experiment_space(config)
        self.local: Backend | None = None
        self.client: AgentClient | None = None
        if settings.device == "local":
            self.local = backend(settings.backend)
            name = settings.device_name or device_name(gpu=self.local.gpu)
        else:
            self.client = AgentClient(settings.agent.url, read_token(settings.agent.token_file),
                                      timeout=settings.agent.timeout_s, retries=settings.agent.retries)
            info = self.client.info()
            if info.get("backend") != settings.backend:
                raise DeviceError(f"latency.backend is {settings.backend} but the agent at {settings.agent.url} "
                                  f"measures with {info.get('backend')}; set latency.backend={info.get('backend')}")
            name = settings.device_name or str(info["device"])
        self.store = MeasurementStore(name, settings.store)

    def key(self, genotype: Genotype) -> MeasurementKey:
        return MeasurementKey.of(self.space, genotype.key, self.config.latency.backend, self.protocol)

    def measure_network(self, network: nn.Module) -> Measurement:
        """One measurement of a built network on the device (not stored: the caller knows its key)."""
        if self.client is not None:
            return self.client.measure(to_onnx(network.eval(), self.protocol.shape), self.protocol)
        return measure(network.eval(), self.local, self.protocol)

    def measure(self, genotypes: Sequence[Genotype], what: str) -> list[Measurement]:
        """Stored measurements of the genotypes, measuring (and storing) the missing ones."""
        stored = self.store.load()
        missing = [g for g in dict.fromkeys(genotypes) if self.key(g) not in stored]
        space = self.config.space
        for genotype in track(missing, description=f"measuring {what} on {self.store.device}"):
            measurement = self.measure_network(build(genotype, space.width, space.num_classes))
            self.store.put(self.key(genotype), measurement)
            stored[self.key(genotype)] = measurement
        return [stored[self.key(g)] for g in genotypes]


def open_meter(config: ExperimentConfig) -> Meter | None:
    """The experiment's meter, opened at the start of a run so an unreachable agent stops it before any training;
    None when the device cannot be reached but the predictor (or enough stored measurements) lets the run go on;
    DeviceError when the run cannot go on, ConfigError for a token file that cannot be read or a bad device name."""
    settings = config.latency
    try:
        return Meter(config)
    except ValueError as error:
        raise ConfigError(f"latency: {error}") from None
    except BackendUnavailable as error:
        raise DeviceError(f"latency.backend {settings.backend}: {error}") from None
    except AgentUnreachable as error:
        if (latency_dir(config) / "accuracy.json").exists():
            return None
        if settings.device_name and _stored_enough(config, settings.device_name):
            return None
        raise DeviceError(f"latency.agent.url: {error}") from None


def _stored_enough(config: ExperimentConfig, name: str) -> bool:
    store = MeasurementStore(name, config.latency.store)
    space = experiment_space(config)
    protocol = protocol_of(config)
    rows = [key for key in store.load() if key.space == space and key.resolution == protocol.resolution
            and key.backend == config.latency.backend]
    return len(rows) >= config.latency.measurements + config.latency.heldout


def space_features(genotypes: Sequence[Genotype], costs: CostTable, feature_set: str) -> np.ndarray:
    """'costs': per-layer and total MACs, params and activations; 'one-hot+costs': the candidates' one-hot too."""
    features = cost_features(genotypes, costs)
    return np.concatenate([one_hot(genotypes), features], axis=1) if feature_set == "one-hot+costs" else features


@dataclass
class LatencyModel:
    """The fitted predictor with the space's features: predicted latency and its interval per genotype."""

    regressor: LatencyRegressor
    costs: CostTable
    feature_set: str

    def features(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        return space_features(genotypes, self.costs, self.feature_set)

    def predict(self, genotypes: Sequence[Genotype]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(predicted, lower, upper) in ms."""
        X = self.features(genotypes)
        lower, upper = self.regressor.predict_interval(X)
        return self.regressor.predict(X), lower, upper


def space_costs(config: ExperimentConfig) -> CostTable:
    space = config.space
    return cost_table(space.skeleton, tuple(space.input_size), space.width, space.num_classes)


def load_latency_model(config: ExperimentConfig) -> LatencyModel:
    folder = latency_dir(config) / "predictor"
    feature_set = json.loads((folder / FEATURES_FILE).read_text())["feature_set"]
    return LatencyModel(LatencyRegressor.load(folder), space_costs(config), feature_set)


def candidate_pool(config: ExperimentConfig) -> list[Genotype]:
    """The extremes and a seeded random pool of distinct genotypes."""
    name = config.space.skeleton
    rng = random.Random(config.seed)
    pool = [largest(name), smallest(name)] + [sample(name, rng) for _ in range(config.latency.pool)]
    return list(dict.fromkeys(pool))


def heldout_genotypes(config: ExperimentConfig, exclude: set[Genotype]) -> list[Genotype]:
    rng = random.Random(config.seed + 1)
    chosen: dict[Genotype, None] = {}
    while len(chosen) < config.latency.heldout:
        genotype = sample(config.space.skeleton, rng)
        if genotype not in exclude:
            chosen[genotype] = None
    return list(chosen)


def latency_of(measurements: Sequence[Measurement], statistic: str) -> np.ndarray:
    return np.array([getattr(m.stats, STAT_FIELD[statistic]) for m in measurements])


def fit_predictor(costs: CostTable, genotypes: list[Genotype], latency: np.ndarray, seed: int) -> LatencyModel:
    """The regressor on the feature set whose additive base has the lower leave-one-out error on these
    measurements (one-hot columns help on large tables and overfit small ones, see BENCHMARKS.md)."""
    feature_set = min(FEATURE_SETS, key=lambda kind: additive_loo_mape(space_features(genotypes, costs, kind),
                                                                         latency))
    model = LatencyModel(LatencyRegressor(seed=seed), costs, feature_set)
    model.regressor.fit(model.features(genotypes), latency)
    return model


def choose_active(config: ExperimentConfig, model: LatencyModel, pool: list[Genotype], measured: set[Genotype],
                  score: Callable[[Genotype], float]) -> list[Genotype]:
    """`latency.active` pool genotypes where the interval is widest near the optimistic front; the other
    objective (inherited mIoU) is scored on a latency-spread subset of the pool only, as it costs a forward pass
    over the validation images per genotype."""
    count = config.latency.active
    predicted, _, _ = model.predict(pool)
    subset = [pool[i] for i in spread(predicted, min(len(pool), 8 * count), config.seed)]
    _, lower, upper = model.predict(subset)
    miou = np.array([score(g) for g in track(subset, description="scoring candidates for active measurement")])
    taken = np.array([g in measured for g in subset])
    return [subset[i] for i in active(lower, upper, miou, count, taken)]


def write_tables(out: Path, rows: list[dict], heldout: pd.DataFrame, model: LatencyModel) -> None:
    pd.DataFrame(rows).to_csv(out / "measurements.csv", index=False)
    heldout.to_csv(out / "heldout.csv", index=False)
    report = accuracy_report(heldout.measured_ms.to_numpy(), heldout.predicted_ms.to_numpy())
    model.regressor.save(out / "predictor")
    (out / "predictor" / FEATURES_FILE).write_text(json.dumps({"feature_set": model.feature_set}))
    (out / "accuracy.json").write_text(json.dumps(report.as_dict(), indent=1))


def _rows(genotypes: Sequence[Genotype], measurements: Sequence[Measurement], role: str) -> list[dict]:
    return [{"key": g.key, "role": role, "median_ms": m.stats.median_ms, "mean_ms": m.stats.mean_ms,
             "p90_ms": m.stats.p90_ms, "cv": m.stats.cv} for g, m in zip(genotypes, measurements)]


def run_latency(config: ExperimentConfig, meter: Meter | None, score: Callable[[Genotype], float]) -> Path:
    """Measure, fit and report (module docstring); returns runs/<name>/latency/."""
    out = latency_dir(config)
    if (out / "accuracy.json").exists():
        return out
    if meter is None:
        raise DeviceError("the latency stage has to measure but the device is unreachable")
    out.mkdir(parents=True, exist_ok=True)
    settings, costs = config.latency, space_costs(config)
    pool = candidate_pool(config)
    macs = np.array([costs.genotype_macs(g) for g in pool], dtype=np.float64)
    train = [pool[i] for i in spread(macs, min(settings.measurements, len(pool)), config.seed)]
    measured = meter.measure(train, "spread genotypes")
    rows = _rows(train, measured, "train")
    model = fit_predictor(costs, train, latency_of(measured, settings.statistic), config.seed)
    if settings.active:
        extra = choose_active(config, model, pool, set(train), score)
        extra_measured = meter.measure(extra, "active genotypes")
        rows += _rows(extra, extra_measured, "active")
        train, measured = train + extra, measured + extra_measured
        model = fit_predictor(costs, train, latency_of(measured, settings.statistic), config.seed)
    tests = heldout_genotypes(config, set(train))
    tested = meter.measure(tests, "held-out genotypes")
    rows += _rows(tests, tested, "heldout")
    predicted, lower, upper = model.predict(tests)
    heldout = pd.DataFrame({"key": [g.key for g in tests], "measured_ms": latency_of(tested, settings.statistic),
                            "predicted_ms": predicted, "lower_ms": lower, "upper_ms": upper})
    write_tables(out, rows, heldout, model)
    return out

