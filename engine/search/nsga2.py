"""NSGA-II over the genotypes of a run: pymoo's algorithm (engine/search/operators.py) driven by ask/tell, each
genome scored (engine/evaluation/scoring.py, here or on Dask workers) and predicted (the latency model), and every
evaluation stored at once as one Optuna trial (engine/search/study.py).

Resuming: the algorithm is replayed from the same seed; genomes whose trial exists take their stored mIoU instead
of being scored again, and predicted latency is recomputed from the same predictor, so a run killed at any point
ends with the same front as an uninterrupted one. Hypervolume per generation: objectives (-mIoU, latency /
reference) against the reference point (0, 1), the reference latency being 1.1 x the largest genotype's prediction.
"""

from __future__ import annotations

import time

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial
from rich.progress import Progress

from engine.config import ExperimentConfig
from engine.evaluation.scoring import open_scorer
from engine.latency.model import LatencyModel
from engine.search import fronts
from engine.search import operators as nsga
from engine.search.study import finished, open_study
from spaces import Genotype, largest, smallest
from spaces.space import skeleton, space_of


class Search:
    """One NSGA-II search of an experiment (module docstring)."""

    def __init__(self, config: ExperimentConfig, latency: LatencyModel):
        self.config = config
        self.latency = latency
        self.skeleton = config.space.skeleton
        self.layers = skeleton(self.skeleton).num_layers
        self.names = [c.name for c in space_of(self.skeleton).candidates]
        self.distributions = {f"layer_{i:02d}": CategoricalDistribution(self.names) for i in range(self.layers)}
        self.reference = 1.1 * float(latency.predict([largest(self.skeleton)])[0][0])
        limits = config.search.constraints
        self.limits = [(column, limit) for column, limit in (("latency_ms", limits.max_latency_ms),
                                                              ("macs", limits.max_macs)) if limit is not None]

    def describe(self, genotypes: list[Genotype], origin: dict) -> list[dict]:
        """Everything but mIoU: where it comes from (strategy, generation or lambda), costs, predicted latency with
        its interval, feasibility."""
        predicted, lower, upper = self.latency.predict(genotypes)
        costs = self.latency.costs
        rows = []
        for g, mean, low, high in zip(genotypes, predicted, lower, upper):
            row = {"key": g.key, **origin, "macs": int(costs.genotype_macs(g)),
                   "params": int(costs.genotype_params(g)), "latency_ms": float(mean),
                   "latency_lower_ms": float(low), "latency_upper_ms": float(high)}
            row["feasible"] = all(row[column] <= limit for column, limit in self.limits)
            rows.append(row)
        return rows

    def store(self, study: optuna.Study, genotype: Genotype, row: dict, miou: float) -> None:
        params = {f"layer_{i:02d}": name for i, name in enumerate(genotype.names)}
        study.add_trial(create_trial(params=params, distributions=self.distributions,
                                     values=[miou, row["latency_ms"]], user_attrs=row))

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
        """The whole NSGA-II search, its trials stored as it goes; returns the hypervolume per generation. The
        study's user attribute nsga2_seconds accumulates its time over resumed runs."""
        settings = self.config.search
        study = open_study(self.config)
        done = finished(study)
        choices = [len(self.names)] * self.layers
        initial = np.array([largest(self.skeleton).choices, smallest(self.skeleton).choices])
        algorithm = nsga.algorithm(choices, settings.population, settings.offspring, initial, settings.mutation_rate)
        nsga.start(algorithm, nsga.GenomeProblem(choices, 2, len(self.limits)), settings.generations, self.config.seed)
        history, seen = [], {}
        spent, start = study.user_attrs.get("nsga2_seconds", 0.0), time.perf_counter()
        with open_scorer(self.config, device) as scorer, Progress() as progress:
            task = progress.add_task("NSGA-II generations", total=settings.generations)
            generation = 0
            while algorithm.has_next():
                population = algorithm.ask()
                if population is None:  # no new genome could be bred (a tiny space): telling nothing ends it
                    algorithm.tell()
                    continue
                genotypes = [Genotype(self.skeleton, tuple(map(int, x))) for x in population.get("X").astype(int)]
                rows = self.evaluate(study, done, genotypes, {"strategy": "nsga2", "generation": generation}, scorer)
                F, G = self.objectives(rows)
                population.set("F", F)
                if self.limits:
                    population.set("G", G)
                algorithm.tell(infills=population)
                seen.update((row["key"], row) for row in rows)
                history.append({"generation": generation, "evaluations": len(seen),
                                "hypervolume": self.hypervolume(list(seen.values()))})
                generation += 1
                progress.update(task, completed=generation)
                study.set_user_attr("nsga2_seconds", spent + time.perf_counter() - start)
        return history

    def score(self, found: list[tuple[Genotype, dict]], device) -> list[dict]:
        """Rows of genotypes another strategy found (each with its origin), scored and stored like NSGA-II's."""
        study = open_study(self.config)
        done = finished(study)
        with open_scorer(self.config, device) as scorer:
            return [self.evaluate(study, done, [genotype], origin, scorer)[0] for genotype, origin in found]
