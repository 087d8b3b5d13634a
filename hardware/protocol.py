"""The measurement protocol: warm-up runs, then timed runs of one prepared network, summarised in milliseconds.

Settings (`MeasurementProtocol`): warm-up runs, timed repeats, batch (1 by default), input (H, W) and CPU threads
(fixed through `torch.set_num_threads` or ONNX Runtime's intra-op threads). The garbage collector is paused while
timing, as `timeit` does. The result (`Measurement`) holds the statistics (median, mean, 90th percentile,
minimum, coefficient of variation, number of samples) and the provenance record of hardware/provenance.py
(device, backend and version, precision, threads, library versions, clocks, time, protocol settings). A replay
backend (a device recorded in HW-NAS-Bench's tables) is not timed: its recorded latency stands for every timed run
and the provenance says `replay` with where the value came from.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from hardware.backends import Backend, Model, Runner
from hardware.provenance import provenance

Clock = Callable[[], float]


def _cpu_count() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class MeasurementProtocol:
    """How a network is timed; every field is stored in the provenance of its measurements."""

    warmup: int = 10
    repeats: int = 50
    batch: int = 1
    size: tuple[int, int] = (1024, 2048)
    threads: int = field(default_factory=_cpu_count)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        for name in ("repeats", "batch", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"protocol {name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"protocol warmup must be >= 0, got {self.warmup}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"protocol size must be (H, W) of positive pixels, got {self.size}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The network input: batch x 3 x H x W."""
        return (self.batch, 3, *self.size)

    @property
    def resolution(self) -> str:
        """'HxW', as measurement stores key it."""
        return f"{self.size[0]}x{self.size[1]}"


@dataclass(frozen=True)
class LatencyStats:
    """Summary of timed runs in ms; `cv` is the standard deviation over the mean (a fraction, not ms)."""

    median_ms: float
    mean_ms: float
    p90_ms: float
    min_ms: float
    cv: float
    samples: int

    @classmethod
    def of(cls, samples_ms: np.ndarray) -> "LatencyStats":
        samples_ms = np.asarray(samples_ms, dtype=np.float64)
        if samples_ms.ndim != 1 or len(samples_ms) == 0:
            raise ValueError(f"latency statistics need a non-empty 1-D array of samples, got shape {samples_ms.shape}")
        mean = float(samples_ms.mean())
        return cls(
            median_ms=float(np.median(samples_ms)),
            mean_ms=mean,
            p90_ms=float(np.percentile(samples_ms, 90)),
            min_ms=float(samples_ms.min()),
            cv=float(samples_ms.std() / mean) if mean > 0 else 0.0,
            samples=len(samples_ms),
        )


@dataclass(frozen=True)
class Measurement:
    stats: LatencyStats
    provenance: dict[str, object]

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self.stats), "provenance": self.provenance}


def time_runs(run: Runner, warmup: int, repeats: int, clock: Clock = time.perf_counter) -> np.ndarray:
    """Milliseconds of `repeats` calls of `run` after `warmup` untimed ones, the garbage collector paused."""
    for _ in range(warmup):
        run()
    samples = np.empty(repeats)
    collecting = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeats):
            start = clock()
            run()
            samples[i] = (clock() - start) * 1000.0
    finally:
        if collecting:
            gc.enable()
    return samples


def measure(model: Model, backend: Backend, protocol: MeasurementProtocol,
            shape: tuple[int, ...] | None = None) -> Measurement:
    """Latency of `model` on `backend` under `protocol`; `shape` overrides the input (a block's feature map)."""
    shape = protocol.shape if shape is None else tuple(shape)
    replayed = backend.answer(model, shape)
    if replayed is not None:  # a recorded device: its latency stands for every timed run
        stats = LatencyStats.of(np.full(protocol.repeats, replayed[0]))
    else:
        stats = timed(model, backend, protocol, shape)
    record = provenance(backend.name, backend.precision, protocol.threads, backend.version)
    record["protocol"] = {**asdict(protocol), "shape": list(shape)}
    if replayed is not None:
        record["replay"] = replayed[1]
    return Measurement(stats, record)


def timed(model: Model, backend: Backend, protocol: MeasurementProtocol, shape: tuple[int, ...]) -> LatencyStats:
    """The statistics of the protocol's timed runs of `model` prepared on `backend` at `shape`."""
    threads = torch.get_num_threads()
    try:
        run = backend.prepare(model, shape, protocol.threads)
        return LatencyStats.of(time_runs(run, protocol.warmup, protocol.repeats))
    finally:  # the protocol's thread count is for timing only: training and scoring after it keep theirs
        torch.set_num_threads(threads)
