"""The run report: one self-contained HTML page (Plotly) that summarises what a run directory holds.

`write_report(run_dir)` reads only the files the earlier stages wrote (config.yaml, evaluations.csv, front.csv,
hypervolume.csv, latency/heldout.csv, latency/accuracy.json, selected/<label>/metrics.json) and writes
run_dir/report.html: a summary table, the search trade-off (every evaluated subnet, the Pareto front, the picked
networks before and after retraining and re-measurement, the latency budgets), the latency predictor's parity
plot, hypervolume per generation, per-class IoU of the picked networks and a table of them. plotly.js is
embedded once, so the page opens without network access. A section whose input files are absent is replaced
by a one-line note naming them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import yaml

from engine.files import write_text
from engine.search.fronts import dominated_by, minimised

PICK_LABELS = ("small", "large", "xlarge", "knee")
MISSING = "—"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
LEGEND_ABOVE = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; white-space: normal; vertical-align: bottom; }
div.table { overflow-x: auto; }
td.key { font-family: monospace; white-space: normal; word-break: break-all; min-width: 12em; max-width: 28em; }
p.note { color: #8a5300; background: #fff6e5; padding: 0.4em 0.8em; border-left: 3px solid #e0a030; }
"""


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
    picks: list[dict[str, Any]] = field(default_factory=list)
    audit: pd.DataFrame | None = None
    audit_summary: dict[str, Any] | None = None
    dnas: pd.DataFrame | None = None
    search_cost: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None


@dataclass
class Section:
    """One heading of the page and its body: a figure, an HTML fragment, or None with the note saying why."""

    heading: str
    body: go.Figure | str | None
    note: str = ""


# ---------------------------------------------------------------- loaders


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


def load_json(path: Path) -> dict[str, Any] | None:
    """A JSON object, or None when the file is absent."""
    return json.loads(path.read_text()) if path.exists() else None


def load_picks(selected: Path) -> list[dict[str, Any]]:
    """metrics.json of each picked network under selected/, in the order small, large, xlarge, knee."""
    picks = [load_json(selected / label / "metrics.json") for label in PICK_LABELS]
    return [pick for pick in picks if pick is not None]


def load_run(run_dir: Path) -> Run:
    """All report inputs of a run directory."""
    return Run(
        directory=run_dir,
        config=load_config(run_dir / "config.yaml"),
        evaluations=load_table(run_dir / "evaluations.csv"),
        front=load_table(run_dir / "front.csv"),
        hypervolume=load_table(run_dir / "hypervolume.csv"),
        heldout=load_table(run_dir / "latency" / "heldout.csv"),
        accuracy=load_json(run_dir / "latency" / "accuracy.json"),
        picks=load_picks(run_dir / "selected"),
        audit=load_table(run_dir / "audit" / "audit.csv"),
        audit_summary=load_json(run_dir / "audit" / "audit.json"),
        dnas=load_table(run_dir / "dnas" / "dnas.csv"),
        search_cost=load_json(run_dir / "search_cost.json"),
        baseline=load_json(run_dir / "audit" / "baseline.json"),
    )


# ---------------------------------------------------------------- formatting


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: Any, spec: str = ".3f", unit: str = "") -> str:
    """A number formatted with `spec` (and a unit), or a dash when it is absent."""
    return MISSING if is_missing(value) else f"{value:{spec}}{unit}"


def si(value: Any) -> str:
    """A count with an SI prefix: 1.23 G, 45.6 M, 7.8 k."""
    if is_missing(value):
        return MISSING
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g}"


def nested(config: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """config['a']['b'] for 'a.b', or `default` when any level is absent."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def html_table(header: list[str] | None, rows: list[list[str]], key_column: int | None = None) -> str:
    """An HTML table (without a header row when `header` is None); every cell is escaped here."""
    head = "" if header is None else "<thead><tr>" + "".join(f"<th>{escape(c)}</th>" for c in header) + "</tr></thead>"
    body = "".join(
        "<tr>" + "".join(
            f'<td class="key">{escape(cell)}</td>' if index == key_column else f"<td>{escape(cell)}</td>"
            for index, cell in enumerate(row)) + "</tr>"
        for row in rows)
    return f'<div class="table"><table>{head}<tbody>{body}</tbody></table></div>'


def measured(pick: dict[str, Any], name: str) -> Any:
    """A field of the pick's re-measurement, None when it was not re-measured."""
    return (pick.get("measured") or {}).get(name)


def interval_text(pick: dict[str, Any]) -> str:
    return f"[{fmt(pick.get('predicted_lower_ms'), '.2f')}, {fmt(pick.get('predicted_upper_ms'), '.2f')}]"


def budget_text(pick: dict[str, Any]) -> str:
    budget = pick.get("budget_ms")
    return "knee (no budget)" if is_missing(budget) else f"≤ {budget:g} ms"


# ---------------------------------------------------------------- summary and tables


def skeleton_text(config: dict[str, Any]) -> str:
    """'small width 0.5 input 128x256', with the parts the config has."""
    parts = [str(nested(config, "space.skeleton", MISSING))]
    if nested(config, "space.width") is not None:
        parts.append(f"width {nested(config, 'space.width')}")
    if isinstance(nested(config, "space.input_size"), list):
        parts.append("input " + "x".join(map(str, nested(config, "space.input_size"))))
    return " ".join(parts)


def summary_table(run: Run) -> str:
    """Run name, skeleton, data, device/backend, trials, front size and picked networks."""
    config = run.config
    device = f"{nested(config, 'latency.device', MISSING)} / {nested(config, 'latency.backend', MISSING)}"
    evaluations = run.evaluations
    trials = MISSING if evaluations is None else (
        f"{len(evaluations)} over {evaluations['generation'].nunique()} generations"
        if "generation" in evaluations else str(len(evaluations)))
    picks = ", ".join(f"{pick.get('label', '?')} ({pick.get('key', '?')})" for pick in run.picks) or MISSING
    rows = [
        ["run", str(config.get("name", run.directory.name))],
        ["skeleton", skeleton_text(config)],
        ["data", str(nested(config, "data.kind", MISSING))],
        ["device / backend", device],
        ["trials (evaluated subnets)", trials],
        ["front size", MISSING if run.front is None else str(len(run.front))],
        ["picked networks", picks],
    ]
    return html_table(None, rows)


def picks_table(picks: list[dict[str, Any]]) -> str:
    """One row per picked network: prediction, re-measurement, mIoU before/after retraining, costs, ONNX check."""
    header = ["label", "key", "budget", "predicted ms [interval]", "measured median ms", "measured p90 ms",
              "inherited mIoU", "retrained mIoU", "MACs", "params", "ONNX max abs diff"]
    rows = [[
        str(pick.get("label", "?")),
        str(pick.get("key", "?")),
        budget_text(pick),
        f"{fmt(pick.get('predicted_ms'), '.2f')} {interval_text(pick)}",
        fmt(measured(pick, "median_ms"), ".2f"),
        fmt(measured(pick, "p90_ms"), ".2f"),
        fmt(pick.get("inherited_miou"), ".4f"),
        fmt(pick.get("retrained_miou"), ".4f"),
        si(pick.get("macs")),
        si(pick.get("params")),
        fmt(pick.get("onnx_max_abs_diff"), ".2e"),
    ] for pick in picks]
    return html_table(header, rows, key_column=1)


def accuracy_table(accuracy: dict[str, Any]) -> str:
    """The latency predictor's held-out accuracy figures."""
    rows = [
        ["held-out measurements", fmt(accuracy.get("count"), "d")],
        ["MAPE", fmt(accuracy.get("mape"), ".2f", " %")],
        ["RMSE", fmt(accuracy.get("rmse"), ".3f", " ms")],
        ["within ±5 %", fmt(accuracy.get("within_5"), ".1f", " %")],
        ["within ±10 %", fmt(accuracy.get("within_10"), ".1f", " %")],
        ["Kendall τ", fmt(accuracy.get("kendall_tau"), ".3f")],
        ["Spearman ρ", fmt(accuracy.get("spearman_rho"), ".3f")],
    ]
    return html_table(["metric", "value"], rows)


# ---------------------------------------------------------------- figures


def column(table: pd.DataFrame, name: str, default: Any = None) -> pd.Series:
    """A column of the table, or `default` in every row when the table lacks it."""
    return table[name] if name in table else pd.Series([default] * len(table), index=table.index, dtype=object)


def subnet_hover(table: pd.DataFrame) -> list[list[str]]:
    """customdata rows for a table of evaluations: key, MACs, params, latency interval, feasibility."""
    return [[escape(str(key)), si(macs), si(params), f"[{fmt(lower, '.2f')}, {fmt(upper, '.2f')}] ms",
             "yes" if feasible else "no"]
            for key, macs, params, lower, upper, feasible in zip(
                table["key"], column(table, "macs"), column(table, "params"), column(table, "latency_lower_ms"),
                column(table, "latency_upper_ms"), column(table, "feasible", True))]


SUBNET_HOVER = ("%{customdata[0]}<br>mIoU %{y:.4f}, latency %{x:.2f} ms %{customdata[3]}<br>"
                "MACs %{customdata[1]}, params %{customdata[2]}, feasible %{customdata[4]}<extra></extra>")


def evaluations_trace(evaluations: pd.DataFrame) -> go.Scatter:
    """Every evaluated subnet, coloured by generation; infeasible ones drawn as crosses."""
    return go.Scatter(
        x=evaluations["latency_ms"], y=evaluations["miou"], mode="markers", name="evaluated subnets",
        customdata=subnet_hover(evaluations), hovertemplate=SUBNET_HOVER,
        marker={"size": 7, "opacity": 0.75, "color": column(evaluations, "generation", 0),
                "colorscale": "Viridis", "colorbar": {"title": {"text": "generation"}, "thickness": 14, "dtick": 1},
                "symbol": ["circle" if ok else "x" for ok in column(evaluations, "feasible", True)]})


def front_trace(front: pd.DataFrame) -> go.Scatter:
    """The Pareto front as a staircase (the attainment surface) through its points, sorted by latency."""
    front = front.sort_values("latency_ms")
    return go.Scatter(
        x=front["latency_ms"], y=front["miou"], mode="lines+markers", name="Pareto front", line_shape="hv",
        line={"color": "#d62728", "width": 2}, marker={"size": 8, "color": "#d62728"},
        customdata=subnet_hover(front), hovertemplate=SUBNET_HOVER)


def pick_points(picks: list[dict[str, Any]], after: bool) -> list[tuple[str, Any, Any]]:
    """(label, latency, mIoU) of each pick: predicted/inherited, or (after) measured/retrained where known."""
    points = []
    for pick in picks:
        x, y = pick.get("predicted_ms"), pick.get("inherited_miou")
        if after:
            median, retrained = measured(pick, "median_ms"), pick.get("retrained_miou")
            if is_missing(median) and is_missing(retrained):
                continue
            x = x if is_missing(median) else median
            y = y if is_missing(retrained) else retrained
        if not (is_missing(x) or is_missing(y)):
            points.append((str(pick.get("label", "?")), x, y))
    return points


def picks_trace(points: list[tuple[str, Any, Any]], after: bool) -> go.Scatter:
    """Picked networks as stars: filled and labelled at predicted/inherited, open at measured/retrained."""
    name = "picked: measured latency, retrained mIoU" if after else "picked: predicted latency, inherited mIoU"
    return go.Scatter(
        x=[x for _, x, _ in points], y=[y for _, _, y in points], name=name,
        mode="markers" if after else "markers+text", text=[escape(label) for label, _, _ in points],
        textposition="top left",
        marker={"symbol": "star-open" if after else "star", "size": 16, "color": "#111",
                "line": {"width": 2, "color": "#111"}},
        hovertemplate="%{text}<br>latency %{x:.2f} ms, mIoU %{y:.4f}<extra>" + escape(name) + "</extra>")


def add_pick_arrows(figure: go.Figure, picks: list[dict[str, Any]]) -> None:
    """An arrow from each pick's predicted/inherited point to its measured/retrained point."""
    before = {label: (x, y) for label, x, y in pick_points(picks, after=False)}
    for label, x, y in pick_points(picks, after=True):
        if label in before and before[label] != (x, y):
            ax, ay = before[label]
            figure.add_annotation(x=x, y=y, ax=ax, ay=ay, xref="x", yref="y", axref="x", ayref="y", text="",
                                  showarrow=True, arrowhead=2, arrowsize=1.2, arrowwidth=1.5, arrowcolor="#555",
                                  standoff=9, startstandoff=9)


def add_budgets(figure: go.Figure, picks: list[dict[str, Any]], config: dict[str, Any]) -> None:
    """The latency budgets of the configuration (selection.budgets_ms) and of the picks as vertical dashed lines."""
    configured = (config.get("selection") or {}).get("budgets_ms") or {}
    budgets = {(pick.get("budget_ms"), str(pick.get("label", "?"))) for pick in picks}
    budgets |= {(float(budget), str(label)) for label, budget in configured.items() if not is_missing(budget)}
    for budget, label in sorted((b, label) for b, label in budgets if not is_missing(b)):
        figure.add_vline(x=budget, line_dash="dash", line_color="#777", line_width=1,
                         annotation_text=escape(f"{label} ≤ {budget:g} ms"), annotation_position="bottom right",
                         annotation_font_size=11)


def tradeoff_figure(run: Run) -> go.Figure:
    """Inherited-weight mIoU vs predicted latency of every subnet, the front, the picks and the budgets."""
    figure = go.Figure()
    if run.evaluations is not None:
        figure.add_trace(evaluations_trace(nsga2_rows(run.evaluations)))
    if run.dnas is not None:
        figure.add_trace(dnas_trace(run.dnas, measured=False))
    if run.front is not None:
        figure.add_trace(front_trace(run.front))
    for after in (False, True):
        points = pick_points(run.picks, after)
        if points:
            figure.add_trace(picks_trace(points, after))
    add_pick_arrows(figure, run.picks)
    add_budgets(figure, run.picks, run.config)
    figure.update_layout(
        title={"text": "Search: mIoU (inherited weights) vs predicted latency", "y": 0.98},
        xaxis_title="latency (ms)", yaxis_title="mIoU", legend=LEGEND_ABOVE, height=620,
        margin={"t": 110}, template="plotly_white")
    return figure


def nsga2_rows(evaluations: pd.DataFrame) -> pd.DataFrame:
    """The subnets NSGA-II evaluated (all rows of a run made before strategies were recorded)."""
    return evaluations[column(evaluations, "strategy", "nsga2").fillna("nsga2") == "nsga2"]


def dnas_trace(dnas: pd.DataFrame, measured: bool) -> go.Scatter:
    """DNAS genotypes, one per lambda, at predicted (filled diamonds) or measured (open) latency."""
    x = dnas["measured_ms"] if measured else dnas["latency_ms"]
    name = "DNAS: measured latency" if measured else "DNAS genotype per λ (predicted latency)"
    return go.Scatter(
        x=x, y=dnas["miou"], mode="markers" if measured else "markers+text", name=name,
        text=[f"λ={lam:g}" for lam in dnas["lambda"]], textposition="bottom right",
        customdata=[[escape(str(key)), si(macs)] for key, macs in zip(dnas["key"], dnas["macs"])],
        marker={"symbol": "diamond-open" if measured else "diamond", "size": 12, "color": "#1f77b4",
                "line": {"width": 2, "color": "#1f77b4"}},
        hovertemplate="%{text} %{customdata[0]}<br>mIoU %{y:.4f}, latency %{x:.2f} ms, MACs %{customdata[1]}"
                      "<extra></extra>")


def strategies_figure(run: Run) -> go.Figure:
    """NSGA-II's own front beside the DNAS sweep, on inherited mIoU vs predicted latency."""
    figure = go.Figure()
    if run.evaluations is not None:
        figure.add_trace(front_trace(nsga2_front(run.evaluations)).update(name="NSGA-II front"))
    figure.add_trace(dnas_trace(run.dnas, measured=False))
    if run.dnas["measured_ms"].notna().any():
        figure.add_trace(dnas_trace(run.dnas, measured=True))
    figure.update_layout(title={"text": "NSGA-II front and the DNAS λ sweep (inherited mIoU)", "y": 0.98},
                         xaxis_title="latency (ms)", yaxis_title="mIoU", legend=LEGEND_ABOVE, height=520,
                         margin={"t": 110}, template="plotly_white")
    return figure


def cost_table(run: Run) -> str:
    """Each strategy's search cost (wall seconds on the run's device) and how the DNAS points fare."""
    cost = run.search_cost or {}
    device = str(cost.get("device", "?"))
    where = f"{device}, {cost.get('threads', '?')} threads"

    def total(seconds: Any) -> str:
        if is_missing(seconds):
            return MISSING
        hours = seconds / 3600 if device.startswith("cuda") else seconds * cost.get("threads", 1) / 3600
        return f"{seconds:.0f} s ({hours:.3f} {'GPU' if device.startswith('cuda') else 'CPU'}-h)"

    rows = []
    if "nsga2" in cost:
        n = cost["nsga2"]
        rows.append(["NSGA-II", total(n.get("total_s")),
                     f"supernet {fmt(n.get('supernet_s'), '.0f', ' s')} + search {fmt(n.get('search_s'), '.0f', ' s')}",
                     str(len(nsga2_rows(run.evaluations))) if run.evaluations is not None else "–"])
    if "dnas" in cost:
        d = cost["dnas"]
        parts = f"warm-up {fmt(d.get('warmup_s'), '.0f', ' s')} + {len(d.get('lambdas_s', []))} λ " \
                f"{fmt(sum(d.get('lambdas_s', [])), '.0f', ' s')} + lookup table {fmt(d.get('lookup_s'), '.0f', ' s')}"
        found = len(run.dnas) if run.dnas is not None else 0
        rows.append([f"DNAS ({d.get('cost', '?')} cost)", total(d.get("total_s")), parts, str(found)])
    table = html_table(["strategy", f"search cost ({where})", "of which", "genotypes"], rows)
    if run.dnas is not None and run.evaluations is not None:
        table += f"<p>{dominance_text(nsga2_front(run.evaluations), run.dnas)}</p>"
    return table


def nsga2_front(evaluations: pd.DataFrame) -> pd.DataFrame:
    """NSGA-II's own non-dominated subnets (mIoU up, predicted latency down)."""
    ours = nsga2_rows(evaluations).sort_values(["latency_ms", "miou"], ascending=[True, False])
    return ours[ours["miou"] > ours["miou"].cummax().shift(fill_value=-1.0)]


def dominance_text(front: pd.DataFrame, dnas: pd.DataFrame) -> str:
    """How many points of each method a point of the other dominates, on inherited mIoU and predicted latency."""
    f_front, f_dnas = (minimised(t.miou, t.latency_ms) for t in (front, dnas))
    dnas_beaten, front_beaten = int(dominated_by(f_dnas, f_front).sum()), int(dominated_by(f_front, f_dnas).sum())
    return (f"On inherited mIoU and predicted latency, NSGA-II's front dominates {dnas_beaten} of the "
            f"{len(dnas)} DNAS genotypes; DNAS genotypes dominate {front_beaten} of its {len(front)} points.")


def baseline_table(baseline: dict[str, Any]) -> str:
    """The hand-made k3_e6 network against the searched one at the same measured latency."""
    rows = []
    for label, part in (("hand-made (k3_e6 everywhere)", baseline["handmade"]), ("searched", baseline["searched"])):
        rows.append([label, str(part["key"]), fmt(part["measured_ms"], ".2f", " ms"), si(part["macs"]),
                     fmt(part["standalone_miou"], ".4f")])
    difference = fmt(baseline.get("miou_difference"), "+.4f")
    text = (f"<p>Both trained stand-alone for {baseline.get('train_steps')} steps (batch "
            f"{baseline.get('train_batch_size')}); searched − hand-made mIoU {difference}"
            f" at a measured latency ratio of {fmt(baseline.get('latency_ratio'), '.3f')}.</p>")
    return html_table(["network", "genotype", "measured latency", "MACs", "stand-alone mIoU"], rows, 1) + text


def parity_figure(heldout: pd.DataFrame, accuracy: dict[str, Any] | None) -> go.Figure:
    """Measured vs predicted latency on held-out genotypes, with the interval as error bars and y = x."""
    error = None
    if {"lower_ms", "upper_ms"} <= set(heldout.columns):
        error = {"type": "data", "symmetric": False, "array": heldout["upper_ms"] - heldout["predicted_ms"],
                 "arrayminus": heldout["predicted_ms"] - heldout["lower_ms"], "thickness": 1, "color": "#9ab"}
    values = heldout[[name for name in ("measured_ms", "predicted_ms", "lower_ms", "upper_ms") if name in heldout]]
    low, high = float(values.min().min()), float(values.max().max())
    pad = 0.05 * (high - low or 1.0)
    figure = go.Figure([
        go.Scatter(x=[low - pad, high + pad], y=[low - pad, high + pad], mode="lines", name="y = x",
                   line={"dash": "dash", "color": "#888"}, hoverinfo="skip"),
        go.Scatter(x=heldout["measured_ms"], y=heldout["predicted_ms"], mode="markers", name="held-out genotype",
                   error_y=error, marker={"size": 7, "color": "#1f77b4"},
                   customdata=[escape(str(key)) for key in heldout["key"]],
                   hovertemplate="%{customdata}<br>measured %{x:.2f} ms, predicted %{y:.2f} ms<extra></extra>"),
    ])
    figure.update_layout(
        title={"text": parity_title(accuracy)}, xaxis_title="measured latency (ms)",
        yaxis_title="predicted latency (ms)", legend=LEGEND_ABOVE, height=640, margin={"t": 110},
        template="plotly_white", xaxis={"range": [low - pad, high + pad], "constrain": "domain"},
        yaxis={"range": [low - pad, high + pad], "scaleanchor": "x", "scaleratio": 1, "constrain": "domain"})
    return figure


def parity_title(accuracy: dict[str, Any] | None) -> str:
    if accuracy is None:
        return "Latency predictor on held-out measurements"
    return (f"Latency predictor on held-out measurements: MAPE {fmt(accuracy.get('mape'), '.2f', ' %')}, "
            f"within ±10 % {fmt(accuracy.get('within_10'), '.1f', ' %')}, "
            f"Kendall τ {fmt(accuracy.get('kendall_tau'), '.3f')}")


def hypervolume_figure(hypervolume: pd.DataFrame) -> go.Figure:
    """Hypervolume of the front after each generation."""
    evaluations = column(hypervolume, "evaluations")
    figure = go.Figure(go.Scatter(
        x=hypervolume["generation"], y=hypervolume["hypervolume"], mode="lines+markers", name="hypervolume",
        customdata=[fmt(value, ".0f") for value in evaluations],
        hovertemplate="generation %{x}<br>hypervolume %{y:.4g}<br>%{customdata} evaluations<extra></extra>"))
    figure.update_layout(title="Hypervolume per generation", xaxis_title="generation", yaxis_title="hypervolume",
                         xaxis={"dtick": 1}, height=420, template="plotly_white")
    return figure


def iou_figure(picks: list[dict[str, Any]]) -> go.Figure:
    """Per-class IoU of each picked network after retraining, as grouped bars."""
    figure = go.Figure()
    for pick in picks:
        iou = pick["iou"]
        names = pick.get("class_names") or [f"class {index}" for index in range(len(iou))]
        figure.add_trace(go.Bar(
            x=[escape(str(name)) for name in names], y=[None if is_missing(v) else v for v in iou],
            name=escape(str(pick.get("label", "?"))),
            hovertemplate="%{x}: IoU %{y:.4f}<extra>%{fullData.name}</extra>"))
    figure.update_layout(title="Per-class IoU of the picked networks", barmode="group", yaxis_title="IoU",
                         yaxis_range=[0, 1], xaxis_tickangle=-40, legend=LEGEND_ABOVE, height=480,
                         margin={"t": 100}, template="plotly_white")
    return figure


def audit_figure(audit: pd.DataFrame, summary: dict[str, Any] | None) -> go.Figure:
    """Stand-alone mIoU of the audited front points against both inherited-weight proxies."""
    summary = summary or {}
    figure = go.Figure()
    for proxy, name in (("inherited_miou", "BN recalibrated"), ("inherited_miou_no_recalibration", "running BN")):
        tau = summary.get(f"{proxy}_kendall_tau")
        figure.add_trace(go.Scatter(
            x=audit[proxy], y=audit["standalone_miou"], mode="markers", name=f"{name} (Kendall τ {fmt(tau)})",
            text=[escape(str(key)) for key in audit["key"]],
            hovertemplate="%{text}<br>inherited %{x:.4f}<br>stand-alone %{y:.4f}<extra></extra>"))
    steps = summary.get("train_steps")
    figure.update_layout(
        title=f"Proxy fidelity: {len(audit)} front points, stand-alone training of {fmt(steps, '.0f')} steps each",
        xaxis_title="inherited-weight mIoU", yaxis_title="stand-alone mIoU", legend=LEGEND_ABOVE, height=480,
        margin={"t": 100}, template="plotly_white")
    return figure


# ---------------------------------------------------------------- sections and page


def absent(run: Run, *relative: str) -> str:
    """The note for a section left out: which files were absent."""
    names = ", ".join(relative)
    return f"Left out: {names} not found in {run.directory}."


def sections(run: Run) -> list[Section]:
    """The page's sections in order; a section whose inputs are absent carries a note instead of a body."""
    picks_with_iou = [pick for pick in run.picks if pick.get("iou")]
    has_tradeoff = run.evaluations is not None or run.front is not None
    return [
        Section("Summary", summary_table(run)),
        Section("Search trade-off", tradeoff_figure(run) if has_tradeoff else None,
                absent(run, "evaluations.csv", "front.csv")),
        Section("Latency predictor", parity_figure(run.heldout, run.accuracy) if run.heldout is not None else None,
                absent(run, "latency/heldout.csv")),
        Section("Latency predictor accuracy", accuracy_table(run.accuracy) if run.accuracy else None,
                absent(run, "latency/accuracy.json")),
        Section("Hypervolume", hypervolume_figure(run.hypervolume) if run.hypervolume is not None else None,
                absent(run, "hypervolume.csv")),
        Section("Per-class IoU", iou_figure(picks_with_iou) if picks_with_iou else None,
                absent(run, "selected/<label>/metrics.json with per-class iou")),
        Section("Picked networks", picks_table(run.picks) if run.picks else None,
                absent(run, "selected/<label>/metrics.json")),
    ] + strategy_sections(run) + audit_sections(run)


def strategy_sections(run: Run) -> list[Section]:
    """NSGA-II beside DNAS with each one's search cost, when the run used DNAS."""
    if run.dnas is not None:
        return [Section("Search strategies: NSGA-II and DNAS", strategies_figure(run)),
                Section("Search cost", cost_table(run))]
    if "dnas" in (nested(run.config, "search.strategies", []) or []):
        return [Section("Search strategies: NSGA-II and DNAS", None, absent(run, "dnas/dnas.csv"))]
    return []


def audit_sections(run: Run) -> list[Section]:
    """The fidelity audit, when the run has one or was configured to."""
    if run.audit is not None:
        found = [Section("Proxy fidelity audit", audit_figure(run.audit, run.audit_summary))]
        if run.baseline is not None:
            found.append(Section("Searched vs hand-made at equal measured latency", baseline_table(run.baseline)))
        return found
    if nested(run.config, "audit.enabled", False):
        return [Section("Proxy fidelity audit", None, absent(run, "audit/audit.csv"))]
    return []


def render(section: Section, with_plotlyjs: bool) -> str:
    heading = f"<h2>{escape(section.heading)}</h2>"
    if section.body is None:
        return f'{heading}\n<p class="note">{escape(section.note)}</p>'
    if isinstance(section.body, go.Figure):
        return heading + section.body.to_html(full_html=False, include_plotlyjs=with_plotlyjs, config=PLOT_CONFIG)
    return heading + section.body


def page(run: Run) -> str:
    """The whole HTML page; plotly.js is embedded with the first figure only."""
    parts, embedded = [], False
    for section in sections(run):
        is_figure = isinstance(section.body, go.Figure)
        parts.append(render(section, with_plotlyjs=is_figure and not embedded))
        embedded = embedded or is_figure
    title = escape(f"Run report: {run.config.get('name', run.directory.name)}")
    head = f'<head>\n<meta charset="utf-8">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>'
    body = f"<body>\n<h1>{title}</h1>\n" + "\n".join(parts) + "\n</body>"
    return f'<!DOCTYPE html>\n<html lang="en">\n{head}\n{body}\n</html>\n'


def write_report(run_dir: Path) -> Path:
    """Write run_dir/report.html from the files of the run directory and return its path."""
    run_dir = Path(run_dir)
    return write_text(run_dir / "report.html", page(load_run(run_dir)))
