"""`python -m engine.run`: the embedded default runs, reruns keep finished work, bad configs fail in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from engine.run import main
from tests.conftest import ROOT

QUICKSTART = str(ROOT / "experiments" / "quickstart.yaml")


def test_quickstart_writes_the_run_directory(tmp_path: Path) -> None:
    overrides = [f"runs_dir={tmp_path}", "samples=4"]
    assert main([QUICKSTART, *overrides]) == 0
    run = tmp_path / "quickstart"
    table = pd.read_csv(run / "space.csv")
    assert list(table.source) == ["smallest", "largest", "lat_small", "mac_small"] + ["random"] * 4
    assert (table.supernet_max_abs_diff <= 1e-5).all()
    assert table.macs.min() == table.macs[0] and table.macs.max() == table.macs[1]
    assert "width: 0.5" in (run / "config.yaml").read_text()
    stamp = (run / "space.csv").stat().st_mtime_ns
    assert main([QUICKSTART, *overrides]) == 0
    assert (run / "space.csv").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("overrides, message", [
    (["space.width=-1"], "space.width: Input should be greater than 0"),
    (["space.skeleton=medium"], "space.skeleton: Value error, unknown skeleton 'medium'"),
    (["colour=red"], "colour: Extra inputs are not permitted"),
    (["space.input_size=[8, 8]"], "space.input_size: Value error, input size [8, 8] is below 32 pixels"),
    (["samples=many"], "samples: Input should be a valid integer"),
    (["name=a/b"], "name: String should match pattern"),
    (["space=3"], "space: Input should be a valid dictionary"),
    (["nokey"], "override 'nokey' is not of the form key.path=value"),
])
def test_bad_config_is_one_line_and_nonzero(overrides: list[str], message: str, capsys) -> None:
    assert main([QUICKSTART, *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_missing_config_file(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: no such config file" in capsys.readouterr().err


def test_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "engine.run", QUICKSTART, f"runs_dir={tmp_path}", "samples=1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "quickstart" / "space.csv").exists()
