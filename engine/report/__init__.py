"""The run report: one self-contained Plotly page (report.html) made from the files a run directory holds.

load.py reads the run directory into a `Run`; figures.py (Plotly) and tables.py (HTML) draw it, with numbers
formatted by formatting.py; page.py puts the sections in order and writes the page (`write_report`).
"""

from engine.report.page import write_report

__all__ = ["write_report"]
