"""Genotypes: one candidate index per searchable layer plus the skeleton name, with a stable key and JSON form."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Sequence

from spaces.space import skeleton, space_of

_KEY_SEPARATOR = ":"


@dataclass(frozen=True)
class Genotype:
    """An architecture of a search space. Construction validates it; invalid ones raise ValueError."""

    skeleton: str
    choices: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        frame = skeleton(self.skeleton)
        n_candidates = len(space_of(self.skeleton).candidates)
        if len(self.choices) != frame.num_layers:
            raise ValueError(f"genotype for skeleton {self.skeleton!r} needs {frame.num_layers} choices, "
                             f"got {len(self.choices)}")
        for layer, choice in enumerate(self.choices):
            if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < n_candidates:
                raise ValueError(f"genotype layer {layer}: candidate index {choice!r} is out of range "
                                 f"0..{n_candidates - 1} of space {frame.space!r}")

    @property
    def key(self) -> str:
        """Stable string key, e.g. 'small:0-12-12-...'; used for caching, trial params and file names."""
        return self.skeleton + _KEY_SEPARATOR + "-".join(map(str, self.choices))

    @classmethod
    def from_key(cls, key: str) -> "Genotype":
        name, sep, body = key.partition(_KEY_SEPARATOR)
        if not sep or not body:
            raise ValueError(f"genotype key {key!r} is not of the form 'skeleton:i-j-k-...'")
        try:
            choices = tuple(int(part) for part in body.split("-"))
        except ValueError:
            raise ValueError(f"genotype key {key!r} has a choice that is not an integer") from None
        return cls(name, choices)

    @classmethod
    def from_digits(cls, skeleton_name: str, digits: str) -> "Genotype":
        """From one digit per layer, as HELP and HW-NAS-Bench write FBNet architectures ('7818488874...')."""
        if not str(digits).isdigit():
            raise ValueError(f"architecture {digits!r} is not a string of candidate digits")
        return cls(skeleton_name, tuple(int(d) for d in str(digits)))

    @property
    def names(self) -> list[str]:
        """Candidate names, layer by layer."""
        candidates = space_of(self.skeleton).candidates
        return [candidates[i].name for i in self.choices]

    @classmethod
    def from_names(cls, skeleton_name: str, names: Sequence[str]) -> "Genotype":
        space = space_of(skeleton_name)
        return cls(skeleton_name, tuple(space.index(name) for name in names))

    def to_json(self) -> str:
        return json.dumps({"skeleton": self.skeleton, "choices": list(self.choices), "names": self.names})

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        try:
            data = json.loads(text)
            genotype = cls(data["skeleton"], tuple(data["choices"]))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"not a genotype JSON object ({error}): {text[:80]!r}") from None
        if "names" in data and data["names"] != genotype.names:
            raise ValueError(f"genotype JSON: names {data['names']} disagree with choices {list(genotype.choices)}")
        return genotype

    def __str__(self) -> str:
        return self.key


def sample(skeleton_name: str, rng: random.Random | int | None = None) -> Genotype:
    """A uniformly random genotype of the skeleton."""
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    n_candidates = len(space_of(skeleton_name).candidates)
    layers = skeleton(skeleton_name).num_layers
    return Genotype(skeleton_name, tuple(rng.randrange(n_candidates) for _ in range(layers)))


def extremes(skeletons: tuple[str, ...] | list[str]) -> list[Genotype]:
    """The largest and the smallest genotype of each skeleton, in that order."""
    return [genotype for name in skeletons for genotype in (largest(name), smallest(name))]


def sample_of(skeletons: tuple[str, ...] | list[str], rng: random.Random) -> Genotype:
    """A random genotype of several skeletons: the skeleton uniformly, then its genotype uniformly (one skeleton:
    exactly `sample`, the same random stream)."""
    name = skeletons[0] if len(skeletons) == 1 else rng.choice(list(skeletons))
    return sample(name, rng)


def largest(skeleton_name: str) -> Genotype:
    """The genotype with the most MACs per layer: the biggest kernel and expansion everywhere (sandwich rule)."""
    space = space_of(skeleton_name)
    best = max(range(len(space.candidates)),
               key=lambda i: (space.candidates[i].expansion, space.candidates[i].kernel, -space.candidates[i].groups))
    return Genotype(skeleton_name, (best,) * skeleton(skeleton_name).num_layers)


def smallest(skeleton_name: str) -> Genotype:
    """The genotype with skip in every layer (the smallest path)."""
    space = space_of(skeleton_name)
    skip = next(i for i, c in enumerate(space.candidates) if c.is_skip)
    return Genotype(skeleton_name, (skip,) * skeleton(skeleton_name).num_layers)
