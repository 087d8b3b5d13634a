"""The supernet sampling rules: what each step trains, reproducibly."""

from __future__ import annotations

import pytest

from engine.training.sampling import SAMPLING, Rule, passes_per_step, step_paths
from spaces import largest, smallest
from spaces.space import skeleton, space_of


@pytest.mark.parametrize("rule", sorted(SAMPLING))
def test_a_step_draws_the_same_paths_every_time_and_other_paths_at_another_step(rule: str) -> None:
    keys = [[p.genotype.key for p in step_paths("small", rule, 7, step)] for step in (3, 3, 5)]
    assert keys[0] == keys[1] != keys[2]
    assert len(keys[0]) == passes_per_step("small", rule)


def test_fair_trains_every_candidate_of_every_layer_once_per_step() -> None:
    count, layers = len(space_of("small").candidates), skeleton("small").num_layers
    for step in range(4):
        paths = step_paths("small", "fair", 0, step)
        assert len(paths) == count and not any(p.teacher for p in paths)
        for layer in range(layers):
            assert sorted(p.genotype.choices[layer] for p in paths) == list(range(count))


def test_sandwich_rare_holds_the_extremes_on_one_step_in_k_at_the_same_cost() -> None:
    rule = Rule(paths=2, extremes_every=3)
    extremes = {largest("small"), smallest("small")}
    for step in range(9):
        paths = step_paths("small", "sandwich_rare", 0, step, rule)
        held = {p.genotype for p in paths} & extremes
        assert len(paths) == 4
        assert (held == extremes and paths[0].teacher) if step % 3 == 0 else (not held and not paths[0].teacher)


def test_an_unknown_rule_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: uniform, sandwich, sandwich_rare, fair"):
        step_paths("small", "greedy", 0, 0)
