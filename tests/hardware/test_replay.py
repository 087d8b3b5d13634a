"""Replay devices (hardware/backends.py `replay-*`): HW-NAS-Bench's recorded per-block tables answered through the
backend and store interfaces as a measured device would be, labelled a replay in the provenance; what a replay
cannot answer is refused saying why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.latency.meter import origin
from hardware.backends import BACKENDS, BackendUnavailable, backend
from hardware.protocol import MeasurementProtocol, measure
from hardware.store import MeasurementKey, MeasurementStore, space_label
from spaces import Genotype, build

PROTOCOL = MeasurementProtocol(warmup=0, repeats=20, batch=1, size=(32, 32))


@pytest.fixture(scope="module")
def table(shared):
    return shared("latency/hwnasbench_fbnet_lut.json")


def test_a_replay_answers_helps_measured_column_through_the_store(shared, table, tmp_path) -> None:
    help_table = pd.read_csv(shared("latency/help_fbnet_latency.csv"), dtype={"arch": str}, nrows=5)
    raspi4 = backend("replay-raspi4", table)
    assert raspi4.device == "hwnasbench-raspi4" and "replay-raspi4" in BACKENDS
    store = MeasurementStore(raspi4.device, tmp_path)
    for arch, expected in zip(help_table["arch"], help_table["raspi4"]):
        genotype = Genotype.from_digits("fbnet_cifar", arch)
        measurement = measure(build(genotype, 1.0, 100), raspi4, PROTOCOL)
        assert measurement.stats.median_ms == pytest.approx(expected, rel=1e-6) and measurement.stats.cv == 0
        store.put(MeasurementKey.of(space_label("fbnet_cifar", 1.0, 100), genotype.key, raspi4.name, PROTOCOL),
                  measurement)
    stored = list(store.load().values())
    assert len(stored) == 5
    record = stored[0].provenance
    assert record["backend"] == "replay-raspi4" and record["replay"]["source"] == "HW-NAS-Bench"
    assert record["replay"]["table"] == "raspi4_latency" and "not timed" in record["replay"]["note"]
    assert record["backend_version"].startswith("HW-NAS-Bench hwnasbench_fbnet_lut.json sha256:")
    assert origin(stored[0], store.device, fresh=True)["source"] == "replayed"
    assert origin(stored[0], store.device, fresh=False)["source"] == "store"


def test_what_a_replay_has_not_recorded_is_refused_saying_why(table) -> None:
    edgegpu = backend("replay-edgegpu", table)
    genotype = Genotype.from_digits("fbnet_cifar", "0" * 22)
    with pytest.raises(ValueError, match="has recorded fbnet_cifar at 1x3x32x32.*not fbnet_cifar at 1x3x64x64"):
        measure(build(genotype, 1.0, 100), edgegpu, MeasurementProtocol(0, 5, 1, (64, 64)))
    with pytest.raises(ValueError, match="width 1.0 only"):
        measure(build(genotype, 0.5, 100), edgegpu, PROTOCOL)
    with pytest.raises(ValueError, match="no entry FC_Cin1504_Cout11"):
        measure(build(genotype, 1.0, 11), edgegpu, PROTOCOL)
    with pytest.raises(ValueError, match="not small"):
        measure(build(Genotype.from_key("small:" + "-".join(["0"] * 20)), 1.0, 100), edgegpu, PROTOCOL)
    with pytest.raises(TypeError, match="runs nothing"):
        edgegpu.prepare(build(genotype, 1.0, 100), (1, 3, 32, 32), 1)


def test_a_replay_without_its_table_is_unavailable_naming_the_setting(tmp_path) -> None:
    with pytest.raises(BackendUnavailable, match="set latency.replay to hwnasbench_fbnet_lut.json"):
        backend("replay-fpga")
    with pytest.raises(BackendUnavailable, match="is not a file"):
        backend("replay-fpga", tmp_path / "absent.json")


def test_every_recorded_device_answers_a_different_latency(table) -> None:
    genotype = Genotype.from_digits("fbnet_cifar", "3" * 22)
    values = [measure(build(genotype, 1.0, 100), backend(f"replay-{d}", table), PROTOCOL).stats.min_ms
              for d in ("edgegpu", "raspi4", "pixel3", "eyeriss", "fpga")]
    assert len(set(np.round(values, 9))) == 5 and min(values) > 0


def test_a_run_on_a_replay_device_it_has_not_recorded_stops_before_any_stage(quickstart, table) -> None:
    from engine.config import load
    from engine.errors import ConfigError
    from engine.latency.meter import Meter

    replay = ["latency.backend=replay-raspi4", f"latency.replay={table}"]
    with pytest.raises(ConfigError, match=r"not small at 1x3x128x256 \(space.skeleton, space.input_size"):
        Meter(load(quickstart, replay))
    fbnet = [*replay, "space.skeleton=fbnet_cifar", "space.input_size=[32,32]", "space.width=1.0"]
    with pytest.raises(ConfigError, match="no entry FC_Cin1504_Cout11"):  # the synthetic streets' 11 classes
        Meter(load(quickstart, fbnet))
    with pytest.raises(ConfigError, match="latency.device_name my-board: a replay backend names its device itself"):
        Meter(load(quickstart, [*fbnet, "latency.device_name=my-board"]))
    with pytest.raises(ConfigError, match=r"latency.replay .*test_replay.py: not HW-NAS-Bench's table file"):
        Meter(load(quickstart, [*fbnet[1:], "latency.backend=replay-raspi4", f"latency.replay={__file__}"]))
