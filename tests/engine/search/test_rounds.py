"""The measuring rounds of a search (engine/search/rounds.py) on a real run's latency stage, with a recording meter:
what a round measures first, a round with nothing new to measure, the out-of-sample accuracy it records, a refit
saved and loaded, the device needed only when something is to be measured; the trials' values at the end; the
rounds through a device agent."""

from __future__ import annotations

import json
import math
import socket
import threading
import types
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from engine.config import load
from engine.errors import ConfigError, DeviceError, MissingInput
from engine.evaluation.scoring import score_on_worker
from engine.latency.meter import Meter
from engine.latency.model import load_latency_model
from engine.run import main
from engine.search.rounds import Rounds, out_of_sample
from hardware.agent import Agent, AgentServer, Limits, onnx_backend
from hardware.protocol import LatencyStats, Measurement
from spaces import Genotype, sample

TOKEN = "rounds-test-token-0123456789"


class RecordingMeter:
    """A made-up deterministic latency per genotype (1 ms plus its candidate indices / 100); records the calls."""

    store = types.SimpleNamespace(device="made-up")  # the device name a run's tables record

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.rechecked: list[str] = []
        self.fresh: set[str] = set()  # the keys a real meter measured itself

    def measure(self, genotypes: list[Genotype], what: str) -> list[Measurement]:
        self.calls.extend(g.key for g in genotypes)
        return [Measurement(LatencyStats(*self.ms(g), 0.01, 3), {}) for g in genotypes]

    def recheck(self, genotypes: list[Genotype], what: str) -> list[Measurement]:
        self.rechecked.extend(g.key for g in genotypes)
        return [Measurement(LatencyStats(*self.ms(g), 0.01, 3), {"recheck": {}}) for g in genotypes]

    @staticmethod
    def ms(genotype: Genotype) -> tuple[float, float, float, float]:
        base = 1.0 + sum(genotype.choices) / 100
        return base, base, 1.1 * base, 0.9 * base  # median, mean, p90, min


class LoadedMeter(Meter):
    """The real meter and measurement store with RecordingMeter's made-up latencies, ten times as long the first time
    a genotype in `loaded` is measured (a host under load); records every measurement it takes."""

    def __init__(self, config, loaded: set[str]) -> None:
        super().__init__(config)
        self.loaded, self.calls = loaded, []

    def measure_network(self, network) -> Measurement:
        key = network.genotype.key
        self.calls.append(key)
        factor = 10.0 if key in self.loaded and self.calls.count(key) == 1 else 1.0
        return Measurement(LatencyStats(*(factor * v for v in RecordingMeter.ms(network.genotype)), 0.01, 3), {})


@pytest.fixture(scope="module")
def latency_run(tmp_path_factory, quickstart: str, fast: list[str]) -> list[str]:
    """Overrides of a run that finished space, supernet and latency."""
    root = tmp_path_factory.mktemp("rounds")
    args = [f"runs_dir={root}", f"latency.store={root / 'store'}", *fast]
    assert main([quickstart, *args, "--stages", "space,supernet,latency"]) == 0
    return [quickstart, *args]


def rounds_of(latency_run: list[str], meter, *overrides: str) -> Rounds:
    config = load(latency_run[0], [*latency_run[1:], *overrides])
    return Rounds(config, load_latency_model(config), meter)


def rows_of(rounds: Rounds, genotypes: list[Genotype], miou: list[float]) -> list[dict]:
    return [{"key": g.key, "miou": m, "feasible": True, **latency}
            for g, m, latency in zip(genotypes, miou, rounds.latency(genotypes))]


def test_a_round_with_nothing_new_to_measure_measures_and_refits_nothing(latency_run) -> None:
    rounds = rounds_of(latency_run, None)  # no device: it must not be needed
    measured = [Genotype.from_key(key) for key in list(rounds.measured)[:6]]
    rows = rows_of(rounds, measured, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert all(row["latency_source"] == "measured" and row["latency_ms"] == row["measured_ms"] for row in rows)
    record = rounds.measure(rows, "search", 1)
    assert record["measured"] == 0 and "mape" not in record and not rounds.folder.exists()
    assert math.isnan(rounds.table().mape.iloc[0]) and rounds.spent == []


def test_the_front_is_measured_first_then_the_least_certain(latency_run) -> None:
    meter = RecordingMeter()
    rounds = rounds_of(latency_run, meter, "search.measure_per_round=3")
    known = Genotype.from_key(next(iter(rounds.measured)))
    fresh = [g for g in (sample("small", seed) for seed in range(100, 140)) if g.key not in rounds.measured][:12]
    miou = list(np.linspace(0.1, 0.6, len(fresh)))
    rows = rows_of(rounds, [known, *fresh], [0.0, *miou])
    feasible = [row for row in rows if row["key"] != known.key]
    front = {row["key"] for row in feasible if not any(
        o["miou"] >= row["miou"] and o["latency_ms"] <= row["latency_ms"] and o is not row and
        (o["miou"] > row["miou"] or o["latency_ms"] < row["latency_ms"]) for o in rows)}
    chosen = rounds.candidates(rows, 3, front_only=False)
    assert len(chosen) == 3 and known.key not in chosen
    assert set(chosen[: min(3, len(front))]) <= front
    assert rounds.candidates(rows, 50, front_only=True) and set(rounds.candidates(rows, 50, front_only=True)) == front

    record = rounds.measure(rows, "search", 0)
    assert meter.calls == chosen and record["measured"] == 3 and 0 <= record["coverage"] <= 100
    assert {row["key"] for row in rounds.spent} == set(chosen) and (rounds.folder / "round_01").is_dir()
    after = {row["key"]: row for row in rows_of(rounds, fresh, miou)}
    for key in chosen:  # the objective is now the measurement; the prediction before it is kept
        assert after[key]["latency_source"] == "measured" and after[key]["latency_ms"] == after[key]["measured_ms"]
        assert after[key]["predicted_before_ms"] == next(r["predicted_before_ms"] for r in rounds.spent if
                                                         r["key"] == key)
    again = rounds_of(latency_run, None, "search.measure_per_round=3")  # a resumed search loads the refit
    assert again.refit(1).predict(fresh)[0].tolist() == rounds.model.predict(fresh)[0].tolist()
    (rounds.folder / "round_01" / "regressor.json").write_text("{garbled")  # issue 31: refit, not a traceback
    again = rounds_of(latency_run, None, "search.measure_per_round=3")
    again.measured = rounds.measured
    assert again.refit(1).predict(fresh)[0].tolist() == rounds.model.predict(fresh)[0].tolist()
    assert json.loads((rounds.folder / "round_01" / "regressor.json").read_text())["format"]


def test_the_search_uses_the_statistic_its_latency_stage_measured_with(latency_run) -> None:
    meter = RecordingMeter()
    rounds = rounds_of(latency_run, meter, "search.measure_per_round=2")
    config = load(latency_run[0], latency_run[1:])
    assert config.latency.statistic == "min"  # the quickstart's
    stage = pd.read_csv(config.paths.measurements).set_index("key")
    assert {key: m.ms for key, m in rounds.measured.items()} == stage.min_ms.to_dict()
    fresh = [g for g in (sample("small", seed) for seed in range(400, 420)) if g.key not in rounds.measured][:4]
    rounds.measure(rows_of(rounds, fresh, [0.1, 0.2, 0.3, 0.4]), "search", 0)
    after = {row["key"]: row for row in rows_of(rounds, fresh, [0.1, 0.2, 0.3, 0.4])}
    assert len(meter.calls) == 2
    for key in meter.calls:  # RecordingMeter's min
        assert after[key]["latency_ms"] == after[key]["measured_ms"] == RecordingMeter.ms(Genotype.from_key(key))[3]
    with pytest.raises(MissingInput, match="--stages latency,search"):  # fit on the minimum, asked for the median
        rounds_of(latency_run, None, "latency.statistic=median")


class MadeUpModel:
    """Predicts RecordingMeter's made-up minimum of every genotype, so a test's intervals do not depend on the real,
    noisy measurements the fixture's predictor was fit on (on a loaded host it predicted ten times the made-up
    latency and an inflated measurement then lay inside its interval)."""

    def __init__(self, model) -> None:
        self.costs = model.costs  # the refit after a round fits a real predictor on these costs

    def predict(self, genotypes: list[Genotype]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ms = np.array([RecordingMeter.ms(genotype)[3] for genotype in genotypes])
        return ms, ms, ms


def narrowed(rounds: Rounds) -> Rounds:
    """The rounds predicting the made-up latencies, with 20 residuals of 25 % added to the calibrator: a finite 90 %
    interval of x / 1.25 to x * 1.25 around each made-up latency (the fast run's 4 held-out genotypes leave it
    infinite)."""
    rounds.model = MadeUpModel(rounds.model)
    rounds.calibrator.seed(np.ones(20), np.full(20, 1.25))
    return rounds


def test_a_measurement_above_its_interval_is_taken_again_and_the_lower_kept(latency_run, tmp_path: Path) -> None:
    store = f"latency.store={tmp_path / 'store'}"  # this test's own store: its made-up rows stay here
    rounds = narrowed(rounds_of(latency_run, None, store, "search.measure_per_round=4"))
    fresh = [g for g in (sample("small", seed) for seed in range(500, 530)) if g.key not in rounds.measured][:6]
    rows = rows_of(rounds, fresh[:4], [0.1, 0.2, 0.3, 0.4])
    chosen = rounds.candidates(rows, 4, front_only=False)
    rounds.meter = meter = LoadedMeter(rounds.config, set(chosen[:2]))
    rounds.measure(rows, "search", 0)
    spent = {row["key"]: row for row in rounds.spent}
    assert set(spent) == set(chosen)
    for key, row in spent.items():
        made_up = RecordingMeter.ms(Genotype.from_key(key))[3]  # the quickstart measures by the minimum
        assert row["measured_ms"] == pytest.approx(made_up) and rounds.measured[key].ms == row["measured_ms"]
        if key in meter.loaded:  # inflated, above its interval: measured again, the lower kept, the first recorded
            assert row["first_ms"] == pytest.approx(10 * made_up) and row["first_ms"] > row["upper_ms"]
            assert meter.calls.count(key) == 2
        else:  # the made-up value lies inside its interval: measured once
            assert meter.calls.count(key) == 1 and math.isnan(row["first_ms"]) and made_up <= row["upper_ms"]
    checked = meter.store.load()
    assert all("recheck" in checked[meter.key(Genotype.from_key(key))].provenance for key in meter.loaded)

    # killed after a measurement and before its second: the resumed round takes only the second
    killed = fresh[4]
    meter.loaded.add(killed.key)
    (first,) = meter.measure([killed], "before the kill")
    resumed = narrowed(rounds_of(latency_run, meter, store, "search.measure_per_round=1"))
    resumed.measure(rows_of(resumed, [killed], [0.9]), "search", 0)
    made_up = RecordingMeter.ms(killed)[3]
    assert meter.calls.count(killed.key) == 2 and resumed.spent[0]["measured_ms"] == pytest.approx(made_up)
    assert resumed.spent[0]["first_ms"] == first.stats.min_ms == pytest.approx(10 * made_up)
    again = narrowed(rounds_of(latency_run, meter, store, "search.measure_per_round=1"))  # checked: not a third time
    again.measure(rows_of(again, [killed], [0.9]), "search", 0)
    assert meter.calls.count(killed.key) == 2 and again.spent[0]["measured_ms"] == pytest.approx(made_up)

    unchecked = narrowed(rounds_of(latency_run, meter, store, "search.measure_per_round=1", "search.recheck=false"))
    meter.loaded.add(fresh[5].key)
    unchecked.measure(rows_of(unchecked, [fresh[5]], [0.9]), "search", 0)
    assert meter.calls.count(fresh[5].key) == 1 and math.isnan(unchecked.spent[0]["first_ms"])
    assert unchecked.spent[0]["measured_ms"] == pytest.approx(10 * RecordingMeter.ms(fresh[5])[3])


def test_measuring_without_a_device_is_one_clear_error(latency_run) -> None:
    rounds = rounds_of(latency_run, None)
    fresh = [g for g in (sample("small", seed) for seed in range(200, 210)) if g.key not in rounds.measured]
    with pytest.raises(DeviceError, match="search.measure_limit"):
        rounds.measure(rows_of(rounds, fresh, [0.5] * len(fresh)), "search", 0)


def test_the_limit_bounds_what_a_search_measures(latency_run) -> None:
    meter = RecordingMeter()
    rounds = rounds_of(latency_run, meter, "search.measure_per_round=8", "search.measure_limit=5")
    fresh = [g for g in (sample("small", seed) for seed in range(300, 330)) if g.key not in rounds.measured]
    rows = rows_of(rounds, fresh, list(np.linspace(0.1, 0.6, len(fresh))))
    assert rounds.measure(rows, "search", 0)["measured"] == 5 and rounds.left == 0
    assert rounds.measure(rows, "closing", None)["measured"] == 0 and len(meter.calls) == 5


def test_out_of_sample_accuracy_by_hand() -> None:
    measured = np.array([1.0, 2.0, 4.0, 8.0])
    predicted = np.array([1.05, 1.5, 4.0, 9.0])
    result = out_of_sample(measured, predicted, predicted * 0.9, predicted * 1.1)
    assert result["mape"] == pytest.approx(100 * (0.05 + 0.25 + 0 + 0.125) / 4)
    assert result["within_10"] == 50.0 and result["kendall_tau"] == pytest.approx(1.0)
    assert result["coverage"] == 50.0 and result["nominal_coverage"] == 90.0


def test_trials_end_complete_with_the_measured_latency_as_their_value(latency_run) -> None:
    assert main([*latency_run, "--stages", "search"]) == 0
    config = load(latency_run[0], latency_run[1:])
    study = optuna.load_study(study_name=config.name, storage=f"sqlite:///{config.paths.study}")
    evaluations = pd.read_csv(config.paths.evaluations).set_index("trial")
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    assert study.metric_names == ["inherited mIoU", "latency ms (measured; predicted where not)"]
    for trial in study.trials:
        row = evaluations.loc[trial.number]
        assert trial.values == pytest.approx([row.miou, row.latency_ms])
        assert trial.user_attrs["latency_source"] == row.latency_source
        if row.latency_source == "measured":
            assert trial.values[1] == pytest.approx(trial.user_attrs["measured_ms"])
    front = pd.read_csv(config.paths.front)
    assert (front.latency_source == "measured").all() and front.predicted_ms.notna().all()
    assert {"measured_ms", "measured_p90_ms", "predicted_ms"} <= set(front.columns)
    assert Path(config.paths.rounds).exists() and Path(config.paths.search_measurements).exists()


def test_the_rounds_measure_through_a_device_agent(quickstart, fast: list[str], tmp_path: Path) -> None:
    """latency.device=agent: the latency stage and every round measure through the client and the store; the front
    ends measured, and the requests the agent served are the store's rows."""
    agent = Agent(onnx_backend("onnxruntime-cpu"), TOKEN, Limits(max_threads=1))
    served = []
    measure = agent.measure
    agent.measure = lambda *args, **kwargs: served.append(1) or measure(*args, **kwargs)
    server = AgentServer(("127.0.0.1", 0), agent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = tmp_path / "token"
    token.write_text(TOKEN)
    try:
        args = [f"runs_dir={tmp_path}", f"latency.store={tmp_path / 'store'}", *fast, "latency.device=agent",
                "latency.backend=onnxruntime-cpu", f"latency.agent.url=http://127.0.0.1:{server.server_port}",
                f"latency.agent.token_file={token}", "search.generations=4", "search.rounds=2"]
        assert main([quickstart, *args, "--stages", "space,supernet,latency,search"]) == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    run = tmp_path / "quickstart"
    rounds = pd.read_csv(run / "search" / "rounds.csv")
    front = pd.read_csv(run / "front.csv")
    assert rounds.measured.sum() > 0 and (front.latency_source == "measured").all()
    (store,) = (tmp_path / "store").glob("*.csv")
    assert store.stem == agent.device and len(pd.read_csv(store)) == len(served)
    stage = pd.read_csv(run / "latency" / "measurements.csv")
    evaluations = pd.read_csv(run / "evaluations.csv")
    released = set(evaluations.key[evaluations.reference.notna()])  # measured after the search, unless stored
    searched = set(pd.read_csv(run / "search" / "measurements.csv").key)
    assert len(released) == 2 and (evaluations.latency_source[evaluations.reference.notna()] == "measured").all()
    rechecked = pd.read_csv(run / "search" / "measurements.csv").first_ms.notna().sum()  # measured twice
    assert len(served) == len(stage) + rounds.measured.sum() + rechecked + len(released - set(stage.key) - searched)


def test_a_stored_measurement_with_fewer_timed_runs_is_measured_again(quickstart, fast: list[str],
                                                                      tmp_path: Path) -> None:
    """The store's key leaves warm-up and repeats out: a measurement made with 3 timed runs does not stand in for
    one the protocol asks 5 for, while one made with 5 serves a protocol of 3."""
    genotype = sample("small", 7)
    args = [f"runs_dir={tmp_path}", f"latency.store={tmp_path / 'store'}", *fast]
    quick = Meter(load(quickstart, [*args, "latency.repeats=3"]))
    first = quick.measure([genotype], "test")[0]
    careful = Meter(load(quickstart, [*args, "latency.repeats=5"]))
    second = careful.measure([genotype], "test")[0]
    assert (first.stats.samples, second.stats.samples) == (3, 5)
    assert quick.measure([genotype], "test")[0].stats.samples == 5  # the careful one serves the quick protocol
    assert len(pd.read_csv(quick.store.path)) == 2


def test_a_worker_in_another_folder_reads_the_runs_files_and_says_which_it_cannot(latency_run, tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """Issue 31: workers get absolute paths (a worker started in another folder scored nothing with a relative
    runs_dir), and a worker that cannot read a file names its machine and the file, without advising to delete it."""
    runs = Path(next(arg for arg in latency_run if arg.startswith("runs_dir=")).split("=", 1)[1])
    monkeypatch.chdir(runs.parent)
    config = load(latency_run[0], [*latency_run[1:], f"runs_dir={runs.name}"])  # relative, as by default
    shipped = config.for_workers()
    monkeypatch.chdir(tmp_path)  # the worker's own folder
    genotype = sample("small", 3)
    assert 0 <= score_on_worker(shipped, genotype.key)["miou"] <= 1
    elsewhere = json.loads(shipped)
    elsewhere["runs_dir"] = str(tmp_path / "not-synced")
    with pytest.raises(ConfigError) as caught:
        score_on_worker(json.dumps(elsewhere), genotype.key)
    message = str(caught.value)
    assert message.startswith(f"a Dask worker on {socket.gethostname()} cannot read the run's files (")
    assert "not-synced" in message and "supernet.pt" in message and "delete" not in message
