"""`python -m engine.run`: the embedded default runs, reruns keep finished work, bad configs fail in one line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from rich.console import Console

from engine.config import load
from engine.latency.meter import STAT_FIELD, Meter
from engine.run import main, summarise
from hardware.protocol import LatencyStats, Measurement
from spaces import Genotype

OUTPUTS = ("config.yaml", "space.csv", "supernet.pt", "latency/accuracy.json", "latency/predictor/regressor.json",
           "study.db", "evaluations.csv", "front.csv", "front.json", "hypervolume.csv", "selected/selection.json",
           "report.html")


def test_quickstart_writes_the_run_directory(quickstart, run_args, tmp_path: Path) -> None:
    assert main([quickstart, *run_args]) == 0
    run = tmp_path / "quickstart"
    for name in OUTPUTS:
        assert (run / name).exists(), name
    table = pd.read_csv(run / "space.csv")
    assert list(table.source) == ["smallest", "largest", "lat_small", "mac_small"] + ["random"] * 4
    assert (table.supernet_max_abs_diff <= 1e-5).all()
    assert "width: 0.5" in (run / "config.yaml").read_text()
    evaluations = pd.read_csv(run / "evaluations.csv")
    references = evaluations[evaluations.reference.notna()]  # the released networks: scored, measured, not trials
    evaluations = evaluations[evaluations.reference.isna()]
    assert list(references.reference) == ["lat_small", "mac_small"] and (references.strategy == "reference").all()
    assert (references.latency_source == "measured").all() and (references.measured_ms > 0).all()
    assert references.miou.between(0, 1).all() and not references.front.any() and references.trial.isna().all()
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{run / 'study.db'}")
    assert len(study.trials) == len(evaluations) == evaluations.key.nunique() >= 12
    report = (run / "report.html").read_text()
    assert "Released networks on the front" in report and "mac_small" in report
    assert evaluations.miou.between(0, 1).all() and (evaluations.latency_ms > 0).all()
    front = pd.read_csv(run / "front.csv")
    assert set(front.key) == set(evaluations.key[evaluations.front])
    for row in evaluations.itertuples():  # no evaluated subnet dominates a front point
        dominated = (row.miou >= front.miou) & (row.latency_ms <= front.latency_ms) & (
            (row.miou > front.miou) | (row.latency_ms < front.latency_ms))
        assert not dominated.any(), row.key
    picked = json.loads((run / "selected" / "selection.json").read_text())["picked"]
    assert picked and {p["key"] for p in picked} <= set(front.key)
    for entry in picked:
        metrics = json.loads((run / "selected" / entry["label"] / "metrics.json").read_text())
        assert metrics["measured"]["median_ms"] > 0 and metrics["onnx_max_abs_diff"] <= 1e-3
        assert (run / "selected" / entry["label"] / "model.onnx").exists()
    store = next((tmp_path / "store").glob("*.csv")).stem  # issue 31: where each measurement came from
    measured = pd.read_csv(run / "evaluations.csv").query("latency_source == 'measured'")
    for table in (pd.read_csv(run / "latency" / "measurements.csv"), pd.read_csv(run / "search" / "measurements.csv"),
                  measured, pd.read_csv(run / "front.csv")):
        assert (table.device == store).all() and (table.backend == "torch-cpu").all() and table.host.notna().all()
        assert (table.backend_version == torch.__version__).all() and table.agent.isna().all()
        assert pd.to_datetime(table.measured_at).notna().all() and (table.source == "measured").all()
    assert main([quickstart, *run_args, "name=again", "--stages", "space,supernet,latency"]) == 0  # the same store
    again = pd.read_csv(tmp_path / "again" / "latency" / "measurements.csv")
    assert (again.source == "store").all() and set(again.key) == set(pd.read_csv(run / "latency" /
                                                                          "measurements.csv").key)
    for path in run.rglob("*.json"):  # issue 35: every JSON the run wrote is strict JSON (null, never NaN)
        json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{path}: {name} is not JSON"))
    stamps = {name: (run / name).stat().st_mtime_ns for name in OUTPUTS}
    assert main([quickstart, *run_args]) == 0
    assert {name: (run / name).stat().st_mtime_ns for name in stamps} == stamps

    # issue 31: front.csv damaged after later measurements replaced the search's in the shared store (as the retrain
    # stage's re-measurements and another run's second opinions do): the search replays the measurements it used
    # (search/journal.jsonl) and rebuilds the same front and selection, byte for byte
    kept = {name: (run / name).read_bytes() for name in ("front.csv", "evaluations.csv", "selected/selection.json")}
    meter = Meter(load(quickstart, run_args))
    searched = [Genotype.from_key(key) for key in pd.read_csv(run / "search" / "measurements.csv").key]
    assert searched
    for genotype, measurement in zip(searched, meter.measure(searched, "again")):
        slower = LatencyStats(*(10 * getattr(measurement.stats, f) for f in STAT_FIELD.values()), 0.0, 1000)
        meter.store.put(meter.key(genotype), Measurement(slower, {"made_up": "a later, slower re-measurement"}))
    with (run / "front.csv").open("a") as damaged:
        damaged.write("garbage\n")
    assert main([quickstart, *run_args]) == 0
    assert {name: (run / name).read_bytes() for name in kept} == kept


def test_stages_option_runs_only_those(quickstart, run_args, tmp_path: Path) -> None:
    assert main([quickstart, *run_args, "--stages", "space"]) == 0
    run = tmp_path / "quickstart"
    assert (run / "space.csv").exists() and not (run / "supernet.pt").exists()
    assert main([quickstart, *run_args, "--stages", "space,searching"]) == 2


@pytest.mark.parametrize("overrides, message", [
    (["space.width=-1"], "space.width: Input should be greater than 0"),
    (["space.skeleton=medium"], "space.skeleton: Value error, unknown skeleton 'medium'"),
    (["colour=red"], "colour: Extra inputs are not permitted"),
    (["space.input_size=[8, 8]"], "space.input_size: Value error, input size [8, 8]: each side must lie in 32..8192 pixels"),
    (["samples=many"], "samples: Input should be a valid integer"),
    (["name=a/b"], "name: String should match pattern"),
    (["space=3"], "space: Input should be a valid dictionary"),
    (["nokey"], "override 'nokey' is not of the form key.path=value"),
    (["data.kind=camvid"], "data.root is required for camvid"),
    (["data.kind=cityscapes", "data.root=/nonexistent"], "data.root /nonexistent is not a directory"),
    (["space.num_classes=19"], "space.num_classes 19 differs from the 11 classes of data.kind synthetic"),
    (["supernet.device=tpu"], "supernet.device: String should match pattern"),
    (["supernet.sampling=greedy"],
     "supernet.sampling: Value error, unknown 'greedy'; known: uniform, sandwich, sandwich_rare, fair"),
    (["supernet.lr=0"], "supernet.lr: Input should be greater than 0"),
    (["audit.enabled=true", "audit.handmade=[k3_e6_g1,k9_e1_g1]"],
     "audit.handmade: 'k9_e1_g1' is not a candidate of skeleton 'small'"),
    (["audit.enabled=true", "audit.handmade=[k3_e6_g1,k3_e6_g1]"], "audit.handmade lists a design twice"),
    (["selection.budgets_ms.small=-5"], "budget small must be a positive number of ms, got -5"),
    (["latency.device=phone"], "latency.device: Input should be 'local' or 'agent'"),
    (["latency.backend=cuda"], "latency.backend: Value error, unknown 'cuda'; known: torch-cpu, onnxruntime-cpu"),
    (["latency.backend=tensorrt-fp16"], "latency.backend tensorrt-fp16:"),
    (["latency.measurements=3"], "latency.measurements: Input should be greater than or equal to 10"),
    (["search.population=2"], "search.population: Input should be greater than or equal to 4"),
    (["search.constraints.max_latency_ms=0"], "search.constraints.max_latency_ms: Input should be greater than 0"),
    (["retrain.init=imagenet"], "retrain.init: Input should be 'scratch' or 'inherited'"),
    (["search.strategies=[bayes]"], "search.strategies.0: Input should be 'evolution' or 'dnas'"),
    (["search.strategies=[]"], "search.strategies: List should have at least 1 item"),
    (["search.dnas.lambdas=[-1.0]"], "search.dnas.lambdas: Value error, lambdas must be >= 0"),
    (["search.dnas.temperature=[0.1,5.0]"], "search.dnas.temperature: Value error, temperature [start, end]"),
    (["search.strategies=[dnas]", "search.dnas.cost=lookup", "latency.device=agent"], "search.dnas.cost lookup"),
    (["latency.device=agent", "search.dnas.cost=macs", "latency.agent.token_file=/nonexistent/token"],
     "/nonexistent/token"),
    (["latency.device=agent", "search.dnas.cost=macs", "latency.agent.url=localhost:8765"],
     "latency.agent.url: String should match"),
    (["seed=99999999999999999999999"], "seed: Input should be less than 2147483648"),
    (["latency.threads=100000"], "latency.threads: Input should be less than or equal to 1024"),
    (["latency.threads=1000"], "latency.threads 1000 exceeds this machine's"),
    (["latency.pool=200000000"], "latency.pool: Input should be less than or equal to 100000"),
    (["data.test_split=val"], "data.test_split 'val' is also the train or val split"),
    (["search.measure_per_round=0"], "search.measure_per_round: Input should be greater than or equal to 1"),
    (["search.measure_limit=-1"], "search.measure_limit: Input should be greater than or equal to 0"),
    (["--stages", "audit"], "--stages audit: the configuration disables this stage; add audit.enabled=true"),
    (["audit.enabled=true", "audit.baseline=false", "--stages", "baseline,report"],
     "--stages baseline: the configuration disables this stage; add audit.enabled=true audit.baseline=true"),
    # issue 31: tracebacks, late failures and unbounded settings, each now one line
    (["seed=["], "override seed: '[' is not a YAML value"),
    (["name=a\x01b"], "override name: 'a\\x01b' is not a YAML value (unacceptable character"),
    (["data.crop=[0,5]"], "data.crop [0, 5]: each side must lie in 8..8192 pixels"),
    (["data.synthetic_size=[100000,64]"], "data.synthetic_size [100000, 64]: each side must lie in 8..8192"),
    (["data.scale=[2.0,1.0]"], "data.scale [2.0, 1.0]: needs 0 < low <= high <= 8.0"),
    (["space.input_size=[100000,100000]"], "input size [100000, 100000]: each side must lie in 32..8192 pixels"),
    (["latency.batch=100000"], "latency.batch: Input should be less than or equal to 256"),
    (["latency.measurements=9"], "latency.measurements: Input should be greater than or equal to 10"),
    (["samples=100000000"], "samples: Input should be less than or equal to 100000"),
    (["search.workers=100000"], "search.workers: Input should be less than or equal to 256"),
    (["data.synthetic_train=4", "--stages", "supernet"],
     "supernet.batch_size 8 is larger than the 4 training images of data.train_split 'train'"),
    (["latency.device=agent", "latency.agent.token_file=null"],
     "latency.agent.token_file is not set and $SQUEEZENAS_AGENT_TOKEN is empty"),
])
def test_bad_config_is_one_line_and_nonzero(quickstart, overrides: list[str], message: str, tmp_path: Path,
                                            capsys, monkeypatch) -> None:
    monkeypatch.delenv("SQUEEZENAS_AGENT_TOKEN", raising=False)
    assert main([quickstart, f"runs_dir={tmp_path}", f"latency.store={tmp_path / 'store'}", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_a_key_given_twice_in_the_yaml_is_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text("name: a\nseed: 1\nsearch:\n  population: 8\nseed: 2\n")
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}: line 5 not valid YAML (key 'seed' is given twice)"


def test_a_store_that_is_a_file_or_garbled_is_one_line(quickstart, tmp_path: Path, capsys) -> None:
    (tmp_path / "store").write_text("not a folder")
    args = [quickstart, f"runs_dir={tmp_path}", "--stages", "space,supernet,latency", "supernet.steps=1",
            "data.synthetic_train=8", "data.synthetic_val=2", "data.synthetic_size=[64,128]", "space.input_size=[64,128]"]
    assert main([*args, f"latency.store={tmp_path / 'store'}"]) == 2
    assert capsys.readouterr().err.strip().endswith("is a file; give a folder (the store keeps one CSV file per "
                                                    "device in it)")
    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "here.csv").write_text("what,is,this\n1,2,3\n")
    assert main([*args, f"latency.store={garbled}", "latency.device_name=here"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: latency.store: {garbled / 'here.csv'}"), err


@pytest.mark.parametrize("content, message", [(b"\x00\xff\xfe binary", "not a text file"), (None, "Is a directory")])
def test_unreadable_config_file(content: bytes | None, message: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "experiment.yaml"
    path.mkdir() if content is None else path.write_bytes(content)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and message in err[0], err


@pytest.mark.parametrize("argv, message", [
    (["--frobnicate"], "error: unrecognized arguments: --frobnicate"),
    (["--stages"], "error: argument --stages: expected one argument"),
    ([], "error: the following arguments are required: config"),
])
def test_command_line_mistakes_are_one_line(argv: list[str], message: str, quickstart, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([quickstart, *argv] if argv else argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(err) == 1 and err[0].startswith(message), err


def test_missing_config_file(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: no such config file" in capsys.readouterr().err


def test_module_entry_point(quickstart, root, run_args, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "engine.run", quickstart, *run_args],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "quickstart" / "report.html").exists()


def test_unreachable_agent_stops_the_run_at_its_start(quickstart, run_args, tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    monkeypatch.setenv("SQUEEZENAS_AGENT_TOKEN", "t" * 32)
    overrides = [*run_args, "latency.device=agent", "latency.agent.url=http://127.0.0.1:9",
                 "latency.agent.retries=0", "latency.agent.timeout_s=2"]
    assert main([quickstart, *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "python -m hardware.agent" in err, err
    assert not (tmp_path / "quickstart" / "supernet.pt").exists()


@pytest.mark.parametrize("name", ["..", "."])
def test_a_name_cannot_leave_runs_dir(quickstart, name: str, tmp_path: Path, capsys) -> None:
    assert main([quickstart, f"runs_dir={tmp_path / 'runs'}", f"name={name}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "outside runs_dir" in err[0], err
    assert not (tmp_path / "config.yaml").exists() and not (tmp_path / "runs").exists()


def test_runs_dir_that_is_a_file_is_one_line(quickstart, tmp_path: Path, capsys) -> None:
    (tmp_path / "runs").write_text("not a folder")
    assert main([quickstart, f"runs_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs_dir" in err[0] and "cannot make the run directory" in err[0], err


def test_a_second_run_on_the_same_directory_stops(quickstart, run_args, tmp_path: Path, root: Path, capsys) -> None:
    """A real first run holds the directory; a second one stops in one line naming it; the first is unaffected."""
    run = tmp_path / "quickstart"
    first = subprocess.Popen([sys.executable, "-m", "engine.run", quickstart, *run_args, "--stages",
                              "space,supernet,latency,search"], cwd=root, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "space.csv").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended before the second could start"
    assert main([quickstart, *run_args, "--stages", "space"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{run} is in use by another run (pid {first.pid} on " in err[0], err
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert (run / "front.csv").exists() and (run / "run.log").read_text().count("stage space: running") == 1
    assert main([quickstart, *run_args, "--stages", "space"]) == 0


@pytest.mark.parametrize("command", [["-m", "engine.run", "--help"], ["-m", "engine.plan", "--help"]])
def test_the_help_describes_the_command_in_whole_sentences(command: list[str], root: Path) -> None:
    """Issue 31: the --help description was cut mid-sentence (the docstring's first line)."""
    out = subprocess.run([sys.executable, *command], cwd=root, capture_output=True, text=True, check=True).stdout
    description = " ".join(out.split("\n\n")[1].split())
    assert description.endswith(".") and description[0].isupper(), description


def test_the_summary_points_the_dashboard_at_the_study_where_it_is(quickstart, tmp_path: Path) -> None:
    """Issue 31: with PostgreSQL the closing summary pointed optuna-dashboard at a study.db that does not exist."""
    url = "postgresql+psycopg://user@db.example:5432/runs"
    console = Console(file=io.StringIO(), width=300)
    summarise(console, load(quickstart, [f"runs_dir={tmp_path}", f"search.storage={url}"]), [])
    assert f"trials: optuna-dashboard {url}" in console.file.getvalue() and "study.db" not in console.file.getvalue()
