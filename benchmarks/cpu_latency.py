"""Latency measurement on this machine's CPU: repeatability of the protocol, and how well it can be predicted.

    python -m benchmarks.cpu_latency [--genotypes 300] [--train 200] [--repeat-check 30] [--threads 1]
                                     [--warmup 5] [--repeats 20] [--store DIR]

The quickstart space (skeleton small, width 0.5, 19 classes, 256x512 input), torch-cpu backend.
(a) The protocol runs twice over the same seeded genotypes (all of run 1, then all of run 2); per genotype the
    two medians, their ratio and the reported CVs; two medians agree when they differ by at most k x the larger
    CV (relative to their mean), reported for k = 2 and 3.
(b) `--genotypes` other seeded genotypes are measured through the measurement store (a rerun measures nothing
    again); LatencyRegressor is fit on the first `--train` with four feature sets (the engine's two: one-hot +
    costs and costs alone; the per-block lookup table's per-layer terms and sum; costs + those terms) and tested
    on the rest, beside the lookup table's plain sums (built once, cached as JSON beside the store). The LOO
    column is the additive base's leave-one-out error on the training rows, which the engine uses to choose.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from hardware.backends import Backend, backend
from hardware.lookup import LookupTable, measure_lookup_table
from hardware.protocol import Measurement, MeasurementProtocol, measure
from hardware.provenance import device_name
from hardware.store import MeasurementKey, MeasurementStore, default_directory, space_label
from predictors.evaluation import AccuracyReport, accuracy_report
from predictors.features import cost_features, lookup_features, one_hot
from predictors.latency import LatencyRegressor, additive_loo_mape
from spaces import Genotype, build, sample
from spaces.costs import cost_table

SKELETON, WIDTH, CLASSES, SIZE = "small", 0.5, 19, (256, 512)
HELD_OUT_SEED = 1000


def measure_genotype(genotype: Genotype, runner: Backend, protocol: MeasurementProtocol) -> Measurement:
    return measure(build(genotype, WIDTH, CLASSES), runner, protocol)


def repeatability(genotypes: list[Genotype], runner: Backend, protocol: MeasurementProtocol) -> None:
    runs = [[measure_genotype(g, runner, protocol).stats for g in genotypes] for _ in range(2)]
    print("| genotype | median 1 ms | median 2 ms | ratio | CV 1 % | CV 2 % | within 2 x CV |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    gaps, noise = [], []
    for g, first, second in zip(genotypes, *runs):
        gap = abs(first.median_ms - second.median_ms) / ((first.median_ms + second.median_ms) / 2)
        gaps.append(gap)
        noise.append(max(first.cv, second.cv))
        print(f"| {g.key} | {first.median_ms:.2f} | {second.median_ms:.2f} | "
              f"{first.median_ms / second.median_ms:.3f} | {100 * first.cv:.1f} | {100 * second.cv:.1f} | "
              f"{'yes' if gap <= 2 * noise[-1] else 'no'} |")
    gaps, noise = np.array(gaps), np.array(noise)
    print(f"\nmedians agree within 2 x CV: {np.mean(gaps <= 2 * noise):.0%}, within 3 x CV: "
          f"{np.mean(gaps <= 3 * noise):.0%}; median |ratio - 1| {100 * np.median(gaps):.2f}%, "
          f"median CV {100 * np.median(noise):.2f}%\n")


def measured(genotypes: list[Genotype], store: MeasurementStore, runner: Backend,
             protocol: MeasurementProtocol) -> np.ndarray:
    """Median latency of each genotype, measuring (and storing) only those the store lacks."""
    space = space_label(SKELETON, WIDTH, CLASSES)
    keys = [MeasurementKey.of(space, g.key, runner.name, protocol) for g in genotypes]
    todo = set(store.missing(keys))
    print(f"{len(genotypes) - len(todo)} of {len(genotypes)} genotypes already in {store.path}; measuring "
          f"{len(todo)}", flush=True)
    for genotype, key in zip(genotypes, keys):
        if key in todo:
            store.put(key, measure_genotype(genotype, runner, protocol))
    rows = store.load()
    return np.array([rows[key].stats.median_ms for key in keys])


def lookup_table(directory: Path, device: str, runner: Backend, protocol: MeasurementProtocol) -> LookupTable:
    label = f"{space_label(SKELETON, WIDTH, CLASSES)}.{protocol.resolution}.{runner.name}.t{protocol.threads}"
    path = directory / f"{device}.lut.{label}.json"
    if path.exists():
        print(f"lookup table from {path}")
        return LookupTable.load(path)
    table = measure_lookup_table(SKELETON, runner, protocol, WIDTH, CLASSES)
    print(f"lookup table measured, saved to {table.save(path)}")
    return table


def feature_sets(genotypes: list[Genotype], table: LookupTable) -> dict[str, np.ndarray]:
    """The space's features (as the engine builds them) and the lookup table's per-layer terms and sum."""
    costs = cost_features(genotypes, cost_table(SKELETON, SIZE, WIDTH, CLASSES))
    lookup = lookup_features(genotypes, table.latency_ms, table.fixed_ms)
    return {"one-hot + costs": np.concatenate([one_hot(genotypes), costs], axis=1), "costs": costs,
            "lookup terms": lookup, "costs + lookup terms": np.concatenate([costs, lookup], axis=1)}


def report_row(name: str, report: AccuracyReport) -> str:
    return (f"| {name} | {report.within_10:.0f} | {report.within_5:.0f} | {report.mape:.2f} | "
            f"{report.kendall_tau:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genotypes", type=int, default=300)
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--repeat-check", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--store", type=Path, default=None, help="measurement store directory")
    args = parser.parse_args()

    start = time.perf_counter()
    runner = backend("torch-cpu")
    protocol = MeasurementProtocol(args.warmup, args.repeats, 1, SIZE, args.threads)
    device = device_name(runner.gpu)
    store = MeasurementStore(device, args.store)
    print(f"{platform.processor() or platform.machine()} ({device}), {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {args.threads} threads; {SKELETON} width {WIDTH} at {SIZE[0]}x{SIZE[1]}, "
          f"{args.warmup} warm-up + {args.repeats} timed runs; load average {os.getloadavg()[0]:.2f}\n")

    print(f"(a) the protocol twice on {args.repeat_check} seeded genotypes\n")
    repeatability([sample(SKELETON, seed) for seed in range(args.repeat_check)], runner, protocol)

    print(f"(b) {args.genotypes} genotypes: fit on {args.train}, test on {args.genotypes - args.train}; load average "
          f"{os.getloadavg()[0]:.2f}\n")
    genotypes = [sample(SKELETON, HELD_OUT_SEED + i) for i in range(args.genotypes)]
    y = measured(genotypes, store, runner, protocol)
    table = lookup_table(args.store or default_directory(), device, runner, protocol)
    print(f"\nmeasured: {y.min():.1f} to {y.max():.1f} ms (median {np.median(y):.1f}); lookup table fixed part "
          f"{table.fixed_ms:.2f} ms\n")
    train, test = slice(0, args.train), slice(args.train, None)
    print("| predictor | features | LOO MAPE % (train) | within ±10 % | within ±5 % | MAPE % | Kendall tau |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, X in feature_sets(genotypes, table).items():
        model = LatencyRegressor().fit(X[train], y[train])
        loo = 100 * additive_loo_mape(X[train], y[train])
        print(report_row(f"LatencyRegressor ({model.additive.target}, {model.rounds} rounds) | {name} | {loo:.2f}",
                         accuracy_report(y[test], model.predict(X[test]))))
    print(report_row("lookup-table sum | - | -", accuracy_report(y[test], table.predict_many(genotypes[test]))))
    print(f"\ntook {time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
