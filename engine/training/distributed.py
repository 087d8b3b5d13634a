"""torch.distributed for training launched by torchrun (or not): process group, device, batch-norm sync, reductions.

Under torchrun (RANK / WORLD_SIZE / LOCAL_RANK set) the process group is NCCL on CUDA and gloo on CPU; a plain
`python -m ...` is a world of one. torch's SyncBatchNorm runs on GPUs only, so on CPU batch norm is synchronised
by `CPUSyncBatchNorm2d`, which all-reduces the batch moments through autograd-aware collectives.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as collectives
from torch import nn

from engine.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device: str = "auto") -> World:
    """Join torchrun's process group if there is one; pick cuda:LOCAL_RANK when CUDA is asked for or available."""
    rank, size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("supernet.device: cuda was asked for but torch sees no CUDA device; use auto or cpu")
    target = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=dt.timedelta(minutes=30))
    return World(rank, size, local_rank, target)


class CPUSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are the moments of the whole global batch (all ranks)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        totals = _global_sum(torch.cat([x.sum(dim=(0, 2, 3)), count]))
        n = totals[-1]
        mean = totals[:c] / n
        var = _global_sum((x - mean.view(1, -1, 1, 1)).pow(2).sum(dim=(0, 2, 3))) / n  # centred: no cancellation
        with torch.no_grad():
            self.num_batches_tracked += 1
            weight = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
            self.running_mean.lerp_(mean.detach(), weight)
            self.running_var.lerp_(var.detach() * n / (n - 1), weight)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def _global_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, differentiable (the gradient of a sum all-reduce is the sum all-reduce of gradients)."""
    return collectives.wait_tensor(collectives.all_reduce(tensor, "sum", dist.group.WORLD))


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm2d by its synchronised version (torch's on GPU, ours on CPU), weights kept."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = CPUSyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine)
            synced.load_state_dict(child.state_dict())
            setattr(model, name, synced)
        else:
            sync_batchnorm(child, device)
    return model


def all_true(flag: bool, world: World) -> bool:
    """True only if `flag` holds on every rank."""
    if not world.distributed:
        return flag
    value = torch.tensor([0.0 if flag else 1.0], device=world.device)
    dist.all_reduce(value)
    return value.item() == 0


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
