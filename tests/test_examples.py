"""The runnable example in the docstring of each extension point (as Optuna's tests run its docstrings' examples):
a latency backend, a dataset kind, a stage, a training hook and the latency regressor."""

from __future__ import annotations

import doctest

import pytest

from engine.data.datasets import FileDataset
from engine.runner import Stage
from engine.training.loop import Hook
from hardware.backends import Backend
from predictors.latency import LatencyRegressor

EXTENSION_POINTS = (Backend, FileDataset, Stage, Hook, LatencyRegressor)


@pytest.mark.parametrize("point", EXTENSION_POINTS, ids=lambda point: point.__name__)
def test_the_docstring_example_runs(point: type) -> None:
    example = doctest.DocTestFinder(recurse=False).find(point, point.__qualname__, globs={})[0]
    assert example.examples, f"{point.__module__}.{point.__qualname__} has no example in its docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(example)
    assert runner.summarize(verbose=False).failed == 0
