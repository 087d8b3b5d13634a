"""Accuracy of a latency predictor on held-out measurements: errors (MAPE, RMSE, share within ±5% / ±10%) and
rank agreement (Kendall tau, Spearman rho), which is what a search that compares networks relies on; and rank
agreement with its uncertainty (a bootstrap interval over the ranked items) and between repeated references (the mean
Kendall tau over pairs of seeds), as the proxy-fidelity audit reads it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import kendalltau, spearmanr


@dataclass(frozen=True)
class AccuracyReport:
    """Percentages are of the measured latency; rmse is in the latency's unit (ms in the HELP table)."""

    count: int
    mape: float
    rmse: float
    within_5: float
    within_10: float
    kendall_tau: float
    spearman_rho: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def kendall(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall tau of two equally long sequences; NaN below two values (and, as scipy gives it, for constant ones)."""
    return float(kendalltau(a, b).statistic) if len(a) > 1 else math.nan


def pairwise_kendall(columns: np.ndarray) -> float:
    """Mean Kendall tau over every pair of columns of [items, repeats] (NaN with fewer than two repeats)."""
    columns = np.asarray(columns, dtype=np.float64)
    pairs = [(i, j) for i in range(columns.shape[1]) for j in range(i + 1, columns.shape[1])]
    return float(np.mean([kendall(columns[:, i], columns[:, j]) for i, j in pairs])) if pairs else math.nan


def bootstrap_interval(statistic, rows: int, level: float = 0.9, draws: int = 1000, seed: int = 0
                       ) -> tuple[float, float]:
    """The central `level` interval of `statistic(indices)` over `draws` seeded resamples of `rows` items with
    replacement (percentile bootstrap); resamples where the statistic is NaN (ties only) are left out."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, rows, rows)) for _ in range(draws)])
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rho, NaN as `kendall` is."""
    return float(spearmanr(a, b).statistic) if len(a) > 1 else math.nan


def accuracy_report(measured: np.ndarray, predicted: np.ndarray) -> AccuracyReport:
    """Compare predictions with positive measured latencies, row by row."""
    measured = np.asarray(measured, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if measured.ndim != 1 or measured.shape != predicted.shape or len(measured) < 2:
        raise ValueError(f"need two 1-D arrays of the same length >= 2, got shapes {measured.shape} (measured) and "
                         f"{predicted.shape} (predicted)")
    if not (np.isfinite(measured).all() and np.isfinite(predicted).all() and (measured > 0).all()):
        raise ValueError("measured latencies must be finite and positive and predictions finite")
    relative = np.abs(predicted - measured) / measured
    return AccuracyReport(
        count=len(measured),
        mape=100 * float(relative.mean()),
        rmse=float(np.sqrt(np.mean((predicted - measured) ** 2))),
        within_5=100 * float(np.mean(relative <= 0.05)),
        within_10=100 * float(np.mean(relative <= 0.10)),
        kendall_tau=float(kendalltau(measured, predicted).statistic),
        spearman_rho=float(spearmanr(measured, predicted).statistic),
    )
