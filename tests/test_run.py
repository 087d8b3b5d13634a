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
FAST = ["samples=4", "supernet.steps=2", "supernet.checkpoint_every=1", "data.synthetic_size=[64,128]",
        "data.crop=[64,128]", "data.synthetic_train=16", "data.synthetic_val=4", "evaluation.calibration_images=4",
        "space.input_size=[64,128]"]


def test_quickstart_writes_the_run_directory(tmp_path: Path) -> None:
    overrides = [f"runs_dir={tmp_path}", *FAST]
    assert main([QUICKSTART, *overrides]) == 0
    run = tmp_path / "quickstart"
    assert (run / "supernet.pt").exists() and (run / "supernet" / "metrics.csv").exists()
    scored = pd.read_csv(run / "inherited.csv")
    assert len(scored) == 8 and scored.miou.between(0, 1).all()
    table = pd.read_csv(run / "space.csv")
    assert list(table.source) == ["smallest", "largest", "lat_small", "mac_small"] + ["random"] * 4
    assert (table.supernet_max_abs_diff <= 1e-5).all()
    assert table.macs.min() == table.macs[0] and table.macs.max() == table.macs[1]
    assert "width: 0.5" in (run / "config.yaml").read_text()
    stamps = {name: (run / name).stat().st_mtime_ns for name in ("space.csv", "supernet.pt", "inherited.jsonl")}
    assert main([QUICKSTART, *overrides]) == 0
    assert {name: (run / name).stat().st_mtime_ns for name in stamps} == stamps


@pytest.mark.parametrize("overrides, message", [
    (["space.width=-1"], "space.width: Input should be greater than 0"),
    (["space.skeleton=medium"], "space.skeleton: Value error, unknown skeleton 'medium'"),
    (["colour=red"], "colour: Extra inputs are not permitted"),
    (["space.input_size=[8, 8]"], "space.input_size: Value error, input size [8, 8] is below 32 pixels"),
    (["samples=many"], "samples: Input should be a valid integer"),
    (["name=a/b"], "name: String should match pattern"),
    (["space=3"], "space: Input should be a valid dictionary"),
    (["nokey"], "override 'nokey' is not of the form key.path=value"),
    (["data.kind=camvid"], "data.root is required for camvid"),
    (["data.kind=cityscapes", "data.root=/nonexistent"], "data.root /nonexistent is not a directory"),
    (["space.num_classes=19"], "space.num_classes 19 differs from the 11 classes of data.kind synthetic"),
    (["supernet.device=tpu"], "supernet.device: String should match pattern"),
    (["supernet.sampling=greedy"], "supernet.sampling: Input should be 'uniform' or 'sandwich'"),
    (["supernet.lr=0"], "supernet.lr: Input should be greater than 0"),
])
def test_bad_config_is_one_line_and_nonzero(overrides: list[str], message: str, capsys) -> None:
    assert main([QUICKSTART, *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_missing_config_file(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: no such config file" in capsys.readouterr().err


def test_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "engine.run", QUICKSTART, f"runs_dir={tmp_path}", *FAST],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "quickstart" / "inherited.csv").exists()
