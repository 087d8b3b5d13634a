"""The quickstart end to end, from empty directories, against its goal of 10 minutes on 2 cores.

    python -m benchmarks.quickstart [--config experiments/quickstart.yaml] [--goal-minutes 10] [--keep DIR]

Runs `python -m engine.run CONFIG runs_dir=<tmp> latency.store=<tmp>/store` in a subprocess (so nothing is cached:
no supernet, no measurements, no study), then the same command again (every stage skipped), and prints the wall
time of each, each stage's seconds in the first run (from the runner's records, runs/<name>/stages/<stage>.json)
and the ratio of the first run to the goal.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

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
    print(f"first run {first / 60:.2f} min, rerun {second:.1f} s; first run / goal {args.goal_minutes:g} min = "
          f"{first / 60 / args.goal_minutes:.2f}")


if __name__ == "__main__":
    main()
