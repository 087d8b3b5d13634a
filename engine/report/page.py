"""The run report's page: its sections in order and `write_report`, which writes run_dir/report.html.

The page reads only the files the earlier stages wrote (engine/report/load.py) and shows a summary table (with the
device the latency was measured on), the picked networks (each beside its skeleton, how it was placed, where its
model.onnx is; then their genotypes and costs), the search trade-off (latency measured where measured), every point of
the front, the released networks against the front, the latency predictor's parity plot and accuracy on the latency
stage's held-out genotypes, the predictor in the search loop (its accuracy on each measuring round's subnets before it
saw them), hypervolume per generation and per-class IoU, then, where the run has them, the accuracy surrogate per
round, the search strategies side by side, the fidelity audit and the hand-made designs against their searched
matches. plotly.js is embedded once, so the page opens without network access; tables wrap their cells to fit the
page (a 1400 px window shows every column); each figure's div id is the slug of its heading, so the same files give
the same bytes. A section whose input files are absent is replaced by a one-line note naming them."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path

import plotly.graph_objects as go

from engine.files import setting, write_text
from engine.report import figures, tables
from engine.report.load import Run, load_run

log = logging.getLogger(__name__)

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
OVERFLOWING = """(() => {
    const width = document.documentElement.clientWidth, found = [];
    const where = (node) => {
        let at = node.closest('div.table, .plotly-graph-div') || node;
        while (at && at.tagName !== 'H2') at = at.previousElementSibling;
        return at ? at.textContent : 'page';
    };
    for (const node of document.querySelectorAll('h1, h2, p, table, div.table, .plotly-graph-div, svg.main-svg')) {
        const box = node.getBoundingClientRect();
        const span = `${box.left.toFixed(0)}..${box.right.toFixed(0)} px`;
        if (box.left < -0.5 || box.right > width + 0.5)
            found.push(`${where(node)}: ${node.tagName.toLowerCase()} spans ${span}`);
        if (node.matches('div.table') && node.scrollWidth > node.clientWidth + 1)
            found.push(`${where(node)}: table hides ${node.scrollWidth - node.clientWidth} px behind its scroll bar`);
    }
    if (document.documentElement.scrollWidth > width)
        found.push(`page: ${document.documentElement.scrollWidth} px wide in a ${width} px window`);
    return found;
})()"""
"""A browser script: what in the page is wider than the window or hidden behind a table's scroll bar (one line each;
none when everything fits), for the browser test and benchmarks/report_screenshots.py."""
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1.5em; max-width: 1280px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; white-space: nowrap; }
th { background: #f3f3f3; vertical-align: bottom; white-space: normal; }
div.table { overflow-x: auto; }
td.key { font-family: monospace; white-space: normal; word-break: break-all; min-width: 14em; max-width: 48em; }
td.text { white-space: normal; min-width: 12em; }
p.note { color: #8a5300; background: #fff6e5; padding: 0.4em 0.8em; border-left: 3px solid #e0a030; }
"""


@dataclass
class Section:
    """One heading of the page and its body: a figure, an HTML fragment, or None with the note saying why; `lead`, an
    HTML fragment shown before a body (not before the note)."""

    heading: str
    body: go.Figure | str | None
    note: str = ""
    lead: str = ""

    @property
    def slug(self) -> str:
        """The heading as an HTML id: 'Search cost: DNAS' -> 'search-cost-dnas'."""
        return re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")


def absent(run: Run, *relative: str) -> str:
    """The note for a section left out: which files were absent."""
    return f"Left out: {', '.join(relative)} not found in {run.directory}."


def sections(run: Run) -> list[Section]:
    """The page's sections in order; a section whose inputs are absent carries a note instead of a body."""
    has_tradeoff = run.evaluations is not None or run.front is not None
    has_iou = any(pick.get("iou") for pick in run.picks)
    return [
        Section("Summary", tables.summary_table(run)),
        *pick_sections(run),
        Section("Search trade-off", figures.tradeoff_figure(run) if has_tradeoff else None,
                absent(run, "evaluations.csv", "front.csv")),
        Section("Pareto front", tables.front_table(run) if run.front is not None else None, absent(run, "front.csv")),
        *reference_sections(run),
        Section("Latency predictor",
                figures.parity_figure(run.heldout, run.accuracy) if run.heldout is not None else None,
                absent(run, "latency/heldout.csv")),
        Section("Latency predictor accuracy", tables.accuracy_table(run.accuracy) if run.accuracy else None,
                absent(run, "latency/accuracy.json")),
        search_loop_section(run),
        Section("Hypervolume", figures.hypervolume_figure(run.hypervolume) if run.hypervolume is not None else None,
                absent(run, "hypervolume.csv")),
        Section("Per-class IoU", figures.iou_figure(run.picks) if has_iou else None,
                absent(run, "selected/<label>/metrics.json with per-class iou")),
    ] + surrogate_sections(run) + strategy_sections(run) + audit_sections(run)


def pick_sections(run: Run) -> list[Section]:
    """The picked networks (label and skeleton, placement, latency, mIoU, model.onnx), then their genotypes and
    costs; a note when selected/selection.json is absent."""
    if not run.picks:
        return [Section("Picked networks", None, absent(run, "selected/selection.json"))]
    return [Section("Picked networks", tables.picks_table(run.picks)),
            Section("Picked networks: genotypes and costs", tables.pick_details_table(run.picks))]


def reference_sections(run: Run) -> list[Section]:
    """SqueezeNAS's released networks of the skeleton against the front, when the search scored them."""
    if run.references is None or not len(run.references):
        return []
    return [Section("Released networks on the front", tables.references_table(run.references, run.front))]


def surrogate_sections(run: Run) -> list[Section]:
    """The accuracy surrogate per round, when the run's configuration enables it."""
    if not setting(run.config, "search.accuracy_surrogate.enabled", False):
        return []
    body = tables.surrogate_table(run.surrogate) if run.surrogate is not None else None
    return [Section("Accuracy surrogate per round", body, absent(run, "search/surrogate.csv"))]


def search_loop_section(run: Run) -> Section:
    """The latency predictor in the search's measuring rounds: the front's measured share, a table and a figure per
    round; a note when search/rounds.csv is absent or holds no round."""
    heading = "Latency predictor in the search loop"
    if run.rounds is None:
        return Section(heading, None, absent(run, "search/rounds.csv"))
    if run.rounds.empty:
        limit = setting(run.config, "search.measure_limit", "?")
        return Section(heading, None, f"The search measured in no round (search/rounds.csv has no rows; "
                                      f"search.measure_limit {limit}): its latency is predicted throughout.")
    return Section(heading, figures.rounds_figure(run.rounds), lead=tables.search_loop_text(run))


def strategy_sections(run: Run) -> list[Section]:
    """The evolution beside DNAS with each one's search cost, when the run used DNAS."""
    if run.dnas is not None:
        return [Section("Search strategies: evolution and DNAS", figures.strategies_figure(run)),
                Section("Search cost", tables.cost_table(run))]
    if "dnas" in (setting(run.config, "search.strategies", []) or []):
        return [Section("Search strategies: evolution and DNAS", None, absent(run, "dnas/dnas.csv"))]
    return []


def audit_sections(run: Run) -> list[Section]:
    """The fidelity audit, when the run's configuration enables it (files of an earlier, audited run are left out)."""
    if not setting(run.config, "audit.enabled", False):
        return []
    if run.audit is not None:
        found = [Section("Proxy fidelity audit", figures.audit_figure(run.audit, run.audit_summary),
                         lead=tables.ceiling_text(run.audit_summary or {}))]
        if (run.audit_summary or {}).get("per_skeleton"):
            found.append(Section("Proxy fidelity per skeleton", tables.skeleton_audit_table(run.audit_summary)))
        if run.baseline is not None:
            found.append(Section("Searched vs hand-made at the latency of each hand-made design",
                                 tables.baseline_table(run.baseline)))
        return found
    return [Section("Proxy fidelity audit", None, absent(run, "audit/audit.csv"))]


def render(section: Section, with_plotlyjs: bool) -> str:
    """A section's heading and body (after its lead); a figure's div id is the section's slug."""
    heading = f"<h2>{escape(section.heading)}</h2>"
    if section.body is None:
        return f'{heading}\n<p class="note">{escape(section.note)}</p>'
    heading = heading + section.lead
    if isinstance(section.body, go.Figure):
        return heading + section.body.to_html(full_html=False, include_plotlyjs=with_plotlyjs, config=PLOT_CONFIG,
                                              div_id=section.slug)
    return heading + section.body


def page(run: Run, parts: list[Section]) -> str:
    """The whole HTML page; plotly.js is embedded with the first figure only."""
    rendered, embedded = [], False
    for section in parts:
        is_figure = isinstance(section.body, go.Figure)
        rendered.append(render(section, with_plotlyjs=is_figure and not embedded))
        embedded = embedded or is_figure
    title = escape(f"Run report: {run.config.get('name', run.directory.name)}")
    head = f'<head>\n<meta charset="utf-8">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>'
    body = f"<body>\n<h1>{title}</h1>\n" + "\n".join(rendered) + "\n</body>"
    return f'<!DOCTYPE html>\n<html lang="en">\n{head}\n{body}\n</html>\n'


def write_report(run_dir: Path) -> Path:
    """Write run_dir/report.html from the files of the run directory and return its path."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    parts = sections(run)
    for section in parts:
        if section.body is None:
            log.info("report: section %r left out (%s)", section.heading, section.note)
    return write_text(run_dir / "report.html", page(run, parts))
