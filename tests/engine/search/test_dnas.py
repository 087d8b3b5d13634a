"""The differentiable search: mixed layers, the expected cost, the temperature schedule, the sweep and its resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import engine.search.dnas as dnas
from engine.config import load
from engine.errors import ConfigError, TrainingDiverged
from engine.latency.model import space_costs
from engine.run import main
from engine.search.dnas import Architecture, DnasSearch, expected_cost, relative_costs, temperature_at
from engine.training import checkpoint
from spaces import Supernet

TINY = ["space.input_size=[64,128]", "data.synthetic_size=[64,128]", "data.crop=[64,128]", "data.synthetic_train=16",
        "search.dnas.warmup_steps=2", "search.dnas.steps=4", "search.dnas.batch_size=2",
        "search.dnas.checkpoint_every=2", "search.dnas.arch_lr=0.2"]


def tiny_supernet() -> Supernet:
    torch.manual_seed(0)
    return Supernet("small", width=0.25, num_classes=3).eval()


def test_mixed_forward_at_near_zero_temperature_is_the_argmax_path() -> None:
    supernet = tiny_supernet()
    architecture = Architecture(len(supernet.layers), len(supernet.layers[0].candidates))
    with torch.no_grad():
        architecture.logits.normal_(0, 1)
        x = torch.randn(2, 3, 64, 96)
        mixed = supernet.mix(x, architecture.weights(2, 1e-4, noise=False))
        path = supernet(x, architecture.genotype("small"))
        uniform = supernet.mix(x, architecture.weights(2, 1e4, noise=False))
    assert torch.allclose(mixed, path, atol=1e-5)
    assert not torch.allclose(uniform, path, atol=1e-3)  # a hot mixture is not the argmax path


def test_gumbel_samples_are_one_hot_at_near_zero_temperature_per_image() -> None:
    architecture = Architecture(3, 5)
    torch.manual_seed(1)
    weights = architecture.weights(64, 1e-6)
    for layer in weights:  # a draw whose two best perturbed logits tie within ~1e-6 may still be mixed
        assert (layer.max(-1).values > 0.999).float().mean() > 0.95
    assert len({tuple(w.argmax(-1).tolist()) for w in weights}) > 1  # images draw their own candidates


def test_expected_cost_is_differentiable_in_the_logits() -> None:
    costs = torch.rand(4, 6, dtype=torch.float64)

    def cost(logits: torch.Tensor) -> torch.Tensor:
        weights = list(torch.softmax(logits / 0.7, -1).unsqueeze(0).expand(3, -1, -1).unbind(1))
        return expected_cost(weights, costs)

    logits = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cost, (logits,))
    architecture = Architecture(4, 6)
    expected_cost(architecture.weights(8, 1.0), costs.float()).backward()
    grad = architecture.logits.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # raising the logit of a layer's cheapest candidate lowers the expected cost: its gradient is the most negative
    cheapest = costs.argmin(1)
    zero = torch.zeros(4, 6, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(cost(zero), [zero])
    assert torch.equal(g.argmin(1), cheapest)


def test_relative_costs_make_the_uniform_mixture_cost_one() -> None:
    costs = np.array([[1.0, 3.0], [0.0, 4.0]])
    relative = relative_costs(costs, torch.device("cpu"))
    uniform = [torch.full((1, 2), 0.5), torch.full((1, 2), 0.5)]
    assert float(expected_cost(uniform, relative)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="costs 0"):
        relative_costs(np.zeros((2, 2)), torch.device("cpu"))


@pytest.mark.parametrize("schedule", ["exponential", "linear", "constant"])
def test_temperature_schedule_goes_from_start_to_end(quickstart, schedule: str) -> None:
    config = load(quickstart, [f"search.dnas.schedule={schedule}", "search.dnas.temperature=[4.0,0.5]",
                               "search.dnas.steps=10"])
    values = [temperature_at(config.search.dnas, r) for r in range(10)]
    assert values[0] == pytest.approx(4.0)
    assert values[-1] == pytest.approx(4.0 if schedule == "constant" else 0.5)
    assert all(a >= b for a, b in zip(values, values[1:]))


def sweep(quickstart: str, tmp_path: Path, lambdas: str, extra: list[str] = ()) -> tuple[dict, list[dict]]:
    config = load(quickstart, [f"runs_dir={tmp_path}", *TINY, f"search.dnas.lambdas={lambdas}", *extra])
    costs = space_costs(config).tables[config.space.skeleton].macs.astype(float)
    search = DnasSearch(config, costs, torch.device("cpu"), config.paths.dnas_dir)
    return search.run()


def test_a_high_lambda_finds_a_cheaper_genotype(quickstart, tmp_path: Path) -> None:
    warm, (free, costly) = sweep(quickstart, tmp_path, "[0.0,5.0]")
    assert costly["relative_cost"] < free["relative_cost"]
    assert warm["steps"] == 2 and free["rounds"] == 4
    log = pd.read_csv(tmp_path / "quickstart" / "dnas" / "lambda_5" / "log.csv")
    assert log["round"].tolist() == [4] and log["entropy"].iloc[-1] < np.log(13)


def test_a_killed_search_resumes_to_the_same_genotype(quickstart, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _, (whole,) = sweep(quickstart, tmp_path / "whole", "[3.0]")
    calls, real = {"n": 0}, dnas.arch_step

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the third round: the checkpoint of round 2 is on disk
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(dnas, "arch_step", dying)
    with pytest.raises(KeyboardInterrupt):
        sweep(quickstart, tmp_path / "killed", "[3.0]")
    monkeypatch.setattr(dnas, "arch_step", real)
    assert (tmp_path / "killed" / "quickstart" / "dnas" / "lambda_3" / "checkpoint.pt").exists()
    _, (resumed,) = sweep(quickstart, tmp_path / "killed", "[3.0]")
    assert resumed["key"] == whole["key"]
    assert np.allclose(resumed["probabilities"], whole["probabilities"], atol=1e-4)


def test_a_nan_loss_stops_the_search_and_keeps_the_last_good_checkpoint(quickstart, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls, real = {"n": 0}, dnas.arch_step

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        found = real(*args, **kwargs)
        return {**found, "loss": float("nan")} if calls["n"] == 3 else found

    monkeypatch.setattr(dnas, "arch_step", poisoned)
    folder = tmp_path / "quickstart" / "dnas"
    with pytest.raises(TrainingDiverged, match=r"not finite at step 3 \(loss = nan\).* is kept; lower search.dnas"):
        sweep(quickstart, tmp_path, "[1.0]")
    assert checkpoint.load(folder / "lambda_1" / "checkpoint.pt")["step"] == 2
    assert not (folder / "lambda_1" / "result.json").exists()
    assert pd.read_csv(folder / "warmup" / "log.csv")["step"].tolist() == [2]


def test_lookup_cost_with_an_agent_is_a_config_error(quickstart) -> None:
    with pytest.raises(ConfigError, match="search.dnas.cost lookup"):
        load(quickstart, ["search.strategies=[evolution,dnas]", "search.dnas.cost=lookup", "latency.device=agent"])


def test_run_with_both_strategies_reports_the_sweep(fast, quickstart, tmp_path: Path) -> None:
    overrides = [f"runs_dir={tmp_path}", f"latency.store={tmp_path / 'store'}", *fast, *TINY,
                 "search.strategies=[evolution,dnas]", "search.dnas.lambdas=[0.0,1.0]", "search.dnas.cost=lookup"]
    assert main([quickstart, *overrides, "--stages", "space,supernet,latency,search,report"]) == 0
    run = tmp_path / "quickstart"
    table = pd.read_csv(run / "dnas" / "dnas.csv")
    assert table["lambda"].tolist() == [0.0, 1.0] and table.measured_ms.gt(0).all() and table.miou.between(0, 1).all()
    evaluations = pd.read_csv(run / "evaluations.csv")
    evaluations = evaluations[evaluations.reference.isna()]  # the trials, without the released networks' rows
    assert set(table.key) <= set(evaluations.key)
    assert set(evaluations.strategy) == {"evolution", "dnas"} or set(table.key) & set(evaluations.key[
        evaluations.strategy == "evolution"])
    cost = json.loads((run / "search_cost.json").read_text())
    assert cost["dnas"]["lookup_s"] > 0 and cost["evolution"]["supernet_s"] > 0 and cost["evolution"]["search_s"] > 0
    assert (run / "dnas" / "lookup.json").exists()
    html = (run / "report.html").read_text()
    assert "Search strategies: evolution and DNAS" in html and "Search cost" in html
