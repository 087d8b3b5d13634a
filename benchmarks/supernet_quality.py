"""Inherited-weight mIoU before and after training a supernet, and supernet vs stand-alone training speed.

    python -m benchmarks.supernet_quality                                   # synthetic streets (the default)
    python -m benchmarks.supernet_quality data.kind=camvid data.root=../shared/data/camvid \
        data.crop=[176,240] data.eval_size=[180,240] supernet.steps=600

Arguments are experiment overrides on top of a small CPU setting (skeleton small, width 0.5). The subnets scored
are the largest, the smallest and `--random` seeded random genotypes; each is extracted, its BN statistics are
recalibrated on training images, and its mIoU is measured on the validation split, with the untrained and the
trained supernet. Training speed: images/s of supernet steps vs stand-alone steps of the same path, alternated.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import one_skeleton
from engine.config import ExperimentConfig, apply_overrides
from engine.data.loader import step_batches
from engine.data.splits import train_set
from engine.evaluation.inherited import evaluator_for
from engine.training.distributed import World
from engine.training.sampling import PathStep
from engine.training.supernet import build_supernet, load_supernets, train_supernet
from engine.training.trainer import build_state, train_step
from spaces import Supernet, largest, sample, smallest

DEFAULTS = {
    "name": "quality", "seed": 0,
    "space": {"skeleton": "small", "width": 0.5},
    "data": {"synthetic_size": [128, 256], "crop": [128, 256], "synthetic_train": 400, "synthetic_val": 32},
    "supernet": {"steps": 400, "batch_size": 8, "lr": 0.05, "warmup_steps": 20, "checkpoint_every": 100},
    "evaluation": {"calibration_images": 32},
}


def scores(supernet: Supernet, config: ExperimentConfig, genotypes: dict, cpu: torch.device) -> dict[str, float]:
    # two supernets, one run folder
    evaluator = evaluator_for(config, {supernet.skeleton_name: supernet.eval()}, cpu, cache=False)
    return {label: evaluator.score(g)["miou"] for label, g in genotypes.items()}


def images_per_second(config: ExperimentConfig, supernet: Supernet, genotype, world: World, repeats: int = 5
                      ) -> tuple[float, float]:
    """Supernet-path and stand-alone steps of one genotype, alternated on the same batches."""
    settings = config.supernet
    batches = step_batches(train_set(config.data, config.seed), settings.batch_size, config.seed, repeats + 1)(0)
    subnet = supernet.extract(genotype).train()
    states = {"supernet": build_state(supernet.train(), settings, world), "alone": build_state(subnet, settings, world)}
    paths = {"supernet": [PathStep(genotype)], "alone": None}
    seconds: dict[str, list[float]] = {name: [] for name in states}
    for i, (images, labels) in enumerate(batches):
        for name, state in states.items():
            start = time.perf_counter()
            train_step(state, images, labels, paths[name], settings, world)
            if i:
                seconds[name].append(time.perf_counter() - start)
    return tuple(settings.batch_size / statistics.median(seconds[n]) for n in ("supernet", "alone"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="experiment overrides, e.g. supernet.steps=800")
    parser.add_argument("--random", type=int, default=4, help="random subnets to score")
    args = parser.parse_args()
    tree = apply_overrides({**DEFAULTS, "runs_dir": tempfile.mkdtemp(prefix="quality-")}, args.overrides)
    config = ExperimentConfig.model_validate(tree)
    one_skeleton(parser, config)
    world = World(0, 1, 0, torch.device("cpu"))
    skeleton = config.space.skeleton
    genotypes = {"largest": largest(skeleton), "smallest": smallest(skeleton)}
    genotypes |= {f"random {i}": sample(skeleton, 100 + i) for i in range(args.random)}
    num_classes = train_set(config.data, config.seed).num_classes

    before = scores(build_supernet(config, config.space.skeleton, num_classes), config, genotypes, world.device)
    start = time.perf_counter()
    train_supernet(config, world)
    minutes = (time.perf_counter() - start) / 60
    trained = load_supernets(config, world.device)[config.space.skeleton]
    after = scores(trained, config, genotypes, world.device)

    print(f"{config.data.kind}: skeleton {skeleton} width {config.space.width}, crop {list(config.data.crop)}, "
          f"batch {config.supernet.batch_size}, {config.supernet.steps} steps ({config.supernet.sampling}) in "
          f"{minutes:.1f} min on {torch.get_num_threads()} CPU threads")
    print(f"{'subnet':<10} {'untrained mIoU':>15} {'trained mIoU':>13}")
    for label in genotypes:
        print(f"{label:<10} {before[label]:>15.4f} {after[label]:>13.4f}")
    path_speed, alone_speed = images_per_second(config, trained, genotypes["random 0"], world)
    print(f"training images/s, random 0: supernet path {path_speed:.1f}, stand-alone {alone_speed:.1f} "
          f"(ratio {alone_speed / path_speed:.3f}x)")
    print(f"run directory: {Path(config.run_dir)}")


if __name__ == "__main__":
    main()
