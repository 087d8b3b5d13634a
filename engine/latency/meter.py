"""The meter: measures networks of the experiment's space on its device, through the per-device measurement store.

The device is this machine (a backend of hardware/backends.py) or a device agent reached over HTTP
(`python -m hardware.agent` on the target, hardware/client.py here). Every measurement goes through the store, so a
genotype measured by any earlier run (with at least as many timed runs) is not measured again. Agent failures become
DeviceError (exit code 2).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
from rich.progress import track
from torch import nn

from engine.config import ExperimentConfig
from engine.errors import ConfigError, DeviceError
from engine.paths import RunPaths
from hardware.backends import Backend, BackendUnavailable, Replay, backend, to_onnx
from hardware.client import TOKEN_ENV, AgentClient, AgentError, AgentUnreachable, TokenError, read_token
from hardware.protocol import LatencyStats, Measurement, MeasurementProtocol, measure
from hardware.provenance import device_name
from hardware.store import MeasurementKey, MeasurementStore, space_label
from spaces import Genotype, build

log = logging.getLogger(__name__)

MEASURING = ("latency.device", "latency.backend", "latency.device_name", "latency.warmup", "latency.repeats",
             "latency.batch", "latency.threads", "latency.statistic")
"""The settings a measurement depends on (where, with what, how): the config of a stage that measures."""

STAT_FIELD = {"median": "median_ms", "mean": "mean_ms", "p90": "p90_ms", "min": "min_ms"}


def protocol_of(config: ExperimentConfig) -> MeasurementProtocol:
    settings = config.latency
    return MeasurementProtocol(settings.warmup, settings.repeats, settings.batch, tuple(config.space.input_size),
                               settings.threads)


def experiment_spaces(config: ExperimentConfig) -> dict[str, str]:
    """The measurement store's label of each skeleton's space (skeleton, width, classes), by skeleton."""
    space = config.space
    return {name: space_label(name, space.width, space.num_classes) for name in space.skeletons}


class Journal:
    """The measurements a stage used, by genotype key, one JSON line each in a file of the run (the stage's work): a
    stage that runs again replays them instead of the shared store's latest rows, which later work may have
    replaced (the retrain stage's re-measurement of a pick, another run's second opinion). A line cut by a kill is
    skipped; a later line of a key replaces an earlier one."""

    def __init__(self, path: Path):
        self.path = path

    def records(self) -> dict[str, tuple[Measurement, bool]]:
        """Each key's latest measurement and whether the stage measured it itself (not taken from the store)."""
        if not self.path.exists():
            return {}
        used = {}
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                stats = LatencyStats(**record["stats"])
                used[record["key"]] = (Measurement(stats, record["provenance"]), bool(record.get("fresh")))
            except (ValueError, KeyError, TypeError):
                continue
        return used

    def add(self, key: str, measurement: Measurement, fresh: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"key": key, "stats": asdict(measurement.stats), "provenance": measurement.provenance,
                           "fresh": fresh})
        with self.path.open("a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())


class Meter:
    """Measures networks of the experiment's space on its device, through the measurement store."""

    def __init__(self, config: ExperimentConfig):
        settings = config.latency
        self.config = config
        self.protocol = protocol_of(config)
        self.spaces = experiment_spaces(config)
        self.local: Backend | None = None
        self.client: AgentClient | None = None
        self.journal: Journal | None = None  # set by a stage that replays its own measurements (the search)
        self.fresh: set[str] = set()  # genotype keys measured by this run (the rest came from the store)
        if settings.device == "local":
            if settings.threads > (os.cpu_count() or 1):
                raise ConfigError(f"latency.threads {settings.threads} exceeds this machine's {os.cpu_count()} CPUs; "
                                  f"measure with at most that many")
            self.local = backend(settings.backend, settings.replay)
            if isinstance(self.local, Replay):
                check_replay(self.local, config)
            name = settings.device_name or self.local.device or device_name(gpu=self.local.gpu)
        else:
            self.client = AgentClient(settings.agent.url, _token(settings.agent.token_file),
                                      timeout=settings.agent.timeout_s, retries=settings.agent.retries)
            info = _agent_info(self.client, settings.agent.url)
            if info.get("backend") != settings.backend:
                raise DeviceError(f"latency.backend is {settings.backend} but the agent at {settings.agent.url} "
                                  f"measures with {info.get('backend')}; set latency.backend={info.get('backend')}")
            name = settings.device_name or str(info["device"])
            if name != str(info["device"]):
                log.warning("latency.device_name %s labels the measurements of the agent's device %s: the store is "
                            "%s's, each measurement's provenance names the agent's device", name, info["device"], name)
        if settings.store is not None and settings.store.exists() and not settings.store.is_dir():
            raise ConfigError(f"latency.store {settings.store} is a file; give a folder (the store keeps one CSV file "
                              f"per device in it)")
        self.store = MeasurementStore(name, settings.store)

    def stored(self) -> dict[MeasurementKey, Measurement]:
        """The store's measurements of this device; a store that cannot be read is a one-line ConfigError."""
        try:
            return self.store.load()
        except (ValueError, OSError) as error:
            raise ConfigError(f"latency.store: {error}; fix or move the file (the store is shared by every run on "
                              f"this device)") from None

    def key(self, genotype: Genotype) -> MeasurementKey:
        space = self.spaces[genotype.skeleton]
        return MeasurementKey.of(space, genotype.key, self.config.latency.backend, self.protocol)

    def measure_network(self, network: nn.Module) -> Measurement:
        """One measurement of a built network on the device (not stored: the caller knows its key)."""
        if self.client is None:
            return measure(network.eval(), self.local, self.protocol)
        try:
            return self.client.measure(to_onnx(network.eval(), self.protocol.shape), self.protocol)
        except AgentError as error:
            raise DeviceError(f"latency.agent.url {self.config.latency.agent.url}: {error}") from None

    def usable(self, measurement: Measurement | None) -> bool:
        """Whether a stored measurement serves this protocol: made with at least as many timed runs (the store's
        key leaves warm-up and repeats out, so a quick measurement is not taken for a careful one)."""
        return measurement is not None and measurement.stats.samples >= self.protocol.repeats

    def measure(self, genotypes: Sequence[Genotype], what: str) -> list[Measurement]:
        """The genotypes' measurements: those the journal holds (when the stage keeps one), else the store's,
        measuring (and storing) the missing ones and those stored with fewer timed runs than the protocol's."""
        used = self._journaled()
        stored = self.stored()
        missing = [g for g in dict.fromkeys(genotypes) if g.key not in used and not self.usable(stored.get(self.key(g)))]
        space = self.config.space
        for genotype in track(missing, description=f"measuring {what} on {self.store.device}"):
            measurement = self.measure_network(build(genotype, space.width, space.num_classes))
            self.store.put(self.key(genotype), measurement)
            stored[self.key(genotype)] = measurement
            self.fresh.add(genotype.key)
        for genotype in dict.fromkeys(genotypes):
            if genotype.key not in used:
                used[genotype.key] = stored[self.key(genotype)]
                if self.journal:
                    self.journal.add(genotype.key, used[genotype.key], genotype.key in self.fresh)
        return [used[g.key] for g in genotypes]

    def recheck(self, genotypes: Sequence[Genotype], what: str) -> list[Measurement]:
        """Each genotype's stored measurement given a second opinion (below), stored again, so the store's latest
        row is the kept one and a later caller sees it was checked."""
        used = self._journaled()
        stored = self.stored()
        space = self.config.space
        kept = []
        for genotype in track(genotypes, description=f"measuring {what} again on {self.store.device}"):
            network = build(genotype, space.width, space.num_classes)
            first = used.get(genotype.key) or stored[self.key(genotype)]
            kept.append(self.second_opinion(first, network))
            self.store.put(self.key(genotype), kept[-1])
            self.fresh.add(genotype.key)
            if self.journal:
                self.journal.add(genotype.key, kept[-1], True)
        return kept

    def _journaled(self) -> dict[str, Measurement]:
        """The journal's measurements (none without one); the keys it measured itself count as fresh."""
        if self.journal is None:
            return {}
        records = self.journal.records()
        self.fresh |= {key for key, (_, fresh) in records.items() if fresh}
        return {key: measurement for key, (measurement, _) in records.items()}

    def second_opinion(self, first: Measurement, network: nn.Module) -> Measurement:
        """`network` measured once more and the lower of `first` and the new measurement by `latency.statistic`
        kept, with both values under `recheck` in its provenance: a loaded host or a throttled device inflates a
        measurement far more often than anything deflates one."""
        field = STAT_FIELD[self.config.latency.statistic]
        second = self.measure_network(network)
        values = [getattr(m.stats, field) for m in (first, second)]
        lower = first if values[0] <= values[1] else second
        return Measurement(lower.stats, {**lower.provenance, "recheck": {f"first_{field}": values[0],
                                                                         f"second_{field}": values[1]}})


ORIGIN_COLUMNS = ("source", "device", "backend", "backend_version", "host", "agent", "measured_at")
"""Where a measurement in a run's tables came from: `measured` by this run (`replayed` from a recorded device's
tables, a replay-* backend) or taken from the `store` (measured before,
by this or another run), the store's device name, the backend and its version, the machine that timed it, the agent's
address (empty when local) and when it was taken (UTC)."""


def origin(measurement: Measurement, device: str, fresh: bool) -> dict[str, str]:
    """ORIGIN_COLUMNS of a measurement of the store of `device` (`fresh`: measured by this run), from its
    provenance."""
    record = measurement.provenance
    measured = "replayed" if "replay" in record else "measured"
    return {"source": measured if fresh else "store", "device": device,
            "backend": str(record.get("backend", "")), "backend_version": str(record.get("backend_version") or ""),
            "host": str(record.get("host", "")), "agent": str(record.get("agent", "")),
            "measured_at": str(record.get("time", ""))}


def check_replay(replay: Replay, config: ExperimentConfig) -> None:
    """A replay device answers only what HW-NAS-Bench recorded: ConfigError naming the setting, before any stage."""
    settings, space = config.latency, config.space
    if settings.device_name is not None:
        raise ConfigError(f"latency.device_name {settings.device_name}: a replay backend names its device itself "
                          f"({replay.device}), so recorded numbers never land in a real device's store; remove it")
    shape = (settings.batch, 3, *space.input_size)
    try:
        for name in space.skeletons:
            replay.check(name, shape, space.width, space.num_classes)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def first_of(measurement: Measurement, statistic: str) -> float:
    """The first of the two values Meter.second_opinion compared, by `statistic` (latency.statistic); NaN for a
    measurement taken once."""
    return float(measurement.provenance.get("recheck", {}).get(f"first_{STAT_FIELD[statistic]}", math.nan))


def _token(path) -> str:
    """The agent token of latency.agent.token_file (or $SQUEEZENAS_AGENT_TOKEN); ConfigError naming the setting."""
    try:
        return read_token(path)
    except TokenError as error:  # its message never holds the token
        if path is None and not os.environ.get(TOKEN_ENV):
            raise ConfigError(f"latency.agent.token_file is not set and ${TOKEN_ENV} is empty: give the file that "
                              f"holds the agent's token") from None
        raise ConfigError(f"latency.agent.token_file: {error}") from None


def _agent_info(client: AgentClient, url: str) -> dict:
    try:
        return client.info()
    except AgentUnreachable:
        raise
    except AgentError as error:
        raise DeviceError(f"latency.agent.url {url}: {error}") from None


def open_meter(config: ExperimentConfig) -> Meter | None:
    """The experiment's meter, opened at the start of a run so an unreachable agent stops it before any training;
    None when the device cannot be reached but the predictor (or enough stored measurements) lets the run go on;
    DeviceError when the run cannot go on, ConfigError for a token file that cannot be read or a bad device name."""
    settings = config.latency
    try:
        return Meter(config)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"latency: {error}") from None
    except BackendUnavailable as error:
        raise DeviceError(f"latency.backend {settings.backend}: {error}") from None
    except AgentUnreachable as error:
        if RunPaths(config.run_dir).accuracy.exists():
            return None
        if settings.device_name and _stored_enough(config, settings.device_name):
            return None
        raise DeviceError(f"latency.agent.url: {error}") from None


def _stored_enough(config: ExperimentConfig, name: str) -> bool:
    store = MeasurementStore(name, config.latency.store)
    spaces = set(experiment_spaces(config).values())
    protocol = protocol_of(config)
    rows = [key for key, measurement in store.load().items() if key.space in spaces
            and key.resolution == protocol.resolution and key.backend == config.latency.backend
            and measurement.stats.samples >= protocol.repeats]
    return len(rows) >= config.latency.measurements + config.latency.heldout


def latency_of(measurements: Sequence[Measurement], statistic: str) -> np.ndarray:
    return np.array([getattr(m.stats, STAT_FIELD[statistic]) for m in measurements])
