"""The weight-sharing supernet: every searchable layer holds all candidates, each with its own weights.

`supernet(x, genotype)` runs only the chosen path, so a training step costs what one stand-alone network costs;
`supernet.extract(genotype)` copies that path out into an ordinary `Network` with the same output.
`supernet.mix(x, weights)` runs every candidate of every layer and sums their outputs with per-image weights
(the mixed forward of a differentiable search, FBNet / SqueezeNAS): its activations grow with the number of
candidates, since all of them are kept for the backward pass.
"""

from __future__ import annotations

import copy
import random

import torch
from torch import nn

from spaces.candidates import build_candidate
from spaces.genotype import Genotype, sample
from spaces.network import Network, build_frame, initialise
from spaces.space import skeleton, space_of


class ChoiceLayer(nn.Module):
    """One searchable layer: all candidates of the space at this position."""

    def __init__(self, candidates: list[nn.Module]):
        super().__init__()
        self.candidates = nn.ModuleList(candidates)

    def forward(self, x: torch.Tensor, choice: int) -> torch.Tensor:
        return self.candidates[choice](x)

    def mix(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """sum_i weights[:, i] * candidate_i(x), with weights [N, candidates] (one row per image)."""
        if weights.shape != (x.shape[0], len(self.candidates)):
            raise ValueError(f"mixing weights of shape {tuple(weights.shape)} for a batch of {x.shape[0]} and "
                             f"{len(self.candidates)} candidates")
        out = None
        for candidate, weight in zip(self.candidates, weights.unbind(1)):
            term = weight.view(-1, 1, 1, 1) * candidate(x)
            out = term if out is None else out + term
        return out


class Supernet(nn.Module):
    """All genotypes of one skeleton, with shared stem, neck and head."""

    def __init__(self, skeleton_name: str, width: float = 1.0, num_classes: int | None = None):
        super().__init__()
        self.skeleton_name = skeleton_name
        self.width = width
        frame = skeleton(skeleton_name).scaled(width, num_classes)
        space = space_of(skeleton_name)
        self.num_classes = frame.num_classes
        self.stem, self.neck, self.head = build_frame(frame)
        self.layers = nn.ModuleList(
            ChoiceLayer([build_candidate(c, spec.c_in, spec.c_out, spec.stride, space.skip_style)
                         for c in space.candidates])
            for spec in frame.layers()
        )
        self.skip_layer = frame.skip_layer
        initialise(self)

    def _check(self, genotype: Genotype) -> None:
        if genotype.skeleton != self.skeleton_name:
            raise ValueError(f"genotype of skeleton {genotype.skeleton!r} given to a {self.skeleton_name!r} supernet")

    def forward(self, x: torch.Tensor, genotype: Genotype) -> torch.Tensor:
        self._check(genotype)
        size = x.shape[-2:]
        x, skip = self.stem(x), None
        for i, (layer, choice) in enumerate(zip(self.layers, genotype.choices)):
            x = layer(x, choice)
            if i == self.skip_layer:
                skip = x
        return self.head(self.neck(x), skip, size)

    def mix(self, x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        """The mixed forward: layer l sums its candidates with weights[l] of shape [N, candidates]."""
        if len(weights) != len(self.layers):
            raise ValueError(f"{len(weights)} mixing weights for {len(self.layers)} layers")
        size = x.shape[-2:]
        x, skip = self.stem(x), None
        for i, (layer, layer_weights) in enumerate(zip(self.layers, weights)):
            x = layer.mix(x, layer_weights)
            if i == self.skip_layer:
                skip = x
        return self.head(self.neck(x), skip, size)

    def extract(self, genotype: Genotype) -> Network:
        """A stand-alone network holding copies of this path's weights and BN statistics."""
        self._check(genotype)
        layers = [copy.deepcopy(layer.candidates[choice]) for layer, choice in zip(self.layers, genotype.choices)]
        network = Network(copy.deepcopy(self.stem), layers, copy.deepcopy(self.neck), copy.deepcopy(self.head),
                          self.skip_layer, genotype)
        return network.train(self.training)

    def sample(self, rng: random.Random | int | None = None) -> Genotype:
        """A uniformly random genotype of this supernet's skeleton."""
        return sample(self.skeleton_name, rng)
