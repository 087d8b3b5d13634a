"""The report's HTML tables: the run summary, the picked networks, the latency predictor's accuracy, each search
strategy's cost with how NSGA-II's front and the DNAS genotypes dominate each other, and the hand-made baseline.
Every cell is escaped in `html_table`."""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd

from engine.report.formatting import MISSING, fmt, is_missing, si
from engine.report.load import Pick, Run, nested, nsga2_front, nsga2_rows
from engine.search.fronts import dominated_by, minimised


def html_table(header: list[str] | None, rows: list[list[str]], key_column: int | None = None) -> str:
    """An HTML table (without a header row when `header` is None); every cell is escaped here."""
    head = "" if header is None else "<thead><tr>" + "".join(f"<th>{escape(c)}</th>" for c in header) + "</tr></thead>"
    body = "".join(
        "<tr>" + "".join(
            f'<td class="key">{escape(cell)}</td>' if index == key_column else f"<td>{escape(cell)}</td>"
            for index, cell in enumerate(row)) + "</tr>"
        for row in rows)
    return f'<div class="table"><table>{head}<tbody>{body}</tbody></table></div>'


def skeleton_text(config: dict[str, Any]) -> str:
    """'small width 0.5 input 128x256', with the parts the config has."""
    parts = [str(nested(config, "space.skeleton", MISSING))]
    if nested(config, "space.width") is not None:
        parts.append(f"width {nested(config, 'space.width')}")
    if isinstance(nested(config, "space.input_size"), list):
        parts.append("input " + "x".join(map(str, nested(config, "space.input_size"))))
    return " ".join(parts)


def trials_text(run: Run) -> str:
    """'60 over 3 generations', or the number of evaluated subnets when generations were not recorded."""
    evaluations = run.evaluations
    if evaluations is None:
        return MISSING
    if "generation" not in evaluations:
        return str(len(evaluations))
    return f"{len(evaluations)} over {evaluations['generation'].nunique()} generations"


def pick_text(pick: Pick) -> str:
    return f"{pick.label} ({pick.key})" if pick.retrained else f"{pick.label} ({pick.key}, not retrained)"


def summary_table(run: Run) -> str:
    """Run name, skeleton, data, device/backend, trials, front size and picked networks."""
    config = run.config
    device = f"{nested(config, 'latency.device', MISSING)} / {nested(config, 'latency.backend', MISSING)}"
    rows = [
        ["run", str(config.get("name", run.directory.name))],
        ["skeleton", skeleton_text(config)],
        ["data", str(nested(config, "data.kind", MISSING))],
        ["device / backend", device],
        ["trials (evaluated subnets)", trials_text(run)],
        ["front size", MISSING if run.front is None else str(len(run.front))],
        ["picked networks", ", ".join(pick_text(pick) for pick in run.picks) or MISSING],
    ]
    return html_table(None, rows)


def budget_text(pick: Pick) -> str:
    return "knee (no budget)" if is_missing(pick.budget_ms) else f"≤ {pick.budget_ms:g} ms"


def predicted_text(pick: Pick) -> str:
    """'12.34 [11.50, 13.20]': the predicted latency and its interval."""
    interval = f"[{fmt(pick.get('predicted_lower_ms'), '.2f')}, {fmt(pick.get('predicted_upper_ms'), '.2f')}]"
    return f"{fmt(pick.get('predicted_ms'), '.2f')} {interval}"


def picks_table(picks: list[Pick]) -> str:
    """One row per picked network: prediction, re-measurement, mIoU before/after retraining, costs, ONNX check;
    a network not retrained yet shows its front values and says so."""
    header = ["label", "key", "budget", "predicted ms [interval]", "measured median ms", "measured p90 ms",
              "inherited mIoU", "retrained mIoU", "MACs", "params", "ONNX max abs diff"]
    rows = [[
        pick.label,
        pick.key,
        budget_text(pick),
        predicted_text(pick),
        fmt(pick.measured("median_ms"), ".2f"),
        fmt(pick.measured("p90_ms"), ".2f"),
        fmt(pick.get("inherited_miou"), ".4f"),
        fmt(pick.get("retrained_miou"), ".4f") if pick.retrained else "not retrained",
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


def cost_text(seconds: Any, cost: dict[str, Any]) -> str:
    """Seconds of search and their cost: GPU-hours on a CUDA device, CPU-hours (seconds × threads) otherwise."""
    if is_missing(seconds):
        return MISSING
    gpu = str(cost.get("device", "?")).startswith("cuda")
    hours = seconds / 3600 if gpu else seconds * cost.get("threads", 1) / 3600
    return f"{seconds:.0f} s ({hours:.3f} {'GPU' if gpu else 'CPU'}-h)"


def nsga2_cost_row(run: Run, cost: dict[str, Any]) -> list[str]:
    part = cost["nsga2"]
    found = MISSING if run.evaluations is None else str(len(nsga2_rows(run.evaluations)))
    parts = f"supernet {fmt(part.get('supernet_s'), '.0f', ' s')} + search {fmt(part.get('search_s'), '.0f', ' s')}"
    return ["NSGA-II", cost_text(part.get("total_s"), cost), parts, found]


def dnas_cost_row(run: Run, cost: dict[str, Any]) -> list[str]:
    part = cost["dnas"]
    lambdas = part.get("lambdas_s", [])
    parts = (f"warm-up {fmt(part.get('warmup_s'), '.0f', ' s')} + {len(lambdas)} λ {fmt(sum(lambdas), '.0f', ' s')}"
             f" + lookup table {fmt(part.get('lookup_s'), '.0f', ' s')}")
    found = str(len(run.dnas)) if run.dnas is not None else "0"
    return [f"DNAS ({part.get('cost', '?')} cost)", cost_text(part.get("total_s"), cost), parts, found]


def cost_table(run: Run) -> str:
    """Each strategy's search cost (wall seconds on the run's device) and how the DNAS points fare."""
    cost = run.search_cost or {}
    where = f"{cost.get('device', '?')}, {cost.get('threads', '?')} threads"
    rows = [row(run, cost) for name, row in (("nsga2", nsga2_cost_row), ("dnas", dnas_cost_row)) if name in cost]
    table = html_table(["strategy", f"search cost ({where})", "of which", "genotypes"], rows)
    if run.dnas is not None and run.evaluations is not None:
        table += f"<p>{dominance_text(nsga2_front(run.evaluations), run.dnas)}</p>"
    return table


def dominance_text(front: pd.DataFrame, dnas: pd.DataFrame) -> str:
    """How many points of each method a point of the other dominates, on inherited mIoU and predicted latency."""
    f_front, f_dnas = (minimised(table.miou, table.latency_ms) for table in (front, dnas))
    dnas_beaten, front_beaten = int(dominated_by(f_dnas, f_front).sum()), int(dominated_by(f_front, f_dnas).sum())
    return (f"On inherited mIoU and predicted latency, NSGA-II's front dominates {dnas_beaten} of the "
            f"{len(dnas)} DNAS genotypes; DNAS genotypes dominate {front_beaten} of its {len(front)} points.")


def baseline_table(baseline: dict[str, Any]) -> str:
    """The hand-made k3_e6 network against the searched one at the same measured latency."""
    rows = [[label, str(part["key"]), fmt(part["measured_ms"], ".2f", " ms"), si(part["macs"]),
             fmt(part["standalone_miou"], ".4f")]
            for label, part in (("hand-made (k3_e6 everywhere)", baseline["handmade"]),
                                ("searched", baseline["searched"]))]
    text = (f"<p>Both trained stand-alone for {baseline.get('train_steps')} steps (batch "
            f"{baseline.get('train_batch_size')}); searched − hand-made mIoU "
            f"{fmt(baseline.get('miou_difference'), '+.4f')} at a measured latency ratio of "
            f"{fmt(baseline.get('latency_ratio'), '.3f')}.</p>")
    return html_table(["network", "genotype", "measured latency", "MACs", "stand-alone mIoU"], rows, 1) + text
