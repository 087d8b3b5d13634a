"""`squeezenas`, the engine's command (installed by `pip install .`; `python -m engine.cli` is the same):

    squeezenas run CONFIG [key=value ...] [--stages a,b]   run an experiment into runs_dir/<name>/ (engine.run)
    squeezenas plan CONFIG [key=value ...]                 what a run would do and cost, without running (engine.plan)
    squeezenas agent [--backend ...] [--token-file ...]    serve latency measurements on this device (hardware.agent)
    squeezenas experiments                                 the shipped experiments: name, what it is, its YAML

CONFIG is a YAML file or a shipped experiment's name (`squeezenas run quickstart` works from any folder); the
overrides and options come in any order. Each command's --help says more.

Mistakes are one line on stderr with exit code 2, as `python -m engine.run` has them; otherwise the command returns
the exit code of the module it hands over to.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

PROG = "squeezenas"
DESCRIPTION = "SqueezeNAS engine: hardware-aware architecture search for real-time semantic segmentation."


class Arguments(argparse.ArgumentParser):
    """engine.run's argparse: mistakes in one line, exit code 2. Repeated here so that `squeezenas --help` and
    `squeezenas experiments` answer without importing engine.run (torch, pandas, optuna)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} ({self.prog} --help)\n")


def run_command(argv: list[str]) -> int:
    from engine.run import main

    return main(argv, prog=f"{PROG} run")


def plan_command(argv: list[str]) -> int:
    from engine.plan import main

    return main(argv)


def agent_command(argv: list[str]) -> int:
    from hardware.agent import main

    return main(argv)


def describe(path: Path) -> str:
    """The first comment line of an experiment's YAML, without its '#' ('...' when the sentence goes on); empty
    without one."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip()
            return text if text.endswith(".") else f"{text} ..."
        if line.strip():
            return ""
    return ""


def experiments_command(argv: list[str]) -> int:
    from engine.config import shipped

    parser = Arguments(prog=f"{PROG} experiments", description=COMMANDS["experiments"][0])
    parser.parse_args(argv)
    known = shipped()
    width = max(map(len, known), default=0)
    for name, path in sorted(known.items()):
        print(f"{name:<{width}}  {describe(path)}\n{'':<{width}}  {path}")
    return 0


COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "run": ("run an experiment (a YAML file or a shipped experiment's name) into runs_dir/<name>/", run_command),
    "plan": ("what a run would do and about how long it would take, without running it", plan_command),
    "agent": ("the device agent: measure ONNX models sent over HTTP on this machine", agent_command),
    "experiments": ("list the shipped experiments: name, what it is, where its YAML lies", experiments_command),
}


def parser() -> Arguments:
    """The top-level parser: its help lists the commands; each command parses its own arguments."""
    top = Arguments(prog=PROG, description=DESCRIPTION, epilog=__doc__.split("\n\n")[2],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (summary, _) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch `squeezenas COMMAND ...` to the command's module with the rest of the arguments; returns its exit
    code (a console script's return value is the process's exit status)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]][1](argv[1:])
    top = parser()
    top.parse_args(argv)  # --help, or a missing or unknown command: prints and exits
    top.error(f"the command comes first: {PROG} COMMAND [arguments]")  # what parsing lets through (-- run)


if __name__ == "__main__":
    sys.exit(main())
