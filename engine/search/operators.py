"""pymoo's algorithms (NSGA-II by default, `ALGORITHMS`) over integer genomes: the problem, space-respecting
operators, ask/tell driving.

The search loop never knows what a block is: it sees integer genomes (one candidate index per searchable layer,
gene i in 0..choices[i]-1) and objective values, all minimised (negate what is maximised). The caller drives
the algorithm with ask/tell, so evaluation can live anywhere (a cache, Optuna trials, Dask workers):

    search = algorithm(choices, population=64, initial=extremes)
    start(search, GenomeProblem(choices), generations=30, seed=0)
    while search.has_next():
        pop = search.ask()
        if pop is None:                       # no new genome could be bred: telling nothing ends the search
            search.tell()
            continue
        F, G = evaluate(genomes(pop))
        tell(search, pop, F, G)

Everything random comes from the generator that `start` seeds, so replaying a seed with the same objective
values (from a cache) asks for exactly the same genomes and ends in the same population; a resumed search is
such a replay. `evolve` is this loop for an objective callable.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterator, Sequence

import numpy as np
from pymoo.algorithms.base.genetic import GeneticAlgorithm
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.moo.sms import SMSEMOA
from pymoo.algorithms.moo.unsga3 import UNSGA3
from pymoo.core.duplicate import ElementwiseDuplicateElimination
from pymoo.core.individual import Individual
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.sampling import Sampling
from pymoo.operators.crossover.ux import UniformCrossover
from pymoo.util.ref_dirs import get_reference_directions

Objective = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
"""Maps genomes [n, n_var] (int) to objectives F [n, n_obj] and constraints G [n, n_ieq_constr] (or None)."""


class GenomeProblem(Problem):
    """Integer genomes, gene i in 0..choices[i]-1; minimised objectives; constraints feasible when G <= 0.

    With ask/tell the problem only describes the genome. `objective` is needed only when pymoo evaluates the
    problem itself (`pymoo.optimize.minimize`, `algorithm.run()`).
    """

    def __init__(self, choices: Sequence[int], n_obj: int = 2, n_ieq_constr: int = 0,
                 objective: Objective | None = None) -> None:
        counts = _choice_counts(choices)
        super().__init__(n_var=len(counts), n_obj=n_obj, n_ieq_constr=n_ieq_constr, xl=0, xu=counts - 1,
                         vtype=int)
        self.choices = counts
        self.objective = objective

    def _evaluate(self, x: np.ndarray, out: dict, *args, **kwargs) -> None:
        if self.objective is None:
            raise RuntimeError("this GenomeProblem has no objective: drive the algorithm with ask/tell, or pass "
                               "objective= (genomes -> (F, G)) to let pymoo evaluate it")
        F, G = self.objective(np.asarray(x).astype(int))
        out["F"] = np.asarray(F, dtype=float)
        if self.n_ieq_constr:
            out["G"] = np.asarray(G, dtype=float)


def _choice_counts(choices: Sequence[int]) -> np.ndarray:
    counts = np.asarray(choices)
    if counts.ndim != 1 or len(counts) == 0 or not np.issubdtype(counts.dtype, np.integer) or (counts < 1).any():
        raise ValueError(f"choices must be a non-empty list of candidate counts >= 1 per layer, got {choices!r}")
    return counts.astype(int)


def _ranges(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Lowest value and number of values of each gene."""
    low = np.asarray(problem.xl).astype(int)
    return low, np.asarray(problem.xu).astype(int) - low + 1


def genome_key(x: np.ndarray) -> tuple[int, ...]:
    """A genome as a tuple of ints: equal keys are the same genotype."""
    return tuple(int(v) for v in x)


Key = Callable[[np.ndarray], Hashable]
"""What tells two genomes apart."""


def genomes(pop: Population) -> np.ndarray:
    """The genomes of a population as an int array [n, n_var]."""
    return np.asarray(pop.get("X")).astype(int)


class GenomeSampling(Sampling):
    """`initial` rows first (e.g. the largest and smallest genotypes), then uniformly random distinct genomes
    (distinct by `key`: by default the genes themselves)."""

    def __init__(self, initial: np.ndarray | None = None, key: Key = genome_key) -> None:
        super().__init__()
        self.initial = None if initial is None else np.atleast_2d(np.asarray(initial)).astype(int)
        self.key = key

    def _do(self, problem: Problem, n_samples: int, *args, random_state: np.random.Generator | None = None,
            **kwargs) -> np.ndarray:
        low, count = _ranges(problem)
        rows = {self.key(x): genome_key(x) for x in (self.initial if self.initial is not None else ())}
        target = min(n_samples, int(np.prod(count.astype(object))))
        for _ in range(100):
            if len(rows) >= target:
                break
            batch = random_state.integers(low, low + count, size=(target - len(rows), problem.n_var))
            for x in batch:
                rows.setdefault(self.key(x), genome_key(x))
        return np.array(list(rows.values())[:n_samples], dtype=int).reshape(-1, problem.n_var)


class GenomeCrossover(UniformCrossover):
    """Uniform crossover: two parents give two children, each gene from either parent with probability 1/2."""

    def __init__(self, prob: float = 0.9) -> None:
        super().__init__(prob=prob, vtype=int)


class GenomeMutation(Mutation):
    """Each gene, with probability `rate` (1/n_var by default), resampled to a different value of its range."""

    def __init__(self, rate: float | None = None) -> None:
        super().__init__(prob=1.0, vtype=int)
        self.rate = rate

    def _do(self, problem: Problem, X: np.ndarray, *args, random_state: np.random.Generator | None = None,
            **kwargs) -> np.ndarray:
        low, count = _ranges(problem)
        X = np.asarray(X).astype(int)
        rate = 1.0 / problem.n_var if self.rate is None else self.rate
        hit = (random_state.random(X.shape) < rate) & (count > 1)
        shift = random_state.integers(1, np.maximum(count, 2), size=X.shape)
        return np.where(hit, low + (X - low + shift) % count, X)


class KeyDuplicateElimination(ElementwiseDuplicateElimination):
    """Genomes are equal when their keys (by default the tuples of their ints; a genome's genotype key when genes
    can be inert) are: offspring equal to one another, to the current
    population or to offspring already kept are dropped and bred again, as pymoo does with any elimination.

    Equality is the elementwise `is_equal`; `_do` finds the same duplicates with a set of keys instead of
    comparing all pairs (within one population the first occurrence is kept).
    """

    def __init__(self, key: Key = genome_key) -> None:
        super().__init__()
        self.key = key

    def is_equal(self, a: Individual, b: Individual) -> bool:
        return self.key(a.X) == self.key(b.X)

    def _do(self, pop: Population, other: Population | None, is_duplicate: np.ndarray) -> np.ndarray:
        seen = set() if other is None else {self.key(ind.X) for ind in other}
        for i, ind in enumerate(pop):
            key = self.key(ind.X)
            is_duplicate[i] = key in seen
            if other is None:
                seen.add(key)
        return is_duplicate


ALGORITHMS = ("nsga2", "smsemoa", "unsga3", "agemoea")
"""pymoo's multi-objective algorithms the search can run, all with the operators above: NSGA-II (Deb et al. 2002),
SMS-EMOA (hypervolume-contribution survival, Beume et al. 2007), U-NSGA-III (reference directions, Seada & Deb
2016; das-dennis directions, one per population member) and AGE-MOEA (adaptive geometry estimation, Panichella
2019; pymoo needs numba for it)."""


def algorithm(choices: Sequence[int], population: int, offspring: int | None = None,
              initial: np.ndarray | None = None, mutation_rate: float | None = None,
              name: str = "nsga2", key: Key = genome_key) -> GeneticAlgorithm:
    """pymoo's algorithm `name` (ALGORITHMS) over genomes of `choices`: `population` survivors, `offspring`
    (default `population`) new genomes per generation, `initial` genomes placed first in the first generation,
    gene mutation rate (1/n_var), genomes told apart by `key`."""
    counts = _choice_counts(choices)
    if initial is not None:
        initial = _checked_initial(initial, counts)
    if population < 2:
        raise ValueError(f"the search needs a population of at least 2, got {population}")
    operators = {"pop_size": population, "n_offsprings": offspring, "sampling": GenomeSampling(initial, key),
                 "crossover": GenomeCrossover(), "mutation": GenomeMutation(mutation_rate),
                 "eliminate_duplicates": KeyDuplicateElimination(key)}
    if name == "nsga2":
        return NSGA2(**operators)
    if name == "smsemoa":
        return SMSEMOA(**operators)
    if name == "unsga3":
        return UNSGA3(get_reference_directions("das-dennis", 2, n_partitions=population - 1), **operators)
    if name == "agemoea":
        return _agemoea()(**operators)
    raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}")


def _agemoea() -> type[GeneticAlgorithm]:
    try:
        from pymoo.algorithms.moo.age import AGEMOEA
    except Exception:  # pymoo raises a bare Exception when numba is missing
        raise ImportError("pymoo's AGE-MOEA needs numba: pip install numba") from None
    return AGEMOEA


def _checked_initial(initial: np.ndarray, counts: np.ndarray) -> np.ndarray:
    rows = np.atleast_2d(np.asarray(initial))
    if rows.shape[1] != len(counts) or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"initial genomes must be integer rows of {len(counts)} genes, got shape {rows.shape} "
                         f"of {rows.dtype}")
    bad = np.argwhere((rows < 0) | (rows >= counts))
    if len(bad):
        row, gene = bad[0]
        raise ValueError(f"initial genome {row}: gene {gene} = {rows[row, gene]} is outside 0..{counts[gene] - 1}")
    return rows.astype(int)


def start(algorithm: GeneticAlgorithm, problem: GenomeProblem, generations: int, seed: int) -> None:
    """Set a fresh algorithm up for `generations` generations (the first is the initial population), seeded."""
    algorithm.setup(problem, termination=("n_gen", generations), seed=seed, verbose=False)


def tell(algorithm: GeneticAlgorithm, pop: Population, F: np.ndarray, G: np.ndarray | None = None) -> None:
    """Hand the objective (and constraint) values of an asked population back to the algorithm."""
    pop.set("F", np.asarray(F, dtype=float).reshape(len(pop), -1))
    if G is not None:
        pop.set("G", np.asarray(G, dtype=float).reshape(len(pop), -1))
    algorithm.tell(infills=pop)


def evolve(algorithm: GeneticAlgorithm, problem: GenomeProblem, objective: Objective, generations: int,
           seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Run the ask/tell loop; yields each generation's genomes and objective values once told."""
    start(algorithm, problem, generations, seed)
    while algorithm.has_next():
        pop = algorithm.ask()
        if pop is None:
            algorithm.tell()
            continue
        X = genomes(pop)
        F, G = objective(X)
        tell(algorithm, pop, F, G)
        yield X, np.asarray(F, dtype=float)


