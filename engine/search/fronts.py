"""Fronts with pymoo: non-dominated sorting, dominance between two sets, hypervolume; objectives all minimised.

Every front of the engine (the search's, the report's, DNAS against the evolution) comes from here, so none is
re-derived by hand: the objective rows are (-mIoU, latency) (`minimised`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.dominator import Dominator
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

POINT_FIELDS = ("predicted_ms", "latency_lower_ms", "latency_upper_ms", "measured_ms", "miou", "macs", "params")
"""A front point's fields (front.csv, front.json) that a picked network's selected/<label>/metrics.json repeats under
the same names: the final prediction with its interval, the search's measurement, the inherited mIoU, the costs."""


def pareto_mask(F: np.ndarray) -> np.ndarray:
    """Rows of F (minimised) that no other row dominates; copies of a front point are on the front too."""
    F = np.asarray(F, dtype=float)
    mask = np.zeros(len(F), dtype=bool)
    if len(F):
        mask[NonDominatedSorting().do(F, only_non_dominated_front=True)] = True
    return mask


def front_mask(miou: Sequence[float], latency_ms: Sequence[float], feasible: Sequence[bool]) -> np.ndarray:
    """The search's front: rows that are feasible and that no other feasible row dominates (mIoU up, latency
    down); tied copies of a front point are on it too."""
    feasible = np.asarray(feasible, dtype=bool)
    mask = np.zeros(len(feasible), dtype=bool)
    rows = np.flatnonzero(feasible)
    mask[rows] = pareto_mask(minimised(np.asarray(miou, dtype=float)[rows], np.asarray(latency_ms, dtype=float)[rows]))
    return mask


def rows_front_mask(rows: Sequence[dict]) -> np.ndarray:
    """front_mask of rows that carry miou, latency_ms and feasible."""
    return front_mask([row["miou"] for row in rows], [row["latency_ms"] for row in rows],
                      [row["feasible"] for row in rows])


def hypervolume(F: np.ndarray, reference: Sequence[float]) -> float:
    """Hypervolume (minimisation) of the points of F that dominate `reference`; 0 when none does."""
    reference = np.asarray(reference, dtype=float)
    F = np.asarray(F, dtype=float).reshape(-1, len(reference))
    inside = F[(F < reference).all(axis=1)]
    if not len(inside):
        return 0.0
    return float(HV(ref_point=reference)(inside))


def minimised(miou: Sequence[float], latency_ms: Sequence[float]) -> np.ndarray:
    """The search's objectives as pymoo minimises them: rows of (-mIoU, latency)."""
    return np.stack([-np.asarray(miou, dtype=float), np.asarray(latency_ms, dtype=float)], axis=1)


def dominated_by(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each row of `points`, whether a row of `others` dominates it (every objective minimised)."""
    points, others = np.atleast_2d(points), np.atleast_2d(others)
    if others.size == 0 or points.size == 0:
        return np.zeros(len(points), dtype=bool)
    return (Dominator.calc_domination_matrix(others, points) == 1).any(axis=0)
