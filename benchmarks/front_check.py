"""Does the front sit where the device says? The one-shot predictor against the measuring rounds, side by side.

    python -m benchmarks.front_check [--config experiments/quickstart.yaml] [--passes 3] [--keep DIR] [key=value ...]

From empty directories and an empty measurement store: the config's space, supernet and latency stages run once;
the search then runs twice on copies of that run, as "one-shot" (search.measure_limit=0: today's search, the front
placed by the predictor alone) and as "rounds" (the config's measuring rounds). Then every front point of both,
and as many random subnets each search evaluated, are re-measured `passes` times with the run's own protocol,
all of them interleaved in a fresh seeded order each pass (machine drift hits every group alike); a genotype's
re-measurement is the median of its passes. For each search and group it prints the median ratio of the
re-measurement to the latency the front claims (one-shot: its prediction; rounds: its measured_ms), the share within
±10%, the worst ratio, and the measurements each search spent (the latency stage's, the same for both, and the
search's own). The issue's goal for the rounds' front: >= 90% within ±10%, median ratio within 0.95-1.05.

The same passes re-measure the latency stage's held-out genotypes ("anchors": measured once by the run, chosen by
no search): their ratios are the host's own repeatability, the floor no front can beat, and their median is the
host's speed now against then. The table repeats every ratio divided by that median ("normalised"): on a shared CPU
whose speed drifts by ±10% within minutes, this is the comparison that says whether a front is biased.
`key=value` overrides go to every run (e.g. latency.statistic=min). `--sources FOLDER` starts the measurement store as
a copy of that store instead of empty: other devices' measurements for a run with latency.transfer.enabled=true.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import host
from benchmarks.common import scratch as scratch_folder
from engine.search.references import split_references

ARMS = {"one-shot": ["search.measure_limit=0"], "rounds": []}


def run(config: str, runs: Path, store: Path, *overrides: str) -> None:
    command = [sys.executable, "-m", "engine.run", config, f"runs_dir={runs}", f"latency.store={store}", *overrides]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def searched(config: str, scratch: Path, overrides: list[str], sources: Path | None) -> dict[str, Path]:
    """The run directory of each arm, searched from one shared latency stage (the store a copy of `sources`)."""
    store = scratch / "store"
    if sources is not None:
        shutil.copytree(sources, store)
    run(config, scratch / "base", store, *overrides, "--stages", "space,supernet,latency")
    (name,) = [p.name for p in (scratch / "base").iterdir() if p.is_dir()]
    arms = {}
    for arm, arm_overrides in ARMS.items():
        shutil.copytree(scratch / "base", scratch / arm)
        run(config, scratch / arm, store, *overrides, *arm_overrides, "--stages", "search")
        arms[arm] = scratch / arm / name
    return arms


def groups(arms: dict[str, Path], seed: int) -> pd.DataFrame:
    """(arm, group, key, claimed_ms): each arm's front and as many random subnets it evaluated off its front."""
    rng = np.random.default_rng(seed)
    rows = []
    for arm, run_dir in arms.items():
        evaluations = split_references(pd.read_csv(run_dir / "evaluations.csv"))[0]
        front = evaluations[evaluations.front]
        others = evaluations[~evaluations.front]
        random = others.iloc[rng.choice(len(others), min(len(front), len(others)), replace=False)]
        for group, table in (("front", front), ("random", random)):
            claimed = table.latency_ms if arm == "rounds" else table.predicted_ms
            rows += [{"arm": arm, "group": group, "key": key, "claimed_ms": ms} for key, ms in zip(table.key, claimed)]
    heldout = pd.read_csv(next(iter(arms.values())) / "latency" / "heldout.csv")
    rows += [{"arm": "both", "group": "anchors (latency stage's held-out)", "key": key, "claimed_ms": ms}
             for key, ms in zip(heldout.key, heldout.measured_ms)]
    return pd.DataFrame(rows)


def remeasure(config_path: str, run_dir: Path, keys: list[str], passes: int, seed: int) -> dict[str, float]:
    """Median over `passes` interleaved re-measurements (the run's protocol and statistic) of each key."""
    from engine.config import load
    from engine.latency.meter import STAT_FIELD, Meter
    from spaces import Genotype, build

    config = load(str(run_dir / "config.yaml"))
    meter = Meter(config)
    space, field = config.space, STAT_FIELD[config.latency.statistic]
    networks = {key: build(Genotype.from_key(key), space.width, space.num_classes).eval() for key in keys}
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {key: [] for key in keys}
    for _ in range(passes):
        for i in rng.permutation(len(keys)):
            samples[keys[i]].append(getattr(meter.measure_network(networks[keys[i]]).stats, field))
    return {key: float(np.median(values)) for key, values in samples.items()}


def summary(ratio: np.ndarray) -> str:
    """'median | share within ±10% | worst' of some ratios (a markdown cell group)."""
    worst = ratio[np.argmax(np.abs(np.log(ratio)))]
    return f"{np.median(ratio):.3f} | {100 * np.mean(np.abs(ratio - 1) <= 0.1):.0f}% | {worst:.2f}"


def spent(run_dir: Path) -> tuple[int, int]:
    stage = len(pd.read_csv(run_dir / "latency" / "measurements.csv"))
    own = run_dir / "search" / "measurements.csv"
    return stage, len(pd.read_csv(own)) if own.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/quickstart.yaml")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="run here (must not exist) instead of a temporary directory")
    parser.add_argument("--sources", type=Path, help="a measurement store to start from (transfer sources)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    args = parser.parse_args()
    print(host(), *args.overrides)
    with scratch_folder(parser, args.keep) as scratch:
        arms = searched(args.config, scratch, args.overrides, args.sources)
        table = groups(arms, args.seed)
        measured = remeasure(args.config, next(iter(arms.values())), list(dict.fromkeys(table.key)), args.passes,
                             args.seed)
        table["remeasured_ms"] = table.key.map(measured)
        table["ratio"] = table.remeasured_ms / table.claimed_ms
        drift = float(table[table.arm == "both"].ratio.median())
        print(f"host speed now / at the run (anchors' median ratio): {drift:.3f}")
        print("| search | group | points | median ratio | within ±10% | worst | normalised: median | within ±10% | "
              "worst | measurements (latency stage + search) |\n|---|---|---|---|---|---|---|---|---|---|")
        for (arm, group), rows in table.groupby(["arm", "group"], sort=False):
            stage, own = spent(arms.get(arm, next(iter(arms.values()))))
            ratio = rows.ratio.to_numpy()
            print(f"| {arm} | {group} | {len(rows)} | {summary(ratio)} | {summary(ratio / drift)} | "
                  f"{stage} + {own if arm != 'both' else '-'} |")
        if args.keep:
            table.to_csv(scratch / "front_check.csv", index=False)


if __name__ == "__main__":
    main()
