"""The weight-sharing supernet of an experiment: built (seeded), trained once with the shared loop, resumably, on
one process or many (torchrun), and loaded by every stage that scores subnets.

Training writes runs/<name>/supernet/ (checkpoint.pt, metrics.csv) as it goes and runs/<name>/supernet.pt (weights
only) when done.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.config import ExperimentConfig
from engine.data.loader import step_batches
from engine.data.splits import train_set
from engine.training import checkpoint
from engine.training.distributed import World, sync_batchnorm
from engine.training.sampling import Rule, step_paths
from engine.training.trainer import train
from spaces import Supernet


def build_supernet(config: ExperimentConfig, num_classes: int) -> Supernet:
    torch.manual_seed(config.seed)
    return Supernet(config.space.skeleton, config.space.width, num_classes)


def train_supernet(config: ExperimentConfig, world: World) -> Path:
    """Train (or resume) the supernet of the experiment; returns the path of its final weights."""
    final = config.paths.supernet
    dataset = train_set(config.data, config.seed)
    settings = config.supernet
    supernet = build_supernet(config, dataset.num_classes).to(world.device)
    if world.distributed:
        sync_batchnorm(supernet, world.device)
    batches = step_batches(dataset, settings.batch_size, config.seed, settings.steps, world.rank, world.size,
                           settings.num_workers)
    skeleton = config.space.skeleton
    rule = Rule(settings.sandwich_paths, settings.extremes_every)

    def paths(step: int):
        return step_paths(skeleton, settings.sampling, config.seed, step, rule)

    train(supernet, batches, settings, config.paths.supernet_dir, world, paths, section="supernet")
    if world.is_main:
        checkpoint.save(final, {"model": checkpoint.cpu_state(supernet), "skeleton": config.space.skeleton})
    return final


def load_supernet(config: ExperimentConfig, num_classes: int, device: torch.device) -> Supernet:
    supernet = build_supernet(config, num_classes)
    supernet.load_state_dict(checkpoint.load(config.paths.supernet)["model"])
    return supernet.to(device).eval()
