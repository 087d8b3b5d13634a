"""Per-layer cost tables and the genotype features built on them agree with counting the whole network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hardware.provenance import provenance
from predictors.features import cost_feature_names, cost_features, one_hot, one_hot_names
from spaces import SKELETONS, build, count_macs, count_params, sample
from spaces.costs import cost_table, cost_tables
from spaces.squeezenas import genotype

SIZES = {"small": (128, 256), "large": (96, 160), "xlarge": (64, 128), "fbnet_cifar": (32, 32),
         "fbnet_imagenet": (224, 224)}


@pytest.mark.parametrize("name", sorted(SKELETONS))
def test_table_sums_equal_whole_network_counts(name: str) -> None:
    width = 0.5 if name in ("small", "large", "xlarge") else 1.0
    table = cost_table(name, SIZES[name], width, 7)
    for seed in range(4):
        g = sample(name, seed)
        net = build(g, width, 7)
        assert table.genotype_macs(g) == count_macs(net, SIZES[name])
        assert table.genotype_params(g) == count_params(net)


def test_released_macs_from_the_table() -> None:
    table = cost_table("small", (1024, 2048))
    assert table.genotype_macs(genotype("lat_small")) == 4_465_098_752
    assert table.genotype_macs(genotype("mac_small")) == 3_007_512_576
    with pytest.raises(ValueError, match="priced with a 'small' table"):
        table.genotype_macs(genotype("lat_large"))


def test_one_hot_and_cost_features() -> None:
    genotypes = [sample("fbnet_cifar", seed) for seed in range(5)]
    x = one_hot(genotypes)
    assert x.shape == (5, 22 * 9) and (x.sum(axis=1) == 22).all()
    assert x[0, 3 * 9 + genotypes[0].choices[3]] == 1
    assert len(one_hot_names("fbnet_cifar", 22)) == x.shape[1]
    table = cost_table("fbnet_cifar", (32, 32))
    features = cost_features(genotypes, table)
    assert features.shape == (5, len(cost_feature_names(22)))
    assert features[:, -3].tolist() == [table.genotype_macs(g) for g in genotypes]
    assert np.allclose(features[:, :22].sum(axis=1) + table.fixed_macs, features[:, -3])
    with pytest.raises(ValueError, match="one search space"):
        one_hot([sample("small", 0), sample("fbnet_cifar", 0)])
    with pytest.raises(ValueError, match="one skeleton"):
        cost_features([sample("small", 0), sample("large", 0)], cost_table("small", (64, 128)))


def test_features_of_several_skeletons_pad_the_shorter_and_name_the_skeleton() -> None:
    """small has 20 layers, large 22: one feature row layout for both, the skeleton in indicator columns."""
    tables = cost_tables(("small", "large"), (64, 128), 0.5, 19)
    genotypes = [sample("small", 1), sample("large", 2), sample("small", 3)]
    x = one_hot(genotypes)
    assert x.shape == (3, 22 * 13) and x.sum(axis=1).tolist() == [20, 22, 20]
    assert not x[0, 20 * 13:].any()
    features = cost_features(genotypes, tables)
    assert features.shape == (3, 3 * 22 + 3 + 2)
    assert features[:, -2:].tolist() == [[1, 0], [0, 1], [1, 0]]
    assert features[:, -5].tolist() == [tables.genotype_macs(g) for g in genotypes]
    activations = features[:, 2 * 22: 3 * 22]  # per layer, whatever the candidate
    assert (activations[0, 20:] == 0).all() and (activations[1, 20:] > 0).all() and (activations[:, :20] > 0).all()
    assert tables.genotype_macs(genotypes[1]) == cost_table("large", (64, 128), 0.5, 19).genotype_macs(genotypes[1])
    with pytest.raises(ValueError, match="priced with tables of small, large"):
        tables.genotype_macs(sample("xlarge", 0))


def test_provenance_is_json_ready() -> None:
    record = provenance("torch-cpu", threads=2)
    assert json.loads(json.dumps(record))["threads"] == 2
    assert {"cpu", "libraries", "backend", "precision", "time"} <= record.keys()
    assert "torch" in record["libraries"]
