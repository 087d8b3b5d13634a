"""Stage 2: train the weight-sharing supernet once, resumably, on one process or many (torchrun).

Writes runs/<name>/supernet/ (checkpoint.pt, metrics.csv) while training and runs/<name>/supernet.pt (weights
only) when done; a run whose supernet.pt exists skips the stage.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine import checkpoint
from engine.config import ExperimentConfig
from engine.data import train_set
from engine.distributed import World, sync_batchnorm
from engine.loader import step_batches
from engine.sampling import step_paths
from engine.train import train
from spaces import Supernet


def build_supernet(config: ExperimentConfig, num_classes: int) -> Supernet:
    torch.manual_seed(config.seed)
    return Supernet(config.space.skeleton, config.space.width, num_classes)


def train_supernet(config: ExperimentConfig, world: World) -> Path:
    """Train (or resume) the supernet of the experiment; returns the path of its final weights."""
    final = config.run_dir / "supernet.pt"
    if final.exists():
        return final
    dataset = train_set(config.data, config.seed)
    settings = config.supernet
    supernet = build_supernet(config, dataset.num_classes).to(world.device)
    if world.distributed:
        sync_batchnorm(supernet, world.device)
    batches = step_batches(dataset, settings.batch_size, config.seed, settings.steps, world.rank, world.size,
                           settings.num_workers)
    skeleton = config.space.skeleton

    def paths(step: int):
        return step_paths(skeleton, settings.sampling, config.seed, step, settings.sandwich_paths)

    train(supernet, batches, settings, config.run_dir / "supernet", world, paths)
    if world.is_main:
        checkpoint.save(final, {"model": checkpoint.cpu_state(supernet), "skeleton": config.space.skeleton})
    return final


def load_supernet(config: ExperimentConfig, num_classes: int, device: torch.device) -> Supernet:
    supernet = build_supernet(config, num_classes)
    supernet.load_state_dict(checkpoint.load(config.run_dir / "supernet.pt")["model"])
    return supernet.to(device).eval()
