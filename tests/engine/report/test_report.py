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

from engine.report.load import RENAMED
from engine.report.page import OVERFLOWING, write_report
from engine.search.fronts import minimised, pareto_mask
from tests.engine.report.pages import figure, table_rows, trace, values

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

COLUMNS = ["trial", "strategy", "generation", "round", "lambda", "key", "miou", "latency_ms", "latency_source",
           "predicted_ms", "latency_lower_ms", "latency_upper_ms", "measured_ms", "measured_p90_ms",
           "predicted_before_ms", "macs", "params", "feasible", "front"]
ROUND_COLUMNS = ["round", "phase", "generation", "evaluated", "measured", "mape", "within_10", "kendall_tau",
                 "coverage", "nominal_coverage", "front_size", "front_unmeasured", "measured_total"]
MEASUREMENT_COLUMNS = ["round", "key", "measured_ms", "measured_p90_ms", "predicted_before_ms", "lower_ms", "upper_ms",
                       "cv"]
PER_ROUND = 4  # search.measure_per_round of the made-up runs


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


def subnets(rng: np.random.Generator, count: int, generations: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Evaluated subnets at their predicted latency (none measured yet) and each one's latency on the device."""
    keys: list[str] = []
    while len(keys) < count:
        key = "small:" + "-".join(map(str, rng.integers(0, 13, size=10)))
        keys += [key] if key not in keys else []
    generation = np.repeat(np.arange(generations), count // generations)
    device = rng.uniform(5, 40, count)
    predicted = device * (1 + rng.normal(0, 0.08, count))
    miou = 0.25 + 0.35 * (1 - np.exp(-device / 12)) + 0.03 * generation + rng.normal(0, 0.03, count)
    table = pd.DataFrame({
        "trial": np.arange(count), "strategy": "evolution", "generation": generation, "round": generation + 1,
        "lambda": np.nan, "key": keys, "miou": miou, "latency_ms": predicted, "latency_source": "predicted",
        "predicted_ms": predicted, "latency_lower_ms": predicted * 0.92, "latency_upper_ms": predicted * 1.08,
        "measured_ms": np.nan, "measured_p90_ms": np.nan, "predicted_before_ms": np.nan,
        "macs": (device * 1e8).astype(int), "params": rng.integers(300_000, 3_000_000, count), "feasible": True,
        "front": False})
    return table, device


def measure(table: pd.DataFrame, rows: pd.Index, device: np.ndarray, before: np.ndarray | None) -> None:
    """The rows' latency becomes their measurement (`before`: the prediction the search had just before)."""
    at = table.index.get_indexer(rows)
    table.loc[rows, ["latency_ms", "measured_ms", "measured_p90_ms"]] = np.stack(
        [device[at], device[at], device[at] * 1.08], axis=1)
    table.loc[rows, "latency_source"] = "measured"
    if before is not None:
        table.loc[rows, "predicted_before_ms"] = before[at]
    table["feasible"] = table.latency_ms < 38


def accuracy_before(measured: np.ndarray, before: np.ndarray) -> dict:
    """The round's out-of-sample accuracy, as engine/search/rounds.py records it (interval ±10 % of `before`)."""
    relative = np.abs(before - measured) / measured
    tau = pd.Series(measured).corr(pd.Series(before), method="kendall") if len(measured) > 1 else np.nan
    inside = (before * 0.9 <= measured) & (measured <= before * 1.1)
    return {"mape": 100 * relative.mean(), "within_10": 100 * (relative <= 0.1).mean(), "kendall_tau": tau,
            "coverage": 100 * inside.mean(), "nominal_coverage": 90}


def unmeasured_front(table: pd.DataFrame, seen: pd.Series) -> pd.Index:
    """The front points of the `seen` rows whose latency is predicted, by latency."""
    rows = table[seen]
    front = rows[non_dominated(rows)]
    return front[front.latency_source == "predicted"].sort_values("latency_ms").index


def measuring_round(table: pd.DataFrame, seen: pd.Series, phase: str, generation: int | None, device: np.ndarray,
                    before: np.ndarray, history: dict, limit: int) -> None:
    """Measure the unmeasured front points of the `seen` rows (by latency, at most PER_ROUND, within `limit`),
    recording the round and its measurements in `history`."""
    todo = unmeasured_front(table, seen)[:min(PER_ROUND, limit - len(history["measurements"]))]
    number = len(history["rounds"]) + 1
    at = table.index.get_indexer(todo)
    record = {"round": number, "phase": phase, "generation": generation, "evaluated": int(seen.sum()),
              "measured": len(todo), **accuracy_before(device[at], before[at])}
    history["measurements"] += [
        {"round": number, "key": table.key[row], "measured_ms": device[i], "measured_p90_ms": device[i] * 1.08,
         "predicted_before_ms": before[i], "lower_ms": before[i] * 0.9, "upper_ms": before[i] * 1.1, "cv": 0.02}
        for row, i in zip(todo, at)]
    measure(table, todo, device, before)
    after = table[seen][non_dominated(table[seen])]
    record.update(front_size=len(after), front_unmeasured=int((after.latency_source == "predicted").sum()),
                  measured_total=len(history["measurements"]))
    history["rounds"].append(record)


def evaluations(rng: np.random.Generator, count: int = 60, generations: int = 3, limit: int = 1000) -> tuple[
        pd.DataFrame, dict]:
    """Every evaluated subnet as the search stage writes it, and its measuring history (rounds and measurements):
    a few measured by the latency stage, a round after each generation but the last, then closing rounds until the
    front is measured or `limit` measurements are spent."""
    table, device = subnets(rng, count, generations)
    before = table.predicted_ms.to_numpy() * (1 + rng.normal(0, 0.05, count))
    measure(table, table.index[rng.choice(count, 4, replace=False)], device, before=None)  # the latency stage's
    history: dict = {"rounds": [], "measurements": []}
    for generation in range(generations - 1):
        measuring_round(table, table.generation <= generation, "search", generation, device, before, history, limit)
    everything = pd.Series(True, index=table.index)
    while len(unmeasured_front(table, everything)) and len(history["measurements"]) < limit:
        measuring_round(table, everything, "closing", None, device, before, history, limit)
    table["front"] = non_dominated(table)
    return table[COLUMNS], history


def pick(front: pd.DataFrame, label: str, budget: float | None, rng: np.random.Generator) -> dict:
    """A picked front point's metrics.json (picked by measured latency), re-measured under a budget."""
    row = front[front.latency_ms <= budget].iloc[-1] if budget is not None else front.iloc[len(front) // 2]
    iou = [float(v) for v in rng.uniform(0.2, 0.95, len(CLASS_NAMES))]
    iou[3] = None
    remeasured = {"median_ms": row.latency_ms * 1.05, "p90_ms": row.latency_ms * 1.12,
                  "mean_ms": row.latency_ms * 1.06, "cv": 0.03, "runs": 50}
    return {"label": label, "key": row.key, "budget_ms": budget, "predicted_ms": row.predicted_ms,
            "latency_lower_ms": row.latency_lower_ms, "latency_upper_ms": row.latency_upper_ms,
            "measured_ms": None if pd.isna(row.measured_ms) else row.measured_ms,
            "miou": row.miou, "retrained_miou": row.miou + 0.05, "iou": iou, "class_names": CLASS_NAMES,
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


def write_search(run_dir: Path, rng: np.random.Generator, limit: int = 1000, rounds: bool = True) -> pd.DataFrame:
    """evaluations.csv, front.csv and search_cost.json, with `rounds` search/rounds.csv and search/measurements.csv
    (without them: a run made before the search measured); returns the front."""
    run_dir.mkdir(parents=True, exist_ok=True)
    table, history = evaluations(rng, limit=limit)
    front = table[table.front].sort_values("latency_ms")
    table.to_csv(run_dir / "evaluations.csv", index=False)
    front.to_csv(run_dir / "front.csv", index=False)
    if rounds:
        (run_dir / "search").mkdir()
        pd.DataFrame(history["rounds"], columns=ROUND_COLUMNS).to_csv(run_dir / "search" / "rounds.csv", index=False)
        pd.DataFrame(history["measurements"], columns=MEASUREMENT_COLUMNS).to_csv(
            run_dir / "search" / "measurements.csv", index=False)
    spent = len(history["measurements"])
    measuring = {"limit": limit, "front_size": len(front),
                 "front_unmeasured": int((front.latency_source == "predicted").sum()), "measured_total": spent}
    cost = {"device": "cpu", "threads": 2, "evolution": {"supernet_s": 50.0, "search_s": 30.0, "total_s": 80.0}}
    (run_dir / "search_cost.json").write_text(json.dumps({**cost, **({"measuring": measuring} if rounds else {})}))
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
        "search-trade-off", "latency-predictor", "latency-predictor-in-the-search-loop", "hypervolume",
        "per-class-iou"]


def test_a_run_written_with_the_old_names_gives_the_same_report(tmp_path: Path) -> None:
    """metrics.json, search_cost.json and evaluations.csv as runs made before the renaming wrote them."""
    write_run(tmp_path)
    first = write_report(tmp_path).read_bytes()
    old = {new: name for name, new in RENAMED.items()}
    for path in (tmp_path / "selected").glob("*/metrics.json"):
        path.write_text(json.dumps({old.get(name, name): value for name, value in json.loads(path.read_text()).items()}))
    cost = json.loads((tmp_path / "search_cost.json").read_text())
    (tmp_path / "search_cost.json").write_text(json.dumps({old.get(name, name): value for name, value in cost.items()}))
    table = pd.read_csv(tmp_path / "evaluations.csv")
    table.assign(strategy=table.strategy.replace(old)).to_csv(tmp_path / "evaluations.csv", index=False)
    assert "inherited_miou" in (tmp_path / "selected" / "small" / "metrics.json").read_text()
    assert write_report(tmp_path).read_bytes() == first


def test_report_with_only_the_search_files(tmp_path: Path) -> None:
    front = write_search(tmp_path, np.random.default_rng(1), rounds=False)
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert all(key in page for key in front.key) and "Pareto front" in page
    for name in ("latency/heldout.csv", "latency/accuracy.json", "search/rounds.csv", "hypervolume.csv",
                 "selected/&lt;label&gt;"):
        assert f"Left out: {name}" in page
    assert 'id="latency-predictor-in-the-search-loop"' not in page


def test_search_loop_section_has_a_row_per_round(report: tuple[Path, pd.DataFrame]) -> None:
    path, front = report
    page = path.read_text(encoding="utf-8")
    rounds = pd.read_csv(path.parent / "search" / "rounds.csv")
    assert len(rounds) == 4 and len(front) == 7 and (front.latency_source == "measured").all()

    rows = table_rows(page, "Latency predictor in the search loop")
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    assert [row[1:3] for row in rows] == [["search", "0"], ["search", "1"], ["closing", "after the search"],
                                          ["closing", "after the search"]]
    first = rounds.iloc[0]
    assert rows[0][3:] == ["20", "4", f"{first.mape:.2f} %", f"{first.within_10:.1f} %", f"{first.kendall_tau:.3f}",
                           f"{first.coverage:.1f} % / 90 %", str(first.front_size), str(first.front_unmeasured), "4"]
    assert rows[-1][7] == "—"  # Kendall tau of a round that measured one subnet
    assert "<p>All 7 front points are measured. The search measured 13 subnets (limit 1000).</p>" in page
    assert ["front size", "7 (7 measured)"] in table_rows(page, "Summary")
    assert ["measured by the search", "13 in 4 rounds (limit 1000)"] in table_rows(page, "Summary")

    data, _ = figure(page, "latency-predictor-in-the-search-loop")
    assert [item["name"] for item in data] == ["MAPE", "within ±10 %", "interval coverage", "nominal coverage"]
    assert values(trace(data, "MAPE")["y"]) == pytest.approx(rounds.mape.tolist())
    assert values(trace(data, "nominal coverage")["y"]) == [90.0] * 4


def test_measurements_taken_twice_are_counted(tmp_path: Path) -> None:
    write_search(tmp_path, np.random.default_rng(0))
    cost = json.loads((tmp_path / "search_cost.json").read_text())
    cost["measuring"]["measured_twice"] = 2
    (tmp_path / "search_cost.json").write_text(json.dumps(cost))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert ("The search measured 13 subnets (limit 1000). 2 of them twice: their first measurement lay above the "
            "prediction interval, the lower of the two is kept (search.recheck).</p>") in page


def test_a_spent_measuring_limit_leaves_front_points_predicted(tmp_path: Path) -> None:
    front = write_search(tmp_path, np.random.default_rng(1), limit=10)
    page = write_report(tmp_path).read_text(encoding="utf-8")
    measured = front.latency_source == "measured"
    assert (len(front), int(measured.sum())) == (11, 7)

    assert ("7 of the 11 front points are measured: search.measure_limit (10) was spent, the other 4 keep their "
            "predicted latency.") in page
    assert ["front size", "11 (7 measured)"] in table_rows(page, "Summary")
    data, _ = figure(page, "search-trade-off")
    symbols = trace(data, "Pareto front")["marker"]["symbol"]
    assert symbols.count("circle") == 7 and symbols.count("circle-open") == 4
    beside = trace(data, "front: prediction beside measurement")
    assert len(values(beside["x"])) == 7
    assert values(beside["x"]) == pytest.approx(front[measured].predicted_before_ms.fillna(
        front[measured].predicted_ms).tolist())


def test_a_search_without_rounds_says_so(tmp_path: Path) -> None:
    write_search(tmp_path, np.random.default_rng(1))
    pd.DataFrame(columns=ROUND_COLUMNS).to_csv(tmp_path / "search" / "rounds.csv", index=False)
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "The search measured in no round (search/rounds.csv has no rows" in page
    assert "Left out: search/rounds.csv" not in page


def test_released_networks_are_placed_on_the_trade_off_beside_the_front(tmp_path: Path) -> None:
    """Reference rows of evaluations.csv (the released networks) are drawn apart, by name, and tabled against the
    front's best point at their latency or less; they are neither evaluated subnets nor counted as trials."""
    front = write_search(tmp_path, np.random.default_rng(1))
    table = pd.read_csv(tmp_path / "evaluations.csv")
    middle = float(front.latency_ms.median())
    references = pd.DataFrame({
        "key": ["small:1-2-3", "small:4-5-6"], "strategy": "reference", "reference": ["lat_small", "mac_small"],
        "miou": [0.01, 0.99], "latency_ms": [middle, middle + 0.01], "latency_source": "measured",
        "measured_ms": [middle, middle + 0.01], "predicted_ms": [middle, middle], "feasible": True, "front": False})
    pd.concat([table, references], ignore_index=True).to_csv(tmp_path / "evaluations.csv", index=False)
    page = write_report(tmp_path).read_text(encoding="utf-8")
    data, _ = figure(page, "search-trade-off")
    assert [values(trace(data, f"released {name}")["y"]) for name in ("lat_small", "mac_small")] == [[0.01], [0.99]]
    assert not {"small:1-2-3", "small:4-5-6"} & {row[0] for row in trace(data, "evaluated subnets: measured")[
        "customdata"]}
    rows = table_rows(page, "Released networks on the front")
    best = float(front[front.latency_ms <= middle].miou.max())
    assert rows[0][:5] == ["lat_small", "small:1-2-3", f"{middle:.2f} ms (measured)", "0.0100", f"{best:.4f}"]
    assert rows[1][5] == f"{float(front[front.latency_ms <= middle + 0.01].miou.max()) - 0.99:+.4f}"
    trials = dict(row[:2] for row in table_rows(page, "Summary"))["trials (evaluated subnets)"]
    assert trials.startswith(f"{len(table)} over")


def test_report_draws_in_chromium(report: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is absent (Debian chromium is needed for the browser test)")
    path, front = report
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 5", timeout=15000)
        traces = page.evaluate(DRAWN_POINTS)
        graphs = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        overflowing = page.evaluate(OVERFLOWING)
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == [] and overflowing == []  # every table and figure fits a 1400 px window
    assert graphs == 5
    table = pd.read_csv(path.parent / "evaluations.csv")
    measured = table.latency_source == "measured"
    assert {"name": "evaluated subnets: measured", "n": int(measured.sum())} in traces
    assert {"name": "evaluated subnets: predicted only", "n": int((~measured).sum())} in traces
    assert {"name": "Pareto front", "n": len(front)} in traces
    assert [t["n"] for t in traces if t["name"] == "front: prediction beside measurement"] == [0, len(front)]
    png = (tmp_path / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 50_000
