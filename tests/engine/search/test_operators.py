"""NSGA-II over integer genomes: operators stay in the space, ask/tell replays exactly, fronts and hypervolumes."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pymoo.core.population import Population
from pymoo.optimize import minimize

from engine.search.fronts import hypervolume, pareto_mask
from engine.search.operators import (
    ALGORITHMS,
    GenomeMutation,
    GenomeProblem,
    GenomeSampling,
    KeyDuplicateElimination,
    algorithm,
    evolve,
    genome_key,
    genomes,
    start,
    tell,
)

CHOICES = [2, 3, 5, 1, 4, 9]


def additive(n_layers: int = 6, n_choices: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer (cost, quality) tables of a small additive problem: quality costs, with noise."""
    rng = np.random.default_rng(seed)
    quality = rng.random((n_layers, n_choices))
    cost = quality + 0.5 * rng.random((n_layers, n_choices))
    return cost, quality


def additive_objective(cost: np.ndarray, quality: np.ndarray):
    layers = np.arange(cost.shape[0])

    def objective(X: np.ndarray) -> tuple[np.ndarray, None]:
        return np.stack([-quality[layers, X].sum(axis=1), cost[layers, X].sum(axis=1)], axis=1), None

    return objective


def test_sampling_is_in_range_distinct_and_starts_with_initial():
    problem = GenomeProblem(CHOICES)
    initial = np.array([[1, 2, 4, 0, 3, 8], [0, 0, 0, 0, 0, 0]])
    X = GenomeSampling(initial).do(problem, 50, random_state=np.random.default_rng(0)).get("X")
    assert X.shape == (50, len(CHOICES))
    assert ((X >= 0) & (X < CHOICES)).all()
    assert len({genome_key(x) for x in X}) == 50
    np.testing.assert_array_equal(X[:2], initial)


def test_sampling_stops_at_the_size_of_the_space():
    X = GenomeSampling().do(GenomeProblem([2, 2]), 10, random_state=np.random.default_rng(0)).get("X")
    assert sorted(genome_key(x) for x in X) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_mutation_resamples_each_hit_gene_to_another_value_of_its_range():
    problem = GenomeProblem(CHOICES)
    X = np.zeros((200, len(CHOICES)), dtype=int)
    mutated = GenomeMutation(rate=1.0).do(problem, Population.new("X", X), random_state=np.random.default_rng(1))
    Y = mutated.get("X")
    assert ((Y >= 0) & (Y < CHOICES)).all()
    single = CHOICES.index(1)
    assert (Y[:, single] == 0).all()
    others = [i for i, count in enumerate(CHOICES) if count > 1]
    assert (Y[:, others] != 0).all()
    assert {int(v) for v in Y[:, CHOICES.index(9)]} == set(range(1, 9))


def test_key_elimination_drops_copies_within_and_against_other_populations():
    pop = Population.new("X", np.array([[0, 1], [1, 1], [0, 1], [2, 0]]))
    other = Population.new("X", np.array([[2, 0]]))
    kept = KeyDuplicateElimination().do(pop, other)
    assert [genome_key(x) for x in kept.get("X")] == [(0, 1), (1, 1)]
    assert KeyDuplicateElimination().is_equal(pop[0], pop[2])


def test_generations_stay_in_range_and_offspring_are_new_genotypes():
    problem = GenomeProblem(CHOICES)
    objective = additive_objective(*additive(len(CHOICES), 9))
    nsga = algorithm(CHOICES, population=12, mutation_rate=0.3)
    start(nsga, problem, generations=15, seed=3)
    while nsga.has_next():
        current = set() if nsga.pop is None else {genome_key(x) for x in genomes(nsga.pop)}
        pop = nsga.ask()
        X = genomes(pop)
        keys = [genome_key(x) for x in X]
        assert ((X >= 0) & (X < CHOICES)).all()
        assert len(set(keys)) == len(keys) == 12
        assert not current & set(keys)
        tell(nsga, pop, objective(X)[0])


def test_initial_genomes_are_checked():
    with pytest.raises(ValueError, match="gene 2 = 5 is outside 0..4"):
        algorithm(CHOICES, population=8, initial=np.array([[0, 0, 5, 0, 0, 0]]))
    with pytest.raises(ValueError, match="6 genes"):
        algorithm(CHOICES, population=8, initial=np.array([[0, 0]]))


def named(name: str):
    """pymoo's algorithm `name` with the search's operators; skipped when pymoo cannot build it here (numba)."""
    if name == "agemoea":
        pytest.importorskip("numba", reason="pymoo's AGE-MOEA needs numba")
    return lambda choices, **settings: algorithm(choices, name=name, **settings)


def run_recorded(objective, seed: int, n_ieq_constr: int = 0,
                 name: str = "nsga2") -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Every generation's genomes, and the final population's genomes and objectives."""
    nsga = algorithm([4] * 6, population=10, initial=np.array([[0] * 6, [3] * 6]), name=name)
    asked = [X for X, _ in evolve(nsga, GenomeProblem([4] * 6, n_ieq_constr=n_ieq_constr), objective, 12, seed)]
    return asked, genomes(nsga.pop), nsga.pop.get("F")


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("constrained", [False, True])
def test_replaying_a_seed_with_cached_values_asks_the_same_genomes(constrained: bool, name: str):
    named(name)
    base = additive_objective(*additive())
    cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}

    def evaluate(X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        F, _ = base(X)
        G = (X.sum(axis=1, keepdims=True) - 12.0) if constrained else None
        for i, x in enumerate(X):
            cache[genome_key(x)] = (F[i], None if G is None else G[i])
        return F, G

    def replay(X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        rows = [cache[genome_key(x)] for x in X]
        return np.array([f for f, _ in rows]), None if not constrained else np.array([g for _, g in rows])

    first = run_recorded(evaluate, seed=7, n_ieq_constr=int(constrained), name=name)
    second = run_recorded(replay, seed=7, n_ieq_constr=int(constrained), name=name)
    assert len(first[0]) == len(second[0]) == 12
    for a, b in zip(first[0], second[0]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_array_equal(first[2], second[2])
    other = run_recorded(evaluate, seed=8, n_ieq_constr=int(constrained), name=name)
    assert any(not np.array_equal(a, b) for a, b in zip(first[0][1:], other[0][1:]))


def asked_digest() -> str:
    asked, final, _ = run_recorded(additive_objective(*additive()), seed=5)
    return hashlib.sha256(np.concatenate(asked + [final]).astype(np.int64).tobytes()).hexdigest()


def test_a_replay_in_another_process_asks_the_same_genomes():
    """A resumed search runs in a new process, with another string-hash seed."""
    root = Path(__file__).resolve().parents[3]
    code = "from tests.engine.search.test_operators import asked_digest; print(asked_digest())"
    digests = {subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": str(hash_seed)}).stdout.strip()
               for hash_seed in (1, 2)}
    assert digests == {asked_digest()}


def test_constraints_keep_the_final_population_feasible():
    base = additive_objective(*additive())

    def objective(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return base(X)[0], X.sum(axis=1, keepdims=True) - 6.0

    problem = GenomeProblem([4] * 6, n_ieq_constr=1, objective=objective)
    result = minimize(problem, algorithm([4] * 6, population=16), ("n_gen", 15), seed=0)
    assert (result.X.sum(axis=1) <= 6).all()


def test_problem_without_objective_tells_how_to_drive_it():
    with pytest.raises(RuntimeError, match="ask/tell"):
        GenomeProblem([2, 2]).evaluate(np.array([[0, 1]]))


def test_pareto_mask_by_hand():
    F = np.array([[1, 3], [2, 2], [2, 2], [3, 1], [2, 3], [3, 3], [1, 4]])
    np.testing.assert_array_equal(pareto_mask(F), [True, True, True, True, False, False, False])
    assert pareto_mask(np.zeros((0, 2))).shape == (0,)
    np.testing.assert_array_equal(pareto_mask(np.array([[1, 1, 1], [0, 2, 1], [1, 1, 2]])), [True, True, False])


def test_hypervolume_by_hand():
    assert hypervolume(np.array([[1, 3], [2, 2], [3, 1]]), [4, 4]) == pytest.approx(6.0)
    assert hypervolume(np.array([[1, 3], [2, 2], [3, 1], [2.5, 2.5], [0, 5], [4, 0]]), [4, 4]) == pytest.approx(6.0)
    assert hypervolume(np.array([[5.0, 5.0]]), [4, 4]) == 0.0
    assert hypervolume(np.zeros((0, 2)), [1, 1]) == 0.0
    assert hypervolume(np.array([[0, 0, 0], [1, 1, -1]]), [2, 2, 2]) == pytest.approx(8.0 + 3.0 - 2.0)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_each_algorithm_reaches_the_brute_force_front_of_a_small_additive_problem(name: str):
    build = named(name)
    cost, quality = additive(6, 4, seed=1)
    objective = additive_objective(cost, quality)
    everything = objective(np.array(list(itertools.product(range(4), repeat=6))))[0]
    reference = everything.max(axis=0) + 0.01
    exact = hypervolume(everything[pareto_mask(everything)], reference)
    nsga = build([4] * 6, population=30, mutation_rate=0.1)
    evaluated = np.concatenate([F for _, F in evolve(nsga, GenomeProblem([4] * 6), objective, 20, seed=0)])
    evaluated = np.unique(evaluated, axis=0)
    assert len(evaluated) <= 600
    assert hypervolume(evaluated[pareto_mask(evaluated)], reference) >= 0.99 * exact
    drawn = everything[np.random.default_rng(0).permutation(len(everything))[:len(evaluated)]]
    assert hypervolume(drawn[pareto_mask(drawn)], reference) < 0.97 * exact


def test_a_search_that_has_seen_the_whole_space_stops_asking():
    nsga = algorithm([2, 2], population=4)
    asked = [X for X, _ in evolve(nsga, GenomeProblem([2, 2]), lambda X: (X.astype(float), None), 10, seed=0)]
    assert len(asked) == 1 and len(asked[0]) == 4
    assert not nsga.has_next()
