"""Reading a run directory for the report: the files the earlier stages wrote (at the paths engine/paths.py
names), gathered into one `Run`.

Nothing is re-derived here except what joins the files: the picked networks (selected/selection.json, in its
order, joined with their front.csv rows and, once retrained, selected/<label>/metrics.json), the DNAS genotypes'
latency as the search ended with it (evaluations.csv) and the evolution's own front (pymoo's non-dominated sorting of
its feasible subnets, engine/search/fronts.py). evaluations.csv's reference rows (the released networks,
engine/search/references.py) are split from the search's own into `references`. Absent files are None (or an empty
list).

A pick knows its skeleton (the genotype key's prefix: a label such as "small" is a budget's name, not the
skeleton), how it was placed (a budget in ms, a position along the front's latency range, the knee) and where its
model.onnx is. The device facts are what the run recorded: config.yaml's latency section and the provenance of the
retrain stage's re-measurements (selected/<label>/metrics.json); nothing else in the run directory keeps the
provenance (the measurement store, shared by runs, lies outside it).

Latency: a subnet's latency_ms is the search's objective, its measurement where the search has one and the
prediction otherwise (latency_source); runs made before the search measured have neither latency_source nor
measured_ms, and their latency is the prediction (`latency_source` says so).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from engine.config import RENAMED_STRATEGIES
from engine.files import made_with, read_json
from engine.latency.meter import STAT_FIELD
from engine.paths import ARTEFACTS, RunPaths
from engine.report.formatting import is_missing
from engine.search.evolution import EVOLUTION
from engine.search.fronts import POINT_FIELDS, front_mask
from engine.search.references import split_references

log = logging.getLogger(__name__)

RENAMED = {"inherited_miou": "miou", "search_measured_ms": "measured_ms", "predicted_lower_ms": "latency_lower_ms",
           "predicted_upper_ms": "latency_upper_ms", **RENAMED_STRATEGIES}
"""The names that runs made before the renaming gave in metrics.json (its front fields) and search_cost.json (its
strategies), and the names now: such files are renamed as they are read, here only."""


@dataclass(frozen=True)
class Pick:
    """A picked network: its selection entry and its values (metrics.json's fields; the front's until retrained)."""

    label: str
    key: str
    budget_ms: float | None
    values: dict[str, Any]
    retrained: bool
    statistic: str = "median"
    onnx: str | None = None  # model.onnx relative to the run directory, when the retrain stage exported it

    @property
    def skeleton(self) -> str | None:
        """The pick's skeleton, the genotype key's prefix ('xlarge:0-3-...' -> 'xlarge'); None for another key."""
        name, sep, _ = self.key.partition(":")
        return name if sep else None

    @property
    def span(self) -> float | None:
        """The position along the front's latency range that placed the pick (selection.budgets_span), else None."""
        span = self.get("budget_span")
        return None if is_missing(span) else float(span)

    def get(self, name: str) -> Any:
        """A field of metrics.json (predicted_ms, miou, retrained_miou, iou, ...), None when unknown."""
        return self.values.get(name)

    def measured(self, name: str) -> Any:
        """A field of the re-measurement (median_ms, p90_ms, ...), None when the pick was not re-measured."""
        return (self.get("measured") or {}).get(name)

    def remeasured_ms(self) -> Any:
        """The re-measurement's value of the run's latency.statistic (median, mean, p90 or min)."""
        return self.measured(STAT_FIELD[self.statistic])

    def spread_ms(self) -> Any:
        """The re-measurement's value of spread_statistic(the run's statistic), shown beside remeasured_ms."""
        return self.measured(STAT_FIELD[spread_statistic(self.statistic)])


def spread_statistic(statistic: str) -> str:
    """The statistic shown beside the run's own: the tail (p90), or the median when the run's statistic is the p90."""
    return "median" if statistic == "p90" else "p90"


@dataclass
class Run:
    """Everything the report reads from one run directory; absent files are None (or an empty list)."""

    directory: Path
    config: dict[str, Any]
    evaluations: pd.DataFrame | None
    front: pd.DataFrame | None
    hypervolume: pd.DataFrame | None
    heldout: pd.DataFrame | None
    accuracy: dict[str, Any] | None
    picks: list[Pick] = field(default_factory=list)
    audit: pd.DataFrame | None = None
    audit_summary: dict[str, Any] | None = None
    dnas: pd.DataFrame | None = None
    search_cost: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    surrogate: pd.DataFrame | None = None  # search/surrogate.csv, with search.accuracy_surrogate
    rounds: pd.DataFrame | None = None  # search/rounds.csv; empty (not None) when the search measured in no round
    search_measurements: pd.DataFrame | None = None
    references: pd.DataFrame | None = None  # evaluations.csv's rows of the released networks (search.references)
    statistic: str = "median"  # the search's latency.statistic: what its measured_ms is

    @property
    def provenance(self) -> dict[str, Any] | None:
        """The provenance of the first re-measured pick (hardware/provenance.py: host, cpu, gpu, backend and its
        version, threads; `agent`, the agent's address, when the device is an agent); None when no pick was."""
        return next((pick.measured("provenance") for pick in self.picks if pick.measured("provenance")), None)

    @property
    def measuring(self) -> dict[str, Any] | None:
        """search_cost.json's "measuring": limit, front_size, front_unmeasured, measured_total, measured_twice."""
        return (self.search_cost or {}).get("measuring")


def load_config(path: Path) -> dict[str, Any]:
    """The resolved experiment config, or {} when the file is absent or not a mapping."""
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else {}


def load_table(path: Path) -> pd.DataFrame | None:
    """A CSV file with header, or None when it is absent or has no rows."""
    if not path.exists():
        return None
    table = pd.read_csv(path)
    return table if len(table) else None


def load_rows(path: Path) -> pd.DataFrame | None:
    """A CSV file with header, kept when it has no rows (an empty table); None when it is absent."""
    if not path.exists():
        return None
    return pd.read_csv(path) if path.stat().st_size else pd.DataFrame()


def front_values(front: pd.DataFrame | None, key: str) -> dict[str, Any]:
    """The POINT_FIELDS of the front.csv row of `key` (metrics.json repeats them); {} when it is not there."""
    rows = front[front["key"] == key] if front is not None else None
    if rows is None or rows.empty:
        return {}
    row = rows.iloc[0]
    if "predicted_ms" not in row:  # a run made before the search measured: its latency_ms is the prediction
        row = row.rename({"latency_ms": "predicted_ms"})
    return {name: row[name] for name in POINT_FIELDS if name in row}


def load_pick(entry: dict[str, Any], paths: RunPaths, front: pd.DataFrame | None, statistic: str) -> Pick:
    """One entry of selection.json with its front values and, once retrained, its metrics.json."""
    label, key = str(entry["label"]), str(entry["key"])
    metrics = load_metrics(paths.picked_metrics(label))
    if metrics is None:
        log.info("picked network %s (%s) is not retrained yet: the report shows its front values", label, key)
    values = {**front_values(front, key), "budget_span": entry.get("budget_span"), **(metrics or {})}
    onnx = ARTEFACTS.picked_onnx(label).as_posix() if paths.picked_onnx(label).exists() else None
    return Pick(label, key, entry.get("budget_ms"), values, retrained=metrics is not None, statistic=statistic,
                onnx=onnx)


def renamed(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A JSON record with the keys of a run made before the renaming as they are named now (RENAMED)."""
    return None if record is None else {RENAMED.get(name, name): value for name, value in record.items()}


def load_metrics(path: Path) -> dict[str, Any] | None:
    """A picked network's selected/<label>/metrics.json, under today's names; None when absent."""
    return renamed(read_json(path))


def load_evaluations(path: Path) -> pd.DataFrame | None:
    """evaluations.csv, its strategies under today's names (RENAMED_STRATEGIES); None when absent or empty."""
    table = load_table(path)
    if table is not None and "strategy" in table:
        table["strategy"] = table["strategy"].replace(RENAMED_STRATEGIES)
    return table


def load_picks(paths: RunPaths, front: pd.DataFrame | None, statistic: str = "median") -> list[Pick]:
    """The picked networks of selected/selection.json, in its order, whatever their labels; `statistic`: the run's
    latency.statistic, the value of their re-measurement the report shows."""
    selection = read_json(paths.selection) or {}
    return [load_pick(entry, paths, front, statistic) for entry in selection.get("picked", [])]


def load_run(run_dir: Path) -> Run:
    """All report inputs of a run directory."""
    paths = RunPaths(run_dir)
    front, evaluations = load_table(paths.front), load_evaluations(paths.evaluations)
    references = None
    if evaluations is not None:
        evaluations, references = split_references(evaluations)
    config = load_config(paths.config)
    statistic = str(made_with(paths.record("search"), "latency.statistic")
                    or (config.get("latency") or {}).get("statistic") or "median")
    return Run(
        directory=run_dir,
        config=config,
        evaluations=evaluations,
        references=references,
        front=front,
        hypervolume=load_table(paths.hypervolume),
        heldout=load_table(paths.heldout),
        accuracy=read_json(paths.accuracy),
        picks=load_picks(paths, front, statistic),
        audit=load_table(paths.audit),
        audit_summary=read_json(paths.audit_summary),
        dnas=searched_latency(load_table(paths.dnas), evaluations),
        search_cost=renamed(read_json(paths.search_cost)),
        baseline=read_json(paths.baseline),
        rounds=load_rows(paths.rounds),
        surrogate=load_table(paths.surrogate),
        search_measurements=load_table(paths.search_measurements),
        statistic=statistic,
    )


def column(table: pd.DataFrame, name: str, default: Any = None) -> pd.Series:
    """A column of the table, or `default` in every row when the table lacks it."""
    return table[name] if name in table else pd.Series([default] * len(table), index=table.index, dtype=object)


def evolution_rows(evaluations: pd.DataFrame) -> pd.DataFrame:
    """The subnets the evolutionary search evaluated (all rows of a run made before strategies were recorded)."""
    return evaluations[column(evaluations, "strategy", EVOLUTION).fillna(EVOLUTION) == EVOLUTION]


def feasible_front(table: pd.DataFrame) -> pd.DataFrame:
    """The feasible rows that no other feasible row dominates (mIoU up, latency down); tied copies all stay."""
    return table[front_mask(table["miou"], table["latency_ms"], column(table, "feasible", True).astype(bool))]


def evolution_front(evaluations: pd.DataFrame) -> pd.DataFrame:
    """The evolutionary search's own front: its feasible non-dominated subnets."""
    return feasible_front(evolution_rows(evaluations))


def numbers(table: pd.DataFrame, name: str) -> pd.Series:
    """A column as floats (NaN where empty or absent)."""
    return pd.to_numeric(column(table, name), errors="coerce").astype(float)


def latency_source(table: pd.DataFrame) -> pd.Series:
    """'measured' or 'predicted': what each row's latency_ms is. Without the latency_source column (a run made before
    the search measured) 'measured' where measured_ms is known, 'predicted' otherwise."""
    if "latency_source" in table:
        return table["latency_source"].fillna("predicted").astype(str)
    return numbers(table, "measured_ms").notna().map({True: "measured", False: "predicted"})


def is_measured(table: pd.DataFrame) -> pd.Series:
    """True for the rows whose latency_ms is a measurement."""
    return latency_source(table) == "measured"


def prediction_before(table: pd.DataFrame) -> pd.Series:
    """The prediction to set beside each row's latency: the one the search had just before measuring it
    (predicted_before_ms), else the final predictor's (predicted_ms), else latency_ms (a run before measuring)."""
    return numbers(table, "predicted_before_ms").fillna(numbers(table, "predicted_ms")).fillna(
        numbers(table, "latency_ms"))


def searched_latency(dnas: pd.DataFrame | None, evaluations: pd.DataFrame | None) -> pd.DataFrame | None:
    """dnas/dnas.csv with each genotype's latency_ms and latency_source as the search ended with them (its
    evaluations.csv row: measured where the search measured it); dnas.csv's own where it has no row."""
    if dnas is None or evaluations is None:
        return dnas
    rows = evaluations.assign(latency_source=latency_source(evaluations)).drop_duplicates("key").set_index("key")
    final = dnas["key"].map(rows["latency_ms"])
    source = dnas["key"].map(rows["latency_source"])
    return dnas.assign(latency_ms=final.fillna(dnas["latency_ms"]).astype(float),
                       latency_source=source.where(final.notna(), "predicted"))
