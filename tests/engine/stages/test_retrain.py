"""The retrain stage with a test split: the picks are scored on val and on data.test_split, which nothing before
them read (changing it reruns neither the supernet nor the search), and the report shows both."""

from __future__ import annotations

import json
from pathlib import Path

from engine.run import main


def test_picks_are_scored_on_the_test_split_the_search_never_saw(quickstart, run_args: list[str],
                                                                 tmp_path: Path) -> None:
    assert main([quickstart, *run_args]) == 0
    run = tmp_path / "quickstart"
    before = {path.name: path.stat().st_mtime_ns for path in (run / "stages").glob("*.json")}
    assert main([quickstart, *run_args, "data.test_split=test"]) == 0
    after = {path.name: path.stat().st_mtime_ns for path in (run / "stages").glob("*.json")}
    rerun = {name for name in after if after[name] != before[name]}
    assert rerun == {"retrain.json", "report.json"}, rerun
    metrics = [json.loads(path.read_text()) for path in (run / "selected").glob("*/metrics.json")]
    assert metrics and all(0 <= m["test_miou"] <= 1 and m["test_split"] == "test" for m in metrics)
    assert all(len(m["test_iou"]) == len(m["iou"]) for m in metrics)
    assert "retrained mIoU (test split test)" in (run / "report.html").read_text()
