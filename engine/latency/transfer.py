"""The sources of a latency transfer: what the measurement store holds of this space on other devices.

A source is one device of the store measured under one setting (backend, resolution, batch, threads): `onnxruntime-cpu
at 128x256 on 1 thread` and `torch-cpu at 96x192` of the same machine are two sources, as two phones are. The run's
own device under its own protocol is the target and never a source. A source counts when it holds at least
`latency.transfer.min_rows` measurements of the run's space (its skeletons at its width and classes); a measurement
of another space tells nothing about this one's blocks and is not read. `latency.transfer.sources` names the devices
to take (null: every device file in the store). Each source's value of a measurement is the run's
`latency.statistic`. With several skeletons a source needs `min_rows` measurements of each. A file of the store folder
that is no device's (a name the store would not write, a file it cannot read) is skipped with a warning.

`find_sources` returns the table (genotype keys x sources, NaN where a source did not measure a genotype) or None with
the reason, which the latency stage logs and writes to latency/accuracy.json. The table is saved beside the predictor
(`SOURCES_FILE`), so the search's refits transfer from the same sources whatever the store holds later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from engine.errors import ConfigError
from engine.files import write_csv
from hardware.store import MeasurementKey, MeasurementStore, StoreError, default_directory
from spaces import Genotype

log = logging.getLogger(__name__)

SOURCES_FILE = "sources.csv"


class Source(NamedTuple):
    """A device of the store under one measurement setting."""

    device: str
    backend: str
    resolution: str
    batch: int
    threads: int

    @classmethod
    def of(cls, device: str, key: MeasurementKey) -> "Source":
        """The source of a measurement of the store of `device`."""
        return cls(device, key.backend, key.resolution, key.batch, key.threads)

    @property
    def label(self) -> str:
        """'device/backend/HxW/bB/tT', the source's column in sources.csv and its name in accuracy.json."""
        return f"{self.device}/{self.backend}/{self.resolution}/b{self.batch}/t{self.threads}"


@dataclass
class SourceTable:
    """The sources' measurements of the run's space: latency[row, column] of genotype keys[row] on sources[column]
    (labels), NaN where that source did not measure it."""

    sources: list[str]
    keys: list[str]
    latency: np.ndarray

    def genotypes(self) -> list[Genotype]:
        return [Genotype.from_key(key) for key in self.keys]

    def rows(self) -> dict[str, int]:
        """Measurements per source."""
        return {label: int(np.isfinite(self.latency[:, i]).sum()) for i, label in enumerate(self.sources)}

    def save(self, path: Path) -> None:
        write_csv(path, pd.DataFrame(self.latency, columns=self.sources).assign(key=self.keys)[["key", *self.sources]])

    @classmethod
    def load(cls, path: Path) -> "SourceTable | None":
        """The table saved at `path`, or None when there is none."""
        if not path.exists():
            return None
        table = pd.read_csv(path)
        sources = [column for column in table.columns if column != "key"]
        return cls(sources, table["key"].astype(str).tolist(), table[sources].to_numpy(dtype=np.float64))


def store_devices(directory: Path, names: list[str] | None) -> list[str]:
    """The device files of the store to read: those named (ConfigError for one the store lacks), else all."""
    held = sorted(path.stem for path in directory.glob("*.csv")) if directory.is_dir() else []
    if names is None:
        return held
    absent = [name for name in names if name not in held]
    if absent:
        raise ConfigError(f"latency.transfer.sources: the measurement store {directory} holds no device {absent[0]!r}; "
                          f"it holds {', '.join(held) or 'none'}")
    return list(names)


def stored_rows(directory: Path, devices: list[str], spaces: set[str], statistic: str
                ) -> tuple[dict[Source, dict[str, float]], dict[Source, dict[str, int]], int]:
    """Each source's value (`statistic`: a LatencyStats field) of each genotype of `spaces`, its count of them per
    space, and how many rows of other spaces were passed over. A file that is no readable device store is skipped
    with a warning."""
    values: dict[Source, dict[str, float]] = {}
    counts: dict[Source, dict[str, int]] = {}
    elsewhere = 0
    for device in devices:
        try:
            rows = MeasurementStore(device, directory).load()
        except (ValueError, OSError) as error:  # StoreError, or a file name the store would not write
            log.warning("latency transfer: %s is not read (%s)", directory / f"{device}.csv", error)
            continue
        for key, measurement in rows.items():
            if key.space not in spaces:
                elsewhere += 1
                continue
            source = Source.of(device, key)
            values.setdefault(source, {})[key.genotype] = float(getattr(measurement.stats, statistic))
            counts.setdefault(source, {}).setdefault(key.space, 0)
            counts[source][key.space] += 1
    return values, counts, elsewhere


def find_sources(directory: Path | None, names: list[str] | None, spaces: set[str], target: Source, statistic: str,
                 min_rows: int) -> tuple[SourceTable | None, str]:
    """The sources of the run's space in the store at `directory` (None: the default store), the target left out, and
    why there are none when there are none (module docstring)."""
    directory = default_directory() if directory is None else Path(directory)
    values, counts, elsewhere = stored_rows(directory, store_devices(directory, names), spaces, statistic)
    values.pop(target, None)
    if not values:
        other = f"; its {elsewhere} measurements of other spaces do not transfer" if elsewhere else ""
        return None, f"the measurement store {directory} holds no other device's measurements of this space{other}"
    fewest = {source: min(counts[source].get(space, 0) for space in spaces) for source in values}
    kept = {source: rows for source, rows in values.items() if fewest[source] >= min_rows}
    if not kept:
        most = max(values, key=lambda source: fewest[source])
        each = " of each skeleton" if len(spaces) > 1 else ""
        return None, (f"no source holds latency.transfer.min_rows {min_rows} measurements{each} of this space (the "
                      f"most: {fewest[most]} on {most.label})")
    keys = sorted({key for rows in kept.values() for key in rows})
    order = sorted(kept, key=lambda source: source.label)
    latency = np.array([[kept[source].get(key, np.nan) for source in order] for key in keys], dtype=np.float64)
    return SourceTable([source.label for source in order], keys, latency), ""
