"""The hooks of the training loop (engine/training/loop.py): checkpoints, the metrics log, progress, the NaN stop.

`standard_hooks` puts them in the order they need: the NaN stop first, so that a step whose loss is not finite is
neither saved nor logged and the last good checkpoint stays on disk; the checkpoint before the log, so that the
log is trimmed to the restored step.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch.distributed as dist
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from engine.errors import TrainingDiverged
from engine.files import atomic
from engine.paths import CHECKPOINT
from engine.training import checkpoint
from engine.training.distributed import World, all_true
from engine.training.loop import Hook, Loop

log = logging.getLogger(__name__)


class Checkpoint(Hook):
    """Restores the loop from `path` when it exists; saves it atomically (main rank) every `every` steps and at
    the end; every rank waits for the save."""

    def __init__(self, path: Path, every: int, world: World):
        self.path, self.every, self.world = path, every, world
        self.saved: int | None = None  # the step of the checkpoint on disk, once known

    def before_train(self, loop: Loop) -> None:
        if self.path.exists():
            loop.load_state_dict(checkpoint.load(self.path))
            self.saved = loop.step
            log.info("resumed %s at step %d of %d", self.path, loop.step, loop.total)

    def after_step(self, loop: Loop) -> None:
        if loop.step % self.every == 0:
            self.save(loop)

    def after_train(self, loop: Loop) -> None:
        if loop.finished and self.saved != loop.step:
            self.save(loop)

    def save(self, loop: Loop) -> None:
        if self.world.is_main:
            checkpoint.save(self.path, loop.state_dict())
        if self.world.distributed:
            dist.barrier()
        self.saved = loop.step


class MetricsLog(Hook):
    """A CSV of `fields` (the first one the step), a row `row(loop)` every `every` steps and at the last one,
    trimmed to the restored step on resume; TensorBoard scalars in a tensorboard/ folder beside it when installed."""

    def __init__(self, path: Path, fields: Sequence[str], row: Callable[[Loop], dict[str, Any]], every: int,
                 enabled: bool = True):
        self.path, self.fields, self.row, self.every, self.enabled = path, tuple(fields), row, every, enabled
        self.writer = None

    def before_train(self, loop: Loop) -> None:
        if not self.enabled:
            return
        rows = []
        if self.path.exists():
            with self.path.open() as handle:
                rows = [r for r in csv.DictReader(handle) if int(r[self.fields[0]]) <= loop.step]
        with atomic(self.path) as handle:
            writer = csv.DictWriter(handle, self.fields)
            writer.writeheader()
            writer.writerows(rows)
        self.writer = _tensorboard(self.path.parent / "tensorboard")

    def after_step(self, loop: Loop) -> None:
        if not self.enabled or (loop.step % self.every and loop.step != loop.total):
            return
        row = self.row(loop)
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, self.fields).writerow(row)
        if self.writer is not None:
            for key in self.fields[1:]:
                if isinstance(row[key], (int, float)):
                    self.writer.add_scalar(f"train/{key}", row[key], loop.step)

    def after_train(self, loop: Loop) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


class ProgressBar(Hook):
    """A rich progress bar of the steps with the step output's `metric`, shown on the main rank only."""

    def __init__(self, description: str, metric: str | None = "loss", enabled: bool = True):
        self.description, self.metric, self.enabled = description, metric, enabled
        self.progress: Progress | None = None

    def before_train(self, loop: Loop) -> None:
        shown = [TextColumn(f"{self.metric} {{task.fields[value]:.3f}}")] if self.metric else []
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total} steps"), *shown, TimeRemainingColumn(),
                                 disable=not self.enabled)
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=loop.total, completed=loop.step, value=math.nan)

    def after_step(self, loop: Loop) -> None:
        self.progress.update(self.task, completed=loop.step, value=loop.output.get(self.metric, math.nan))

    def after_train(self, loop: Loop) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class DivergenceStop(Hook):
    """Raises TrainingDiverged when a number the step returned is NaN or inf on any rank, naming the step."""

    def __init__(self, checkpoint_path: Path, hint: str, world: World):
        self.checkpoint_path, self.hint, self.world = checkpoint_path, hint, world

    def after_step(self, loop: Loop) -> None:
        bad = ", ".join(f"{k} = {v}" for k, v in loop.output.items() if not math.isfinite(v))
        if all_true(not bad, self.world):
            return
        kept = (f"the last good checkpoint {self.checkpoint_path} is kept" if self.checkpoint_path.exists()
                else "no checkpoint was written")
        raise TrainingDiverged(f"the loss is not finite at step {loop.step} ({bad or 'on another rank'}); {kept}; "
                               f"{self.hint}")


def standard_hooks(folder: Path, checkpoint_every: int, metrics: MetricsLog, description: str, hint: str,
                   world: World, metric: str | None = "loss") -> list[Hook]:
    """NaN stop, checkpoint (folder/checkpoint.pt), metrics log and progress bar, in that order."""
    path = folder / CHECKPOINT
    return [DivergenceStop(path, hint, world), Checkpoint(path, checkpoint_every, world), metrics,
            ProgressBar(description, metric, world.is_main)]
