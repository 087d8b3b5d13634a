"""Full-evaluation NSGA-II against the surrogate-assisted search: hypervolume against true inherited evaluations.

    python -m benchmarks.surrogate_search [--config experiments/quickstart.yaml] [--seeds 0 1 2]
        [--full-generations 12] [--rounds 12] [--per-round 4] [--inner-generations 20] [--keep DIR [--resume]]
        [key=value ...]

The config's space, supernet and latency stages run once (fresh directories and measurement store; `key=value`
overrides go to every run, e.g. data.root=... for CamVid). Then, for each seed, on copies of that run and in this
process, the search stage runs twice with search.measure_limit=0 (latency predicted by the run's one predictor, so
only the accuracy side differs): "full" (NSGA-II, search.population x --full-generations, every subnet truly
evaluated) and "surrogate" (search.accuracy_surrogate: its `initial` subnets, 12 by default, then --rounds rounds
of --per-round, each after --inner-generations on the surrogate). The seed changes the search and, for synthetic data,
the validation images, so each seed's two searches are compared with each other. Hypervolume: objectives (-true
inherited mIoU, predicted latency / L) against (0, 1), L = 1.1 x the largest predicted latency either search of the
seed saw. Prints per seed the final hypervolume of each, the surrogate's share of full's hypervolume and of its
evaluations, then the mean curve (hypervolume after n true evaluations) of both. Goal (issue 14): >= 99% of full's
final hypervolume with <= 25% of its evaluations. `--resume` goes on in an existing --keep folder: finished stages,
searches and evaluations are kept (delete an arm's folder, e.g. surrogate-0, to search it again, for instance with
other search.accuracy_surrogate settings).
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
from engine.search.fronts import hypervolume
from engine.search.references import split_references


def base_run(config: str, scratch: Path, overrides: list[str]) -> Path:
    command = [sys.executable, "-m", "engine.run", config, f"runs_dir={scratch / 'base'}",
               f"latency.store={scratch / 'store'}", *overrides, "--stages", "space,supernet,latency"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (run,) = [p for p in (scratch / "base").iterdir() if p.is_dir()]
    return run


def search(config_path: str, base: Path, folder: Path, overrides: list[str]) -> pd.DataFrame:
    """The search stage on a copy of the base run, in this process; its evaluations by trial number."""
    from engine.config import load
    from engine.runner import Context
    from engine.stages import search as stage
    from engine.training.distributed import init_world

    if not (folder / base.name).exists():
        shutil.copytree(base, folder / base.name)
    config = load(config_path, [f"runs_dir={folder}", *overrides, "search.measure_limit=0",
                                "search.strategies=[evolution]"])
    stage.run(Context(config, config.paths, init_world("cpu")))
    return split_references(pd.read_csv(config.paths.evaluations))[0].sort_values("trial")


def curve(evaluations: pd.DataFrame, reference_ms: float) -> np.ndarray:
    """Hypervolume after each true evaluation, in trial order."""
    F = np.stack([-evaluations.miou.to_numpy(), evaluations.latency_ms.to_numpy() / reference_ms], axis=1)
    return np.array([hypervolume(F[: n + 1], [0.0, 1.0]) for n in range(len(F))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/quickstart.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--full-generations", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--per-round", type=int, default=4)
    parser.add_argument("--inner-generations", type=int, default=20, help="generations on the surrogate per round")
    parser.add_argument("--keep", type=Path, help="run here (must not exist) instead of a temporary directory")
    parser.add_argument("--resume", action="store_true", help="go on in the existing --keep folder")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    args = parser.parse_args()
    print(host())
    if args.resume and (args.keep is None or not args.keep.is_dir()):
        parser.error("--resume: give the folder of an earlier run as --keep")
    with scratch_folder(parser, None if args.resume else args.keep) as temporary:
        scratch = args.keep if args.resume else temporary
        base = base_run(args.config, scratch, args.overrides)
        arms = {"full": [f"search.generations={args.full_generations}", "search.rounds=1"],
                "surrogate": ["search.accuracy_surrogate.enabled=true", f"search.rounds={args.rounds}",
                              f"search.generations={args.inner_generations}",
                              f"search.accuracy_surrogate.per_round={args.per_round}"]}
        curves: dict[str, list[np.ndarray]] = {arm: [] for arm in arms}
        print("| seed | full: evaluations | full: hypervolume | surrogate: evaluations | surrogate: hypervolume | "
              "share of full's hypervolume | share of its evaluations | full's hypervolume at the surrogate's "
              "evaluations |\n|---|---|---|---|---|---|---|---|")
        for seed in args.seeds:
            found = {arm: search(args.config, base, scratch / f"{arm}-{seed}", [*args.overrides, f"seed={seed}", *o])
                     for arm, o in arms.items()}
            reference = 1.1 * max(float(table.latency_ms.max()) for table in found.values())
            full, surrogate = (curve(found[arm], reference) for arm in arms)
            curves["full"].append(full)
            curves["surrogate"].append(surrogate)
            at = full[min(len(surrogate), len(full)) - 1]
            print(f"| {seed} | {len(full)} | {full[-1]:.4f} | {len(surrogate)} | {surrogate[-1]:.4f} | "
                  f"{100 * surrogate[-1] / full[-1]:.1f}% | {100 * len(surrogate) / len(full):.0f}% | {at:.4f} |")
        print("\nmean hypervolume after n true evaluations\n| n | full | surrogate |\n|---|---|---|")
        for n in sorted({10, 20, 30, 40, 50, 60, 80, 100, 150, 200, 250, 300}):
            cells = [np.mean([c[n - 1] for c in curves[arm]]) if all(len(c) >= n for c in curves[arm]) else None
                     for arm in arms]
            if any(cell is not None for cell in cells):
                print(f"| {n} | " + " | ".join("-" if c is None else f"{c:.4f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
