"""Genotypes: stable keys, JSON form, sampling, and clear errors for invalid ones."""

from __future__ import annotations

import random

import pytest

from spaces import SKELETONS, Genotype, largest, sample, smallest


@pytest.mark.parametrize("name", sorted(SKELETONS))
def test_key_and_json_round_trip(name: str) -> None:
    rng = random.Random(7)
    for _ in range(20):
        genotype = sample(name, rng)
        assert Genotype.from_key(genotype.key) == genotype
        assert Genotype.from_json(genotype.to_json()) == genotype
        assert hash(Genotype.from_key(genotype.key)) == hash(genotype)


def test_key_is_stable() -> None:
    genotype = Genotype("small", (0, 12, 12, 12, 3, 3, 12, 12, 7, 11, 5, 1, 11, 11, 11, 8, 11, 10, 10, 10))
    assert genotype.key == "small:0-12-12-12-3-3-12-12-7-11-5-1-11-11-11-8-11-10-10-10"
    assert Genotype.from_names("small", genotype.names) == genotype


def test_sampling_is_seeded_and_covers_the_candidates() -> None:
    assert sample("large", 3) == sample("large", 3)
    assert sample("large", 3) != sample("large", 4)
    seen = {choice for seed in range(50) for choice in sample("large", seed).choices}
    assert seen == set(range(13))
    assert set(largest("small").names) == {"k5_e6_g1"} and set(smallest("small").names) == {"skip"}


@pytest.mark.parametrize("make, message", [
    (lambda: Genotype("small", (0,) * 19), "needs 20 choices, got 19"),
    (lambda: Genotype("large", (0,) * 23), "needs 22 choices, got 23"),
    (lambda: Genotype("small", (0,) * 19 + (13,)), "layer 19: candidate index 13 is out of range 0..12"),
    (lambda: Genotype("small", (-1,) + (0,) * 19), "layer 0: candidate index -1 is out of range"),
    (lambda: Genotype("fbnet_cifar", (9,) * 22), "out of range 0..8 of space 'fbnet'"),
    (lambda: Genotype("small", (0.5,) + (0,) * 19), "layer 0: candidate index 0.5"),
    (lambda: Genotype("medium", (0,) * 20), "unknown skeleton 'medium'"),
    (lambda: Genotype.from_key("small-0-1-2"), "not of the form 'skeleton:i-j-k-...'"),
    (lambda: Genotype.from_key("small:0-a-2"), "not an integer"),
    (lambda: Genotype.from_names("small", ["k7_e1_g1"] * 20), "no candidate 'k7_e1_g1'"),
    (lambda: Genotype.from_json("[1, 2]"), "not a genotype JSON object"),
    (lambda: Genotype.from_json('{"skeleton": "small", "choices": [0]}'), "needs 20 choices, got 1"),
    (lambda: Genotype.from_json('{"skeleton": "small", "choices": ' + str([0] * 20) + ', "names": ["skip"]}'),
     "names .* disagree with choices"),
    (lambda: Genotype.from_digits("fbnet_cifar", "78x8"), "not a string of candidate digits"),
])
def test_invalid_genotypes_raise_value_error_naming_the_problem(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
