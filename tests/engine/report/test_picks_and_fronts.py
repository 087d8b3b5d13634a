"""What the report draws from small hand-made run directories: picks under any budget label (retrained or not)
and fronts that agree with pymoo's non-dominated sorting over feasible points (ties kept, infeasible left out)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from engine.report.page import write_report
from tests.engine.report.pages import figure, section, table_rows, trace, traces, values

SUBNETS = [  # strategy, key, mIoU, latency ms, feasible, who measured it (search, the latency stage, none)
    ("evolution", "g", 0.40, 5.0, True, "stage"),
    ("evolution", "a", 0.50, 10.0, True, "none"),  # left unmeasured: search.measure_limit spent
    ("evolution", "a-copy", 0.50, 10.0, True, "search"),  # a tie: on the front with its duplicate
    ("evolution", "d", 0.70, 15.0, False, "none"),  # infeasible: would dominate b, c and e
    ("evolution", "b", 0.60, 20.0, True, "search"),
    ("evolution", "c", 0.55, 20.0, True, "none"),  # same latency as b, lower mIoU
    ("evolution", "e", 0.60, 30.0, True, "none"),  # same mIoU as b, higher latency
    ("evolution", "f", 0.65, 40.0, True, "search"),
    ("dnas", "h", 0.68, 25.0, True, "search"),  # dominates e and f
    ("dnas", "i", 0.58, 22.0, True, "none"),  # dominated by b
]
DNAS_SCORED_MS = [26.0, 22.0]  # dnas.csv's latency of h and i, predicted when they were scored (h measured later)


def pymoo_front(table: pd.DataFrame) -> set[str]:
    """Keys of the feasible rows in pymoo's first non-dominated front, objectives (-mIoU, latency)."""
    feasible = table[table.feasible]
    F = np.stack([-feasible.miou.to_numpy(), feasible.latency_ms.to_numpy()], axis=1)
    return set(feasible.key.iloc[NonDominatedSorting().do(F, only_non_dominated_front=True)])


def evaluations() -> pd.DataFrame:
    """The subnets as evaluations.csv holds them: latency_ms measured where measured (then the final prediction is
    5 % under it, the one before measuring 10 % under), predicted otherwise."""
    table = pd.DataFrame(SUBNETS, columns=["strategy", "key", "miou", "latency_ms", "feasible", "measured_by"])
    table.insert(0, "trial", range(len(table)))
    table["generation"] = [0 if strategy == "evolution" else None for strategy in table.strategy]
    measured = table.measured_by != "none"
    table["latency_source"] = np.where(measured, "measured", "predicted")
    table["predicted_ms"] = table.latency_ms.where(~measured, table.latency_ms * 0.95)
    table["latency_lower_ms"], table["latency_upper_ms"] = table.predicted_ms * 0.9, table.predicted_ms * 1.1
    table["measured_ms"] = table.latency_ms.where(measured)
    table["measured_p90_ms"] = table.measured_ms * 1.1
    table["predicted_before_ms"] = (table.latency_ms * 0.9).where(table.measured_by == "search")
    table["macs"], table["params"] = (table.latency_ms * 1e7).astype(int), 1_000_000
    table["front"] = table.key.isin(pymoo_front(table))
    return table.drop(columns="measured_by")


def write_search(run_dir: Path, budgets_ms: dict[str, float]) -> pd.DataFrame:
    """config.yaml, evaluations.csv, front.csv and dnas/dnas.csv of a run; returns the evaluations."""
    table = evaluations()
    config = {"name": "hand_made", "selection": {"budgets_ms": budgets_ms}, "search": {"strategies": ["evolution", "dnas"]}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    table.to_csv(run_dir / "evaluations.csv", index=False)
    table[table.front].sort_values("latency_ms").to_csv(run_dir / "front.csv", index=False)
    dnas = table[table.strategy == "dnas"].assign(**{"lambda": [0.1, 1.0], "latency_ms": DNAS_SCORED_MS,
                                                     "measured_ms": [None, None]})
    (run_dir / "dnas").mkdir()
    dnas[["lambda", "key", "miou", "latency_ms", "measured_ms", "macs"]].to_csv(run_dir / "dnas" / "dnas.csv",
                                                                                 index=False)
    return table


def write_selection(run_dir: Path, picked: list[tuple[str, str, float | None]], retrained: set[str]) -> None:
    """selected/selection.json with `picked` (label, key, budget) and metrics.json for the labels in `retrained`."""
    entries = [{"label": label, "key": key, "budget_ms": budget} for label, key, budget in picked]
    (run_dir / "selected").mkdir()
    (run_dir / "selected" / "selection.json").write_text(json.dumps({"picked": entries, "notes": []}))
    front = pd.read_csv(run_dir / "front.csv").set_index("key")
    for entry in entries:
        if entry["label"] in retrained:
            row = front.loc[entry["key"]]
            metrics = {**entry, "predicted_ms": row.predicted_ms, "latency_lower_ms": row.latency_lower_ms,
                       "latency_upper_ms": row.latency_upper_ms,
                       "measured_ms": None if pd.isna(row.measured_ms) else row.measured_ms,
                       "miou": row.miou,
                       "retrained_miou": row.miou + 0.02, "iou": [0.9, 0.4], "class_names": ["road", "sky"],
                       "measured": {"median_ms": row.latency_ms * 1.1, "p90_ms": row.latency_ms * 1.2,
                                    "min_ms": row.latency_ms * 0.9}}
            (run_dir / "selected" / entry["label"]).mkdir()
            (run_dir / "selected" / entry["label"] / "metrics.json").write_text(json.dumps(metrics))


def test_picks_under_any_label_appear_retrained_or_not(tmp_path: Path) -> None:
    write_search(tmp_path, {"fast": 1000.0, "edge-1": 12.0})
    write_selection(tmp_path, [("edge-1", "a", 12.0), ("fast", "b", 1000.0), ("knee", "a-copy", None)],
                    retrained={"fast"})
    page = write_report(tmp_path).read_text(encoding="utf-8")

    header = re.findall(r"<th>(.*?)</th>", section(page, "Picked networks"))
    assert header == ["pick", "skeleton", "placed by", "search: measured ms", "retrain re-measurement: median ms",
                      "inherited mIoU", "retrained mIoU", "model.onnx (in the run directory)"]
    edge, fast, knee = table_rows(page, "Picked networks")
    assert edge == ["edge-1", "—", "≤ 12 ms budget", "not measured", "—", "0.5000", "not retrained",
                    "not retrained yet"]
    assert fast == ["fast", "—", "≤ 1000 ms budget", "20.00", "22.00", "0.6000", "0.6200",
                    "not exported (retrain.export off)"]
    assert knee[:4] == ["knee", "—", "knee of the front", "10.00"]
    details = table_rows(page, "Picked networks: genotypes and costs")
    assert [row[:4] for row in details] == [["edge-1", "a", "10.00 [9.00, 11.00]", "—"],
                                            ["fast", "b", "19.00 [17.10, 20.90]", "24.00"],
                                            ["knee", "a-copy", "9.50 [8.55, 10.45]", "—"]]

    data, layout = figure(page, "search-trade-off")
    assert trace(data, "pick edge-1: ≤ 12 ms, not retrained")["x"] == [10.0]
    searched, remeasured = traces(data, "pick fast: ≤ 1000 ms")
    assert searched["x"] == [20.0] and searched["showlegend"] and searched["marker"]["symbol"] == "star"
    assert remeasured["x"] == [22.0] and not remeasured["showlegend"] and remeasured["marker"]["symbol"] == "star-open"
    assert trace(data, "pick knee: knee, not retrained")["x"] == [10.0]
    lines = [(shape["x0"], shape["line"]["dash"], shape["legendgroup"]) for shape in layout["shapes"]]
    assert lines == [(12.0, "dash", "pick edge-1: ≤ 12 ms, not retrained"), (1000.0, "dash", "pick fast: ≤ 1000 ms")]
    assert [note["text"] for note in layout.get("annotations", []) if note["text"]] == []  # both budgets met
    iou, _ = figure(page, "per-class-iou")
    assert [(bars["name"], bars["marker"]["color"]) for bars in iou] == [("pick fast: ≤ 1000 ms", "#9467bd")]
    assert searched["marker"]["color"] == "#9467bd"  # the pick's colour in both figures
    assert "edge-1 (not retrained), fast, knee (not retrained)" in page


def test_a_budget_no_front_point_meets_is_drawn_and_named(tmp_path: Path) -> None:
    write_search(tmp_path, {"tiny": 1.0, "tinier": 0.5, "fast": 1000.0})
    write_selection(tmp_path, [("fast", "b", 1000.0)], retrained=set())
    _, layout = figure(write_report(tmp_path).read_text(encoding="utf-8"), "search-trade-off")
    notes = [(note["text"], note["y"]) for note in layout["annotations"] if note["text"]]
    assert notes == [("tinier ≤ 0.5 ms: no front point within", 1.0), ("tiny ≤ 1 ms: no front point within", 0.94)]


def test_a_pick_under_several_seeds_shows_their_spread_and_a_span_budget_its_place(tmp_path: Path) -> None:
    write_search(tmp_path, {})
    write_selection(tmp_path, [("fastest", "g", 5.0)], retrained={"fastest"})
    selection = json.loads((tmp_path / "selected" / "selection.json").read_text())
    selection["picked"][0]["budget_span"] = 0.0
    (tmp_path / "selected" / "selection.json").write_text(json.dumps(selection))
    metrics_path = tmp_path / "selected" / "fastest" / "metrics.json"
    metrics = {**json.loads(metrics_path.read_text()), "budget_span": 0.0, "retrained_miou": 0.42,
               "retrained_miou_per_seed": [0.41, 0.43], "retrained_miou_std": 0.0141}
    metrics_path.write_text(json.dumps(metrics))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    row = table_rows(page, "Picked networks")[0]
    assert html.unescape(row[2]) == "nearest 0 % of the front's latency range (5.00 ms)"
    assert row[6] == "0.4200 ± 0.0141 (2 seeds)"
    data, layout = figure(page, "search-trade-off")
    _, after = traces(data, "pick fastest: nearest 0 % of range")
    assert after["y"] == [0.42] and after["error_y"]["array"] == [0.0141]
    assert [(shape["x0"], shape["line"]["dash"]) for shape in layout["shapes"]] == [(5.0, "dot")]


def test_a_pick_s_re_measurement_is_the_run_s_latency_statistic(tmp_path: Path) -> None:
    write_search(tmp_path, {"fast": 1000.0})
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, "latency": {"statistic": "min"}}))
    write_selection(tmp_path, [("fast", "b", 1000.0)], retrained={"fast"})
    page = write_report(tmp_path).read_text(encoding="utf-8")
    header = re.findall(r"<th>(.*?)</th>", section(page, "Picked networks"))
    assert header[4] == "retrain re-measurement: min ms"
    assert table_rows(page, "Picked networks")[0][4] == "18.00"  # 0.9 x 20 ms, not the median's 22.00
    data, _ = figure(page, "search-trade-off")
    assert traces(data, "pick fast: ≤ 1000 ms")[1]["x"] == [18.0]
    # config.yaml is the latest invocation's; the search's record says what its front and picks were measured by
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "search.json").write_text(json.dumps({"settings": {"latency.statistic": "median"}}))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert re.findall(r"<th>(.*?)</th>", section(page, "Picked networks"))[4] == "retrain re-measurement: median ms"
    assert table_rows(page, "Picked networks")[0][4] == "22.00"
    # by the p90, the column beside it is the median (not a second p90 column)
    (tmp_path / "stages" / "search.json").write_text(json.dumps({"settings": {"latency.statistic": "p90"}}))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert re.findall(r"<th>(.*?)</th>", section(page, "Picked networks"))[4] == "retrain re-measurement: p90 ms"
    assert re.findall(r"<th>(.*?)</th>", section(page, "Picked networks: genotypes and costs"))[3] == (
        "retrain re-measurement: median ms")
    assert table_rows(page, "Picked networks")[0][4] == "24.00"
    assert table_rows(page, "Picked networks: genotypes and costs")[0][3] == "22.00"


def test_fronts_agree_with_pymoo_with_ties_and_an_infeasible_point(tmp_path: Path) -> None:
    table = write_search(tmp_path, {})
    page = write_report(tmp_path).read_text(encoding="utf-8")
    joint, evolution = pymoo_front(table), pymoo_front(table[table.strategy == "evolution"])
    assert joint == {"g", "a", "a-copy", "b", "h"} and evolution == {"g", "a", "a-copy", "b", "f"}

    tradeoff, _ = figure(page, "search-trade-off")
    assert [row[0] for row in trace(tradeoff, "Pareto front")["customdata"]] == ["g", "a", "a-copy", "b", "h"]
    strategies, _ = figure(page, "search-strategies-evolution-and-dnas")
    assert {row[0] for row in trace(strategies, "evolution front")["customdata"]} == evolution
    assert ("On inherited mIoU and latency (measured where measured, predicted otherwise), the evolution's front dominates "
            "1 of the 2 DNAS genotypes; DNAS genotypes dominate 1 of its 5 points" in page)


def test_measured_points_are_filled_and_predicted_ones_hollow(tmp_path: Path) -> None:
    write_search(tmp_path, {})
    data, layout = figure(write_report(tmp_path).read_text(encoding="utf-8"), "search-trade-off")

    front = trace(data, "Pareto front")
    assert [row[0] for row in front["customdata"]] == ["g", "a", "a-copy", "b", "h"]
    assert front["marker"]["symbol"] == ["circle", "circle-open", "circle", "circle", "circle"]
    assert front["customdata"][1][3].startswith("predicted") and front["customdata"][3][3].startswith("measured")
    measured, predicted = (trace(data, f"evaluated subnets: {name}") for name in ("measured", "predicted only"))
    assert [row[0] for row in measured["customdata"]] == ["g", "a-copy", "b", "f"]
    assert set(measured["marker"]["symbol"]) == {"circle"}
    assert [row[0] for row in predicted["customdata"]] == ["a", "d", "c", "e"]
    assert predicted["marker"]["symbol"] == ["circle-open", "x-open", "circle-open", "circle-open"]
    assert [measured["marker"]["showscale"], predicted["marker"]["showscale"]] == [True, False]
    assert values(trace(data, "DNAS genotype per λ (search latency)")["x"]) == [25.0, 22.0]  # h measured after scoring
    assert "measured" in layout["xaxis"]["title"]["text"] and "measured" in layout["title"]["text"]


def test_each_measured_front_point_has_its_prediction_beside_it(tmp_path: Path) -> None:
    write_search(tmp_path, {})
    data, _ = figure(write_report(tmp_path).read_text(encoding="utf-8"), "search-trade-off")

    lines, markers = traces(data, "front: prediction beside measurement")
    # g was measured by the latency stage: beside it the final prediction
    assert values(markers["x"]) == pytest.approx([4.75, 9.0, 18.0, 22.5])
    assert values(markers["y"]) == [0.40, 0.50, 0.60, 0.68]
    assert lines["mode"] == "lines" and lines["x"] == pytest.approx(
        [4.75, 5.0, None, 9.0, 10.0, None, 18.0, 20.0, None, 22.5, 25.0, None])
    g, _, b, _ = markers["text"]
    assert "measured median 5.00 ms" in g and "latency stage" in g and "final predictor 4.75 ms" in g
    assert "measured median 20.00 ms (p90 22.00 ms)" in b and "predicted before measuring 18.00 ms" in b
    assert "final predictor 19.00 ms, 90 % interval [17.10, 20.90] ms" in b


def test_a_front_point_measured_twice_says_so_beside_its_prediction(tmp_path: Path) -> None:
    write_search(tmp_path, {})
    (tmp_path / "search").mkdir()
    pd.DataFrame({"round": [1, 1], "key": ["a-copy", "b"], "measured_ms": [10.0, 20.0], "lower_ms": [8.0, 16.0],
                  "upper_ms": [10.5, 21.0], "first_ms": [None, 31.5]}).to_csv(tmp_path / "search" / "measurements.csv",
                                                                             index=False)
    data, _ = figure(write_report(tmp_path).read_text(encoding="utf-8"), "search-trade-off")

    _, markers = traces(data, "front: prediction beside measurement")
    g, a, b, _ = markers["text"]
    assert "measured twice, first 31.50 ms (above its interval): the lower kept" in b
    assert "90 % interval [16.00, 21.00] ms" in b and "measured twice" not in a + g


def test_a_p90_search_s_measurement_is_named_once(tmp_path: Path) -> None:
    write_search(tmp_path, {})
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "search.json").write_text(json.dumps({"settings": {"latency.statistic": "p90"}}))
    data, _ = figure(write_report(tmp_path).read_text(encoding="utf-8"), "search-trade-off")

    _, markers = traces(data, "front: prediction beside measurement")
    b = markers["text"][2]
    assert "measured p90 20.00 ms<br>" in b and b.count("p90") == 1
