"""Stage 4: the search. NSGA-II (pymoo) over genotypes, objectives inherited-weight mIoU (max) and predicted latency
(min); with "dnas" in search.strategies also the differentiable search's lambda sweep (engine/dnas_stage.py), whose
genotypes are scored and stored the same way.

The loop sees integer genomes only (engine/nsga.py); here they become genotypes, are scored (engine/scoring.py,
locally or on Dask workers) and predicted (the stage-3 predictor), and every evaluation is stored at once as one
complete Optuna trial: params = per-layer candidate names, values = (mIoU, predicted latency), user attributes =
genotype key, MACs, params, the predicted interval, strategy, generation (NSGA-II) or lambda (DNAS) and
feasibility. The study lives in
runs/<name>/study.db (SQLite) or at `search.storage` (any SQLAlchemy URL, e.g. PostgreSQL).

Resuming: the algorithm is replayed from the same seed; genomes whose trial exists take their stored mIoU instead
of being scored again, and predicted latency is recomputed from the same predictor, so a run killed at any point
ends with the same front as an uninterrupted one. The study records the predictor's digest and refuses to mix
trials of two predictors.

Writes evaluations.csv (every evaluated subnet), front.csv / front.json (the feasible non-dominated set of all
strategies' subnets), hypervolume.csv (NSGA-II, per generation, objectives (-mIoU, latency / reference) against
the reference point (0, 1), the reference latency being 1.1 x the largest genotype's prediction) and
search_cost.json (each strategy's seconds: NSGA-II's supernet training and search, DNAS's warm-up, lambdas and
lookup table). Skipped when front.csv exists.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from rich.progress import Progress

from engine import nsga
from engine.config import ExperimentConfig
from engine.dnas_stage import run_dnas
from engine.latency import LatencyModel, Meter, latency_dir, load_latency_model
from engine.scoring import open_scorer
from spaces import Genotype, largest, smallest
from spaces.space import skeleton, space_of

COLUMNS = ("trial", "strategy", "generation", "lambda", "key", "miou", "latency_ms", "latency_lower_ms",
           "latency_upper_ms", "macs", "params", "feasible", "front")


class StudyMismatch(RuntimeError):
    """The study holds trials made with another latency predictor."""


def storage_url(config: ExperimentConfig) -> str:
    return config.search.storage or f"sqlite:///{(config.run_dir / 'study.db').resolve()}"


def predictor_digest(config: ExperimentConfig) -> str:
    files = sorted((latency_dir(config) / "predictor").glob("*.json"))
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def open_study(config: ExperimentConfig) -> optuna.Study:
    """The experiment's study (created or reloaded), checked against the current predictor."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=config.name, storage=storage_url(config),
                                directions=["maximize", "minimize"], load_if_exists=True)
    digest = predictor_digest(config)
    stored = study.user_attrs.get("predictor")
    if stored is None:
        with warnings.catch_warnings():  # set_metric_names is marked experimental; optuna-dashboard shows it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["inherited mIoU", "predicted latency ms"])
        study.set_user_attr("predictor", digest)
    elif stored != digest:
        raise StudyMismatch(f"{storage_url(config)}: study {config.name!r} was made with latency predictor {stored}, "
                            f"not the current {digest}; remove the study or give the run another name")
    return study


def finished(study: optuna.Study) -> dict[str, dict]:
    """User attributes and mIoU of every complete trial, by genotype key."""
    return {t.user_attrs["key"]: {**t.user_attrs, "miou": t.values[0], "trial": t.number}
            for t in study.get_trials(deepcopy=False, states=[TrialState.COMPLETE])}


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
        F = nsga.minimised([row["miou"] for row in rows], [row["latency_ms"] for row in rows])
        G = np.array([[row[column] - limit for column, limit in self.limits] for row in rows])
        return F, G.reshape(len(rows), len(self.limits))

    def hypervolume(self, rows: list[dict]) -> float:
        rows = [row for row in rows if row["feasible"]]
        if not rows:
            return 0.0
        F = np.array([[-row["miou"], row["latency_ms"] / self.reference] for row in rows])
        return nsga.hypervolume(F, [0.0, 1.0])

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


def evaluations_table(done: dict[str, dict]) -> pd.DataFrame:
    """Every evaluated subnet with its front membership (feasible and non-dominated), by trial number."""
    table = pd.DataFrame(list(done.values())).sort_values("trial").reset_index(drop=True)
    table["front"] = False
    feasible = table.index[table.feasible]
    if len(feasible):
        F = np.stack([-table.loc[feasible, "miou"], table.loc[feasible, "latency_ms"]], axis=1)
        table.loc[feasible[nsga.pareto_mask(F)], "front"] = True
    return table.reindex(columns=list(COLUMNS))


def write_outputs(run_dir: Path, table: pd.DataFrame, history: list[dict]) -> None:
    table.to_csv(run_dir / "evaluations.csv", index=False)
    front = table[table.front].sort_values("latency_ms")
    records = front.astype(object).where(front.notna(), None).to_dict(orient="records")
    front_json = [{**row, "genotype": json.loads(Genotype.from_key(row["key"]).to_json())} for row in records]
    (run_dir / "front.json").write_text(json.dumps(front_json, indent=1, default=_plain))
    pd.DataFrame(history).to_csv(run_dir / "hypervolume.csv", index=False)
    front.to_csv(run_dir / "front.csv", index=False)  # last: its presence marks the stage as done


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)


def nsga2_cost(config: ExperimentConfig, study: optuna.Study) -> dict:
    """NSGA-II's search cost: the one-shot supernet's training time and the search's (scoring included)."""
    log = config.run_dir / "supernet" / "metrics.csv"
    elapsed = pd.read_csv(log).get("elapsed_s") if log.exists() else None
    supernet = float(elapsed.iloc[-1]) if elapsed is not None and elapsed.notna().any() else float("nan")
    search = float(study.user_attrs.get("nsga2_seconds", float("nan")))
    return {"supernet_s": supernet, "search_s": search, "total_s": supernet + search}


def run_search(config: ExperimentConfig, device, meter: Meter | None = None) -> Path:
    """The search stage (module docstring): each strategy of search.strategies, then the joint front; returns
    runs/<name>/front.csv."""
    out = config.run_dir / "front.csv"
    if out.exists():
        return out
    search = Search(config, load_latency_model(config))
    history, cost = [], {"device": str(device), "threads": torch.get_num_threads()}
    if "nsga2" in config.search.strategies:
        history = search.run(device)
        cost["nsga2"] = nsga2_cost(config, open_study(config))
    if "dnas" in config.search.strategies:
        evaluated = pd.DataFrame(list(finished(open_study(config)).values()), columns=list(COLUMNS))
        cost["dnas"] = run_dnas(config, device, meter, search.score, evaluated[evaluated.strategy == "nsga2"])
    (config.run_dir / "search_cost.json").write_text(json.dumps(cost, indent=1))
    write_outputs(config.run_dir, evaluations_table(finished(open_study(config))), history)
    return out
