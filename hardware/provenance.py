"""Provenance of a measurement: which machine, backend, library versions, settings, clocks and load produced it.

The 1-minute load average is kept because other processes on the machine slow a measurement down (on a shared
2-core machine, two OpenMP threads stall badly behind one busy process).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import torch

LIBRARIES = ("torch", "onnxruntime", "tensorrt", "numpy")
CPUFREQ = Path("/sys/devices/system/cpu")
DEVFREQ = Path("/sys/class/devfreq")


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


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _nvpmodel() -> str | None:
    """The Jetson power mode as `nvpmodel -q` prints it; None off Jetson."""
    if shutil.which("nvpmodel") is None:
        return None
    try:
        done = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return " ".join(done.stdout.split()) or None


def clocks() -> dict[str, object]:
    """Whatever clock settings the OS exposes: per-CPU governor and current MHz, devfreq devices (a Jetson's GPU
    and memory), the Jetson power mode. Empty on machines that expose none (many VMs)."""
    record: dict[str, object] = {}
    for cpu in sorted(CPUFREQ.glob("cpu[0-9]*/cpufreq"), key=lambda p: int(p.parent.name[3:])):
        khz, governor = _read(cpu / "scaling_cur_freq"), _read(cpu / "scaling_governor")
        if khz is not None:
            record[f"{cpu.parent.name}_mhz"] = int(khz) / 1000
        if governor is not None:
            record[f"{cpu.parent.name}_governor"] = governor
    for device in sorted(DEVFREQ.glob("*")):
        hz = _read(device / "cur_freq")
        if hz is not None and hz.isdigit():
            record[f"{device.name}_mhz"] = int(hz) / 1e6
    power_mode = _nvpmodel()
    if power_mode is not None:
        record["nvpmodel"] = power_mode
    return record


def device_name(gpu: bool = False) -> str:
    """A file-name-safe name of this machine's CPU (or CUDA GPU), e.g. 'amd-epyc-7b13'."""
    name = torch.cuda.get_device_name() if gpu else _cpu_model()
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def provenance(backend: str, precision: str = "fp32", threads: int | None = None,
               backend_version: str | None = None) -> dict[str, object]:
    """A JSON-ready record of the host, settings and clocks, stored beside every measurement."""
    record: dict[str, object] = {
        "host": platform.node(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "backend": backend,
        "backend_version": backend_version,
        "precision": precision,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "clocks": clocks(),
        "load_average": os.getloadavg()[0],
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name()
        record["cuda"] = torch.version.cuda
    return record
