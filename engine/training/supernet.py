"""The weight-sharing supernets of an experiment, one per skeleton of `space.skeleton`: built (seeded), trained with the
shared loop one after another, resumably, on one process or many (torchrun), and loaded by every stage that scores
subnets.

Training writes runs/<name>/supernet/ (checkpoint.pt, metrics.csv; supernet/<skeleton>/ with several skeletons) as it
goes; when every skeleton's is done, runs/<name>/supernet.pt holds their final weights (by skeleton). A run killed
during the second skeleton's training resumes it from its checkpoint; the first, finished, is only reloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.config import ExperimentConfig
from engine.data.balance import class_weights
from engine.data.loader import step_batches
from engine.data.splits import train_set
from engine.training import checkpoint
from engine.training.distributed import World, sync_batchnorm
from engine.training.sampling import Rule, step_paths
from engine.training.trainer import train
from spaces import Supernet, zero_init_residuals

FORMAT = "supernets"
"""supernet.pt: {"format": FORMAT, "models": {skeleton: state_dict}}."""


def build_supernet(config: ExperimentConfig, skeleton: str, num_classes: int) -> Supernet:
    """A fresh supernet (seeded); with supernet.zero_init_residual every residual candidate starts as the identity."""
    torch.manual_seed(config.seed)
    supernet = Supernet(skeleton, config.space.width, num_classes)
    if config.supernet.zero_init_residual:
        zero_init_residuals(supernet)
    return supernet


def work_folder(config: ExperimentConfig, skeleton: str) -> Path:
    return config.paths.supernet_work(skeleton, config.space.several)


def train_one(config: ExperimentConfig, skeleton: str, dataset, world: World, weight: torch.Tensor | None
              ) -> Supernet:
    """Train (or resume, or reload when finished) one skeleton's supernet in its work folder."""
    settings = config.supernet
    supernet = build_supernet(config, skeleton, dataset.num_classes).to(world.device)
    if world.distributed:
        sync_batchnorm(supernet, world.device)
    batches = step_batches(dataset, settings.batch_size, config.seed, settings.steps, world.rank, world.size,
                           settings.num_workers)
    rule = Rule(settings.sandwich_paths, settings.extremes_every)

    def paths(step: int):
        return step_paths(skeleton, settings.sampling, config.seed, step, rule)

    return train(supernet, batches, settings, work_folder(config, skeleton), world, paths, section="supernet",
                 weight=weight)


def train_supernet(config: ExperimentConfig, world: World) -> Path:
    """Train (or resume) the supernet of every skeleton of the experiment; returns the path of their weights."""
    final = config.paths.supernet
    dataset = train_set(config.data, config.seed)
    weight = class_weights(dataset, config.supernet.class_weights, dataset.num_classes)
    models = {}
    for name in config.space.skeletons:
        models[name] = checkpoint.cpu_state(train_one(config, name, dataset, world, weight))
        if world.device.type == "cuda":
            torch.cuda.empty_cache()  # the next skeleton's supernet (xlarge's is the largest) starts from a clean cache
    if world.is_main:
        checkpoint.save(final, {"format": FORMAT, "models": models})
    return final


def load_supernets(config: ExperimentConfig, device: torch.device, names: tuple[str, ...] | None = None
                   ) -> dict[str, Supernet]:
    """The trained supernets of `names` (default: every skeleton of the run), in eval mode on `device`, by
    skeleton."""
    saved = checkpoint.load(config.paths.supernet)
    models = saved["models"] if "models" in saved else {saved["skeleton"]: saved["model"]}  # an earlier version's
    supernets = {}
    for name in names or config.space.skeletons:
        supernet = build_supernet(config, name, config.space.num_classes)
        supernet.load_state_dict(models[name])
        supernets[name] = supernet.to(device).eval()
    return supernets
