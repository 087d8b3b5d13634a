"""Dask for work spread over processes: a LocalCluster of single-threaded worker processes whose scratch lives in the
run (never /tmp), or the running scheduler at an address; tasks' results in the order they finish; and tasks that
say, in one line, which machine could not read which file."""

from __future__ import annotations

import functools
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from engine.errors import RECOMPUTE, ConfigError, CorruptFile

FOR_TORCH = {
    # a task waits on the scheduler until a worker's thread is free, so tasks start in order of priority (by default
    # each worker is handed a second task at once, whatever the priorities)
    "distributed.scheduler.worker-saturation": 1.0,
    # Dask's default environment without MALLOC_TRIM_THRESHOLD_=65536, which makes glibc hand every freed tensor back
    # to the kernel: a training step on a worker took 2x as long as in a plain process (benchmarks/retrain_workers.py)
    "distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1},
}


@contextmanager
def dask_client(scratch: Path, workers: int, address: str | None = None) -> Iterator[Any]:
    """A distributed.Client of a new LocalCluster of `workers` single-threaded processes (closed on exit), or of the
    scheduler at `address`; the workers' and the scheduler's scratch in `scratch`."""
    import dask
    from distributed import Client, LocalCluster

    settings = {"temporary-directory": str(scratch), **FOR_TORCH}
    with dask.config.set(settings):
        cluster = None if address else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                    dashboard_address=None, local_directory=str(scratch))
    client = Client(address or cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def as_finished(client: Any, function: Callable, tasks: Sequence[tuple], priorities: Sequence[float] | None = None
                ) -> Iterator[tuple[tuple, Any]]:
    """`function(*task)` for every task on the cluster; yields (task, result) as each finishes (a task's error is
    raised here). `priorities`: higher starts first (e.g. the longest first, so the last to start is short)."""
    from distributed import as_completed

    priorities = priorities or [0] * len(tasks)
    ordered = sorted(range(len(tasks)), key=lambda i: -priorities[i])  # idle workers take the first submitted
    futures = {client.submit(function, *tasks[i], pure=False, priority=priorities[i]): tasks[i] for i in ordered}
    for future in as_completed(futures):
        yield futures[future], future.result()


def on_worker(task: Callable) -> Callable:
    """A Dask task whose failure to read the run's files (a worker started elsewhere, without the data or the run's
    folder at the same absolute path) is one ConfigError naming the worker's machine and the file; it never advises
    deleting a file the main process may read fine."""
    from pydantic import ValidationError

    @functools.wraps(task)
    def wrapped(*args: Any) -> Any:
        try:
            return task(*args)
        except (CorruptFile, OSError, ValidationError) as error:
            raise ConfigError(f"a Dask worker on {socket.gethostname()} cannot read the run's files "
                              f"({_unread(error)}); every worker needs this code version and the run's folder, data "
                              f"and measurement store at the same absolute paths") from None

    return wrapped


def _unread(error: Exception) -> str:
    if isinstance(error, OSError):
        return f"{error.filename}: {error.strerror}" if error.filename else str(error)
    if isinstance(error, CorruptFile):
        return str(error).removesuffix(RECOMPUTE)
    first = error.errors()[0]
    return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
