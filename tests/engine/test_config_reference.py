"""docs/config.md is what engine.config_reference generates from the schema, and the schema describes every setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args, get_origin

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from engine import config_reference as reference
from engine.config import ExperimentConfig, TrainConfig, one_of

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "config.md"
REGENERATE = "python -m engine.config_reference > docs/config.md"


def nested(annotation: object, suffix: str = "") -> tuple[type[BaseModel], str] | None:
    """(model, "") when a field holds a section, (model, "[]") when it holds a list of entries of one, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, suffix
    for arg in get_args(annotation):
        found = nested(arg, suffix + ("[]" if get_origin(annotation) is list else ""))
        if found:
            return found
    return None


def schema_fields(model: type[BaseModel] = ExperimentConfig, prefix: str = "") -> dict[str, FieldInfo]:
    """Every field of the schema by dotted path, sections included, walked here independently of the generator."""
    found = {}
    for name, field in model.model_fields.items():
        found[prefix + name] = field
        inner = nested(field.annotation)
        if inner:
            found.update(schema_fields(inner[0], f"{prefix}{name}{inner[1]}."))
    return found


def leaves() -> dict[str, FieldInfo]:
    """The settings of the schema: its fields that are not sections of their own."""
    fields = schema_fields()
    return {path: field for path, field in fields.items() if not any(other.startswith(path + ".") for other in fields)}


def page_row(text: str, path: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(f"| `{path}`")]
    assert rows, f"docs/config.md has no row for {path}"
    return rows[-1]  # a user setting's row in its section (the first table lists it without the allowed values)


@pytest.fixture(scope="module")
def page() -> str:
    return PAGE.read_text()


def first_difference(old: str, new: str) -> str:
    pairs = zip(old.splitlines() + [""], new.splitlines() + [""])
    line, (was, now) = next((i, pair) for i, pair in enumerate(pairs, 1) if pair[0] != pair[1])
    return f"line {line}: {was[:160]!r} should be {now[:160]!r}"


def test_docs_config_md_is_generated_from_the_schema(page: str) -> None:
    generated = reference.render()
    fresh = page == generated
    assert fresh, f"docs/config.md is stale ({first_difference(page, generated)}): run `{REGENERATE}`"


def test_every_setting_of_the_schema_is_on_the_page(page: str) -> None:
    paths = leaves()
    assert set(paths) == {setting.path for setting in reference.settings()}
    assert len(paths) > 100
    for path in paths:
        page_row(page, path)


def test_every_field_and_section_is_described() -> None:
    for path, field in leaves().items():
        assert (field.description or "").strip(), f"{path} has no description: add one in engine/config.py"
    for section in reference.sections():
        assert reference.intro(section)


def test_a_setting_without_a_description_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TrainConfig.model_fields["lr"], "description", None)
    with pytest.raises(reference.MissingDescription, match="supernet.lr"):
        reference.render()


def test_a_changed_description_makes_the_page_stale(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ExperimentConfig.model_fields["seed"], "description", "a changed description")
    assert reference.render() != page


def test_user_settings_exist_and_are_marked(page: str) -> None:
    paths = leaves()
    assert 10 <= len(reference.USER_SETTINGS) <= 16
    for path in reference.USER_SETTINGS:
        assert path in paths, f"USER_SETTINGS names {path}, which is no setting"
        assert "★" in page_row(page, path).split("|")[1]
    assert "★" not in page_row(page, "supernet.lr")


def test_operational_settings_are_marked(page: str) -> None:
    for path in ("supernet.checkpoint_every", "retrain.train.num_workers", "data.cache_mb", "latency.agent.url",
                 "search.workers", "runs_dir"):
        assert "⚙" in page_row(page, path).split("|")[1], path
    for path in ("supernet.steps", "latency.backend", "search.population"):
        assert "⚙" not in page_row(page, path).split("|")[1], path


def test_registry_settings_list_their_registry(page: str) -> None:
    registered = {path: one_of(field) for path, field in leaves().items() if one_of(field)}
    registered.update(reference.REGISTRIES)
    assert {"data.kind", "latency.backend", "supernet.optimizer", "supernet.schedule", "supernet.sampling",
            "search.algorithm", "search.accuracy_surrogate.kinds", "space.skeleton"} <= set(registered)
    for path, registry in registered.items():
        names = registry.names()
        assert names
        for name in names:
            assert f"`{name}`" in page_row(page, path), (path, name)


def test_defaults_are_those_of_their_path(page: str) -> None:
    assert "| `1000` |" in page_row(page, "supernet.steps")
    assert "| `500` |" in page_row(page, "retrain.train.steps")
    validated = ExperimentConfig.model_validate({"name": "x"}).model_dump(mode="json")
    derived = {"name", "space.num_classes"}  # required; filled from the data by a validator
    for setting in reference.settings():
        if setting.path in derived or "[]" in setting.path:
            continue
        value = validated
        for part in setting.path.split("."):
            value = value[part]
        assert reference.yaml_text(setting.default) == reference.yaml_text(value), setting.path


def test_table_cells_escape_pipes(page: str) -> None:
    row = page_row(page, "latency.device")
    assert "local \\| agent" in row
    assert len(row.replace("\\|", "").split("|")) == 7


def test_importing_the_generator_loads_no_torch() -> None:
    code = "import sys, engine.config_reference; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
