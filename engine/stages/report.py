"""Stage report: runs/<name>/report.html, one self-contained Plotly page made from the files the earlier stages
wrote (engine/report/) and the configuration (config.yaml); every file it reads is an input and every setting it
shows a configuration section, so the page is remade whenever one changes."""

from __future__ import annotations

from engine.config import ExperimentConfig
from engine.paths import ARTEFACTS as A
from engine.report import write_report
from engine.runner import Context, Stage

INPUTS = (A.space, A.evaluations, A.front, A.hypervolume, A.search_cost, A.rounds, A.search_measurements, A.surrogate,
          A.dnas,
          A.heldout, A.accuracy, A.selection, A.picked_metrics("*"), A.audit, A.audit_summary, A.baseline)


def run(ctx: Context) -> None:
    write_report(ctx.paths.root)


def _every_section(config: ExperimentConfig) -> tuple[str, ...]:
    return tuple(type(config).model_fields)


STAGE = Stage("report", run, uses=INPUTS, writes=(A.report,), config=_every_section)
