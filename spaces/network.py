"""Stand-alone networks: a stem, the searchable layers of one genotype, an optional neck and a fixed head."""

from __future__ import annotations

import torch
from torch import nn

from spaces.candidates import ConvBNReLU, InvertedResidual, build_candidate
from spaces.genotype import Genotype
from spaces.heads import build_head
from spaces.space import Skeleton, skeleton, space_of


class Network(nn.Module):
    """stem -> layers (the output of `skip_layer` is kept for the head) -> neck -> head(features, skip, size)."""

    def __init__(self, stem: nn.Module, layers: list[nn.Module], neck: nn.Module, head: nn.Module,
                 skip_layer: int | None, genotype: Genotype | None = None):
        super().__init__()
        self.stem = stem
        self.layers = nn.ModuleList(layers)
        self.neck = neck
        self.head = head
        self.skip_layer = skip_layer
        self.genotype = genotype

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, skip = self.stem(x), None
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == self.skip_layer:
                skip = x
        return self.neck(x), skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, skip = self.forward_features(x)
        return self.head(features, skip, x.shape[-2:])


def build_frame(frame: Skeleton) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The fixed modules of a skeleton: stem, neck (identity when none) and head."""
    stem = ConvBNReLU(3, frame.stem, 3, frame.stem_stride)
    last = frame.stages[-1].channels
    neck = ConvBNReLU(last, frame.neck, 1) if frame.neck else nn.Identity()
    c_skip = frame.layers()[frame.skip_layer].c_out if frame.skip_layer is not None else 0
    head = build_head(frame.head, frame.out_channels, c_skip, frame.head_channels, frame.num_classes)
    return stem, neck, head


def resolve(genotype: Genotype, width: float = 1.0, num_classes: int | None = None) -> Skeleton:
    """The genotype's skeleton with the requested width multiplier and number of classes."""
    return skeleton(genotype.skeleton).scaled(width, num_classes)


def build(genotype: Genotype, width: float = 1.0, num_classes: int | None = None) -> Network:
    """A freshly initialised stand-alone network for the genotype (the paper's settings by default)."""
    frame = resolve(genotype, width, num_classes)
    space = space_of(genotype.skeleton)
    layers = [
        build_candidate(space.candidates[choice], spec.c_in, spec.c_out, spec.stride, space.skip_style)
        for choice, spec in zip(genotype.choices, frame.layers())
    ]
    stem, neck, head = build_frame(frame)
    network = Network(stem, layers, neck, head, frame.skip_layer, genotype)
    initialise(network)
    return network


def zero_init_residuals(module: nn.Module) -> None:
    """Every residual block of `module` made to start as the identity (its last BN scale zeroed; Goyal et al.
    2017, timm's zero_init_last): a deep network then trains from the start like a shallow one."""
    for m in module.modules():
        if isinstance(m, InvertedResidual):
            m.zero_init_last()


def initialise(module: nn.Module) -> None:
    """Kaiming-normal (fan out) convs, unit BN scale, zero BN shift, as the release initialises."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
