"""Inherited-weight mIoU of many genotypes, in this process or on Dask workers.

`open_scorer(config, device)` gives a context manager whose `scores(genotypes)` yields (genotype, record) pairs as
they finish, so the caller can store each one at once. With `search.workers` = 1 and no scheduler, genotypes are
scored here one after another; with more workers a Dask `LocalCluster` of single-threaded processes is started
(or the running scheduler at `search.scheduler` is used), and each worker loads the supernets and the evaluation
images once and keeps them for every later task.
"""

from __future__ import annotations

import functools
import logging
import os
from contextlib import AbstractContextManager, ExitStack
from typing import Iterator, Sequence

import torch

from engine.cluster import as_finished, dask_client, on_worker
from engine.config import ExperimentConfig
from engine.evaluation.inherited import InheritedEvaluator, evaluator_for
from engine.training.supernet import load_supernets
from spaces import Genotype

log = logging.getLogger(__name__)

Record = dict


class LocalScorer(AbstractContextManager):
    """Scores in this process with one evaluator."""

    def __init__(self, evaluator: InheritedEvaluator):
        self.evaluator = evaluator

    def scores(self, genotypes: Sequence[Genotype]) -> Iterator[tuple[Genotype, Record]]:
        for genotype in genotypes:
            yield genotype, self.evaluator.score(genotype)

    def __exit__(self, *exc) -> None:
        return None


@functools.lru_cache(maxsize=2)
def _worker_evaluator(config_json: str) -> InheritedEvaluator:
    """One evaluator per worker process and experiment (CPU: one thread per worker, as the cluster is sized)."""
    config = ExperimentConfig.model_validate_json(config_json)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)
    return evaluator_for(config, load_supernets(config, device), device, cache=False)


@on_worker
def score_on_worker(config_json: str, key: str) -> Record:
    """A Dask task: the record of one genotype (module-level, so workers can import it)."""
    return _worker_evaluator(config_json).score(Genotype.from_key(key))


class DaskScorer(AbstractContextManager):
    """Scores on a Dask cluster: a LocalCluster of `workers` processes, or the scheduler at `address`."""

    def __init__(self, config: ExperimentConfig, workers: int, address: str | None):
        self.config_json = config.for_workers()
        self.stack = ExitStack()  # the workers' and the scheduler's scratch in the run, not /tmp
        self.client = self.stack.enter_context(dask_client(config.paths.dask, workers, address))
        found = len(self.client.scheduler_info(n_workers=-1)["workers"])
        log.info("scoring on %s: %d workers", f"the Dask scheduler at {address}" if address else "a local Dask cluster",
                 found)

    def scores(self, genotypes: Sequence[Genotype]) -> Iterator[tuple[Genotype, Record]]:
        tasks = [(self.config_json, genotype.key) for genotype in genotypes]
        for (_, key), record in as_finished(self.client, score_on_worker, tasks):
            yield Genotype.from_key(key), record

    def __exit__(self, *exc) -> None:
        self.stack.close()


def open_scorer(config: ExperimentConfig, device: torch.device) -> LocalScorer | DaskScorer:
    search = config.search
    if search.workers > 1 or search.scheduler:
        workers = min(search.workers, os.cpu_count() or 1)
        if workers < search.workers and not search.scheduler:
            log.info("search.workers %d capped at this machine's %d cores", search.workers, workers)
        return DaskScorer(config, workers, search.scheduler)
    return LocalScorer(evaluator_for(config, load_supernets(config, device), device, cache=False))
