"""Stage baseline (with audit.enabled and audit.baseline): the searched network against a hand-made one of the same
space at the same measured latency.

The hand-made baseline is MobileNetV2-like: the 3x3 inverted residual of expansion 6 (k3_e6_g1) in every searchable
layer. It is measured on the experiment's device; of the front points whose predicted latency is nearest to it,
those measured within a tolerance of it compete on inherited mIoU (the nearest measured wins when none is within).
Both networks are trained stand-alone with the audit's recipe (`audit.train`; a genotype the audit already trained
is not trained again) and evaluated on the validation images. Writes runs/<name>/audit/baseline.json.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import torch.distributed as dist

from engine.config import ExperimentConfig
from engine.errors import DeviceError
from engine.evaluation.inherited import split_batches, validation_batches
from engine.evaluation.standalone import standalone_scores
from engine.files import write_json
from engine.latency.meter import MEASURING, Meter, latency_of
from engine.latency.model import space_costs
from engine.paths import ARTEFACTS as A
from engine.runner import Context, Stage
from engine.training.distributed import World
from spaces import Genotype, skeleton, space_of

HANDMADE_CANDIDATE = "k3_e6_g1"


class Pair(NamedTuple):
    """The hand-made genotype and its searched match, with their measured latencies (ms)."""

    handmade: Genotype
    handmade_ms: float
    searched: Genotype
    searched_ms: float


def handmade(skeleton_name: str) -> Genotype:
    """The MobileNetV2-like genotype: k3_e6_g1 in every searchable layer of the skeleton."""
    try:
        choice = space_of(skeleton_name).index(HANDMADE_CANDIDATE)
    except ValueError as error:
        raise ValueError(f"skeleton {skeleton_name!r} has no hand-made baseline: {error}") from None
    return Genotype(skeleton_name, (choice,) * skeleton(skeleton_name).num_layers)


def matched_genotype(front: pd.DataFrame, target_ms: float, measure: Callable[[list[Genotype]], list[float]],
                     candidates: int = 3, tolerance: float = 0.05) -> tuple[Genotype, float]:
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


def measured_pair(config: ExperimentConfig, meter: Meter, front: pd.DataFrame) -> Pair:
    """The hand-made genotype measured, then its match on the front (matched_genotype) with the same statistic."""
    statistic = config.latency.statistic
    baseline = handmade(config.space.skeleton)
    baseline_ms = float(latency_of(meter.measure([baseline], "the hand-made baseline"), statistic)[0])
    searched, searched_ms = matched_genotype(
        front, baseline_ms, lambda genotypes: list(latency_of(meter.measure(genotypes, "front points"), statistic)))
    return Pair(baseline, baseline_ms, searched, searched_ms)


def from_main(pair: Pair | None, world: World) -> Pair:
    """The main rank's pair on every rank (only the main rank holds the meter)."""
    if not world.distributed:
        return pair
    box = [pair]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def summary(config: ExperimentConfig, front: pd.DataFrame, pair: Pair, miou: dict[Genotype, dict[str, float]]
            ) -> dict:
    """The fields of baseline.json (the test split's only with data.test_split)."""
    baseline, baseline_ms, searched, searched_ms = pair
    costs, point = space_costs(config), front.set_index("key").loc[searched.key]
    test = {"test_split": config.data.test_split,
            "test_miou_difference": miou[searched]["test"] - miou[baseline]["test"]} if "test" in miou[searched] else {}
    return {
        "handmade": {"key": baseline.key, "names": baseline.names, "measured_ms": baseline_ms,
                     "macs": costs.genotype_macs(baseline), **standalone_fields(miou[baseline])},
        "searched": {"key": searched.key, "measured_ms": searched_ms, "predicted_ms": float(point.predicted_ms),
                     "inherited_miou": float(point.miou), "macs": costs.genotype_macs(searched),
                     **standalone_fields(miou[searched])},
        "miou_difference": miou[searched]["val"] - miou[baseline]["val"], **test,
        "latency_ratio": searched_ms / baseline_ms,
        "train_steps": config.audit.train.steps, "train_batch_size": config.audit.train.batch_size,
        "statistic": config.latency.statistic,
    }


def standalone_fields(scores: dict[str, float]) -> dict[str, float]:
    return {"standalone_miou": scores["val"], **({"standalone_test_miou": scores["test"]} if "test" in scores else {})}


def run(ctx: Context) -> None:
    """The comparison (module docstring): measured on the main rank, trained on all, written by the main one."""
    config, paths, world, meter = ctx.config, ctx.paths, ctx.world, ctx.meter
    if world.is_main and meter is None:
        raise DeviceError("the baseline comparison has to measure the hand-made network but the device is "
                          "unreachable; start the device agent or check latency.agent.url")
    front = pd.read_csv(paths.front)
    pair = from_main(measured_pair(config, meter, front) if world.is_main else None, world)
    splits = {"val": validation_batches(config)}
    if config.data.test_split:
        splits["test"] = split_batches(config, config.data.test_split)
    miou = {g: standalone_scores(config, g, paths.trained(g.key), world, splits)
            for g in (pair.handmade, pair.searched)}
    if world.is_main:
        write_json(paths.baseline, summary(config, front, pair, miou))


STAGE = Stage("baseline", run, reads=(A.front,), writes=(A.baseline,), work=(A.trained_dir,),
              config=("seed", "space", "data", "evaluation", "audit.train", *MEASURING), ranks="all", device=True,
              enabled=lambda config: config.audit.enabled and config.audit.baseline,
              enabled_by="audit.enabled and audit.baseline")
