"""Stage supernet: train the weight-sharing supernet once (engine/training/supernet.py), on every rank under
torchrun; supernet/ holds its checkpoint and metrics log while it trains, supernet.pt its final weights."""

from __future__ import annotations

from engine.config import UNSEEN
from engine.paths import ARTEFACTS as A
from engine.runner import Context, Stage
from engine.training.supernet import train_supernet


def run(ctx: Context) -> None:
    train_supernet(ctx.config, ctx.world)


STAGE = Stage("supernet", run, writes=(A.supernet,), work=(A.supernet_dir,),
              config=("seed", "space", "data", *UNSEEN, "supernet"), ranks="all")
