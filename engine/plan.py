"""`squeezenas plan CONFIG [key=value ...]`: what a run will need and what it will cost, in seconds, before anything
trains.

It checks everything the run will need (engine/preflight.py: the data's splits and image sizes, the device or agent
with the name and backend it reports, the study's storage, the Dask scheduler) and estimates the run's cost from
short timings made here and now: a supernet training step x steps x skeletons, an inherited-weight evaluation x the
evaluations the search will make, one measurement on the device x the measurements, and a stand-alone training step x
the trainings of retrain (and audit). Networks are timed on random tensors of the sizes the run uses (on a CPU,
above PROBE_PIXELS, at a smaller size and scaled by the number of pixels), so the figures are estimates: the table
says how each was made. Nothing is written; exit code 0, or 2 when a check fails.
"""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch
from rich.console import Console
from rich.table import Table

from engine import preflight
from engine.config import ExperimentConfig, load
from engine.data.splits import train_set, val_set
from engine.errors import EngineError
from engine.latency.meter import Meter
from engine.run import STAGES, Arguments
from engine.stages.latency import ACTIVE_CANDIDATES, transfer_sources
from engine.training.distributed import World
from engine.training.sampling import Rule, step_paths
from engine.training.trainer import build_state, train_step
from spaces import Supernet, build, sample_of, squeezenas

DESCRIPTION = ("Check what a run will need (data, device or agent, study storage, Dask scheduler) and estimate what it "
               "will cost from short timings, in seconds, before anything trains; nothing is written.")
PROBE_PIXELS = 128 * 256
"""On a CPU, networks are timed at no more pixels than this and their time scaled by the pixels of the run's size."""
PROBE_STEPS = 2
SHORT_RUNS = 4
"""The plan measures a network on the device twice, with 1 and 1 + SHORT_RUNS timed runs: the difference is the
time of a run, the rest the fixed cost of a measurement (export, engine build, transfer)."""


@dataclass(frozen=True)
class Cost:
    """A stage's estimated cost: what it does (`work`), how many times, the seconds of one, and how it was timed."""

    stage: str
    work: str
    count: float
    each_s: float | None
    how: str

    @property
    def seconds(self) -> float | None:
        return None if self.each_s is None else self.count * self.each_s


def _timed(action: Callable[[], object], repeats: int = PROBE_STEPS) -> float:
    """The fastest of `repeats` runs of `action` after one untimed run (the first allocates and warms caches)."""
    action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def _probe_size(size: tuple[int, int], device: torch.device) -> tuple[tuple[int, int], float]:
    """The size a network is timed at and the factor its time is scaled by (pixels of `size` / pixels timed)."""
    pixels = size[0] * size[1]
    if device.type == "cuda" or pixels <= PROBE_PIXELS:
        return tuple(size), 1.0
    shrink = math.sqrt(PROBE_PIXELS / pixels)
    probe = (max(32, round(size[0] * shrink / 8) * 8), max(32, round(size[1] * shrink / 8) * 8))
    return probe, pixels / (probe[0] * probe[1])


def _how(size: tuple[int, int], probe: tuple[int, int], device: torch.device) -> str:
    scaled = "" if probe == tuple(size) else f", timed at {probe[0]}x{probe[1]} and scaled by pixels"
    return f"{device.type}{scaled}"


def _batch(config: ExperimentConfig, size: tuple[int, int], batch: int, device: torch.device):
    images = torch.randn(batch, 3, *size, device=device)
    labels = torch.randint(0, config.space.num_classes, (batch, *size), device=device)
    return images, labels


def supernet_cost(config: ExperimentConfig, device: torch.device) -> Cost:
    """Training steps of the supernet of every skeleton (its sampling rule's paths each), each skeleton timed."""
    settings = config.supernet
    probe, factor = _probe_size(config.data.crop, device)
    each = sum(_supernet_step(config, skeleton, probe, device) for skeleton in config.space.skeletons) * factor
    skeletons = len(config.space.skeletons)
    return Cost("supernet", f"{settings.steps} steps x {skeletons} skeleton{'s' * (skeletons > 1)} "
                f"({settings.sampling}, batch {settings.batch_size})", settings.steps, each,
                _how(config.data.crop, probe, device))


def _supernet_step(config: ExperimentConfig, skeleton: str, size: tuple[int, int], device: torch.device) -> float:
    """Seconds of one training step of the skeleton's supernet at `size`."""
    settings, world = config.supernet, World(0, 1, 0, device)
    supernet = Supernet(skeleton, config.space.width, config.space.num_classes).to(device).train()
    state = build_state(supernet, settings, world)
    images, labels = _batch(config, size, settings.batch_size, device)
    rule = Rule(settings.sandwich_paths, settings.extremes_every)
    steps = iter(range(10**6))

    def step() -> None:
        paths = step_paths(skeleton, settings.sampling, config.seed, next(steps), rule)
        train_step(state, images, labels, paths, settings, world)

    return _timed(step)


def data_cost(config: ExperimentConfig) -> Cost:
    """Reading and augmenting the supernet's training images: every sample of every step is augmented; a file is read
    each time, a generated scene drawn once (kept)."""
    dataset = train_set(config.data, config.seed)
    indices = iter(range(10**9))
    raw = {}

    def load() -> None:
        raw["sample"] = dataset.load(next(indices) % len(dataset))

    read = _timed(load)
    augment = _timed(lambda: dataset.transform(*raw["sample"]))
    samples = config.supernet.steps * config.supernet.batch_size * len(config.space.skeletons)
    loads = min(samples, len(dataset)) if config.data.kind == "synthetic" else samples
    workers = max(1, config.supernet.num_workers)
    fetched = "drawn once" if loads < samples else "read"
    return Cost("supernet", f"{samples} training samples augmented, {loads} images {fetched}"
                + (f", on {workers} loader processes" if workers > 1 else ""), samples,
                (augment + read * loads / samples) / workers, "this process")


def evaluations(config: ExperimentConfig) -> int:
    """Inherited-weight evaluations the search will make at most (duplicates are scored once)."""
    search = config.search
    count = 0
    if "evolution" in search.strategies:
        surrogate = search.accuracy_surrogate
        count += (surrogate.initial or search.population) + search.rounds * surrogate.per_round if surrogate.enabled \
            else search.population + search.generations * (search.offspring or search.population)
    if "dnas" in search.strategies:
        count += len(search.dnas.lambdas)
    if search.references:
        count += sum(len(squeezenas.released_for(name)) for name in config.space.skeletons)
    return count


def evaluation_cost(config: ExperimentConfig, device: torch.device, val_images: int) -> list[Cost]:
    """One inherited-weight evaluation (BN recalibrated on calibration images, validation images scored) x the
    evaluations of the latency stage's active choice (8 candidates per active measurement) and of the search."""
    settings = config.evaluation
    size = tuple(config.data.eval_size or config.space.input_size)
    probe, factor = _probe_size(size, device)
    crop, crop_factor = _probe_size(config.data.crop, device)
    genotype = sample_of(config.space.skeletons, random.Random(config.seed))
    subnet = Supernet(genotype.skeleton, config.space.width, config.space.num_classes).extract(genotype).to(device)
    images = torch.randn(settings.batch_size, 3, *probe, device=device)
    calibration = torch.randn(settings.batch_size, 3, *crop, device=device)

    def forward(batch: torch.Tensor, train: bool) -> None:
        with torch.no_grad():
            subnet.train(train)(batch)

    batches = math.ceil(min(val_images, settings.val_images or val_images) / settings.batch_size)
    calibrating = math.ceil(settings.calibration_images / settings.batch_size)
    each = batches * _timed(lambda: forward(images, False)) * factor + \
        calibrating * _timed(lambda: forward(calibration, True)) * crop_factor
    how, batched = _how(size, probe, device), f"{batches} validation + {calibrating} calibration batches each"
    active = min(config.latency.pool, ACTIVE_CANDIDATES * config.latency.active)
    count = evaluations(config)
    return [Cost(stage, f"{number} inherited-weight evaluations {why}({batched})", number, each, how)
            for stage, number, why in (("latency", active, "choosing the active measurements "), ("search", count, ""))
            if number]


def fitted(config: ExperimentConfig, meter: Meter | None) -> tuple[int, str]:
    """How many genotypes the latency stage measures to fit the predictor, and why: latency.transfer.shots when it
    will transfer (sources in the store), else latency.measurements."""
    transfer = config.latency.transfer
    if not transfer.enabled or meter is None:
        return config.latency.measurements, "to fit"
    sources, record = transfer_sources(config, meter)
    if sources is None:
        return config.latency.measurements, f"to fit; no transfer, {record['reason']}"
    return transfer.shots, f"to fit, transferred from {len(sources.sources)} sources"


def measurement_cost(config: ExperimentConfig, meter: Meter | None) -> list[Cost]:
    """One measurement of a random network on the device x what the latency and search stages measure."""
    latency, search = config.latency, config.search
    fit, why = fitted(config, meter)
    first = fit + latency.heldout + latency.active
    later = 0 if search.measure_limit == 0 else search.measure_limit + (
        sum(len(squeezenas.released_for(name)) for name in config.space.skeletons) if search.references else 0)
    work = [("latency", f"{first} measurements ({fit} {why}, {latency.heldout} held out, {latency.active} active)",
             first),
            ("search", f"up to {later} measurements (search.measure_limit, references)", later)]
    if meter is None:
        return [Cost(stage, text, count, None, "the device is not reachable") for stage, text, count in work]
    genotype = sample_of(config.space.skeletons, random.Random(config.seed + 1))
    network = build(genotype, config.space.width, config.space.num_classes)
    few, more = (_measured_in(meter, network, repeats) for repeats in (1, 1 + SHORT_RUNS))
    per_run = max(0.0, (more - few) / SHORT_RUNS)
    each = max(0.0, few - 2 * per_run) + (latency.warmup + latency.repeats) * per_run
    how = f"two short measurements on {meter.store.device} ({latency.backend}: 2 and {2 + SHORT_RUNS} runs) give " \
          f"the fixed cost and a run's; not stored"
    return [Cost(stage, text, count, each, how) for stage, text, count in work if count]


def _measured_in(meter: Meter, network: torch.nn.Module, repeats: int) -> float:
    """Seconds one measurement of `network` takes on the device with one warm-up run and `repeats` timed runs."""
    short = copy.copy(meter)
    short.protocol = replace(meter.protocol, warmup=1, repeats=repeats)
    start = time.perf_counter()
    short.measure_network(network)
    return time.perf_counter() - start


def picks(config: ExperimentConfig) -> int:
    selection = config.selection
    return len(selection.budgets_ms) + len(selection.budgets_span) + int(selection.knee)


def training_cost(config: ExperimentConfig, device: torch.device) -> list[Cost]:
    """Stand-alone training steps of a random network x the trainings of retrain (and audit, baseline), divided
    among their workers."""
    jobs = [("retrain", config.retrain.train, picks(config) * config.retrain.seeds, config.retrain.workers)]
    audit = config.audit
    if audit.enabled:
        jobs.append(("audit", audit.train, audit.genotypes + audit.random + (2 if audit.random else 0),
                     audit.workers))
        if audit.baseline:
            jobs.append(("baseline", audit.train, 2 * len(audit.handmade) * audit.seeds, audit.workers))
    costs = []
    for stage, settings, trainings, workers in jobs:
        at_once = max(1, min(workers, trainings))
        each, how = _standalone_step(config, settings, device, single_thread=at_once > 1)
        rounds = math.ceil(trainings / at_once)  # the trainings of one worker, one after another
        costs.append(Cost(stage, f"{trainings} trainings x {settings.steps} steps (batch {settings.batch_size})"
                          + (f", {at_once} at once: {rounds} after another" if at_once > 1 else ""),
                          rounds * settings.steps, each, how))
    return costs


def _standalone_step(config: ExperimentConfig, settings, device: torch.device, single_thread: bool
                     ) -> tuple[float, str]:
    """One training step of a random stand-alone network; on one thread when it trains on a worker process."""
    threads = torch.get_num_threads()
    if single_thread and device.type == "cpu":
        torch.set_num_threads(1)
    try:
        each, how = _one_step(config, settings, device)
    finally:
        torch.set_num_threads(threads)
    return each, how + (", one thread as on a worker" if single_thread and device.type == "cpu" else "")


def _one_step(config: ExperimentConfig, settings, device: torch.device) -> tuple[float, str]:
    world = World(0, 1, 0, device)
    probe, factor = _probe_size(config.data.crop, device)
    genotype = sample_of(config.space.skeletons, random.Random(config.seed + 2))
    network = build(genotype, config.space.width, config.space.num_classes).to(device).train()
    state = build_state(network, settings, world)
    images, labels = _batch(config, probe, settings.batch_size, device)
    return _timed(lambda: train_step(state, images, labels, None, settings, world)) * factor, \
        _how(config.data.crop, probe, device)


def checks(config: ExperimentConfig) -> tuple[list[preflight.Check], Meter | None]:
    found = preflight.data(config)
    device, meter = preflight.device(config) if _measures(config) else (None, None)
    found += [check for check in (device, preflight.storage(config), preflight.scheduler(config),
                                  preflight.runs_dir(config)) if check is not None]
    return found, meter


def _measures(config: ExperimentConfig) -> bool:
    return any(stage.declared("device", config) for stage in STAGES if stage.enabled(config))


def estimate(config: ExperimentConfig, meter: Meter | None, val_images: int) -> list[Cost]:
    device = torch.device("cuda" if torch.cuda.is_available() and config.supernet.device != "cpu" else "cpu")
    torch.manual_seed(config.seed)
    measuring, scoring = measurement_cost(config, meter), evaluation_cost(config, device, val_images)
    by_stage = [cost for stage in ("latency", "search") for cost in (*measuring, *scoring) if cost.stage == stage]
    return [supernet_cost(config, device), data_cost(config), *by_stage, *training_cost(config, device)]


def _validation_images(config: ExperimentConfig) -> int:
    return len(val_set(config.data, config.seed))


def show(console: Console, config: ExperimentConfig, found: list[preflight.Check], costs: list[Cost]) -> None:
    marks = {True: "[green]ok[/]", None: "[yellow]warning[/]", False: "[red]FAILS[/]"}
    table = Table(title=f"What {config.name} needs", title_justify="left")
    for column in ("", "check", "found"):
        table.add_column(column, overflow="fold")
    for check in found:
        table.add_row(marks[check.ok], check.what, check.detail)
    console.print(table)
    if not costs:
        return
    table = Table(title=f"What {config.name} will cost (estimates)", title_justify="left")
    for column, justify in (("stage", "left"), ("work", "left"), ("each", "right"), ("total", "right"),
                            ("timed", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for cost in costs:
        each = "-" if cost.each_s is None else _duration(cost.each_s)
        total = "not estimated" if cost.seconds is None else _duration(cost.seconds)
        table.add_row(cost.stage, cost.work, each, total, cost.how)
    known = sum(cost.seconds for cost in costs if cost.seconds is not None)
    table.add_row("[bold]total[/]", "", "", f"[bold]{_duration(known)}[/]", "one process; torchrun divides the supernet")
    console.print(table)
    console.print("Not timed: the space survey, the predictor's fit and refits, the search's bookkeeping, ONNX "
                  "export and the report; a loaded machine or a slower device stretches every line.")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def main(argv: list[str] | None = None) -> int:
    parser = Arguments(prog="squeezenas plan", description=DESCRIPTION)
    parser.add_argument("config", help="experiment YAML or a shipped experiment's name, e.g. quickstart")
    parser.add_argument("overrides", nargs="*", default=[], help="key.path=value overrides, e.g. space.width=0.25")
    args = parser.parse_args(argv)
    console = Console()
    try:
        config = load(args.config, args.overrides)
        found, meter = checks(config)
        failed = any(check.ok is False for check in found)
        data_ok = not any(check.ok is False and check.what.startswith("data") for check in found)
        costs = estimate(config, meter, _validation_images(config)) if data_ok else []
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    show(console, config, found, costs)
    if failed:
        print("error: a check fails (above); fix it before running", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
