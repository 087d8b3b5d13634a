"""Choosing genotypes to measure: spread over a latency proxy's range, and active picks near the optimistic front."""

from __future__ import annotations

import numpy as np
import pytest

from predictors.design import active, domination_counts, spread


def _pool(size: int = 1000) -> np.ndarray:
    return np.random.default_rng(0).lognormal(3.0, 0.3, size)


@pytest.mark.parametrize("count", [2, 5, 10, 37])
@pytest.mark.parametrize("proxy", [_pool(), np.random.default_rng(1).uniform(5.0, 50.0, 1000)],
                         ids=["lognormal", "uniform"])
def test_spread_covers_the_range_without_duplicates(proxy: np.ndarray, count: int) -> None:
    picked = spread(proxy, count, seed=3)
    assert len(picked) == count and len(set(picked.tolist())) == count
    assert {int(np.argmin(proxy)), int(np.argmax(proxy))} <= set(picked.tolist())
    step = (proxy.max() - proxy.min()) / (count - 1)
    pool_gap = np.diff(np.sort(proxy)).max()
    bound = 2 * step + (pool_gap if pool_gap > step else 0.0)
    assert np.diff(np.sort(proxy[picked])).max() <= bound + 1e-12


def test_spread_is_deterministic_per_seed() -> None:
    proxy = _pool()
    assert np.array_equal(spread(proxy, 10, seed=1), spread(proxy, 10, seed=1))
    assert not np.array_equal(spread(proxy, 10, seed=1), spread(proxy, 10, seed=2))


def test_spread_fills_gaps_with_the_nearest_points() -> None:
    proxy = np.concatenate([np.linspace(0.0, 1.0, 50), np.linspace(9.0, 10.0, 50)])
    picked = spread(proxy, 10, seed=0)
    assert len(set(picked.tolist())) == 10 and {0, 99} <= set(picked.tolist())
    assert (proxy[picked] > 1.0).sum() >= 4 and (proxy[picked] < 9.0).sum() >= 4


def test_spread_breaks_ties_by_distance_in_feature_space() -> None:
    proxy = np.array([0.0, 0.5, 0.5, 0.5, 1.0])
    features = np.array([[0.0], [0.1], [5.0], [0.2], [0.0]])
    assert spread(proxy, 3, seed=0, features=features).tolist() == [0, 4, 2]


def test_spread_takes_the_whole_pool_and_refuses_more() -> None:
    proxy = _pool(8)
    assert sorted(spread(proxy, 8, seed=0).tolist()) == list(range(8))
    with pytest.raises(ValueError, match="only 8"):
        spread(proxy, 9, seed=0)
    with pytest.raises(ValueError, match="at least 1"):
        spread(proxy, 0, seed=0)


def _front_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Latency intervals and mIoU: 0 is measured (and surely beaten by 2); 1 wide and 2 narrow near the front;
    3 widest but surely slower and worse than 0, 1 and 2; 4 a narrow fast point; 5 surely beaten by 4."""
    lower = np.array([10.0, 8.0, 9.0, 20.0, 5.0, 7.0])
    upper = np.array([10.0, 12.0, 9.5, 40.0, 6.0, 8.0])
    miou = np.array([0.50, 0.60, 0.60, 0.40, 0.30, 0.25])
    measured = np.array([True, False, False, False, False, False])
    return lower, upper, miou, measured


def test_active_prefers_uncertain_points_near_the_front() -> None:
    lower, upper, miou, measured = _front_case()
    assert active(lower, upper, miou, 2, measured).tolist() == [1, 4]
    assert active(lower, upper, miou, 5, measured).tolist() == [1, 4, 2, 5, 3]
    assert domination_counts(lower, upper, miou).tolist() == [1, 0, 0, 3, 0, 1]


def test_active_treats_unbounded_intervals_as_widest() -> None:
    lower, upper, miou, measured = _front_case()
    upper[2] = np.inf
    assert active(lower, upper, miou, 1, measured).tolist() == [2]


def test_active_never_picks_measured_points() -> None:
    lower, upper, miou, _ = _front_case()
    measured = np.array([False, True, False, False, True, False])
    picked = active(lower, upper, miou, 4, measured)
    assert not set(picked.tolist()) & {1, 4}
    with pytest.raises(ValueError, match="4 to choose from"):
        active(lower, upper, miou, 5, measured)
