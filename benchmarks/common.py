"""What several benchmarks share: the host line they print first, and the empty folder they run in."""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def host() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}"


@contextmanager
def scratch(parser: argparse.ArgumentParser, keep: Path | None) -> Iterator[Path]:
    """An empty folder for the benchmark's runs: `keep` (kept afterwards; it must not exist yet) or a temporary
    one, removed at the end."""
    if keep is not None and keep.exists():
        parser.error(f"--keep {keep} exists; the benchmark starts from empty directories")
    with tempfile.TemporaryDirectory() as temporary:
        yield keep or Path(temporary)


def one_skeleton(parser: argparse.ArgumentParser, config):
    """The experiment, when it searches one skeleton; one line and exit 2 otherwise (the benchmark measures one)."""
    if len(config.space.skeletons) > 1:
        parser.error(f"space.skeleton: this benchmark takes one skeleton, the experiment has "
                     f"{list(config.space.skeletons)}; add space.skeleton=<one of them>")
    return config


def markdown(frame) -> str:
    """A pandas DataFrame as a Markdown table (its index as the first column), without the tabulate package."""
    frame = frame.reset_index()
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
