"""The FBNet space behind the same genotype, builder and MAC interfaces, checked against the measured tables."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from spaces import Genotype, build, count_macs, sample, skeleton, space_of
from spaces.candidates import ChannelShuffle, InvertedResidual

SETTINGS = {"fbnet_cifar": (32, 100), "fbnet_imagenet": (224, 1000)}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_fbnet_networks_build_and_classify(name: str) -> None:
    size, classes = SETTINGS[name]
    net = build(sample(name, 0)).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, size, size)).shape == (2, classes)
    assert count_macs(net, (size, size)) > 0


def test_grouped_fbnet_blocks_shuffle_channels() -> None:
    net = build(Genotype("fbnet_cifar", (1,) * 22))
    blocks = [m for m in net.layers if isinstance(m, InvertedResidual)]
    assert len(blocks) == 22
    assert all(isinstance(block.body[3], ChannelShuffle) for block in blocks)
    shuffle = ChannelShuffle(2)
    assert shuffle(torch.arange(6.0).view(1, 6, 1, 1)).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def _lut_keys(name: str) -> list[str]:
    """The HW-NAS-Bench table keys this skeleton's layers need, one per layer and candidate (+ stem, neck, FC)."""
    frame, space = skeleton(name), space_of(name)
    size = SETTINGS[name][0]
    keys = [f"ConvNorm_H{size}_W{size}_Cin3_Cout16_kernel3_stride{frame.stem_stride}_group1"]
    for spec, (h, w) in zip(frame.layers(), frame.input_sizes((size, size))):
        shape = f"H{h}_W{w}_Cin{spec.c_in}_Cout{spec.c_out}"
        for c in space.candidates:
            if c.is_skip:
                keys.append(f"Skip_{shape}_stride{spec.stride}")
            else:
                keys.append(f"ConvBlock_{shape}_exp{c.expansion:g}_kernel{c.kernel}_stride{spec.stride}_group{c.groups}")
    h, w = frame.input_sizes((size, size))[-1]
    keys.append(f"ConvNorm_H{h}_W{w}_Cin352_Cout{frame.neck}_kernel1_stride1_group1")
    keys.append(f"FC_Cin{frame.neck}_Cout{frame.num_classes}")
    return keys


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_layer_shapes_match_the_hwnasbench_lookup_table(shared, name: str) -> None:
    table = json.loads(shared("latency/hwnasbench_fbnet_lut.json").read_text())["edgegpu_latency"]
    missing = [key for key in _lut_keys(name) if key not in table]
    assert not missing, missing[:5]


def test_every_help_architecture_is_a_genotype(shared) -> None:
    with shared("latency/help_fbnet_latency.csv").open() as handle:
        archs = [row["arch"] for row in csv.DictReader(handle)]
    assert len(archs) == 5000
    genotypes = {Genotype.from_digits("fbnet_cifar", arch) for arch in archs}
    assert len(genotypes) == len(set(archs))
    first = Genotype.from_digits("fbnet_cifar", archs[0])
    assert "".join(map(str, first.choices)) == archs[0]
