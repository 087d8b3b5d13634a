"""MAC and parameter counting as the SqueezeNAS authors count them (Conv2d only, batch 1)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def conv_macs(conv: nn.Conv2d, output: torch.Tensor) -> int:
    """out_elements * kH * kW * C_in / groups for one call of a Conv2d on one image."""
    kh, kw = conv.kernel_size
    return output[0].numel() * kh * kw * conv.in_channels // conv.groups


def count_macs(model: nn.Module, size: tuple[int, int], channels: int = 3) -> int:
    """Conv2d multiply-accumulates of one forward pass at input 1 x channels x H x W.

    A conv called twice is counted twice. Shapes are propagated on the meta device through a copy of the model,
    so nothing is computed and the model is left as it was. For a supernet path, count `supernet.extract(g)`.
    """
    shadow = copy.deepcopy(model).to("meta").eval()
    total = 0

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += conv_macs(module, output)

    for module in shadow.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(hook)
    with torch.no_grad():
        shadow(torch.zeros(1, channels, *size, device="meta"))
    return total


def count_params(model: nn.Module) -> int:
    """Learnable parameters (conv weights and biases, BN weight and bias, ...)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
