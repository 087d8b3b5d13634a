"""Retraining several networks one after another in this process, against all at once on Dask worker processes.

    python -m benchmarks.retrain_workers [--config experiments/quickstart.yaml] [--steps 150] [--workers 2]

The networks: the smallest path, k3_e3_g1 and k3_e6_g1 in every layer, and the largest path of the experiment's
skeleton (a spread of sizes, as picks are). Each arm trains every one of them from scratch with the experiment's
retrain.train (its steps replaced by --steps) into a fresh folder, as the retrain stage does: first in this process
one after another with torch's default threads (retrain.workers 1), then through the stage's cluster path
(engine.training.pool.train_on_cluster: retrain.workers single-threaded processes, the most MACs first; cluster
start-up included). Prints each arm's wall seconds and their ratio; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import host, one_skeleton, scratch
from engine.config import load
from engine.stages.baseline import handmade
from engine.training.distributed import init_world
from engine.training.pool import train_job, train_on_cluster
from spaces import largest, smallest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/quickstart.yaml")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(host(), f"torch threads {torch.get_num_threads()}")
    with scratch(parser, None) as folder:
        config = one_skeleton(parser, load(args.config, [f"runs_dir={folder}", f"retrain.train.steps={args.steps}",
                                                         f"retrain.workers={args.workers}", "retrain.init=scratch"]))
        name = config.space.skeletons[0]
        keys = [g.key for g in (smallest(name), handmade(name, "k3_e3_g1"), handmade(name, "k3_e6_g1"), largest(name))]
        world = init_world("cpu")
        start = time.perf_counter()
        for index, key in enumerate(keys):
            train_job(config, "retrain.train", key, folder / "in_process" / str(index), 0, world)
        alone = time.perf_counter() - start
        config.paths.root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        train_on_cluster(config, "retrain.train", [(key, folder / "workers" / str(i), 0) for i, key in enumerate(keys)],
                         args.workers, world, folder / "dask")
        together = time.perf_counter() - start
    print(f"{len(keys)} networks x {args.steps} steps: in this process one after another {alone:.1f} s; on "
          f"{args.workers} single-threaded worker processes {together:.1f} s; ratio {alone / together:.2f}")


if __name__ == "__main__":
    main()
