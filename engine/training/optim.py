"""Optimizers and learning-rate schedules (linear warm-up, then poly or cosine decay), stepped once per iteration."""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-D tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


OPTIMIZERS: dict[str, Callable[[list[dict], float, float], torch.optim.Optimizer]] = {
    "sgd": lambda groups, lr, momentum: torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0),
    "adamw": lambda groups, lr, momentum: torch.optim.AdamW(groups, lr=lr),
}
"""Optimisers by the name `train.optimizer` gives: (parameter groups, lr, momentum) -> optimiser."""


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float
                    ) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](_decay_groups(model, weight_decay), lr, momentum)


SCHEDULES: dict[str, Callable[[float, float], float]] = {
    "poly": lambda progress, power: (1.0 - progress) ** power,
    "cosine": lambda progress, power: 0.5 * (1.0 + math.cos(math.pi * progress)),
}
"""Learning-rate decays after the warm-up by name: (progress in [0, 1], power) -> multiplier."""


def lr_factor(step: int, total: int, warmup: int, schedule: str, power: float = 0.9) -> float:
    """Multiplier of the base learning rate at `step` (0-based) of `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    return SCHEDULES[schedule](min(1.0, (step - warmup) / max(1, total - warmup)), power)


def build_scheduler(optimizer: torch.optim.Optimizer, total: int, warmup: int, schedule: str
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(0, total, warmup, schedule)  # validates the name before training starts
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup, schedule))


def parameters_of(modules: Iterable[nn.Module]) -> set[int]:
    """Ids of the parameters of some modules (to tell a path's parameters from the rest)."""
    return {id(p) for m in modules for p in m.parameters()}
