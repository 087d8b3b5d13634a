"""Stand-alone training of one genotype (from scratch or initialised from the supernet), with the same loop.

Used to retrain the networks picked from the front; writes <out>/checkpoint.pt and metrics.csv while training and
<out>/weights.pt when done (a finished run is not redone).
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.config import DataConfig, TrainConfig
from engine.data.balance import class_weights
from engine.data.loader import step_batches
from engine.data.splits import train_set
from engine.paths import WEIGHTS
from engine.training import checkpoint
from engine.training.distributed import World, sync_batchnorm
from engine.training.trainer import train
from spaces import Genotype, Network, Supernet, build, zero_init_residuals


def initial_network(genotype: Genotype, width: float, num_classes: int, seed: int,
                    supernet: Supernet | None = None, zero_residual: bool = False) -> Network:
    """A fresh network (seeded; with `zero_residual`, its residual blocks start as identities), or the supernet's
    path copied out when a supernet is given."""
    if supernet is not None:
        return supernet.extract(genotype).cpu()
    torch.manual_seed(seed)
    network = build(genotype, width, num_classes)
    if zero_residual:
        zero_init_residuals(network)
    return network


def train_standalone(genotype: Genotype, data: DataConfig, settings: TrainConfig, out_dir: Path, world: World,
                     width: float = 1.0, seed: int = 0, supernet: Supernet | None = None,
                     section: str = "train") -> Network:
    """Train the genotype's network; returns it (loaded from <out>/weights.pt when that exists). `section`: where
    `settings` sit in the configuration (retrain.train, audit.train), for the NaN message."""
    dataset = train_set(data, seed)
    network = initial_network(genotype, width, dataset.num_classes, seed, supernet, settings.zero_init_residual)
    final = out_dir / WEIGHTS
    if final.exists():
        network.load_state_dict(checkpoint.load(final)["model"])
        return network.to(world.device)
    network = network.to(world.device)
    if world.distributed:
        sync_batchnorm(network, world.device)
    batches = step_batches(dataset, settings.batch_size, seed, settings.steps, world.rank, world.size,
                           settings.num_workers)
    train(network, batches, settings, out_dir, world, section=section,
          weight=class_weights(dataset, settings.class_weights, dataset.num_classes))
    if world.is_main:
        checkpoint.save(final, {"model": checkpoint.cpu_state(network), "genotype": genotype.key})
    return network
