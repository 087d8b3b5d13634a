"""The report's Plotly figures: the search trade-off (every subnet and the front at the search's latency, measured
points filled and predicted ones hollow, each measured front point's prediction beside it, the picked networks before
and after retraining with their skeletons, budgets and positions, the released networks; every name in the legend, none
written over the points, so no two labels overlap), the evolution's front beside the DNAS sweep, the
latency predictor's parity plot (the latency stage's held-out genotypes), its accuracy per measuring round of the
search, hypervolume per generation, per-class IoU of the picked networks and the proxy fidelity audit."""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from engine.files import setting
from engine.report.formatting import fmt, is_missing, si
from engine.report.load import (
    Pick,
    Run,
    column,
    evolution_front,
    evolution_rows,
    is_measured,
    latency_source,
    numbers,
    prediction_before,
)

LEGEND_ABOVE = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0}
LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.12, "xanchor": "left", "x": 0}
PICK_COLORS = ("#111111", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
"""Each pick's colour (its stars and its budget line), in selection.json's order."""
PICKS_KEY = ("picks: ★ as searched → ☆ retrained and re-measured; a budget dashed, a position along the front's "
             "latency range dotted (the pick is the front point nearest it)")
SUBNET_HOVER = ("%{customdata[0]}<br>mIoU %{y:.4f}, latency %{x:.2f} ms %{customdata[3]}<br>"
                "MACs %{customdata[1]}, params %{customdata[2]}, feasible %{customdata[4]}<extra></extra>")
FRONT_COLOR = "#d62728"
REFERENCE_COLOR = "#17becf"
SKELETON_COLORS = {"small": "#1f77b4", "large": "#ff7f0e", "xlarge": "#2ca02c"}
"""With several skeletons, the evaluated subnets (and the front's markers) take their skeleton's colour."""


def interval_text(lower: Any, upper: Any) -> str:
    return f"[{fmt(lower, '.2f')}, {fmt(upper, '.2f')}] ms"


def latency_text(source: str, predicted: Any, lower: Any, upper: Any) -> str:
    """How a subnet's latency was found: 'measured (predicted 12.10 ms, 90 % interval [...])' or 'predicted, ...'."""
    if source == "measured":
        return f"measured (final predictor {fmt(predicted, '.2f')} ms, 90 % interval {interval_text(lower, upper)})"
    return f"predicted, 90 % interval {interval_text(lower, upper)}"


def subnet_hover(table: pd.DataFrame) -> list[list[str]]:
    """customdata rows for a table of evaluations: key, MACs, params, how its latency was found, feasibility."""
    return [[escape(str(key)), si(macs), si(params), latency_text(source, predicted, lower, upper),
             "yes" if feasible else "no"]
            for key, macs, params, source, predicted, lower, upper, feasible in zip(
                table["key"], column(table, "macs"), column(table, "params"), latency_source(table),
                column(table, "predicted_ms"), column(table, "latency_lower_ms"), column(table, "latency_upper_ms"),
                column(table, "feasible", True))]


def symbols(table: pd.DataFrame) -> list[str]:
    """Marker symbols: filled where the latency is measured, hollow where predicted; a cross where infeasible."""
    return [("circle" if ok else "x") + ("" if measured else "-open")
            for ok, measured in zip(column(table, "feasible", True), is_measured(table))]


def evaluations_trace(evaluations: pd.DataFrame, measured: bool, generations: tuple[float, float],
                      colorbar: bool) -> go.Scatter:
    """The evaluated subnets whose latency is measured (filled markers) or predicted (hollow), coloured by
    generation on the scale `generations` shared by both; infeasible ones drawn as crosses."""
    rows = evaluations[is_measured(evaluations) == measured]
    return go.Scatter(
        x=rows["latency_ms"], y=rows["miou"], mode="markers",
        name="evaluated subnets: measured" if measured else "evaluated subnets: predicted only",
        customdata=subnet_hover(rows), hovertemplate=SUBNET_HOVER,
        marker={"size": 7, "opacity": 0.75, "color": column(rows, "generation", 0), "colorscale": "Viridis",
                "cmin": generations[0], "cmax": generations[1], "showscale": colorbar,
                "colorbar": {"title": {"text": "generation"}, "thickness": 14, "dtick": 1},
                "symbol": symbols(rows), "line": {"width": 0 if measured else 1.5}})


def evaluations_traces(evaluations: pd.DataFrame) -> list[go.Scatter]:
    """Every evaluated subnet, measured and predicted-only apart (empty groups left out); one colour bar. With
    several skeletons, coloured by skeleton instead of generation."""
    if skeleton_of(evaluations).nunique() > 1:
        return skeleton_traces(evaluations)
    generation = numbers(evaluations, "generation").fillna(0)
    scale = (float(generation.min()), float(generation.max())) if len(generation) else (0.0, 0.0)
    groups = [measured for measured in (True, False) if (is_measured(evaluations) == measured).any()]
    return [evaluations_trace(evaluations, measured, scale, colorbar=index == 0)
            for index, measured in enumerate(groups)]


def skeleton_of(table: pd.DataFrame) -> pd.Series:
    """The skeleton of each row (a genotype key is '<skeleton>:<choices>'; NaN for another key)."""
    return table["key"].astype(str).str.extract(r"^([^:]+):", expand=False)


def skeleton_color(name: str) -> str:
    return SKELETON_COLORS.get(name, "#7f7f7f")


def skeleton_traces(evaluations: pd.DataFrame) -> list[go.Scatter]:
    """The evaluated subnets of each skeleton in its colour, measured (filled) and predicted-only (hollow) apart."""
    traces = []
    for name, rows in evaluations.groupby(skeleton_of(evaluations), sort=False):
        for measured in (True, False):
            part = rows[is_measured(rows) == measured]
            if len(part):
                traces.append(go.Scatter(
                    x=part["latency_ms"], y=part["miou"], mode="markers",
                    name=f"{name}: {'measured' if measured else 'predicted only'}",
                    customdata=subnet_hover(part), hovertemplate=SUBNET_HOVER,
                    marker={"size": 7, "opacity": 0.75, "color": skeleton_color(name), "symbol": symbols(part),
                            "line": {"width": 0 if measured else 1.5, "color": skeleton_color(name)}}))
    return traces


def front_trace(front: pd.DataFrame, name: str = "Pareto front") -> go.Scatter:
    """A front as a staircase (the attainment surface) through its points, sorted by latency; a point is filled
    where its latency is measured, hollow where predicted."""
    front = front.sort_values(["latency_ms", "miou"], ascending=[True, False])
    skeletons = skeleton_of(front)
    fill = [skeleton_color(s) for s in skeletons] if skeletons.nunique() > 1 else FRONT_COLOR
    return go.Scatter(
        x=front["latency_ms"], y=front["miou"], mode="lines+markers", name=name, line_shape="hv",
        line={"color": FRONT_COLOR, "width": 2},
        marker={"size": 9, "color": fill, "symbol": symbols(front), "line": {"width": 2, "color": FRONT_COLOR}},
        customdata=subnet_hover(front), hovertemplate=SUBNET_HOVER)


def before_intervals(measurements: pd.DataFrame | None) -> dict[str, tuple[Any, Any]]:
    """key -> (lower, upper): the interval the search had for a subnet just before measuring it."""
    if measurements is None:
        return {}
    last = measurements.drop_duplicates("key", keep="last")
    return {str(key): (lower, upper) for key, lower, upper in zip(
        last["key"], column(last, "lower_ms"), column(last, "upper_ms"))}


def first_measurements(measurements: pd.DataFrame | None) -> dict[str, Any]:
    """key -> the first of two measurements of a subnet the search measured again (search.recheck)."""
    if measurements is None:
        return {}
    last = measurements.drop_duplicates("key", keep="last")
    return {str(key): first for key, first in zip(last["key"], column(last, "first_ms")) if not is_missing(first)}


def prediction_hover(front: pd.DataFrame, measurements: pd.DataFrame | None, statistic: str) -> list[str]:
    """Hover text of a measured front point's prediction: measured (the run's latency.statistic, and the p90 where
    that is another; the first measurement where it was measured twice), predicted before measuring, final
    predictor."""
    before, firsts = before_intervals(measurements), first_measurements(measurements)
    texts = []
    for key, ms, p90, earlier, predicted, lower, upper in zip(
            front["key"], front["latency_ms"], column(front, "measured_p90_ms"), column(front, "predicted_before_ms"),
            column(front, "predicted_ms"), column(front, "latency_lower_ms"), column(front, "latency_upper_ms")):
        tail = "" if statistic == "p90" else f" (p90 {fmt(p90, '.2f')} ms)"
        lines = [escape(str(key)), f"measured {statistic} {fmt(ms, '.2f')} ms{tail}"]
        if str(key) in firsts:
            first = fmt(firsts[str(key)], ".2f")
            lines.append(f"measured twice, first {first} ms (above its interval): the lower kept")
        if not is_missing(earlier):
            low, high = before.get(str(key), (None, None))
            lines.append(f"predicted before measuring {fmt(earlier, '.2f')} ms, 90 % interval "
                         f"{interval_text(low, high)}")
        else:
            lines.append("measured before the search (latency stage)")
        lines.append(f"final predictor {fmt(predicted, '.2f')} ms, 90 % interval {interval_text(lower, upper)}")
        texts.append("<br>".join(lines))
    return texts


def prediction_traces(front: pd.DataFrame, measurements: pd.DataFrame | None, statistic: str) -> list[go.Scatter]:
    """Beside each measured front point its prediction (the one before measuring where the search measured it,
    the final predictor's otherwise): a small marker joined to the measured point by a thin line."""
    measured = front[is_measured(front)]
    predicted = prediction_before(measured)
    keep = predicted.notna()
    measured, predicted = measured[keep], predicted[keep]
    if measured.empty:
        return []
    name = "front: prediction beside measurement"
    xs = [x for ms, guess in zip(measured["latency_ms"], predicted) for x in (guess, ms, None)]
    ys = [y for miou in measured["miou"] for y in (miou, miou, None)]
    return [
        go.Scatter(x=xs, y=ys, mode="lines", name=name, legendgroup=name, showlegend=False, hoverinfo="skip",
                   line={"color": FRONT_COLOR, "width": 1, "dash": "dot"}),
        go.Scatter(x=predicted, y=measured["miou"], mode="markers", name=name, legendgroup=name,
                   marker={"symbol": "line-ns-open", "size": 11, "color": FRONT_COLOR, "line": {"width": 2}},
                   text=prediction_hover(measured, measurements, statistic), hovertemplate="%{text}<extra></extra>"),
    ]


def pick_latency(pick: Pick) -> tuple[Any, bool]:
    """A pick's latency as the search knew it: its measurement, or (True) its prediction when it has none."""
    measured = pick.get("measured_ms")
    return (pick.get("predicted_ms"), True) if is_missing(measured) else (measured, False)


def place_words(pick: Pick) -> str:
    """The pick's place in a few words: '≤ 35 ms', 'nearest 33 % of range' (the front point nearest that place
    along the front's latency range) or 'knee'."""
    if is_missing(pick.budget_ms):
        return "knee"
    return f"≤ {pick.budget_ms:g} ms" if pick.span is None else f"nearest {100 * pick.span:g} % of range"


def pick_name(pick: Pick) -> str:
    """A pick's legend entry: 'pick large (xlarge skeleton): nearest 33 % of range', with 'not retrained'."""
    skeleton = f" ({pick.skeleton} skeleton)" if pick.skeleton else ""
    return f"pick {pick.label}{skeleton}: {place_words(pick)}" + ("" if pick.retrained else ", not retrained")


def pick_point(pick: Pick, after: bool) -> tuple[Any, Any, Any, str] | None:
    """(latency, mIoU, spread, what) of a pick: the search's measurement (its prediction when unmeasured) and
    inherited mIoU, or (after) the retrain stage's re-measurement and retrained mIoU where known, with the standard
    deviation of that mIoU over the retraining seeds (None for one seed or before retraining); None when unknown."""
    (x, predicted), y, spread = pick_latency(pick), pick.get("miou"), None
    what = "as searched: " + ("predicted latency" if predicted else "measured latency") + ", inherited mIoU"
    if after:
        remeasured, retrained = pick.remeasured_ms(), pick.get("retrained_miou")
        if is_missing(remeasured) and is_missing(retrained):
            return None
        x = x if is_missing(remeasured) else remeasured
        y, spread = (y, None) if is_missing(retrained) else (retrained, pick.get("retrained_miou_std"))
        what = "after retraining: re-measured latency, retrained mIoU"
    return None if is_missing(x) or is_missing(y) else (x, y, spread, what)


def pick_trace(pick: Pick, color: str, after: bool) -> go.Scatter | None:
    """A pick as a star in its colour: filled where the search put it (its legend entry), open after retraining
    (with error bars of one standard deviation where retrained under several seeds); None when unknown."""
    point = pick_point(pick, after)
    if point is None:
        return None
    x, y, spread, what = point
    name = pick_name(pick)
    place = f"placed {place_words(pick)}" + ("" if is_missing(pick.budget_ms) else f" ({pick.budget_ms:.2f} ms)")
    return go.Scatter(
        x=[x], y=[y], mode="markers", name=name, legendgroup=name, showlegend=not after,
        error_y={"type": "data", "array": [spread], "visible": True, "color": color} if spread else None,
        marker={"symbol": "star-open" if after else "star", "size": 17, "color": color,
                "line": {"width": 2, "color": color}},
        hovertemplate="<br>".join(escape(line) for line in (name, pick.key, place, what))
        + "<br>latency %{x:.2f} ms, mIoU %{y:.4f}<extra></extra>")


def add_picks(figure: go.Figure, picks: list[Pick]) -> None:
    """Each pick in its own colour and legend entry: its star as searched, its star after retraining with an arrow
    from one to the other, and its budget (dashed) or position along the front's latency range (dotted) as a vertical
    line."""
    for index, pick in enumerate(picks):
        color = PICK_COLORS[index % len(PICK_COLORS)]
        for after in (False, True):
            trace = pick_trace(pick, color, after)
            if trace is not None:
                figure.add_trace(trace)
        add_pick_arrow(figure, pick)
        if not is_missing(pick.budget_ms):
            figure.add_vline(x=pick.budget_ms, line_dash="dash" if pick.span is None else "dot", line_color=color,
                             line_width=1.5, legendgroup=pick_name(pick))


def add_pick_arrow(figure: go.Figure, pick: Pick) -> None:
    """An arrow from a pick's search point to its re-measured/retrained point."""
    before, after = pick_point(pick, after=False), pick_point(pick, after=True)
    if before and after and before[:2] != after[:2]:
        (ax, ay, *_), (x, y, *_) = before, after
        figure.add_annotation(x=x, y=y, ax=ax, ay=ay, xref="x", yref="y", axref="x", ayref="y", text="",
                              showarrow=True, arrowhead=2, arrowsize=1.2, arrowwidth=1.5, arrowcolor="#555",
                              standoff=9, startstandoff=9)


def unmet_budgets(picks: list[Pick], config: dict[str, Any]) -> list[tuple[float, str]]:
    """(ms, label) of the configuration's budgets (selection.budgets_ms) that no pick carries: no front point met
    them."""
    labels = {pick.label for pick in picks}
    configured = setting(config, "selection.budgets_ms") or {}
    return sorted((float(budget), str(label)) for label, budget in configured.items()
                  if str(label) not in labels and not is_missing(budget))


def add_unmet_budgets(figure: go.Figure, picks: list[Pick], config: dict[str, Any]) -> None:
    """The budgets no front point met as grey dashed lines, their labels in rows down the plot's top so that no two
    overlap."""
    for row, (budget, label) in enumerate(unmet_budgets(picks, config)):
        figure.add_vline(x=budget, line_dash="dash", line_color="#777", line_width=1)
        figure.add_annotation(x=budget, y=1 - 0.06 * row, xref="x", yref="paper", xanchor="left", yanchor="top",
                              showarrow=False, font={"size": 11, "color": "#555"},
                              text=escape(f"{label} ≤ {budget:g} ms: no front point within"))


REFERENCE_SYMBOLS = ("star-diamond", "star-square", "star-triangle-up", "hexagram", "star-triangle-down", "diamond")


def references_traces(references: pd.DataFrame) -> list[go.Scatter]:
    """SqueezeNAS's released networks of the skeletons, scored and measured as the search's subnets, one legend
    entry each (filled where measured)."""
    traces = []
    for index, (name, rows) in enumerate(references.groupby("reference", sort=False)):
        measured = is_measured(rows).all()
        traces.append(go.Scatter(
            x=rows["latency_ms"], y=rows["miou"], mode="markers", name=escape(f"released {name}"),
            customdata=subnet_hover(rows), hovertemplate=SUBNET_HOVER,
            marker={"size": 13, "color": REFERENCE_COLOR if measured else "white",
                    "symbol": REFERENCE_SYMBOLS[index % len(REFERENCE_SYMBOLS)],
                    "line": {"width": 1.5, "color": REFERENCE_COLOR}}))
    return traces


def latency_words(run: Run) -> str:
    """What the trade-off's latency is: 'latency, measured where measured' once the search measured any subnet,
    'predicted latency' when it measured none."""
    tables = [table for table in (run.evaluations, run.front) if table is not None]
    if any(is_measured(table).any() for table in tables):
        return "latency (measured; predicted where not measured)"
    return "predicted latency"


def tradeoff_figure(run: Run) -> go.Figure:
    """Inherited-weight mIoU vs latency (the search's objective: measured where measured) of every subnet, the
    front with the prediction beside each measured point, the released networks, the picks and the budgets; every
    name in the legend below the plot, none written on it."""
    figure = go.Figure()
    if run.evaluations is not None:
        figure.add_traces(evaluations_traces(evolution_rows(run.evaluations)))
    if run.dnas is not None:
        figure.add_trace(dnas_trace(run.dnas, measured=False))
    if run.front is not None:
        figure.add_traces(prediction_traces(run.front, run.search_measurements, run.statistic))
        figure.add_trace(front_trace(run.front))
    if run.references is not None and len(run.references):
        figure.add_traces(references_traces(run.references))
    add_picks(figure, run.picks)
    add_unmet_budgets(figure, run.picks, run.config)
    words = latency_words(run)
    figure.update_layout(
        title={"text": f"Search: mIoU (inherited weights) vs {words}<br><sup>{PICKS_KEY}</sup>"},
        xaxis_title=f"{words} (ms)", yaxis_title="mIoU", legend=LEGEND_BELOW, height=760,
        margin={"t": 90}, template="plotly_white")
    return figure


def dnas_trace(dnas: pd.DataFrame, measured: bool) -> go.Scatter:
    """DNAS genotypes, one per lambda: at the latency the search ended with (filled diamonds; measured where
    measured, as latency_source says) or at the DNAS sweep's own measurement (open)."""
    x = dnas["measured_ms"] if measured else dnas["latency_ms"]
    name = "DNAS: measured latency" if measured else "DNAS genotype per λ (search latency)"
    sources = ["measured"] * len(dnas) if measured else latency_source(dnas)
    return go.Scatter(
        x=x, y=dnas["miou"], mode="markers" if measured else "markers+text", name=name,
        text=[f"λ={lam:g}" for lam in dnas["lambda"]], textposition="bottom right",
        customdata=[[escape(str(key)), si(macs), source]
                    for key, macs, source in zip(dnas["key"], dnas["macs"], sources)],
        marker={"symbol": "diamond-open" if measured else "diamond", "size": 12, "color": "#1f77b4",
                "line": {"width": 2, "color": "#1f77b4"}},
        hovertemplate="%{text} %{customdata[0]}<br>mIoU %{y:.4f}, latency %{x:.2f} ms (%{customdata[2]}), "
                      "MACs %{customdata[1]}<extra></extra>")


def strategies_figure(run: Run) -> go.Figure:
    """The evolution's own front beside the DNAS sweep, on inherited mIoU vs latency (measured where measured)."""
    figure = go.Figure()
    if run.evaluations is not None:
        figure.add_trace(front_trace(evolution_front(run.evaluations), name="evolution front"))
    figure.add_trace(dnas_trace(run.dnas, measured=False))
    if run.dnas["measured_ms"].notna().any():
        figure.add_trace(dnas_trace(run.dnas, measured=True))
    figure.update_layout(title={"text": "The evolution's front and the DNAS λ sweep (inherited mIoU)", "y": 0.98},
                         xaxis_title=f"{latency_words(run)} (ms)", yaxis_title="mIoU", legend=LEGEND_ABOVE,
                         height=520, margin={"t": 110}, template="plotly_white")
    return figure


def parity_title(accuracy: dict[str, Any] | None) -> str:
    """The parity figure's title: the latency stage's predictor (before the search refit it) and its accuracy."""
    if accuracy is None:
        return "Latency stage's predictor on held-out measurements"
    return (f"Latency stage's predictor on held-out measurements: MAPE {fmt(accuracy.get('mape'), '.2f', ' %')}, "
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


def round_names(rounds: pd.DataFrame) -> list[str]:
    """'round 2: search, after generation 5, 8 measured' for each round, as hover text."""
    return [f"round {number}: {escape(str(phase))}"
            + ("" if is_missing(generation) else f", after generation {generation:.0f}")
            + f", {fmt(measured, '.0f')} measured"
            for number, phase, generation, measured in zip(rounds["round"], column(rounds, "phase", ""),
                                                           numbers(rounds, "generation"), column(rounds, "measured"))]


ROUND_SERIES = (("mape", "MAPE", "#d62728"), ("within_10", "within ±10 %", "#2ca02c"),
                ("coverage", "interval coverage", "#1f77b4"))


def rounds_figure(rounds: pd.DataFrame) -> go.Figure:
    """The predictor's accuracy on each round's measured subnets before it saw them (percent), with the intervals'
    nominal coverage; a round that measured nothing is a gap."""
    names = round_names(rounds)
    figure = go.Figure([
        go.Scatter(x=rounds["round"], y=numbers(rounds, name), mode="lines+markers", name=label,
                   line={"color": color}, text=names,
                   hovertemplate="%{text}<br>" + label + " %{y:.1f} %<extra></extra>")
        for name, label, color in ROUND_SERIES])
    figure.add_trace(go.Scatter(x=rounds["round"], y=numbers(rounds, "nominal_coverage"), mode="lines",
                                name="nominal coverage", line={"color": "#1f77b4", "dash": "dash", "width": 1},
                                hovertemplate="nominal coverage %{y:.0f} %<extra></extra>"))
    figure.update_layout(title="Latency predictor on each round's subnets, before measuring them (out of sample)",
                         xaxis_title="measuring round", yaxis_title="percent", xaxis={"dtick": 1},
                         yaxis={"rangemode": "tozero"}, legend=LEGEND_ABOVE, height=420, margin={"t": 100},
                         template="plotly_white")
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


HATCHES = (("", "plain"), ("/", "striped"), (".", "dotted"), ("x", "crossed"), ("-", "dashed"), ("|", "lined"))
"""With class colours, the picks' bars told apart by hatching (named in the legend), in selection.json's order."""


def css_color(rgb: Any) -> str:
    """'rgb(r, g, b)' for an [r, g, b] triple, grey for anything else."""
    ok = isinstance(rgb, (list, tuple)) and len(rgb) == 3
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})" if ok else "rgb(127, 127, 127)"


def class_colors(pick: Pick, count: int) -> list[str] | None:
    """metrics.json's class_colors ([r, g, b] per class, a user dataset's) as CSS colours; None when absent or not
    one per class."""
    colors = pick.get("class_colors")
    return [css_color(rgb) for rgb in colors] if isinstance(colors, list) and len(colors) == count else None


def iou_bars(pick: Pick, index: int) -> go.Bar:
    """A pick's per-class IoU in the pick's colour (as on the trade-off); with class colours each bar in its class's
    colour, hatched by the pick's place in selection.json."""
    iou = pick.get("iou")
    classes = pick.get("class_names") or [f"class {number}" for number in range(len(iou))]
    colors, (hatch, words) = class_colors(pick, len(iou)), HATCHES[index % len(HATCHES)]
    marker = {"color": PICK_COLORS[index % len(PICK_COLORS)]} if colors is None else {
        "color": colors, "line": {"color": "#222", "width": 1},
        "pattern": {"shape": hatch, "fillmode": "overlay", "fgcolor": "#222"}}
    name = pick_name(pick) + ("" if colors is None else f" ({words} bars)")
    return go.Bar(x=[escape(str(label)) for label in classes], y=[None if is_missing(v) else v for v in iou],
                  name=escape(name), marker=marker, hovertemplate="%{x}: IoU %{y:.4f}<extra>%{fullData.name}</extra>")


def iou_figure(picks: list[Pick]) -> go.Figure:
    """Per-class IoU of the picked networks with one (after retraining), as grouped bars, one legend entry per pick;
    with class colours (metrics.json's class_colors) the bars and the class names take them."""
    figure = go.Figure([iou_bars(pick, index) for index, pick in enumerate(picks) if pick.get("iou")])
    first = figure.data[0]
    colors = class_colors(next(pick for pick in picks if pick.get("iou")), len(first.x))
    if colors is not None:
        ticks = [f'<span style="color:{color}">■</span> {name}' for color, name in zip(colors, first.x)]
        figure.update_xaxes(tickmode="array", tickvals=list(first.x), ticktext=ticks)
    figure.update_layout(title="Per-class IoU of the picked networks", barmode="group", yaxis_title="IoU",
                         yaxis_range=[0, 1], xaxis_tickangle=-40, legend=LEGEND_ABOVE, height=480,
                         margin={"t": 100}, template="plotly_white")
    return figure


def audit_figure(audit: pd.DataFrame, summary: dict[str, Any] | None) -> go.Figure:
    """Stand-alone mIoU of the audited front points against both inherited-weight proxies."""
    summary = summary or {}
    figure = go.Figure()
    groups = audit["group"] if "group" in audit else pd.Series(["front"] * len(audit), index=audit.index)
    symbols = groups.map({"front": "circle", "random": "square", "extremes": "diamond"}).fillna("circle")
    for proxy, name in (("inherited_miou", "BN recalibrated"), ("inherited_miou_no_recalibration", "running BN")):
        tau = summary.get(f"{proxy}_kendall_tau")
        figure.add_trace(go.Scatter(
            x=audit[proxy], y=audit["standalone_miou"], mode="markers", name=f"{name} (Kendall τ {fmt(tau)})",
            marker={"symbol": list(symbols)}, text=[escape(f"{key} ({group})") for key, group in zip(audit["key"],
                                                                                                   groups)],
            hovertemplate="%{text}<br>inherited %{x:.4f}<br>stand-alone %{y:.4f}<extra></extra>"))
    steps = summary.get("train_steps")
    counts = ", ".join(f"{n} {group}" for group, n in groups.value_counts(sort=False).items())
    figure.update_layout(
        title=f"Proxy fidelity: {counts} (○ front, □ random, ◇ extremes); {fmt(steps, '.0f')} stand-alone steps each",
        xaxis_title="inherited-weight mIoU", yaxis_title="stand-alone mIoU", legend=LEGEND_ABOVE, height=480,
        margin={"t": 100}, template="plotly_white")
    return figure
