"""Stage supernet: train the weight-sharing supernet of each skeleton once (engine/training/supernet.py), on every
rank under torchrun; supernet/ (supernet/<skeleton>/ with several skeletons) holds the checkpoint and metrics log
while one trains, supernet.pt every skeleton's final weights."""

from __future__ import annotations

from engine.config import UNSEEN
from engine.paths import ARTEFACTS as A
from engine.runner import Context, Stage
from engine.training.supernet import train_supernet


def run(ctx: Context) -> None:
    train_supernet(ctx.config, ctx.world)


STAGE = Stage("supernet", run, writes=(A.supernet,), work=(A.supernet_dir,),
              config=("seed", "space", "data", *UNSEEN, "supernet"), ranks="all")
