"""The shared loop and its hooks on a toy model: exact continuation from a checkpoint, the log trimmed on resume,
the final checkpoint, and the NaN stop."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from engine.errors import TrainingDiverged
from engine.training import checkpoint
from engine.training.distributed import World
from engine.training.hooks import MetricsLog, standard_hooks
from engine.training.loop import Loop

CPU = World(0, 1, 0, torch.device("cpu"))
TOTAL = 7


class Killed(Exception):
    pass


def batches(start: int):
    """Batch s depends only on s, as engine.data.loader's do."""
    return ((torch.full((4, 3), float(s)), torch.full((4, 1), s % 3 - 1.0)) for s in range(start, TOTAL))


def toy_loop(folder: Path, fail_at: int | None = None, poison_at: int | None = None) -> tuple[Loop, nn.Module]:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)

    def step(index: int, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        if index == fail_at:
            raise Killed
        x, y = batch
        x = x + 0.1 * torch.randn_like(x)  # draws from torch's generator: a resumed run must draw the same
        loss = nn.functional.mse_loss(model(x), y) * (math.nan if index == poison_at else 1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {"loss": loss.item()}

    def row(loop: Loop) -> dict:
        return {"step": loop.step, "loss": loop.output["loss"], "lr": scheduler.get_last_lr()[0]}

    log = MetricsLog(folder / "metrics.csv", ("step", "loss", "lr"), row, every=2)
    hooks = standard_hooks(folder, 3, log, "toy", "lower the toy's lr", CPU)
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    return Loop(step, batches, TOTAL, parts, hooks), model


def test_a_loop_resumed_from_its_checkpoint_continues_exactly(tmp_path: Path) -> None:
    straight, model = toy_loop(tmp_path / "straight")
    straight.run()
    assert straight.finished and straight.step == TOTAL
    killed, _ = toy_loop(tmp_path / "killed", fail_at=4)  # checkpoint at step 3, rows 2 and 4 logged
    with pytest.raises(Killed):
        killed.run()
    assert not killed.finished
    assert checkpoint.load(tmp_path / "killed" / "checkpoint.pt")["step"] == 3
    resumed, again = toy_loop(tmp_path / "killed")
    resumed.run()
    assert resumed.step == TOTAL and resumed.seconds > 0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    a, b = (pd.read_csv(folder / "metrics.csv") for folder in (tmp_path / "straight", tmp_path / "killed"))
    assert a["step"].tolist() == [2, 4, 6, 7]
    assert a.equals(b)  # row 4 of the killed run was trimmed and written again by the resumed one


def test_the_last_step_is_saved_and_a_finished_run_is_not_rerun(tmp_path: Path) -> None:
    loop, _ = toy_loop(tmp_path)
    loop.run()
    saved = checkpoint.load(tmp_path / "checkpoint.pt")
    assert saved["step"] == TOTAL and set(saved) >= {"model", "optimizer", "scheduler", "rng", "seconds"}
    again, _ = toy_loop(tmp_path, fail_at=0)  # a step would raise: none runs
    again.run()
    assert again.step == TOTAL and again.seconds == saved["seconds"]


def test_a_non_finite_loss_stops_before_the_step_is_saved_or_logged(tmp_path: Path) -> None:
    loop, _ = toy_loop(tmp_path, poison_at=5)  # the sixth step: checkpoints at 3 and (not) 6
    with pytest.raises(TrainingDiverged, match=r"not finite at step 6 \(loss = nan\).*checkpoint .* is kept; lower"):
        loop.run()
    assert checkpoint.load(tmp_path / "checkpoint.pt")["step"] == 3
    assert pd.read_csv(tmp_path / "metrics.csv")["step"].tolist() == [2, 4]
