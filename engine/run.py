"""`python -m engine.run CONFIG [key=value ...]`: run an experiment's stages into runs/<name>/.

Stages available so far: the space survey (engine.survey). The data, supernet training, latency, search,
selection, retraining and report stages of DESIGN.md are added to this entry as they land.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import yaml
from rich.console import Console

from engine.config import ConfigError, ExperimentConfig, load
from engine.survey import run_survey


def save_resolved(config: ExperimentConfig) -> None:
    """runs/<name>/config.yaml: the configuration after overrides and defaults."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    resolved = config.model_dump(mode="json")
    (config.run_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))


def summarise(console: Console, config: ExperimentConfig, table: pd.DataFrame) -> None:
    named = table[table.source != "random"]
    console.print(f"[bold]{config.name}[/]: skeleton {config.space.skeleton}, width {config.space.width}, "
                  f"input {config.space.input_size[0]}x{config.space.input_size[1]}")
    for row in named.itertuples():
        console.print(f"  {row.source:<10} {row.macs / 1e9:8.3f} GMACs {row.params / 1e6:7.3f} M params")
    random_rows = table[table.source == "random"]
    console.print(f"  {len(random_rows)} random genotypes: {random_rows.macs.min() / 1e9:.3f}-"
                  f"{random_rows.macs.max() / 1e9:.3f} GMACs; largest supernet/subnet output difference "
                  f"{table.supernet_max_abs_diff.max():.2e}")
    console.print(f"  written: {config.run_dir}/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.run", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="experiment YAML, e.g. experiments/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. space.width=0.25")
    args = parser.parse_args(argv)
    console = Console()
    try:
        config = load(args.config, args.overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    save_resolved(config)
    summarise(console, config, pd.read_csv(run_survey(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
