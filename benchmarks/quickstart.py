"""The quickstart end to end, from empty directories, against its goal of 10 minutes on 2 cores.

    python -m benchmarks.quickstart [--config experiments/quickstart.yaml] [--goal-minutes 10] [--keep DIR]

Runs `python -m engine.run CONFIG runs_dir=<tmp> latency.store=<tmp>/store` in a subprocess (so nothing is cached:
no supernet, no measurements, no study), then the same command again (every stage skipped), and prints the wall
time of each, each stage's seconds in the first run (from the runner's records, runs/<name>/stages/<stage>.json),
the ratio of the first run to the goal, and the picks: their re-measured latency (the run's statistic) and retrained
mIoU, with Spearman's rho between the two over the distinct picked networks (does mIoU rise with latency?).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from scipy.stats import spearmanr

from benchmarks.common import host, scratch


def timed_run(config: str, runs: Path) -> float:
    command = [sys.executable, "-m", "engine.run", config, f"runs_dir={runs}", f"latency.store={runs / 'store'}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def stage_seconds(run_dir: Path) -> list[tuple[str, float]]:
    """Seconds each stage ran, from the runner's records, in the runner's order."""
    from engine.run import STAGE_NAMES

    records = {path.stem: json.loads(path.read_text()) for path in (run_dir / "stages").glob("*.json")}
    return [(name, records[name]["seconds"]) for name in STAGE_NAMES if "seconds" in records.get(name, {})]


def picks(run_dir: Path) -> list[tuple[str, str, float, float]]:
    """(labels, key, re-measured ms, retrained mIoU) of each distinct picked network, by latency."""
    from engine.latency.meter import STAT_FIELD

    statistic = yaml.safe_load((run_dir / "config.yaml").read_text())["latency"]["statistic"]
    found: dict[str, list] = {}
    for path in sorted((run_dir / "selected").glob("*/metrics.json")):
        m = json.loads(path.read_text())
        entry = found.setdefault(m["key"], [[], m["key"], m["measured"][STAT_FIELD[statistic]], m["retrained_miou"]])
        entry[0].append(m["label"])
    return sorted(((" = ".join(labels), key, ms, miou) for labels, key, ms, miou in found.values()),
                  key=lambda row: row[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/quickstart.yaml")
    parser.add_argument("--goal-minutes", type=float, default=10.0)
    parser.add_argument("--keep", type=Path, help="run here (must not exist) instead of a temporary directory")
    args = parser.parse_args()
    print(host())
    with scratch(parser, args.keep) as runs:
        first = timed_run(args.config, runs)
        name = next(p for p in runs.iterdir() if p.is_dir() and p.name != "store")
        second = timed_run(args.config, runs)
        print("| stage | seconds |\n|---|---|")
        for stage, seconds in stage_seconds(name):
            print(f"| {stage} | {seconds:.0f} |")
        rows = picks(name)
        print("\n| picks | key | re-measured ms | retrained mIoU |\n|---|---|---|---|")
        for labels, key, ms, miou in rows:
            print(f"| {labels} | {key} | {ms:.2f} | {miou:.4f} |")
        rho = spearmanr([r[2] for r in rows], [r[3] for r in rows]).statistic if len(rows) > 1 else float("nan")
        print(f"Spearman rho, re-measured latency vs retrained mIoU over {len(rows)} distinct picks: {rho:.2f}")
    print(f"first run {first / 60:.2f} min, rerun {second:.1f} s; first run / goal {args.goal_minutes:g} min = "
          f"{first / 60 / args.goal_minutes:.2f}")


if __name__ == "__main__":
    main()
