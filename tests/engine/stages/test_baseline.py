"""Searched vs hand-made: the MobileNetV2-like genotype, its latency match on the front, the comparison file."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from engine.config import load
from engine.errors import DeviceError
from engine.latency.meter import open_meter
from engine.latency.model import space_costs
from engine.runner import Context
from engine.stages.baseline import handmade, matched_genotype, run
from engine.training.distributed import init_world
from spaces import Genotype, largest, sample, skeleton, smallest


@pytest.mark.parametrize("name", ["small", "large", "xlarge"])
def test_handmade_is_k3_e6_in_every_layer(name: str) -> None:
    genotype = handmade(name)
    assert genotype.skeleton == name and len(genotype.choices) == skeleton(name).num_layers
    assert set(genotype.names) == {"k3_e6_g1"}


def test_handmade_names_a_space_without_the_candidate() -> None:
    with pytest.raises(ValueError, match="fbnet_cifar.*k3_e6_g1"):
        handmade("fbnet_cifar")


def front_of(predicted: list[float], miou: list[float]) -> pd.DataFrame:
    keys = [sample("small", seed).key for seed in range(len(predicted))]
    return pd.DataFrame({"key": keys, "miou": miou, "latency_ms": predicted})


def fake_measure(front: pd.DataFrame, measured: list[float], calls: list[list[str]]):
    by_key = dict(zip(front.key, measured))

    def measure(genotypes: list[Genotype]) -> list[float]:
        calls.append([g.key for g in genotypes])
        return [by_key[g.key] for g in genotypes]

    return measure


def test_matched_genotype_takes_the_best_miou_within_tolerance() -> None:
    front = front_of(predicted=[9.0, 10.2, 11.0, 20.0], miou=[0.5, 0.3, 0.6, 0.9])
    calls = []
    genotype, ms = matched_genotype(front, 10.0, fake_measure(front, [10.3, 9.9, 12.0, 10.0], calls))
    assert (genotype.key, ms) == (front.key[0], 10.3)  # 0.6 is measured outside 5 %, 0.9 is predicted too far
    assert len(calls) == 1 and sorted(calls[0]) == sorted(front.key[:3])


def test_matched_genotype_falls_back_to_the_nearest_measured() -> None:
    front = front_of(predicted=[9.0, 10.2, 11.0, 20.0], miou=[0.5, 0.3, 0.6, 0.9])
    genotype, ms = matched_genotype(front, 10.0, fake_measure(front, [8.0, 11.0, 12.0, 10.0], []), tolerance=0.05)
    assert (genotype.key, ms) == (front.key[1], 11.0)


@pytest.fixture
def config(quickstart: str, run_args: list[str]):
    return load(quickstart, [*run_args, "audit.train.steps=2", "audit.train.checkpoint_every=1"])


def test_baseline_without_a_device_says_so(config) -> None:
    with pytest.raises(DeviceError, match="unreachable"):
        run(Context(config, config.paths, init_world("cpu"), meter=None))


def test_baseline_trains_both_and_writes_the_comparison(quickstart: str, run_args: list[str]) -> None:
    """On val and, with data.test_split, on a test split the search never saw."""
    config = load(quickstart, [*run_args, "audit.train.steps=2", "audit.train.checkpoint_every=1",
                               "data.test_split=test"])
    genotypes = [smallest("small"), handmade("small"), sample("small", 1), largest("small")]
    front = pd.DataFrame({"key": [g.key for g in genotypes], "miou": [0.1, 0.2, 0.3, 0.4],
                          "latency_ms": [1.0, 2.0, 3.0, 4.0], "predicted_ms": [1.1, 2.1, 3.1, 4.1]})
    config.run_dir.mkdir(parents=True)
    front.to_csv(config.run_dir / "front.csv", index=False)
    run(Context(config, config.paths, init_world("cpu"), meter=open_meter(config)))
    result = json.loads(config.paths.baseline.read_text())
    baseline, searched = result["handmade"], result["searched"]
    assert baseline["key"] == handmade("small").key and set(baseline["names"]) == {"k3_e6_g1"}
    assert searched["key"] in set(front.key)
    point = front.set_index("key").loc[searched["key"]]
    assert (searched["predicted_ms"], searched["inherited_miou"]) == (point.predicted_ms, point.miou)
    assert baseline["measured_ms"] > 0 and searched["measured_ms"] > 0
    assert result["latency_ratio"] == pytest.approx(searched["measured_ms"] / baseline["measured_ms"])
    assert 0 <= baseline["standalone_miou"] <= 1 and 0 <= searched["standalone_miou"] <= 1
    assert result["miou_difference"] == pytest.approx(searched["standalone_miou"] - baseline["standalone_miou"])
    assert 0 <= baseline["standalone_test_miou"] <= 1 and result["test_split"] == "test"
    assert result["test_miou_difference"] == pytest.approx(searched["standalone_test_miou"]
                                                           - baseline["standalone_test_miou"])
    costs = space_costs(config)
    assert searched["macs"] == costs.genotype_macs(Genotype.from_key(searched["key"]))
    assert baseline["macs"] == costs.genotype_macs(handmade("small"))
    assert (result["train_steps"], result["train_batch_size"], result["statistic"]) == (2, 8, "median")
    for key in (baseline["key"], searched["key"]):
        assert (config.paths.trained(key) / "weights.pt").exists()
