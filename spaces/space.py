"""Search spaces as data: their candidates and skeletons (stem, resolution stages, neck, head), with width scaling.

Two spaces live here: SqueezeNAS's (13 candidates; Small, Large and XLarge segmentation skeletons, exactly as
the authors released them) and FBNet's (9 candidates; the 22-layer classification skeleton in its CIFAR and
ImageNet settings, the space of the measured latency tables in HELP and HW-NAS-Bench).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from spaces.candidates import Candidate


@dataclass(frozen=True)
class ResolutionStage:
    """A resolution stage of a skeleton: `layers` searchable layers of `channels` outputs; `stride` applies to the
    first of them (the only one that changes the resolution)."""

    channels: int
    layers: int
    stride: int


@dataclass(frozen=True)
class LayerSpec:
    """The shape of one searchable layer: what every candidate at this position must map."""

    c_in: int
    c_out: int
    stride: int


@dataclass(frozen=True)
class SearchSpace:
    name: str
    candidates: tuple[Candidate, ...]
    skip_style: str

    def index(self, candidate_name: str) -> int:
        for i, candidate in enumerate(self.candidates):
            if candidate.name == candidate_name:
                return i
        raise ValueError(f"space {self.name!r} has no candidate {candidate_name!r}; "
                         f"known: {', '.join(c.name for c in self.candidates)}")


@dataclass(frozen=True)
class Skeleton:
    """The fixed frame around the searchable layers.

    `neck` is an optional 1x1 conv-BN-ReLU after the last layer; `head` is 'lraspp', 'aspp' or 'classifier';
    `skip_layer` is the index of the searchable layer whose output feeds the head's low-level branch.
    """

    name: str
    space: str
    stem: int
    stages: tuple[ResolutionStage, ...]
    head: str
    head_channels: int
    neck: int | None = None
    skip_layer: int | None = None
    stem_stride: int = 2
    num_classes: int = 19

    @property
    def num_layers(self) -> int:
        return sum(stage.layers for stage in self.stages)

    def layers(self) -> list[LayerSpec]:
        specs, c_in = [], self.stem
        for stage in self.stages:
            for i in range(stage.layers):
                specs.append(LayerSpec(c_in, stage.channels, stage.stride if i == 0 else 1))
                c_in = stage.channels
        return specs

    def input_sizes(self, size: tuple[int, int]) -> list[tuple[int, int]]:
        """(H, W) of the input to each searchable layer for an image of `size` (padding keeps size / stride)."""
        h, w = _down(size[0], self.stem_stride), _down(size[1], self.stem_stride)
        return [(h, w)] + self.output_sizes(size)[:-1]

    def output_sizes(self, size: tuple[int, int]) -> list[tuple[int, int]]:
        """(H, W) of the output of each searchable layer for an image of `size`."""
        h, w = _down(size[0], self.stem_stride), _down(size[1], self.stem_stride)
        sizes = []
        for spec in self.layers():
            h, w = _down(h, spec.stride), _down(w, spec.stride)
            sizes.append((h, w))
        return sizes

    @property
    def out_channels(self) -> int:
        return self.neck or self.stages[-1].channels

    def scaled(self, width: float = 1.0, num_classes: int | None = None) -> "Skeleton":
        """The same skeleton with every channel count scaled by `width` (multiples of 4; 1.0 is the paper)."""
        classes = self.num_classes if num_classes is None else num_classes
        if width == 1.0:
            return replace(self, num_classes=classes)
        if width <= 0:
            raise ValueError(f"width multiplier must be positive, got {width}")
        return replace(
            self,
            stem=make_divisible(self.stem * width),
            stages=tuple(replace(s, channels=make_divisible(s.channels * width)) for s in self.stages),
            head_channels=make_divisible(self.head_channels * width),
            neck=make_divisible(self.neck * width) if self.neck else None,
            num_classes=classes,
        )


def _down(length: int, stride: int) -> int:
    return -(-length // stride)


def make_divisible(value: float, divisor: int = 4) -> int:
    """Nearest multiple of `divisor`, never below it and never more than 10% under `value` (MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _inverted(kernel: int, expansion: float, groups: int = 1, dilation: int = 1, suffix: str = "") -> Candidate:
    name = f"k{kernel}_e{expansion:g}{suffix}"
    return Candidate(name, kernel, expansion, groups, dilation)


SQUEEZENAS = SearchSpace(
    "squeezenas",
    tuple(
        _inverted(k, e, g, d, f"_g{g}" + ("_d2" if d == 2 else ""))
        for k, d in ((3, 1), (5, 1), (3, 2))
        for e, g in ((1, 1), (1, 2), (3, 1), (6, 1))
    ) + (Candidate("skip"),),
    skip_style="squeezenas",
)

FBNET = SearchSpace(
    "fbnet",
    tuple(_inverted(k, e, g, 1, "_g2" if g == 2 else "") for k in (3, 5) for e, g in ((1, 1), (1, 2), (3, 1), (6, 1)))
    + (Candidate("skip"),),
    skip_style="fbnet",
)

SPACES = {space.name: space for space in (SQUEEZENAS, FBNET)}

_FBNET_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
_FBNET_LAYERS = (1, 4, 4, 4, 4, 4, 1)


def _resolution_stages(*stages: tuple[int, int, int]) -> tuple[ResolutionStage, ...]:
    """ResolutionStage(channels, layers, stride) of each triple."""
    return tuple(ResolutionStage(*stage) for stage in stages)


def _fbnet(name: str, strides: tuple[int, ...], stem_stride: int, neck: int, num_classes: int) -> Skeleton:
    stages = _resolution_stages(*zip(_FBNET_CHANNELS, _FBNET_LAYERS, strides))
    return Skeleton(name, "fbnet", stem=16, stages=stages, head="classifier", head_channels=0, neck=neck,
                    stem_stride=stem_stride, num_classes=num_classes)


SKELETONS: dict[str, Skeleton] = {
    s.name: s
    for s in (
        Skeleton("small", "squeezenas", stem=16,
                 stages=_resolution_stages((16, 4, 2), (24, 4, 2), (40, 4, 2), (48, 4, 1), (96, 4, 1)),
                 head="lraspp", head_channels=128, neck=256, skip_layer=7),
        Skeleton("large", "squeezenas", stem=16,
                 stages=_resolution_stages((16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (96, 4, 1), (160, 4, 1),
                                           (160, 1, 1)),
                 head="lraspp", head_channels=128, skip_layer=8),
        Skeleton("xlarge", "squeezenas", stem=48,
                 stages=_resolution_stages((24, 1, 1), (32, 4, 2), (48, 4, 2), (96, 4, 2), (144, 4, 1), (240, 4, 1),
                                           (320, 1, 1)),
                 head="aspp", head_channels=160, skip_layer=4),
        _fbnet("fbnet_cifar", (1, 1, 2, 2, 1, 2, 1), stem_stride=1, neck=1504, num_classes=100),
        _fbnet("fbnet_imagenet", (1, 2, 2, 2, 1, 2, 1), stem_stride=2, neck=1984, num_classes=1000),
    )
}


def skeleton(name: str) -> Skeleton:
    """The skeleton called `name`; ValueError naming the known ones otherwise."""
    if name not in SKELETONS:
        raise ValueError(f"unknown skeleton {name!r}; known: {', '.join(SKELETONS)}")
    return SKELETONS[name]


def space_of(skeleton_name: str) -> SearchSpace:
    return SPACES[skeleton(skeleton_name).space]
