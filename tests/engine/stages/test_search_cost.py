"""search_cost.json: the evolution's cost from the supernet's training log and the search's seconds, strict JSON."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import load
from engine.stages.search import evolution_cost


def test_an_unknown_time_is_null_not_nan(tmp_path: Path) -> None:
    config = load("experiments/quickstart.yaml", [f"runs_dir={tmp_path}"])
    cost = evolution_cost(config, float("nan"))  # no supernet log, no search time recorded
    assert cost == {"supernet_s": None, "search_s": None, "total_s": None}
    json.dumps(cost, allow_nan=False)
    log = config.paths.supernet_metrics(config.space.skeleton, config.space.several)
    log.parent.mkdir(parents=True)
    log.write_text("step,loss,elapsed_s\n1,2.0,3.5\n2,1.5,7.0\n")
    assert evolution_cost(config, 5.0) == {"supernet_s": 7.0, "search_s": 5.0, "total_s": 12.0}
    assert evolution_cost(config, float("nan"))["supernet_s"] == 7.0
