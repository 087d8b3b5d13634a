"""Latency predictor vs measurement on this CPU: predictions per second, measurements per second, accuracy.

    python -m benchmarks.predictor_speed [--train 40] [--heldout 20] [--pool 1000] [--predict 10000]
                                         [--config experiments/quickstart.yaml] [--store DIR]

The config's space and latency section (the quickstart: skeleton small, width 0.5, 11 classes, 128x256, torch-cpu, 1
thread, 5 warm-up + 20 timed runs). As the latency stage chooses them (engine/stages/latency.py), `--train` genotypes
spread over the MACs of a seeded random pool of `--pool` and `--heldout` other random ones are measured through a
measurement store (`--store`, default a fresh temporary directory, deleted afterwards, so every genotype is really
measured: build + measure + store, timed per genotype; a reused store times only the genotypes it lacks). The predictor
is fit as the engine fits it (fit_predictor: the feature set with the lower leave-one-out error), then
LatencyModel.predict (features, prediction and interval: what the search pays) is timed on `--predict` random genotypes
in one call and on 200 one at a time. Prints the machine, the settings, a markdown table of measurements/s and
predictions/s, their ratio, the feature set and the accuracy on the held-out genotypes (within ±10 %, MAPE, Kendall
tau).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import one_skeleton
from engine.config import ExperimentConfig, load
from engine.latency.meter import STAT_FIELD, protocol_of
from engine.latency.model import LatencyModel, fit_predictor, space_costs
from engine.stages.latency import candidate_pool, heldout_genotypes
from hardware.backends import backend
from hardware.protocol import MeasurementProtocol, measure
from hardware.provenance import device_name
from hardware.store import MeasurementKey, MeasurementStore, space_label
from predictors.design import spread
from predictors.evaluation import accuracy_report
from spaces import Genotype, build, sample

SINGLE_CALLS = 200


def chosen_genotypes(config: ExperimentConfig) -> tuple[list[Genotype], list[Genotype]]:
    """(spread over MACs, held out), as the latency stage picks them."""
    pool = candidate_pool(config)
    macs = np.array([space_costs(config).genotype_macs(g) for g in pool], dtype=np.float64)
    train = [pool[i] for i in spread(macs, config.latency.measurements, config.seed)]
    return train, heldout_genotypes(config, set(train))


def measured(config: ExperimentConfig, genotypes: list[Genotype], store: MeasurementStore
             ) -> tuple[np.ndarray, list[float]]:
    """Latency (ms, the config's latency.statistic) of each genotype and the wall-clock seconds of each one measured
    here (not stored)."""
    space, settings, protocol = config.space, config.latency, protocol_of(config)
    runner, label = backend(settings.backend), space_label(space.skeleton, space.width, space.num_classes)
    stored, seconds = store.load(), []
    for genotype in genotypes:
        key = MeasurementKey.of(label, genotype.key, runner.name, protocol)
        if key not in stored:
            start = time.perf_counter()
            stored[key] = measure(build(genotype, space.width, space.num_classes), runner, protocol)
            store.put(key, stored[key])
            seconds.append(time.perf_counter() - start)
    keys = [MeasurementKey.of(label, g.key, runner.name, protocol) for g in genotypes]
    return np.array([getattr(stored[key].stats, STAT_FIELD[settings.statistic]) for key in keys]), seconds


def predictions_per_second(model: LatencyModel, genotypes: list[Genotype]) -> tuple[float, float]:
    """(in one call over all the genotypes, one genotype per call)."""
    start = time.perf_counter()
    model.predict(genotypes)
    batch = len(genotypes) / (time.perf_counter() - start)
    start = time.perf_counter()
    for genotype in genotypes[:SINGLE_CALLS]:
        model.predict([genotype])
    return batch, min(SINGLE_CALLS, len(genotypes)) / (time.perf_counter() - start)


def run(args: argparse.Namespace, directory: Path) -> None:
    config = load(args.config, [f"latency.measurements={args.train}", f"latency.heldout={args.heldout}",
                                f"latency.pool={args.pool}"])
    space, settings, protocol = config.space, config.latency, protocol_of(config)
    store = MeasurementStore(device_name(backend(settings.backend).gpu), directory)
    print(f"{platform.processor() or platform.machine()} ({store.device}), {os.cpu_count()} cores, torch "
          f"{torch.__version__}; load average {os.getloadavg()[0]:.2f}")
    print(f"{config.name}: skeleton {space.skeleton} width {space.width}, {space.num_classes} classes, "
          f"{protocol.resolution}, {settings.backend}, {protocol.threads} thread(s), {protocol.warmup} warm-up + "
          f"{protocol.repeats} timed runs; {args.train} spread over the MACs of a pool of {args.pool} + "
          f"{args.heldout} held out; store {store.path} ({'given' if args.store else 'fresh, temporary'})\n")

    start = time.perf_counter()
    train, tests = chosen_genotypes(config)
    latency, seconds = measured(config, train + tests, store)
    if not seconds:
        raise SystemExit(f"every genotype was already in {store.path}: nothing measured to time; use a fresh --store")
    model = fit_predictor(space_costs(config), train, latency[: len(train)], config.seed)
    rng = random.Random(config.seed + 2)
    batch, single = predictions_per_second(model, [sample(space.skeleton, rng) for _ in range(args.predict)])
    report = accuracy_report(latency[len(train):], model.predict(tests)[0])
    print_results(args, protocol, seconds, (batch, single), latency)
    print(f"feature set: {model.feature_set}; held out ({report.count}): within ±10 % {report.within_10:.0f}%, "
          f"MAPE {report.mape:.2f}%, Kendall tau {report.kendall_tau:.3f}")
    print(f"took {time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.2f}")


def print_results(args: argparse.Namespace, protocol: MeasurementProtocol, seconds: list[float],
                  rates: tuple[float, float], latency: np.ndarray) -> None:
    """The markdown table of measurement and prediction speeds, and their ratios."""
    (batch, single), measurements = rates, len(seconds) / sum(seconds)
    print("| what | per second | seconds each (median) |")
    print("| --- | --- | --- |")
    print(f"| measurement (build + {protocol.warmup + protocol.repeats} runs + store), {len(seconds)} genotypes | "
          f"{measurements:.2f} | {statistics.median(seconds):.3f} |")
    print(f"| prediction, {args.predict} genotypes in one call | {batch:,.0f} | {1 / batch:.2e} |")
    print(f"| prediction, one genotype per call ({SINGLE_CALLS} calls) | {single:,.0f} | {1 / single:.2e} |")
    print(f"\npredictions / measurements: {batch / measurements:,.0f}x in one call, {single / measurements:,.0f}x "
          f"one at a time; measured {latency.min():.2f} to {latency.max():.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/quickstart.yaml")
    parser.add_argument("--train", type=int, default=40, help="genotypes spread over MACs to fit on")
    parser.add_argument("--heldout", type=int, default=20, help="random genotypes to test on")
    parser.add_argument("--pool", type=int, default=1000, help="random genotypes the spread is chosen from")
    parser.add_argument("--predict", type=int, default=10000, help="random genotypes predicted in one call")
    parser.add_argument("--store", type=Path, default=None, help="measurement store directory (default: fresh)")
    args = parser.parse_args()
    one_skeleton(parser, load(args.config))
    with tempfile.TemporaryDirectory(prefix="predictor_speed.") as fresh:
        run(args, args.store or Path(fresh))


if __name__ == "__main__":
    main()
