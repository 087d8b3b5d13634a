"""Inherited-weight mIoU of many genotypes, in this process or on Dask workers.

`open_scorer(config, device)` gives a context manager whose `scores(genotypes)` yields (genotype, record) pairs as
they finish, so the caller can store each one at once. With `search.workers` = 1 and no scheduler, genotypes are
scored here one after another; with more workers a Dask `LocalCluster` of single-threaded processes is started
(or the running scheduler at `search.scheduler` is used), and each worker loads the supernets and the evaluation
images once and keeps them for every later task.
"""

from __future__ import annotations

import functools
import json
from contextlib import AbstractContextManager
from typing import Iterator, Sequence

import torch

from engine.config import ExperimentConfig
from engine.evaluation.inherited import InheritedEvaluator, evaluator_for
from engine.training.supernet import load_supernets
from spaces import Genotype

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


def score_on_worker(config_json: str, key: str) -> Record:
    """A Dask task: the record of one genotype (module-level, so workers can import it)."""
    return _worker_evaluator(config_json).score(Genotype.from_key(key))


class DaskScorer(AbstractContextManager):
    """Scores on a Dask cluster: a LocalCluster of `workers` processes, or the scheduler at `address`."""

    def __init__(self, config: ExperimentConfig, workers: int, address: str | None):
        import dask
        from distributed import Client, LocalCluster

        self.config_json = json.dumps(config.model_dump(mode="json"))
        scratch = str(config.paths.dask)  # the workers' and the scheduler's scratch, in the run, not /tmp
        with dask.config.set({"temporary-directory": scratch}):
            self.cluster = None if address else LocalCluster(n_workers=workers, threads_per_worker=1,
                                                             processes=True, dashboard_address=None,
                                                             local_directory=scratch)
        self.client = Client(address or self.cluster)

    def scores(self, genotypes: Sequence[Genotype]) -> Iterator[tuple[Genotype, Record]]:
        from distributed import as_completed

        futures = {self.client.submit(score_on_worker, self.config_json, g.key, pure=False): g for g in genotypes}
        for future in as_completed(futures):
            yield futures[future], future.result()

    def __exit__(self, *exc) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def open_scorer(config: ExperimentConfig, device: torch.device) -> LocalScorer | DaskScorer:
    search = config.search
    if search.workers > 1 or search.scheduler:
        return DaskScorer(config, search.workers, search.scheduler)
    return LocalScorer(evaluator_for(config, load_supernets(config, device), device, cache=False))
