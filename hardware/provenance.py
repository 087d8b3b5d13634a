"""Provenance of a measurement: which machine, backend, library versions and settings produced it."""

from __future__ import annotations

import datetime as dt
import platform
from importlib import metadata
from pathlib import Path

import torch

LIBRARIES = ("torch", "onnxruntime", "tensorrt", "numpy")


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance(backend: str, precision: str = "fp32", threads: int | None = None) -> dict[str, object]:
    """A JSON-ready record of the host and settings, stored beside every measurement."""
    record: dict[str, object] = {
        "host": platform.node(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "backend": backend,
        "precision": precision,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name()
        record["cuda"] = torch.version.cuda
    return record
