"""Stand-alone mIoU: a genotype trained from scratch with a recipe (engine/training/standalone.py, resumable), then
evaluated on the given validation batches; the audit and the baseline comparison rank with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.config import ExperimentConfig
from engine.evaluation.inherited import Batch, evaluate
from engine.training.distributed import World
from engine.training.standalone import train_standalone
from spaces import Genotype


def standalone_scores(config: ExperimentConfig, genotype: Genotype, folder: Path, world: World,
                      splits: dict[str, list[Batch]]) -> dict[str, float]:
    """The genotype trained with audit.train, then its mIoU on each named set of batches (val, test)."""
    network = train_standalone(genotype, config.data, config.audit.train, folder, world, config.space.width,
                               config.seed, section="audit.train")
    return {name: evaluate(network, batches, config.space.num_classes, world.device)["miou"]
            for name, batches in splits.items()}


def standalone_miou(config: ExperimentConfig, genotype: Genotype, folder: Path, world: World,
                    batches: list[Batch]) -> float:
    return standalone_scores(config, genotype, folder, world, {"val": batches})["val"]


def spread(values: list[float]) -> dict:
    """Mean and sample standard deviation (None below two values) of per-seed values, and the values."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else None,
            "per_seed": array.tolist()}
