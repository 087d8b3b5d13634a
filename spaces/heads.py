"""Fixed (not searched) heads: SqueezeNAS's LR-ASPP and ASPP+decoder, and FBNet's classifier.

Every head is called as head(features, skip, size): the encoder output (OS16 for segmentation), the low-level
feature of the skeleton's skip layer (or None) and the input's (H, W); segmentation heads return logits at (H, W).
"""

from __future__ import annotations

from math import gcd
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from spaces.candidates import ConvBNReLU

# The release pools with AvgPool2d(kernel 49, stride (16, 20)) on the OS16 features of a 1024x2048 input (64x128).
_RELEASE_FEATURES = (64, 128)
_RELEASE_KERNEL = (49, 49)
_RELEASE_STRIDE = (16, 20)


def lraspp_pool_geometry(height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Kernel and stride of LR-ASPP's pooling at OS16 features of (height, width), scaled from the release.

    At 64x128 (a 1024x2048 input) this is exactly the release's kernel 49 and stride (16, 20).
    """
    kernel, stride = [], []
    for size, ref, k, s in zip((height, width), _RELEASE_FEATURES, _RELEASE_KERNEL, _RELEASE_STRIDE):
        kernel.append(min(size, max(1, round(k * size / ref))))
        stride.append(max(1, round(s * size / ref)))
    return (kernel[0], kernel[1]), (stride[0], stride[1])


class LRASPP(nn.Module):
    """Lite R-ASPP (MobileNetV3): gated OS16 features, upsampled to OS8, plus a classifier on the OS8 skip."""

    def __init__(self, c_in: int, c_skip: int, mid: int, num_classes: int):
        super().__init__()
        self.features = ConvBNReLU(c_in, mid, 1)
        self.gate = nn.Conv2d(c_in, mid, 1)
        self.classifier = nn.Conv2d(mid, num_classes, 1)
        self.skip_classifier = nn.Conv2d(c_skip, num_classes, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        features = self.features(x)
        kernel, stride = lraspp_pool_geometry(int(x.shape[-2]), int(x.shape[-1]))
        gate = torch.sigmoid(self.gate(F.avg_pool2d(x, kernel, stride)))
        gate = F.interpolate(gate, size=features.shape[-2:], mode="bilinear", align_corners=False)
        out = F.interpolate(features * gate, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(out) + self.skip_classifier(skip)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1 and three dilated grouped 3x3 branches, image pooling kept raw."""

    def __init__(self, c_in: int, mid: int, rates: tuple[int, ...] = (6, 12, 18)):
        super().__init__()
        groups = gcd(c_in, mid)
        self.branches = nn.ModuleList(
            [ConvBNReLU(c_in, mid, 1)] + [ConvBNReLU(c_in, mid, 3, dilation=r, groups=groups) for r in rates]
        )
        self.project = ConvBNReLU(mid * len(self.branches) + c_in, mid, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
        return self.project(torch.cat([branch(x) for branch in self.branches] + [pooled], dim=1))


class ASPPDecoder(nn.Module):
    """DeepLabV3+-style decoder: ASPP at OS16, upsampled to the OS4 skip, depthwise fuse, classifier."""

    def __init__(self, c_in: int, c_skip: int, mid: int, num_classes: int):
        super().__init__()
        self.aspp = ASPP(c_in, mid)
        self.skip_conv = nn.Conv2d(c_skip, c_skip, 1)
        fused = mid + c_skip
        self.fuse = ConvBNReLU(fused, fused, 3, groups=fused)
        self.classifier = nn.Conv2d(fused, num_classes, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        out = F.interpolate(self.aspp(x), size=skip.shape[-2:], mode="bilinear", align_corners=True)
        out = self.classifier(self.fuse(torch.cat([out, self.skip_conv(skip)], dim=1)))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=True)


class Classifier(nn.Module):
    """Global average pool and a linear layer (FBNet's ImageNet/CIFAR head)."""

    def __init__(self, c_in: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


HEADS: dict[str, Callable[[int, int, int, int], nn.Module]] = {
    "lraspp": LRASPP,
    "aspp": ASPPDecoder,
    "classifier": lambda c_in, c_skip, mid, num_classes: Classifier(c_in, num_classes),
}
"""Heads by the name a skeleton gives: (c_in, c_skip, mid, num_classes) -> module."""


def build_head(kind: str, c_in: int, c_skip: int, mid: int, num_classes: int) -> nn.Module:
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; known: {', '.join(HEADS)}")
    return HEADS[kind](c_in, c_skip, mid, num_classes)
