"""Inherited-weight evaluation and stand-alone training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.config import DataConfig, TrainConfig
from engine.data.splits import val_set
from engine.evaluation.inherited import InheritedEvaluator, evaluate, load_batches, recalibrate_batchnorm
from engine.stages.baseline import handmade
from engine.training import checkpoint
from engine.training.distributed import World
from engine.training.standalone import initial_network, train_standalone
from spaces import Supernet, build, sample
from spaces.candidates import InvertedResidual

CPU = World(0, 1, 0, torch.device("cpu"))
DATA = DataConfig(synthetic_size=(48, 96), crop=(48, 96), synthetic_train=8, synthetic_val=4)


def test_recalibrated_statistics_are_the_exact_averages() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    batches = [torch.randn(2, 3, 5, 5) * (i + 1) + i for i in range(3)]
    recalibrate_batchnorm(model, batches, torch.device("cpu"))
    features = [model[0](b) for b in batches]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in features])
    variances = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in features])
    assert torch.allclose(model[1].running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(model[1].running_var, variances.mean(0), atol=1e-4)
    assert not model.training and model[1].momentum == 0.1


def test_inherited_evaluator_scores_and_caches(tmp_path: Path) -> None:
    torch.manual_seed(0)
    supernet = Supernet("small", width=0.25, num_classes=11).eval()
    batches = load_batches(val_set(DATA), None, 2)
    cache = tmp_path / "inherited.jsonl"
    evaluator = InheritedEvaluator({"small": supernet}, batches, batches, 11, torch.device("cpu"), cache)
    genotype = sample("small", 0)
    first = evaluator.score(genotype)
    assert 0.0 <= first["miou"] <= 1.0 and len(first["iou"]) == 11
    direct = evaluate(build_and_copy(supernet, genotype, batches), batches, 11, torch.device("cpu"))
    assert abs(direct["miou"] - first["miou"]) < 1e-9
    reloaded = InheritedEvaluator({"small": supernet}, batches, batches, 11, torch.device("cpu"), cache)
    assert genotype.key in reloaded.scores and reloaded.score(genotype) == first
    assert len(cache.read_text().splitlines()) == 1
    json.loads(cache.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the cache is not JSON"))
    untouched = Supernet("small", width=0.25, num_classes=11)
    untouched.load_state_dict(supernet.state_dict())
    evaluator.score(sample("small", 1))
    assert all(torch.equal(a, b) for a, b in zip(supernet.state_dict().values(), untouched.state_dict().values()))


def build_and_copy(supernet: Supernet, genotype, batches) -> nn.Module:
    subnet = build(genotype, width=0.25, num_classes=11)
    subnet.load_state_dict(supernet.extract(genotype).state_dict())
    recalibrate_batchnorm(subnet, [images for images, _ in batches], torch.device("cpu"))
    return subnet


def test_standalone_training_writes_weights_and_reuses_them(tmp_path: Path) -> None:
    settings = TrainConfig(steps=3, batch_size=4, lr=0.01, checkpoint_every=2, log_every=1)
    genotype = sample("small", 2)
    trained = train_standalone(genotype, DATA, settings, tmp_path / "net", CPU, width=0.25, seed=1)
    saved = checkpoint.load(tmp_path / "net" / "weights.pt")
    assert saved["genotype"] == genotype.key
    again = train_standalone(genotype, DATA, settings, tmp_path / "net", CPU, width=0.25, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), again.state_dict().values()))
    supernet = Supernet("small", width=0.25, num_classes=11)
    inherited = train_standalone(genotype, DATA, settings.model_copy(update={"steps": 1}), tmp_path / "from-super",
                                 CPU, width=0.25, supernet=supernet)
    assert inherited.head.classifier.out_channels == 11


def test_a_network_from_scratch_starts_with_identity_residual_blocks_unless_told_otherwise() -> None:
    genotype = handmade("small", "k3_e6_g1")  # residual blocks within stages, projections where stages change
    zeroed = initial_network(genotype, 0.25, 11, seed=3, zero_residual=True).eval()
    release = initial_network(genotype, 0.25, 11, seed=3).eval()
    blocks = [(a, b) for a, b in zip(zeroed.layers, release.layers) if isinstance(a, InvertedResidual)]
    assert {a.residual for a, _ in blocks} == {True, False}
    for a, b in blocks:
        x = torch.randn(2, a.body[0].in_channels, 8, 16)
        if a.residual:
            assert torch.equal(a(x), x) and not torch.equal(b(x), x)  # the identity at the start
        else:
            assert torch.equal(a(x), b(x))  # a projection is left as the release initialises it
    assert initial_network(genotype, 0.25, 11, seed=3, zero_residual=True).layers[1].body[-1].weight.abs().sum() == 0
    assert TrainConfig().zero_init_residual and not TrainConfig(zero_init_residual=False).zero_init_residual


def test_the_cache_keeps_an_absent_class_as_null_and_reads_it_as_nan(tmp_path: Path) -> None:
    """Issue 35: strict JSON lines (null, not NaN); a line cut by a kill is scored again."""
    cache = tmp_path / "inherited.jsonl"
    cache.write_text('{"key": "k", "miou": 0.5, "pixel_accuracy": 0.9, "iou": [0.5, null]}\n{"key": "cut", "mi')
    scores = InheritedEvaluator({}, [], [], 2, torch.device("cpu"), cache).scores
    assert list(scores) == ["k"] and scores["k"]["iou"][0] == 0.5 and math.isnan(scores["k"]["iou"][1])
