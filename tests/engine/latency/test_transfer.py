"""Latency transfer in the latency stage, on made-up devices: chosen when the store holds other devices'
measurements of the space (the shots only measured, the sources' weights in accuracy.json, the sources kept for the
search's refits), refused without sources, with sources of another space only, or for a named device the store lacks;
the candidate predictors chosen by cross-validated error; and a run killed during the shots resumes without measuring
a shot twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.config import load
from engine.errors import ConfigError
from engine.latency.meter import Meter, experiment_spaces
from engine.latency.model import Transfer, fit_predictor, load_latency_model, load_sources, space_costs
from engine.latency.transfer import Source, find_sources
from engine.report.tables import accuracy_table
from engine.run import main
from engine.search.rounds import Rounds
from hardware.protocol import LatencyStats, Measurement
from hardware.store import MeasurementKey, MeasurementStore, space_label
from spaces import Genotype, sample_of

SOURCE_ROWS = 40
TRANSFER = ["latency.transfer.enabled=true", "latency.transfer.shots=8", "latency.transfer.min_rows=30",
            "latency.active=0", "latency.heldout=6"]


def layer_macs(config, genotype: Genotype) -> np.ndarray:
    costs = space_costs(config)
    return costs.table(genotype).layer_costs(genotype)[:, 0] / 1e6


def device_ms(config, genotype: Genotype, device: str) -> float:
    """Made-up devices, each linear in the per-layer MACs with its own seeded positive weights; `target` is twice
    device b plus 0.3 ms, so b alone should carry the transfer."""
    if device == "target":
        return 2.0 * device_ms(config, genotype, "b") + 0.3
    macs = layer_macs(config, genotype)
    weights = np.random.default_rng(ord(device)).uniform(0.2, 1.0, len(macs))
    return 0.5 + float(weights @ macs)


def stats(ms: float) -> LatencyStats:
    return LatencyStats(ms, ms, ms, ms, 0.0, 1000)


def fill_store(config, store: Path, devices=("a", "b"), space: str | None = None, rows: int = SOURCE_ROWS) -> None:
    """`rows` random genotypes of the run's space measured on each made-up device, at the run's protocol."""
    rng = random.Random(5)
    label = space or experiment_spaces(config)["small"]
    meter_protocol = Meter(config).protocol
    for device in devices:
        target = MeasurementStore(f"phone-{device}", store)
        for _ in range(rows):
            genotype = sample_of(["small"], rng)
            key = MeasurementKey.of(label, genotype.key, "torch-cpu", meter_protocol)
            target.put(key, Measurement(stats(device_ms(config, genotype, device)), {"made_up": True}))


@pytest.fixture
def made_up_target(monkeypatch):
    """The meter answers the made-up target's latency instead of timing; records what it measured."""
    measured: list[str] = []

    def measure_network(self, network) -> Measurement:
        measured.append(network.genotype.key)
        return Measurement(stats(device_ms(self.config, network.genotype, "target")), {"backend": "made-up"})

    monkeypatch.setattr(Meter, "measure_network", measure_network)
    return measured


def transfer_run(quickstart: str, run_args: list[str], *extra: str) -> tuple[list[str], object]:
    args = [quickstart, *run_args, *TRANSFER, *extra]
    return args, load(quickstart, args[1:])


def test_a_transfer_measures_the_shots_and_says_which_sources_carried_it(quickstart, run_args, made_up_target,
                                                                           tmp_path: Path) -> None:
    args, config = transfer_run(quickstart, run_args)
    fill_store(config, tmp_path / "store")
    assert main([*args, "--stages", "latency"]) == 0
    paths = config.paths
    accuracy = json.loads(paths.accuracy.read_text())
    transfer = accuracy["transfer"]
    assert transfer["used"] and transfer["chosen"] and accuracy["layout"] == "transfer"
    assert transfer["measured"] == 8 and len(made_up_target) == 8 + 6  # the shots and the held-out genotypes only
    assert set(transfer["sources"]) == {f"phone-{d}/torch-cpu/64x128/b1/t1" for d in "ab"}
    top = transfer["fit"]["sources"][0]
    assert top["source"].startswith("phone-b/") and top["share"] > 0.9, transfer["fit"]
    assert accuracy["mape"] < 1.0, accuracy  # the target is exactly a combination of the sources
    assert len(pd.read_csv(paths.measurements).query("role == 'train'")) == 8
    sources = load_sources(paths.predictor)
    assert sources is not None and sources.rows() == {label: SOURCE_ROWS for label in transfer["sources"]}
    page = accuracy_table(accuracy)
    assert transfer["compared"] is False  # leave-one-out leaves the plain predictor 7 of the 10 it needs
    assert ("Transfer from 2 source(s) with 8 measurements on this device; the transferred predictor (the plain one "
            "needs more measurements to be cross-validated) is kept") in page
    assert "phone-b/torch-cpu/64x128/b1/t1 100 %" in page and "phone-a/" not in page
    rounds = Rounds(config, load_latency_model(config), None)  # the search's refits transfer from the same sources
    assert rounds.transfer is not None and rounds.transfer.sources.keys == sources.keys
    refit = rounds.refit(1)
    assert refit.layout == "transfer" and set(refit.errors) == {"joint", "transfer"}


def test_without_sources_the_stage_measures_as_usual_and_says_why(quickstart, run_args, made_up_target) -> None:
    args, config = transfer_run(quickstart, run_args)
    assert main([*args, "--stages", "latency"]) == 0
    accuracy = json.loads(config.paths.accuracy.read_text())
    assert accuracy["transfer"]["used"] is False
    assert "holds no other device's measurements of this space" in accuracy["transfer"]["reason"]
    assert len(made_up_target) == config.latency.measurements + 6 and "layout" not in accuracy
    assert load_sources(config.paths.predictor) is None
    assert "Transfer from other devices: not used, the measurement store" in accuracy_table(accuracy)


def test_sources_of_another_space_do_not_transfer(quickstart, run_args, made_up_target, tmp_path: Path) -> None:
    args, config = transfer_run(quickstart, run_args)
    fill_store(config, tmp_path / "store", space=space_label("small", 1.0, config.space.num_classes))
    assert main([*args, "--stages", "latency"]) == 0
    reason = json.loads(config.paths.accuracy.read_text())["transfer"]["reason"]
    assert f"its {2 * SOURCE_ROWS} measurements of other spaces do not transfer" in reason


def test_too_few_source_measurements_say_how_many_there_are(quickstart, run_args, tmp_path: Path) -> None:
    _, config = transfer_run(quickstart, run_args)
    fill_store(config, tmp_path / "store", devices=("a",), rows=12)
    target = Source("this-cpu", "torch-cpu", "64x128", 1, 1)
    table, reason = find_sources(tmp_path / "store", None, set(experiment_spaces(config).values()), target,
                                 "min_ms", 30)
    assert table is None and reason.endswith("(the most: 12 on phone-a/torch-cpu/64x128/b1/t1)")


def test_a_named_source_the_store_lacks_is_one_line(quickstart, run_args, tmp_path: Path, capsys) -> None:
    args, config = transfer_run(quickstart, run_args, "latency.transfer.sources=[phone-z]")
    fill_store(config, tmp_path / "store", devices=("a",))
    assert main([*args, "--stages", "latency"]) == 2
    err = capsys.readouterr().err.strip()
    assert "latency.transfer.sources" in err and "no device 'phone-z'" in err and "phone-a" in err


def test_the_candidates_compete_on_cross_validated_error(quickstart, run_args, tmp_path: Path) -> None:
    """Few measurements of a combination of the sources: transferred; many of a device that is no combination
    of them (its own weights per layer): the plain predictor."""
    _, config = transfer_run(quickstart, run_args)
    fill_store(config, tmp_path / "store", rows=60)
    target = Source("this-cpu", "torch-cpu", "64x128", 1, 1)
    table, _ = find_sources(tmp_path / "store", None, set(experiment_spaces(config).values()), target, "min_ms", 30)
    transfer = Transfer(table, space_costs(config))
    rng = random.Random(9)
    genotypes = [sample_of(["small"], rng) for _ in range(120)]
    few = np.array([device_ms(config, g, "target") for g in genotypes[:8]])
    model = fit_predictor(transfer.costs, genotypes[:8], few, 0, transfer)
    assert model.layout == "transfer" and np.isnan(model.errors["joint"])
    own = np.array([device_ms(config, g, "z") + 5 * layer_macs(config, g)[0] ** 2 for g in genotypes])
    model = fit_predictor(transfer.costs, genotypes, own, 0, transfer)
    assert model.layout == "joint" and model.errors["joint"] < model.errors["transfer"], model.errors


def test_a_run_killed_during_the_shots_resumes_without_measuring_one_twice(quickstart, run_args, root: Path,
                                                                          tmp_path: Path) -> None:
    """Real timing on this CPU (slow enough to be killed in the middle); the sources are made up."""
    args, config = transfer_run(quickstart, run_args, "latency.repeats=400")
    fill_store(config, tmp_path / "store")
    command = [sys.executable, "-m", "engine.run", *args, "--stages", "latency"]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    own = lambda: [k for k in MeasurementStore(Meter(config).store.device, tmp_path / "store").load()]  # noqa: E731
    try:
        deadline = time.monotonic() + 600
        while len(own()) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    before = {key.genotype for key in own()}
    assert 3 <= len(before) < 8 and not config.paths.accuracy.exists(), before
    lines = MeasurementStore(Meter(config).store.device, tmp_path / "store").path.read_text().splitlines()
    assert subprocess.run(command, cwd=root, capture_output=True).returncode == 0
    after = MeasurementStore(Meter(config).store.device, tmp_path / "store").path.read_text().splitlines()
    measured_again = [line for line in after[len(lines):] if line.split(",")[1] in before]
    assert not measured_again
    train = set(pd.read_csv(config.paths.measurements).query("role == 'train'").key)
    assert before <= train and len(train) == 8


def test_the_plan_counts_the_shots_when_it_will_transfer(quickstart, run_args, tmp_path: Path) -> None:
    from engine.plan import fitted

    _, config = transfer_run(quickstart, run_args)
    count, why = fitted(config, Meter(config))
    assert count == config.latency.measurements and "no transfer, the measurement store" in why
    fill_store(config, tmp_path / "store")
    assert fitted(config, Meter(config)) == (8, "to fit, transferred from 2 sources")


def test_a_rerun_reads_the_sources_it_started_with_not_the_store_now(quickstart, run_args, made_up_target,
                                                                      tmp_path: Path) -> None:
    """An output removed after the stage finished: it runs again from its work (the sources it read), though the
    store has gained a device since."""
    args, config = transfer_run(quickstart, run_args)
    fill_store(config, tmp_path / "store")
    assert main([*args, "--stages", "latency"]) == 0
    first = json.loads(config.paths.accuracy.read_text())["transfer"]["sources"]
    fill_store(config, tmp_path / "store", devices=("c",))
    (config.paths.predictor / "sources.csv").unlink()
    assert main([*args, "--stages", "latency"]) == 0
    assert json.loads(config.paths.accuracy.read_text())["transfer"]["sources"] == first and len(first) == 2


def test_what_is_no_source_is_passed_over(quickstart, run_args, tmp_path: Path, caplog) -> None:
    """A stray file in the store folder is skipped with a warning; with two skeletons a source needs min_rows of
    each; more shots than the pool is a one-line configuration error."""
    _, config = transfer_run(quickstart, run_args)
    fill_store(config, tmp_path / "store")
    (tmp_path / "store" / "we ird,na=me.csv").write_text("not a store\n")
    target = Source("this-cpu", "torch-cpu", "64x128", 1, 1)
    spaces = set(experiment_spaces(config).values())
    table, _ = find_sources(tmp_path / "store", None, spaces, target, "min_ms", 30)
    assert table is not None and len(table.sources) == 2 and "we ird,na=me.csv is not read" in caplog.text
    both = load(quickstart, [*run_args[:2], *run_args[2:], *TRANSFER, "space.skeleton=[small,large]"])
    table, reason = find_sources(tmp_path / "store", None, set(experiment_spaces(both).values()), target, "min_ms", 30)
    assert table is None and "min_rows 30 measurements of each skeleton of this space (the most: 0 on" in reason
    with pytest.raises(ConfigError, match="latency.transfer.shots 60 exceeds latency.pool 50"):
        load(quickstart, [*run_args, *TRANSFER, "latency.transfer.shots=60"])
