"""Accuracy surrogate: a subnet's inherited mIoU predicted from its encoding, with an uncertainty.

MSuNAS / NSGANetV2 (Lu et al., ECCV 2020) fit several regressors to the subnets truly evaluated so far and keep the
one whose out-of-sample rank correlation is best ("adaptive switching"), since a search needs the order of
candidates more than their values. `AccuracySurrogate.fit(X, y)` does that with scikit-learn's regressors
(KINDS: ridge on standardised features, a Gaussian process with an RBF kernel and a noise term, extremely
randomised trees, a small MLP on inputs scaled to [0, 1]): each is scored by the Kendall tau of its out-of-fold
predictions (k-fold cross validation, seeded), the best kind is kept (ties go to the earlier, simpler kind), and
`members` copies of it are fit on bootstrap resamples of the rows. `predict(X)` returns the members' mean and
standard deviation: the spread says where the surrogate has seen too little (what a round evaluates besides the
surrogate's own front).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from predictors.evaluation import kendall

MIN_ROWS = 8


def _ridge(seed: int):
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))


def _gp(seed: int):
    kernel = ConstantKernel(1.0) * RBF(length_scale=10.0, length_scale_bounds=(1e-1, 1e3)) + WhiteKernel(1e-2)
    return make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed))


def _trees(seed: int):
    return ExtraTreesRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)


def _mlp(seed: int):
    """Inputs scaled to [0, 1] and the target standardised: standardising a one-hot column that is rarely 1 in the
    rows seen turns a new 1 into a large input, on which the network extrapolates wildly (out-of-sample errors of
    0.5 mIoU on CamVid and quickstart searches, against 0.03 this way)."""
    network = MLPRegressor(hidden_layer_sizes=(64,), alpha=1e-2, max_iter=2000, random_state=seed)
    return make_pipeline(MinMaxScaler(), TransformedTargetRegressor(network, transformer=StandardScaler()))


KINDS: dict[str, Callable[[int], object]] = {"ridge": _ridge, "gp": _gp, "trees": _trees, "mlp": _mlp}


class AccuracySurrogate:
    """The best of KINDS by cross-validated Kendall tau, as a bootstrap ensemble (module docstring)."""

    def __init__(self, kinds: tuple[str, ...] = tuple(KINDS), members: int = 5, folds: int = 5, seed: int = 0):
        unknown = [kind for kind in kinds if kind not in KINDS]
        if unknown or not kinds:
            raise ValueError(f"unknown surrogate kind(s) {unknown or '(none)'}; known: {', '.join(KINDS)}")
        if members < 1 or folds < 2:
            raise ValueError(f"need members >= 1 and folds >= 2, got {members} and {folds}")
        self.kinds, self.members, self.folds, self.seed = tuple(kinds), members, folds, seed
        self.kind: str | None = None
        self.scores: dict[str, float] = {}
        self.models: list = []

    def fit(self, X: np.ndarray, y: np.ndarray) -> "AccuracySurrogate":
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or y.shape != (len(X),) or len(X) < MIN_ROWS:
            raise ValueError(f"need a 2-D X and one y per row, at least {MIN_ROWS} rows; got {X.shape} and {y.shape}")
        if not (np.isfinite(X).all() and np.isfinite(y).all()):
            raise ValueError("X and y must be finite")
        with warnings.catch_warnings():  # a kernel bound reached or an MLP not converged is a weaker candidate, no more
            warnings.simplefilter("ignore", ConvergenceWarning)
            return self._fit(X, y)

    def _fit(self, X: np.ndarray, y: np.ndarray) -> "AccuracySurrogate":
        self.scores = {kind: self.cross_validated(kind, X, y) for kind in self.kinds}
        self.kind = max(self.kinds, key=lambda kind: -math.inf if math.isnan(self.scores[kind]) else self.scores[kind])
        rng = np.random.default_rng(self.seed)
        self.models = []
        for member in range(self.members):
            rows = rng.integers(0, len(y), len(y)) if self.members > 1 else np.arange(len(y))
            self.models.append(KINDS[self.kind](self.seed + member).fit(X[rows], y[rows]))
        return self

    def cross_validated(self, kind: str, X: np.ndarray, y: np.ndarray) -> float:
        """Kendall tau of `kind`'s out-of-fold predictions over all rows."""
        predicted = np.empty_like(y)
        splits = KFold(min(self.folds, len(y)), shuffle=True, random_state=self.seed).split(X)
        for train, test in splits:
            predicted[test] = KINDS[kind](self.seed).fit(X[train], y[train]).predict(X[test])
        return kendall(y, predicted)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation) of the members' predictions."""
        if not self.models:
            raise ValueError("the surrogate is not fit yet; call fit(X, y)")
        predictions = np.stack([model.predict(np.asarray(X, dtype=np.float64)) for model in self.models])
        return predictions.mean(axis=0), predictions.std(axis=0)
