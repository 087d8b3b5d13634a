"""The layout: imports point down only (between the top-level packages and between the levels of engine/), and
docs/ARCHITECTURE.md lists every stage with what the runner knows it reads and writes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine.run import STAGES

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = {"spaces": 0, "predictors": 1, "hardware": 1, "engine": 2}
LEVELS = {  # engine's modules and subpackages, bottom up: a module may import its own level and those below it
    "engine.errors": 0, "engine.paths": 0, "engine.files": 0, "engine.config": 0, "engine.cluster": 0,
    "engine.data.classes": 0,
    "engine.data": 1, "engine.training": 2, "engine.evaluation": 3, "engine.metrics": 3, "engine.latency": 4,
    "engine.search": 5, "engine.report": 6, "engine.runner": 7, "engine.preflight": 7, "engine.stages": 8,
    "engine.run": 9, "engine.plan": 9, "engine.cli": 10, "engine.config_reference": 0,
}


def part(module: str) -> str:
    """The entry of LEVELS that holds `module` (the longest prefix)."""
    return max((name for name in LEVELS if module == name or module.startswith(name + ".")), key=len)


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


SOURCES = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    here = module_of(path)
    package = here.split(".")[0]
    for target in imports(path):
        top = target.split(".")[0]
        if top not in PACKAGES:
            continue
        assert top == package or PACKAGES[top] < PACKAGES[package], f"{here} imports {target}"
        if package == "engine" and top == "engine" and target != "engine":
            assert LEVELS[part(target)] <= LEVELS[part(here)], f"{here} ({part(here)}) imports {target}"


def test_architecture_lists_every_stage_with_its_artefacts() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for stage in STAGES:
        assert stage.name in rows, stage.name
        for artefact in stage.writes:
            assert f"`{artefact}`" in rows[stage.name], (stage.name, artefact)
