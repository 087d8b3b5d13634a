"""The run report: one self-contained Plotly page (report.html) made from the files a run directory holds."""

from engine.report.page import write_report

__all__ = ["write_report"]
