"""Supernet training: exact resume after a kill, 2-process gloo equals 1 process, NaN stops with the checkpoint."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from engine.config import DataConfig, ExperimentConfig, SpaceConfig, TrainConfig
from engine.errors import TrainingDiverged
from engine.training import checkpoint
from engine.training import trainer as train_module
from engine.training.distributed import World, cleanup, init_world
from engine.training.supernet import build_supernet, train_supernet
from spaces.candidates import InvertedResidual

CPU = World(0, 1, 0, torch.device("cpu"))


def tiny(runs: Path, steps: int = 6, batch: int = 4, sampling: str = "uniform", lr: float = 0.02,
         width: float = 0.25) -> ExperimentConfig:
    return ExperimentConfig(
        name="tiny", runs_dir=runs, seed=3,
        space=SpaceConfig(skeleton="small", width=width, input_size=(64, 128)),
        data=DataConfig(synthetic_size=(48, 96), crop=(48, 96), synthetic_train=12, synthetic_val=4),
        supernet=TrainConfig(steps=steps, batch_size=batch, lr=lr, checkpoint_every=2, log_every=1,
                             sampling=sampling, sandwich_paths=1),
    )


def weights(config: ExperimentConfig) -> dict[str, torch.Tensor]:
    return checkpoint.load(config.run_dir / "supernet.pt")["models"]["small"]


class Killed(Exception):
    pass


@pytest.mark.parametrize("sampling", ["uniform", "sandwich", "fair"])
def test_a_killed_run_resumes_to_the_same_weights(tmp_path: Path, monkeypatch, sampling: str) -> None:
    straight = tiny(tmp_path / "straight", sampling=sampling)
    train_supernet(straight, CPU)

    resumed = tiny(tmp_path / "resumed", sampling=sampling)
    real_step, calls = train_module.train_step, []

    def dies_in_step_4(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # two steps after the checkpoint of step 2
            raise Killed
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", dies_in_step_4)
    with pytest.raises(Killed):
        train_supernet(resumed, CPU)
    assert checkpoint.load(resumed.run_dir / "supernet" / "checkpoint.pt")["step"] == 2
    monkeypatch.setattr(train_module, "train_step", real_step)
    train_supernet(resumed, CPU)

    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = (resumed.run_dir / "supernet" / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["step", "1", "2", "3", "4", "5", "6"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Few steps at a small learning rate: a tiny random network trained at a large one is chaotic (a 1e-6 change of its
# initial weights moves its weights by 0.1 within four steps), so float noise would hide what is compared here.
STEPS, LR = 3, 1e-3


def _rank_main(rank: int, runs: str, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        train_supernet(tiny(Path(runs), steps=STEPS, lr=LR), init_world("cpu"))
    finally:
        cleanup()


def _float_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return sum(((a[k] - b[k]).double() ** 2).sum().item() for k in a if a[k].is_floating_point()) ** 0.5


def test_two_gloo_processes_equal_one_process_with_the_whole_batch(tmp_path: Path) -> None:
    one = tiny(tmp_path / "one", steps=STEPS, lr=LR)
    train_supernet(one, CPU)
    mp.spawn(_rank_main, args=(str(tmp_path / "two"), _free_port()), nprocs=2, join=True)
    start = build_supernet(one, one.space.skeleton, 11).state_dict()
    single, double = weights(one), weights(tiny(tmp_path / "two"))
    moved, apart = _float_distance(single, start), _float_distance(single, double)
    assert apart < 1e-3 * moved, (apart, moved)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch) -> None:
    config = tiny(tmp_path)
    real_step, calls = train_module.train_step, []

    def poisoned(state, images, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            images = images * float("nan")
        return real_step(state, images, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match="not finite at step 4 .*checkpoint .* is kept; lower supernet.lr"):
        train_supernet(config, CPU)
    kept = checkpoint.load(config.run_dir / "supernet" / "checkpoint.pt")
    assert kept["step"] == 2
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    assert not (config.run_dir / "supernet.pt").exists()
    rows = (config.run_dir / "supernet" / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["step", "1", "2", "3"]  # the diverged step is not logged


def test_a_fresh_supernet_s_residual_candidates_start_as_identities_unless_told_otherwise(tmp_path: Path) -> None:
    config = tiny(tmp_path)
    release_config = config.model_copy(
        update={"supernet": config.supernet.model_copy(update={"zero_init_residual": False})})
    zeroed, release = (build_supernet(c, "small", 11) for c in (config, release_config))
    last = [(a.body[-1].weight, b.body[-1].weight, a.residual) for a, b in zip(zeroed.modules(), release.modules())
            if isinstance(a, InvertedResidual)]
    assert {residual for *_, residual in last} == {True, False}
    for mine, theirs, residual in last:
        assert torch.equal(theirs, torch.ones_like(theirs))
        assert torch.equal(mine, torch.zeros_like(mine) if residual else theirs)
