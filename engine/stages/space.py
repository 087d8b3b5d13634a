"""Stage space: sample genotypes of the configured skeletons and record their MACs and parameters.

Each genotype is extracted from its skeleton's weight-sharing supernet and checked against it (same output), so the
stage also proves on the user's own settings that subnets inherit the supernet's function exactly. The check runs at
a small input (CHECK_HEIGHT rows, the input's aspect ratio): the layers are the same at any size, and at 1024x2048 it
took minutes on a CPU. MACs and parameters are counted at space.input_size.
"""

from __future__ import annotations

import random

import pandas as pd
import torch
from rich.progress import track

from engine.config import ExperimentConfig
from engine.files import write_csv
from engine.paths import ARTEFACTS as A
from engine.runner import Context, Stage
from spaces import Genotype, Supernet, largest, sample_of, smallest, squeezenas
from spaces.costs import cost_tables

COLUMNS = ("key", "source", "macs", "params", "supernet_max_abs_diff")
CHECK_HEIGHT = 64


def check_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """The size the supernet check runs at: CHECK_HEIGHT rows (or fewer, never more than the input) and the input's
    aspect ratio."""
    height, width = input_size
    rows = min(height, CHECK_HEIGHT)
    return rows, max(1, round(width * rows / height))


def survey_genotypes(config: ExperimentConfig) -> list[tuple[str, Genotype]]:
    """The smallest and largest paths and the released networks of each skeleton, then seeded random samples."""
    chosen = []
    for name in config.space.skeletons:
        chosen += [("smallest", smallest(name)), ("largest", largest(name))]
        chosen += list(squeezenas.released_for(name).items())
    rng = random.Random(config.seed)
    chosen += [("random", sample_of(config.space.skeletons, rng)) for _ in range(config.samples)]
    return chosen


def run(ctx: Context) -> None:
    """Write space.csv, one row per genotype of survey_genotypes."""
    config = ctx.config
    torch.manual_seed(config.seed)
    space = config.space
    supernets = {name: Supernet(name, space.width, space.num_classes).eval() for name in space.skeletons}
    probe = torch.randn(1, 3, *check_size(space.input_size))
    costs = cost_tables(space.skeletons, tuple(space.input_size), space.width, space.num_classes)
    rows = []
    for source, genotype in track(survey_genotypes(config), description="surveying the space"):
        supernet = supernets[genotype.skeleton]
        subnet = supernet.extract(genotype)
        with torch.no_grad():
            diff = (supernet(probe, genotype) - subnet(probe)).abs().max().item()
        rows.append((genotype.key, source, costs.genotype_macs(genotype), costs.genotype_params(genotype), diff))
    write_csv(ctx.paths.space, pd.DataFrame(rows, columns=list(COLUMNS)))


STAGE = Stage("space", run, writes=(A.space,), config=("seed", "space", "samples"))
