"""The report's Plotly figures: the search trade-off (every subnet, the front, the picked networks before and after
retraining, the latency budgets), NSGA-II's front beside the DNAS sweep, the latency predictor's parity plot,
hypervolume per generation, per-class IoU of the picked networks and the proxy fidelity audit."""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from engine.report.formatting import fmt, is_missing, si
from engine.report.load import Pick, Run, column, nested, nsga2_front, nsga2_rows

LEGEND_ABOVE = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0}
SUBNET_HOVER = ("%{customdata[0]}<br>mIoU %{y:.4f}, latency %{x:.2f} ms %{customdata[3]}<br>"
                "MACs %{customdata[1]}, params %{customdata[2]}, feasible %{customdata[4]}<extra></extra>")


def subnet_hover(table: pd.DataFrame) -> list[list[str]]:
    """customdata rows for a table of evaluations: key, MACs, params, latency interval, feasibility."""
    return [[escape(str(key)), si(macs), si(params), f"[{fmt(lower, '.2f')}, {fmt(upper, '.2f')}] ms",
             "yes" if feasible else "no"]
            for key, macs, params, lower, upper, feasible in zip(
                table["key"], column(table, "macs"), column(table, "params"), column(table, "latency_lower_ms"),
                column(table, "latency_upper_ms"), column(table, "feasible", True))]


def evaluations_trace(evaluations: pd.DataFrame) -> go.Scatter:
    """Every evaluated subnet, coloured by generation; infeasible ones drawn as crosses."""
    return go.Scatter(
        x=evaluations["latency_ms"], y=evaluations["miou"], mode="markers", name="evaluated subnets",
        customdata=subnet_hover(evaluations), hovertemplate=SUBNET_HOVER,
        marker={"size": 7, "opacity": 0.75, "color": column(evaluations, "generation", 0),
                "colorscale": "Viridis", "colorbar": {"title": {"text": "generation"}, "thickness": 14, "dtick": 1},
                "symbol": ["circle" if ok else "x" for ok in column(evaluations, "feasible", True)]})


def front_trace(front: pd.DataFrame, name: str = "Pareto front") -> go.Scatter:
    """A front as a staircase (the attainment surface) through its points, sorted by latency."""
    front = front.sort_values(["latency_ms", "miou"], ascending=[True, False])
    return go.Scatter(
        x=front["latency_ms"], y=front["miou"], mode="lines+markers", name=name, line_shape="hv",
        line={"color": "#d62728", "width": 2}, marker={"size": 8, "color": "#d62728"},
        customdata=subnet_hover(front), hovertemplate=SUBNET_HOVER)


def pick_points(picks: list[Pick], after: bool) -> list[tuple[str, Any, Any]]:
    """(label, latency, mIoU) of each pick: predicted/inherited, or (after) measured/retrained where known."""
    points = []
    for pick in picks:
        x, y = pick.get("predicted_ms"), pick.get("inherited_miou")
        if after:
            median, retrained = pick.measured("median_ms"), pick.get("retrained_miou")
            if is_missing(median) and is_missing(retrained):
                continue
            x = x if is_missing(median) else median
            y = y if is_missing(retrained) else retrained
        if not (is_missing(x) or is_missing(y)):
            points.append((pick.label if pick.retrained else f"{pick.label} (not retrained)", x, y))
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


def add_pick_arrows(figure: go.Figure, picks: list[Pick]) -> None:
    """An arrow from each pick's predicted/inherited point to its measured/retrained point."""
    before = {label: (x, y) for label, x, y in pick_points(picks, after=False)}
    for label, x, y in pick_points(picks, after=True):
        if label in before and before[label] != (x, y):
            ax, ay = before[label]
            figure.add_annotation(x=x, y=y, ax=ax, ay=ay, xref="x", yref="y", axref="x", ayref="y", text="",
                                  showarrow=True, arrowhead=2, arrowsize=1.2, arrowwidth=1.5, arrowcolor="#555",
                                  standoff=9, startstandoff=9)


def budgets(picks: list[Pick], config: dict[str, Any]) -> list[tuple[float, str]]:
    """(ms, label) of every latency budget, the configuration's (selection.budgets_ms) and the picks', by ms."""
    configured = nested(config, "selection.budgets_ms") or {}
    found = {(float(budget), str(label)) for label, budget in configured.items() if not is_missing(budget)}
    found |= {(float(pick.budget_ms), pick.label) for pick in picks if not is_missing(pick.budget_ms)}
    return sorted(found)


def add_budgets(figure: go.Figure, picks: list[Pick], config: dict[str, Any]) -> None:
    """The latency budgets as vertical dashed lines, each named by its label."""
    for budget, label in budgets(picks, config):
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
        figure.add_trace(front_trace(nsga2_front(run.evaluations), name="NSGA-II front"))
    figure.add_trace(dnas_trace(run.dnas, measured=False))
    if run.dnas["measured_ms"].notna().any():
        figure.add_trace(dnas_trace(run.dnas, measured=True))
    figure.update_layout(title={"text": "NSGA-II front and the DNAS λ sweep (inherited mIoU)", "y": 0.98},
                         xaxis_title="latency (ms)", yaxis_title="mIoU", legend=LEGEND_ABOVE, height=520,
                         margin={"t": 110}, template="plotly_white")
    return figure


def parity_title(accuracy: dict[str, Any] | None) -> str:
    if accuracy is None:
        return "Latency predictor on held-out measurements"
    return (f"Latency predictor on held-out measurements: MAPE {fmt(accuracy.get('mape'), '.2f', ' %')}, "
            f"within ±10 % {fmt(accuracy.get('within_10'), '.1f', ' %')}, "
            f"Kendall τ {fmt(accuracy.get('kendall_tau'), '.3f')}")


def interval_bars(heldout: pd.DataFrame) -> dict[str, Any] | None:
    """Error bars from the predicted latency to its interval's ends, None when the interval was not recorded."""
    if not {"lower_ms", "upper_ms"} <= set(heldout.columns):
        return None
    return {"type": "data", "symmetric": False, "array": heldout["upper_ms"] - heldout["predicted_ms"],
            "arrayminus": heldout["predicted_ms"] - heldout["lower_ms"], "thickness": 1, "color": "#9ab"}


def parity_figure(heldout: pd.DataFrame, accuracy: dict[str, Any] | None) -> go.Figure:
    """Measured vs predicted latency on held-out genotypes, with the interval as error bars and y = x."""
    values = heldout[[name for name in ("measured_ms", "predicted_ms", "lower_ms", "upper_ms") if name in heldout]]
    low, high = float(values.min().min()), float(values.max().max())
    pad = 0.05 * (high - low or 1.0)
    span = [low - pad, high + pad]
    figure = go.Figure([
        go.Scatter(x=span, y=span, mode="lines", name="y = x", line={"dash": "dash", "color": "#888"},
                   hoverinfo="skip"),
        go.Scatter(x=heldout["measured_ms"], y=heldout["predicted_ms"], mode="markers", name="held-out genotype",
                   error_y=interval_bars(heldout), marker={"size": 7, "color": "#1f77b4"},
                   customdata=[escape(str(key)) for key in heldout["key"]],
                   hovertemplate="%{customdata}<br>measured %{x:.2f} ms, predicted %{y:.2f} ms<extra></extra>"),
    ])
    figure.update_layout(
        title={"text": parity_title(accuracy)}, xaxis_title="measured latency (ms)",
        yaxis_title="predicted latency (ms)", legend=LEGEND_ABOVE, height=640, margin={"t": 110},
        template="plotly_white", xaxis={"range": span, "constrain": "domain"},
        yaxis={"range": span, "scaleanchor": "x", "scaleratio": 1, "constrain": "domain"})
    return figure


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


def iou_figure(picks: list[Pick]) -> go.Figure:
    """Per-class IoU of each picked network after retraining, as grouped bars."""
    figure = go.Figure()
    for pick in picks:
        iou = pick.get("iou")
        names = pick.get("class_names") or [f"class {index}" for index in range(len(iou))]
        figure.add_trace(go.Bar(
            x=[escape(str(name)) for name in names], y=[None if is_missing(v) else v for v in iou],
            name=escape(pick.label), hovertemplate="%{x}: IoU %{y:.4f}<extra>%{fullData.name}</extra>"))
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
