"""Coverage of latency intervals under drift on HELP's FBNet table: static split-conformal vs adaptive conformal.

    python -m benchmarks.help_coverage [--devices 2080ti_1 gold_6240 titan_rtx_64] [--levels 0.9 0.8]

Per device, `LatencyRegressor` (one-hot + costs features, as in benchmarks.help_predictor) is fit on the first
1,000 rows of ../shared/data/latency/help_fbnet_latency.csv, and the last 1,000 rows are streamed in file order:
each is predicted, given its interval, recorded as covered or not, and only then measured into the calibrator.
The static interval is the regressor's own split-conformal `predict_interval(X, 1 - level)` (calibrated once on
its internal validation rows). The adaptive one is `AdaptiveConformal(level)` with its defaults, seeded before the
stream with out-of-sample residuals: those of a second regressor fit on rows 0-799 on rows 800-999 (the most
recent training rows, in file order), since the regressor's own validation residuals are in its target space
(additive for a linear target) and drawn at random from the training rows.

Prints one table row per device and level: nominal coverage; observed coverage of the static and the adaptive
interval over the 1,000 streamed rows; the adaptive interval's lowest coverage over the ten blocks of 100
consecutive rows; the median relative width (upper - lower) / predicted of both; alpha_t at the end.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from benchmarks.help_predictor import DEVICES, TABLE, TEST_ROWS, feature_sets, row
from predictors.conformal import DEFAULT_GAMMA, DEFAULT_WINDOW, AdaptiveConformal
from predictors.latency import LatencyRegressor

TRAIN_ROWS = 1000
SEED_ROWS = 200
BLOCK = 100


def stream(calibrator: AdaptiveConformal, predicted: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, ...]:
    """Row by row: the interval each row had before it was measured, then its update; (lower, upper) per row."""
    lower, upper = np.empty_like(predicted), np.empty_like(predicted)
    for i in range(len(predicted)):
        (lower[i],), (upper[i],) = calibrator.interval(predicted[i:i + 1])
        calibrator.update(predicted[i:i + 1], measured[i:i + 1])
    return lower, upper


def covered(lower: np.ndarray, upper: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return (lower <= measured) & (measured <= upper)


def width(lower: np.ndarray, upper: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.median((upper - lower) / predicted))


def device_rows(X: np.ndarray, y: np.ndarray, device: str, levels: list[float]) -> list[list[str]]:
    train, test = slice(0, TRAIN_ROWS), slice(-TEST_ROWS, None)
    model = LatencyRegressor().fit(X[train], y[train])
    early = LatencyRegressor().fit(X[:TRAIN_ROWS - SEED_ROWS], y[:TRAIN_ROWS - SEED_ROWS])
    recent = slice(TRAIN_ROWS - SEED_ROWS, TRAIN_ROWS)
    predicted, measured = model.predict(X[test]), y[test]
    cells = []
    for level in levels:
        static = model.predict_interval(X[test], alpha=1 - level)
        calibrator = AdaptiveConformal(level)
        calibrator.seed(early.predict(X[recent]), y[recent])
        adaptive = stream(calibrator, predicted, measured)
        hits = covered(*adaptive, measured)
        cells.append([device, f"{100 * level:.0f}%", f"{100 * covered(*static, measured).mean():.1f}%",
                      f"{100 * hits.mean():.1f}%", f"{100 * hits.reshape(-1, BLOCK).mean(axis=1).min():.0f}%",
                      f"{100 * width(*static, predicted):.2f}%", f"{100 * width(*adaptive, predicted):.2f}%",
                      f"{calibrator.alpha_t:.3f}"])
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=list(DEVICES))
    parser.add_argument("--levels", type=float, nargs="+", default=(0.9, 0.8))
    args = parser.parse_args()

    table = pd.read_csv(TABLE, dtype={"arch": str})
    X = feature_sets(table["arch"])["one-hot + costs"]
    print(f"{TABLE.name}: fit on rows 0-{TRAIN_ROWS - 1}, stream the last {TEST_ROWS}; adaptive = ACI, window "
          f"{DEFAULT_WINDOW}, gamma {DEFAULT_GAMMA}, seeded with residuals of a fit on rows 0-"
          f"{TRAIN_ROWS - SEED_ROWS - 1} on rows {TRAIN_ROWS - SEED_ROWS}-{TRAIN_ROWS - 1}")
    print(row(["device", "nominal", "static coverage", "adaptive coverage", f"adaptive, worst {BLOCK} rows",
               "static width", "adaptive width", "final alpha_t"]))
    print(row(["---"] * 8))
    for device in args.devices:
        for cells in device_rows(X, table[device].to_numpy(), device, list(args.levels)):
            print(row(cells), flush=True)


if __name__ == "__main__":
    main()
