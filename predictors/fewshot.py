"""Few-shot latency prediction on a new device: a non-negative combination of other devices' additive models.

Every latency table we know of in these spaces is close to additive over layers (HELP's raspi4, pixel3, eyeriss
and fpga columns are sums of per-layer tables), and devices of one kind spend their time alike, so the prior is
low-rank: the new device's per-layer candidate costs are close to a non-negative combination of the source
devices' cost vectors, c_target ~ sum_s w_s c_s, w_s >= 0, plus a fixed cost.

`FewShotRegressor(X_source, Y_source)` fits one additive model per source device (column of Y_source; NaN = not
measured on that device): ridge on the features with a linear latency target and the penalty of lowest
leave-one-out MAPE (the latency regressor's ridge path, one SVD for all sources measured on the same rows), so
each source is a cost vector. `fit(X, y)` on a handful of target measurements then solves

    min_{b, w >= 0}  sum_i (y_i - b - sum_s w_s z_s(x_i))^2 + penalty * |w|^2

where z_s is source s's prediction divided by its standard deviation over the source rows (so one penalty treats
all sources alike) and the intercept b is free. The penalty is the one, among `penalties`, with the lowest exact
leave-one-out MAPE on the measured rows (ties: the smallest). Because the sources are additive, so is the result:
`additive` is an `AdditiveModel` (linear target) whose coefficients are the combined per-feature costs, usable
wherever the latency regressor's base is. When the target is exactly such a combination and the measurements
pin the weights down (comfortably more rows than sources carrying weight), penalty 0 wins and the fit is exact.

The combination is then corrected where the target's own measurements say it is wrong: ridge regression of its
residuals on the features (`correction`), the ridge penalty (or no correction at all) chosen by leave-one-out error,
nested: each row left out of both the combination and the correction before it is predicted. With a
handful of measurements no correction survives and the fit is the sources' combination; with tens, the device's
own per-layer costs show through where no source has them (an accelerator whose blocks cost what no GPU's do).

The non-negativity is the prior that makes ten measurements enough: a few sources take the weight and the others
drop out, instead of a 9-source least-squares fit that interpolates ten points and ranks nothing.

`design(X_pool, count, seed)` chooses which architectures to measure on the target before any is measured: spread
(predictors.design) over the sources' consensus (their mean standardised prediction), each stratum's pick the one
farthest from the picks so far in the sources' disagreement (each source's standardised prediction minus the
consensus), so the shots span the directions in which the sources differ, which is what pins the weights down.
`regressor()` gives the fit as a `LatencyRegressor` (additive, linear target, no trees; its calibration residuals are
the fit's exact leave-one-out residuals, its floor half the fastest shot), saved and loaded as any other.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import nnls

from predictors.design import spread
from predictors.latency import (
    DEFAULT_ALPHAS,
    FLOOR_FRACTION,
    MIN_ROWS,
    AdditiveModel,
    LatencyRegressor,
    RidgePath,
    check_features,
    check_latency,
)
from predictors.latency import loo_mape as ridge_loo_mape

DEFAULT_PENALTIES = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
CORRECTION_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10_000.0)
"""Ridge penalties of the residual correction (on standardised features); no correction is always a candidate."""
MIN_SHOTS = 3


def fit_sources(X: np.ndarray, Y: np.ndarray, alphas: tuple[float, ...]) -> list[AdditiveModel]:
    """One linear-target additive model per column of Y, on the rows where that column is measured, with the ridge
    penalty of lowest leave-one-out MAPE; columns measured on the same rows share one SVD."""
    measured = np.isfinite(Y)
    models: dict[int, AdditiveModel] = {}
    for mask in np.unique(measured, axis=1).T:
        rows = int(mask.sum())
        if rows < MIN_ROWS:
            raise ValueError(f"a source device has {rows} measured rows; each needs at least {MIN_ROWS}")
        path = RidgePath.of(X[mask])
        for column in np.flatnonzero((measured == mask[:, None]).all(axis=0)):
            y = check_latency(Y[mask, column], rows)
            alpha = min(alphas, key=lambda a: ridge_loo_mape(path, y, "linear", a))
            models[column] = path.fit(y, "linear", alpha)
    return [models[column] for column in range(Y.shape[1])]


def nonnegative_ridge(Z: np.ndarray, y: np.ndarray, penalty: float) -> tuple[float, np.ndarray]:
    """(b, w >= 0) minimising |y - b - Z w|^2 + penalty |w|^2, the intercept b unpenalised."""
    centre = Z.mean(axis=0)
    augmented = np.vstack([Z - centre, math.sqrt(penalty) * np.eye(Z.shape[1])])
    weights, _ = nnls(augmented, np.concatenate([y - y.mean(), np.zeros(Z.shape[1])]))
    return float(y.mean() - centre @ weights), weights


def combination_loo_residuals(Z: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Leave-one-out residuals (measured - predicted) of `nonnegative_ridge` at this penalty."""
    residuals = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        intercept, weights = nonnegative_ridge(Z[keep], y[keep], penalty)
        residuals[i] = y[i] - intercept - Z[i] @ weights
    return residuals


def correction_loo_residuals(X: np.ndarray, Z: np.ndarray, y: np.ndarray, penalty: float
                              ) -> dict[float, np.ndarray]:
    """Leave-one-out residuals of the corrected fit at each of CORRECTION_ALPHAS, nested: row i is left out of the
    combination and of the correction fit on its residuals, then predicted."""
    errors = {alpha: np.empty(len(y)) for alpha in CORRECTION_ALPHAS}
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        intercept, weights = nonnegative_ridge(Z[keep], y[keep], penalty)
        path = RidgePath.of(X[keep])
        left = y[i] - intercept - Z[i] @ weights
        for alpha in CORRECTION_ALPHAS:
            model = path.fit(y[keep] - intercept - Z[keep] @ weights, "linear", alpha)
            errors[alpha][i] = left - model.margin(X[i:i + 1])[0]
    return errors


class FewShotRegressor:
    """Source devices' additive models, combined non-negatively from a few target measurements (module docstring).

    X_source: [rows, features] features of the architectures measured on the sources; Y_source: [rows, devices]
    their latencies (NaN where a device did not measure a row). Features for fit/predict must be built the same
    way as X_source."""

    def __init__(self, X_source: np.ndarray, Y_source: np.ndarray, *, penalties: tuple[float, ...] = DEFAULT_PENALTIES,
                 source_alphas: tuple[float, ...] = DEFAULT_ALPHAS) -> None:
        X_source = check_features(X_source)
        Y_source = np.asarray(Y_source, dtype=np.float64)
        if Y_source.ndim != 2 or Y_source.shape[0] != X_source.shape[0] or Y_source.shape[1] == 0:
            raise ValueError(f"Y_source must be [rows, devices] with {X_source.shape[0]} rows (one per row of "
                             f"X_source), got shape {Y_source.shape}")
        if not penalties or min(penalties) < 0:
            raise ValueError(f"penalties must be a non-empty list of values >= 0, got {list(penalties)}")
        self.penalties = tuple(sorted(float(p) for p in penalties))
        self.sources = fit_sources(X_source, Y_source, tuple(source_alphas))
        self.n_features = X_source.shape[1]
        self.scale = np.array([max(float(np.std(s.margin(X_source))), 1e-12) for s in self.sources])
        self.penalty = math.nan
        self.intercept = math.nan
        self.weights = np.empty(0)
        self.loo_mape = math.nan
        self.loo_residuals = np.empty(0)
        self.fastest = math.nan
        self.correction: AdditiveModel | None = None

    def standardised(self, X: np.ndarray) -> np.ndarray:
        """[rows, sources]: each source's predicted latency divided by its spread over the source rows."""
        X = check_features(X, self.n_features)
        return np.stack([s.margin(X) for s in self.sources], axis=1) / self.scale

    def fit(self, X: np.ndarray, y: np.ndarray) -> FewShotRegressor:
        """Fit the combination on the target device's measurements (a few rows; at least 3)."""
        Z = self.standardised(X)
        y = check_latency(y, Z.shape[0])
        if len(y) < MIN_SHOTS:
            raise ValueError(f"need at least {MIN_SHOTS} target measurements to choose the penalty by "
                             f"leave-one-out, got {len(y)}")
        residuals = [combination_loo_residuals(Z, y, p) for p in self.penalties]
        scores = [float(np.mean(np.abs(r) / y)) for r in residuals]
        best = int(np.argmin(scores))
        self.penalty, self.loo_mape, self.loo_residuals = self.penalties[best], scores[best], residuals[best]
        self.intercept, self.weights = nonnegative_ridge(Z, y, self.penalty)
        self.fastest = float(y.min())
        self.correct(check_features(X, self.n_features), Z, y)
        return self

    def correct(self, X: np.ndarray, Z: np.ndarray, y: np.ndarray) -> None:
        """The residual correction of lowest leave-one-out MAPE, or none (module docstring)."""
        self.correction = None
        if len(y) < MIN_ROWS:
            return
        errors = correction_loo_residuals(X, Z, y, self.penalty)
        scores = {alpha: float(np.mean(np.abs(e) / y)) for alpha, e in errors.items()}
        alpha = min(scores, key=scores.get)
        if scores[alpha] < self.loo_mape:
            residual = y - self.intercept - Z @ self.weights
            self.correction = RidgePath.of(X).fit(residual, "linear", alpha)
            self.loo_mape, self.loo_residuals = scores[alpha], errors[alpha]

    def design(self, X_pool: np.ndarray, count: int, seed: int) -> np.ndarray:
        """`count` indices into X_pool to measure on the target first (module docstring); reads no target
        measurement."""
        Z = self.standardised(X_pool)
        consensus = Z.mean(axis=1)
        return spread(consensus, count, seed, features=Z - consensus[:, None])

    def regressor(self, seed: int = 0) -> LatencyRegressor:
        """The fit as a LatencyRegressor: this additive model, no trees, the leave-one-out residuals as calibration
        (split-conformal intervals), the floor at FLOOR_FRACTION of the fastest shot."""
        model = LatencyRegressor(target="linear", trees=False, seed=seed)
        model.additive = self.additive
        model.n_features = self.n_features
        model.calibration = np.sort(np.abs(self.loo_residuals))
        model.floor = FLOOR_FRACTION * self.fastest
        return model

    @property
    def additive(self) -> AdditiveModel:
        """The fitted predictor as one additive model: combined per-feature costs and fixed cost (linear target)."""
        if not len(self.weights):
            raise ValueError("the few-shot regressor is not fit yet; call fit(X, y) with target measurements")
        per_source = self.weights / self.scale
        coef = sum(w * s.coef for w, s in zip(per_source, self.sources))
        intercept = self.intercept + sum(w * s.intercept for w, s in zip(per_source, self.sources))
        if self.correction is not None:
            coef, intercept = coef + self.correction.coef, intercept + self.correction.intercept
        return AdditiveModel("linear", self.penalty, np.asarray(coef, dtype=np.float64), float(intercept))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted target latency, in the unit of the y given to fit."""
        return self.additive.margin(check_features(X, self.n_features))
