"""NSGA-II and random search against an exactly known front: MACs vs HW-NAS-Bench latency in the FBNet space.

    python -m benchmarks.search_exact [--device edgegpu] [--budget 3000] [--seeds 5] [--population 60]
                                      [--mutation-rate 0.01] [--lut PATH]

The space: FBNet's 22 searchable layers x 9 candidates, skeleton fbnet_cifar (32x32 input, 100 classes, as
HW-NAS-Bench uses it). The objectives, both additive over layers: maximise MACs (spaces.costs.cost_table: the
chosen candidates' MACs plus the fixed stem/neck/classifier MACs) and minimise the device's HW-NAS-Bench
latency (hardware.lookup.hwnasbench_table: the chosen blocks' or skips' entries plus the fixed stem, head conv,
pooling and FC entries). In minimisation form a genotype is F = (-MACs, latency).

Because both are sums of per-layer terms, the exact Pareto front comes from dynamic programming over layers:
the front of layers 0..i is the non-dominated set of (front of layers 0..i-1) + (each candidate of layer i),
since a genotype whose prefix is dominated is dominated by the same genotype with the dominating prefix. The DP
is checked against brute force on the first 5 layers (9^5 genotypes).

Hypervolume reference (minimisation form): (-smallest possible MACs, largest possible latency), each padded by
1% of the objective's range, so the front's extreme points contribute. Figures are hypervolume / exact.

NSGA-II (engine.search.operators.algorithm, driven by ask/tell) starts from the largest (k5_e6 everywhere) and the
smallest (skip everywhere) genotypes plus random ones; random search evaluates the same two, then distinct uniform
genotypes. The last column is NSGA-II without the two seeds (only random ones), to show what seeding is worth.
All are counted in distinct genotypes evaluated (the engine caches evaluations by genotype key) and scored by
the front of everything they evaluated, as the engine writes front.csv.

Settings: population 60 with a gene mutation rate of 0.01 (pymoo's usual 1/n_var is 0.045 here). On edgegpu, a
sweep over populations 20-150 and rates 0-0.2 (3-4 seeds each) found low rates best: 1/n_var needs about twice
the evaluations to reach 99%, 0.1 about four times, 0.2 never does within 20,000, and 0 (crossover alone)
stalls near 0.988. Fronts of other devices are longer and nearly straight (raspi4: 1711 points), so they need
a larger population and budget: `--device raspi4 --budget 15000 --population 150`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.search.fronts import hypervolume, pareto_mask
from engine.search.operators import GenomeProblem, algorithm, evolve, genome_key
from hardware.lookup import hwnasbench_table
from spaces import largest, smallest
from spaces.costs import cost_table

SKELETON = "fbnet_cifar"
SHARED = Path(os.environ.get("SQUEEZENAS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DEFAULT_LUT = SHARED / "data" / "latency" / "hwnasbench_fbnet_lut.json"
TARGET = 0.99
PADDING = 0.01


@dataclass(frozen=True)
class AdditiveProblem:
    """layers[i][j] = (-MACs, latency) of candidate j at layer i; `fixed` is what every genotype adds."""

    layers: np.ndarray
    fixed: np.ndarray

    def objectives(self, X: np.ndarray) -> np.ndarray:
        return self.fixed + self.layers[np.arange(self.layers.shape[0]), X].sum(axis=1)

    def reference(self) -> np.ndarray:
        worst = self.fixed + self.layers.max(axis=1).sum(axis=0)
        best = self.fixed + self.layers.min(axis=1).sum(axis=0)
        return worst + PADDING * (worst - best)


def fbnet_problem(lut: Path, device: str) -> AdditiveProblem:
    macs = cost_table(SKELETON, (32, 32))
    latency = hwnasbench_table(lut, device, SKELETON)
    layers = np.stack([-macs.macs.astype(float), latency.latency_ms], axis=2)
    return AdditiveProblem(layers, np.array([-float(macs.fixed_macs), latency.fixed_ms]))


def non_dominated_2d(points: np.ndarray) -> np.ndarray:
    """The distinct non-dominated points of a 2-objective minimisation set, sorted by the first objective."""
    points = points[np.lexsort((points[:, 1], points[:, 0]))]
    best_so_far = np.minimum.accumulate(points[:, 1])
    keep = np.ones(len(points), dtype=bool)
    keep[1:] = points[1:, 1] < best_so_far[:-1]
    return points[keep]


def exact_front(problem: AdditiveProblem) -> np.ndarray:
    """The exact Pareto front (objective values) by dynamic programming over layers (module docstring)."""
    front = problem.fixed[None, :]
    for options in problem.layers:
        front = non_dominated_2d((front[:, None, :] + options[None, :, :]).reshape(-1, 2))
    return front


def brute_force_front(problem: AdditiveProblem) -> np.ndarray:
    n_layers, n_candidates, _ = problem.layers.shape
    X = np.array(list(itertools.product(range(n_candidates), repeat=n_layers)))
    F = problem.objectives(X)
    return np.unique(F[pareto_mask(F)], axis=0)


def extremes() -> np.ndarray:
    """The largest (k5_e6 everywhere) and the smallest (skip everywhere) genotypes."""
    return np.array([largest(SKELETON).choices, smallest(SKELETON).choices])


def nsga_curve(problem: AdditiveProblem, exact_hv: float, budget: int, population: int,
               mutation_rate: float | None, seed: int, initial: np.ndarray | None) -> list[tuple[int, float]]:
    """(distinct evaluations, hypervolume of their front / exact) after each generation, up to `budget`."""
    n_layers, n_candidates, _ = problem.layers.shape
    choices = [n_candidates] * n_layers
    nsga = algorithm(choices, population, initial=initial, mutation_rate=mutation_rate)
    cache: dict[tuple[int, ...], np.ndarray] = {}

    def objective(X: np.ndarray) -> tuple[np.ndarray, None]:
        for x in X:
            cache.setdefault(genome_key(x), problem.objectives(x[None])[0])
        return np.array([cache[genome_key(x)] for x in X]), None

    curve, front, reference = [], np.empty((0, 2)), problem.reference()
    for _, F in evolve(nsga, GenomeProblem(choices), objective, generations=budget, seed=seed):
        front = non_dominated_2d(np.concatenate([front, F]))
        curve.append((len(cache), hypervolume(front, reference) / exact_hv))
        if len(cache) >= budget:
            break
    return curve


def random_genotypes(problem: AdditiveProblem, budget: int, seed: int, initial: np.ndarray) -> np.ndarray:
    """`initial`, then distinct uniform genotypes in random order, `budget` in all (a prefix is a smaller
    random search)."""
    n_layers, n_candidates, _ = problem.layers.shape
    rng = np.random.default_rng(seed)
    X = np.unique(rng.integers(0, n_candidates, size=(2 * budget, n_layers)), axis=0)
    X = X[~(X[:, None, :] == initial[None, :, :]).all(axis=2).any(axis=1)]
    return np.concatenate([initial, X[rng.permutation(len(X))]])[:budget]


def ratio_within(curve: list[tuple[int, float]], evaluations: int) -> float:
    """The ratio after the last generation that needed at most `evaluations` evaluations."""
    return max((ratio for used, ratio in curve if used <= evaluations), default=0.0)


def first_reaching(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((used for used, ratio in curve if ratio >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="edgegpu")
    parser.add_argument("--budget", type=int, default=3000, help="distinct genotypes evaluated per run")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--population", type=int, default=60, help="NSGA-II population (and offspring)")
    parser.add_argument("--mutation-rate", type=float, default=0.01, help="per gene; 1/22 is pymoo's usual")
    parser.add_argument("--lut", type=Path, default=DEFAULT_LUT)
    args = parser.parse_args()

    problem = fbnet_problem(args.lut, args.device)
    began = time.perf_counter()
    front = exact_front(problem)
    dp_seconds = time.perf_counter() - began
    head = AdditiveProblem(problem.layers[:5], problem.fixed)
    dp, brute = exact_front(head), brute_force_front(head)
    matches = dp.shape == brute.shape and np.allclose(dp, brute, rtol=1e-12, atol=0)
    reference = problem.reference()
    exact_hv = hypervolume(front, reference)
    print(f"space {SKELETON}: {problem.layers.shape[0]} layers x {problem.layers.shape[1]} candidates "
          f"({problem.layers.shape[1] ** problem.layers.shape[0]:.2e} genotypes); objectives -MACs and "
          f"{args.device} latency ms (HW-NAS-Bench)")
    print(f"exact front: {len(front)} points by DP in {dp_seconds * 1000:.1f} ms; DP equals brute force on the "
          f"first 5 layers: {matches}; reference {reference.round(4).tolist()}\n")

    began = time.perf_counter()
    curves = [nsga_curve(problem, exact_hv, args.budget, args.population, args.mutation_rate, seed, extremes())
              for seed in range(args.seeds)]
    nsga_seconds = time.perf_counter() - began
    unseeded = [nsga_curve(problem, exact_hv, args.budget, args.population, args.mutation_rate, seed, None)
                for seed in range(args.seeds)]
    randoms = [random_genotypes(problem, args.budget, seed, extremes()) for seed in range(args.seeds)]
    reached = [first_reaching(curve, TARGET) for curve in curves]
    every_seed = {max(reached)} if None not in reached else set()
    rows = sorted({args.budget // 4, args.budget // 2, args.budget} | every_seed)
    print(f"| evaluations | NSGA-II HV / exact, mean (min) | NSGA-II seeds >= {TARGET:.0%} | "
          f"random HV / exact, mean (min) | unseeded NSGA-II HV / exact, mean (min) |")
    print("| --- | --- | --- | --- | --- |")
    for evaluations in rows:
        nsga = [ratio_within(curve, evaluations) for curve in curves]
        random = [random_ratio(problem, X[:evaluations], reference, exact_hv) for X in randoms]
        plain = [ratio_within(curve, evaluations) for curve in unseeded]
        print(f"| {evaluations} | {summary(nsga)} | {sum(r >= TARGET for r in nsga)}/{len(nsga)} | "
              f"{summary(random)} | {summary(plain)} |")
    done = [r for r in reached if r is not None]
    print(f"\nNSGA-II first reaches {TARGET:.0%} of the exact hypervolume after "
          + (f"{statistics.mean(done):.0f} evaluations on average (min {min(done)}, max {max(done)}; "
             f"{len(done)}/{len(reached)} seeds)" if done else f"more than {args.budget} evaluations (no seed)"))
    print(f"NSGA-II: population {args.population}, offspring {args.population}, gene mutation rate "
          f"{args.mutation_rate}, uniform crossover 0.9, seeded with the largest and smallest genotypes; "
          f"{nsga_seconds:.1f} s for {args.seeds} runs")


def summary(ratios: list[float]) -> str:
    return f"{statistics.mean(ratios):.4f} ({min(ratios):.4f})"


def random_ratio(problem: AdditiveProblem, X: np.ndarray, reference: np.ndarray, exact_hv: float) -> float:
    return hypervolume(non_dominated_2d(problem.objectives(X)), reference) / exact_hv


if __name__ == "__main__":
    main()
