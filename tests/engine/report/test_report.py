"""The run report: a self-contained page from a run directory, drawn without errors in headless Chromium.

The run directory is test input made here with a seeded RNG (schema-correct files, made-up numbers).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from engine.report.page import write_report
from engine.search.fronts import minimised, pareto_mask

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CLASS_NAMES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
               "vegetation", "terrain", "sky", "rider & bike"]
DRAWN_POINTS = """(() => {
    const graph = document.querySelectorAll('.js-plotly-plot')[0];
    const layers = [...graph.querySelectorAll('.scatterlayer .trace')];
    return graph.data.map((trace, i) => ({name: trace.name, n: layers[i].querySelectorAll('.point').length}));
})()"""  # name and number of drawn markers of each trace of the first graph
BUDGETS = {"small": 12.0, "large": 25.0, "knee": None}  # as selection.json lists them; knee has no budget
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
COLUMNS = ["trial", "generation", "key", "miou", "latency_ms", "latency_lower_ms", "latency_upper_ms", "macs",
           "params", "feasible", "front"]


def non_dominated(table: pd.DataFrame) -> pd.Series:
    """True for the feasible rows no other feasible row dominates, as the search stage marks them."""
    feasible = table[table.feasible]
    keep = pd.Series(False, index=table.index)
    keep[feasible.index[pareto_mask(minimised(feasible.miou, feasible.latency_ms))]] = True
    return keep


def hypervolume(table: pd.DataFrame, reference_ms: float = 50.0) -> float:
    """Area dominated by the front up to (reference_ms, mIoU 0)."""
    front = table[non_dominated(table)].sort_values("latency_ms")
    edges = [*front["latency_ms"].tolist()[1:], reference_ms]
    return float(sum((edge - lat) * miou for lat, miou, edge in zip(front["latency_ms"], front["miou"], edges)))


def evaluations(rng: np.random.Generator, count: int = 60, generations: int = 3) -> pd.DataFrame:
    keys: list[str] = []
    while len(keys) < count:
        key = "small:" + "-".join(map(str, rng.integers(0, 13, size=10)))
        keys += [key] if key not in keys else []
    generation = np.repeat(np.arange(generations), count // generations)
    latency = rng.uniform(5, 40, count)
    miou = 0.25 + 0.35 * (1 - np.exp(-latency / 12)) + 0.03 * generation + rng.normal(0, 0.03, count)
    table = pd.DataFrame({
        "trial": np.arange(count), "generation": generation, "key": keys, "miou": miou, "latency_ms": latency,
        "latency_lower_ms": latency * 0.92, "latency_upper_ms": latency * 1.08, "macs": (latency * 1e8).astype(int),
        "params": rng.integers(300_000, 3_000_000, count), "feasible": latency < 38, "front": False})
    table["front"] = non_dominated(table)
    return table[COLUMNS]


def pick(front: pd.DataFrame, label: str, budget: float | None, rng: np.random.Generator) -> dict:
    row = front[front.latency_ms <= budget].iloc[-1] if budget is not None else front.iloc[len(front) // 2]
    iou = [float(v) for v in rng.uniform(0.2, 0.95, len(CLASS_NAMES))]
    iou[3] = None
    remeasured = {"median_ms": row.latency_ms * 1.05, "p90_ms": row.latency_ms * 1.12,
                  "mean_ms": row.latency_ms * 1.06, "cv": 0.03, "runs": 50}
    return {"label": label, "key": row.key, "budget_ms": budget, "predicted_ms": row.latency_ms,
            "predicted_lower_ms": row.latency_lower_ms, "predicted_upper_ms": row.latency_upper_ms,
            "inherited_miou": row.miou, "retrained_miou": row.miou + 0.05, "iou": iou, "class_names": CLASS_NAMES,
            "measured": remeasured if budget is not None else None, "onnx_max_abs_diff": 3.1e-6,
            "macs": int(row.macs), "params": int(row.params)}


def heldout(rng: np.random.Generator, count: int = 30) -> pd.DataFrame:
    measured = rng.uniform(5, 40, count)
    predicted = measured * (1 + rng.normal(0, 0.06, count))
    return pd.DataFrame({"key": [f"small:{i}-0-0" for i in range(count)], "measured_ms": measured,
                         "predicted_ms": predicted, "lower_ms": predicted * 0.9, "upper_ms": predicted * 1.1})


def accuracy(table: pd.DataFrame) -> dict:
    error = (table.predicted_ms - table.measured_ms) / table.measured_ms
    return {"count": len(table), "mape": float(100 * error.abs().mean()),
            "rmse": float(np.sqrt(((table.predicted_ms - table.measured_ms) ** 2).mean())),
            "within_5": float(100 * (error.abs() <= 0.05).mean()),
            "within_10": float(100 * (error.abs() <= 0.1).mean()),
            "kendall_tau": float(table.measured_ms.corr(table.predicted_ms, method="kendall")),
            "spearman_rho": float(table.measured_ms.corr(table.predicted_ms, method="spearman"))}


def write_search(run_dir: Path, rng: np.random.Generator) -> pd.DataFrame:
    """evaluations.csv and front.csv; returns the front."""
    run_dir.mkdir(parents=True, exist_ok=True)
    table = evaluations(rng)
    front = table[table.front].sort_values("latency_ms")
    table.to_csv(run_dir / "evaluations.csv", index=False)
    front.to_csv(run_dir / "front.csv", index=False)
    return front


def write_run(run_dir: Path) -> pd.DataFrame:
    """A whole run directory as the stages write it; returns the front."""
    rng = np.random.default_rng(0)
    front = write_search(run_dir, rng)
    config = {"name": "report_demo", "space": {"skeleton": "small", "width": 0.5, "input_size": [128, 256]},
              "data": {"kind": "synthetic"}, "latency": {"device": "cpu", "backend": "onnxruntime"},
              "selection": {"budgets_ms": {label: budget for label, budget in BUDGETS.items() if budget}}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    table = pd.read_csv(run_dir / "evaluations.csv")
    hv = [{"generation": g, "evaluations": int((table.generation <= g).sum()),
           "hypervolume": hypervolume(table[table.generation <= g])} for g in range(3)]
    pd.DataFrame(hv).to_csv(run_dir / "hypervolume.csv", index=False)
    (run_dir / "latency").mkdir()
    held = heldout(rng)
    held.to_csv(run_dir / "latency" / "heldout.csv", index=False)
    (run_dir / "latency" / "accuracy.json").write_text(json.dumps(accuracy(held)))
    picks = [pick(front, label, budget, rng) for label, budget in BUDGETS.items()]
    for record in picks:
        (run_dir / "selected" / record["label"]).mkdir(parents=True)
        (run_dir / "selected" / record["label"] / "metrics.json").write_text(json.dumps(record))
    selection = [{"label": p["label"], "key": p["key"], "budget_ms": p["budget_ms"]} for p in picks]
    (run_dir / "selected" / "selection.json").write_text(json.dumps({"picked": selection, "notes": []}))
    return front


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    run_dir = tmp_path_factory.mktemp("run")
    front = write_run(run_dir)
    return write_report(run_dir), front


def test_report_is_self_contained(report: tuple[Path, pd.DataFrame]) -> None:
    path, front = report
    page = path.read_text(encoding="utf-8")
    assert path.name == "report.html"
    assert page.count("plotly.js v") == 1 and '<script src="http' not in page
    assert all(key in page for key in front.key)
    assert "report_demo" in page and "onnxruntime" in page and "rider &amp; bike" in page
    assert 'class="note"' not in page


def test_the_same_files_give_the_same_bytes(tmp_path: Path) -> None:
    write_run(tmp_path)
    first = write_report(tmp_path).read_bytes()
    rewrite = f"from engine.report import write_report; write_report({str(tmp_path)!r})"
    subprocess.run([sys.executable, "-c", rewrite], cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "123"}, check=True)
    assert (tmp_path / "report.html").read_bytes() == first  # another process, another hash seed
    assert write_report(tmp_path).read_bytes() == first
    page = first.decode("utf-8")
    assert UUID.search(page) is None
    assert re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', page) == [
        "search-trade-off", "latency-predictor", "hypervolume", "per-class-iou"]


def test_report_with_only_the_search_files(tmp_path: Path) -> None:
    front = write_search(tmp_path, np.random.default_rng(1))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert all(key in page for key in front.key) and "Pareto front" in page
    for name in ("latency/heldout.csv", "latency/accuracy.json", "hypervolume.csv", "selected/&lt;label&gt;"):
        assert f"Left out: {name}" in page


def test_report_draws_in_chromium(report: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is absent (Debian chromium is needed for the browser test)")
    path, front = report
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4", timeout=15000)
        traces = page.evaluate(DRAWN_POINTS)
        graphs = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert graphs == 4
    assert {"name": "Pareto front", "n": len(front)} in traces
    png = (tmp_path / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 50_000
