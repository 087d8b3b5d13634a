"""What the report draws from small hand-made run directories: picks under any budget label (retrained or not)
and fronts that agree with pymoo's non-dominated sorting over feasible points (ties kept, infeasible left out)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from engine.report.page import write_report

SUBNETS = [  # strategy, key, mIoU, latency ms, feasible
    ("nsga2", "g", 0.40, 5.0, True),
    ("nsga2", "a", 0.50, 10.0, True),
    ("nsga2", "a-copy", 0.50, 10.0, True),  # a tie: on the front with its twin
    ("nsga2", "d", 0.70, 15.0, False),  # infeasible: would dominate b, c and e
    ("nsga2", "b", 0.60, 20.0, True),
    ("nsga2", "c", 0.55, 20.0, True),  # same latency as b, lower mIoU
    ("nsga2", "e", 0.60, 30.0, True),  # same mIoU as b, higher latency
    ("nsga2", "f", 0.65, 40.0, True),
    ("dnas", "h", 0.68, 25.0, True),  # dominates e and f
    ("dnas", "i", 0.58, 22.0, True),  # dominated by b
]


def pymoo_front(table: pd.DataFrame) -> set[str]:
    """Keys of the feasible rows in pymoo's first non-dominated front, objectives (-mIoU, latency)."""
    feasible = table[table.feasible]
    F = np.stack([-feasible.miou.to_numpy(), feasible.latency_ms.to_numpy()], axis=1)
    return set(feasible.key.iloc[NonDominatedSorting().do(F, only_non_dominated_front=True)])


def evaluations() -> pd.DataFrame:
    table = pd.DataFrame(SUBNETS, columns=["strategy", "key", "miou", "latency_ms", "feasible"])
    table.insert(0, "trial", range(len(table)))
    table["generation"] = [0 if strategy == "nsga2" else None for strategy in table.strategy]
    table["latency_lower_ms"], table["latency_upper_ms"] = table.latency_ms * 0.9, table.latency_ms * 1.1
    table["macs"], table["params"] = (table.latency_ms * 1e7).astype(int), 1_000_000
    table["front"] = table.key.isin(pymoo_front(table))
    return table


def write_search(run_dir: Path, budgets_ms: dict[str, float]) -> pd.DataFrame:
    """config.yaml, evaluations.csv, front.csv and dnas/dnas.csv of a run; returns the evaluations."""
    table = evaluations()
    config = {"name": "hand_made", "selection": {"budgets_ms": budgets_ms}, "search": {"strategies": ["nsga2", "dnas"]}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    table.to_csv(run_dir / "evaluations.csv", index=False)
    table[table.front].sort_values("latency_ms").to_csv(run_dir / "front.csv", index=False)
    dnas = table[table.strategy == "dnas"].assign(**{"lambda": [0.1, 1.0], "measured_ms": [None, None]})
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
            metrics = {**entry, "predicted_ms": row.latency_ms, "inherited_miou": row.miou,
                       "retrained_miou": row.miou + 0.02, "iou": [0.9, 0.4], "class_names": ["road", "sky"],
                       "measured": {"median_ms": row.latency_ms * 1.1, "p90_ms": row.latency_ms * 1.2}}
            (run_dir / "selected" / entry["label"]).mkdir()
            (run_dir / "selected" / entry["label"] / "metrics.json").write_text(json.dumps(metrics))


def figure(page: str, div_id: str) -> tuple[list[dict], dict]:
    """The traces and the layout Plotly draws in the figure whose div id is `div_id`."""
    start = page.index("Plotly.newPlot(", page.index(f'<div id="{div_id}"'))
    decoder = json.JSONDecoder()
    rest = page[page.index("[", start):]
    data, end = decoder.raw_decode(rest)
    layout, _ = decoder.raw_decode(rest[end:].lstrip(", "))
    return data, layout


def trace(data: list[dict], name: str) -> dict:
    return next(item for item in data if item["name"] == name)


def table_rows(page: str, heading: str) -> list[list[str]]:
    """The body rows (cell texts) of the table under `heading`."""
    section = page.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]
    body = section.split("<tbody>", 1)[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]


def test_picks_under_any_label_appear_retrained_or_not(tmp_path: Path) -> None:
    write_search(tmp_path, {"fast": 1000.0, "edge-1": 12.0})
    write_selection(tmp_path, [("edge-1", "a", 12.0), ("fast", "b", 1000.0), ("knee", "a-copy", None)],
                    retrained={"fast"})
    page = write_report(tmp_path).read_text(encoding="utf-8")

    rows = table_rows(page, "Picked networks")
    assert [row[0] for row in rows] == ["edge-1", "fast", "knee"]
    edge, fast, _ = rows
    assert edge[2] == "≤ 12 ms" and edge[3].startswith("10.00 [9.00, 11.00]") and edge[7] == "not retrained"
    assert fast[2] == "≤ 1000 ms" and fast[4] == "22.00" and fast[7] == "0.6200"

    data, layout = figure(page, "search-trade-off")
    assert trace(data, "picked: predicted latency, inherited mIoU")["text"] == [
        "edge-1 (not retrained)", "fast", "knee (not retrained)"]
    assert trace(data, "picked: measured latency, retrained mIoU")["text"] == ["fast"]
    budgets = [note["text"] for note in layout["annotations"] if note["text"]]
    assert budgets == ["edge-1 ≤ 12 ms", "fast ≤ 1000 ms"]
    iou, _ = figure(page, "per-class-iou")
    assert [bars["name"] for bars in iou] == ["fast"]
    assert "edge-1 (a, not retrained), fast (b), knee (a-copy, not retrained)" in page


def test_fronts_agree_with_pymoo_with_ties_and_an_infeasible_point(tmp_path: Path) -> None:
    table = write_search(tmp_path, {})
    page = write_report(tmp_path).read_text(encoding="utf-8")
    joint, nsga2 = pymoo_front(table), pymoo_front(table[table.strategy == "nsga2"])
    assert joint == {"g", "a", "a-copy", "b", "h"} and nsga2 == {"g", "a", "a-copy", "b", "f"}

    tradeoff, _ = figure(page, "search-trade-off")
    assert [row[0] for row in trace(tradeoff, "Pareto front")["customdata"]] == ["g", "a", "a-copy", "b", "h"]
    strategies, _ = figure(page, "search-strategies-nsga-ii-and-dnas")
    assert {row[0] for row in trace(strategies, "NSGA-II front")["customdata"]} == nsga2
    assert ("NSGA-II's front dominates 1 of the 2 DNAS genotypes; DNAS genotypes dominate 1 of its 5 points"
            in page)
