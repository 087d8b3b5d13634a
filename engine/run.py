"""`python -m engine.run CONFIG [key=value ...] [--stages a,b]` (or under torchrun): run an experiment into
runs/<name>/; options and overrides in any order. CONFIG is a YAML file or a shipped experiment's name (quickstart).

The stages, in order, are STAGES below (each module of engine/stages/ declares what it reads and writes;
docs/ARCHITECTURE.md, "Stages", lists them); engine/runner.py decides for each whether to run, resume, start over or skip. Exit codes:
0 done, 2 bad configuration, command line or device, 1 bad data, diverged training or a failed export.

From Python, `run(config, overrides=(), stages=None)` goes the same way as the command (validation, the run
directory's lock, the runner) and returns a `RunResult`; a mistake raises the `engine.errors.EngineError` the
command would have printed:

    from engine.run import run
    result = run("quickstart", ["space.width=0.25", "runs_dir=/tmp/runs"])  # stages=["space", "supernet"]: those
    print(result.front[["key", "miou", "latency_ms"]])  # the Pareto front (front.csv), a DataFrame
    for pick in result.picks:  # the retrained picks: selected/*/metrics.json
        print(pick["label"], pick["key"], pick["retrained_miou"])

`result.run_dir`, `result.paths` (engine.paths.RunPaths) and `result.report` (report.html) say where the rest is.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
import yaml
from pydantic import ValidationError
from rich.console import Console

from engine.config import ExperimentConfig, apply_overrides, load
from engine.errors import ConfigError, EngineError
from engine.files import made_with, write_text
from engine.latency.meter import STAT_FIELD, open_meter
from engine.preflight import splits
from engine.paths import RunPaths
from engine.runner import Context, Runner
from engine.report.load import load_metrics
from engine.search.references import split_references
from engine.search.study import storage_url
from engine.stages import audit, baseline, latency, report, retrain, search, select, space, supernet
from engine.training.distributed import World, cleanup, init_world

STAGES = tuple(module.STAGE for module in (space, supernet, latency, search, select, audit, baseline, retrain, report))
STAGE_NAMES = tuple(stage.name for stage in STAGES)


def save_resolved(config: ExperimentConfig) -> None:
    """runs/<name>/config.yaml: the configuration after overrides and defaults (rewritten only when it changes)."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    path = config.paths.config
    if not path.exists() or path.read_text() != text:
        write_text(path, text)


def start_logging(config: ExperimentConfig, world: World) -> None:
    """Stage messages to the console (stdout, beside the progress bars; stderr keeps the one-line error) and to
    runs/<name>/run.log (main rank only)."""
    logger = logging.getLogger("engine")
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    if not world.is_main:
        return
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    to_file = logging.FileHandler(config.paths.log)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(console)
    logger.addHandler(to_file)


def make_run_dir(config: ExperimentConfig) -> None:
    try:
        config.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"runs_dir {config.runs_dir}: cannot make the run directory {config.run_dir} "
                          f"({error.strerror}); point runs_dir at a folder you can write") from None


@contextmanager
def exclusive(config: ExperimentConfig, world: World) -> Iterator[None]:
    """Hold runs/<name>/.lock for the run (main rank): a second run on the same directory stops at once, naming the
    holder. The lock is the kernel's (flock): it goes with its process, so a killed run leaves no stale lock."""
    if not world.is_main:
        yield
        return
    with config.paths.lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise ConfigError(f"{config.run_dir} is in use by another run ({handle.read().strip() or 'pid unknown'});"
                              f" wait for it to finish or give this run another name") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield


READS_IMAGES = {"supernet", "search", "audit", "baseline", "retrain"}
"""Stages that read the data's images: when one of them is asked for, every split is listed first (engine.preflight.splits)."""


def execute(config: ExperimentConfig, world: World, stages: set[str]) -> None:
    """The run itself, on this rank: the run directory, its lock, the resolved configuration, logging, the split
    check, the runner and the summary."""
    context = Context(config, config.paths, world)
    if world.is_main:
        make_run_dir(config)
    with exclusive(config, world):
        if world.is_main:
            save_resolved(config)
        start_logging(config, world)
        if stages & READS_IMAGES:
            _, warning = splits(config)
            if warning:
                logging.getLogger("engine").warning(f"warning: {warning}")
        Runner(STAGES, context, open_meter).run(stages)
        if world.is_main:
            summarise(Console(), config, context.notes)


def summarise(console: Console, config: ExperimentConfig, notes: list[str]) -> None:
    """Front size, picked networks (re-measured in the statistic the search used), notes and where the report is."""
    paths = config.paths
    statistic = made_with(paths.record("search"), "latency.statistic") or config.latency.statistic
    console.print(f"[bold]{config.name}[/]: skeleton {' + '.join(config.space.skeletons)}, width {config.space.width}, "
                  f"input {config.space.input_size[0]}x{config.space.input_size[1]}, data {config.data.kind}")
    if paths.evaluations.exists():
        evaluations = split_references(pd.read_csv(paths.evaluations))[0]
        front = evaluations[evaluations.front]
        unmeasured = int((front.latency_source != "measured").sum())
        measuring = "all measured" if not unmeasured else \
            f"{unmeasured} not measured (search.measure_limit {config.search.measure_limit} spent or 0)"
        console.print(f"  {len(evaluations)} subnets evaluated, {len(front)} on the front ({measuring})")
    for folder in sorted(paths.selected_dir.glob("*/metrics.json")):
        m = load_metrics(folder)
        searched = f"search measured {m['measured_ms']:.2f} ms, " if m.get("measured_ms") else ""
        measured = (f"re-measured {m['measured'][STAT_FIELD[statistic]]:.2f} ms ({statistic})" if m.get("measured")
                    else "not re-measured")
        console.print(f"  {m['label']:<8} {m['key']}: {searched}predicted {m['predicted_ms']:.2f} ms, "
                      f"{measured}; mIoU inherited {m['miou']:.4f}, retrained {m['retrained_miou']:.4f}"
                      + (f" ± {m['retrained_miou_std']:.4f}" if m.get("retrained_miou_std") is not None else ""))
    if paths.selection.exists():
        notes = notes + json.loads(paths.selection.read_text()).get("notes", [])
    for note in notes:
        console.print(f"  [yellow]note[/]: {note}")
    if paths.report.exists():
        console.print(f"  report: {paths.report}")
    console.print(f"  trials: optuna-dashboard {storage_url(config)}")


class Arguments(argparse.ArgumentParser):
    """argparse with its mistakes in one line (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} ({self.prog} --help)\n")


def parse_stages(text: str | Iterable[str] | None) -> set[str]:
    """Stage names from `--stages a,b` (or an iterable of names); None: every stage."""
    if text is None:
        return set(STAGE_NAMES)
    parts = text.split(",") if isinstance(text, str) else list(text)
    chosen = {part.strip() for part in parts if part.strip()}
    unknown = chosen - set(STAGE_NAMES)
    if unknown or not chosen:
        raise ConfigError(f"--stages: unknown stage {', '.join(sorted(unknown)) or '(none)'}; "
                          f"known: {', '.join(STAGE_NAMES)}")
    return chosen


def check_enabled(config: ExperimentConfig, stages: set[str]) -> None:
    """Stages named in --stages that the configuration disables are a mistake, said in one line."""
    off = [stage for stage in STAGES if stage.name in stages and not stage.enabled(config)]
    if off:
        settings = " ".join(f"{setting}=true" for setting in off[0].enabled_by.split(" and "))
        raise ConfigError(f"--stages {off[0].name}: the configuration disables this stage; add {settings}")


def configure(config: str | Path | ExperimentConfig, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """The validated experiment: a YAML file or a shipped experiment's name read by engine.config.load, or an
    ExperimentConfig with the overrides applied to it and validated again."""
    overrides = list(overrides)
    if not isinstance(config, ExperimentConfig):
        return load(config, overrides)
    if not overrides:
        return config
    try:
        return ExperimentConfig.model_validate(apply_overrides(config.model_dump(mode="json"), overrides))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{config.name}: {where}: {first['msg']}") from None


@dataclass(frozen=True)
class RunResult:
    """What a run left in runs/<name>/: `front` is front.csv (None before the search), `picks` the retrained
    networks' selected/*/metrics.json in label order (empty before the retraining), `report` report.html or None."""

    config: ExperimentConfig
    paths: RunPaths
    report: Path | None
    front: pd.DataFrame | None
    picks: list[dict[str, Any]]

    @property
    def run_dir(self) -> Path:
        return self.paths.root


def result_of(config: ExperimentConfig) -> RunResult:
    """Read a run directory's front, picks and report into a RunResult."""
    paths = config.paths
    front = pd.read_csv(paths.front) if paths.front.exists() else None
    picks = [load_metrics(path) for path in sorted(paths.selected_dir.glob("*/metrics.json"))]
    return RunResult(config, paths, paths.report if paths.report.exists() else None, front, picks)


def run(config: str | Path | ExperimentConfig, overrides: Iterable[str] = (),
        stages: str | Iterable[str] | None = None) -> RunResult:
    """Run an experiment (a YAML file, a shipped experiment's name or an ExperimentConfig) with key.path=value
    overrides, every stage or those named ("space,supernet" or a list); what `python -m engine.run` does, returning
    the run's RunResult. Raises EngineError (ConfigError, DeviceError, ...) with the command's one-line message."""
    chosen = parse_stages(stages)
    config = configure(config, overrides)
    if stages is not None:
        check_enabled(config, chosen)
    world = init_world(config.supernet.device)
    try:
        execute(config, world, chosen)
    finally:
        cleanup()
    return result_of(config)


DESCRIPTION = ("Run an experiment into runs_dir/<name>/: every stage, or those --stages names (the runner skips "
               "what is done and resumes what is not); the overrides and --stages in any order.")


def main(argv: list[str] | None = None, *, prog: str = "python -m engine.run") -> int:
    """The command line: run() with CONFIG, the overrides and --stages in any order; prints an EngineError in one
    line and returns its exit code."""
    parser = Arguments(prog=prog, description=DESCRIPTION)
    parser.add_argument("config", help="experiment YAML, or a shipped experiment's name: quickstart, camvid, ...")
    parser.add_argument("overrides", nargs="*", default=[], help="key.path=value overrides, e.g. space.width=0.25")
    parser.add_argument("--stages", help=f"comma-separated subset of {','.join(STAGE_NAMES)} (default: all)")
    args = parser.parse_intermixed_args(argv)
    try:
        run(args.config, args.overrides, args.stages)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; the same command resumes the run where it stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
