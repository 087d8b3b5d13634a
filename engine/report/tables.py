"""The report's HTML tables: the run summary (with where and how latency was measured), the picked networks (each
beside its skeleton, how it was placed and where its model.onnx is), every point of the front, the latency
predictor's accuracy (on the latency stage's held-out genotypes, and per measuring round of the search), each search
strategy's cost with how the evolution's front and the DNAS genotypes dominate each other, the released networks against
the front and the hand-made designs against their searched matches. Every cell is escaped in `html_table`."""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd

from engine.files import setting
from engine.latency.model import LEAVE_ONE_OUT_BELOW
from engine.report.formatting import MISSING, fmt, is_missing, si
from engine.report.load import (
    Pick,
    Run,
    evolution_front,
    evolution_rows,
    is_measured,
    latency_source,
    numbers,
    spread_statistic,
)
from engine.search.evolution import EVOLUTION
from engine.search.fronts import dominated_by, minimised


def html_table(header: list[str] | None, rows: list[list[str]], key_column: int | None = None,
               text_columns: tuple[int, ...] = ()) -> str:
    """An HTML table (without a header row when `header` is None); every cell is escaped here. Cells keep to one line
    but the genotype keys of `key_column` and the words of `text_columns`, which wrap so the table fits the page."""
    classes = {key_column: ' class="key"', **{index: ' class="text"' for index in text_columns}}
    head = "" if header is None else "<thead><tr>" + "".join(f"<th>{escape(c)}</th>" for c in header) + "</tr></thead>"
    body = "".join("<tr>" + "".join(f"<td{classes.get(index, '')}>{escape(cell)}</td>" for index, cell in enumerate(row))
                   + "</tr>" for row in rows)
    return f'<div class="table"><table>{head}<tbody>{body}</tbody></table></div>'


def skeleton_text(config: dict[str, Any]) -> str:
    """'small width 0.5 input 128x256', with the parts the config has."""
    names = setting(config, "space.skeleton", MISSING)
    parts = [" + ".join(names) if isinstance(names, list) else str(names)]
    if setting(config, "space.width") is not None:
        parts.append(f"width {setting(config, 'space.width')}")
    if isinstance(setting(config, "space.input_size"), list):
        parts.append("input " + "x".join(map(str, setting(config, "space.input_size"))))
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
    """'large (xlarge skeleton)', 'large (xlarge skeleton; not retrained)'."""
    notes = ([f"{pick.skeleton} skeleton"] if pick.skeleton else []) + ([] if pick.retrained else ["not retrained"])
    return f"{pick.label} ({'; '.join(notes)})" if notes else pick.label


def front_text(front: pd.DataFrame | None) -> str:
    """'7 (7 measured)': the front's size and how many of its points have a measured latency."""
    return MISSING if front is None else f"{len(front)} ({int(is_measured(front).sum())} measured)"


def measurements_text(run: Run) -> str:
    """'23 in 4 rounds (limit 40)': the subnets the search measured, from search_cost.json and search/rounds.csv."""
    measuring = run.measuring or {}
    count = measuring.get("measured_total")
    if count is None:
        return MISSING
    rounds = "" if run.rounds is None else f" in {len(run.rounds)} rounds"
    return f"{count}{rounds} (limit {measuring.get('limit', MISSING)})"


UNRECORDED = "not recorded in the run"
GPU_BACKENDS = ("cuda", "tensorrt")


def device_name_text(config: dict[str, Any], record: dict[str, Any]) -> str:
    """The device's name: latency.device_name, else the re-measurement's GPU (GPU backends) or CPU and host."""
    if setting(config, "latency.device_name"):
        return f"{setting(config, 'latency.device_name')} (latency.device_name)"
    gpu = any(word in str(record.get("backend", "")) for word in GPU_BACKENDS) and record.get("gpu")
    name = gpu or record.get("cpu")
    if not name:
        return (f"{UNRECORDED}: no pick was re-measured (the provenance of the retrain stage's re-measurements "
                f"names it)")
    return f"{name} (host {record.get('host', MISSING)})"


def device_rows(run: Run) -> list[list[str]]:
    """Where the latency was measured: this machine or the agent (its address), the device's name, the backend
    and its version, threads and precision; from config.yaml and the re-measurements' provenance, saying what the
    run did not record."""
    config, record = run.config, run.provenance or {}
    if setting(config, "latency.device", "local") == "agent":
        where = f"device agent at {record.get('agent') or setting(config, 'latency.agent.url', MISSING)}"
    else:
        where = "this machine (latency.device local)"
    backend = str(record.get("backend") or setting(config, "latency.backend", MISSING))
    version = record.get("backend_version") or f"(version {UNRECORDED})"
    threads = fmt(record.get("threads", setting(config, "latency.threads")), "d")
    precision = record.get("precision") or f"precision {UNRECORDED}"
    return [["latency measured on", where], ["device", device_name_text(config, record)],
            ["backend", f"{backend} {version}"], ["threads, precision", f"{threads}, {precision}"]]


def summary_table(run: Run) -> str:
    """Run name, skeleton, data, where and how latency was measured, trials, front size (how much of it measured),
    the search's measurements and picked networks."""
    config = run.config
    rows = [
        ["run", str(config.get("name", run.directory.name))],
        ["skeleton", skeleton_text(config)],
        ["data", str(setting(config, "data.kind", MISSING))],
        *device_rows(run),
        ["trials (evaluated subnets)", trials_text(run)],
        ["front size", front_text(run.front)],
        ["measured by the search", measurements_text(run)],
        ["picked networks", ", ".join(pick_text(pick) for pick in run.picks) or MISSING],
    ]
    return html_table(None, rows, text_columns=(1,))


def place_text(pick: Pick) -> str:
    """How the pick was placed: '≤ 35 ms budget' (selection.budgets_ms: the highest mIoU within it), 'nearest 33 % of
    the front's latency range (3.52 ms)' (selection.budgets_span: the front point nearest that latency) or 'knee of
    the front'."""
    if is_missing(pick.budget_ms):
        return "knee of the front"
    if pick.span is None:
        return f"≤ {pick.budget_ms:g} ms budget"
    return f"nearest {100 * pick.span:g} % of the front's latency range ({pick.budget_ms:.2f} ms)"


def predicted_text(pick: Pick) -> str:
    """'12.34 [11.50, 13.20]': the final predictor's latency and its 90 % interval."""
    interval = f"[{fmt(pick.get('latency_lower_ms'), '.2f')}, {fmt(pick.get('latency_upper_ms'), '.2f')}]"
    return f"{fmt(pick.get('predicted_ms'), '.2f')} {interval}"


def search_measured_text(pick: Pick) -> str:
    """The search's measurement of the pick, or 'not measured' (picked on its prediction)."""
    value = pick.get("measured_ms")
    return "not measured" if is_missing(value) else fmt(value, ".2f")


def seeded_text(pick: Pick, field: str) -> str:
    """A pick's mIoU (`field` of metrics.json) and, retrained under several seeds, ± their standard deviation and
    the number of seeds."""
    text, spread = fmt(pick.get(field), ".4f"), pick.get(f"{field}_std")
    return text if spread is None else f"{text} ± {spread:.4f} ({len(pick.get(f'{field}_per_seed'))} seeds)"


def onnx_text(pick: Pick) -> str:
    """Where the pick's model.onnx is, relative to the run directory, or why there is none."""
    if pick.onnx:
        return pick.onnx
    return "not exported (retrain.export off)" if pick.retrained else "not retrained yet"


def picks_table(picks: list[Pick]) -> str:
    """One row per picked network: its skeleton beside its label, how it was placed, the search's and the retrain
    stage's latency, mIoU before and after retraining (and on the test split), where its model.onnx is; a network
    not retrained yet shows its front values and says so."""
    statistic = picks[0].statistic
    tested = [pick for pick in picks if pick.get("test_miou") is not None]
    header = ["pick", "skeleton", "placed by", "search: measured ms", f"retrain re-measurement: {statistic} ms",
              "inherited mIoU", "retrained mIoU (val)" if tested else "retrained mIoU",
              *([f"retrained mIoU (test split {tested[0].get('test_split')})"] if tested else []),
              "model.onnx (in the run directory)"]
    rows = [[
        pick.label, pick.skeleton or MISSING, place_text(pick), search_measured_text(pick),
        fmt(pick.remeasured_ms(), ".2f"), fmt(pick.get("miou"), ".4f"),
        seeded_text(pick, "retrained_miou") if pick.retrained else "not retrained",
        *([seeded_text(pick, "test_miou") if pick.get("test_miou") is not None else MISSING] if tested else []),
        onnx_text(pick),
    ] for pick in picks]
    return html_table(header, rows, text_columns=(2,))


def pick_details_table(picks: list[Pick]) -> str:
    """The picks' genotypes, predictions, the re-measurement's other statistic, costs and the ONNX check."""
    spread = spread_statistic(picks[0].statistic)
    header = ["pick", "genotype key", "predictor: ms [90 % interval]", f"retrain re-measurement: {spread} ms",
              "MACs", "params", "ONNX max abs diff"]
    rows = [[pick.label, pick.key, predicted_text(pick), fmt(pick.spread_ms(), ".2f"), si(pick.get("macs")),
             si(pick.get("params")), fmt(pick.get("onnx_max_abs_diff"), ".2e")] for pick in picks]
    return html_table(header, rows, key_column=1)


def front_table(run: Run) -> str:
    """Every point of the front by latency: genotype and skeleton, inherited mIoU, the search's measurement (its
    latency.statistic) or 'not measured', the final predictor's latency with its interval, MACs, params and the
    picks it became."""
    front = run.front.sort_values(["latency_ms", "miou"], ascending=[True, False], kind="stable")
    measured, picked = is_measured(front), {}
    for pick in run.picks:
        picked.setdefault(pick.key, []).append(pick.label)
    predicted = numbers(front, "predicted_ms").fillna(numbers(front, "latency_ms").where(~measured))
    rows = [[str(key), str(key).partition(":")[0] if ":" in str(key) else MISSING, fmt(miou, ".4f"),
             fmt(ms, ".2f") if is_measure else "not measured",
             f"{fmt(guess, '.2f')} [{fmt(lower, '.2f')}, {fmt(upper, '.2f')}]", si(macs), si(params),
             ", ".join(picked.get(str(key), [])) or MISSING]
            for key, miou, ms, is_measure, guess, lower, upper, macs, params in zip(
                front["key"], front["miou"], front["latency_ms"], measured, predicted,
                numbers(front, "latency_lower_ms"), numbers(front, "latency_upper_ms"), numbers(front, "macs"),
                numbers(front, "params"))]
    header = ["genotype key", "skeleton", "inherited mIoU", f"measured {run.statistic} ms",
              "predictor: ms [90 % interval]", "MACs", "params", "picked as"]
    return html_table(header, rows, key_column=0)


ACCURACY_ROWS = (("held-out measurements", "count", "d", ""), ("MAPE", "mape", ".2f", " %"),
                 ("RMSE", "rmse", ".3f", " ms"), ("within ±5 %", "within_5", ".1f", " %"),
                 ("within ±10 %", "within_10", ".1f", " %"), ("Kendall τ", "kendall_tau", ".3f", ""),
                 ("Spearman ρ", "spearman_rho", ".3f", ""))


def accuracy_table(accuracy: dict[str, Any]) -> str:
    """The latency predictor's accuracy on the latency stage's held-out genotypes (all, then each skeleton's when
    the run has several)."""
    parts = {"all": accuracy, **accuracy.get("per_skeleton", {})}
    rows = [[label, *(fmt(part.get(field), spec, unit) for part in parts.values())]
            for label, field, spec, unit in ACCURACY_ROWS]
    first = "all skeletons" if len(parts) > 1 else "value"
    table = html_table(["metric", first, *(f"skeleton {name}" for name in list(parts)[1:])], rows)
    table += transfer_text(accuracy.get("transfer") or {})
    errors = accuracy.get("layout_cv_mape") or {}
    if not errors:
        return table
    words = ", ".join(f"{name.replace('_', ' ')} {fmt(value, '.2f', ' %')}" for name, value in errors.items())
    return (f"{table}<p>Predictor: {escape(str(accuracy.get('layout', '?')).replace('_', ' '))}, the one with the "
            f"lowest cross-validated MAPE on the training measurements (5 folds, leave-one-out below "
            f"{LEAVE_ONE_OUT_BELOW}: {escape(words)}).</p>")


def ceiling_text(summary: dict[str, Any]) -> str:
    """One sentence: how the proxy ranks the audited subnets against how two trainings of them rank each other (the
    ceiling at this budget), with the 90 % intervals; with one seed, how to see the ceiling."""
    if "reference_kendall" not in summary:
        return ("<p>Set audit.seeds to 2 or more to see how far two trainings of the same subnets agree with each "
                "other: the most any proxy can reach at this training budget.</p>")
    def tau(name: str) -> str:
        low, high = summary.get(f"{name}_interval") or (None, None)
        return f"Kendall τ {fmt(summary.get(name), '.2f')} (90 % interval {fmt(low, '.2f')} to {fmt(high, '.2f')})"
    reference, proxy = summary.get("reference_kendall"), summary.get("proxy_kendall")
    share = (f"; the proxy reaches {fmt(100 * proxy / reference, '.0f', ' %')} of that ceiling"
             if not is_missing(reference) and not is_missing(proxy) and reference > 0 else "")
    return (f"<p>Inherited-weight mIoU ranks the {summary.get('count', '?')} audited subnets as their stand-alone "
            f"training does with {tau('proxy_kendall')}; {summary.get('seeds', 2)} trainings of the same subnets "
            f"agree with each other at {tau('reference_kendall')}, the most any proxy can reach at this training "
            f"budget{share}.</p>")


def transfer_text(transfer: dict[str, Any]) -> str:
    """What the latency stage's transfer did: why it did not transfer, or the sources that carried the fit (their
    share of the weight and ms of this device per ms of the source) and which predictor was kept."""
    if not transfer.get("enabled"):
        return ""
    if not transfer.get("used"):
        return f"<p>Transfer from other devices: not used, {escape(str(transfer.get('reason', '?')))}.</p>"
    carried = [entry for entry in transfer.get("fit", {}).get("sources", []) if entry.get("share", 0) >= 0.01]
    words = "; ".join(f"{entry['source']} {fmt(100 * entry['share'], '.0f', ' %')} "
                      f"({fmt(entry.get('ms_per_ms'), '.3g')} ms per ms)" for entry in carried) or "none"
    kept = "the transferred predictor" if transfer.get("chosen") else "the plain predictor (it cross-validated better)"
    if transfer.get("chosen") and transfer.get("compared") is False:
        kept = "the transferred predictor (the plain one needs more measurements to be cross-validated)"
    return (f"<p>Transfer from {len(transfer.get('sources', {}))} source(s) with {transfer.get('measured', '?')} "
            f"measurements on this device; {kept} is kept. Sources carrying the weight: {escape(words)}.</p>")


def cost_text(seconds: Any, cost: dict[str, Any]) -> str:
    """Seconds of search and their cost: GPU-hours on a CUDA device, CPU-hours (seconds × threads) otherwise."""
    if is_missing(seconds):
        return MISSING
    gpu = str(cost.get("device", "?")).startswith("cuda")
    hours = seconds / 3600 if gpu else seconds * cost.get("threads", 1) / 3600
    return f"{seconds:.0f} s ({hours:.3f} {'GPU' if gpu else 'CPU'}-h)"


def evolution_cost_row(run: Run, cost: dict[str, Any]) -> list[str]:
    part = cost[EVOLUTION]
    found = MISSING if run.evaluations is None else str(len(evolution_rows(run.evaluations)))
    parts = f"supernet {fmt(part.get('supernet_s'), '.0f', ' s')} + search {fmt(part.get('search_s'), '.0f', ' s')}"
    algorithm = setting(run.config, "search.algorithm", "nsga2")
    return [f"evolution ({algorithm})", cost_text(part.get("total_s"), cost), parts, found]


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
    rows = [row(run, cost) for name, row in ((EVOLUTION, evolution_cost_row), ("dnas", dnas_cost_row)) if name in cost]
    table = html_table(["strategy", f"search cost ({where})", "of which", "genotypes"], rows, text_columns=(2,))
    if run.dnas is not None and run.evaluations is not None:
        table += f"<p>{dominance_text(evolution_front(run.evaluations), run.dnas)}</p>"
    return table


def dominance_text(front: pd.DataFrame, dnas: pd.DataFrame) -> str:
    """How many points of each method a point of the other dominates, on inherited mIoU and the search's latency
    (measured where measured, predicted otherwise)."""
    f_front, f_dnas = (minimised(table.miou, table.latency_ms) for table in (front, dnas))
    dnas_beaten, front_beaten = int(dominated_by(f_dnas, f_front).sum()), int(dominated_by(f_front, f_dnas).sum())
    measured = sum(int(is_measured(table).sum()) for table in (front, dnas))
    latency = "latency (measured where measured, predicted otherwise)" if measured else "predicted latency"
    return (f"On inherited mIoU and {latency}, the evolution's front dominates {dnas_beaten} of the "
            f"{len(dnas)} DNAS genotypes; DNAS genotypes dominate {front_beaten} of its {len(front)} points.")


def spread_text(spread: dict[str, Any] | None, spec: str = ".4f") -> str:
    """'0.4122 ± 0.0031 (2 seeds)' from a {mean, std, per_seed} record; the value alone for one seed."""
    if not spread:
        return MISSING
    count = len(spread.get("per_seed", []))
    if spread.get("std") is None:
        return fmt(spread["mean"], spec)
    return f"{fmt(spread['mean'], spec)} ± {fmt(spread['std'], '.4f')} ({count} seeds)"


def baseline_table(baseline: dict[str, Any]) -> str:
    """Each hand-made design against the searched network nearest its measured latency, over the seeds: the latency
    ratio of each pair, flagged when it is not equal within baseline.TOLERANCE; the mean difference over the pairs at
    equal latency only."""
    if "pairs" not in baseline:
        return ("<p>audit/baseline.json is in the format of an earlier version (one pair, one seed); rerun "
                "<code>--stages baseline</code> to compare every design of audit.handmade.</p>")
    tested = bool(baseline.get("test_split"))
    rows = []
    for pair in baseline.get("pairs", []):
        hand, searched = pair["handmade"], pair["searched"]
        rows.append([str(pair["design"]), str(searched["key"]),
                     f"{fmt(hand['measured_ms'], '.2f')} / {fmt(searched['measured_ms'], '.2f')} ms "
                     f"({si(hand['macs'])} / {si(searched['macs'])} MACs)", _latency_match(pair),
                     spread_text(hand["standalone_miou"]), spread_text(searched["standalone_miou"]),
                     spread_text(pair["val_miou_difference"], "+.4f"),
                     *([spread_text(pair.get("test_miou_difference"), "+.4f")] if tested else [])])
    header = ["hand-made (one candidate everywhere)", "searched genotype", "measured: hand-made / searched",
              "latency match", "hand-made mIoU (val)", "searched mIoU (val)", "searched − hand-made (val)",
              *([f"searched − hand-made (test split {baseline.get('test_split')})"] if tested else [])]
    notes = "".join(f"<li>{escape(str(pair['design']))}: {escape(pair['note'])}</li>"
                    for pair in baseline.get("pairs", []) if pair.get("note"))
    return html_table(header, rows, 1, text_columns=(2, 3, 4, 5, 6, 7)) + (f"<ul>{notes}</ul>" if notes else "") + \
        _over_equal_pairs(baseline, tested)


def _latency_match(pair: dict[str, Any]) -> str:
    """The pair's latency ratio, and whether it counts as equal latency (an earlier baseline.json has no flag)."""
    ratio = f"ratio {fmt(pair.get('latency_ratio'), '.2f')}"
    if pair.get("equal_latency") is None:
        return ratio
    return f"{ratio}, equal" if pair["equal_latency"] else f"{ratio}, not reached ({fmt(pair.get('latency_gap_ms'), '+.2f')} ms)"


def _over_equal_pairs(baseline: dict[str, Any], tested: bool) -> str:
    pairs = len(baseline.get("pairs", []))
    equal = baseline.get("pairs_at_equal_latency", pairs)
    recipe = (f"<p>Every network trained stand-alone for {baseline.get('train_steps')} steps (batch "
              f"{baseline.get('train_batch_size')}) under {baseline.get('seeds')} seed(s), differences paired by seed. ")
    if not equal:
        tolerance = next((pair.get("tolerance") for pair in baseline.get("pairs", [])), None)
        within = f" (within ±{fmt(100 * tolerance, '.0f')} %)" if tolerance is not None else ""
        return recipe + (f"No pair is at equal measured latency{within}: the front does not reach the hand-made "
                         f"designs, so there is no comparison at equal latency.</p>")
    test = (f", on the test split {spread_text(baseline.get('test_miou_difference'), '+.4f')}" if tested else "")
    return recipe + (f"Over the {equal} of {pairs} pairs at equal measured latency searched − hand-made mIoU "
                     f"{spread_text(baseline.get('val_miou_difference'), '+.4f')} on val{test}.</p>")


def front_counts(run: Run) -> tuple[Any, Any]:
    """(front size, unmeasured front points): search_cost.json's "measuring", else front.csv's latency_source."""
    if run.measuring is not None:
        return run.measuring.get("front_size"), run.measuring.get("front_unmeasured")
    if run.front is None:
        return None, None
    return len(run.front), int((~is_measured(run.front)).sum())


def measuring_text(run: Run) -> str:
    """One line: how many front points are measured out of the front's size (and, when some are not, that
    search.measure_limit was spent), then how many subnets the search measured."""
    (size, unmeasured), measuring = front_counts(run), run.measuring or {}
    limit, count = measuring.get("limit"), measuring.get("measured_total")
    if size is None or unmeasured is None:
        return ""
    if not unmeasured:
        text = f"All {size} front points are measured."
    elif limit is None:
        text = f"{size - unmeasured} of the {size} front points are measured; {unmeasured} keep their prediction."
    else:
        text = (f"{size - unmeasured} of the {size} front points are measured: search.measure_limit ({limit}) was "
                f"spent, the other {unmeasured} keep their predicted latency.")
    if count is None:
        return text
    twice = measuring.get("measured_twice")
    again = (f" {twice} of them twice: their first measurement lay above the prediction interval, the lower of the "
             f"two is kept (search.recheck)." if twice else "")
    return f"{text} The search measured {count} subnets (limit {fmt(limit, 'd')}).{again}"


def coverage_text(coverage: Any, nominal: Any) -> str:
    """'86.0 % / 90 %': the share of measurements inside the interval against its nominal level."""
    return f"{fmt(coverage, '.1f', ' %')} / {fmt(nominal, '.0f', ' %')}"


ROUND_HEADER = ["round", "phase", "after generation", "evaluated", "measured", "MAPE", "within ±10 %", "Kendall τ",
                "coverage / nominal", "front size", "front unmeasured", "measured in all"]


def rounds_table(rounds: pd.DataFrame) -> str:
    """One row per measuring round: what it measured, the predictor's accuracy on those subnets before it saw them
    (out of sample), and the front after it."""
    generation = numbers(rounds, "generation")
    rows = [[
        fmt(row.get("round"), ".0f"),
        str(row.get("phase", MISSING)),
        fmt(gen, ".0f") if not is_missing(gen) else "after the search",
        fmt(row.get("evaluated"), ".0f"),
        fmt(row.get("measured"), ".0f"),
        fmt(row.get("mape"), ".2f", " %"),
        fmt(row.get("within_10"), ".1f", " %"),
        fmt(row.get("kendall_tau"), ".3f"),
        coverage_text(row.get("coverage"), row.get("nominal_coverage")),
        fmt(row.get("front_size"), ".0f"),
        fmt(row.get("front_unmeasured"), ".0f"),
        fmt(row.get("measured_total"), ".0f"),
    ] for row, gen in zip(rounds.to_dict(orient="records"), generation)]
    return html_table(ROUND_HEADER, rows)


def search_loop_text(run: Run) -> str:
    """The search-loop section's words and table: the front's measured share, then one row per round."""
    line = measuring_text(run)
    return (f"<p>{escape(line)}</p>" if line else "") + rounds_table(run.rounds)


SURROGATE_HEADER = ["round", "true evaluations so far", "evaluated this round", "of them mutants of the front",
                    "regressor chosen", "its cross-validated Kendall tau",
                    "Kendall tau on this round's subnets (unseen)", "mean abs. error on them"]


def surrogate_table(surrogate: pd.DataFrame) -> str:
    """One row per surrogate round: the regressor chosen and how well it ranked the subnets it had not seen."""
    rows = [[fmt(row.get("round"), ".0f"), fmt(row.get("evaluations"), ".0f"), fmt(row.get("batch"), ".0f"),
             fmt(row.get("local"), ".0f"), str(row.get("kind", MISSING)), fmt(row.get("cv_tau"), ".3f"),
             fmt(row.get("batch_tau"), ".3f"), fmt(row.get("batch_mae"), ".4f")]
            for row in surrogate.to_dict(orient="records")]
    note = ("<p>Only true inherited-weight evaluations are trials and points of the front; the surrogate's "
            "predictions only choose which subnets a round evaluates.</p>")
    return note + html_table(SURROGATE_HEADER, rows)


def references_table(references: pd.DataFrame, front: pd.DataFrame | None) -> str:
    """The released networks against the front: each one's inherited mIoU beside the best front point's at the same
    latency or less (both measured where measured), and the difference."""
    rows = []
    for name, key, ms, source, miou in zip(references["reference"], references["key"], references["latency_ms"],
                                           latency_source(references), references["miou"]):
        faster = front[front.latency_ms <= ms] if front is not None else None
        best = faster.miou.max() if faster is not None and len(faster) else float("nan")
        rows.append([str(name), str(key), f"{fmt(ms, '.2f', ' ms')} ({source})", fmt(miou, ".4f"), fmt(best, ".4f"),
                     fmt(best - miou, "+.4f")])
    header = ["released network", "genotype", "latency", "inherited mIoU", "front's best at ≤ this latency",
              "front − released"]
    return html_table(header, rows, 1) + ("<p>Scored with the run's supernet of each one's skeleton and validation "
                                          "images and measured as the search's subnets; not search trials.</p>")


def skeleton_audit_table(summary: dict[str, Any]) -> str:
    """The audit within each skeleton: its rank agreement, and how its supernet is calibrated (the mean gap between
    stand-alone and inherited mIoU); across skeletons: the audit's agreement over all."""
    rows = [[name, fmt(part.get("count"), "d"), fmt(part.get("inherited_miou_kendall_tau"), ".3f"),
             fmt(part.get("inherited_miou_spearman_rho"), ".3f"), fmt(part.get("inherited_mean"), ".4f"),
             fmt(part.get("standalone_mean"), ".4f"), fmt(part.get("gap_mean"), "+.4f")]
            for name, part in summary["per_skeleton"].items()]
    rows.append(["all (across skeletons)", fmt(summary.get("genotypes"), "d"),
                 fmt(summary.get("inherited_miou_kendall_tau"), ".3f"),
                 fmt(summary.get("inherited_miou_spearman_rho"), ".3f"), MISSING, MISSING, MISSING])
    table = html_table(["skeleton", "audited", "Kendall τ", "Spearman ρ", "mean inherited mIoU",
                        "mean stand-alone mIoU", "gap (stand-alone − inherited)"], rows)
    return (f"{table}<p>Each skeleton's supernet is trained apart; a skeleton whose gap is larger than another's is "
            f"under-rated on the front by about the difference, since the front compares inherited mIoU across "
            f"skeletons.</p>")
