"""Checks of what a run will need, made before anything trains: the data's splits, the device (this machine's
backend or the agent), the study's storage and the Dask scheduler.

Each check returns a `Check` (what, whether it holds, the facts found) and raises nothing but EngineError subclasses;
`squeezenas plan` prints them all, and the search stage's declaration runs `services` before the first stage of a run
that will search, so a missing PostgreSQL driver or an unreachable scheduler stops the run before the supernet
trains. Nothing here writes a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.config import ExperimentConfig
from engine.data.splits import SplitListing, check_splits, size_mismatch
from engine.errors import ConfigError, DatasetError, DeviceError, EngineError
from engine.latency.meter import Meter, open_meter

CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class Check:
    """One thing a run needs: what it is, whether it holds (False: the run would stop; None: a warning) and what
    was found (or what is wrong)."""

    what: str
    ok: bool | None
    detail: str


def data(config: ExperimentConfig) -> list[Check]:
    """Every split the run reads, with its image count and sizes, and a warning when the evaluated size is not the
    size latency is measured at."""
    try:
        listings, warning = splits(config)
    except (DatasetError, ConfigError) as error:
        return [Check("data", False, str(error))]
    checks = []
    for listing in listings:
        sizes = ", ".join(f"{h}x{w}" for h, w in listing.sizes[:3]) + (" ..." if len(listing.sizes) > 3 else "")
        checks.append(Check(f"{listing.setting} {listing.split!r}", True,
                            f"{config.data.kind}: {listing.images} images, {sizes}"))
    if warning:
        checks.append(Check("image size", None, warning))
    checks.append(Check("classes", True, f"{len(config.data.class_names)}: {', '.join(config.data.class_names)}"))
    return checks


def splits(config: ExperimentConfig) -> tuple[list[SplitListing], str | None]:
    """Every split the run reads, listed (DatasetError for a missing or empty one, ConfigError for a training batch
    larger than the training set), and the warning of size_mismatch or None."""
    listings = check_splits(config.data, config.seed)
    batches(config, listings)
    return listings, size_mismatch(config.data, config.space.input_size, listings)


def batches(config: ExperimentConfig, listings: list[SplitListing]) -> None:
    """ConfigError naming the setting when a training batch holds more images than the training set."""
    images = next(listing.images for listing in listings if listing.setting == "data.train_split")
    images -= config.data.val_from_train or 0
    sizes = {"supernet.batch_size": config.supernet.batch_size, "retrain.train.batch_size":
             config.retrain.train.batch_size}
    if config.audit.enabled:
        sizes["audit.train.batch_size"] = config.audit.train.batch_size
    if "dnas" in config.search.strategies:
        sizes["search.dnas.batch_size"] = config.search.dnas.batch_size
    for setting, size in sizes.items():
        if size > images:
            raise ConfigError(f"{setting} {size} is larger than the {images} training images of data.train_split "
                               f"{config.data.train_split!r}; lower it or add images")


def device(config: ExperimentConfig) -> tuple[Check, Meter | None]:
    """The device the latency stage measures on, opened as a run opens it: its name, backend and version (the
    agent's own report when it is one)."""
    settings = config.latency
    where = "this machine" if settings.device == "local" else f"agent {settings.agent.url}"
    try:
        meter = open_meter(config)
    except EngineError as error:
        return Check("device", False, str(error)), None
    if meter is None:
        return Check("device", None, f"{where} is unreachable; the run would use stored measurements only"), None
    if meter.client is not None:
        info = meter.client.info()
        found = f"{info.get('device')}, {info.get('backend')} {info.get('backend_version', '')}".strip()
    else:
        found = f"{meter.store.device}, {meter.local.name} {meter.local.version}"
    return Check("device", True, f"{where}: {found}"), meter


def storage(config: ExperimentConfig) -> Check:
    """The study's storage: the run directory writable for SQLite, or the database's driver installed and its
    server answering (within CONNECT_TIMEOUT_S)."""
    url = config.search.storage
    if url is None:
        folder = next(path for path in (config.run_dir, *config.run_dir.absolute().parents) if path.exists())
        if not os.access(folder, os.W_OK):
            return Check("study storage", False, f"runs_dir: {folder} is not writable")
        return Check("study storage", True, f"sqlite:///{(config.paths.study).absolute()}")
    return _database(url)


def _database(url: str) -> Check:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    options = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgresql") else {}
    try:
        engine = create_engine(url, connect_args=options)
    except (ImportError, NoSuchModuleError) as error:
        return Check("study storage", False, f"search.storage: the database driver is not installed ({error}); for "
                                             f"PostgreSQL: pip install 'squeezenas-engine[postgresql]'")
    except ArgumentError as error:
        return Check("study storage", False, f"search.storage: not a database URL ({error})")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        first = str(error.orig if getattr(error, "orig", None) else error).strip().splitlines()[0]
        return Check("study storage", False, f"search.storage {engine.url.render_as_string()}: cannot connect "
                                             f"({first})")
    finally:
        engine.dispose()
    return Check("study storage", True, f"{engine.url.render_as_string()}: {engine.dialect.name}, connected")


def scheduler(config: ExperimentConfig) -> Check | None:
    """The running Dask scheduler of search.scheduler (None without one): reachable, and its workers
    single-threaded as a torch worker should be."""
    address = config.search.scheduler
    if address is None:
        return None
    from distributed import Client

    try:
        with Client(address, timeout=f"{CONNECT_TIMEOUT_S}s") as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
    except (OSError, TimeoutError) as error:
        return Check("dask scheduler", False, f"search.scheduler {address}: cannot connect ({error})")
    threads = sorted({worker["nthreads"] for worker in workers.values()})
    if not workers:
        return Check("dask scheduler", None, f"{address}: reachable, but no worker has joined yet")
    single = threads == [1]
    return Check("dask scheduler", True if single else None,
                 f"{address}: {len(workers)} workers, threads per worker {threads}"
                 + ("" if single else " (start workers with --nthreads 1: torch already uses the cores)"))


def services(config: ExperimentConfig) -> None:
    """The search's storage and scheduler, raising the first problem as one line (before a run's first stage)."""
    for check in (storage(config), scheduler(config)):
        if check is not None and check.ok is False:
            raise (DeviceError if check.what == "dask scheduler" else ConfigError)(check.detail)


def runs_dir(config: ExperimentConfig) -> Check:
    """Where the run writes, and whether it exists already (a run there resumes)."""
    state = "exists: the run resumes from what is there" if config.run_dir.exists() else "new"
    return Check("run directory", True, f"{Path(config.run_dir).absolute()} ({state})")
