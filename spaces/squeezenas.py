"""The six networks SqueezeNAS released, by name, and the one place that maps the authors' weight names to ours."""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path

import torch

from spaces.genotype import Genotype
from spaces.network import Network, build

_GENOTYPES = {
    "lat_small": "k3_e1_g1 skip skip skip k3_e6_g1 k3_e6_g1 skip skip k5_e6_g1 k3_e6_g1_d2 k5_e1_g2 k3_e1_g2 "
                 "k3_e6_g1_d2 k3_e6_g1_d2 k3_e6_g1_d2 k3_e1_g1_d2 k3_e6_g1_d2 k3_e3_g1_d2 k3_e3_g1_d2 k3_e3_g1_d2",
    "lat_large": "skip k3_e6_g1 k3_e3_g1 k3_e1_g1_d2 k3_e3_g1 k5_e6_g1 k3_e6_g1 k3_e3_g1 k3_e6_g1_d2 k5_e6_g1 "
                 "k5_e1_g1 k5_e1_g1 k5_e1_g2 k3_e6_g1_d2 k3_e6_g1_d2 k3_e6_g1_d2 k3_e1_g1 k3_e6_g1_d2 k3_e6_g1_d2 "
                 "k3_e6_g1_d2 k3_e6_g1_d2 k3_e6_g1_d2",
    "lat_xlarge": "skip k3_e3_g1 k3_e3_g1 k3_e3_g1 k3_e1_g1_d2 k3_e6_g1 k3_e3_g1 k5_e6_g1 k5_e1_g2 k5_e6_g1 "
                  "k3_e6_g1 k3_e1_g2_d2 k3_e6_g1 k5_e6_g1 k3_e3_g1_d2 k3_e1_g2_d2 k3_e3_g1 k3_e6_g1_d2 k3_e3_g1_d2 "
                  "k5_e1_g1 k3_e3_g1_d2 k3_e6_g1_d2",
    "mac_small": "k3_e1_g2 k3_e1_g1 k3_e1_g1 k3_e1_g2 k5_e6_g1 k3_e1_g1 k3_e1_g1 k3_e1_g2_d2 k5_e6_g1 k3_e6_g1_d2 "
                 "skip k3_e1_g2 k5_e6_g1 k3_e3_g1_d2 k3_e1_g1_d2 k3_e1_g1_d2 k3_e6_g1_d2 k3_e1_g2_d2 k3_e1_g2_d2 "
                 "k3_e1_g2_d2",
    "mac_large": "k3_e1_g2 k3_e6_g1 k3_e1_g2_d2 k3_e1_g2 k3_e1_g2 k5_e6_g1 k5_e6_g1 k3_e6_g1_d2 k5_e6_g1 k5_e6_g1 "
                 "k5_e6_g1 k5_e1_g1 k3_e3_g1 k5_e6_g1 k3_e1_g1 k5_e1_g1 k3_e3_g1_d2 k3_e6_g1_d2 k3_e1_g2_d2 "
                 "k3_e1_g2_d2 k3_e1_g2_d2 k3_e1_g1_d2",
    "mac_xlarge": "k3_e1_g2 k3_e3_g1 k3_e1_g2 k5_e1_g1 k3_e3_g1_d2 k5_e6_g1 k5_e1_g2 k3_e1_g2_d2 k3_e3_g1 k5_e6_g1 "
                  "k3_e3_g1 skip k3_e1_g2_d2 k5_e6_g1 k3_e1_g1 k5_e6_g1 skip k3_e6_g1_d2 k3_e1_g2_d2 k3_e1_g2_d2 "
                  "k3_e1_g2_d2 k3_e3_g1_d2",
}

NAMES = tuple(_GENOTYPES)

# Release name prefix -> ours; the first matching rule applies, then its Conv_BN_ReLU `.conv.`/`.bn.` become 0/1.
_RENAMES = (
    (r"encoder\.conv1\.", "stem."),
    (r"encoder\.last_conv\.", "neck."),
    (r"encoder\.residuals\.(\d+)\.op\.conv_1\.", r"layers.\1.branch1."),
    (r"encoder\.residuals\.(\d+)\.op\.conv_2\.", r"layers.\1.branch2."),
    (r"encoder\.residuals\.(\d+)\.op\.op\.", r"layers.\1."),
    (r"encoder\.residuals\.(\d+)\.op\.", r"layers.\1.body."),
    (r"decoder\._1x1_TL\.", "head.features."),
    (r"decoder\._1x1_BL\.", "head.gate."),
    (r"decoder\._1x1_TR\.", "head.classifier."),
    (r"decoder\._1x1_BR\.", "head.skip_classifier."),
    (r"decoder\._1x1_1_conv\.", "head.aspp.branches.0."),
    (r"decoder\._3x3_([123])_conv\.", r"head.aspp.branches.\1."),
    (r"decoder\._1x1_2_conv\.", "head.aspp.project."),
    (r"lowlevel1x1\.", "head.skip_conv."),
    (r"logits2\.", "head.fuse."),
    (r"logits3\.", "head.classifier."),
)
_CONV_BN_RELU = ((r"\.conv\.", ".0."), (r"\.bn\.", ".1."))


def genotype(name: str) -> Genotype:
    """The released genotype called `name` (lat_small, lat_large, lat_xlarge, mac_small, mac_large, mac_xlarge)."""
    if name not in _GENOTYPES:
        raise ValueError(f"unknown SqueezeNAS network {name!r}; known: {', '.join(NAMES)}")
    return Genotype.from_names(name.split("_")[1], _GENOTYPES[name].split())


def released_for(skeleton_name: str) -> dict[str, Genotype]:
    """The released genotypes of one skeleton by name (lat_<skeleton>, mac_<skeleton>; none for another space)."""
    return {name: genotype(name) for name in NAMES if name.endswith("_" + skeleton_name)}


def remap_release_key(key: str) -> str:
    """Our parameter name for a key of the authors' state dicts; ValueError for an unknown key."""
    for pattern, replacement in _RENAMES:
        renamed, hits = re.subn("^" + pattern, replacement, key)
        if hits:
            for conv_bn, index in _CONV_BN_RELU:
                renamed = re.sub(conv_bn, index, renamed)
            return renamed
    raise ValueError(f"release weight {key!r} matches no known SqueezeNAS module")


def load_release_weights(model: Network, path: str | PathLike) -> Network:
    """Load one of the authors' .pth state dicts into `model` strictly (every key present, every shape equal)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SqueezeNAS weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({remap_release_key(k): v for k, v in state.items()}, strict=True)
    return model


def released(name: str, weights: str | PathLike | None = None, num_classes: int = 19) -> Network:
    """A released SqueezeNAS network in eval mode; `weights` loads the authors' state dict strictly."""
    model = build(genotype(name), num_classes=num_classes)
    if weights is not None:
        load_release_weights(model, weights)
    return model.eval()
