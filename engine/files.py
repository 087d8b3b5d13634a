"""Atomic writes: every artefact of a run is written to a temporary file beside it, flushed, then renamed over the
target, so a run killed mid-write leaves the old file or none, never half of one. Reading back: JSON (None when absent
or cut short), a setting by its dotted name (`setting`), and the settings that made a stage's outputs (`made_with`)."""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import pandas as pd


@contextmanager
def atomic(path: Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside `path`; on a clean exit it is flushed to disk and renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open(mode, **({} if "b" in mode else {"newline": ""})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    with atomic(path) as handle:
        handle.write(text)
    return path


def write_json(path: Path, value: Any, **options: Any) -> Path:
    """`value` as strict JSON: NaN and infinities become null (JSON has neither), so any parser reads the file."""
    return write_text(path, json.dumps(finite(value), indent=1, allow_nan=False, **options))


def finite(value: Any) -> Any:
    """`value` with NaN and infinities (also numpy scalars') as None, recursively through dicts, lists and tuples."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()  # a numpy scalar, as Python's
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def read_json(path: Path) -> Any:
    """The JSON value in `path`, or None when the file is absent or not valid JSON (a record to be redone)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def setting(tree: Any, dotted: str, default: Any = None) -> Any:
    """tree["a"]["b"] for "a.b", or tree["a.b"] where a stage record keeps a section under its dotted name
    ("latency.statistic"); `default` when a level is absent."""
    if isinstance(tree, dict) and dotted in tree:
        return tree[dotted]
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return default
        tree = tree[part]
    return tree


def made_with(record: Path, dotted: str) -> Any:
    """A setting as a stage's record (runs/<name>/stages/<stage>.json, engine/runner.py) has it: what made the stage's
    outputs, where the run's config.yaml is the latest invocation's; None without the record or that setting."""
    recorded = read_json(record)
    return setting(recorded.get("settings") if isinstance(recorded, dict) else None, dotted)


def write_csv(path: Path, table: "pd.DataFrame") -> Path:
    with atomic(path) as handle:
        table.to_csv(handle, index=False)
    return path
