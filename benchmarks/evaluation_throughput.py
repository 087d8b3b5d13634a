"""Inherited-weight evaluation throughput (subnets per minute), with and without BN recalibration.

    python -m benchmarks.evaluation_throughput [--genotypes 10] [--calibration 32] [--val 32] [--threads N]
                                               [--config experiments/quickstart.yaml] [--seed 0]

At the config's scale (the quickstart: skeleton small, width 0.5, 128x256 synthetic streets) on this CPU. The
supernet is built but not trained: throughput does not depend on the weights, only on the subnets' shapes. The
calibration and validation images are loaded once (as engine/evaluation/inherited.py does); each genotype is then
scored by both evaluators in turn (extract, recalibrate or not, forward over the validation images), first one mode
first, then the other, so machine noise hits both alike. One untimed genotype warms both up. Prints the machine, the
settings, a markdown table (mode, subnets/min, median seconds per subnet) and the ratio of the two rates.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from benchmarks.common import one_skeleton
from engine.config import ExperimentConfig, load
from engine.data.splits import train_set, val_set
from engine.evaluation.inherited import InheritedEvaluator, load_batches
from engine.training.supernet import build_supernet
from spaces import Genotype

MODES = ("with recalibration", "without recalibration")


def evaluators(config: ExperimentConfig, device: torch.device) -> dict[str, InheritedEvaluator]:
    """The two evaluators of the experiment, sharing one untrained supernet and one set of validation batches."""
    settings = config.evaluation
    supernet = build_supernet(config, config.space.skeleton, config.space.num_classes).to(device).eval()
    calibration = load_batches(train_set(config.data, config.seed), settings.calibration_images, settings.batch_size)
    validation = load_batches(val_set(config.data, config.seed), settings.val_images, settings.batch_size)
    classes = supernet.num_classes
    supernets = {config.space.skeleton: supernet}
    return {MODES[0]: InheritedEvaluator(supernets, calibration, validation, classes, device),
            MODES[1]: InheritedEvaluator(supernets, [], validation, classes, device)}


def score_seconds(evaluator: InheritedEvaluator, genotype: Genotype) -> float:
    start = time.perf_counter()
    evaluator.score(genotype)
    return time.perf_counter() - start


def timed(runs: dict[str, InheritedEvaluator], genotypes: list[Genotype]) -> dict[str, list[float]]:
    """Seconds per genotype of each evaluator, interleaved genotype by genotype, alternating which goes first."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for index, genotype in enumerate(genotypes):
        order = list(runs) if index % 2 == 0 else list(reversed(runs))
        for name in order:
            times[name].append(score_seconds(runs[name], genotype))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/quickstart.yaml")
    parser.add_argument("--genotypes", type=int, default=10)
    parser.add_argument("--calibration", type=int, default=32, help="BN recalibration images")
    parser.add_argument("--val", type=int, default=32, help="validation images scored per subnet")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load(args.config, [f"evaluation.calibration_images={args.calibration}",
                                f"evaluation.val_images={args.val}", f"seed={args.seed}"])
    one_skeleton(parser, config)
    space, device = config.space, torch.device("cpu")
    start = time.perf_counter()
    runs = evaluators(config, device)
    setup = time.perf_counter() - start
    supernet = runs[MODES[0]].supernets[config.space.skeleton]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f}")
    print(f"{config.name}: skeleton {space.skeleton} width {space.width}, {space.num_classes} classes, "
          f"{config.data.kind} data at {space.input_size[0]}x{space.input_size[1]}; untrained supernet; "
          f"{args.calibration} calibration and {args.val} validation images in batches of "
          f"{config.evaluation.batch_size}; {args.genotypes} genotypes after 1 warm-up; images loaded in "
          f"{setup:.1f} s\n")
    timed(runs, [supernet.sample(args.seed + args.genotypes)])
    times = timed(runs, [supernet.sample(args.seed + i) for i in range(args.genotypes)])
    print("| mode | subnets/min | seconds per subnet (median) |")
    print("| --- | --- | --- |")
    rates = {name: 60 * len(seconds) / sum(seconds) for name, seconds in times.items()}
    for name, seconds in times.items():
        print(f"| {name} | {rates[name]:.1f} | {statistics.median(seconds):.3f} |")
    print(f"\nwithout / with recalibration: {rates[MODES[1]] / rates[MODES[0]]:.2f}x the subnets per minute; "
          f"took {time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
