"""The accuracy-surrogate strategy (search.accuracy_surrogate.enabled): MSuNAS's loop over the run's genotypes,
spending inherited-weight evaluations where the front is.

First the extremes and random subnets (`initial`) are truly evaluated (inherited mIoU: extract, recalibrate BN,
score). Then each of `search.rounds` rounds: an accuracy surrogate (predictors/accuracy.py: the regressor of best
cross-validated Kendall tau, as a bootstrap ensemble) is fit to every true evaluation so far; `search.algorithm`
runs `search.generations` generations on (surrogate mIoU, latency from the measuring rounds), seeded from the true
front; of the unevaluated subnets it asked for, `per_round` are truly evaluated (in parallel on Dask workers when
search.workers > 1): with `selection: hypervolume` (the default) one at a time the subnet whose optimistic point
(surrogate mIoU + `optimism` x its ensemble's standard deviation, at its latency) adds most hypervolume to the true
front and the points chosen before it (a greedy batch of hypervolume improvement, as in q-EHVI's "believer" batches),
the first `local` of them among mutants of the true front's points (one or two layers changed: BANANAS' local
search, next to what is known to be good, where a surrogate that trusts its own optimum may never look); with
`selection: spread` the surrogate's front spread over latency (predictors.design.spread), the mutants among the
candidates; then, if the batch is not full, the most uncertain of the rest. The surrogate's Kendall tau on the
batch, which it had not seen, is recorded (search/surrogate.csv, with how many of the batch were mutants); then a
measuring round as the plain strategy has one. Only true evaluations become Optuna trials; the surrogate's
predictions are never stored as evaluations. Every step is seeded by the round, so a resumed search replays to the
same front, scoring nothing twice.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd

from engine.evaluation.scoring import open_scorer
from engine.latency.model import space_features
from engine.search import fronts
from engine.search import operators
from engine.search.evolution import EVOLUTION, EvolutionarySearch
from engine.search.study import scored
from predictors.accuracy import AccuracySurrogate
from predictors.design import spread
from predictors.evaluation import kendall
from spaces import Genotype, extremes, sample_of

MUTANTS = 20
"""Mutants of each true front point offered to a round's batch (search.accuracy_surrogate.local)."""
COLUMNS = ("round", "evaluations", "batch", "local", "kind", "cv_tau", "batch_tau", "batch_mae")


class SurrogateSearch:
    """The surrogate-assisted loop around an EvolutionarySearch's evaluation, rounds and trial store (module
    docstring)."""

    def __init__(self, search: EvolutionarySearch):
        self.search, self.config = search, search.config
        self.settings = search.config.search.accuracy_surrogate
        self.records: list[dict] = []

    def run(self, device) -> list[dict]:
        """Initial sample, then the rounds; returns the hypervolume after each (true mIoU, latency). The study's
        user attribute evolution_seconds accumulates the loop's time over resumed runs, as the plain search's does."""
        search, settings = self.search, self.config.search
        study = search.study
        done = scored(study)
        history = []
        record_time = search.clock()
        with open_scorer(self.config, device) as scorer:
            origin = {"strategy": EVOLUTION, "generation": 0, "round": 1}
            seen = {row["key"]: row for row in search.evaluate(study, done, self.initial(), origin, scorer)}
            history.append(self.point(0, seen))
            record_time()
            for number in range(1, settings.rounds + 1):
                model = self.fit(list(seen.values()), number)
                batch, mutants = self.propose(model, seen, number)
                origin = {"strategy": EVOLUTION, "generation": number, "round": len(search.rounds.records) + 1}
                rows = search.evaluate(study, done, batch, origin, scorer)
                self.record(number, model, batch, rows, len(seen), sum(g in mutants for g in batch))
                seen.update((row["key"], row) for row in rows)
                if number < settings.rounds and search.rounds.left > 0:
                    seen = search.measure_round(seen, number)
                history.append(self.point(number, seen))
                record_time()
        return history

    def initial(self) -> list[Genotype]:
        """The largest and smallest genotypes and seeded random ones, `initial` (or the population) in all."""
        names = self.config.space.skeletons
        count = self.settings.initial or self.config.search.population
        rng = random.Random(self.config.seed)
        chosen = dict.fromkeys(extremes(names))
        while len(chosen) < count:
            chosen[sample_of(names, rng)] = None
        return list(chosen)

    def features(self, genotypes: list[Genotype]) -> np.ndarray:
        return space_features(genotypes, self.search.rounds.model.costs, "one-hot+costs")

    def fit(self, rows: list[dict], number: int) -> AccuracySurrogate:
        genotypes = [Genotype.from_key(row["key"]) for row in rows]
        surrogate = AccuracySurrogate(tuple(self.settings.kinds), self.settings.members, seed=self.config.seed + number)
        return surrogate.fit(self.features(genotypes), np.array([row["miou"] for row in rows]))

    def objective(self, model: AccuracySurrogate):
        """Genomes -> (F, G) on the surrogate's mIoU and the rounds' latency (with the search's constraints)."""
        search = self.search

        def evaluate(X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            genotypes = [search.genome.decode(x) for x in X]
            mean, _ = model.predict(self.features(genotypes))
            rows = [{**row, "miou": float(m)} for row, m in zip(search.describe(genotypes, {}), mean)]
            F, G = search.objectives(rows)
            return F, G if search.limits else None

        return evaluate

    def propose(self, model: AccuracySurrogate, seen: dict[str, dict],
                number: int) -> tuple[list[Genotype], set[Genotype]]:
        """`per_round` unevaluated subnets from a search on the surrogate (any it asked for; random ones when it
        asked for too few) and the true front's mutants (module docstring), chosen by `choose`; and the set of
        mutants offered."""
        search = self.search
        algorithm = search.algorithm(self.seeds(seen))
        problem = operators.GenomeProblem(search.genome.choices, 2, len(search.limits))
        asked = [X for X, _ in operators.evolve(algorithm, problem, self.objective(model),
                                                self.config.search.generations, self.config.seed + number)]
        genomes = np.concatenate([operators.genomes(algorithm.pop), *asked])  # the final population first
        found = [search.genome.decode(x) for x in genomes]
        found = [g for g in dict.fromkeys(found) if g.key not in seen]
        if len(found) < self.settings.per_round:
            found += [g for g in self.unseen(seen, number) if g not in found]
        taken = set(found)
        mutants = [g for g in dict.fromkeys(self.neighbours(seen, number)) if g.key not in seen and g not in taken]
        return self.choose(model, found + mutants, len(found), seen, number), set(mutants)

    def seeds(self, seen: dict[str, dict]) -> np.ndarray:
        """The inner search's first genomes: the true front's (fronts.rows_front_mask, as `neighbours` takes it),
        then the other evaluated subnets, each part by latency; at most the population."""
        rows = list(seen.values())
        latency = [row["latency_ms"] for row in rows]
        order = np.lexsort((latency, ~fronts.rows_front_mask(rows)))
        keys = [rows[i]["key"] for i in order[: self.config.search.population]]
        return np.array([self.search.genome.encode(Genotype.from_key(key)) for key in keys])

    def neighbours(self, seen: dict[str, dict], number: int) -> list[Genotype]:
        """MUTANTS mutants of each point of the true front (fronts.rows_front_mask: feasible rows only), one or two
        layers changed (BANANAS' local search): candidates next to what is known to be good, which the search on a
        surrogate that trusts its own optimum may never propose."""
        if not self.settings.local:
            return []
        rows = list(seen.values())
        front = fronts.rows_front_mask(rows)
        rng = random.Random(self.config.seed * 1000 + 500 + number)
        options = len(self.search.genome.names)
        found = []
        for index in np.flatnonzero(front):
            parent = Genotype.from_key(rows[index]["key"])
            for _ in range(MUTANTS):
                choices = list(parent.choices)
                for layer in rng.sample(range(len(choices)), rng.choice((1, 2))):
                    choices[layer] = rng.choice([c for c in range(options) if c != choices[layer]])
                found.append(Genotype(parent.skeleton, tuple(choices)))
        return found

    def unseen(self, seen: dict[str, dict], number: int) -> list[Genotype]:
        """Random unevaluated genotypes, when the search on the surrogate found nothing new."""
        rng = random.Random(self.config.seed * 1000 + number)
        found: dict[Genotype, None] = {}
        for _ in range(100 * self.settings.per_round):
            genotype = sample_of(self.config.space.skeletons, rng)
            if genotype.key not in seen:
                found[genotype] = None
            if len(found) >= self.settings.per_round:
                break
        return list(found)

    def choose(self, model: AccuracySurrogate, found: list[Genotype], local_from: int, seen: dict[str, dict],
               number: int) -> list[Genotype]:
        """The round's batch (module docstring): by hypervolume gain (first up to `local` of the mutants, found from
        `local_from` on, then any candidate) or spread, then the most uncertain."""
        count = min(self.settings.per_round, len(found))
        mean, std = model.predict(self.features(found))
        rows = self.search.describe(found, {})
        if self.settings.selection == "hypervolume":
            optimistic, known = mean + self.settings.optimism * std, list(seen.values())
            picked = self.gains(rows, optimistic, known, min(self.settings.local, count), range(local_from, len(found)))
            picked = self.gains(rows, optimistic, known, count, picked=picked)
        else:
            picked = self.spread_front(rows, mean, count - count // 4, number)
        rest = [i for i in np.argsort(-std, kind="stable") if i not in picked]
        return [found[i] for i in picked + rest[: count - len(picked)]]

    def spread_front(self, rows: list[dict], mean: np.ndarray, count: int, number: int) -> list[int]:
        """Up to `count` points of the surrogate's front (surrogate mIoU, latency), spread over latency."""
        latency = np.array([row["latency_ms"] for row in rows])
        front = np.flatnonzero(fronts.pareto_mask(fronts.minimised(mean, latency)))
        return [int(front[i]) for i in spread(latency[front], min(count, len(front)), self.config.seed + number)]

    def gains(self, rows: list[dict], optimistic: np.ndarray, known: list[dict], count: int,
              among: range | None = None, picked: tuple[int, ...] | list[int] = ()) -> list[int]:
        """Greedily, after `picked`, candidates (of `among`, by default all) whose optimistic point adds most
        hypervolume to `known` (the true evaluations) and to the candidates taken before it, until `count` are
        taken or no candidate adds any."""
        candidates = [{**row, "miou": float(m)} for row, m in zip(rows, optimistic)]
        picked = list(picked)
        known = [*known, *(candidates[i] for i in picked)]
        among = range(len(candidates)) if among is None else among
        while len(picked) < count:
            base = self.search.hypervolume(known)
            gain = {i: self.search.hypervolume([*known, candidates[i]]) - base for i in among if i not in picked}
            best = max(gain, key=gain.get, default=None)  # the first of equal gains
            if best is None or gain[best] <= 0:
                break
            picked.append(best)
            known.append(candidates[best])
        return picked

    def record(self, number: int, model: AccuracySurrogate, batch: list[Genotype], rows: list[dict],
               before: int, local: int) -> None:
        """The round's surrogate: which regressor, its cross-validated tau, its tau and error on the batch; how many
        of the batch were mutants of the true front (`local`) rather than the surrogate search's."""
        predicted, _ = model.predict(self.features(batch))
        true = np.array([row["miou"] for row in rows])
        self.records.append({"round": number, "evaluations": before + len(batch), "batch": len(batch),
                             "local": local, "kind": model.kind, "cv_tau": model.scores[model.kind],
                             "batch_tau": kendall(true, predicted),
                             "batch_mae": float(np.mean(np.abs(true - predicted))) if len(batch) else math.nan})

    def point(self, number: int, seen: dict[str, dict]) -> dict:
        return {"generation": number, "evaluations": len(seen),
                "hypervolume": self.search.hypervolume(list(seen.values()))}

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=COLUMNS)
