"""The training loop, shared by the supernet (paths from engine.training.sampling) and stand-alone networks.

One step: for each path of the step, forward, loss (cross-entropy, ignore 255; students of the sandwich rule also
distil from the largest path's output), backward; gradients averaged over ranks; optimizer and schedule step.
Checkpoints are written atomically every `checkpoint_every` steps and the same call resumes from the last one
(weights, optimizer, schedule, grad scaler, RNG states, step), so a killed run ends with the weights an
uninterrupted run would have. A NaN or inf loss stops the run and leaves the last good checkpoint in place.

Gradients are averaged with bucketed all_reduce after the step rather than by DistributedDataParallel: DDP's
reducer expects one forward and one backward per iteration over a fixed set of used parameters, while a
supernet step may run several paths through shared weights and leaves every other candidate without gradient.
"""

from __future__ import annotations

import csv
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from engine.config import TrainConfig
from engine.errors import TrainingDiverged
from engine.training import checkpoint
from engine.training.distributed import World, all_true
from engine.training.optim import build_optimizer, build_scheduler
from engine.training.sampling import PathStep

Batches = Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]
IGNORE = 255
METRICS = ("step", "loss", "lr", "images_per_s", "elapsed_s")
BUCKET_BYTES = 25 * 2**20



@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    step: int = 0
    seconds: float = 0.0  # training time so far (steps only, summed over resumed runs): the cost reports use it


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-pixel KL divergence from the teacher's (detached) class distribution to the student's."""
    target = F.log_softmax(teacher.detach().float(), dim=1)
    return F.kl_div(F.log_softmax(student.float(), dim=1), target, reduction="none", log_target=True).sum(1).mean()


def average_gradients(model: nn.Module, world: World) -> None:
    """Sum-reduce the defined gradients over ranks in buckets and divide by the world size."""
    if not world.distributed:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    bucket: list[torch.Tensor] = []
    size = 0
    for grad in grads + [None]:
        if grad is not None:
            bucket.append(grad)
            size += grad.numel() * grad.element_size()
        if bucket and (grad is None or size >= BUCKET_BYTES):
            flat = _flatten_dense_tensors(bucket)
            dist.all_reduce(flat)
            flat /= world.size
            for g, reduced in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
                g.copy_(reduced)
            bucket, size = [], 0


def valid_pixels(labels: torch.Tensor, world: World) -> float:
    """Labelled pixels of the global batch per rank: dividing each rank's summed loss by it makes the averaged
    gradient that of the mean loss over the whole batch, however the ignored pixels fall across ranks."""
    count = (labels != IGNORE).sum().float()
    if world.distributed:
        dist.all_reduce(count)
    return max(count.item(), 1.0) / world.size


def _forward(model: nn.Module, images: torch.Tensor, path: PathStep | None) -> torch.Tensor:
    return model(images) if path is None else model(images, path.genotype)


def train_step(state: TrainState, images: torch.Tensor, labels: torch.Tensor, paths: list[PathStep] | None,
               settings: TrainConfig, world: World) -> float:
    """One optimisation step over the step's paths (None: a stand-alone network); returns the summed loss."""
    use_amp = settings.amp and world.device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
    state.optimizer.zero_grad(set_to_none=True)
    pixels = valid_pixels(labels, world)
    teacher, total = None, 0.0
    for path in paths or [None]:
        with autocast:
            logits = _forward(state.model, images, path)
            loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="sum") / pixels
            if teacher is not None and settings.distill:
                loss = loss + distillation_loss(logits, teacher)
        if not all_true(bool(torch.isfinite(loss)), world):
            key = path.genotype.key if path else "stand-alone"
            raise TrainingDiverged(f"loss is not finite at step {state.step} (path {key})")
        state.scaler.scale(loss).backward()
        if path is not None and path.teacher:
            teacher = logits.detach()
        total += loss.item()
    average_gradients(state.model, world)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    state.step += 1
    return total


def _payload(state: TrainState) -> dict:
    return {
        "step": state.step,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict(),
        "rng": checkpoint.rng_state(),
        "seconds": state.seconds,
    }


def _restore(state: TrainState, path: Path, world: World) -> None:
    saved = checkpoint.load(path, world.device)
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.scaler.load_state_dict(saved["scaler"])
    checkpoint.set_rng_state(saved["rng"])
    state.step = saved["step"]
    state.seconds = saved.get("seconds", 0.0)


class MetricsLog:
    """metrics.csv (and TensorBoard when installed), trimmed to the checkpoint's step on resume."""

    def __init__(self, path: Path, resume_step: int, enabled: bool):
        self.path, self.enabled = path, enabled
        self.writer = None
        if not enabled:
            return
        rows = []
        if path.exists():
            with path.open() as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, METRICS)
            writer.writeheader()
            writer.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(path.parent / "tensorboard"))
        except ImportError:
            self.writer = None

    def log(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, METRICS).writerow(row)
        if self.writer is not None:
            for key in METRICS[1:]:
                self.writer.add_scalar(f"train/{key}", row[key], row["step"])


def _progress(world: World) -> Progress:
    return Progress(TextColumn("[bold]training"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                    TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(), disable=not world.is_main)


def build_state(model: nn.Module, settings: TrainConfig, world: World) -> TrainState:
    optimizer = build_optimizer(model, settings.optimizer, settings.lr, settings.momentum, settings.weight_decay)
    scheduler = build_scheduler(optimizer, settings.steps, settings.warmup_steps, settings.schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=settings.amp and world.device.type == "cuda")
    return TrainState(model, optimizer, scheduler, scaler)


def train(model: nn.Module, batches: Batches, settings: TrainConfig, out_dir: Path, world: World,
          paths: Callable[[int], list[PathStep]] | None = None) -> nn.Module:
    """Train `model` for settings.steps steps, resuming from out_dir/checkpoint.pt; returns the trained model."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / "checkpoint.pt"
    state = build_state(model, settings, world)
    if ckpt.exists():
        _restore(state, ckpt, world)
    log = MetricsLog(out_dir / "metrics.csv", state.step, world.is_main)
    model.train()
    with _progress(world) as progress:
        task = progress.add_task("train", total=settings.steps, completed=state.step, loss=float("nan"))
        stream = batches(state.step)
        while state.step < settings.steps:
            images, labels = next(stream)
            images, labels = images.to(world.device, non_blocking=True), labels.to(world.device, non_blocking=True)
            start = time.perf_counter()
            try:
                loss = train_step(state, images, labels, paths(state.step) if paths else None, settings, world)
            except TrainingDiverged as error:
                kept = f"the last good checkpoint {ckpt} is kept" if ckpt.exists() else "no checkpoint was written"
                raise TrainingDiverged(f"{error}; {kept}; lower train.lr or add train.warmup_steps") from None
            seconds = time.perf_counter() - start
            state.seconds += seconds
            progress.update(task, completed=state.step, loss=loss)
            if state.step % settings.log_every == 0 or state.step == settings.steps:
                log.log({"step": state.step, "loss": loss, "lr": state.scheduler.get_last_lr()[0],
                         "images_per_s": images.shape[0] * world.size / seconds,
                         "elapsed_s": state.seconds})
            if state.step % settings.checkpoint_every == 0 or state.step == settings.steps:
                if world.is_main:
                    checkpoint.save(ckpt, _payload(state))
                if world.distributed:
                    dist.barrier()
    return model
