"""The evolutionary strategy over the genotypes of a run (strategy "evolution", formerly "nsga2": the pymoo algorithm
that `search.algorithm` names, NSGA-II, SMS-EMOA, U-NSGA-III or AGE-MOEA, with the same operators,
engine/search/operators.py),
driven by ask/tell, each genome scored (engine/evaluation/scoring.py, here or on Dask workers) and its latency taken
from the measuring rounds (engine/search/rounds.py: measured where measured, predicted otherwise), every evaluation
stored at once as one Optuna trial (engine/search/study.py).

Rounds: the generations are cut into `search.rounds` blocks; after each block but the last, a round measures the
front's unmeasured subnets and the least certain near it and refits the predictor, and every subnet's latency is
refreshed, the algorithm's surviving population included (re-ranked by pymoo's survival). After the last generation
(and any other strategy), `close` measures the front until it holds no unmeasured point or `search.measure_limit` is
spent, and completes every trial with its final latency.

Resuming: the algorithm is replayed from the same seed; genomes whose trial exists take their stored mIoU instead of
being scored again, measurements come from the measurement store and the rounds' predictors from their folders, so a
run killed at any point ends with the same front as an uninterrupted one. Hypervolume per generation: objectives
(-mIoU, latency / reference) against the reference point (0, 1), the reference latency being 1.1 x the first
prediction of the largest genotype (of the slowest skeleton's, with several). With several skeletons the genome has a
skeleton gene (engine/search/genome.py).
"""

from __future__ import annotations

import math
import time
from functools import cached_property
from typing import Callable

import numpy as np
import optuna
from pymoo.core.individual import calc_cv
from rich.progress import Progress

from engine.config import ExperimentConfig
from engine.errors import ConfigError
from engine.evaluation.scoring import open_scorer
from engine.search import fronts
from engine.search import operators
from engine.search.genome import Genome
from engine.search.rounds import Rounds
from engine.search.study import add_scored, complete, open_study, scored
from spaces import Genotype, largest

EVOLUTION = "evolution"
"""The strategy's name in search.strategies and in each of its trials (the user attribute `strategy`)."""


def search_seconds(study: optuna.Study, default: float = 0.0) -> float:
    """The evolutionary search's time over resumed runs, from the study (nsga2_seconds in a study made before the
    strategy was renamed)."""
    attrs = study.user_attrs
    return float(attrs.get("evolution_seconds", attrs.get("nsga2_seconds", default)))


class EvolutionarySearch:
    """One evolutionary search of an experiment (module docstring); the other strategies (DNAS, the accuracy
    surrogate) score, store and close through it too."""

    def __init__(self, config: ExperimentConfig, rounds: Rounds):
        self.config = config
        self.rounds = rounds
        self.genome = Genome(config.space.skeletons)
        self.reference = 1.1 * float(rounds.model.predict([largest(name) for name in self.genome.skeletons])[0].max())
        limits = config.search.constraints
        self.limits = [(column, limit) for column, limit in (("latency_ms", limits.max_latency_ms),
                                                              ("macs", limits.max_macs)) if limit is not None]

    @cached_property
    def study(self) -> optuna.Study:
        """The run's study, opened (and checked against what its trials were scored with) once."""
        return open_study(self.config)

    def describe(self, genotypes: list[Genotype], origin: dict) -> list[dict]:
        """Everything but mIoU: where it comes from (strategy, generation or lambda), costs, latency (measured or
        predicted, with the prediction's interval), feasibility."""
        costs = self.rounds.model.costs
        rows = [{"key": g.key, **origin, "macs": int(costs.genotype_macs(g)), "params": int(costs.genotype_params(g))}
                for g in genotypes]
        return self.with_latency(rows, genotypes)

    def refresh(self, rows: list[dict]) -> list[dict]:
        """The rows with the latency the rounds know now (and feasibility under it)."""
        return self.with_latency(rows, [Genotype.from_key(row["key"]) for row in rows])

    def with_latency(self, rows: list[dict], genotypes: list[Genotype]) -> list[dict]:
        """Each row with its genotype's latency fields from the rounds, and its feasibility under them."""
        fresh = [{**row, **latency} for row, latency in zip(rows, self.rounds.latency(genotypes))]
        for row in fresh:
            row["feasible"] = self.feasible(row)
        return fresh

    def feasible(self, row: dict) -> bool:
        """Whether a row's latency and MACs keep the search's constraints."""
        return all(row[column] <= limit for column, limit in self.limits)

    def store(self, study: optuna.Study, genotype: Genotype, row: dict, miou: float) -> None:
        add_scored(study, self.genome.params(genotype), self.genome.distributions(genotype), {**row, "miou": miou})

    def evaluate(self, study: optuna.Study, done: dict[str, dict], genotypes: list[Genotype], origin: dict,
                 scorer) -> list[dict]:
        """Rows (with mIoU) of some genotypes; new ones are scored and stored as trials one by one."""
        rows = {row["key"]: row for row in self.describe(genotypes, origin)}
        new = [g for g in dict.fromkeys(genotypes) if g.key not in done]
        for genotype, record in scorer.scores(new):
            row = rows[genotype.key]
            self.store(study, genotype, row, float(record["miou"]))
            done[genotype.key] = {**row, "miou": float(record["miou"])}
        return [{**rows[g.key], "miou": done[g.key]["miou"]} for g in genotypes]

    def objectives(self, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        F = fronts.minimised([row["miou"] for row in rows], [row["latency_ms"] for row in rows])
        G = np.array([[row[column] - limit for column, limit in self.limits] for row in rows])
        return F, G.reshape(len(rows), len(self.limits))

    def hypervolume(self, rows: list[dict]) -> float:
        rows = [row for row in rows if row["feasible"]]
        if not rows:
            return 0.0
        F = np.array([[-row["miou"], row["latency_ms"] / self.reference] for row in rows])
        return fronts.hypervolume(F, [0.0, 1.0])

    def run(self, device) -> list[dict]:
        """The whole evolutionary search and its rounds, trials stored as it goes; returns the hypervolume per
        generation. The study's user attribute evolution_seconds accumulates its time over resumed runs."""
        settings = self.config.search
        study = self.study
        done = scored(study)
        algorithm = self.algorithm(self.genome.initial())
        problem = operators.GenomeProblem(self.genome.choices, 2, len(self.limits))
        operators.start(algorithm, problem, settings.generations, self.config.seed)
        per_round = math.ceil(settings.generations / min(settings.rounds, settings.generations))
        history, seen = [], {}
        record_time = self.clock()
        with open_scorer(self.config, device) as scorer, Progress() as progress:
            task = progress.add_task(f"{settings.algorithm} generations", total=settings.generations)
            generation = 0
            while algorithm.has_next():
                population = algorithm.ask()
                if population is None:  # no new genome could be bred (a tiny space): telling nothing ends it
                    algorithm.tell()
                    continue
                genotypes = [self.genome.decode(x) for x in operators.genomes(population)]
                origin = {"strategy": EVOLUTION, "generation": generation, "round": len(self.rounds.records) + 1}
                rows = self.evaluate(study, done, genotypes, origin, scorer)
                self.tell(population, rows)
                algorithm.tell(infills=population)
                seen.update((row["key"], row) for row in rows)
                generation += 1
                if generation % per_round == 0 and algorithm.has_next() and self.rounds.left > 0:
                    seen = self.round(algorithm, seen, generation - 1)
                history.append({"generation": generation - 1, "evaluations": len(seen),
                                "hypervolume": self.hypervolume(list(seen.values()))})
                progress.update(task, completed=generation)
                record_time()
        return history

    def clock(self) -> Callable[[], None]:
        """A function that stores in the study's user attribute evolution_seconds the search's time so far: the
        earlier (resumed) runs' and this one's since clock() was called."""
        spent, start = search_seconds(self.study), time.perf_counter()
        return lambda: self.study.set_user_attr("evolution_seconds", spent + time.perf_counter() - start)

    def algorithm(self, initial: np.ndarray):
        settings = self.config.search
        try:
            return operators.algorithm(self.genome.choices, settings.population, settings.offspring, initial,
                                  settings.mutation_rate, settings.algorithm, self.genome.key)
        except ImportError as error:
            raise ConfigError(f"search.algorithm {settings.algorithm}: {error}") from None

    def tell(self, population, rows: list[dict]) -> None:
        """Set a population's objectives (and constraints) from its rows."""
        F, G = self.objectives(rows)
        population.set("F", F)
        if self.limits:
            population.set("G", G)
            population.set("CV", np.array([calc_cv(G=g) for g in G]).reshape(-1, 1))

    def measure_round(self, seen: dict[str, dict], generation: int) -> dict[str, dict]:
        """A measuring round after `generation`: measure, refit, refresh every row."""
        record = self.rounds.measure(list(seen.values()), "search", generation)
        seen = {row["key"]: row for row in self.refresh(list(seen.values()))}
        record.update(self.front_state(list(seen.values())))
        return seen

    def round(self, algorithm, seen: dict[str, dict], generation: int) -> dict[str, dict]:
        """A measuring round, then the algorithm's population refreshed (re-ranked by its survival, as pymoo would
        after a generation)."""
        seen = self.measure_round(seen, generation)
        population = algorithm.pop
        self.tell(population, [seen[self.genome.key(x)] for x in operators.genomes(population)])
        algorithm.pop = algorithm.survival.do(algorithm.problem, population, n_survive=len(population),
                                              algorithm=algorithm, random_state=algorithm.random_state)
        return seen

    def front_state(self, rows: list[dict]) -> dict:
        """The front's size, how many of its points are unmeasured, and the search's measurements so far (and how
        many of them were measured twice, search.recheck)."""
        mask = fronts.rows_front_mask(rows)
        front = [row for row, member in zip(rows, mask) if member]
        return {"front_size": len(front), "measured_total": len(self.rounds.spent),
                "measured_twice": sum(not math.isnan(row["first_ms"]) for row in self.rounds.spent),
                "front_unmeasured": sum(row["latency_source"] != "measured" for row in front)}

    def close(self) -> dict:
        """After every strategy: measure the front until it holds no unmeasured point or the limit is spent, then
        complete every trial with its final latency. Returns the last front state."""
        study = self.study
        rows = self.refresh(list(scored(study).values()))
        state = self.front_state(rows)
        while state["front_unmeasured"] and self.rounds.left > 0:
            record = self.rounds.measure(rows, "closing", None)
            rows = self.refresh(rows)
            state = self.front_state(rows)
            record.update(state)
        complete(study, {row["key"]: row for row in rows})
        return state

    def score(self, found: list[tuple[Genotype, dict]], device) -> list[dict]:
        """Rows of genotypes another strategy found (each with its origin), scored and stored like the evolution's."""
        study = self.study
        done = scored(study)
        with open_scorer(self.config, device) as scorer:
            return [self.evaluate(study, done, [genotype], origin, scorer)[0] for genotype, origin in found]
