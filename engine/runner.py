"""The stage runner: what every stage declares, and the one loop that decides, for each, run or skip.

A Stage names the artefacts it reads (required, written by an earlier stage), those it uses when present, those it
writes (what later stages read) and its work (checkpoints, logs, the study: kept to resume a killed stage, cleared
when it starts over), the configuration sections its results depend on, whether it runs on every rank under
torchrun or on the main one only, whether it needs the device, and whether the configuration enables it.

After a stage finishes the runner writes runs/<name>/stages/<stage>.json: the digests of its configuration
sections, of every input and of every output (sha256 of the file contents). A stage is current when its record
says done and every digest still matches; then it is skipped. Otherwise:
- inputs or configuration changed (an earlier stage reran, or a setting changed): its outputs and work are removed
  and it starts over, so every stage after a changed one reruns in turn;
- an output is missing or differs from what it wrote (killed mid-write, edited, truncated): the changed outputs are
  removed and it runs again, resuming from its work;
- a required input is missing: the run stops with one line naming the stage to run first (exit code 2).
The device is opened before the first stage, and only when a stage that will run needs it, so an unreachable
agent stops the run before any training; so are a stage's own `check`s (the search's storage and scheduler). Every stage's start, skip (with why) and finish (with its time) is logged
to the console and to runs/<name>/run.log.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch.distributed as dist

from engine.config import ADDED, OPERATIONAL, RENAMED_STRATEGIES, ExperimentConfig
from engine.errors import MissingInput
from engine.files import read_json, setting, write_json
from engine.paths import RunPaths
from engine.training.distributed import World

log = logging.getLogger(__name__)

Digests = dict[str, str]


@dataclass
class Context:
    """What a stage is given: the configuration, the run's paths, the process world and the device's meter (None
    when no stage that runs needs it, or when it is unreachable and stored results stand in)."""

    config: ExperimentConfig
    paths: RunPaths
    world: World
    meter: Any = None
    notes: list[str] = field(default_factory=list)


def _always(config: ExperimentConfig) -> bool:
    return True


Artefact = str | Path
Declared = tuple[Artefact, ...] | Callable[[ExperimentConfig], tuple[Artefact, ...]]


@dataclass(frozen=True)
class Stage:
    """One stage of a run (module docstring). Artefacts are paths relative to runs/<name>/, globs allowed; reads,
    uses, config and device may depend on the configuration (a callable of it).

    A stage that writes the run's seed, run twice: the second time it is current and skipped (a real one lives in
    engine/stages/ and is listed in engine.run.STAGES):

    >>> import tempfile
    >>> import torch
    >>> from engine.config import load
    >>> from engine.files import write_text
    >>> from engine.runner import Context, Runner, Stage
    >>> from engine.training.distributed import World
    >>> def run(ctx):
    ...     write_text(ctx.paths / "seed.txt", str(ctx.config.seed))
    >>> stage = Stage("seed", run, writes=("seed.txt",), config=("seed",))
    >>> config = load("quickstart", [f"runs_dir={tempfile.mkdtemp()}"])
    >>> context = Context(config, config.paths, World(0, 1, 0, torch.device("cpu")))
    >>> runner = Runner([stage], context, open_device=lambda config: None)
    >>> runner.run({"seed"})
    >>> (config.paths / "seed.txt").read_text(), runner.verdict(stage)
    ('0', ('current', 'done and current'))
    """

    name: str
    run: Callable[[Context], None]
    reads: Declared = ()
    uses: Declared = ()
    writes: tuple[Artefact, ...] = ()
    work: tuple[Artefact, ...] = ()
    config: Declared = ()
    ranks: Literal["main", "all"] = "main"
    device: bool | Callable[[ExperimentConfig], bool] = False
    enabled: Callable[[ExperimentConfig], bool] = _always
    enabled_by: str = ""  # the settings `enabled` reads, for messages ("audit.enabled")
    check: Callable[[ExperimentConfig], None] | None = None  # before the first stage, when this one will run

    def __post_init__(self) -> None:
        for name in ("writes", "work"):
            object.__setattr__(self, name, _patterns(getattr(self, name)))

    def declared(self, name: str, config: ExperimentConfig):
        """A declaration (reads, uses, config, device) for this configuration; artefacts as posix patterns."""
        value = getattr(self, name)
        value = value(config) if callable(value) else value
        return _patterns(value) if name in ("reads", "uses") else value


def _patterns(artefacts: Sequence[Artefact]) -> tuple[str, ...]:
    return tuple(a if isinstance(a, str) else a.as_posix() for a in artefacts)


def _matches(root: Path, pattern: str) -> list[Path]:
    if any(char in pattern for char in "*?["):
        return sorted(path for path in root.glob(pattern) if path.is_file())
    path = root / pattern
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path] if path.is_file() else []


def _digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def digests(root: Path, patterns: Sequence[str]) -> Digests:
    """sha256 of every file the patterns match (a folder matches the files under it), by relative path."""
    return {path.relative_to(root).as_posix(): _digest(path) for pattern in patterns for path in _matches(root, pattern)
            if not path.name.startswith(".")}


def _first_difference(before: Digests, now: Digests) -> str:
    """The first file (by name) whose digest differs between two digest maps, or that only one of them has."""
    return sorted(set(before.items()) ^ set(now.items()))[0][0]


def _without(tree: Any, ignored: Sequence[str], prefix: str = "") -> Any:
    if not isinstance(tree, dict):
        return tree
    kept = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if not any(fnmatch.fnmatchcase(dotted, pattern) for pattern in ignored):
            kept[key] = _without(value, ignored, dotted + ".")
    return kept


def config_sections(config: ExperimentConfig, sections: Sequence[str]) -> dict[str, Any]:
    """The stage's configuration sections, leaving out the settings that change how it runs, not what it computes
    (engine.config.OPERATIONAL: workers, checkpoint interval, agent address, ...) and those it names with a leading
    '!' (engine.config.UNSEEN: the test split, for the stages that never read it)."""
    left_out = [section[1:] for section in sections if section.startswith("!")]
    tree = _without(config.model_dump(mode="json"), (*OPERATIONAL, *left_out))
    return {section: setting(tree, section) for section in sections if not section.startswith("!")}


def config_digest(config: ExperimentConfig, sections: Sequence[str]) -> str:
    """sha256 of `config_sections`."""
    return settings_digest(config_sections(config, sections))


def settings_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def renamed(settings: Any, dotted: str = "") -> Any:
    """A record's settings with the strategy names of search.strategies as they are named now
    (engine.config.RENAMED_STRATEGIES), so a stage recorded before the renaming stays current."""
    if isinstance(settings, dict):
        return {key: renamed(value, f"{dotted}{key}.") for key, value in settings.items()}
    if dotted == "search.strategies." and isinstance(settings, list):
        return [RENAMED_STRATEGIES.get(name, name) for name in settings]
    return settings


def upgraded(settings: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """A record's settings as the stage would record them today (its settings `now`): strategies under their names
    now (`renamed`), and each setting added since (engine.config.ADDED) that the record lacks at the value that
    computed the same, as a section of its own or inside its section."""
    settings = renamed(settings)
    for dotted, value in ADDED.items():
        if dotted in settings:
            continue
        if dotted in now:
            settings[dotted] = value
            continue
        section, _, rest = dotted.partition(".")
        if section in settings and isinstance(settings[section], dict):
            settings[section] = {**settings[section], rest: settings[section].get(rest, value)}
    return settings


class Runner:
    """Runs the stages of one experiment in order (module docstring)."""

    def __init__(self, stages: Sequence[Stage], context: Context, open_device: Callable[[ExperimentConfig], Any]):
        self.stages = list(stages)
        self.ctx = context
        self.open_device = open_device
        self.paths = context.paths
        self.producer = {pattern: stage.name for stage in self.stages for pattern in stage.writes}

    def record_path(self, stage: Stage) -> Path:
        return self.paths.record(stage.name)

    def snapshot(self, stage: Stage) -> dict[str, Any]:
        config = self.ctx.config
        sections = stage.declared("config", config)
        return {"config": config_digest(config, sections), "settings": config_sections(config, sections),
                "inputs": digests(self.paths.root, self.inputs(stage))}

    def inputs(self, stage: Stage) -> tuple[str, ...]:
        return stage.declared("reads", self.ctx.config) + stage.declared("uses", self.ctx.config)

    def verdict(self, stage: Stage) -> tuple[str, str]:
        """("current" | "resume" | "start over", why) for a stage about to run or be skipped."""
        record = read_json(self.record_path(stage))
        if record is None:
            if digests(self.paths.root, stage.writes + stage.work):
                return "start over", "its files have no record of what made them"
            return "resume", "not run before"
        now = self.snapshot(stage)
        old = upgraded(record.get("settings", {}), now["settings"])
        if now["config"] not in (record["config"], settings_digest(old)):
            return "start over", "its configuration changed"
        if record["inputs"] != now["inputs"]:
            return "start over", f"its input {_first_difference(record['inputs'], now['inputs'])} changed"
        if record.get("state") != "done":
            return "resume", "it did not finish"
        outputs = digests(self.paths.root, stage.writes)
        if outputs != record["outputs"]:
            return "resume", f"its output {_first_difference(record['outputs'], outputs)} is missing or changed"
        return "current", "done and current"

    def missing_input(self, stage: Stage, planned: set[str]) -> str | None:
        """The first required input that is absent and that no stage planned before this one will write."""
        for pattern in stage.declared("reads", self.ctx.config):
            if _matches(self.paths.root, pattern):
                continue
            producer = self._producer_of(pattern)
            if producer not in planned:
                needed = self._needed(producer, planned) | planned | {stage.name}
                order = ",".join(s.name for s in self.stages if s.name in needed)
                return (f"stage {stage.name} needs {pattern}, which stage {producer} writes: run stage {producer} "
                        f"first (--stages {order}, or no --stages)")
        return None

    def _needed(self, name: str, planned: set[str]) -> set[str]:
        """Stage `name` and, recursively, the stages that write its required inputs that are absent and that no
        planned stage writes."""
        stage = next((s for s in self.stages if s.name == name), None)
        needed = {name}
        for pattern in stage.declared("reads", self.ctx.config) if stage else ():
            producer = self._producer_of(pattern)
            if not _matches(self.paths.root, pattern) and producer not in planned | needed:
                needed |= self._needed(producer, planned | needed)
        return needed

    def _producer_of(self, pattern: str) -> str:
        return self.producer.get(pattern) or next(
            (name for written, name in self.producer.items() if fnmatch.fnmatchcase(pattern, written)), "?")

    def plan(self, chosen: set[str]) -> list[tuple[str, str, str]]:
        """(stage, how, why) for the chosen stages the configuration enables, in order; a stage that reads what an
        earlier running stage writes is planned to run too. Raises MissingInput naming the stage to run first."""
        planned: list[tuple[str, str, str]] = []
        running: set[str] = set()
        for stage in self.stages:
            if stage.name not in chosen or not stage.enabled(self.ctx.config):
                continue
            problem = self.missing_input(stage, running)
            if problem:
                raise MissingInput(problem)
            how, why = self.verdict(stage)
            upstream = {self._producer_of(p) for p in self.inputs(stage)} & running
            if how == "current" and upstream:
                how, why = "start over", f"stage {sorted(upstream)[0]} runs before it"
            planned.append((stage.name, how, why))
            if how != "current":
                running.add(stage.name)
        return planned

    def run(self, chosen: set[str]) -> None:
        """Plan (on the main rank), open the device if a stage that runs needs it, then run or skip each stage with
        its verdict taken just before it (an earlier stage may have rewritten its inputs with the same content)."""
        main = self.ctx.world.is_main
        planned = self._agreed(self.plan(chosen) if main else None)
        by_name = {stage.name: stage for stage in self.stages}
        running = [by_name[name] for name, how, _ in planned if how != "current"]
        for stage in running if main else ():
            if stage.check is not None:
                stage.check(self.ctx.config)
        if main and any(stage.declared("device", self.ctx.config) for stage in running):
            self.ctx.meter = self.open_device(self.ctx.config)
            if self.ctx.meter is None:
                self.ctx.notes.append("the device is unreachable: using stored measurements, nothing is re-measured")
        for name, _, _ in planned:
            stage = by_name[name]
            self._one(stage, *self._agreed(self.verdict(stage) if main else None))
        disabled = sorted(chosen - {name for name, _, _ in planned})
        if disabled and main:
            log.info("not enabled by the configuration: %s", ", ".join(disabled))

    def _agreed(self, value: Any) -> Any:
        """The main rank's decision on every rank (all ranks read the same files, but not at the same moment)."""
        if not self.ctx.world.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _one(self, stage: Stage, how: str, why: str) -> None:
        world, main = self.ctx.world, self.ctx.world.is_main
        if how == "current":
            if main:
                log.info("stage %s: skipped (%s)", stage.name, why)
            return
        if main:
            log.info("stage %s: %s (%s)", stage.name, "starting over" if how == "start over" else "running", why)
            if how == "start over":
                self.clear(stage)
            else:
                self.drop_changed_outputs(stage)
            write_json(self.record_path(stage), {"state": "running", **self.snapshot(stage)})
        if world.distributed:
            dist.barrier()
        start = time.perf_counter()
        if main or stage.ranks == "all":
            stage.run(self.ctx)
        if world.distributed:
            dist.barrier()
        if main:
            record = {"state": "done", **self.snapshot(stage), "outputs": digests(self.paths.root, stage.writes),
                      "seconds": time.perf_counter() - start}
            write_json(self.record_path(stage), record)
            log.info("stage %s: finished in %.1f s", stage.name, record["seconds"])

    def drop_changed_outputs(self, stage: Stage) -> None:
        """Before a stage resumes: remove the outputs that differ from what it recorded writing (edited, truncated),
        so that its own resume logic (a label whose metrics.json exists is done) never takes them as finished."""
        record = read_json(self.record_path(stage)) or {}
        recorded = record.get("outputs", {})
        for relative, digest in digests(self.paths.root, stage.writes).items():
            if recorded and recorded.get(relative) != digest:
                log.info("stage %s: removing %s, changed since the stage wrote it", stage.name, relative)
                (self.paths.root / relative).unlink()

    def clear(self, stage: Stage) -> None:
        """Remove what the stage wrote and its work, before it starts over."""
        root = self.paths.root
        for pattern in stage.writes + stage.work:
            targets = root.glob(pattern) if any(c in pattern for c in "*?[") else [root / pattern]
            for path in targets:
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        self.record_path(stage).unlink(missing_ok=True)
