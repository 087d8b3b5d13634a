"""Stage baseline (with audit.enabled and audit.baseline): searched networks against hand-made ones of the same space at
the same measured latency, over several training seeds.

Each hand-made design of `audit.handmade` puts one candidate in every searchable layer (of each skeleton of the run):
k3_e6_g1 is MobileNetV2-like, k3_e3_g1 and k3_e1_g1 cheaper designs of the same family. Each is measured on the
experiment's device; of the front points whose predicted latency is nearest to it, those measured within a tolerance of
it compete on inherited mIoU (the nearest measured wins when none is within). Every network is trained stand-alone with
the audit's recipe (`audit.train`) under `audit.seeds` seeds (seed, seed + 1, ...: the initialisation and the batch
order; on synthetic streets also the scenes, which the seed draws; a genotype the audit already trained under a seed
is not trained again under it: its network in audit/trained/ is read, the comparison's own trainings go to
audit/baseline_trained/; with `audit.workers` > 1 all at once on worker processes, engine/training/pool.py) and
evaluated on the validation images and, with data.test_split, the test split. Writes runs/<name>/audit/baseline.json:
per pair the two networks, their measured latency and mIoU per seed, the searched − hand-made difference per seed
(paired by seed) with its mean and sample standard deviation, the latency gap and ratio and whether the two are equal
within TOLERANCE (else a note that the front does not reach the design); and the difference over every pair at equal
latency and seed (null when none is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import torch.distributed as dist

from engine.config import ExperimentConfig
from engine.errors import ConfigError, DeviceError
from engine.evaluation.inherited import split_batches, validation_batches
from engine.evaluation.standalone import spread, standalone_scores
from engine.files import write_json
from engine.latency.meter import MEASURING, Meter, latency_of
from engine.latency.model import space_costs
from engine.paths import ARTEFACTS as A
from engine.paths import WEIGHTS, RunPaths
from engine.runner import Context, Stage
from engine.training.distributed import World
from engine.training.pool import train_on_cluster
from spaces import Genotype, skeleton, space_of
from spaces.costs import CostTables


class Pair(NamedTuple):
    """A hand-made design (its candidate name and genotype) and its searched match, with measured latencies (ms)."""

    design: str
    handmade: Genotype
    handmade_ms: float
    searched: Genotype
    searched_ms: float

    @property
    def equal_latency(self) -> bool:
        """Whether the two measured latencies are equal within TOLERANCE of the hand-made design's."""
        return abs(self.searched_ms - self.handmade_ms) <= TOLERANCE * self.handmade_ms

    def reach(self) -> dict:
        """The pair's latency match for baseline.json: gap, ratio, whether equal, and what it means when not."""
        gap = self.searched_ms - self.handmade_ms
        out = {"latency_gap_ms": gap, "latency_ratio": self.searched_ms / self.handmade_ms,
               "equal_latency": self.equal_latency, "tolerance": TOLERANCE}
        if not self.equal_latency:
            out["note"] = (f"not reached: no front point measured within {TOLERANCE:.0%} of the hand-made design's "
                           f"{self.handmade_ms:.2f} ms; the nearest takes {self.searched_ms:.2f} ms ({gap:+.2f} ms): "
                           f"not a comparison at equal latency")
        return out


def handmade(skeleton_name: str, candidate: str = "k3_e6_g1") -> Genotype:
    """The hand-made genotype with `candidate` in every searchable layer (k3_e6_g1: MobileNetV2-like)."""
    try:
        choice = space_of(skeleton_name).index(candidate)
    except ValueError as error:
        raise ConfigError(f"audit.handmade: skeleton {skeleton_name!r} has no hand-made design {candidate!r}: "
                          f"{error}") from None
    return Genotype(skeleton_name, (choice,) * skeleton(skeleton_name).num_layers)


TOLERANCE = 0.05
"""Two measured latencies are equal within this fraction of the hand-made design's; a pair outside it is reported as
the front not reaching the design, with the gap, and left out of the comparison over all pairs."""


def matched_genotype(front: pd.DataFrame, target_ms: float, measure: Callable[[list[Genotype]], list[float]],
                     candidates: int = 3, tolerance: float = TOLERANCE) -> tuple[Genotype, float]:
    """Of the `candidates` front points predicted nearest to `target_ms`, the highest-mIoU one measured within
    +-tolerance (relative) of it, else the one measured nearest; with its measured latency in ms."""
    if front.empty:
        raise ValueError("front.csv has no points to match the hand-made baseline with; rerun the search stage")
    nearest = front.assign(gap=(front.latency_ms - target_ms).abs()).nsmallest(candidates, "gap")
    genotypes = [Genotype.from_key(key) for key in nearest.key]
    measured = np.asarray(measure(genotypes), dtype=np.float64)
    gap = np.abs(measured - target_ms)
    within = gap <= tolerance * target_ms
    best = int(np.argmax(np.where(within, nearest.miou.to_numpy(), -np.inf))) if within.any() else int(np.argmin(gap))
    return genotypes[best], float(measured[best])


def measured_pairs(config: ExperimentConfig, meter: Meter, front: pd.DataFrame) -> list[Pair]:
    """Each hand-made design measured, then its match on the front (matched_genotype) with the same statistic."""
    statistic = config.latency.statistic
    pairs = []
    designs = [(name, design) for name in config.space.skeletons for design in config.audit.handmade]
    for name, design in designs:
        baseline = handmade(name, design)
        design = f"{design} ({name})" if config.space.several else design
        baseline_ms = float(latency_of(meter.measure([baseline], f"the hand-made {design}"), statistic)[0])
        searched, searched_ms = matched_genotype(
            front, baseline_ms, lambda genotypes: list(latency_of(meter.measure(genotypes, "front points"), statistic)))
        pairs.append(Pair(design, baseline, baseline_ms, searched, searched_ms))
    return pairs


def from_main(pairs: list[Pair] | None, world: World) -> list[Pair]:
    """The main rank's pairs on every rank (only the main rank holds the meter)."""
    if not world.distributed:
        return pairs
    box = [pairs]
    dist.broadcast_object_list(box, src=0)
    return box[0]


Scores = dict[tuple[str, int], dict[str, float]]
"""(genotype key, seed index) -> mIoU on each split ("val", and "test" with data.test_split)."""


def trained_folder(paths: RunPaths, key: str, seed_index: int) -> Path:
    """Where the comparison's network of `key` under seed index `seed_index` is: the audit's, when the audit trained it
    under that seed (the same recipe), else the comparison's own folder."""
    audit = paths.trained(key, seed_index)
    return audit if (audit / WEIGHTS).exists() else paths.baseline_trained(key, seed_index)


def trained_scores(ctx: Context, pairs: list[Pair]) -> Scores:
    """Every network of the pairs trained stand-alone under each seed, scored on val (and test)."""
    config, world = ctx.config, ctx.world
    splits = {"val": validation_batches(config)}
    if config.data.test_split:
        splits["test"] = split_batches(config, config.data.test_split)
    genotypes = dict.fromkeys(g for pair in pairs for g in (pair.handmade, pair.searched))
    jobs = [(g.key, trained_folder(ctx.paths, g.key, index), index) for index in range(config.audit.seeds)
            for g in genotypes]
    train_on_cluster(config, "audit.train", jobs, config.audit.workers, world, config.paths.baseline_dask)
    seeded = [config.model_copy(update={"seed": config.seed + index}) for index in range(config.audit.seeds)]
    return {(g.key, index): standalone_scores(seeded[index], g, trained_folder(ctx.paths, g.key, index), world, splits)
            for index in range(config.audit.seeds) for g in genotypes}


def network(config: ExperimentConfig, costs: CostTables, genotype: Genotype, ms: float, scores: Scores) -> dict:
    seeds = range(config.audit.seeds)
    out = {"key": genotype.key, "measured_ms": ms, "macs": costs.genotype_macs(genotype),
           "standalone_miou": spread([scores[genotype.key, i]["val"] for i in seeds])}
    if config.data.test_split:
        out["standalone_test_miou"] = spread([scores[genotype.key, i]["test"] for i in seeds])
    return out


def differences(config: ExperimentConfig, pairs: list[Pair], scores: Scores, split: str) -> list[float]:
    """searched − hand-made mIoU on `split`, paired by seed, for every pair."""
    return [scores[p.searched.key, i][split] - scores[p.handmade.key, i][split]
            for p in pairs for i in range(config.audit.seeds)]


def summary(config: ExperimentConfig, front: pd.DataFrame, pairs: list[Pair], scores: Scores) -> dict:
    """The fields of baseline.json (the test split's only with data.test_split)."""
    splits = ["val", "test"] if config.data.test_split else ["val"]
    rows, costs = [], space_costs(config)
    for pair in pairs:
        point = front.set_index("key").loc[pair.searched.key]
        searched = {**network(config, costs, pair.searched, pair.searched_ms, scores),
                    "predicted_ms": float(point.predicted_ms), "inherited_miou": float(point.miou)}
        rows.append({"design": pair.design, "handmade": network(config, costs, pair.handmade, pair.handmade_ms, scores),
                     "searched": searched, **pair.reach(),
                     **{f"{s}_miou_difference": spread(differences(config, [pair], scores, s)) for s in splits}})
    equal = [pair for pair in pairs if pair.equal_latency]
    over_equal = {f"{s}_miou_difference": spread(differences(config, equal, scores, s)) if equal else None
                  for s in splits}
    return {"pairs": rows, **over_equal, "pairs_at_equal_latency": len(equal),
            "seeds": config.audit.seeds, "test_split": config.data.test_split,
            "train_steps": config.audit.train.steps, "train_batch_size": config.audit.train.batch_size,
            "statistic": config.latency.statistic}


def run(ctx: Context) -> None:
    """The comparison (module docstring): measured on the main rank, trained on all, written by the main one."""
    config, paths, world, meter = ctx.config, ctx.paths, ctx.world, ctx.meter
    if world.is_main and meter is None:
        raise DeviceError("the baseline comparison has to measure the hand-made networks but the device is "
                          "unreachable; start the device agent or check latency.agent.url")
    front = pd.read_csv(paths.front)
    pairs = from_main(measured_pairs(config, meter, front) if world.is_main else None, world)
    scores = trained_scores(ctx, pairs)
    if world.is_main:
        write_json(paths.baseline, summary(config, front, pairs, scores))


STAGE = Stage("baseline", run, reads=(A.front,), uses=(A.trained("*") / WEIGHTS,), writes=(A.baseline,),
              work=(A.baseline_trained_dir, A.baseline_dask),
              config=("seed", "space", "data", "evaluation", "audit.train", "audit.handmade", "audit.seeds",
                      *MEASURING),
              ranks="all", device=True, enabled=lambda config: config.audit.enabled and config.audit.baseline,
              enabled_by="audit.enabled and audit.baseline")
