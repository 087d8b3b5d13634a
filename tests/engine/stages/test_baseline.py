"""Searched vs hand-made: the MobileNetV2-like genotype, its latency match on the front, the comparison file."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from engine.config import load
from engine.errors import ConfigError, DeviceError
from engine.latency.meter import open_meter
from engine.latency.model import space_costs
from engine.runner import Context
from engine.report.tables import baseline_table
from engine.stages.baseline import Pair, handmade, matched_genotype, run, summary, trained_folder
from engine.training.distributed import init_world
from spaces import Genotype, largest, sample, skeleton, smallest


@pytest.mark.parametrize("name", ["small", "large", "xlarge"])
@pytest.mark.parametrize("design", ["k3_e6_g1", "k3_e3_g1", "k3_e1_g1"])
def test_a_handmade_design_is_one_candidate_in_every_layer(name: str, design: str) -> None:
    genotype = handmade(name, design)
    assert genotype.skeleton == name and len(genotype.choices) == skeleton(name).num_layers
    assert set(genotype.names) == {design}


def test_handmade_names_the_setting_and_a_space_without_the_candidate() -> None:
    with pytest.raises(ConfigError, match="audit.handmade: skeleton 'fbnet_cifar' has no hand-made design 'k3_e6_g1'"):
        handmade("fbnet_cifar")
    with pytest.raises(ConfigError, match="audit.handmade: .*'k9_e6_g1'"):
        handmade("small", "k9_e6_g1")


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


def test_baseline_trains_each_design_and_its_match_under_each_seed(quickstart: str, run_args: list[str]) -> None:
    """Two hand-made designs, two seeds; on val and, with data.test_split, on a test split the search never saw."""
    config = load(quickstart, [*run_args, "audit.train.steps=2", "audit.train.checkpoint_every=1",
                               "data.test_split=test", "audit.seeds=2", "audit.handmade=[k3_e6_g1,k3_e1_g1]"])
    genotypes = [smallest("small"), handmade("small", "k3_e1_g1"), handmade("small"), sample("small", 1),
                 largest("small")]
    front = pd.DataFrame({"key": [g.key for g in genotypes], "miou": [0.1, 0.2, 0.3, 0.35, 0.4],
                          "latency_ms": [1.0, 2.0, 3.0, 3.5, 4.0], "predicted_ms": [1.1, 2.1, 3.1, 3.6, 4.1]})
    config.run_dir.mkdir(parents=True)
    front.to_csv(config.run_dir / "front.csv", index=False)
    run(Context(config, config.paths, init_world("cpu"), meter=open_meter(config)))
    result = json.loads(config.paths.baseline.read_text())
    assert [pair["design"] for pair in result["pairs"]] == ["k3_e6_g1", "k3_e1_g1"]
    assert (result["seeds"], result["test_split"], result["train_steps"], result["statistic"]) == (2, "test", 2,
                                                                                                    "min")
    costs, differences = space_costs(config), {"val": [], "test": []}
    for pair, design in zip(result["pairs"], ["k3_e6_g1", "k3_e1_g1"]):
        baseline, searched = pair["handmade"], pair["searched"]
        assert baseline["key"] == handmade("small", design).key and searched["key"] in set(front.key)
        point = front.set_index("key").loc[searched["key"]]
        assert (searched["predicted_ms"], searched["inherited_miou"]) == (point.predicted_ms, point.miou)
        assert pair["latency_ratio"] == pytest.approx(searched["measured_ms"] / baseline["measured_ms"])
        assert searched["macs"] == costs.genotype_macs(Genotype.from_key(searched["key"]))
        for split, field in (("val", "standalone_miou"), ("test", "standalone_test_miou")):
            alone, mine = baseline[field]["per_seed"], searched[field]["per_seed"]
            assert len(alone) == len(mine) == 2 and all(0 <= v <= 1 for v in alone + mine)
            paired = [b - a for a, b in zip(alone, mine)]
            assert pair[f"{split}_miou_difference"]["per_seed"] == pytest.approx(paired)
            assert pair[f"{split}_miou_difference"]["mean"] == pytest.approx(sum(paired) / 2)
            assert pair[f"{split}_miou_difference"]["std"] == pytest.approx(abs(paired[0] - paired[1]) / 2 ** 0.5)
            differences[split] += paired if pair["equal_latency"] else []
        for key in (baseline["key"], searched["key"]):
            assert all((trained_folder(config.paths, key, i) / "weights.pt").exists() for i in (0, 1))
    equal = sum(pair["equal_latency"] for pair in result["pairs"])
    assert result["pairs_at_equal_latency"] == equal
    for split in ("val", "test"):
        overall = result[f"{split}_miou_difference"]
        assert overall is None if not equal else overall["per_seed"] == pytest.approx(differences[split])


def test_a_front_that_stops_below_a_design_is_said_not_to_reach_it(quickstart: str, run_args: list[str]) -> None:
    """Issue 35: the front stops at 5.63 ms, the hand-made designs measure 7.32 and 5.80 ms: the first pair is not at
    equal latency (the note gives the gap), the second is; the difference over all pairs is the second's only, and
    the report flags the first."""
    config = load(quickstart, [*run_args, "audit.enabled=true", "audit.seeds=1"])
    slow, near, best = handmade("small"), handmade("small", "k3_e3_g1"), sample("small", 5)
    front = pd.DataFrame({"key": [best.key], "miou": [0.4], "latency_ms": [5.63], "predicted_ms": [5.5]})
    pairs = [Pair("k3_e6_g1", slow, 7.32, best, 5.63), Pair("k3_e3_g1", near, 5.80, best, 5.63)]
    scores = {(slow.key, 0): {"val": 0.30}, (near.key, 0): {"val": 0.28}, (best.key, 0): {"val": 0.35}}
    result = summary(config, front, pairs, scores)
    far, close = result["pairs"]
    assert far["equal_latency"] is False and far["latency_gap_ms"] == pytest.approx(5.63 - 7.32)
    assert far["note"] == ("not reached: no front point measured within 5% of the hand-made design's 7.32 ms; the "
                           "nearest takes 5.63 ms (-1.69 ms): not a comparison at equal latency")
    assert close["equal_latency"] is True and "note" not in close
    assert result["pairs_at_equal_latency"] == 1
    assert result["val_miou_difference"]["per_seed"] == pytest.approx([0.35 - 0.28])
    page = baseline_table(json.loads(json.dumps(result)))
    assert "not reached: no front point measured within 5% of the hand-made design&#x27;s 7.32 ms" in page and "ratio 0.77, not reached (-1.69 ms)" in page and "ratio 0.97, equal" in page
    assert "Over the 1 of 2 pairs at equal measured latency" in page
    none = summary(config, front, pairs[:1], scores)
    assert none["val_miou_difference"] is None and "No pair is at equal measured latency (within ±5 %)" in \
        baseline_table(none)
