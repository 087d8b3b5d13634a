"""Few-shot latency transfer on HELP's device split: 10 measurements on a new device, rank correlation vs HELP.

    python -m benchmarks.help_fewshot [--draws 20] [--shots 10]

Sources are HELP's meta-train devices (1080ti_1/32/64, silver_4114, silver_4210r, samsung_a50, pixel3,
essential_ph_1, samsung_s7), all 5,000 rows of ../shared/data/latency/help_fbnet_latency.csv, one-hot features;
`FewShotRegressor` fits one additive model per source and combines them non-negatively from the target's shots.
Targets are HELP's validation devices (titanx_1/32/64, gold_6240; they chose this method's settings: linear
combination, penalty grid, design with farthest-point tie-breaks) and test devices (fpga, raspi4, eyeriss), whose
data is used only through the shots and for scoring. Two protocols:

- whole table: shots from all 5,000 rows, scored on the other 4,990;
- HELP's split (their loader): random shots from rows 0-899 after dropping the 10% fastest and 10% slowest on the
  target (their outlier removal, which reads the target's latencies), scored on rows 900-1899 trimmed the same way
  (800 rows). Designed shots come from the untrimmed rows 0-899, since a design may not read target latencies.

Shots are `--draws` random draws (mean ± std) or one design: `predictors.design.spread` over the zero-shot proxy
(mean of the sources' standardised predictions) with farthest-point tie-breaks in the sources' prediction space,
which reads no target measurement and is deterministic. For scale: the zero-shot proxy's own rank correlation
(no target measurement) and ridge on one-hot features fit on the random shots alone. HELP's figures are Spearman
rank correlation (their code's metric) from their paper.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks.help_predictor import TABLE
from predictors.design import spread
from predictors.features import one_hot
from predictors.fewshot import FewShotRegressor
from spaces import Genotype

SOURCES = ("1080ti_1", "1080ti_32", "1080ti_64", "silver_4114", "silver_4210r", "samsung_a50", "pixel3",
           "essential_ph_1", "samsung_s7")
VALIDATION = ("titanx_1", "titanx_32", "titanx_64", "gold_6240")
TEST = ("fpga", "raspi4", "eyeriss")
HELP_SPEARMAN = {"raspi4": 0.887, "eyeriss": 0.943, "fpga": 0.892}
SHOT_POOL = 900
QUERY = slice(900, 1900)
TRIM = 0.1

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Protocol:
    """Where random shots are drawn, where designed shots are chosen, and which rows are scored."""

    name: str
    random_pool: np.ndarray
    design_pool: np.ndarray
    scored: Callable[[np.ndarray], np.ndarray]


def trimmed(rows: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """HELP's outlier removal: the rows without the TRIM fastest and TRIM slowest on this device."""
    order = rows[np.argsort(latency[rows], kind="stable")]
    return order[int(len(rows) * TRIM):int(len(rows) * (1 - TRIM))]


def protocols(latency: np.ndarray) -> list[Protocol]:
    everything = np.arange(len(latency))
    pool, query = np.arange(SHOT_POOL), np.arange(len(latency))[QUERY]
    return [
        Protocol("whole table", everything, everything, lambda shots: np.setdiff1d(everything, shots)),
        Protocol("HELP's split", trimmed(pool, latency), pool, lambda shots: trimmed(query, latency)),
    ]


def ranks(measured: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    return float(spearmanr(measured, predicted).statistic), float(kendalltau(measured, predicted).statistic)


def one_hot_ridge(X: np.ndarray, y: np.ndarray) -> Predictor:
    model = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(X, np.log(y))
    return lambda X_new: np.exp(model.predict(X_new))


def few_shot(regressor: FewShotRegressor) -> Callable[[np.ndarray, np.ndarray], Predictor]:
    return lambda X, y: regressor.fit(X, y).predict


def score(fit: Callable[[np.ndarray, np.ndarray], Predictor], X: np.ndarray, latency: np.ndarray,
          shots: np.ndarray, scored: np.ndarray) -> tuple[float, float]:
    return ranks(latency[scored], fit(X[shots], latency[shots])(X[scored]))


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main_sources(regressor: FewShotRegressor) -> str:
    """The (up to 3) sources carrying at least 1% of the standardised weight, as ms of target per ms of source."""
    per_ms = regressor.weights / regressor.scale
    order = [i for i in np.argsort(-regressor.weights) if regressor.weights[i] > 0.01 * regressor.weights.sum()][:3]
    return ", ".join(f"{SOURCES[i]} {per_ms[i]:.2g}" for i in order) or "none (intercept only)"


def device_rows(device: str, X: np.ndarray, latency: np.ndarray, regressor: FewShotRegressor, proxy: np.ndarray,
                draws: int, shots: int) -> list[list[str]]:
    cells = []
    for protocol in protocols(latency):
        draws_of = [np.random.default_rng(seed).choice(protocol.random_pool, shots, replace=False)
                    for seed in range(draws)]
        ours = [score(few_shot(regressor), X, latency, s, protocol.scored(s)) for s in draws_of]
        ridge = [score(one_hot_ridge, X, latency, s, protocol.scored(s))[0] for s in draws_of]
        pool = protocol.design_pool
        designed = pool[spread(proxy[pool], shots, seed=0, features=regressor.standardised(X[pool]))]
        design_rho, design_tau = score(few_shot(regressor), X, latency, designed, protocol.scored(designed))
        weights = main_sources(regressor)
        scored = protocol.scored(designed)
        zero_shot = ranks(latency[scored], proxy[scored])[0]
        role = "test" if device in TEST else "validation"
        help_figure = f"{HELP_SPEARMAN[device]:.3f}" if device in HELP_SPEARMAN and protocol.name != "whole table" \
            else ""
        cells.append([device, role, protocol.name, mean_std([o[0] for o in ours]), mean_std([o[1] for o in ours]),
                      f"{design_rho:.3f}", f"{design_tau:.3f}", f"{zero_shot:.3f}", mean_std(ridge), help_figure,
                      weights])
    return cells


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20, help="random draws of shots per device and protocol")
    parser.add_argument("--shots", type=int, default=10, help="target measurements per fit")
    args = parser.parse_args()

    start = time.perf_counter()
    table = pd.read_csv(TABLE, dtype={"arch": str})
    X = one_hot([Genotype.from_digits("fbnet_cifar", arch) for arch in table["arch"]]).astype(np.float64)
    regressor = FewShotRegressor(X, table[list(SOURCES)].to_numpy())
    proxy = regressor.standardised(X).mean(axis=1)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {TABLE.name}; {args.shots} shots, "
          f"{args.draws} random draws; sources: {', '.join(SOURCES)}")
    print(row(["device", "role", "protocol", "random: Spearman", "random: Kendall", "designed: Spearman",
               "designed: Kendall", "zero-shot proxy: Spearman", "ridge on shots: Spearman", "HELP: Spearman",
               "designed fit's main sources (ms/ms)"]))
    print(row(["---"] * 11))
    for device in TEST + VALIDATION:
        for cells in device_rows(device, X, table[device].to_numpy(), regressor, proxy, args.draws, args.shots):
            print(row(cells), flush=True)
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
