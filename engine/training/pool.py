"""Stand-alone trainings at once on a Dask LocalCluster of single-threaded worker processes (`retrain.workers`,
`audit.workers`): on a CPU of 2 cores two one-thread trainings go ~1.4x faster than one after another on 2 threads
(benchmarks/retrain_workers.py). Each job is (genotype key, folder, seed index); the largest networks start first, so
the last to start is short; each training's output goes to its folder's train.log. A worker only writes the folder's
weights (engine/training/standalone.py: a finished training is not redone); the stage then loads and scores them.
"""

from __future__ import annotations

import logging
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import torch

from engine.cluster import as_finished, dask_client, on_worker
from engine.config import ExperimentConfig, TrainConfig
from engine.errors import ConfigError
from engine.paths import WEIGHTS
from engine.training.distributed import World, init_world
from engine.training.standalone import train_standalone
from engine.training.supernet import load_supernets
from spaces import Genotype, Network
from spaces.costs import cost_tables

log = logging.getLogger(__name__)

TRAIN_LOG = "train.log"

Job = tuple[str, Path, int]
"""(genotype key, folder, seed index): trained under the run's seed + seed index into the folder."""


def settings_of(config: ExperimentConfig, section: str) -> TrainConfig:
    """A job's training settings: `section` "retrain.train" (the retrain stage's) or "audit.train" (the audit's and
    the baseline comparison's)."""
    return config.retrain.train if section == "retrain.train" else config.audit.train


def train_job(config: ExperimentConfig, section: str, key: str, folder: Path, seed_index: int,
              world: World) -> Network:
    """One training of `section`'s settings (loaded when trained already): retrain.train from scratch or from the
    supernet as retrain.init says; audit.train from scratch."""
    genotype, space = Genotype.from_key(key), config.space
    supernet = None
    if section == "retrain.train" and config.retrain.init == "inherited":
        supernet = load_supernets(config, torch.device("cpu"), (genotype.skeleton,))[genotype.skeleton]
    return train_standalone(genotype, config.data, settings_of(config, section), folder, world, space.width,
                            config.seed + seed_index, supernet, section=section)


@on_worker
def train_on_worker(config_json: str, section: str, key: str, folder: str, seed_index: int) -> None:
    """A Dask task: one training in a worker process, on one thread, its output in <folder>/train.log."""
    config = ExperimentConfig.model_validate_json(config_json)
    torch.set_num_threads(1)
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / TRAIN_LOG, "a") as output, redirect_stdout(output), redirect_stderr(output):
        train_job(config, section, key, Path(folder), seed_index, init_world(settings_of(config, section).device))


def untrained(jobs: list[Job]) -> list[Job]:
    """The jobs without a weights.pt yet, each folder once."""
    return list({folder: (key, folder, index) for key, folder, index in jobs
                 if not (folder / WEIGHTS).exists()}.values())


def train_on_cluster(config: ExperimentConfig, section: str, jobs: list[Job], workers: int, world: World,
                     scratch: Path) -> None:
    """Every job not trained yet at once on `workers` single-threaded processes (their scratch in `scratch`, a work
    folder of the calling stage), the most MACs first; nothing with fewer than two such jobs or one worker (the stage
    then trains in its own process). Refused under torchrun."""
    jobs = untrained(jobs)
    if workers < 2 or len(jobs) < 2:
        return
    setting = f"{section.split('.')[0]}.workers"
    if world.distributed:
        raise ConfigError(f"{setting} > 1 trains in Dask worker processes, not under torchrun: set {setting}=1 or "
                          f"run without torchrun")
    config_json = config.for_workers()
    tasks = [(config_json, section, key, str(Path(folder).absolute()), index) for key, folder, index in jobs]
    space = config.space
    costs = cost_tables(space.skeletons, tuple(space.input_size), space.width, space.num_classes)
    macs = [float(costs.genotype_macs(Genotype.from_key(key))) for key, _, _ in jobs]
    log.info("%s: %d trainings on %d worker processes (each one's output in its folder's %s)", section, len(jobs),
             min(workers, len(jobs)), TRAIN_LOG)
    with dask_client(scratch, min(workers, len(jobs))) as client:
        for done, (_, _, key, folder, index) in enumerate(t for t, _ in as_finished(client, train_on_worker, tasks,
                                                                                     macs)):
            log.info("%s: %d/%d trained, %s (seed %d) in %s", section, done + 1, len(jobs), key,
                     config.seed + index, folder)
