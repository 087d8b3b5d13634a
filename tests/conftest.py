"""Shared fixtures: the material in ../shared (skipped with a reason when absent, used when present as in CI), the
repository root, and the quickstart experiment with the overrides that make a run of seconds."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SQUEEZENAS_SHARED", ROOT.parent / "shared"))
FRAME = "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


FAST = ["samples=4", "supernet.steps=2", "supernet.checkpoint_every=1", "latency.measurements=10",
        "latency.heldout=4", "latency.repeats=3", "latency.warmup=1", "latency.pool=50", "search.population=6",
        "search.generations=2", "retrain.train.steps=2", "retrain.train.checkpoint_every=1", "retrain.workers=1",
        "data.synthetic_size=[64,128]", "data.crop=[64,128]", "data.synthetic_train=16", "data.synthetic_val=4",
        "evaluation.calibration_images=4", "space.input_size=[64,128]", "search.strategies=[evolution]"]


def shared_path(relative: str) -> Path:
    """A path under ../shared/data; the calling test is skipped, with the path as reason, when it is absent."""
    path = SHARED / "data" / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not beside this checkout)")
    return path


@pytest.fixture(scope="session")
def cityscapes_frame() -> torch.Tensor:
    """The real Cityscapes frame, RGB 256x128 bilinearly resized to 1024x2048, ImageNet-normalised: [1,3,H,W]."""
    image = Image.open(shared_path("cityscapes-sample") / FRAME).convert("RGB")
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(1024, 2048), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.fixture(scope="session")
def shared() -> Callable[[str], Path]:
    """shared(relative): a path under ../shared/data, the test skipped (saying which) when it is absent."""
    return shared_path


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root (the working directory of subprocess runs)."""
    return ROOT


@pytest.fixture(scope="session")
def quickstart() -> str:
    """experiments/quickstart.yaml, the embedded default."""
    return str(ROOT / "experiments" / "quickstart.yaml")


@pytest.fixture(scope="session")
def fast() -> list[str]:
    """Quickstart overrides for a run of seconds (tiny images, 2 training steps, few measurements, the evolution only)."""
    return list(FAST)


@pytest.fixture
def run_args(tmp_path: Path, fast: list[str]) -> list[str]:
    """`fast` with the run directory and the measurement store under tmp_path."""
    return [f"runs_dir={tmp_path}", f"latency.store={tmp_path / 'store'}", *fast]


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The URL of a throwaway PostgreSQL server (initdb + pg_ctl, trust auth on 127.0.0.1, a free port), stopped at
    the end of the session; the test is skipped, saying why, without the server binaries or psycopg2."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not binaries:
        pytest.skip("PostgreSQL server binaries are absent (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")
    bin_dir = binaries[-1].parent
    folder = Path(tempfile.mkdtemp(prefix="squeezenas-pg-"))
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user the package made
        folder.chmod(0o755)
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    run = functools.partial(subprocess.run, check=True, capture_output=True, text=True, timeout=120)
    try:
        run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "squeezenas", "--auth=trust"])
        run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
             f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"])
    except (OSError, subprocess.SubprocessError) as error:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {getattr(error, 'stderr', None) or error}")
    try:
        run([*as_user, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "squeezenas", "runs"])
        yield f"postgresql://squeezenas@127.0.0.1:{port}/runs"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    """With pytest-xdist's workers (the default addopts), one thread each for torch, XGBoost and ONNX Runtime in them
    and in the processes they start: set here, in the controller, before the workers are spawned with its
    environment (two workers of two threads on two cores ran the suite slower than one process)."""
    if getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, "1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Mark the reports of tests that use the PostgreSQL server, for the summary line below."""
    outcome = yield
    if "postgres" in getattr(item, "fixturenames", ()):
        outcome.get_result().user_properties.append(("postgres", True))


def pytest_terminal_summary(terminalreporter) -> None:
    """One line saying how the tests against a real PostgreSQL server went (CI's log shows it ran)."""
    outcomes = {}
    for state in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(state, []):
            if ("postgres", True) in getattr(report, "user_properties", ()):
                if report.when == "call" or report.outcome != "passed":
                    outcomes.setdefault(state, []).append(report.nodeid.split("::")[-1])
    if outcomes:
        counts = ", ".join(f"{len(names)} {state}" for state, names in outcomes.items())
        terminalreporter.write_line(f"PostgreSQL server tests: {counts} ({'; '.join(sum(outcomes.values(), []))})")
