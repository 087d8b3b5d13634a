"""Latency regressor for any table of measurements: an additive ridge base, boosted trees on its residuals.

`LatencyRegressor.fit(X, y)` takes a plain 2-D feature array (one-hot candidates, per-layer costs, anything) and
positive latencies:

1. Additive base. Ridge regression on standardised features, solved through one SVD, so the exact leave-one-out
   (LOO) predictions of every ridge penalty `alpha` come in closed form. The target is latency (`linear`) or log
   latency (`log`); with `target='auto'` the pair (target, alpha) with the lowest LOO MAPE on the latency scale
   wins. Latency tables that are sums of per-layer tables are recovered exactly by `linear` with `alpha=0`
   (minimum-norm least squares); measured GPU latency usually prefers `linear` too, some CPUs and phones `log`.
2. Trees. XGBoost fit on the base's residuals (in the target space), early-stopped on an internal validation
   split (`validation_fraction` of the rows, seeded). They are kept only when they cut the validation RMSE of
   the base by at least `min_gain`; otherwise the regressor is the additive model alone. Kept trees are refit on
   all rows with the early-stopped number of rounds. Not tried when the base is exact on the validation rows.
3. Intervals. Split-conformal: the absolute validation residuals (target space) of the model fit without the
   validation rows are stored; `predict_interval(X, alpha)` widens the prediction by their finite-sample
   (1 - alpha) quantile, so intervals are multiplicative for `log` and additive for `linear`. The quantile is
   infinite when there are too few validation rows for the asked level. Coverage assumes new rows come from
   the same distribution: measurements that drift over time (HELP's GPU columns drift by ~1.4% over the file)
   are covered less.
4. Floor. A linear target extrapolates: a subnet far from every measured one can be predicted at or below zero.
   Predictions and bounds are floored at `FLOOR_FRACTION` of the fastest latency the regressor was fit on (kept in
   regressor.json), so no prediction is faster than half the fastest measurement.

`save(directory)` writes `regressor.json` (settings, ridge coefficients, calibration residuals, format version)
and, when trees are kept, `trees.json` (XGBoost's own JSON model). No pickles.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import xgboost as xgb

FORMAT = "squeezenas-engine/latency-regressor"
VERSION = 1
METADATA_FILE = "regressor.json"
TREES_FILE = "trees.json"
TARGETS = ("auto", "linear", "log")
DEFAULT_ALPHAS = (0.0, 0.001, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
MIN_ROWS = 10
_RANK_TOLERANCE = 1e-10
_ROUNDING = 1e-9
FLOOR_FRACTION = 0.5


@dataclass(frozen=True)
class RegressorSettings:
    """What `LatencyRegressor(**settings)` accepts; every field is saved with the model."""

    target: str = "auto"
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    trees: bool = True
    max_depth: int = 3
    learning_rate: float = 0.03
    max_rounds: int = 2000
    early_stopping_rounds: int = 100
    subsample: float = 0.8
    reg_lambda: float = 10.0
    min_child_weight: float = 5.0
    validation_fraction: float = 0.2
    min_gain: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if not self.alphas or min(self.alphas) < 0:
            raise ValueError(f"alphas must be a non-empty list of penalties >= 0, got {list(self.alphas)}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")

    @property
    def tree_params(self) -> dict:
        """XGBoost parameters of the residual trees; base_score 0 because they fit residuals."""
        return {"objective": "reg:squarederror", "base_score": 0.0, "eval_metric": "rmse",
                "max_depth": self.max_depth, "eta": self.learning_rate, "subsample": self.subsample,
                "lambda": self.reg_lambda, "min_child_weight": self.min_child_weight, "seed": self.seed}


@dataclass(frozen=True)
class AdditiveModel:
    """target(latency) ~ X @ coef + intercept."""

    target: str
    alpha: float
    coef: np.ndarray
    intercept: float

    def margin(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef + self.intercept


@dataclass(frozen=True)
class RidgePath:
    """The SVD of standardised features, from which ridge fits and LOO predictions at any alpha follow."""

    mean: np.ndarray
    scale: np.ndarray
    u: np.ndarray
    s: np.ndarray
    vt: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray) -> "RidgePath":
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale[scale == 0] = 1.0
        u, s, vt = np.linalg.svd((X - mean) / scale, full_matrices=False)
        keep = s > (s[0] if len(s) else 0.0) * _RANK_TOLERANCE
        return cls(mean, scale, u[:, keep], s[keep], vt[keep])

    def shrinkage(self, alpha: float) -> np.ndarray:
        return self.s**2 / (self.s**2 + alpha)

    def loo(self, z: np.ndarray, alpha: float) -> np.ndarray:
        """Exact leave-one-out predictions of z (intercept included): z - residual / (1 - leverage)."""
        d = self.shrinkage(alpha)
        centred = z - z.mean()
        fitted = self.u @ (d * (self.u.T @ centred))
        leverage = (self.u**2) @ d + 1.0 / len(z)
        with np.errstate(divide="ignore", invalid="ignore"):
            return z - (centred - fitted) / (1.0 - leverage)

    def fit(self, z: np.ndarray, target: str, alpha: float) -> AdditiveModel:
        weights = self.vt.T @ (self.shrinkage(alpha) / self.s * (self.u.T @ (z - z.mean())))
        coef = weights / self.scale
        return AdditiveModel(target, alpha, coef, float(z.mean() - self.mean @ coef))


def to_target(latency: np.ndarray, target: str) -> np.ndarray:
    return np.log(latency) if target == "log" else latency


def from_target(z: np.ndarray, target: str) -> np.ndarray:
    return np.exp(z) if target == "log" else z


def loo_mape(path: RidgePath, y: np.ndarray, target: str, alpha: float) -> float:
    """Leave-one-out mean absolute percentage error on the latency scale; inf when LOO is undefined."""
    predicted = from_target(path.loo(to_target(y, target), alpha), target)
    error = float(np.mean(np.abs(predicted - y) / y))
    return error if math.isfinite(error) else math.inf


def _best_base(path: RidgePath, y: np.ndarray, settings: RegressorSettings) -> tuple[float, str, float]:
    """(LOO MAPE, target, alpha) of the best ridge base among those the settings allow."""
    targets = ("linear", "log") if settings.target == "auto" else (settings.target,)
    return min(((loo_mape(path, y, t, a), t, a) for t in targets for a in settings.alphas), key=lambda c: c[0])


def fit_additive(X: np.ndarray, y: np.ndarray, settings: RegressorSettings) -> AdditiveModel:
    """The ridge base with the (target, alpha) of lowest LOO MAPE among those the settings allow."""
    path = RidgePath.of(X)
    _, target, alpha = _best_base(path, y, settings)
    return path.fit(to_target(y, target), target, alpha)


def additive_loo_mape(X: np.ndarray, y: np.ndarray, **settings) -> float:
    """How well a feature set explains measurements before any trees: the best additive base's exact
    leave-one-out MAPE (a fraction). Lets a caller choose between feature sets on the training rows alone."""
    X = check_features(X)
    y = check_latency(y, X.shape[0])
    return _best_base(RidgePath.of(X), y, RegressorSettings(**settings))[0]


def refit_additive(X: np.ndarray, y: np.ndarray, like: AdditiveModel) -> AdditiveModel:
    return RidgePath.of(X).fit(to_target(y, like.target), like.target, like.alpha)


def check_features(X: np.ndarray, n_features: int | None = None) -> np.ndarray:
    """X as a finite float64 [rows, features] array; ValueError saying what is wrong otherwise."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"features must be a non-empty 2-D array [rows, features], got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"features have {X.shape[1]} columns but the regressor was fit on {n_features}; "
                         "build them the same way as for fit")
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        row, column = bad[0]
        raise ValueError(f"features contain {len(bad)} NaN or infinite value(s), first at row {row}, column "
                         f"{column}")
    return X


def check_latency(y: np.ndarray, rows: int | None = None, name: str = "latency") -> np.ndarray:
    """y as a finite positive float64 1-D array (of `rows` values when given); ValueError naming `name` and the
    first bad row otherwise."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or (rows is not None and y.shape != (rows,)):
        wanted = "a 1-D array" if rows is None else f"a 1-D array of {rows} values (one per feature row)"
        raise ValueError(f"{name} must be {wanted}, got shape {y.shape}")
    bad = np.flatnonzero(~(np.isfinite(y) & (y > 0)))
    if len(bad):
        raise ValueError(f"{name} must be finite and positive; row {bad[0]} is {y[bad[0]]!r} "
                         f"({len(bad)} bad value(s))")
    return y


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2)))


def conformal_quantile(residuals: np.ndarray, alpha: float) -> float:
    """The ceil((m + 1)(1 - alpha))-th smallest of m absolute residuals; inf when that exceeds m."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha (miscoverage) must be in (0, 1), got {alpha}")
    rank = math.ceil((len(residuals) + 1) * (1 - alpha))
    return float(np.sort(residuals)[rank - 1]) if rank <= len(residuals) else math.inf


class LatencyRegressor:
    """Additive ridge base + early-stopped residual trees + split-conformal intervals (module docstring).

    Any table of features and latencies fits; a table that is a sum of per-feature costs (made-up numbers, ms) is
    recovered exactly by the linear target without penalty, and the interval holds the prediction:

    >>> import numpy as np
    >>> from predictors.latency import LatencyRegressor
    >>> X = np.random.default_rng(0).integers(0, 2, size=(40, 6)).astype(float)
    >>> y = 2.0 + X @ np.array([0.5, 1.0, 1.5, 0.25, 0.75, 1.25])
    >>> model = LatencyRegressor(target="linear", alphas=(0.0,)).fit(X, y)
    >>> bool(np.allclose(model.predict(X[:5]), y[:5]))
    True
    >>> lower, upper = model.predict_interval(X[:5], alpha=0.1)
    >>> bool(((lower <= model.predict(X[:5])) & (model.predict(X[:5]) <= upper)).all())
    True
    """

    def __init__(self, **settings) -> None:
        self.settings = RegressorSettings(**settings)
        self.additive: AdditiveModel | None = None
        self.trees: xgb.Booster | None = None
        self.calibration = np.empty(0)
        self.n_features = 0
        self.floor = np.finfo(np.float64).tiny

    @property
    def rounds(self) -> int:
        """Boosting rounds kept (0: the regressor is the additive model alone)."""
        return 0 if self.trees is None else self.trees.num_boosted_rounds()

    def fit(self, X: np.ndarray, y: np.ndarray) -> "LatencyRegressor":
        X = check_features(X)
        y = check_latency(y, X.shape[0])
        if len(y) < MIN_ROWS:
            raise ValueError(f"need at least {MIN_ROWS} measurements to fit, got {len(y)}")
        self.n_features = X.shape[1]
        self.floor = FLOOR_FRACTION * float(y.min())
        self.additive = fit_additive(X, y, self.settings)
        train, validation = self._split(len(y))
        part = refit_additive(X[train], y[train], self.additive)
        z = to_target(y, self.additive.target)
        residual = z - part.margin(X)
        exact = _rms(residual[validation]) <= _ROUNDING * float(np.std(z))
        rounds = self._tree_rounds(X, residual, train, validation) if self.settings.trees and not exact else 0
        if rounds:
            partial = self._boost(X[train], residual[train], rounds)
            residual[validation] -= partial.inplace_predict(X[validation])
            self.trees = self._boost(X, z - self.additive.margin(X), rounds)
        else:
            self.trees = None
        self.calibration = np.sort(np.abs(residual[validation]))
        return self

    def _split(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.random.default_rng(self.settings.seed).permutation(rows)
        held = max(1, round(rows * self.settings.validation_fraction))
        return np.sort(order[held:]), np.sort(order[:held])

    def _boost(self, X: np.ndarray, residual: np.ndarray, rounds: int, **evaluation) -> xgb.Booster:
        return xgb.train(self.settings.tree_params, xgb.DMatrix(X, label=residual), rounds, verbose_eval=False,
                         **evaluation)

    def _tree_rounds(self, X: np.ndarray, residual: np.ndarray, train: np.ndarray, validation: np.ndarray) -> int:
        """Early-stopped rounds on the validation rows; 0 unless they cut the base's RMSE by min_gain."""
        held = xgb.DMatrix(X[validation], label=residual[validation])
        booster = self._boost(X[train], residual[train], self.settings.max_rounds, evals=[(held, "validation")],
                              early_stopping_rounds=self.settings.early_stopping_rounds)
        helps = booster.best_score <= (1 - self.settings.min_gain) * _rms(residual[validation])
        return booster.best_iteration + 1 if helps else 0

    def _margin(self, X: np.ndarray) -> np.ndarray:
        if self.additive is None:
            raise ValueError("the regressor is not fit yet; call fit(X, y) or LatencyRegressor.load(path)")
        X = check_features(X, self.n_features)
        margin = self.additive.margin(X)
        return margin if self.trees is None else margin + self.trees.inplace_predict(X).astype(np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted latency, in the unit of the y given to fit (never below the floor)."""
        return np.maximum(from_target(self._margin(X), self.additive.target), self.floor)

    def predict_interval(self, X: np.ndarray, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) latency bounds meant to hold for a fraction 1 - alpha of new rows (both >= the floor)."""
        q = conformal_quantile(self.calibration, alpha)
        margin = self._margin(X)
        target = self.additive.target
        return (np.maximum(from_target(margin - q, target), self.floor),
                np.maximum(from_target(margin + q, target), self.floor))

    def save(self, directory: str | Path) -> Path:
        """Write regressor.json (+ trees.json when trees are kept) into `directory`; returns the directory."""
        if self.additive is None:
            raise ValueError("nothing to save: the regressor is not fit yet")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.trees is not None:
            self.trees.save_model(str(directory / TREES_FILE))
        metadata = {
            "format": FORMAT, "version": VERSION, "xgboost": xgb.__version__,
            "settings": asdict(self.settings), "n_features": self.n_features,
            "target": self.additive.target, "alpha": self.additive.alpha,
            "coef": self.additive.coef.tolist(), "intercept": self.additive.intercept,
            "calibration": self.calibration.tolist(), "floor": self.floor,
            "trees": TREES_FILE if self.trees is not None else None,
        }
        (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "LatencyRegressor":
        directory = Path(directory)
        file = directory / METADATA_FILE
        try:
            metadata = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{file}: not a saved latency regressor ({error})") from None
        if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
            raise ValueError(f"{file}: format {metadata.get('format')!r} version {metadata.get('version')!r}, "
                             f"expected {FORMAT!r} version {VERSION}")
        regressor = cls(**metadata["settings"])
        regressor.n_features = metadata["n_features"]
        regressor.additive = AdditiveModel(metadata["target"], metadata["alpha"], np.array(metadata["coef"]),
                                           metadata["intercept"])
        regressor.calibration = np.array(metadata["calibration"])
        regressor.floor = metadata.get("floor", regressor.floor)
        if metadata["trees"] is not None:
            regressor.trees = xgb.Booster(model_file=str(directory / metadata["trees"]))
        return regressor
