"""The report as a user reads it, from a hand-made three-skeleton run placed as the select stage places it: each pick
beside its skeleton (a pick labelled "small" may be an xlarge network), positions along the front's latency range as
"nearest", where each model.onnx is, the front as a table, the device from the recorded provenance, class colours,
no label written over the trade-off, and nothing wider than a 1400 px window."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from engine.report.page import OVERFLOWING, write_report
from engine.stages.select import pick
from tests.engine.report.pages import figure, section, table_rows, traces
from tests.engine.report.test_report import CHROMIUM, CHROMIUM_ARGS

FRONT = [  # key, inherited mIoU, measured ms: the fastest point is an xlarge network
    ("xlarge:0-0-0", 0.40, 2.0), ("large:1-1-1", 0.45, 3.0), ("xlarge:2-2-2", 0.52, 3.57),
    ("small:3-3-3", 0.55, 4.5), ("xlarge:3-3-3", 0.60, 6.0)]
SPANS = {"small": 0.0, "large": 0.33, "xlarge": 1.0}
PROVENANCE = {"host": "xavier-01", "cpu": "ARMv8 Processor rev 0 (v8l)", "gpu": "Xavier", "backend": "tensorrt-fp16",
              "backend_version": "8.5.2.2", "precision": "fp16", "threads": 1, "agent": "http://10.0.0.7:8765"}
CLASSES = ["road", "sky"]
COLORS = [[128, 64, 128], [70, 130, 180]]


def front() -> pd.DataFrame:
    """front.csv (and evaluations.csv) of the run: every point measured, the prediction 5 % under."""
    table = pd.DataFrame(FRONT, columns=["key", "miou", "latency_ms"])
    return table.assign(trial=range(len(table)), strategy="evolution", generation=0, latency_source="measured",
                        measured_ms=table.latency_ms, predicted_ms=table.latency_ms * 0.95,
                        latency_lower_ms=table.latency_ms * 0.85, latency_upper_ms=table.latency_ms * 1.05,
                        macs=(table.latency_ms * 1e8).astype(int), params=500_000, feasible=True, front=True)


def metrics(entry: dict, row: pd.Series, remeasured: bool) -> dict:
    """A retrained pick's metrics.json, re-measured on the agent (with provenance) or not."""
    measured = {"min_ms": row.latency_ms * 1.02, "median_ms": row.latency_ms * 1.05, "p90_ms": row.latency_ms * 1.1,
                "provenance": PROVENANCE} if remeasured else None
    return {**entry, "measured_ms": row.latency_ms, "predicted_ms": row.predicted_ms,
            "miou": row.miou, "retrained_miou": row.miou + 0.1, "iou": [0.9, 0.7], "class_names": CLASSES,
            "class_colors": COLORS, "measured": measured, "onnx_max_abs_diff": 1e-6, "macs": int(row.macs),
            "params": 500_000}


def write_run(run_dir: Path, remeasured: bool = True) -> list[dict]:
    """The run: config.yaml (an agent, three skeletons), evaluations.csv, front.csv, the select stage's placement
    of SPANS and a 5 ms budget, metrics.json of all but the budget's pick, model.onnx of the span picks but
    xlarge; returns the selection's entries."""
    table = front()
    config = {"name": "three", "space": {"skeleton": ["small", "large", "xlarge"]},
              "latency": {"device": "agent", "backend": "tensorrt-fp16", "statistic": "min",
                          "agent": {"url": "http://127.0.0.1:8765"}},
              "selection": {"budgets_ms": {"edge": 5.0}, "budgets_span": SPANS}}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    table.to_csv(run_dir / "evaluations.csv", index=False)
    table.to_csv(run_dir / "front.csv", index=False)
    picked, _ = pick(table, {"edge": 5.0}, with_knee=False, budgets_span=SPANS)
    (run_dir / "selected").mkdir()
    (run_dir / "selected" / "selection.json").write_text(json.dumps({"picked": picked, "notes": []}))
    rows = table.set_index("key")
    for entry in picked:
        folder = run_dir / "selected" / entry["label"]
        folder.mkdir()
        if entry["label"] != "edge":
            (folder / "metrics.json").write_text(json.dumps(metrics(entry, rows.loc[entry["key"]], remeasured)))
        if entry["label"] in ("small", "large"):
            (folder / "model.onnx").write_bytes(b"onnx")
    return picked


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    run_dir = tmp_path_factory.mktemp("three")
    picked = write_run(run_dir)
    return write_report(run_dir), picked


def test_each_pick_shows_its_skeleton_its_place_and_its_model(three: tuple[Path, list[dict]]) -> None:
    path, picked = three
    assert [(entry["label"], entry["key"]) for entry in picked] == [
        ("small", "xlarge:0-0-0"), ("large", "xlarge:2-2-2"), ("edge", "small:3-3-3"), ("xlarge", "xlarge:3-3-3")]
    rows = [[html.unescape(cell) for cell in row] for row in table_rows(path.read_text(), "Picked networks")]
    assert [row[:3] for row in rows] == [
        ["small", "xlarge", "nearest 0 % of the front's latency range (2.00 ms)"],
        ["large", "xlarge", "nearest 33 % of the front's latency range (3.32 ms)"],
        ["edge", "small", "≤ 5 ms budget"],
        ["xlarge", "xlarge", "nearest 100 % of the front's latency range (6.00 ms)"]]
    assert rows[1][3:] == ["3.57", "3.64", "0.5200", "0.6200", "selected/large/model.onnx"]
    assert [row[-1] for row in rows] == ["selected/small/model.onnx", "selected/large/model.onnx",
                                         "not retrained yet", "not exported (retrain.export off)"]
    assert "small (xlarge skeleton), large (xlarge skeleton), edge (small skeleton; not retrained), xlarge (xlarge " \
           "skeleton)" in path.read_text()


def test_the_front_is_a_table_naming_the_picks(three: tuple[Path, list[dict]]) -> None:
    path, _ = three
    rows = table_rows(path.read_text(), "Pareto front")
    assert [row[:4] for row in rows] == [[key, key.split(":")[0], f"{miou:.4f}", f"{ms:.2f}"]
                                         for key, miou, ms in FRONT]
    assert rows[2][4:] == ["3.39 [3.03, 3.75]", "357 M", "500 k", "large"]
    assert [row[-1] for row in rows] == ["small", "—", "large", "edge", "xlarge"]
    header = re.findall(r"<th>(.*?)</th>", section(path.read_text(), "Pareto front"))
    assert header[3] == "measured min ms"


def test_the_trade_off_names_everything_in_its_legend(three: tuple[Path, list[dict]]) -> None:
    path, _ = three
    data, layout = figure(path.read_text(), "search-trade-off")
    assert not [item["name"] for item in data if "text" in item.get("mode", "")]  # no label written over a point
    assert [note["text"] for note in layout.get("annotations", []) if note["text"]] == []
    names = [item["name"] for item in data if item.get("showlegend", True)]
    assert names[-4:] == ["pick small (xlarge skeleton): nearest 0 % of range",
                          "pick large (xlarge skeleton): nearest 33 % of range",
                          "pick edge (small skeleton): ≤ 5 ms, not retrained",
                          "pick xlarge (xlarge skeleton): nearest 100 % of range"]
    searched, retrained = traces(data, names[-3])
    assert (searched["x"], retrained["x"]) == ([3.57], [3.57 * 1.02])  # the min: the run's latency.statistic
    lines = [(round(shape["x0"], 2), shape["line"]["dash"]) for shape in layout["shapes"]]
    assert lines == [(2.0, "dot"), (3.32, "dot"), (5.0, "dash"), (6.0, "dot")]


def test_the_summary_names_the_device_as_recorded(three: tuple[Path, list[dict]], tmp_path: Path) -> None:
    path, _ = three
    rows = dict(table_rows(path.read_text(), "Summary"))
    assert rows["latency measured on"] == "device agent at http://10.0.0.7:8765"  # the measurements' own record
    assert rows["device"] == "Xavier (host xavier-01)"
    assert rows["backend"] == "tensorrt-fp16 8.5.2.2" and rows["threads, precision"] == "1, fp16"

    write_run(tmp_path, remeasured=False)
    rows = dict(table_rows(write_report(tmp_path).read_text(), "Summary"))
    assert rows["latency measured on"] == "device agent at http://127.0.0.1:8765"  # config.yaml's
    assert rows["device"].startswith("not recorded in the run: no pick was re-measured")
    assert rows["backend"] == "tensorrt-fp16 (version not recorded in the run)"


def test_class_colours_colour_the_per_class_iou(three: tuple[Path, list[dict]]) -> None:
    path, _ = three
    data, layout = figure(path.read_text(), "per-class-iou")
    assert [bars["marker"]["color"] for bars in data] == [["rgb(128, 64, 128)", "rgb(70, 130, 180)"]] * 3
    assert [bars["marker"]["pattern"]["shape"] for bars in data] == ["", "/", "x"]  # by place: edge has no IoU
    assert data[1]["name"] == "pick large (xlarge skeleton): nearest 33 % of range (striped bars)"
    assert layout["xaxis"]["ticktext"] == ['<span style="color:rgb(128, 64, 128)">■</span> road',
                                           '<span style="color:rgb(70, 130, 180)">■</span> sky']


def test_nothing_is_wider_than_a_1400_px_window(three: tuple[Path, list[dict]]) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is absent (Debian chromium is needed for the browser test)")
    path, _ = three
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(path.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2", timeout=15000)
        fits = page.evaluate(OVERFLOWING)
        page.evaluate("document.body.insertAdjacentHTML('beforeend', '<h2>Wide</h2><div class=\"table\"><table><tr>"
                      "<td style=\"white-space: nowrap\">' + 'x'.repeat(400) + '</td></tr></table></div>')")
        wide = page.evaluate(OVERFLOWING)
        browser.close()
    assert fits == []
    assert wide and all(line.startswith("Wide: table") for line in wide)  # what a scroll bar hides and what spills
