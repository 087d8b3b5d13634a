"""The retrain stage with a test split: the picks are scored on val and on data.test_split, which nothing before
them read (changing it reruns neither the supernet nor the search), and the report shows both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import load
from engine.latency.meter import Meter
from engine.run import main
from engine.stages.retrain import measured_stats
from hardware.protocol import LatencyStats, Measurement
from spaces import build
from spaces.genotype import smallest


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


def weights(folder: Path) -> dict:
    import torch

    return torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)["model"]


def test_each_pick_is_trained_under_each_seed_and_reported_as_their_mean_with_its_spread(
        quickstart, run_args: list[str], tmp_path: Path) -> None:
    import numpy as np

    assert main([quickstart, *run_args, "retrain.seeds=2"]) == 0
    run = tmp_path / "quickstart"
    metrics = [json.loads(path.read_text()) for path in (run / "selected").glob("*/metrics.json")]
    for m in metrics:
        assert m["seeds"] == [0, 1] and len(m["retrained_miou_per_seed"]) == 2
        assert m["retrained_miou"] == pytest.approx(np.mean(m["retrained_miou_per_seed"]))
        assert m["retrained_miou_std"] == pytest.approx(np.std(m["retrained_miou_per_seed"], ddof=1))
    trained = [path.parent for path in (run / "selected").glob("*/seed1/weights.pt")]
    assert len(trained) == len({m["key"] for m in metrics})  # each genotype once, under its second seed too
    first, second = weights(trained[0].parent), weights(trained[0])
    assert any(not first[name].equal(second[name]) for name in first)  # another initialisation, other batches
    assert " ± " in (run / "report.html").read_text()


def test_trainings_run_at_once_on_worker_processes_and_a_finished_one_is_not_redone(
        quickstart, run_args: list[str], tmp_path: Path) -> None:
    args = [quickstart, *run_args, "retrain.seeds=2", "retrain.workers=2"]
    assert main(args) == 0
    run = tmp_path / "quickstart"
    folders = [path.parent for path in (run / "selected").glob("**/metrics.csv")]  # trained (a duplicate label: copied)
    assert folders and all((folder / "train.log").exists() for folder in folders)  # trained on a worker
    metrics = {path.parent.name: json.loads(path.read_text()) for path in (run / "selected").glob("*/metrics.json")}
    assert all(len(m["retrained_miou_per_seed"]) == 2 for m in metrics.values())
    label = next(path.parent.parent.name for path in (run / "selected").glob("*/seed1/weights.pt"))
    (run / "selected" / label / "metrics.json").unlink()
    (run / "selected" / label / "seed1" / "weights.pt").unlink()  # as if killed while its second seed trained
    kept = {folder: (folder / "weights.pt").stat().st_mtime_ns for folder in folders if folder.exists()
            and (folder / "weights.pt").exists()}
    assert main([*args[:-1], "retrain.workers=1"]) == 0  # workers: how it runs, not what it computes
    assert (run / "selected" / label / "seed1" / "weights.pt").exists()
    assert all((folder / "weights.pt").stat().st_mtime_ns == mtime for folder, mtime in kept.items())


def test_worker_processes_are_refused_under_torchrun(quickstart, tmp_path: Path) -> None:
    import torch

    from engine.config import load
    from engine.errors import ConfigError
    from engine.training.distributed import World
    from engine.training.pool import train_on_cluster

    config = load(quickstart, [f"runs_dir={tmp_path}", "retrain.workers=2", "audit.workers=2"])
    jobs = [("small:" + "-".join(["12"] * 20), tmp_path / name, 0) for name in ("a", "b")]
    for section in ("retrain.train", "audit.train"):
        setting = section.replace(".train", ".workers")
        with pytest.raises(ConfigError, match=f"{setting} > 1 .* set {setting}=1"):
            train_on_cluster(config, section, jobs, 2, World(0, 2, 0, torch.device("cpu")), tmp_path / "dask")


def test_the_trainings_left_are_each_genotype_once_under_its_first_label(quickstart, tmp_path: Path) -> None:
    from engine.config import load
    from engine.stages.retrain import trainings

    config = load(quickstart, [f"runs_dir={tmp_path}", "retrain.seeds=2", "retrain.export=false"])
    a, b = "small:" + "-".join(["12"] * 20), "small:" + "-".join(["7"] * 20)
    entries = [{"label": "small", "key": a}, {"label": "knee", "key": a}, {"label": "xlarge", "key": b}]
    paths = config.paths
    assert trainings(config, entries) == [(a, paths.picked("small"), 0), (a, paths.picked("small") / "seed1", 1),
                                          (b, paths.picked("xlarge"), 0), (b, paths.picked("xlarge") / "seed1", 1)]
    for path in (paths.picked_metrics("small"), paths.picked_weights("small"), paths.picked("xlarge") / "weights.pt"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    # small finished (its duplicate knee only copies it); xlarge's first seed trained, its second not yet
    assert trainings(config, entries) == [(b, paths.picked("xlarge") / "seed1", 1)]


class ScriptedMeter(Meter):
    """The real meter and store, each measurement taking the next of `minimums` (ms, the quickstart's statistic)."""

    def __init__(self, config, minimums: list[float]) -> None:
        super().__init__(config)
        self.minimums = list(minimums)

    def measure_network(self, network) -> Measurement:
        ms = self.minimums.pop(0)
        return Measurement(LatencyStats(ms, ms, ms, ms, 0.0, 50), {"backend": "scripted"})


@pytest.mark.parametrize("searched, minimums, kept", [
    (2.0, [3.0, 2.1], 2.1),  # more than 10 % above the search's measurement: measured again, the lower kept
    (2.0, [3.0, 3.3], 3.0),  # ... both above: the lower is still the first
    (2.0, [2.19], 2.19),  # within 10 %: once
    (None, [3.0], 3.0),  # nothing to compare with: once
])
def test_a_re_measurement_far_above_the_search_s_is_taken_again(quickstart, tmp_path: Path, searched, minimums,
                                                                  kept) -> None:
    config = load(quickstart, [f"latency.store={tmp_path}"])
    meter = ScriptedMeter(config, minimums)
    genotype = smallest("small")
    stats = measured_stats(meter, genotype, build(genotype, 0.5, config.space.num_classes), searched)
    assert stats["min_ms"] == kept and meter.minimums == []
    assert ("recheck" in stats["provenance"]) == (len(minimums) == 2)
    assert meter.store.get(meter.key(genotype)).stats.min_ms == kept  # the kept one is the store's
