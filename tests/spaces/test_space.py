"""Candidates, skeletons and heads of the SqueezeNAS space, checked against SQUEEZENAS.md."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spaces import Genotype, build, sample, skeleton
from spaces.candidates import ConvBNReLU, FactorizedReduce, ReLUConvBN, build_candidate
from spaces.heads import lraspp_pool_geometry
from spaces.space import FBNET, SQUEEZENAS

TABLE = [  # name, kernel, expansion, groups, dilation (SQUEEZENAS.md)
    ("k3_e1_g1", 3, 1, 1, 1), ("k3_e1_g2", 3, 1, 2, 1), ("k3_e3_g1", 3, 3, 1, 1), ("k3_e6_g1", 3, 6, 1, 1),
    ("k5_e1_g1", 5, 1, 1, 1), ("k5_e1_g2", 5, 1, 2, 1), ("k5_e3_g1", 5, 3, 1, 1), ("k5_e6_g1", 5, 6, 1, 1),
    ("k3_e1_g1_d2", 3, 1, 1, 2), ("k3_e1_g2_d2", 3, 1, 2, 2), ("k3_e3_g1_d2", 3, 3, 1, 2),
    ("k3_e6_g1_d2", 3, 6, 1, 2),
]


def test_candidate_table() -> None:
    assert len(SQUEEZENAS.candidates) == 13 and SQUEEZENAS.candidates[12].is_skip
    got = [(c.name, c.kernel, c.expansion, c.groups, c.dilation) for c in SQUEEZENAS.candidates[:12]]
    assert got == TABLE
    assert [c.name for c in FBNET.candidates] == [
        "k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip"]


@pytest.mark.parametrize("index", range(12))
def test_inverted_residual_structure(index: int) -> None:
    candidate = SQUEEZENAS.candidates[index]
    block = build_candidate(candidate, 24, 24, 1, "squeezenas")
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    hidden = round(24 * candidate.expansion)
    assert [(c.in_channels, c.out_channels, c.groups, c.kernel_size[0], c.dilation[0]) for c in convs] == [
        (24, hidden, candidate.groups, 1, 1),
        (hidden, hidden, hidden, candidate.kernel, candidate.dilation),
        (hidden, 24, candidate.groups, 1, 1),
    ]
    assert all(c.bias is None for c in convs)
    assert [type(m) for m in block.body][-1] is nn.BatchNorm2d  # no activation after the projection
    assert all(type(m) is not nn.ReLU6 for m in block.modules())
    assert block.residual
    assert not build_candidate(candidate, 24, 32, 1, "squeezenas").residual
    assert not build_candidate(candidate, 24, 24, 2, "squeezenas").residual
    x = torch.randn(1, 24, 17, 23)
    assert block(x).shape == x.shape
    assert build_candidate(candidate, 24, 32, 2, "squeezenas")(x).shape == (1, 32, 9, 12)


def test_skip_depends_on_position() -> None:
    skip = SQUEEZENAS.candidates[12]
    assert isinstance(build_candidate(skip, 16, 16, 1, "squeezenas"), nn.Identity)
    assert isinstance(build_candidate(skip, 16, 24, 2, "squeezenas"), FactorizedReduce)
    assert isinstance(build_candidate(skip, 16, 16, 2, "squeezenas"), FactorizedReduce)
    assert isinstance(build_candidate(skip, 16, 24, 1, "squeezenas"), ReLUConvBN)
    assert isinstance(build_candidate(skip, 16, 24, 2, "fbnet"), ConvBNReLU)
    assert isinstance(build_candidate(skip, 16, 16, 1, "fbnet"), nn.Identity)


def test_factorized_reduce_reads_the_shifted_input() -> None:
    block = FactorizedReduce(8, 12).eval()
    x = torch.randn(2, 8, 10, 14)
    relu = torch.relu(x)
    expected = torch.cat([block.branch1(relu), block.branch2(relu[:, :, 1:, 1:])], dim=1)
    out = block(x)
    assert out.shape == (2, 12, 5, 7)
    assert torch.equal(out, expected)
    odd = torch.randn(1, 8, 9, 11)
    assert block(odd).shape == (1, 12, 5, 6)
    padded = nn.functional.pad(torch.relu(odd)[:, :, 1:, 1:], (0, 1, 0, 1))
    assert torch.equal(block(odd)[:, 6:], block.branch2(padded))


@pytest.mark.parametrize("name, layers, skip_os", [("small", 20, 8), ("large", 22, 8), ("xlarge", 22, 4)])
def test_skeletons(name: str, layers: int, skip_os: int) -> None:
    frame = skeleton(name)
    assert frame.num_layers == layers
    sizes = frame.input_sizes((1024, 2048))
    specs = frame.layers()
    last = (sizes[-1][0] // specs[-1].stride, sizes[-1][1] // specs[-1].stride)
    assert last == (64, 128)  # output stride 16
    skip_size = sizes[frame.skip_layer + 1] if frame.skip_layer + 1 < layers else last
    assert skip_size == (1024 // skip_os, 2048 // skip_os)


def test_skeleton_channels_are_the_papers() -> None:
    assert [s.c_out for s in skeleton("small").layers()][::4] == [16, 24, 40, 48, 96]
    assert skeleton("small").neck == 256 and skeleton("small").stem == 16
    assert skeleton("large").layers()[-1].c_out == 160 and skeleton("large").neck is None
    assert skeleton("xlarge").stem == 48 and skeleton("xlarge").layers()[-1].c_out == 320
    assert [s.stride for s in skeleton("large").layers()] == [1, 2, 1, 1, 1, 2, 1, 1, 1, 2] + [1] * 12


def test_width_multiplier_scales_every_channel_and_keeps_the_paper_at_one() -> None:
    assert skeleton("small").scaled(1.0) == skeleton("small")
    half = skeleton("xlarge").scaled(0.5, num_classes=11)
    assert half.stem == 24 and half.head_channels == 80 and half.num_classes == 11
    assert [s.channels for s in half.stages] == [12, 16, 24, 48, 72, 120, 160]
    quarter = skeleton("small").scaled(0.25)
    assert all(s.channels % 4 == 0 for s in quarter.stages)
    with pytest.raises(ValueError, match="width multiplier"):
        skeleton("small").scaled(0)


def test_lraspp_pooling_equals_the_release_at_1024x2048() -> None:
    assert lraspp_pool_geometry(64, 128) == ((49, 49), (16, 20))
    x = torch.randn(1, 8, 64, 128)
    kernel, stride = lraspp_pool_geometry(64, 128)
    release = nn.AvgPool2d(kernel_size=49, stride=[16, 20], count_include_pad=False)(x)
    assert torch.equal(nn.functional.avg_pool2d(x, kernel, stride), release)
    for h, w in [(1, 1), (4, 8), (16, 32), (33, 47), (128, 256)]:
        (kh, kw), (sh, sw) = lraspp_pool_geometry(h, w)
        assert 1 <= kh <= h and 1 <= kw <= w and sh >= 1 and sw >= 1


@pytest.mark.parametrize("name", ["small", "large", "xlarge"])
@pytest.mark.parametrize("size", [(64, 64), (96, 160), (100, 130), (33, 47)])
def test_any_input_size_gives_full_resolution_logits(name: str, size: tuple[int, int]) -> None:
    net = build(sample(name, 1), width=0.25, num_classes=7).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, *size)).shape == (2, 7, *size)


def test_build_defaults_are_the_papers() -> None:
    net = build(Genotype("small", (0,) * 20))
    assert net.head.classifier.out_channels == 19
    assert net.stem[0].stride == (2, 2) and net.stem[0].out_channels == 16
