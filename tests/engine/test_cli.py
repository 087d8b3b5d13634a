"""`squeezenas` (engine/cli.py) and the Python API `engine.run.run`: overrides and --stages in any order, the shipped
experiments by name, one-line mistakes with exit code 2, a RunResult read from the run, and the command installed
from a wheel into a fresh virtual environment, run from a folder outside the checkout."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
import types
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from engine.cli import main
from engine.config import load
from engine.errors import ConfigError
from engine.run import RunResult, run
from engine.run import main as run_main


def resolved(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


@pytest.mark.parametrize("order", ["stages first", "stages between", "stages last"])
def test_overrides_and_stages_in_any_order(order: str, run_args: list[str], tmp_path: Path) -> None:
    overrides = [*run_args, "seed=3"]
    stages = ["--stages", "space"]
    argv = {"stages first": [*stages, *overrides], "stages between": [*overrides[:2], *stages, *overrides[2:]],
            "stages last": [*overrides, *stages]}[order]
    assert main(["run", "quickstart", *argv]) == 0
    run_dir = tmp_path / "quickstart"
    assert (run_dir / "space.csv").exists() and not (run_dir / "supernet.pt").exists()
    assert resolved(run_dir)["seed"] == 3 and resolved(run_dir)["samples"] == 4


def test_python_m_engine_run_takes_any_order_too(quickstart: str, run_args: list[str], tmp_path: Path) -> None:
    assert run_main(["--stages", "space", quickstart, "seed=5", *run_args]) == 0
    assert resolved(tmp_path / "quickstart")["seed"] == 5 and (tmp_path / "quickstart" / "space.csv").exists()


def test_experiments_lists_the_shipped_ones(capsys) -> None:
    assert main(["experiments"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = {line.split()[0]: line for line in lines[::2]}
    assert {"quickstart", "xavier", "camvid", "cityscapes"} <= set(names)
    assert "The embedded default: synthetic street scenes" in names["quickstart"]
    paths = [Path(line.strip()) for line in lines[1::2]]
    assert all(path.is_file() and path.suffix == ".yaml" for path in paths)
    assert [path.stem for path in paths] == [line.split()[0] for line in lines[::2]]


@pytest.mark.parametrize("argv, message", [
    (["run", "nosuch"], "error: nosuch: no such config file, nor a shipped experiment (shipped: camvid, "),
    (["run", "quickstart", "--stages", "space,searching"], "error: --stages: unknown stage searching"),
    (["run"], "error: the following arguments are required: config (squeezenas run --help)"),
    (["run", "quickstart", "--frobnicate"], "error: unrecognized arguments: --frobnicate (squeezenas run --help)"),
    (["frobnicate"], "error: argument COMMAND: invalid choice: 'frobnicate'"),
    ([], "error: the following arguments are required: COMMAND (squeezenas --help)"),
    (["experiments", "extra"], "error: unrecognized arguments: extra (squeezenas experiments --help)"),
])
def test_mistakes_are_one_line_and_exit_2(argv: list[str], message: str, capsys) -> None:
    try:
        code = main(argv)
    except SystemExit as stopped:
        code = stopped.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(message), err


@pytest.mark.parametrize("argv, says", [
    ([], ["run", "plan", "agent", "experiments", "shipped experiment"]),
    (["run"], ["squeezenas run", "--stages", "overrides", "shipped experiment"]),
    (["experiments"], ["squeezenas experiments"]),
    (["agent"], ["--backend", "--token-file"]),
])
def test_help_is_useful(argv: list[str], says: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--help"])
    out = capsys.readouterr().out
    assert stopped.value.code == 0 and all(word in out for word in says), out


def test_plan_and_agent_get_the_rest_of_the_command_line(monkeypatch, capsys) -> None:
    handed = []
    plan = types.ModuleType("engine.plan")
    plan.main = lambda argv: handed.append(argv) or 3
    monkeypatch.setitem(sys.modules, "engine.plan", plan)
    assert main(["plan", "quickstart", "seed=3", "--stages", "space"]) == 3
    assert handed == [["quickstart", "seed=3", "--stages", "space"]]
    monkeypatch.delenv("SQUEEZENAS_AGENT_TOKEN", raising=False)
    assert main(["agent", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hardware.agent: ") and "token" in err[0], err


def test_module_entry_point(root: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "engine.cli", "experiments"], cwd=root, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "quickstart" in result.stdout, result.stderr


@pytest.fixture(scope="module")
def api_run(tmp_path_factory: pytest.TempPathFactory, fast: list[str]) -> RunResult:
    """A whole tiny quickstart run through the Python API, from an ExperimentConfig with overrides on top."""
    folder = tmp_path_factory.mktemp("api")
    return run(load("quickstart"), [f"runs_dir={folder}", f"latency.store={folder / 'store'}", *fast])


def test_run_returns_the_front_and_the_picks(api_run: RunResult) -> None:
    assert api_run.run_dir == api_run.config.runs_dir / "quickstart" == api_run.paths.root
    assert api_run.config.samples == 4 and api_run.report == api_run.run_dir / "report.html"
    pd.testing.assert_frame_equal(api_run.front, pd.read_csv(api_run.run_dir / "front.csv"))
    assert len(api_run.front) >= 1 and {"key", "miou", "latency_ms"} <= set(api_run.front.columns)
    selection = json.loads((api_run.run_dir / "selected" / "selection.json").read_text())["picked"]
    assert api_run.picks and sorted(p["label"] for p in api_run.picks) == sorted(p["label"] for p in selection)
    for pick in api_run.picks:
        assert pick == json.loads((api_run.run_dir / "selected" / pick["label"] / "metrics.json").read_text())
        assert pick["key"] in set(api_run.front.key)


def test_run_of_some_stages_has_no_front_yet(run_args: list[str], tmp_path: Path) -> None:
    result = run("quickstart", run_args, stages=["space"])
    assert (result.run_dir / "space.csv").exists() and result.front is None and result.picks == []
    assert result.report is None and result.run_dir == tmp_path / "quickstart"


@pytest.mark.parametrize("config, overrides, stages, message", [
    ("nosuch", [], None, "nosuch: no such config file, nor a shipped experiment"),
    ("quickstart", ["space.width=-1"], None, "space.width: Input should be greater than 0"),
    (None, ["space.width=-1"], None, "quickstart: space.width: Input should be greater than 0"),
    ("quickstart", [], "space,searching", "--stages: unknown stage searching"),
    ("quickstart", [], ["audit"], "--stages audit: the configuration disables this stage"),
])
def test_run_raises_what_the_command_prints(config, overrides: list[str], stages, message: str,
                                            tmp_path: Path) -> None:
    config = load("quickstart") if config is None else config
    with pytest.raises(ConfigError) as raised:
        run(config, [*overrides, f"runs_dir={tmp_path}"], stages=stages)
    assert message in str(raised.value) and not (tmp_path / "quickstart").exists()


# The command installed from a wheel into a fresh virtual environment, run from a folder outside the checkout.


def build_wheel(root: Path, work: Path) -> Path:
    """A wheel of the working tree: the files pyproject packages copied out first (pip builds in the source tree)."""
    project = tomllib.loads((root / "pyproject.toml").read_text())
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", project["project"]["readme"]):
        shutil.copy2(root / name, source / name)
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        shutil.copytree(root / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(work / "wheel"), str(source)], check=True, capture_output=True, timeout=300)
    return next((work / "wheel").glob("squeezenas_engine-*.whl"))


class Venv:
    """A virtual environment that sees this interpreter's packages (torch, ...) but not the checkout."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    def __call__(self, program: str, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.folder / "bin" / program), *args], cwd=cwd, env=self.env,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, root: Path) -> Venv:
    work = tmp_path_factory.mktemp("install")
    wheel = build_wheel(root, work)
    assert {"experiments/quickstart.yaml", "experiments/xavier.yaml", "engine/cli.py"} <= set(
        zipfile.ZipFile(wheel).namelist())
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(work / "venv")], check=True,
                   capture_output=True, timeout=300)
    venv = Venv(work / "venv")
    done = venv("pip", "install", "--no-deps", "--no-index", "-q", str(wheel), cwd=work)
    assert done.returncode == 0, done.stderr
    return venv


def test_the_installed_package_is_the_venvs_not_the_checkout(installed: Venv, root: Path, tmp_path: Path) -> None:
    found = installed("python", "-c", "import engine, experiments; print(engine.__file__); print(experiments.__file__)",
                      cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    for line in found.stdout.split():
        assert Path(line).is_relative_to(installed.folder) and not Path(line).is_relative_to(root), line


def test_installed_command_runs_quickstart_from_elsewhere(installed: Venv, run_args: list[str],
                                                          tmp_path: Path) -> None:
    done = installed("squeezenas", "run", "quickstart", "--stages", "space", *run_args, "seed=7", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "quickstart" / "space.csv").exists() and resolved(tmp_path / "quickstart")["seed"] == 7
    listed = installed("squeezenas", "experiments", cwd=tmp_path)
    assert listed.returncode == 0 and str(installed.folder) in listed.stdout, listed.stderr


@pytest.mark.slow
def test_installed_command_runs_the_whole_quickstart(installed: Venv, run_args: list[str], tmp_path: Path) -> None:
    done = installed("squeezenas", "run", "quickstart", *run_args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "quickstart"
    assert (run_dir / "front.csv").exists() and (run_dir / "report.html").exists()
    assert list((run_dir / "selected").glob("*/metrics.json")) and "report: " in done.stdout  # rich wraps the path


@pytest.mark.skipif(importlib.util.find_spec("engine.plan") is None, reason="engine/plan.py has not landed yet")
def test_installed_plan_prints_an_estimate_within_a_minute(installed: Venv, tmp_path: Path) -> None:
    done = installed("squeezenas", "plan", "quickstart", cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "supernet" in done.stdout and any(character.isdigit() for character in done.stdout), done.stdout
