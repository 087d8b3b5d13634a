"""The errors a user can cause, each worded for one line and carrying the exit code `python -m engine.run` returns.

Exit code 2: the configuration, the command line or the device (fix the input and run again); exit code 1: the
data, a diverged training or a failed export (the run's finished work is kept). The entry point catches
EngineError once and prints its message; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error meant for the user; `exit_code` is what the process returns."""

    exit_code = 1


class ConfigError(EngineError, ValueError):
    """A configuration problem, worded for one line: the file, the key path and what is wrong."""

    exit_code = 2


class DeviceError(EngineError, RuntimeError):
    """The configured device cannot measure and nothing stored can stand in; the message says what to do."""

    exit_code = 2


class StudyMismatch(EngineError, RuntimeError):
    """The study holds trials made with another latency predictor."""

    exit_code = 2


class MissingInput(EngineError):
    """A stage was asked to run before the stage that writes its input; the message names that stage."""

    exit_code = 2


class DatasetError(EngineError, ValueError):
    """A dataset problem, worded for one line that names the file or folder."""

    exit_code = 1


RECOMPUTE = "; delete it and run again to recompute it"
"""The advice of a file the run itself cannot read (not given where only a worker could not read it)."""


class CorruptFile(EngineError, ValueError):
    """A file the run wrote earlier cannot be read (truncated, overwritten); the message names it."""

    exit_code = 1


class TrainingDiverged(EngineError, RuntimeError):
    """The loss became NaN or inf; the last good checkpoint was kept."""

    exit_code = 1


class ExportMismatch(EngineError, RuntimeError):
    """ONNX Runtime's output differs from torch's beyond the tolerance."""

    exit_code = 1
