"""Stage search: the strategies of search.strategies, the measuring rounds, then the joint front of every evaluated
subnet, each front point measured on the device.

Evolution (engine/search/evolution.py): search.algorithm (pymoo's NSGA-II by default) over genotypes, objectives
inherited-weight mIoU (max) and latency (min: the measurement where the run has one, the prediction otherwise), optional
max-latency / max-MACs constraints, in rounds that measure the front and refit the predictor (engine/search/rounds.py).
DNAS (engine/search/sweep.py): the differentiable search's lambda sweep, whose genotypes are scored and stored the same
way. Then the front is measured until no point of it is unmeasured or search.measure_limit is spent. Every evaluation is
one Optuna trial (engine/search/study.py).

Writes evaluations.csv (every evaluated subnet, from the study, with its skeleton, and with search.references the
networks SqueezeNAS released for the run's skeletons, scored and measured alike: engine/search/references.py), front.csv
/ front.json (the feasible non-dominated set of all strategies' subnets, pymoo's non-dominated sorting, with
measured_ms, measured_p90_ms and predicted_ms), search/rounds.csv (per round: what was measured, the predictor's
out-of-sample accuracy on it, the front), search/measurements.csv (the search's measurements with the prediction each
had before), hypervolume.csv (the evolution's, per generation) and search_cost.json (each strategy's seconds: the
evolution's supernet training and search, DNAS's warm-up, lambdas and lookup table; the search's measurements and the
front's unmeasured points); with DNAS also dnas/dnas.csv.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import torch

from engine.config import UNSEEN, ExperimentConfig
from engine.files import write_csv, write_json
from engine.latency.meter import MEASURING, ORIGIN_COLUMNS, Journal, Meter, origin
from engine.latency.model import load_latency_model
from engine.paths import ARTEFACTS as A
from engine.paths import RunPaths
from engine.preflight import services
from engine.runner import Context, Stage
from engine.search import fronts
from engine.search.evolution import EVOLUTION, EvolutionarySearch, search_seconds
from engine.search.references import reference_rows
from engine.search.rounds import Rounds
from engine.search.study import trials_table
from engine.search.surrogate import SurrogateSearch
from engine.search.sweep import run_dnas
from spaces import Genotype

log = logging.getLogger(__name__)


def evaluations_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Every evaluated subnet with its front membership (feasible and non-dominated), by trial number."""
    return trials.assign(front=fronts.front_mask(trials.miou, trials.latency_ms, trials.feasible.astype(bool)))


def origins(paths: RunPaths, meter: Meter | None) -> pd.DataFrame:
    """ORIGIN_COLUMNS by genotype key of every measurement the run's tables show: the latency stage's, then the
    search's own (its journal: rounds, closing measurements, references)."""
    stage = pd.read_csv(paths.measurements)
    rows = {row["key"]: {column: row.get(column, "") for column in ORIGIN_COLUMNS}
            for row in stage.astype(object).where(stage.notna(), "").to_dict(orient="records")}
    if meter is not None:
        for key, (measurement, fresh) in Journal(paths.search_journal).records().items():
            rows[key] = origin(measurement, meter.store.device, fresh)
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(ORIGIN_COLUMNS))


def write_outputs(paths: RunPaths, table: pd.DataFrame, history: list[dict], rounds: Rounds,
                  meter: Meter | None) -> None:
    table = table.assign(skeleton=table.key.map(lambda key: Genotype.from_key(key).skeleton))
    measured = table.latency_source == "measured"
    known = origins(paths, meter).reindex(table.key.where(measured))
    table = pd.concat([table, known.set_index(table.index)], axis=1)
    write_csv(paths.rounds, rounds.table())
    write_csv(paths.search_measurements, pd.DataFrame(rounds.spent, columns=MEASURED_COLUMNS))
    write_csv(paths.evaluations, table)
    front = table[table.front].sort_values("latency_ms")
    records = front.astype(object).where(front.notna(), None).to_dict(orient="records")
    front_json = [{**row, "genotype": json.loads(Genotype.from_key(row["key"]).to_json())} for row in records]
    write_json(paths.front_json, front_json, default=_plain)
    write_csv(paths.hypervolume, pd.DataFrame(history, columns=["generation", "evaluations", "hypervolume"]))
    write_csv(paths.front, front)


MEASURED_COLUMNS = ("round", "key", "measured_ms", "measured_p90_ms", "predicted_before_ms", "lower_ms", "upper_ms",
                    "cv", "first_ms", *ORIGIN_COLUMNS)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)


def evolution_cost(config: ExperimentConfig, seconds: float) -> dict:
    """The evolution's cost: the one-shot supernets' training time (every skeleton's) and the search's (scoring
    included); None where a time is not known (a supernet without its training log)."""
    space = config.space
    supernet = sum(training_seconds(config.paths.supernet_metrics(name, space.several)) for name in space.skeletons)
    cost = {"supernet_s": supernet, "search_s": seconds, "total_s": supernet + seconds}
    return {name: None if math.isnan(value) else value for name, value in cost.items()}  # JSON has no NaN


def training_seconds(log) -> float:
    elapsed = pd.read_csv(log).get("elapsed_s") if log.exists() else None
    return float(elapsed.iloc[-1]) if elapsed is not None and elapsed.notna().any() else float("nan")


def run(ctx: Context) -> None:
    """The search stage (module docstring)."""
    config, paths, device = ctx.config, ctx.paths, ctx.world.device
    if ctx.meter is not None:
        ctx.meter.journal = Journal(paths.search_journal)
    try:
        search_with(ctx)
    finally:
        if ctx.meter is not None:
            ctx.meter.journal = None


def search_with(ctx: Context) -> None:
    """The strategies, the closing measurements, the references and the outputs."""
    config, paths, device = ctx.config, ctx.paths, ctx.world.device
    rounds = Rounds(config, load_latency_model(config), ctx.meter)
    search = EvolutionarySearch(config, rounds)
    history, cost = [], {"device": str(device), "threads": torch.get_num_threads()}
    surrogate = SurrogateSearch(search) if config.search.accuracy_surrogate.enabled else None
    if EVOLUTION in config.search.strategies:
        history = surrogate.run(device) if surrogate else search.run(device)
        cost[EVOLUTION] = evolution_cost(config, search_seconds(search.study, float("nan")))
    if "dnas" in config.search.strategies:
        evaluated = trials_table(search.study)
        cost["dnas"] = run_dnas(config, device, ctx.meter, search.score, evaluated[evaluated.strategy == EVOLUTION])
    state = search.close()
    cost["measuring"] = {"limit": config.search.measure_limit, **state}
    if state["front_unmeasured"]:
        why = "is spent" if config.search.measure_limit else "is 0: the search ran on predictions"
        log.warning("%d of the %d front points are not measured (search.measure_limit %d %s): their latency is "
                    "predicted", state["front_unmeasured"], state["front_size"], config.search.measure_limit, why)
    write_json(paths.search_cost, cost)
    table = evaluations_table(trials_table(search.study))
    references = reference_rows(search, ctx.meter if _measures(config) else None, device)
    write_outputs(paths, pd.concat([table, references], ignore_index=True) if len(references) else table, history,
                  rounds, ctx.meter)
    if surrogate:
        write_csv(paths.surrogate, surrogate.table())


def _config(config: ExperimentConfig) -> tuple[str, ...]:
    search = [f"search.{name}" for name in type(config.search).model_fields if name != "dnas" or _dnas(config)]
    measuring = MEASURING if _measures(config) else ("latency.statistic",)
    return ("seed", "space", "data", *UNSEEN, "evaluation", *search, *measuring)


def _dnas(config: ExperimentConfig) -> bool:
    return "dnas" in config.search.strategies


def _measures(config: ExperimentConfig) -> bool:
    return _dnas(config) or config.search.measure_limit > 0


STAGE = Stage("search", run, reads=(A.supernet, A.predictor, A.measurements, A.heldout),
              writes=(A.evaluations, A.front, A.front_json, A.hypervolume, A.search_cost, A.rounds,
                      A.search_measurements, A.surrogate, A.dnas),
              work=(A.study.with_name(A.study.name + "*"), A.round_predictors, A.search_journal, A.dnas_dir,
                    A.dask),
              config=_config, device=_measures, check=services)
"""work: the study with SQLite's -journal/-wal files, the rounds' predictors, the measurements the search used (its
journal), DNAS's checkpoints, Dask's scratch."""
