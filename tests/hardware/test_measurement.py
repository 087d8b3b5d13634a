"""Latency measurement: protocol statistics, CPU backends, the measurement store, lookup tables, HW-NAS-Bench sums.

CPU tests run one thread: on a shared 2-core machine two OpenMP threads stall behind any other busy process.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from hardware.backends import BACKENDS, BackendUnavailable, backend, example_input, to_onnx
from hardware.lookup import LookupTable, hwnasbench_table, measure_lookup_table
from hardware.protocol import LatencyStats, Measurement, MeasurementProtocol, measure, time_runs
from hardware.store import COLUMNS, MeasurementKey, MeasurementStore, StoreError, space_label
from spaces import Genotype, build, sample, smallest

TINY = MeasurementProtocol(warmup=2, repeats=3, size=(64, 128), threads=1)
HELP_COLUMNS = ("raspi4", "pixel3", "eyeriss", "fpga")


class FakeClock:
    """A clock that only moves when the fake runner runs, by the next of its known durations (seconds)."""

    def __init__(self, durations: list[float]):
        self.now, self.durations, self.calls = 0.0, list(durations), 0

    def __call__(self) -> float:
        return self.now

    def run(self) -> None:
        self.now += self.durations[self.calls]
        self.calls += 1


def test_protocol_statistics_on_known_timings() -> None:
    durations_ms = [100.0, 100.0] + [float(t) for t in range(1, 11)]
    clock = FakeClock([d / 1000 for d in durations_ms])
    samples = time_runs(clock.run, warmup=2, repeats=10, clock=clock)
    assert clock.calls == 12
    assert np.allclose(samples, np.arange(1, 11))
    stats = LatencyStats.of(samples)
    assert stats.samples == 10 and stats.min_ms == pytest.approx(1.0)
    assert stats.median_ms == pytest.approx(5.5) and stats.mean_ms == pytest.approx(5.5)
    assert stats.p90_ms == pytest.approx(9.1)
    assert stats.cv == pytest.approx(np.std(np.arange(1, 11)) / 5.5)


def test_protocol_settings_are_checked() -> None:
    assert MeasurementProtocol(size=(256, 512), batch=2).shape == (2, 3, 256, 512)
    with pytest.raises(ValueError, match="repeats"):
        MeasurementProtocol(repeats=0)
    with pytest.raises(ValueError, match="size"):
        MeasurementProtocol(size=(0, 512))


@pytest.fixture(scope="module")
def tiny_network() -> torch.nn.Module:
    return build(sample("small", 0), width=0.25).eval()


def test_cpu_backends_measure_and_agree(tiny_network: torch.nn.Module) -> None:
    outputs = {}
    for name in ("torch-cpu", "onnxruntime-cpu"):
        runner = backend(name)
        measurement = measure(tiny_network, runner, TINY)
        assert measurement.stats.samples == 3 and 0 < measurement.stats.min_ms <= measurement.stats.median_ms
        record = json.loads(json.dumps(measurement.provenance))
        assert record["backend"] == name and record["backend_version"] == runner.version
        assert record["threads"] == 1 and record["protocol"]["shape"] == [1, 3, 64, 128]
        outputs[name] = np.asarray(runner.prepare(tiny_network, TINY.shape, 1)())
    assert outputs["torch-cpu"].shape == (1, 19, 64, 128)
    np.testing.assert_allclose(outputs["onnxruntime-cpu"], outputs["torch-cpu"], atol=1e-4)


def test_measuring_leaves_the_callers_thread_count(tiny_network: torch.nn.Module) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        measure(tiny_network, backend("torch-cpu"), TINY)  # TINY times with 1 thread
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_onnxruntime_takes_onnx_bytes_and_torch_refuses_them(tiny_network: torch.nn.Module) -> None:
    graph = to_onnx(tiny_network, TINY.shape)
    out = backend("onnxruntime-cpu").prepare(graph, TINY.shape, 1)()
    with torch.inference_mode():
        np.testing.assert_allclose(out, tiny_network(example_input(TINY.shape)).numpy(), atol=1e-4)
    with pytest.raises(TypeError, match="runs an nn.Module"):
        backend("torch-cpu").prepare(graph, TINY.shape, 1)


def test_unknown_and_unavailable_backends_fail_at_once() -> None:
    with pytest.raises(ValueError, match="unknown backend 'tpu'; known: torch-cpu"):
        backend("tpu")
    for name in ("torch-cuda-fp16", "tensorrt-fp16"):
        missing = BACKENDS[name].missing()
        if missing is None:
            continue
        with pytest.raises(BackendUnavailable, match="CUDA|tensorrt") as error:
            backend(name)
        assert str(error.value).count("\n") == 0 and name in str(error.value)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["torch-cuda-fp16", "tensorrt-fp16"])
def test_gpu_backends_measure_and_agree_with_fp32(name: str, tiny_network: torch.nn.Module) -> None:
    if BACKENDS[name].missing():
        pytest.skip(BACKENDS[name].missing())
    runner = backend(name)
    protocol = MeasurementProtocol(warmup=5, repeats=20, size=(64, 128), threads=1)
    assert measure(tiny_network, runner, protocol).stats.median_ms > 0
    out = runner.prepare(tiny_network, protocol.shape, 1)().float().cpu()
    with torch.inference_mode():
        reference = tiny_network(example_input(protocol.shape))
    assert torch.allclose(out, reference, atol=2e-2 * float(reference.abs().max()))


def _measurement(median: float) -> Measurement:
    stats = LatencyStats(median, median + 0.1, median + 0.5, median - 0.2, 0.03, 20)
    return Measurement(stats, {"backend": "torch-cpu", "note": 'has "quotes", commas'})


def test_store_round_trips_and_reports_missing_keys(tmp_path) -> None:
    store = MeasurementStore("test-cpu", tmp_path)
    protocol = MeasurementProtocol(size=(256, 512), threads=2)
    keys = [MeasurementKey.of(space_label("small", 0.5), sample("small", i).key, "torch-cpu", protocol)
            for i in range(3)]
    assert keys[0] == MeasurementKey("small-w0.5-c19", sample("small", 0).key, "256x512", "torch-cpu", 1, 2)
    assert store.missing(keys) == keys and store.get(keys[0]) is None
    store.put(keys[0], _measurement(12.5))
    store.put(keys[1], _measurement(20.0))
    assert store.missing(keys + [keys[2], keys[0]._replace(threads=1)]) == [keys[2], keys[0]._replace(threads=1)]
    assert store.get(keys[0]) == _measurement(12.5)
    assert MeasurementStore("test-cpu", tmp_path).load() == {keys[0]: _measurement(12.5), keys[1]: _measurement(20.0)}
    assert store.path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert space_label("small", 0.5) == "small-w0.5-c19"


def test_store_survives_a_truncated_last_line(tmp_path) -> None:
    store = MeasurementStore("test-cpu", tmp_path)
    keys = [MeasurementKey("small-w0.5-c19", sample("small", i).key, "256x512", "torch-cpu") for i in range(3)]
    store.put(keys[0], _measurement(12.5))
    store.put(keys[1], _measurement(20.0))
    data = store.path.read_bytes()
    store.path.write_bytes(data[: len(data) - 30])
    assert list(store.load()) == [keys[0]]
    store.put(keys[2], _measurement(30.0))
    assert store.load() == {keys[0]: _measurement(12.5), keys[2]: _measurement(30.0)}
    assert store.missing(keys) == [keys[1]]


def test_store_rejects_foreign_files_and_bad_device_names(tmp_path) -> None:
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other.csv: line 1: header"):
        MeasurementStore("other", tmp_path).load()
    with pytest.raises(ValueError, match="device name"):
        MeasurementStore("../escape", tmp_path)


@pytest.mark.parametrize("first_line", [
    b"\x1f\x8b\x08\x00" + bytes(range(256)) * 600 + b"\n",  # binary, one field over csv's limit
    b"space;genotype;resolution;backend\n",
    b'"space,genotype\n',
    b"\n",
], ids=["binary", "semicolons", "open quote", "empty"])
def test_a_garbled_header_is_refused_in_one_line_naming_the_file(tmp_path, first_line: bytes) -> None:
    store = MeasurementStore("garbled", tmp_path)
    store.path.write_bytes(first_line + b"small-w0.5-c19,abc,256x512,torch-cpu,1,1,1,1,1,1,0,10,{}\n")
    with pytest.raises(StoreError) as refused:
        store.load()
    message = str(refused.value)
    assert message.startswith(f"{store.path}: line 1: header ") and "is not a measurement store's" in message
    assert "\n" not in message and len(message) < 400 + len(str(store.path))
    with pytest.raises(ValueError):  # what the engine catches of the store
        store.missing([])


@pytest.mark.parametrize(("cell", "value", "says"), [
    ("median_ms", "nan", "median_ms is nan, not a finite number of milliseconds >= 0"),
    ("min_ms", "-0.5", "min_ms is -0.5, not a finite number of milliseconds >= 0"),
    ("p90_ms", "inf", "p90_ms is inf, not a finite number of milliseconds >= 0"),
    ("mean_ms", "-inf", "mean_ms is -inf"),
    ("cv", "nan", "cv is nan"),
    ("samples", "0", "samples is 0, not at least 1"),
    ("provenance", "[1, 2]", "provenance is a JSON list, not an object"),
], ids=["nan", "negative", "inf", "-inf", "cv nan", "no samples", "provenance list"])
def test_a_row_with_an_impossible_measurement_is_refused_naming_file_line_and_genotype(
        tmp_path, cell: str, value: str, says: str) -> None:
    """No crash writes NaN, an infinite or negative latency: the row is refused, not taken for a measurement (nor
    skipped as a truncated row is, which would measure it again and leave the bad row for the next reader)."""
    store = MeasurementStore("test-cpu", tmp_path)
    keys = [MeasurementKey("small-w0.5-c19", sample("small", i).key, "256x512", "torch-cpu") for i in range(3)]
    for i, key in enumerate(keys):
        store.put(key, _measurement(10.0 + i))
    lines = store.path.read_text().splitlines()
    cells = next(csv.reader(lines[2:3]))
    cells[COLUMNS.index(cell)] = value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    store.path.write_text("\n".join([*lines[:2], buffer.getvalue().rstrip("\n"), *lines[3:]]) + "\n")
    with pytest.raises(StoreError) as refused:
        store.load()
    message = str(refused.value)
    assert message.startswith(f"{store.path}: line 3: genotype {keys[1].genotype!r} (small-w0.5-c19, 256x512, ")
    assert says in message and "\n" not in message


def test_put_refuses_an_impossible_measurement(tmp_path) -> None:
    store = MeasurementStore("test-cpu", tmp_path)
    key = MeasurementKey("small-w0.5-c19", sample("small", 0).key, "256x512", "torch-cpu")
    for stats in (LatencyStats(float("nan"), 1.0, 1.0, 1.0, 0.0, 5), LatencyStats(1.0, 1.0, 1.0, -1.0, 0.0, 5)):
        with pytest.raises(StoreError, match=f"not storing the measurement of genotype {key.genotype!r}"):
            store.put(key, Measurement(stats, {}))
    assert not store.path.exists()


def test_lookup_table_sums_blocks_and_fixed_part(tmp_path) -> None:
    table = measure_lookup_table("small", backend("torch-cpu"), TINY, width=0.25)
    assert table.latency_ms.shape == (20, 13) and (table.latency_ms >= 0).all()
    genotype = sample("small", 1)
    chosen = table.latency_ms[np.arange(20), genotype.choices]
    assert table.predict(genotype) == pytest.approx(table.fixed_ms + chosen.sum())
    identity = table.latency_ms[1:4, 12]
    assert (identity == 0).all() and (table.latency_ms[:, :12] > 0).all()
    loaded = LookupTable.load(table.save(tmp_path / "lut.json"))
    assert loaded.predict_many([genotype, smallest("small")]).tolist() == \
        table.predict_many([genotype, smallest("small")]).tolist()
    with pytest.raises(ValueError, match="'large'"):
        table.predict(sample("large", 0))


def test_lookup_table_takes_the_statistic_it_is_asked_for(monkeypatch) -> None:
    import hardware.lookup

    stats = LatencyStats(median_ms=2.0, mean_ms=2.5, p90_ms=3.0, min_ms=1.0, cv=0.1, samples=3)
    monkeypatch.setattr(hardware.lookup, "measure", lambda *args: Measurement(stats, {"host": "test"}))
    for statistic, value in (("median_ms", 2.0), ("min_ms", 1.0)):
        table = measure_lookup_table("small", backend("torch-cpu"), TINY, width=0.25, statistic=statistic)
        assert set(np.unique(table.latency_ms[:, :12])) == {value}
        base = table.latency_ms[np.arange(20), smallest("small").choices].sum()  # skips that reduce are timed
        assert table.fixed_ms == value - base
        assert table.provenance["statistic"] == statistic


def test_hwnasbench_table_sums_equal_help_columns(shared) -> None:
    help_table = pd.read_csv(shared("latency/help_fbnet_latency.csv"), dtype={"arch": str})
    genotypes = [Genotype.from_digits("fbnet_cifar", arch) for arch in help_table["arch"]]
    path = shared("latency/hwnasbench_fbnet_lut.json")
    for device in HELP_COLUMNS:
        predicted = hwnasbench_table(path, device).predict_many(genotypes)
        np.testing.assert_allclose(predicted, help_table[device].to_numpy(), rtol=1e-6, err_msg=device)
    imagenet = hwnasbench_table(path, "edgegpu", "fbnet_imagenet")
    assert imagenet.latency_ms.shape == (22, 9) and imagenet.fixed_ms > 0
    with pytest.raises(ValueError, match="no table 'tpu_latency'"):
        hwnasbench_table(path, "tpu")
