"""Stage report: runs/<name>/report.html, one self-contained Plotly page made from the files the earlier stages
wrote (engine/report/) and the configuration (config.yaml); every file it reads is an input and every setting it
shows a configuration section, so the page is remade whenever one changes."""

from __future__ import annotations

from engine.config import ExperimentConfig
from engine.report import write_report
from engine.runner import Context, Stage

INPUTS = ("space.csv", "evaluations.csv", "front.csv", "hypervolume.csv", "search_cost.json",
          "dnas/dnas.csv", "latency/heldout.csv", "latency/accuracy.json", "selected/selection.json",
          "selected/*/metrics.json", "audit/audit.csv", "audit/audit.json", "audit/baseline.json")


def run(ctx: Context) -> None:
    write_report(ctx.paths.root)


def _every_section(config: ExperimentConfig) -> tuple[str, ...]:
    return tuple(type(config).model_fields)


STAGE = Stage("report", run, uses=INPUTS, writes=("report.html",), config=_every_section)
