"""Measurement inside the search loop: the latency each evaluated subnet is searched with, and the measuring rounds
that replace predictions by measurements where the front is.

A subnet's latency is its measurement (`latency.statistic`) once the run has one (the latency stage's genotypes or
the search's own), the latency predictor's prediction otherwise, with an interval from an adaptive conformal
calibrator (predictors/conformal.py) fed every out-of-sample residual in the order it arrived: the latency stage's
held-out genotypes, then each round's.

A round (`measure`): the front's unmeasured subnets, then the possibly Pareto-optimal ones whose interval is widest
(predictors.design.active), up to `search.measure_per_round` and within `search.measure_limit` in all, are measured
through the meter (and its store: nothing measured before is measured again); with `search.recheck`, one measured
above its prediction interval is measured once more and the lower of the two kept (`first_ms` in
search/measurements.csv is the first; the store marks the kept one checked, so a resumed round does not measure it a
third time). The predictor's accuracy on them before they were measured is recorded (out of sample: MAPE, share
within ±10%, Kendall tau, interval coverage), the calibrator takes their residuals, and the predictor is refit on
every measurement of the run and saved in search/predictors/round_<n>/, which a resumed search loads instead of
refitting. When the latency stage transferred from other devices, each refit lets the transferred predictor compete
with the plain one on cross-validated error, from the same sources (saved beside the stage's predictor).
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass

import numpy as np
import pandas as pd
from xgboost.core import XGBoostError

from engine.config import ExperimentConfig
from engine.errors import DeviceError, MissingInput
from engine.files import made_with
from engine.latency.meter import STAT_FIELD, Meter, first_of, origin
from engine.latency.model import (
    LatencyModel,
    Transfer,
    fit_predictor,
    load_latency_model,
    load_sources,
    save_latency_model,
)
from engine.paths import RunPaths
from engine.search import fronts
from hardware.protocol import Measurement
from predictors.conformal import AdaptiveConformal
from predictors.design import active
from predictors.evaluation import kendall
from spaces import Genotype

log = logging.getLogger(__name__)

LEVEL = 0.9
"""Nominal coverage of the latency intervals."""

LATENCY_FIELDS = ("latency_ms", "latency_source", "predicted_ms", "latency_lower_ms", "latency_upper_ms",
                  "measured_ms", "measured_p90_ms", "predicted_before_ms")
"""A subnet's latency as the search knows it: latency_ms is its objective (the measurement where there is one, the
prediction otherwise, as latency_source says); predicted_ms and the interval are the current predictor's;
predicted_before_ms the prediction it had just before the search measured it."""


@dataclass(frozen=True)
class Measured:
    ms: float
    p90_ms: float
    predicted_before_ms: float = math.nan  # the search's prediction just before it measured; NaN for the stage's


class Rounds:
    """The latency of every subnet the search evaluates, and the rounds that measure some (module docstring)."""

    def __init__(self, config: ExperimentConfig, model: LatencyModel, meter: Meter | None):
        paths = RunPaths(config.run_dir)
        self.config, self.model, self.meter = config, model, meter
        self.folder = paths.round_predictors
        self.statistic = STAT_FIELD[config.latency.statistic]
        stage = pd.read_csv(paths.measurements)
        made = made_with(paths.record("latency"), "latency.statistic")
        if self.statistic not in stage or made not in (None, config.latency.statistic):
            raise MissingInput(f"latency/ was measured and fit by the {made or 'median'} of the timed runs, this run "
                               f"asks for latency.statistic {config.latency.statistic}: run the latency stage again "
                               f"(--stages latency,search, or every stage)")
        self.measured = {row["key"]: Measured(float(row[self.statistic]), float(row["p90_ms"]))
                         for row in stage.to_dict(orient="records")}
        heldout = pd.read_csv(paths.heldout)
        self.calibrator = AdaptiveConformal(level=LEVEL)
        self.calibrator.seed(heldout.predicted_ms.to_numpy(), heldout.measured_ms.to_numpy())
        self.records: list[dict] = []
        self.spent: list[dict] = []  # the search's own measurements, in order
        sources = load_sources(paths.predictor)
        self.transfer = None if sources is None else Transfer(sources, model.costs)

    @property
    def left(self) -> int:
        """How many more subnets the search may measure."""
        return self.config.search.measure_limit - len(self.spent)

    def latency(self, genotypes: list[Genotype]) -> list[dict]:
        """LATENCY_FIELDS of each genotype."""
        predicted, _, _ = self.model.predict(genotypes)
        lower, upper = self.calibrator.interval(predicted)
        rows = []
        for genotype, mean, low, high in zip(genotypes, predicted, lower, upper):
            known = self.measured.get(genotype.key)
            rows.append({
                "latency_ms": known.ms if known else float(mean),
                "latency_source": "measured" if known else "predicted", "predicted_ms": float(mean),
                "latency_lower_ms": float(low), "latency_upper_ms": float(high),
                "measured_ms": known.ms if known else math.nan, "measured_p90_ms": known.p90_ms if known else math.nan,
                "predicted_before_ms": known.predicted_before_ms if known else math.nan})
        return rows

    def candidates(self, rows: list[dict], count: int, front_only: bool) -> list[str]:
        """Keys to measure next: the unmeasured front points of the feasible rows, then (unless `front_only`) the
        unmeasured ones predictors.design.active ranks first; at most `count`."""
        rows = list({row["key"]: row for row in rows}.values())
        unmeasured = np.array([row["key"] not in self.measured for row in rows])
        if count < 1 or not unmeasured.any():
            return []
        mask = fronts.rows_front_mask(rows)
        on_front = {row["key"] for row, member in zip(rows, mask) if member}
        lower = np.where(unmeasured, [row["latency_lower_ms"] for row in rows], [row["latency_ms"] for row in rows])
        upper = np.where(unmeasured, [row["latency_upper_ms"] for row in rows], [row["latency_ms"] for row in rows])
        miou = np.array([row["miou"] for row in rows])
        order = [rows[i]["key"] for i in active(lower, upper, miou, int(unmeasured.sum()), ~unmeasured)]
        first = [key for key in order if key in on_front]
        rest = [] if front_only else [key for key in order if key not in on_front]
        return (first + rest)[:count]

    def measure(self, rows: list[dict], phase: str, generation: int | None) -> dict:
        """One round after NSGA-II's `generation` (phase 'search') or after the search ('closing': the front only):
        choose, measure, record the predictor's accuracy on them, refit. Returns the round's record, which the
        caller completes with the front's state once its rows are refreshed."""
        count = min(self.config.search.measure_per_round, self.left)
        keys = self.candidates(rows, count, front_only=phase == "closing")
        number = len(self.records) + 1
        record = {"round": number, "phase": phase, "generation": generation,
                  "evaluated": len({row["key"] for row in rows}), "measured": len(keys)}
        if keys:
            record.update(self._measure(number, [Genotype.from_key(key) for key in keys]))
        self.records.append(record)
        return record

    def _measure(self, number: int, genotypes: list[Genotype]) -> dict:
        if self.meter is None:
            raise DeviceError("the search measures its front (search.measure_limit > 0) but the device is "
                              "unreachable; start the device agent or set search.measure_limit=0")
        predicted, _, _ = self.model.predict(genotypes)
        lower, upper = self.calibrator.interval(predicted)
        measurements = self.meter.measure(genotypes, f"round {number}: front and uncertain subnets")
        measurements = self.recheck(number, genotypes, measurements, upper)
        stats = [m.stats for m in measurements]
        ms = np.array([getattr(s, self.statistic) for s in stats])
        accuracy = out_of_sample(ms, predicted, lower, upper)
        self.calibrator.update(predicted, ms)
        for genotype, m, value, before, low, high in zip(genotypes, measurements, ms, predicted, lower, upper):
            self.measured[genotype.key] = Measured(float(value), float(m.stats.p90_ms), float(before))
            self.spent.append({"round": number, "key": genotype.key, "measured_ms": float(value),
                               "measured_p90_ms": float(m.stats.p90_ms), "predicted_before_ms": float(before),
                               "lower_ms": float(low), "upper_ms": float(high), "cv": float(m.stats.cv),
                               "first_ms": first_of(m, self.config.latency.statistic),
                               **origin(m, self.meter.store.device, genotype.key in self.meter.fresh)})
        self.model = self.refit(number)
        return accuracy

    def recheck(self, number: int, genotypes: list[Genotype], measurements: list[Measurement],
                upper: np.ndarray) -> list[Measurement]:
        """With `search.recheck`, each measurement above its prediction interval, not checked before, taken once
        more and the lower kept (Meter.recheck): a loaded host or a throttled device inflates a measurement, and an
        inflated one can put a network at the top of the front."""
        if not self.config.search.recheck:
            return measurements
        ms = np.array([getattr(m.stats, self.statistic) for m in measurements])
        doubtful = [i for i, m in enumerate(measurements) if ms[i] > upper[i] and "recheck" not in m.provenance]
        if not doubtful:
            return measurements
        kept = self.meter.recheck([genotypes[i] for i in doubtful], f"round {number}: above their interval")
        return [dict(zip(doubtful, kept)).get(i, m) for i, m in enumerate(measurements)]

    def refit(self, number: int) -> LatencyModel:
        """The predictor on every measurement of the run, saved after round `number` (loaded when it was)."""
        folder = self.folder / f"round_{number:02d}"
        if folder.exists():
            try:
                return load_latency_model(self.config, folder)
            except (ValueError, KeyError, OSError, XGBoostError) as error:  # garbled: the measurements are kept
                log.warning("%s: not a readable predictor (%s); refit from the run's measurements", folder,
                            str(error).splitlines()[0] if str(error) else type(error).__name__)
                shutil.rmtree(folder)
        genotypes = [Genotype.from_key(key) for key in self.measured]
        latency = np.array([m.ms for m in self.measured.values()])
        model = fit_predictor(self.model.costs, genotypes, latency, self.config.seed, self.transfer)
        folder.parent.mkdir(parents=True, exist_ok=True)
        save_latency_model(model, folder)
        return model

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=ROUND_COLUMNS)


ROUND_COLUMNS = ("round", "phase", "generation", "evaluated", "measured", "mape", "within_10", "kendall_tau",
                 "coverage", "nominal_coverage", "front_size", "front_unmeasured", "measured_total")


def out_of_sample(measured: np.ndarray, predicted: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> dict:
    """The predictor's accuracy on subnets it had not seen measured: MAPE and share within ±10% (percent), Kendall
    tau (NaN for fewer than two or tied values), share inside the interval against its nominal level."""
    relative = np.abs(predicted - measured) / measured
    return {"mape": 100 * float(relative.mean()), "within_10": 100 * float(np.mean(relative <= 0.10)),
            "kendall_tau": kendall(measured, predicted), "nominal_coverage": 100 * LEVEL,
            "coverage": 100 * float(np.mean((lower <= measured) & (measured <= upper)))}
