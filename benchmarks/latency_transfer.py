"""A new device from a handful of measurements: the engine's transfer against its plain predictor, held out.

    python -m benchmarks.latency_transfer --table ../shared/data/latency/hwnasbench_fbnet_lut.json \
        [--cpu-store FOLDER] [--keep FOLDER]

Two families of devices, each target taking the others of its family as sources, as the latency stage does
(engine.latency.transfer.find_sources on a measurement store; engine.latency.model.fit_predictor):

- replay devices: HW-NAS-Bench's recorded edge GPU (Jetson TX2), Raspberry Pi 4, Pixel 3, Eyeriss and FPGA, through
  the `replay-*` backends and the measurement store (fbnet_cifar, 32x32, 100 classes): 1,000 seeded random genotypes
  answered on every device; the first 700 are the pool the measurements are chosen from, the last 300 held out;
- this CPU's configurations (`--cpu-store`: a store holding quickstart-space genotypes measured under several
  backends, input sizes and thread counts, as benchmarks/latency_transfer.py --collect writes it): the genotypes
  measured under every configuration, split by a seeded shuffle into a pool (5/8) and a held-out set (3/8).

For each target and number of target measurements n (5, 10, 20, 40, 80): the plain predictor (the engine's fit on
n genotypes spread over MACs, as the latency stage chooses them; it needs 10) and the transfer (the engine's choice
between transferred and plain by cross-validated error, on n genotypes chosen where the sources disagree), scored on
the held-out genotypes: MAPE, share within ±10 %, Kendall tau. Each cell reads `MAPE / within ±10 % / tau`.
`--collect` first measures the CPU configurations into `--cpu-store` (minutes, needs an idle machine).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from benchmarks.common import host, scratch
from engine.config import load
from engine.latency.meter import Meter, experiment_spaces
from engine.latency.model import Transfer, fit_predictor, space_features
from engine.latency.transfer import Source, SourceTable, find_sources
from hardware.backends import REPLAYED, backend
from hardware.protocol import MeasurementProtocol, measure
from hardware.store import MeasurementKey, MeasurementStore, space_label
from predictors.design import spread
from predictors.evaluation import accuracy_report
from predictors.latency import MIN_ROWS
from spaces import Genotype, build, extremes, sample, sample_of
from spaces.costs import CostTables, cost_tables

COUNTS = (5, 10, 20, 40, 80)
REPLAY_GENOTYPES, REPLAY_POOL = 1000, 700
REPLAY_CLASSES = 100
REPLAY_PROTOCOL = MeasurementProtocol(warmup=0, repeats=1, batch=1, size=(32, 32), threads=1)
CPU_CONFIGURATIONS = (("torch-cpu", 1, (128, 256)), ("onnxruntime-cpu", 1, (128, 256)), ("torch-cpu", 1, (96, 192)),
                      ("onnxruntime-cpu", 1, (192, 384)), ("torch-cpu", 2, (128, 256)),
                      ("onnxruntime-cpu", 2, (128, 256)))
CPU_DEVICE, CPU_GENOTYPES = "bench-cpu", 160
STATISTIC = "min_ms"


def replay_store(table: Path, folder: Path) -> tuple[list[Genotype], str]:
    """Every replay device's answer for the benchmark's genotypes, put in a measurement store at `folder`."""
    genotypes = list(dict.fromkeys(sample("fbnet_cifar", seed) for seed in range(REPLAY_GENOTYPES)))
    label = space_label("fbnet_cifar", 1.0, REPLAY_CLASSES)
    devices = [backend(f"replay-{name}", table) for name in REPLAYED]
    stores = [MeasurementStore(device.device, folder) for device in devices]
    for genotype in genotypes:
        network = build(genotype, 1.0, REPLAY_CLASSES)
        for device, store in zip(devices, stores):
            key = MeasurementKey.of(label, genotype.key, device.name, REPLAY_PROTOCOL)
            store.put(key, measure(network, device, REPLAY_PROTOCOL))
    return genotypes, label


def collect(store: Path) -> None:
    """Measure CPU_GENOTYPES quickstart-space genotypes under every CPU configuration into `store`."""
    rng = random.Random(7)
    pool = extremes(["small"]) + [sample_of(["small"], rng) for _ in range(2 * CPU_GENOTYPES)]
    genotypes = list(dict.fromkeys(pool))[:CPU_GENOTYPES]
    for name, threads, size in CPU_CONFIGURATIONS:
        start = time.perf_counter()
        config = load("quickstart", [f"latency.backend={name}", f"latency.threads={threads}",
                                     f"space.input_size=[{size[0]},{size[1]}]", f"latency.store={store}",
                                     f"latency.device_name={CPU_DEVICE}"])
        Meter(config).measure(genotypes, f"{name}, {threads} threads, {size[0]}x{size[1]}")
        print(f"collected {name} {threads} threads {size[0]}x{size[1]}: {time.perf_counter() - start:.0f} s")


def target_table(folder: Path, target: Source, label: str) -> tuple[SourceTable, dict[str, float]]:
    """The sources for `target` (the other devices and settings of `label` in the store) and the target's own
    measurements by genotype key."""
    sources, reason = find_sources(folder, None, {label}, target, STATISTIC, MIN_ROWS)
    if sources is None:
        raise SystemExit(f"{target.label}: {reason}")
    rows = MeasurementStore(target.device, folder).load()
    own = {key.genotype: getattr(m.stats, STATISTIC) for key, m in rows.items()
           if key.space == label and Source.of(target.device, key) == target}
    return sources, own


def cells(costs: CostTables, sources: SourceTable, own: dict[str, float], pool: list[Genotype],
          heldout: list[Genotype], seed: int = 0) -> list[str]:
    """'MAPE / within / tau' of the plain predictor and of the transfer at each count, and what the transfer chose."""
    transfer = Transfer(sources, costs)
    macs = np.array([costs.genotype_macs(g) for g in pool], dtype=np.float64)
    design = transfer.regressor("costs")
    measured = np.array([own[g.key] for g in heldout])
    out = []
    for count in COUNTS:
        plain = [pool[i] for i in spread(macs, count, seed)] if count >= MIN_ROWS else None
        shots = [pool[i] for i in design.design(space_features(pool, costs, "costs"), count, seed)]
        for chosen, with_transfer in ((plain, None), (shots, transfer)):
            if chosen is None:
                out.append("—")
                continue
            model = fit_predictor(costs, chosen, np.array([own[g.key] for g in chosen]), seed, with_transfer)
            report = accuracy_report(measured, model.predict(heldout)[0])
            kept = f" ({'transferred' if model.layout == 'transfer' else 'plain'})" if with_transfer else ""
            out.append(f"{report.mape:.1f} / {report.within_10:.0f} / {report.kendall_tau:.2f}{kept}")
    return out


def print_family(name: str, folder: Path, targets: list[tuple[Source, CostTables]], label: str,
                 split: tuple[list[str], list[str]] | None) -> None:
    """One table: each target (with the cost tables of its input size) against the family's other devices."""
    print(f"\n{name}\n")
    header = [f"{kind} {n}" for n in COUNTS for kind in ("plain", "transfer")]
    print("| target | sources | " + " | ".join(header) + " |")
    print("|" + " --- |" * (len(header) + 2))
    for target, costs in targets:
        sources, own = target_table(folder, target, label)
        keys = split or _split(sorted(own))
        pool, heldout = ([Genotype.from_key(k) for k in part] for part in keys)
        print(f"| {target.label} | {len(sources.sources)} | " + " | ".join(cells(costs, sources, own, pool, heldout))
              + " |", flush=True)


def _split(keys: list[str]) -> tuple[list[str], list[str]]:
    shuffled = random.Random(0).sample(keys, len(keys))
    cut = len(keys) * 5 // 8
    return shuffled[:cut], shuffled[cut:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True, help="HW-NAS-Bench's hwnasbench_fbnet_lut.json")
    parser.add_argument("--cpu-store", type=Path, help="a store with this CPU's configurations (see --collect)")
    parser.add_argument("--collect", action="store_true", help="measure the CPU configurations into --cpu-store")
    parser.add_argument("--keep", type=Path, help="keep the replay store in this (new) folder")
    args = parser.parse_args()
    start = time.perf_counter()
    print(host())
    if args.collect:
        collect(args.cpu_store)
    with scratch(parser, args.keep) as folder:
        genotypes, label = replay_store(args.table, folder)
        keys = [g.key for g in genotypes]
        costs = cost_tables(("fbnet_cifar",), (32, 32), 1.0, REPLAY_CLASSES)
        targets = [(Source(f"hwnasbench-{d}", f"replay-{d}", "32x32", 1, 1), costs) for d in REPLAYED]
        print_family("replay devices (HW-NAS-Bench)", folder, targets, label, (keys[:REPLAY_POOL], keys[REPLAY_POOL:]))
    if args.cpu_store:
        config = load("quickstart", [])
        width, classes = config.space.width, config.space.num_classes
        targets = [(Source(CPU_DEVICE, b, f"{s[0]}x{s[1]}", 1, t), cost_tables(("small",), s, width, classes))
                   for b, t, s in CPU_CONFIGURATIONS]
        print_family("this CPU's configurations (quickstart space)", args.cpu_store, targets,
                     experiment_spaces(config)["small"], None)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
