"""The quickstart end to end, from empty directories, against its goal of 10 minutes on 2 cores.

    python -m benchmarks.quickstart [--config experiments/quickstart.yaml] [--goal-minutes 10] [--keep DIR]

Runs `python -m engine.run CONFIG runs_dir=<tmp> latency.store=<tmp>/store` in a subprocess (so nothing is cached:
no supernet, no measurements, no study), then the same command again (every stage skipped), and prints the wall
time of each, the share of each stage's own outputs in the first run (by the time its last output was written)
and the ratio of the first run to the goal.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# each stage's last-written output, in order
STAGE_OUTPUTS = (("space", "space.csv"), ("supernet", "supernet.pt"), ("latency", "latency/accuracy.json"),
                 ("search", "front.csv"), ("select", "selected/selection.json"), ("retrain", "selected"),
                 ("report", "report.html"))


def timed_run(config: str, runs: Path) -> float:
    command = [sys.executable, "-m", "engine.run", config, f"runs_dir={runs}", f"latency.store={runs / 'store'}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def stage_seconds(run_dir: Path, started: float) -> list[tuple[str, float]]:
    """Seconds each stage took, from the modification times of the stages' outputs (in order)."""
    marks, last = [], started
    for stage, relative in STAGE_OUTPUTS:
        path = run_dir / relative
        if not path.exists():
            continue
        mtime = max(p.stat().st_mtime for p in [path, *path.rglob("*")]) if path.is_dir() else path.stat().st_mtime
        marks.append((stage, max(0.0, mtime - last)))
        last = max(last, mtime)
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/quickstart.yaml")
    parser.add_argument("--goal-minutes", type=float, default=10.0)
    parser.add_argument("--keep", type=Path, help="run here (must not exist) instead of a temporary directory")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as scratch:
        runs = args.keep or Path(scratch) / "runs"
        if runs.exists():
            parser.error(f"--keep {runs} exists; the benchmark starts from empty directories")
        started = time.time()
        first = timed_run(args.config, runs)
        name = next(p for p in runs.iterdir() if p.is_dir() and p.name != "store")
        second = timed_run(args.config, runs)
        print("| stage | seconds |\n|---|---|")
        for stage, seconds in stage_seconds(name, started):
            print(f"| {stage} | {seconds:.0f} |")
    print(f"first run {first / 60:.2f} min, rerun {second:.1f} s; first run / goal {args.goal_minutes:g} min = "
          f"{first / 60 / args.goal_minutes:.2f}")


if __name__ == "__main__":
    main()
