"""Adaptive conformal intervals on synthetic latency streams: coverage when exchangeable and under drift, ACI's
long-run guarantee, batch vs row-by-row updates, the JSON round trip, and input checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from predictors.conformal import AdaptiveConformal, window_quantile

ROWS = 2000
NOISE = 0.05


def _stream(seed: int, drift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted latencies over a 7x range and measurements = predicted * exp(drift + noise)."""
    rng = np.random.default_rng(seed)
    predicted = np.exp(rng.uniform(0.0, 2.0, len(drift)))
    return predicted, predicted * np.exp(drift + rng.normal(0.0, NOISE, len(drift)))


def _seeded(level: float = 0.9, **settings) -> AdaptiveConformal:
    calibrator = AdaptiveConformal(level, **settings)
    calibrator.seed(*_stream(1, np.zeros(200)))
    return calibrator


def _covered(calibrator: AdaptiveConformal, predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Row by row: whether each row lies in the interval it had before it was added."""
    hits = np.empty(len(predicted), dtype=bool)
    for i in range(len(predicted)):
        (lower,), (upper,) = calibrator.interval(predicted[i:i + 1])
        hits[i] = lower <= measured[i] <= upper
        calibrator.update(predicted[i:i + 1], measured[i:i + 1])
    return hits


@pytest.mark.parametrize("level", [0.9, 0.8])
def test_exchangeable_stream_is_covered_at_the_nominal_level(level: float) -> None:
    calibrator = _seeded(level)
    calibrator.update(*_stream(2, np.zeros(ROWS)))
    assert calibrator.count == ROWS
    assert abs(calibrator.coverage - level) < 0.025


def test_drift_is_covered_where_a_fixed_quantile_is_not() -> None:
    calibrator = _seeded()
    fixed = window_quantile(calibrator.scores, 0.1)
    predicted, measured = _stream(3, np.linspace(0.0, 0.3, ROWS))  # latency slowly scaled up by 35%
    calibrator.update(predicted, measured)
    assert np.mean(np.abs(np.log(measured / predicted)) <= fixed) < 0.6
    assert abs(calibrator.coverage - 0.9) < 0.025


def test_aci_bounds_long_run_miscoverage_even_without_forgetting() -> None:
    """Gibbs & Candès' Proposition 4.1 on step shifts the window (never full) cannot follow; gamma 0 falls short."""
    drift = np.repeat([0.0, 0.2, -0.1, 0.3], ROWS // 4)
    runs = {gamma: _seeded(window=10 * ROWS, gamma=gamma) for gamma in (0.0, 0.02)}
    for calibrator in runs.values():
        calibrator.update(*_stream(4, drift))
    bound = (0.9 + 0.02) / (0.02 * ROWS)
    assert abs(runs[0.02].coverage - 0.9) <= bound
    assert runs[0.0].coverage < 0.9 - 2 * bound
    assert -0.02 <= runs[0.02].alpha_t <= 1.02


def test_batch_update_equals_row_by_row() -> None:
    predicted, measured = _stream(5, np.linspace(0.0, 0.2, 500))
    batch, single = _seeded(window=100), _seeded(window=100)
    batch.update(predicted, measured)
    hits = _covered(single, predicted, measured)
    assert batch.to_dict() == single.to_dict()
    assert batch.covered == hits.sum() and batch.count == 500
    np.testing.assert_array_equal(batch.interval(predicted)[1], single.interval(predicted)[1])


def test_json_round_trip_gives_identical_intervals_and_updates() -> None:
    calibrator = _seeded(window=150, gamma=0.01)
    predicted, measured = _stream(6, np.linspace(0.0, 0.1, 300))
    calibrator.update(predicted[:200], measured[:200])
    loaded = AdaptiveConformal.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    for a, b in zip(loaded.interval(predicted), calibrator.interval(predicted)):
        np.testing.assert_array_equal(a, b)
    loaded.update(predicted[200:], measured[200:])
    calibrator.update(predicted[200:], measured[200:])
    assert loaded.to_dict() == calibrator.to_dict()


def test_intervals_are_multiplicative_and_infinite_with_too_few_scores() -> None:
    calibrator = AdaptiveConformal(0.9)
    calibrator.seed(np.ones(8), np.full(8, 1.1))  # 9 scores are needed for a finite 90% quantile
    lower, upper = calibrator.interval(np.array([1.0, 5.0]))
    assert lower.tolist() == [0.0, 0.0] and np.isinf(upper).all()
    calibrator.seed(np.ones(1), np.full(1, 1.1))
    lower, upper = calibrator.interval(np.array([1.0, 5.0]))
    np.testing.assert_allclose(upper, [1.1, 5.5])
    np.testing.assert_allclose(lower, [1 / 1.1, 5 / 1.1])
    assert math.isnan(calibrator.coverage) and calibrator.count == 0


@pytest.mark.parametrize("settings, message", [
    ({"level": 0.0}, "level"), ({"level": 1.0}, "level"), ({"level": 90}, "level"),
    ({"window": 0}, "window"), ({"window": 2.5}, "window"), ({"gamma": -0.1}, "gamma"),
    ({"gamma": float("nan")}, "gamma"),
])
def test_bad_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveConformal(**settings)


@pytest.mark.parametrize("predicted, measured, message", [
    ([1.0, 0.0], [1.0, 1.0], "predicted must be finite and positive; row 1"),
    ([1.0, 1.0], [-1.0, 1.0], "measured must be finite and positive; row 0"),
    ([1.0, np.nan], [1.0, 1.0], "predicted must be finite and positive"),
    ([1.0, 1.0], [1.0, np.inf], "measured must be finite and positive"),
    ([1.0, 1.0], [1.0, 1.0, 1.0], "same shape"),
    ([[1.0]], [[1.0]], "1-D"),
])
def test_bad_rows_are_refused_and_leave_the_state_alone(predicted, measured, message: str) -> None:
    calibrator = _seeded()
    before = calibrator.to_dict()
    with pytest.raises(ValueError, match=message):
        calibrator.update(np.array(predicted), np.array(measured))
    assert calibrator.to_dict() == before
    with pytest.raises(ValueError, match="predicted must be finite and positive"):
        calibrator.interval(np.array([2.0, -1.0]))


def test_foreign_state_is_refused() -> None:
    state = _seeded().to_dict()
    with pytest.raises(ValueError, match="not an adaptive conformal state"):
        AdaptiveConformal.from_dict({**state, "format": "other"})
    with pytest.raises(ValueError, match="scores"):
        AdaptiveConformal.from_dict({**state, "scores": [-1.0]})
    with pytest.raises(ValueError, match="inconsistent"):
        AdaptiveConformal.from_dict({**state, "covered": 5, "count": 3})
