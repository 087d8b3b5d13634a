"""The DNAS strategy of the search stage: candidate costs, the lambda sweep, its genotypes scored like any subnet.

Costs: search.dnas.cost = macs takes the space's MAC table (spaces/costs.py) at the experiment's input size; lookup
measures the per-block latency table once on the experiment's local device under its protocol
(hardware.lookup.measure_lookup_table, saved as runs/<name>/dnas/lookup.json). With several skeletons the sweep runs on
each (its checkpoints and lookup table in dnas/<skeleton>/). Each lambda's genotype is then scored as the evolution's
are (inherited mIoU from its skeleton's one-shot supernet, latency from the measuring rounds: measured or predicted; an
Optuna trial with strategy "dnas" and its lambda) and measured on the device when it is reachable. Writes dnas/dnas.csv,
one row per skeleton and lambda: skeleton, genotype, relative cost, inherited mIoU, the search's latency when it was
scored and its measured latency, search seconds, and whether a subnet the evolution evaluated dominates it
(dominated_by_evolution: higher or equal mIoU at lower or equal latency, one of them strictly, on the latencies known
when DNAS ran).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from engine.config import ExperimentConfig
from engine.files import write_csv
from engine.latency.meter import STAT_FIELD, Meter, latency_of
from engine.paths import skeleton_folder
from engine.search.dnas import DnasSearch
from engine.search.fronts import dominated_by, minimised
from hardware.lookup import LookupTable, measure_lookup_table
from spaces import Genotype
from spaces.costs import cost_table

Score = Callable[[list[tuple[Genotype, dict]], torch.device], list[dict]]


def layer_costs(config: ExperimentConfig, meter: Meter | None, folder: Path) -> tuple[np.ndarray, float]:
    """cost_i of every candidate at every layer ([layers, candidates]) of the config's one skeleton and the seconds
    spent measuring them (the lookup table kept in `folder`)."""
    space = config.space
    if config.search.dnas.cost == "macs":
        return cost_table(space.skeleton, tuple(space.input_size), space.width,
                          space.num_classes).macs.astype(np.float64), 0.0
    path = folder / config.paths.lookup.name
    if path.exists():
        table = LookupTable.load(path)
        return table.latency_ms, float(table.provenance.get("seconds", 0.0))
    if meter is None or meter.local is None:  # the config forbids an agent with a lookup cost; this is a guard
        raise ValueError("search.dnas.cost lookup needs latency.device local")
    start = time.perf_counter()
    table = measure_lookup_table(space.skeleton, meter.local, meter.protocol, space.width, space.num_classes,
                                 STAT_FIELD[config.latency.statistic])
    seconds = time.perf_counter() - start
    replace(table, provenance={**table.provenance, "seconds": seconds}).save(path)
    return table.latency_ms, seconds


def run_dnas(config: ExperimentConfig, device: torch.device, meter: Meter | None, score: Score,
             reference: pd.DataFrame) -> dict:
    """The sweep (engine/search/dnas.py) on each skeleton of the run (its checkpoints and lookup table in dnas/, or
    dnas/<skeleton>/ with several), its genotypes scored and measured, dnas/dnas.csv; returns its search cost."""
    tables, costs = [], []
    for name in config.space.skeletons:
        folder = skeleton_folder(config.paths.dnas_dir, name, config.space.several)
        table, cost = sweep(config.of_skeleton(name), device, meter, score, reference, folder)
        tables.append(table)
        costs.append(cost)
    write_csv(config.paths.dnas, pd.concat(tables, ignore_index=True))
    total = {part: sum(cost[part] for cost in costs) for part in ("warmup_s", "lookup_s", "total_s")}
    return {"cost": config.search.dnas.cost, "lambdas_s": [s for cost in costs for s in cost["lambdas_s"]], **total}


def sweep(config: ExperimentConfig, device: torch.device, meter: Meter | None, score: Score, reference: pd.DataFrame,
          folder: Path) -> tuple[pd.DataFrame, dict]:
    """One skeleton's sweep: its dnas.csv rows and its cost."""
    costs, lookup_s = layer_costs(config, meter, folder)
    warm, results = DnasSearch(config, costs, device, folder).run()
    genotypes = [Genotype.from_key(r["key"]) for r in results]
    rows = score([(g, {"strategy": "dnas", "lambda": r["lambda"]}) for g, r in zip(genotypes, results)], device)
    measured = (latency_of(meter.measure(genotypes, "DNAS genotypes"), config.latency.statistic) if meter
                else np.full(len(genotypes), np.nan))
    table = pd.DataFrame({
        "skeleton": config.space.skeleton, "lambda": [r["lambda"] for r in results],
        "key": [r["key"] for r in results],
        "relative_cost": [r["relative_cost"] for r in results], "miou": [row["miou"] for row in rows],
        "latency_ms": [row["latency_ms"] for row in rows], "measured_ms": measured,
        "macs": [row["macs"] for row in rows], "seconds": [r["seconds"] for r in results],
        "min_chosen_probability": [r["min_chosen_probability"] for r in results],
        "dominated_by_evolution": dominated_by(minimised([r["miou"] for r in rows], [r["latency_ms"] for r in rows]),
                                               minimised(reference.miou, reference.latency_ms))})
    lambdas_s = [r["seconds"] for r in results]
    return table, {"warmup_s": warm["seconds"], "lambdas_s": lambdas_s, "lookup_s": lookup_s,
                   "total_s": warm["seconds"] + sum(lambdas_s) + lookup_s}
