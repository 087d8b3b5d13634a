"""The weight-sharing supernet: one path per forward, exact extraction, per-candidate weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spaces import Supernet, build, count_params, sample
from spaces.supernet import ChoiceLayer


def _randomise_batchnorm(module: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)


@pytest.fixture(scope="module", params=["small", "large", "xlarge"])
def supernet(request) -> Supernet:
    torch.manual_seed(0)
    net = Supernet(request.param, width=0.5, num_classes=11)
    _randomise_batchnorm(net, 0)
    return net.eval()


def test_extracted_subnet_equals_the_supernet_path(supernet: Supernet) -> None:
    x = torch.randn(2, 3, 96, 192)
    for seed in range(6):
        genotype = supernet.sample(seed)
        subnet = supernet.extract(genotype)
        assert type(subnet) is type(build(genotype))
        with torch.no_grad():
            expected = supernet(x, genotype)
            got = subnet(x)
        assert got.shape == (2, 11, 96, 192)
        assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_extracted_subnet_is_an_ordinary_network(supernet: Supernet) -> None:
    genotype = supernet.sample(11)
    subnet = supernet.extract(genotype)
    fresh = build(genotype, width=0.5, num_classes=11)
    assert subnet.state_dict().keys() == fresh.state_dict().keys()
    fresh.load_state_dict(subnet.state_dict())
    assert count_params(fresh) == count_params(subnet)
    with torch.no_grad():
        next(subnet.parameters()).add_(1.0)
    assert not torch.equal(next(subnet.parameters()), next(supernet.parameters()))


def test_each_layer_holds_every_candidate_with_its_own_weights(supernet: Supernet) -> None:
    layers = [m for m in supernet.modules() if isinstance(m, ChoiceLayer)]
    assert len(layers) == len(supernet.sample(0).choices)
    assert all(len(layer.candidates) == 13 for layer in layers)
    params = [{id(p) for p in c.parameters()} for c in layers[3].candidates]
    assert all(not (a & b) for i, a in enumerate(params) for b in params[i + 1:])


def test_a_training_step_touches_only_the_sampled_path() -> None:
    torch.manual_seed(0)
    supernet = Supernet("small", width=0.25, num_classes=5).train()
    genotype = supernet.sample(3)
    supernet(torch.randn(2, 3, 64, 128), genotype).sum().backward()
    for layer, choice in zip(supernet.layers, genotype.choices):
        for index, candidate in enumerate(layer.candidates):
            grads = [p.grad for p in candidate.parameters()]
            if index == choice:
                assert all(g is not None for g in grads)
            else:
                assert all(g is None for g in grads)


def test_genotype_of_another_skeleton_is_refused() -> None:
    supernet = Supernet("small", width=0.25)
    with pytest.raises(ValueError, match="genotype of skeleton 'large' given to a 'small' supernet"):
        supernet(torch.randn(1, 3, 64, 64), sample("large", 0))
