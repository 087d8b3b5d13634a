"""The measurement store: one CSV file per device, shared by runs, so no network is measured twice.

Rows are keyed by (space, genotype key, resolution, backend, batch, threads) and hold the latency statistics of
hardware/protocol.py plus the provenance as a JSON column. The files live in one cache directory
(`$SQUEEZENAS_MEASUREMENTS`, else `$XDG_CACHE_HOME/squeezenas-engine/measurements`, else
`~/.cache/squeezenas-engine/measurements`), or wherever the caller says.

Crash safety: each row (with the header, for a new file) goes to the file in one `write` call on a descriptor
opened for appending, then fsync, so a kill mid-write loses at most that row. On reading, text after the last
newline (a truncated row) and rows that do not parse are skipped; the next append starts on a fresh line.
When a key appears twice, the later row wins.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Iterable, NamedTuple

from hardware.protocol import LatencyStats, Measurement, MeasurementProtocol
from spaces.space import skeleton

STATS = tuple(f.name for f in fields(LatencyStats))
_DEVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


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
    """One CSV row as (key, measurement); ValueError when it is malformed."""
    if len(row) != len(COLUMNS):
        raise ValueError(f"{len(row)} cells, expected {len(COLUMNS)}")
    cells = dict(zip(COLUMNS, row))
    key = MeasurementKey(cells["space"], cells["genotype"], cells["resolution"], cells["backend"],
                         int(cells["batch"]), int(cells["threads"]))
    stats = LatencyStats(**{name: float(cells[name]) for name in STATS if name != "samples"},
                         samples=int(cells["samples"]))
    return key, Measurement(stats, json.loads(cells["provenance"]))


class MeasurementStore:
    """The measurements of one device: `get`, `put`, `missing`, `load`."""

    def __init__(self, device: str, directory: str | Path | None = None):
        if not _DEVICE.fullmatch(device):
            raise ValueError(f"device name {device!r} must be letters, digits, '.', '_' or '-' (it names a file)")
        self.device = device
        self.path = Path(directory if directory is not None else default_directory()) / f"{device}.csv"

    def load(self) -> dict[MeasurementKey, Measurement]:
        """Every complete, well-formed row of the file (empty when it does not exist yet)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        lines = data[: data.rfind(b"\n") + 1].decode(errors="replace").splitlines()
        if not lines:
            return {}
        header = next(csv.reader(lines[:1]))
        if tuple(header) != COLUMNS:
            raise ValueError(f"{self.path}: header {','.join(header)!r} is not a measurement store's "
                             f"({','.join(COLUMNS)})")
        rows = {}
        for row in csv.reader(lines[1:]):
            try:
                key, measurement = _parse(row)
            except (ValueError, TypeError):
                continue
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
            raise ValueError(f"measurement key {key} contains a line break")
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
