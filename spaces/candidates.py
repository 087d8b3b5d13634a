"""Candidate blocks: the per-layer choices of a search space and the modules that build them.

A candidate is either an inverted residual (1x1 conv -> BN -> ReLU -> kxk depthwise -> BN -> ReLU -> 1x1 conv ->
BN, residual add when stride 1 and c_in == c_out) or a position-dependent skip. Two skip styles exist:
SqueezeNAS's (identity / factorized reduce / ReLU-conv-BN) and FBNet's (identity / conv-BN-ReLU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Candidate:
    """One choice of a searchable layer; `kernel == 0` marks the skip candidate."""

    name: str
    kernel: int = 0
    expansion: float = 1.0
    groups: int = 1
    dilation: int = 1

    @property
    def is_skip(self) -> bool:
        return self.kernel == 0


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels)


class ChannelShuffle(nn.Module):
    """Interleaves the channels of `groups` groups (ShuffleNet), used by FBNet's grouped blocks."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class InvertedResidual(nn.Module):
    """MobileNetV2-style block with grouped 1x1 convs; `shuffle` inserts a channel shuffle (FBNet)."""

    def __init__(self, c_in: int, c_out: int, stride: int, candidate: Candidate, shuffle: bool = False):
        super().__init__()
        hidden = round(c_in * candidate.expansion)
        k, d, g = candidate.kernel, candidate.dilation, candidate.groups
        layers: list[nn.Module] = [nn.Conv2d(c_in, hidden, 1, groups=g, bias=False), _bn(hidden), nn.ReLU(inplace=True)]
        if shuffle and g > 1:
            layers.append(ChannelShuffle(g))
        layers += [
            nn.Conv2d(hidden, hidden, k, stride, padding=d * (k - 1) // 2, dilation=d, groups=hidden, bias=False),
            _bn(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, c_out, 1, groups=g, bias=False),
            _bn(c_out),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out

    def zero_init_last(self) -> None:
        """Zero the last BN's scale of a residual block, so that the block starts as the identity."""
        if self.residual:
            nn.init.zeros_(self.body[-1].weight)


class FactorizedReduce(nn.Module):
    """ReLU, then two 1x1 stride-2 convs (the second on the input shifted by one pixel), each with its BN, concat.

    At odd sizes the shifted input is zero-padded by one at the end so both branches give ceil(size / 2); at even
    sizes (all the release knows) the padding would never be sampled, so none is added.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"factorized reduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.branch1 = nn.Sequential(nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False), _bn(c_out // 2))
        self.branch2 = nn.Sequential(nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False), _bn(c_out // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        h, w = x.shape[-2:]
        shifted = x[:, :, 1:, 1:]
        if h % 2 or w % 2:
            shifted = F.pad(shifted, (0, w % 2, 0, h % 2))
        return torch.cat([self.branch1(x), self.branch2(shifted)], dim=1)


class ReLUConvBN(nn.Sequential):
    """ReLU -> 1x1 conv -> BN: SqueezeNAS's skip when the channel count changes at stride 1."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, 1, bias=False), _bn(c_out))


class ConvBNReLU(nn.Sequential):
    """Conv -> BN -> ReLU: stems, the SqueezeNAS 1x1 last conv, FBNet's shape-changing skip."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, dilation: int = 1, groups: int = 1):
        pad = dilation * (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, padding=pad, dilation=dilation, groups=groups, bias=False),
            _bn(c_out),
            nn.ReLU(inplace=True),
        )


def build_candidate(candidate: Candidate, c_in: int, c_out: int, stride: int, skip_style: str) -> nn.Module:
    """The module of `candidate` at a position with the given shape; skip_style is 'squeezenas' or 'fbnet'."""
    if not candidate.is_skip:
        return InvertedResidual(c_in, c_out, stride, candidate, shuffle=skip_style == "fbnet")
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    if skip_style == "fbnet":
        return ConvBNReLU(c_in, c_out, 1, stride)
    if stride != 1:
        return FactorizedReduce(c_in, c_out)
    return ReLUConvBN(c_in, c_out)
