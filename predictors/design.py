"""Which genotypes to measure next: a spread over a cheap latency proxy, and active picks near the front.

Both work on plain arrays for a pool of candidate genotypes and return indices into the pool.

`spread(proxy, count, seed, features=None)` is stratified sampling over the proxy's range (MACs, a lookup-table
sum, the source devices' predictions, anything monotone-ish in latency). The range [min, max] is cut into
`count - 1` equal steps; the two extremes (argmin, argmax) are always taken, and for each interior target value
`t_k = min + k * step` one unused pool point is picked from the stratum |proxy - t_k| <= step / 2: the one farthest
(largest Euclidean distance to the nearest point picked so far) in `features` when given, a seeded uniform draw
otherwise (the seed also breaks ties). An empty stratum (a gap in the proxy) falls back to the unused point whose
proxy is nearest t_k. Equal steps in value, not quantiles, so the tails are sampled as densely as the bulk: a
regression fit on the picks gets its leverage from them. Each interior pick lies within step / 2 of its target
when its stratum is not empty, so consecutive picks (sorted by proxy) are at most 2 steps apart; where the pool
itself has a gap wider than a step, at most that gap plus 2 steps.

`active(lower, upper, objective_other, count, measured_mask=None)` follows Pareto active learning (Zuluaga et al.,
ICML 2013): latency is minimised and `objective_other` (e.g. mIoU) maximised. A point is *possibly Pareto-optimal*
when no other point pessimistically dominates its optimistic corner, i.e. no j has upper_j <= lower_i and
other_j >= other_i (one of them strict). Points are ranked by how many points do that (0 = possibly optimal, the
optimistic front and everything that might still join it), then by relative interval width
(upper - lower) / ((upper + lower) / 2), widest first, then by the other objective, highest first. Measured points
(`measured_mask`; pass lower = upper = the measurement) take part as dominators but are never picked.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 1024


def _check_count(count: int, pool: int, measured: int = 0) -> None:
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if count > pool - measured:
        raise ValueError(f"asked for {count} genotypes but the pool has only {pool - measured} to choose from "
                         f"({pool} in the pool, {measured} already measured); ask for fewer or grow the pool")


def _vector(values: np.ndarray, name: str, rows: int | None = None) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or (rows is not None and len(values) != rows):
        expected = "a 1-D array" if rows is None else f"a 1-D array of {rows} values (one per pool point)"
        raise ValueError(f"{name} must be {expected}, got shape {values.shape}")
    return values


def _farthest(stratum: np.ndarray, features: np.ndarray, chosen: list[int], rng: np.random.Generator) -> int:
    """The stratum member farthest from its nearest already chosen point in feature space (ties at random)."""
    distance = np.min(np.linalg.norm(features[stratum, None, :] - features[None, chosen, :], axis=2), axis=1)
    best = np.flatnonzero(distance >= distance.max() - 1e-12 * max(1.0, distance.max()))
    return int(stratum[rng.choice(best)])


def spread(proxy: np.ndarray, count: int, seed: int, features: np.ndarray | None = None) -> np.ndarray:
    """`count` pool indices spread evenly over the range of `proxy`, extremes included (module docstring).

    proxy: [pool] cheap latency proxy per candidate genotype; features: optional [pool, d] array used to pick,
    within a stratum, the point farthest from those already picked. Returns indices in the order picked
    (minimum, maximum, then the interior targets from low to high)."""
    proxy = _vector(proxy, "proxy")
    if not np.isfinite(proxy).all():
        raise ValueError(f"proxy must be finite; row {np.flatnonzero(~np.isfinite(proxy))[0]} is not")
    if features is not None:
        features = np.asarray(features, dtype=np.float64).reshape(len(proxy), -1)
    _check_count(count, len(proxy))
    rng = np.random.default_rng(seed)
    lo, hi = int(np.argmin(proxy)), int(np.argmax(proxy))
    if count == 1:
        return np.array([int(np.argmin(np.abs(proxy - (proxy[lo] + proxy[hi]) / 2)))])
    chosen = [lo, hi] if lo != hi else [lo, int(rng.choice(np.delete(np.arange(len(proxy)), lo)))]
    unused = np.ones(len(proxy), dtype=bool)
    unused[chosen] = False
    step = (proxy[hi] - proxy[lo]) / (count - 1)
    for k in range(1, count - 1):
        target = proxy[lo] + k * step
        distance = np.where(unused, np.abs(proxy - target), np.inf)
        stratum = np.flatnonzero(distance <= step / 2)
        if len(stratum) == 0:
            stratum = np.flatnonzero(distance == distance.min())
        pick = _farthest(stratum, features, chosen, rng) if features is not None else int(rng.choice(stratum))
        chosen.append(pick)
        unused[pick] = False
    return np.array(chosen)


def domination_counts(lower: np.ndarray, upper: np.ndarray, objective_other: np.ndarray) -> np.ndarray:
    """For each point i, how many j != i have upper_j <= lower_i and other_j >= other_i, one of them strict."""
    counts = np.zeros(len(lower), dtype=np.int64)
    for start in range(0, len(lower), _CHUNK):
        rows = slice(start, start + _CHUNK)
        faster = upper[None, :] <= lower[rows, None]
        better = objective_other[None, :] >= objective_other[rows, None]
        strict = (upper[None, :] < lower[rows, None]) | (objective_other[None, :] > objective_other[rows, None])
        dominated = faster & better & strict
        counts[rows] = dominated.sum(axis=1)
    return counts


def relative_width(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """(upper - lower) / midpoint; inf for an unbounded interval, 0 for a point interval at 0."""
    middle = (upper + lower) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        width = (upper - lower) / middle
    return np.where(np.isinf(upper), np.inf, np.where(middle > 0, width, 0.0))


def active(lower: np.ndarray, upper: np.ndarray, objective_other: np.ndarray, count: int,
           measured_mask: np.ndarray | None = None) -> np.ndarray:
    """`count` unmeasured pool indices, possibly Pareto-optimal points with the widest relative latency intervals
    first (module docstring). lower/upper: [pool] latency interval (upper may be inf); objective_other: [pool],
    higher is better; measured_mask: [pool] bool, True where the latency is already measured."""
    lower = _vector(lower, "lower")
    upper = _vector(upper, "upper", len(lower))
    other = _vector(objective_other, "objective_other", len(lower))
    measured = np.zeros(len(lower), dtype=bool) if measured_mask is None else \
        np.asarray(measured_mask, dtype=bool).reshape(-1)
    if len(measured) != len(lower):
        raise ValueError(f"measured_mask must have {len(lower)} entries, got {len(measured)}")
    if not (np.isfinite(lower).all() and np.isfinite(other).all() and not np.isnan(upper).any()):
        raise ValueError("lower and objective_other must be finite and upper not NaN (inf is allowed)")
    if (upper < lower).any():
        raise ValueError(f"upper < lower at pool index {np.flatnonzero(upper < lower)[0]}")
    _check_count(count, len(lower), int(measured.sum()))
    dominated = domination_counts(lower, upper, other)
    width = relative_width(lower, upper)
    candidates = np.flatnonzero(~measured)
    order = np.lexsort((-other[candidates], -width[candidates], dominated[candidates]))
    return candidates[order[:count]]
