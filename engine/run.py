"""`python -m engine.run CONFIG [key=value ...]` (or under torchrun): run an experiment's stages into runs/<name>/.

Stages available so far: the space survey (space.csv), supernet training (supernet.pt, resumable, data-parallel
under torchrun) and the inherited-weight mIoU of the surveyed genotypes (inherited.csv). The latency, search,
selection, retraining and report stages of DESIGN.md are added to this entry as they land.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import yaml
from rich.console import Console

from engine.config import ConfigError, ExperimentConfig, load
from engine.datasets import DatasetError
from engine.distributed import World, cleanup, init_world
from engine.evaluate import evaluator_for
from engine.supernet_training import load_supernet, train_supernet
from engine.survey import run_survey
from engine.train import TrainingDiverged
from spaces import Genotype


def save_resolved(config: ExperimentConfig) -> None:
    """runs/<name>/config.yaml: the configuration after overrides and defaults."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    resolved = config.model_dump(mode="json")
    (config.run_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))


def score_survey(config: ExperimentConfig, world: World, table: pd.DataFrame) -> pd.DataFrame:
    """Inherited-weight mIoU of every surveyed genotype (cached by key) -> runs/<name>/inherited.csv."""
    num_classes = config.space.num_classes
    evaluator = evaluator_for(config, load_supernet(config, num_classes, world.device), world.device)
    table = table.assign(miou=[evaluator.score(Genotype.from_key(key))["miou"] for key in table.key])
    table.to_csv(config.run_dir / "inherited.csv", index=False)
    return table


def summarise(console: Console, config: ExperimentConfig, table: pd.DataFrame) -> None:
    console.print(f"[bold]{config.name}[/]: skeleton {config.space.skeleton}, width {config.space.width}, "
                  f"input {config.space.input_size[0]}x{config.space.input_size[1]}, data {config.data.kind}")
    for row in table[table.source != "random"].itertuples():
        console.print(f"  {row.source:<10} {row.macs / 1e9:8.3f} GMACs {row.params / 1e6:7.3f} M params "
                      f"inherited mIoU {row.miou:.4f}")
    random_rows = table[table.source == "random"]
    console.print(f"  {len(random_rows)} random genotypes: {random_rows.macs.min() / 1e9:.3f}-"
                  f"{random_rows.macs.max() / 1e9:.3f} GMACs, inherited mIoU {random_rows.miou.min():.4f}-"
                  f"{random_rows.miou.max():.4f}")
    console.print(f"  written: {config.run_dir}/")


def run(config: ExperimentConfig, world: World) -> None:
    if world.is_main:
        save_resolved(config)
        survey = pd.read_csv(run_survey(config))
    train_supernet(config, world)
    if world.is_main:
        summarise(Console(), config, score_survey(config, world, survey))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.run", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="experiment YAML, e.g. experiments/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. space.width=0.25")
    args = parser.parse_args(argv)
    try:
        config = load(args.config, args.overrides)
        world = init_world(config.supernet.device)
    except (ConfigError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        run(config, world)
    except (DatasetError, TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
