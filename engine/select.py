"""Stage 5: pick networks from the front: the highest mIoU under each latency budget, and the knee.

The knee is the front point farthest from the straight line through the front's two ends, both objectives scaled
to [0, 1] over the front (the point where trading latency for mIoU stops paying off). A budget that no front point
meets is reported and skipped. Writes runs/<name>/selected/selection.json (label, key, budget) and
selected/<label>/genotype.json; skipped when selection.json exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from engine.config import ExperimentConfig
from spaces import Genotype


def under_budget(front: pd.DataFrame, budget_ms: float) -> pd.Series | None:
    """The highest-mIoU front row whose predicted latency is within the budget (None when none is)."""
    fits = front[front.latency_ms <= budget_ms]
    return None if fits.empty else fits.loc[fits.miou.idxmax()]


def knee(front: pd.DataFrame) -> pd.Series | None:
    """The knee of a front of at least three points (module docstring)."""
    if len(front) < 3:
        return None
    ordered = front.sort_values("latency_ms")
    points = np.stack([ordered.latency_ms.to_numpy(), ordered.miou.to_numpy()], axis=1)
    span = points.max(axis=0) - points.min(axis=0)
    scaled = (points - points.min(axis=0)) / np.where(span > 0, span, 1.0)
    start, end = scaled[0], scaled[-1]
    direction = (end - start) / max(np.linalg.norm(end - start), 1e-12)
    offsets = scaled - start
    distance = np.abs(offsets[:, 0] * direction[1] - offsets[:, 1] * direction[0])
    return ordered.iloc[int(distance.argmax())]


def pick(front: pd.DataFrame, budgets_ms: dict[str, float], with_knee: bool) -> tuple[list[dict], list[str]]:
    """(picked networks as {label, key, budget_ms}, notes on budgets no front point meets)."""
    picked, notes = [], []
    for label, budget in sorted(budgets_ms.items(), key=lambda item: item[1]):
        row = under_budget(front, budget)
        if row is None:
            notes.append(f"no front point within the {label} budget of {budget:g} ms (fastest: "
                         f"{front.latency_ms.min():.2f} ms)")
        else:
            picked.append({"label": label, "key": row.key, "budget_ms": budget})
    row = knee(front) if with_knee else None
    if row is not None:
        picked.append({"label": "knee", "key": row.key, "budget_ms": None})
    return picked, notes


def run_select(config: ExperimentConfig) -> tuple[Path, list[str]]:
    """The selection stage; returns selected/selection.json and the notes of this call (empty when skipped)."""
    out_dir = config.run_dir / "selected"
    out = out_dir / "selection.json"
    if out.exists():
        return out, []
    front = pd.read_csv(config.run_dir / "front.csv")
    picked, notes = pick(front, config.selection.budgets_ms, config.selection.knee)
    for entry in picked:
        folder = out_dir / entry["label"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "genotype.json").write_text(Genotype.from_key(entry["key"]).to_json())
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"picked": picked, "notes": notes}, indent=1))
    return out, notes
