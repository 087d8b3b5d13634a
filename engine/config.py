"""Experiment configuration: YAML files validated by pydantic, with `a.b=value` overrides from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spaces.space import SKELETONS


class ConfigError(ValueError):
    """A configuration problem, worded for one line: the file, the key path and what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpaceConfig(_Strict):
    skeleton: str = "small"
    width: float = Field(1.0, gt=0, le=4)
    num_classes: int = Field(19, ge=1)
    input_size: tuple[int, int] = (1024, 2048)

    @field_validator("skeleton")
    @classmethod
    def _known_skeleton(cls, value: str) -> str:
        if value not in SKELETONS:
            raise ValueError(f"unknown skeleton {value!r}; known: {', '.join(SKELETONS)}")
        return value

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 32:
            raise ValueError(f"input size {list(value)} is below 32 pixels")
        return value


class ExperimentConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    space: SpaceConfig = SpaceConfig()
    samples: int = Field(32, ge=1, description="random genotypes surveyed by the space stage")
    runs_dir: Path = Path("runs")

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
        tree = node
    tree[leaf] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides; values are parsed as YAML scalars or lists."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        _set(tree, key.strip(), yaml.safe_load(raw))
    return tree


def load(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate an experiment; any problem raises ConfigError with a one-line message."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    apply_overrides(tree, overrides or [])
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None
