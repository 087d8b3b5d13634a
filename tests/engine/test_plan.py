"""`squeezenas plan` and the checks before a run (engine/preflight.py): every check listed, the estimate's counts
follow the configuration, a failing check is named and exits 2, and a run whose study storage cannot be opened stops
before the supernet trains. No assertion reads a timing."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from engine import preflight
from engine.config import ExperimentConfig, load
from engine.evaluation import scoring
from engine.plan import Cost, evaluations, main, picks
from engine.run import main as run_main
from engine.stages.space import check_size
from hardware.agent import Agent, AgentServer, Limits, onnx_backend


def test_plan_lists_the_checks_and_an_estimate_with_a_total(quickstart, run_args, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps table cells to the terminal's width
    assert main([quickstart, *run_args]) == 0
    out = capsys.readouterr().out
    for line in ("data.train_split 'train'", "synthetic: 16 images, 64x128", "device", "this machine",
                 "study storage", "run directory", "supernet", "2 steps x 1 skeleton", "latency",
                 "24 measurements (10 to fit, 4 held out, 10 active)", "inherited-weight", "retrain", "total"):
        assert line in out, line


def test_a_failing_check_is_named_and_exits_2(quickstart, run_args, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    (tmp_path / "set" / "train" / "images").mkdir(parents=True)
    args = [*run_args, "data.kind=folder", f"data.root={tmp_path / 'set'}", "data.classes=[a,b]"]
    assert main([quickstart, *args]) == 2
    captured = capsys.readouterr()
    assert "FAILS" in captured.out and "labels folder of split 'train' does not exist" in captured.out
    assert captured.err.strip() == "error: a check fails (above); fix it before running"
    assert not (tmp_path / "quickstart").exists()


def test_a_missing_database_driver_is_one_line(tmp_path: Path) -> None:
    config = ExperimentConfig.model_validate({"name": "x", "runs_dir": str(tmp_path),
                                              "search": {"storage": "mysql+mysqldb://user@127.0.0.1/runs"}})
    check = preflight.storage(config)
    assert check.ok is False and check.detail.startswith("search.storage: the database driver is not installed")


def test_an_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    config = ExperimentConfig.model_validate({"name": "x", "search": {"scheduler": "tcp://127.0.0.1:9"}})
    check = preflight.scheduler(config)
    assert check.ok is False and check.detail.startswith("search.scheduler tcp://127.0.0.1:9: cannot connect")


def test_a_run_stops_before_training_when_its_study_cannot_be_opened(quickstart, run_args, tmp_path: Path,
                                                                     capsys) -> None:
    code = run_main([quickstart, *run_args, "search.storage=mysql+mysqldb://user@127.0.0.1/runs"])
    assert code == 2
    assert "search.storage: the database driver is not installed" in capsys.readouterr().err
    assert not (tmp_path / "quickstart" / "supernet.pt").exists()
    assert not (tmp_path / "quickstart" / "supernet").exists()


def test_the_counts_follow_the_configuration(quickstart) -> None:
    config = load(quickstart, ["search.population=10", "search.generations=3", "search.offspring=4"])
    assert evaluations(config) == 10 + 3 * 4 + 2  # the population, the offspring, lat_small and mac_small
    surrogate = load(quickstart, ["search.accuracy_surrogate.enabled=true", "search.rounds=5",
                                  "search.references=false"])
    assert evaluations(surrogate) == 12 + 5 * 4
    assert picks(config) == 3
    assert picks(load(quickstart, ["selection.budgets_ms={a: 5}", "selection.budgets_span={}",
                                   "selection.knee=true"])) == 2
    assert Cost("x", "", 3, 0.5, "").seconds == 1.5 and Cost("x", "", 3, None, "").seconds is None


@pytest.mark.parametrize("size, expected", [((1024, 2048), (64, 128)), ((128, 256), (64, 128)),
                                            ((48, 200), (48, 200)), ((360, 480), (64, 85))])
def test_the_space_check_runs_at_a_small_input(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert check_size(size) == expected


def test_the_device_check_reports_what_the_agent_says_and_a_relabelled_device(quickstart, run_args, tmp_path: Path,
                                                                               caplog) -> None:
    """Through a real agent on loopback: the plan's device check names the agent's device and backend version; a
    latency.device_name other than the agent's device is said in the log (issue 31), both kept."""
    token = "t" * 32
    agent = Agent(onnx_backend("onnxruntime-cpu"), token, Limits(max_threads=1))
    server = AgentServer(("127.0.0.1", 0), agent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    (tmp_path / "token").write_text(token)
    try:
        args = [*run_args, "latency.device=agent", "latency.backend=onnxruntime-cpu",
                f"latency.agent.url=http://127.0.0.1:{server.server_port}",
                f"latency.agent.token_file={tmp_path / 'token'}"]
        check, meter = preflight.device(load(quickstart, args))
        assert check.ok and check.detail == (f"agent http://127.0.0.1:{server.server_port}: {agent.device}, "
                                             f"onnxruntime-cpu {agent.backend.version}")
        with caplog.at_level(logging.WARNING, logger="engine"):
            _, meter = preflight.device(load(quickstart, [*args, "latency.device_name=jetson-agx-xavier"]))
        assert meter.store.device == "jetson-agx-xavier"
        assert f"latency.device_name jetson-agx-xavier labels the measurements of the agent's device {agent.device}" \
            in caplog.text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_search_caps_its_workers_at_the_cores_and_says_so(quickstart, monkeypatch, caplog) -> None:
    """Issue 31: search.workers=100000 started a process per worker on 2 cores; now capped, with a log line."""
    started = []
    monkeypatch.setattr(scoring, "DaskScorer", lambda config, workers, address: started.append(workers))
    monkeypatch.setattr(scoring.os, "cpu_count", lambda: 2)
    with caplog.at_level(logging.INFO, logger="engine"):
        scoring.open_scorer(load(quickstart, ["search.workers=200"]), None)
    assert started == [2] and "search.workers 200 capped at this machine's 2 cores" in caplog.text
