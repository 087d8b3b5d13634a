"""The one training loop, shared by supernet training, stand-alone training and both phases of DNAS.

In the manner of detectron2's TrainerBase: `Loop` owns the step counter and the training seconds and calls a step
function on each batch; hooks (engine/training/hooks.py) do the rest before training, after each step and after
training: checkpoints, the metrics log, progress, the NaN stop. The loop's state is one state_dict over named
stateful parts (modules, optimisers, schedulers, a grad scaler) plus the RNG states, the step and the seconds, so a
run restored from it continues as an uninterrupted run would: the batches of a step depend only on (seed, step)
and every random draw of a step comes from the restored generators.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Protocol, Sequence

from engine.training import checkpoint

Step = Callable[[int, Any], dict[str, float]]  # (0-based index of the step, its batch) -> the step's numbers
Data = Callable[[int], Iterator[Any]]  # first step -> the batches of that step and every later one


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class Hook:
    """Called by the loop around training; each method does nothing unless a hook overrides it.

    A hook that keeps each step's loss (engine/training/hooks.py has the checkpoint, the metrics log, the progress
    bar and the NaN stop):

    >>> from engine.training.loop import Hook, Loop
    >>> class Losses(Hook):
    ...     def __init__(self):
    ...         self.losses = []
    ...     def after_step(self, loop):
    ...         self.losses.append(loop.output["loss"])
    >>> losses = Losses()
    >>> step = lambda index, batch: {"loss": 1.0 / (index + 1)}
    >>> Loop(step, data=lambda first: iter(range(first, 100)), total=3, parts={}, hooks=[losses]).run()
    >>> losses.losses
    [1.0, 0.5, 0.3333333333333333]
    """

    def before_train(self, loop: Loop) -> None:
        """Before the first batch is drawn (a checkpoint restored here sets the step the batches start at)."""

    def after_step(self, loop: Loop) -> None:
        """After each step: loop.step counts the steps done, loop.output holds what the step returned."""

    def after_train(self, loop: Loop) -> None:
        """After the last step, and also when a step or a hook raised (loop.finished is then False)."""


class Loop:
    """Runs `step(index, batch)` from loop.step to `total`, batches from `data(loop.step)`, hooks around it.

    loop.seconds sums the time of the step function over this run and the runs it resumes (batch loading is not
    counted); loop.step_seconds is the last step's.
    """

    def __init__(self, step: Step, data: Data, total: int, parts: dict[str, Stateful], hooks: Sequence[Hook] = ()):
        self.run_step, self.data, self.total, self.parts, self.hooks = step, data, total, parts, list(hooks)
        self.step, self.seconds, self.step_seconds = 0, 0.0, 0.0
        self.output: dict[str, float] = {}
        self.finished = False

    def state_dict(self) -> dict[str, Any]:
        """The parts' state_dicts by name, the RNG states, the step and the seconds."""
        parts = {name: part.state_dict() for name, part in self.parts.items()}
        return {**parts, "step": self.step, "seconds": self.seconds, "rng": checkpoint.rng_state()}

    def load_parts(self, saved: dict[str, Any]) -> None:
        """Only the parts' states (e.g. to start from another phase's weights); step, seconds and RNGs stay."""
        for name, part in self.parts.items():
            part.load_state_dict(saved[name])

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.load_parts(saved)
        checkpoint.set_rng_state(saved["rng"])
        self.step, self.seconds = saved["step"], saved["seconds"]

    def run(self) -> None:
        try:
            for hook in self.hooks:
                hook.before_train(self)
            batches = self.data(self.step)
            while self.step < self.total:
                batch = next(batches)
                start = time.perf_counter()
                self.output = self.run_step(self.step, batch)
                self.step_seconds = time.perf_counter() - start
                self.seconds += self.step_seconds
                self.step += 1
                for hook in self.hooks:
                    hook.after_step(self)
            self.finished = True
        finally:
            for hook in self.hooks:
                hook.after_train(self)
