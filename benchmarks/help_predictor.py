"""Latency predictors side by side on HELP's measured FBNet table: additive ridge, plain XGBoost, LatencyRegressor.

    python -m benchmarks.help_predictor [--devices 2080ti_1 gold_6240 titan_rtx_64 | --all] [--rows 1000 100]

Each predictor is trained on the first `rows` rows of ../shared/data/latency/help_fbnet_latency.csv and tested on
the last 1,000, with two feature sets: one-hot candidates, and one-hot plus the space's per-layer and total MACs,
parameters and activations (`cost_features` at 32x32). The baselines are those of ../shared/README.md: ridge
(alpha 1, standardised features) on log latency, and XGBoost (1,000 trees of depth 3, eta 0.05, subsample 0.8) on
log latency. The regressor's note gives its chosen target, ridge alpha, kept boosting rounds, and how many test
rows its 90% interval covers (the GPU columns drift over the file, so this split is not exchangeable).
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from predictors.evaluation import AccuracyReport, accuracy_report
from predictors.features import cost_features, one_hot
from predictors.latency import LatencyRegressor
from spaces import Genotype
from spaces.costs import cost_table

TABLE = Path(os.environ.get("SQUEEZENAS_SHARED", Path(__file__).resolve().parents[2] / "shared")) / \
    "data/latency/help_fbnet_latency.csv"
DEVICES = ("2080ti_1", "gold_6240", "titan_rtx_64")
TEST_ROWS = 1000


def feature_sets(archs: pd.Series) -> dict[str, np.ndarray]:
    genotypes = [Genotype.from_digits("fbnet_cifar", arch) for arch in archs]
    hot = one_hot(genotypes).astype(np.float64)
    costs = cost_features(genotypes, cost_table("fbnet_cifar", (32, 32)))
    return {"one-hot": hot, "one-hot + costs": np.concatenate([hot, costs], axis=1)}


def additive_ridge(X: np.ndarray, y: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, str]:
    model = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(X, np.log(y))
    return np.exp(model.predict(X_test)), ""


def plain_xgboost(X: np.ndarray, y: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, str]:
    model = xgb.XGBRegressor(n_estimators=1000, learning_rate=0.05, max_depth=3, subsample=0.8, random_state=0)
    return np.exp(model.fit(X, np.log(y)).predict(X_test)), ""


def latency_regressor(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, str]:
    model = LatencyRegressor().fit(X, y)
    lower, upper = model.predict_interval(X_test, alpha=0.1)
    covered = 100 * np.mean((lower <= y_test) & (y_test <= upper))
    note = (f"{model.additive.target}, alpha {model.additive.alpha:g}, {model.rounds} rounds, "
            f"90% interval covers {covered:.0f}%")
    return model.predict(X_test), note


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def report_cells(report: AccuracyReport) -> list[str]:
    return [f"{report.kendall_tau:.3f}", f"{report.spearman_rho:.3f}", f"{report.mape:.2f}", f"{report.within_10:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=list(DEVICES))
    parser.add_argument("--all", action="store_true", help="every latency column of the table")
    parser.add_argument("--rows", type=int, nargs="+", default=(1000, 100))
    args = parser.parse_args()

    table = pd.read_csv(TABLE, dtype={"arch": str})
    devices = [c for c in table.columns if c not in ("idx", "arch")] if args.all else args.devices
    features = feature_sets(table["arch"])
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, xgboost {xgb.__version__}; "
          f"{TABLE.name}: train on the first N rows, test on the last {TEST_ROWS}")
    print(row(["features", "N", "device", "predictor", "Kendall tau", "Spearman rho", "MAPE %", "within ±10 %",
               "note"]))
    print(row(["---"] * 9))
    for name, X in features.items():
        for rows in args.rows:
            for device in devices:
                y = table[device].to_numpy()
                train, test = slice(0, rows), slice(-TEST_ROWS, None)
                predictions = {
                    "additive ridge": additive_ridge(X[train], y[train], X[test]),
                    "plain XGBoost": plain_xgboost(X[train], y[train], X[test]),
                    "LatencyRegressor": latency_regressor(X[train], y[train], X[test], y[test]),
                }
                for predictor, (predicted, note) in predictions.items():
                    cells = report_cells(accuracy_report(y[test], predicted))
                    print(row([name, str(rows), device, predictor, *cells, note]), flush=True)


if __name__ == "__main__":
    main()
