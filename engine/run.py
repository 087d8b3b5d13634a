"""`python -m engine.run CONFIG [key=value ...]` (or under torchrun): run an experiment's stages into runs/<name>/.

Stages (DESIGN.md): space (space.csv), supernet (supernet.pt; data-parallel under torchrun), latency (measure on
the device, fit the predictor), search (NSGA-II, Optuna study, front), select (budgets and knee), audit (only
with audit.enabled: inherited vs stand-alone mIoU ranks of front points; with audit.baseline, the hand-made
k3_e6 network against the searched one at the same measured latency), retrain
(stand-alone training, ONNX export, re-measurement; data-parallel under torchrun) and report (report.html). A
stage whose outputs exist is not redone; `--stages a,b` runs only those. The device is opened first, so an
unreachable agent stops the run before any training. Exit codes: 0 done, 2 bad configuration or device, 1 bad
data, diverged training or a failed export.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import lru_cache
from pathlib import Path

import pandas as pd
import torch.distributed as dist
import yaml
from rich.console import Console

from engine.audit import run_audit
from engine.baseline import run_baseline
from engine.config import STAGES, ConfigError, ExperimentConfig, load
from engine.datasets import DatasetError
from engine.distributed import World, cleanup, init_world
from engine.evaluate import evaluator_for, validation_batches
from engine.export import ExportMismatch
from engine.latency import DeviceError, Meter, open_meter, run_latency
from engine.report import write_report
from engine.retrain import run_retrain
from engine.search import StudyMismatch, run_search
from engine.select import run_select
from engine.supernet_training import load_supernet, train_supernet
from engine.survey import run_survey
from engine.train import TrainingDiverged
from hardware.client import AgentError


def save_resolved(config: ExperimentConfig) -> None:
    """runs/<name>/config.yaml: the configuration after overrides and defaults."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    path = config.run_dir / "config.yaml"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def mean_iou_scorer(config: ExperimentConfig, world: World):
    """Inherited mIoU of a genotype, the supernet loaded on first use (cached in runs/<name>/inherited.jsonl)."""

    @lru_cache(maxsize=1)
    def evaluator():
        return evaluator_for(config, load_supernet(config, config.space.num_classes, world.device), world.device)

    return lambda genotype: evaluator().score(genotype)["miou"]


def main_stages(config: ExperimentConfig, world: World, stages: set[str], meter: Meter | None) -> list[str]:
    """The stages that run on the main process only, between supernet training and retraining; their notes."""
    notes = []
    if "latency" in stages:
        run_latency(config, meter, mean_iou_scorer(config, world))
    if "search" in stages:
        run_search(config, world.device, meter)
    if "select" in stages:
        notes += run_select(config)[1]
    return notes


def run(config: ExperimentConfig, world: World, stages: set[str]) -> None:
    meter, notes = None, []
    if world.is_main:
        save_resolved(config)
        if stages & {"latency", "search", "audit", "retrain"}:
            meter = open_meter(config)
            if meter is None:
                notes.append("the device is unreachable: using stored measurements, nothing is re-measured")
        if "space" in stages:
            run_survey(config)
    if "supernet" in stages:
        train_supernet(config, world)
    if world.is_main:
        notes += main_stages(config, world, stages, meter)
    if world.distributed:
        dist.barrier()
    if "audit" in stages and config.audit.enabled:
        run_audit(config, world)
        if config.audit.baseline:
            run_baseline(config, world, meter, validation_batches(config))
    if "retrain" in stages:
        run_retrain(config, world, meter)
    if world.is_main:
        if "report" in stages and not report_is_current(config.run_dir):
            write_report(config.run_dir)
        summarise(Console(), config, notes)


def report_is_current(run_dir: Path) -> bool:
    """report.html exists and is newer than every file it is made from."""
    report = run_dir / "report.html"
    if not report.exists():
        return False
    inputs = [*run_dir.glob("*.csv"), *run_dir.glob("latency/*.*"), *run_dir.glob("selected/*/metrics.json")]
    return all(path.stat().st_mtime_ns <= report.stat().st_mtime_ns for path in inputs)


def summarise(console: Console, config: ExperimentConfig, notes: list[str]) -> None:
    """Front size, picked networks and where the report is."""
    run_dir = config.run_dir
    console.print(f"[bold]{config.name}[/]: skeleton {config.space.skeleton}, width {config.space.width}, "
                  f"input {config.space.input_size[0]}x{config.space.input_size[1]}, data {config.data.kind}")
    if (run_dir / "front.csv").exists():
        evaluations = pd.read_csv(run_dir / "evaluations.csv")
        console.print(f"  {len(evaluations)} subnets evaluated, {int(evaluations.front.sum())} on the front")
    for folder in sorted((run_dir / "selected").glob("*/metrics.json")):
        m = json.loads(folder.read_text())
        measured = f"{m['measured']['median_ms']:.2f} ms measured" if m.get("measured") else "not re-measured"
        console.print(f"  {m['label']:<8} {m['key']}: predicted {m['predicted_ms']:.2f} ms, "
                      f"{measured}; mIoU inherited {m['inherited_miou']:.4f}, retrained {m['retrained_miou']:.4f}")
    for note in notes:
        console.print(f"  [yellow]note[/]: {note}")
    if (run_dir / "report.html").exists():
        console.print(f"  report: {run_dir / 'report.html'}")
    console.print(f"  trials: optuna-dashboard sqlite:///{run_dir / 'study.db'}")


def parse_stages(text: str | None) -> set[str]:
    if text is None:
        return set(STAGES)
    chosen = {part.strip() for part in text.split(",") if part.strip()}
    unknown = chosen - set(STAGES)
    if unknown or not chosen:
        raise ConfigError(f"--stages: unknown stage {', '.join(sorted(unknown)) or '(none)'}; "
                          f"known: {', '.join(STAGES)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.run", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="experiment YAML, e.g. experiments/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. space.width=0.25")
    parser.add_argument("--stages", help=f"comma-separated subset of {','.join(STAGES)} (default: all)")
    args = parser.parse_args(argv)
    try:
        stages = parse_stages(args.stages)
        config = load(args.config, args.overrides)
        world = init_world(config.supernet.device)
    except (ConfigError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        run(config, world, stages)
    except (ConfigError, DeviceError, AgentError, StudyMismatch) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (DatasetError, TrainingDiverged, ExportMismatch) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
