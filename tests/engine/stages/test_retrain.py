"""The retrain stage with a test split: the picks are scored on val and on data.test_split, which nothing before
them read (changing it reruns neither the supernet nor the search), and the report shows both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


class ReadTheTestSplit(Exception):
    pass


def test_the_search_selection_and_audit_never_read_a_test_image(quickstart, run_args: list[str], monkeypatch,
                                                                tmp_path: Path) -> None:
    """Every image of the test split raises when read: the stages before retraining finish, retraining does not."""
    from engine.data.synthetic import SyntheticStreets

    load = SyntheticStreets.load

    def guarded(self, index: int):
        if self.split == "test":
            raise ReadTheTestSplit(f"test image {index}")
        return load(self, index)

    monkeypatch.setattr(SyntheticStreets, "load", guarded)
    args = [quickstart, *run_args, "data.test_split=test", "audit.enabled=true", "audit.genotypes=3", "audit.random=1",
            "audit.train.steps=2", "audit.train.checkpoint_every=1"]
    assert main([*args, "--stages", "space,supernet,latency,search,select,audit"]) == 0
    assert (tmp_path / "quickstart" / "audit" / "audit.json").exists()
    with pytest.raises(ReadTheTestSplit):
        main([*args, "--stages", "retrain"])
