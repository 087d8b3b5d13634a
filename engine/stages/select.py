"""Stage select: pick networks from the front: the highest mIoU under each latency budget, and the knee, by
measured latency.

Only front points with a measurement (measured_ms, the search's `latency.statistic`) are picked: a front point left
unmeasured (search.measure_limit spent) is named in the notes. When no front point is measured (measure_limit 0:
the search ran on predictions alone) the picks are made on predicted latency and the notes say so.

A budget is a number of ms (`selection.budgets_ms`: the highest-mIoU front point within it) or a position along the
front's range of measured latency (`selection.budgets_span`: 0 the fastest point, 1 the slowest; the front point
nearest that latency, so a position that falls in a gap between front points does not repeat the point below it), for a
device whose speed is not known in advance. The
knee is the front point farthest from the straight line through the front's two ends, both objectives scaled to [0, 1]
over the front (the point where trading latency for mIoU stops paying off). A budget that no front point meets is
reported and skipped. Writes runs/<name>/selected/selection.json (label, key, budget; the notes) and
selected/<label>/genotype.json.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from engine.files import write_json, write_text
from engine.paths import ARTEFACTS as A
from engine.runner import Context, Stage
from spaces import Genotype

log = logging.getLogger(__name__)


def under_budget(front: pd.DataFrame, budget_ms: float) -> pd.Series | None:
    """The highest-mIoU front row whose latency is within the budget (None when none is)."""
    fits = front[front.latency_ms <= budget_ms]
    return None if fits.empty else fits.loc[fits.miou.idxmax()]


def nearest(front: pd.DataFrame, place_ms: float) -> pd.Series:
    """The front row whose latency is nearest `place_ms` (the faster of two as near)."""
    ordered = front.sort_values("latency_ms", kind="stable")
    return ordered.loc[(ordered.latency_ms - place_ms).abs().idxmin()]


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


def span_budgets(front: pd.DataFrame, fractions: dict[str, float]) -> dict[str, float]:
    """Each label's budget in ms, (1 - f) x fastest + f x slowest over the front's latencies (exact at 0 and 1)."""
    fastest, slowest = float(front.latency_ms.min()), float(front.latency_ms.max())
    return {label: (1 - fraction) * fastest + fraction * slowest for label, fraction in fractions.items()}


def pick(front: pd.DataFrame, budgets_ms: dict[str, float], with_knee: bool,
         budgets_span: dict[str, float] | None = None) -> tuple[list[dict], list[str]]:
    """(picked networks as {label, key, budget_ms} and, placed by `budgets_span`, budget_span; notes on budgets no
    front point meets)."""
    picked, notes = [], []
    spans = budgets_span or {}
    budgets = {**budgets_ms, **(span_budgets(front, spans) if spans and not front.empty else {})}
    for label, budget in sorted(budgets.items(), key=lambda item: item[1]):
        row = nearest(front, budget) if label in spans else under_budget(front, budget)
        if row is None:
            notes.append(f"no front point within the {label} budget of {budget:g} ms (fastest: "
                         f"{front.latency_ms.min():.2f} ms)")
        else:
            span = {"budget_span": spans[label]} if label in spans else {}
            picked.append({"label": label, "key": row.key, "budget_ms": budget, **span})
    row = knee(front) if with_knee else None
    if row is not None:
        picked.append({"label": "knee", "key": row.key, "budget_ms": None})
    return picked, notes


def measured(front: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The front points to pick from, with latency_ms their measurement, and the notes on those left out."""
    has = front.measured_ms.notna()
    if not has.any():
        return front, ["no front point is measured (search.measure_limit 0): picked by predicted latency; the "
                       "retrain stage measures the picks"]
    notes = [f"front point {key} is not measured (search.measure_limit spent): not picked" for key in front.key[~has]]
    return front[has].assign(latency_ms=front.measured_ms[has]), notes


def run(ctx: Context) -> None:
    """The selection stage (module docstring)."""
    paths = ctx.paths
    front, skipped = measured(pd.read_csv(paths.front))
    selection = ctx.config.selection
    picked, notes = pick(front, selection.budgets_ms, selection.knee, selection.budgets_span)
    notes = skipped + notes
    for entry in picked:
        write_text(paths.picked_genotype(entry["label"]), Genotype.from_key(entry["key"]).to_json())
    for note in notes:
        log.warning(note)
    write_json(paths.selection, {"picked": picked, "notes": notes})


STAGE = Stage("select", run, reads=(A.front,), writes=(A.selection, A.picked_genotype("*")),
              config=("selection",))
