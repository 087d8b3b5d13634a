"""Prediction intervals on latency that keep their coverage when measurements drift: adaptive conformal inference.

Split-conformal intervals (`LatencyRegressor.predict_interval`) are calibrated once, on validation rows drawn from
the training measurements, and cover 1 - alpha of new rows only while new rows are exchangeable with those. They
are not when measurements drift: on HELP's FBNet table a model fit on the first 1,000 rows has nominal 90%
intervals that cover 39% (2080ti_1) and 69% (titan_rtx_64) of the last 1,000 rows, whose latency sits 0.4-1.6%
above the model's predictions. `AdaptiveConformal` recalibrates online from the residuals of rows as they are
measured, with two mechanisms:

1. Rolling window. The score of a row is its multiplicative residual s = |log(measured / predicted)|, and only the
   `window` most recent scores are kept, so the interval is calibrated on the current error level, not on the one
   at fit time. Multiplicative scores make the interval scale with latency, [p e^-q, p e^q] for a prediction p,
   which suits tables spanning several-fold latencies whose errors are roughly relative (and keeps lower >= 0).
2. Adaptive level (ACI: Gibbs & Candès, "Adaptive Conformal Inference Under Distribution Shift", NeurIPS 2021,
   arXiv:2106.00170). q is the conformal quantile of the window at a running miscoverage level alpha_t, not at the
   nominal alpha = 1 - level: the ceil((n + 1)(1 - alpha_t))-th smallest of the n window scores, infinite when that
   rank exceeds n (in particular when alpha_t <= 0), zero when it is below 1 (alpha_t >= 1). After each row,

       alpha_{t+1} = alpha_t + gamma * (alpha - err_t),   err_t = 1 if the row fell outside its interval else 0,

   so a run of misses lowers alpha_t (widens the interval) faster than the window alone turns over, and a run of
   covers narrows it. Whatever the drift, alpha_t stays in [-gamma, 1 + gamma] and the long-run miscoverage obeys
   |mean(err_1..T) - alpha| <= (max(alpha_1, 1 - alpha_1) + gamma) / (gamma T) (their Proposition 4.1); with
   gamma = 0 this is plain split conformal on a rolling window.

This is ACI with a lookback window of recent scores, as in the paper's experiments. MAPIE's
`MapieTimeSeriesRegressor` does the same (`partial_fit` rolls a fixed-size array of scores;
`adapt_conformal_inference` applies this update but clips alpha_t to [0, 1]). Here alpha_t is not clipped: the
bound above assumes it, and no clip is needed, since alpha_t <= 0 means an infinite interval, hence a cover.

Defaults: gamma = 0.005, the paper's step; window = 200 scores, enough for the 90% quantile to rest on ~20 scores
above it while an old error level is forgotten within 200 measurements. They were checked, not tuned, on the 24
other device columns of HELP's table (same protocol as benchmarks.help_coverage): every one is covered 89-91% at
nominal 90%, and windows of 50-500 with gamma 0.005-0.02 do about as well. Seed the window before the stream with
out-of-sample residuals of the model (`seed`), e.g. those of a refit without the most recent training rows, on
those rows; with fewer than 1 / alpha - 1 scores (9 at 90%) the upper bound is infinite.

`update(predicted, measured)` takes rows in arrival order, each predicted before it was measured; a batch is the
same as its rows one by one: each row counts as covered or not against the interval it had before it was added.
`to_dict` / `from_dict` give plain JSON (settings, alpha_t, window scores, coverage counts).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from predictors.latency import check_latency

FORMAT = "squeezenas-engine/adaptive-conformal"
VERSION = 1
DEFAULT_LEVEL = 0.9
DEFAULT_WINDOW = 200
DEFAULT_GAMMA = 0.005
_RANK_SLACK = 1e-9


def _check_settings(level: float, window: int, gamma: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level (coverage) must be in (0, 1), got {level}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1 (scores kept), got {window!r}")
    if not (math.isfinite(gamma) and 0 <= gamma < 1):
        raise ValueError(f"gamma (step of alpha_t) must be in [0, 1), got {gamma}")


def residual_scores(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """|log(measured / predicted)| per row, after checking both are 1-D, of one shape, finite and positive."""
    predicted = check_latency(predicted, name="predicted")
    measured = check_latency(measured, name="measured")
    if predicted.shape != measured.shape:
        raise ValueError(f"predicted and measured must have the same shape, got {predicted.shape} and "
                         f"{measured.shape}")
    return np.abs(np.log(measured / predicted))


def window_quantile(scores: np.ndarray, alpha: float) -> float:
    """The ceil((n + 1)(1 - alpha))-th smallest of n scores: inf past n (alpha <= 0 included), 0 below 1."""
    rank = math.ceil((len(scores) + 1) * (1 - alpha) - _RANK_SLACK)
    if rank > len(scores):
        return math.inf
    return 0.0 if rank < 1 else float(np.partition(scores, rank - 1)[rank - 1])


class AdaptiveConformal:
    """Online multiplicative intervals on predicted latency: ACI over a rolling window of scores (module docstring)."""

    def __init__(self, level: float = DEFAULT_LEVEL, window: int = DEFAULT_WINDOW, gamma: float = DEFAULT_GAMMA):
        _check_settings(level, window, gamma)
        self.level, self.window, self.gamma = float(level), window, float(gamma)
        self.alpha_t = 1.0 - self.level
        self._scores: deque[float] = deque(maxlen=window)
        self.count = 0
        self.covered = 0

    @property
    def alpha(self) -> float:
        """Nominal miscoverage, 1 - level."""
        return 1.0 - self.level

    @property
    def scores(self) -> np.ndarray:
        """The window's scores, oldest first."""
        return np.fromiter(self._scores, dtype=np.float64, count=len(self._scores))

    @property
    def quantile(self) -> float:
        """Current half-width q in log space: intervals are [p e^-q, p e^q]."""
        return window_quantile(self.scores, self.alpha_t)

    @property
    def coverage(self) -> float:
        """Fraction of the rows passed to `update` that fell inside their interval (nan before any)."""
        return self.covered / self.count if self.count else math.nan

    def interval(self, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) latency bounds around the predictions; lower >= 0, upper inf when q is."""
        predicted = check_latency(predicted, name="predicted")
        q = self.quantile
        with np.errstate(over="ignore"):
            return predicted * np.exp(-q), predicted * np.exp(q)

    def seed(self, predicted: np.ndarray, measured: np.ndarray) -> None:
        """Add out-of-sample residuals to the window (oldest first) without counting coverage or moving alpha_t."""
        self._scores.extend(residual_scores(predicted, measured).tolist())

    def update(self, predicted: np.ndarray, measured: np.ndarray) -> None:
        """Score rows in arrival order: each is covered or not by the interval it had, then moves alpha_t and
        joins the window. A batch equals its rows one by one."""
        for score in residual_scores(predicted, measured).tolist():
            missed = score > self.quantile
            self.count += 1
            self.covered += not missed
            self.alpha_t += self.gamma * (self.alpha - missed)
            self._scores.append(score)

    def to_dict(self) -> dict:
        """Plain-JSON state: settings, alpha_t, window scores (oldest first), coverage counts."""
        return {"format": FORMAT, "version": VERSION, "level": self.level, "window": self.window,
                "gamma": self.gamma, "alpha_t": self.alpha_t, "scores": list(self._scores), "count": self.count,
                "covered": self.covered}

    @classmethod
    def from_dict(cls, state: dict) -> "AdaptiveConformal":
        """The calibrator `to_dict` described; ValueError when the dict is not one."""
        if state.get("format") != FORMAT or state.get("version") != VERSION:
            raise ValueError(f"not an adaptive conformal state: format {state.get('format')!r} version "
                             f"{state.get('version')!r}, expected {FORMAT!r} version {VERSION}")
        calibrator = cls(state["level"], state["window"], state["gamma"])
        scores = np.asarray(state["scores"], dtype=np.float64)
        if scores.ndim != 1 or len(scores) > calibrator.window or not np.all(np.isfinite(scores) & (scores >= 0)):
            raise ValueError(f"scores must be at most window={calibrator.window} finite values >= 0")
        if not (0 <= state["covered"] <= state["count"]) or not math.isfinite(state["alpha_t"]):
            raise ValueError(f"inconsistent state: covered {state['covered']}, count {state['count']}, "
                             f"alpha_t {state['alpha_t']}")
        calibrator._scores.extend(scores.tolist())
        calibrator.alpha_t = float(state["alpha_t"])
        calibrator.count, calibrator.covered = int(state["count"]), int(state["covered"])
        return calibrator
