"""Supervised training of the supernet (paths from engine.training.sampling) and of stand-alone networks.

One step: for each path of the step, forward, loss (cross-entropy, ignore 255; students of the sandwich rule also
distil from the largest path's output), backward; gradients averaged over ranks; optimizer and schedule step.
`train` runs it in the shared loop with the standard hooks: out_dir/checkpoint.pt every `checkpoint_every` steps
and at the end (a killed run resumes to the weights an uninterrupted run would have), out_dir/metrics.csv, a
progress bar, and a stop on a NaN or inf loss that leaves the last good checkpoint in place.

Gradients are averaged with bucketed all_reduce after the step rather than by DistributedDataParallel: DDP's
reducer expects one forward and one backward per iteration over a fixed set of used parameters, while a
supernet step may run several paths through shared weights and leaves every other candidate without gradient.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from engine.config import TrainConfig
from engine.data.classes import IGNORE_INDEX
from engine.paths import METRICS_LOG
from engine.training.distributed import World
from engine.training.hooks import MetricsLog, standard_hooks
from engine.training.loop import Loop
from engine.training.optim import build_optimizer, build_scheduler
from engine.training.sampling import PathStep

Batches = Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]
METRICS = ("step", "loss", "lr", "images_per_s", "elapsed_s")
BUCKET_BYTES = 25 * 2**20


@dataclass
class TrainState:
    """The stateful parts of a training run, saved by name in its checkpoint."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler


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
    count = (labels != IGNORE_INDEX).sum().float()
    if world.distributed:
        dist.all_reduce(count)
    return max(count.item(), 1.0) / world.size


def _forward(model: nn.Module, images: torch.Tensor, path: PathStep | None) -> torch.Tensor:
    return model(images) if path is None else model(images, path.genotype)


def train_step(state: TrainState, images: torch.Tensor, labels: torch.Tensor, paths: list[PathStep] | None,
               settings: TrainConfig, world: World, weight: torch.Tensor | None = None) -> float:
    """One optimisation step over the step's paths (None: a stand-alone network); returns the summed loss. `weight`:
    per-class weights of the cross-entropy (engine/data/balance.py), None for none."""
    use_amp = settings.amp and world.device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
    state.optimizer.zero_grad(set_to_none=True)
    pixels = valid_pixels(labels, world)
    teacher, total = None, 0.0
    for path in paths or [None]:
        with autocast:
            logits = _forward(state.model, images, path)
            loss = F.cross_entropy(logits.float(), labels, weight, ignore_index=IGNORE_INDEX, reduction="sum") / pixels
            if teacher is not None and settings.distill:
                loss = loss + distillation_loss(logits, teacher)
        state.scaler.scale(loss).backward()
        if path is not None and path.teacher:
            teacher = logits.detach()
        total += loss.item()
    average_gradients(state.model, world)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    return total


def build_state(model: nn.Module, settings: TrainConfig, world: World) -> TrainState:
    optimizer = build_optimizer(model, settings.optimizer, settings.lr, settings.momentum, settings.weight_decay)
    scheduler = build_scheduler(optimizer, settings.steps, settings.warmup_steps, settings.schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=settings.amp and world.device.type == "cuda")
    return TrainState(model, optimizer, scheduler, scaler)


def _on_device(batches: Batches, device: torch.device) -> Batches:
    def moved(start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        stream = batches(start)  # a data loader draws its base seed from torch's generator: here, after restoring
        return ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in stream)

    return moved


def train(model: nn.Module, batches: Batches, settings: TrainConfig, out_dir: Path, world: World,
          paths: Callable[[int], list[PathStep]] | None = None, section: str = "train",
          weight: torch.Tensor | None = None) -> nn.Module:
    """Train `model` for settings.steps steps, resuming from out_dir/checkpoint.pt; returns the trained model.
    `section`: where `settings` sit in the configuration (supernet, retrain.train, ...), for the NaN message;
    `weight`: the loss's class weights (None: plain cross-entropy)."""
    state = build_state(model, settings, world)
    weight = None if weight is None else weight.to(world.device)

    def step(index: int, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        return {"loss": train_step(state, *batch, paths(index) if paths else None, settings, world, weight)}

    def row(loop: Loop) -> dict[str, float]:
        return {"step": loop.step, "loss": loop.output["loss"], "lr": state.scheduler.get_last_lr()[0],
                "images_per_s": settings.batch_size / loop.step_seconds, "elapsed_s": loop.seconds}

    metrics = MetricsLog(out_dir / METRICS_LOG, METRICS, row, settings.log_every, world.is_main)
    hooks = standard_hooks(out_dir, settings.checkpoint_every, metrics, "training",
                           f"lower {section}.lr or add {section}.warmup_steps", world)
    model.train()
    Loop(step, _on_device(batches, world.device), settings.steps, vars(state), hooks).run()
    return model
