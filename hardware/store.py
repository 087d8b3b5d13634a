"""The measurement store: one CSV file per device, shared by runs, so no network is measured twice.

Rows are keyed by (space, genotype key, resolution, backend, batch, threads) and hold the latency statistics of
hardware/protocol.py plus the provenance as a JSON column. The files live in one cache directory
(`$SQUEEZENAS_MEASUREMENTS`, else `$XDG_CACHE_HOME/squeezenas-engine/measurements`, else
`~/.cache/squeezenas-engine/measurements`), or wherever the caller says.

Crash safety: each row (with the header, for a new file) goes to the file in one `write` call on a descriptor
opened for appending, then fsync, so a kill mid-write loses at most that row. On reading, text after the last
newline (a truncated row) and rows that do not parse are skipped; the next append starts on a fresh line.
When a key appears twice, the later row wins.

What no crash leaves behind is refused with `StoreError` (a ValueError), one line naming the file, the line and,
for a row, its genotype key: a first line that is not the header, and a row that parses but holds a latency
statistic that is not a finite number of milliseconds >= 0 (NaN, infinite, negative), a negative or NaN `cv`, fewer
than one sample, or provenance that is not a JSON object. `put` refuses such a measurement before writing it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Iterable, NamedTuple

from hardware.protocol import LatencyStats, Measurement, MeasurementProtocol
from spaces.space import skeleton

STATS = tuple(f.name for f in fields(LatencyStats))
_DEVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHOWN = 80  # characters of a garbled header or key shown in a StoreError


class StoreError(ValueError):
    """A measurement store file (or a measurement for it) that is not what the store writes; one line naming the
    file, the line and the genotype key where there is one."""


class MeasurementKey(NamedTuple):
    """What identifies a measurement on one device; `space` as `space_label` writes it, resolution 'HxW'.

    Batch and CPU threads are part of the key because they change the latency as much as the network does."""

    space: str
    genotype: str
    resolution: str
    backend: str
    batch: int = 1
    threads: int = 1

    @classmethod
    def of(cls, space: str, genotype: str, backend: str, protocol: MeasurementProtocol) -> "MeasurementKey":
        """The key of a measurement taken under `protocol` (its resolution, batch and threads)."""
        return cls(space, genotype, protocol.resolution, backend, protocol.batch, protocol.threads)


COLUMNS = MeasurementKey._fields + STATS + ("provenance",)


def space_label(skeleton_name: str, width: float = 1.0, num_classes: int | None = None) -> str:
    """'small-w0.5-c19': the skeleton with the width multiplier and number of classes that change latency."""
    classes = skeleton(skeleton_name).num_classes if num_classes is None else num_classes
    return f"{skeleton_name}-w{width:g}-c{classes}"


def default_directory() -> Path:
    if "SQUEEZENAS_MEASUREMENTS" in os.environ:
        return Path(os.environ["SQUEEZENAS_MEASUREMENTS"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "squeezenas-engine" / "measurements"


def _line(cells: Iterable[object]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode()


def _parse(row: list[str]) -> tuple[MeasurementKey, Measurement]:
    """One CSV row as (key, measurement); ValueError when it is malformed (a truncated row: skipped)."""
    if len(row) != len(COLUMNS):
        raise ValueError(f"{len(row)} cells, expected {len(COLUMNS)}")
    cells = dict(zip(COLUMNS, row))
    key = MeasurementKey(cells["space"], cells["genotype"], cells["resolution"], cells["backend"],
                         int(cells["batch"]), int(cells["threads"]))
    stats = LatencyStats(**{name: float(cells[name]) for name in STATS if name != "samples"},
                         samples=int(cells["samples"]))
    return key, Measurement(stats, json.loads(cells["provenance"]))


def _shown(text: str) -> str:
    """`text` from a file, quoted with control characters escaped and cut to _SHOWN characters."""
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def _wrong(measurement: Measurement) -> str | None:
    """What makes `measurement` one the store refuses (module docstring), or None."""
    stats = measurement.stats
    for name in ("median_ms", "mean_ms", "p90_ms", "min_ms"):
        value = getattr(stats, name)
        if not math.isfinite(value) or value < 0:
            return f"{name} is {value}, not a finite number of milliseconds >= 0"
    if not math.isfinite(stats.cv) or stats.cv < 0:
        return f"cv is {stats.cv}, not a finite fraction >= 0"
    if stats.samples < 1:
        return f"samples is {stats.samples}, not at least 1"
    if not isinstance(measurement.provenance, dict):
        return f"provenance is a JSON {type(measurement.provenance).__name__}, not an object"
    return None


def _described(key: MeasurementKey) -> str:
    """'genotype 'KEY' (space, resolution, backend, batch B, threads T)', each cell from the file cut short."""
    cells = ", ".join(_shown(cell)[1:-1] for cell in (key.space, key.resolution, key.backend))
    return f"genotype {_shown(key.genotype)} ({cells}, batch {key.batch}, threads {key.threads})"


class MeasurementStore:
    """The measurements of one device: `get`, `put`, `missing`, `load`."""

    def __init__(self, device: str, directory: str | Path | None = None):
        if not _DEVICE.fullmatch(device):
            raise ValueError(f"device name {device!r} must be letters, digits, '.', '_' or '-' (it names a file)")
        self.device = device
        self.path = Path(directory if directory is not None else default_directory()) / f"{device}.csv"

    def load(self) -> dict[MeasurementKey, Measurement]:
        """Every complete, well-formed row of the file (empty when it does not exist yet); StoreError for a file
        no crash explains (module docstring)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise StoreError(f"{self.path}: cannot read the measurement store: {error.strerror or error}") from None
        end = data.rfind(b"\n")
        if end < 0:
            return {}
        lines = data[:end].decode(errors="replace").split("\n")  # numbered as editors number them
        try:
            header = next(csv.reader(lines[:1]), None)
        except csv.Error:
            header = None
        if header is None or tuple(header) != COLUMNS:
            raise StoreError(f"{self.path}: line 1: header {_shown(lines[0])} is not a measurement store's "
                             f"({','.join(COLUMNS)}); move the file away or point latency.store elsewhere")
        rows = {}
        for number, line in enumerate(lines[1:], start=2):
            try:
                key, measurement = _parse(next(csv.reader([line])))
            except (ValueError, TypeError, StopIteration, csv.Error):
                continue
            wrong = _wrong(measurement)
            if wrong:
                raise StoreError(f"{self.path}: line {number}: {_described(key)}: {wrong}; delete that line to "
                                 f"measure it again")
            rows[key] = measurement
        return rows

    def get(self, key: MeasurementKey) -> Measurement | None:
        return self.load().get(MeasurementKey(*key))

    def missing(self, keys: Iterable[MeasurementKey]) -> list[MeasurementKey]:
        """The keys not measured yet, in the given order, each once."""
        stored = self.load()
        wanted = dict.fromkeys(MeasurementKey(*key) for key in keys)
        return [key for key in wanted if key not in stored]

    def put(self, key: MeasurementKey, measurement: Measurement) -> None:
        """Append one row in a single write (with the header when the file is new), then fsync."""
        key = MeasurementKey(*key)
        if any("\n" in str(cell) or "\r" in str(cell) for cell in key):
            raise StoreError(f"{self.path}: measurement key {key} contains a line break")
        wrong = _wrong(measurement)
        if wrong:
            raise StoreError(f"{self.path}: not storing the measurement of {_described(key)}: {wrong}")
        stats = [getattr(measurement.stats, name) for name in STATS]
        row = _line([*key, *stats, json.dumps(measurement.provenance, sort_keys=True)])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                row = _line(COLUMNS) + row
            elif os.pread(fd, 1, size - 1) != b"\n":
                row = b"\n" + row
            written = os.write(fd, row)
            if written != len(row):
                raise OSError(f"{self.path}: wrote {written} of {len(row)} bytes of a measurement row")
            os.fsync(fd)
        finally:
            os.close(fd)
