"""Which latency statistic repeats: the same networks in two measurement stores of one device, taken at two times.

    python -m benchmarks.store_agreement STORE_A STORE_B [--device amd-epyc]

Two runs' measurement stores (`latency.store`) hold, for the networks both measured with the same key (space,
genotype, resolution, backend, batch, threads) and as many timed runs, each statistic of those runs. For each
statistic (median, mean, 90th percentile, min) it prints the common factor between the two times (the median ratio
of latency B / A: above 1, the host was slower when B measured) and, after dividing by it, the share of networks
within ±10% and ±5% and the 90th percentile of |ratio - 1|: how far one network's measurement moves between runs
beyond the host's overall drift, i.e. what a front placed on measurements can promise a later re-measurement.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import host
from hardware.store import MeasurementStore

STATISTICS = ("median_ms", "mean_ms", "p90_ms", "min_ms")


def store(folder: Path, device: str | None) -> MeasurementStore:
    """The store of `device` in `folder` (the only one there when no device is named)."""
    if device is None:
        names = sorted(p.stem for p in folder.glob("*.csv"))
        if len(names) != 1:
            raise SystemExit(f"{folder}: {len(names)} device files ({', '.join(names)}); name one with --device")
        device = names[0]
    if not (folder / f"{device}.csv").is_file():
        raise SystemExit(f"{folder}: no measurements of device {device!r}")
    return MeasurementStore(device, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--device", help="the device file of both stores (default: the only one in each)")
    args = parser.parse_args()
    first, second = store(args.first, args.device).load(), store(args.second, args.device).load()
    shared = set(first) & set(second)
    common = sorted(k for k in shared if first[k].stats.samples == second[k].stats.samples)
    if len(common) < 2:
        parser.error(f"the two stores share {len(common)} measurements of one protocol; nothing to compare")
    print(f"{host()}; {len(common)} networks in both stores with as many timed runs ({len(shared) - len(common)} "
          f"left out: different numbers of timed runs)")
    print("| statistic | common factor (B / A) | within ±10% | within ±5% | 90th percentile of abs(ratio - 1) |\n"
          "|---|---|---|---|---|")
    for statistic in STATISTICS:
        ratio = np.array([getattr(second[k].stats, statistic) / getattr(first[k].stats, statistic) for k in common])
        deviation = np.abs(ratio / np.median(ratio) - 1)
        print(f"| {statistic.removesuffix('_ms')} | {np.median(ratio):.3f} | {np.mean(deviation <= 0.1):.0%} | "
              f"{np.mean(deviation <= 0.05):.0%} | {np.quantile(deviation, 0.9):.3f} |")


if __name__ == "__main__":
    main()
