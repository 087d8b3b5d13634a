"""Slow: a tiny supernet trained briefly on synthetic streets beats its untrained self on inherited mIoU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.config import ExperimentConfig
from engine.evaluation.inherited import evaluator_for
from engine.training.distributed import World
from engine.training.supernet import build_supernet, load_supernets, train_supernet
from spaces import largest, sample


@pytest.mark.slow
def test_trained_supernet_scores_clearly_higher(tmp_path: Path) -> None:
    config = ExperimentConfig.model_validate({
        "name": "learn", "runs_dir": str(tmp_path), "space": {"skeleton": "small", "width": 0.5},
        "data": {"synthetic_size": [96, 192], "crop": [96, 192], "synthetic_train": 200, "synthetic_val": 16},
        "supernet": {"steps": 200, "batch_size": 8, "lr": 0.05, "warmup_steps": 10, "checkpoint_every": 100},
        "evaluation": {"calibration_images": 16},
    })
    cpu = torch.device("cpu")
    genotypes = [largest("small"), sample("small", 100), sample("small", 101)]
    untrained = evaluator_for(config, {"small": build_supernet(config, "small", 11).eval()}, cpu, cache=False)
    before = [untrained.score(g)["miou"] for g in genotypes]
    train_supernet(config, World(0, 1, 0, cpu))
    trained = evaluator_for(config, load_supernets(config, cpu), cpu, cache=False)
    after = [trained.score(g)["miou"] for g in genotypes]
    assert all(a > 2 * b for a, b in zip(after, before)), (before, after)
