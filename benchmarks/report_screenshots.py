"""Screenshots of run reports as a user sees them: each run's report.html in headless Chromium at 1400 px width, one
full-page PNG per run, and what in the page is wider than the window or hidden behind a table's scroll bar.

    python -m benchmarks.report_screenshots RUN_DIR [RUN_DIR ...] [--out docs/images] [--width 1400] [--colors 256]

Writes <out>/report-<run folder name>.png (quantised to `--colors` colours, so a long page stays small; 0 keeps full
colour) and prints, per run, its size and each overflowing element (engine.report.page.OVERFLOWING), or that
nothing overflows; exits 1 when something does. Needs playwright and Debian's chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

from PIL import Image

from engine.report.page import OVERFLOWING

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
DRAWN = "[...document.querySelectorAll('.plotly-graph-div')].every(graph => graph.querySelector('.main-svg'))"


def shoot(browser, report: Path, width: int) -> tuple[bytes, list[str]]:
    """The full-page PNG of a report at `width` px and the elements that overflow it."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(report.as_uri())
    page.wait_for_function(DRAWN, timeout=30000)
    page.wait_for_timeout(500)  # responsive figures settle on the window's width
    overflowing = page.evaluate(OVERFLOWING)
    png = page.screenshot(full_page=True)
    page.close()
    return png, overflowing


def quantised(png: bytes, colors: int) -> bytes:
    """The PNG with a palette of `colors` colours (the page is mostly flat colour), or as it is for 0."""
    if not colors:
        return png
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories holding report.html")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--colors", type=int, default=256)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    if shutil.which(CHROMIUM) is None:
        parser.error(f"{CHROMIUM} is absent (apt-get install chromium)")
    missing = [str(run) for run in args.runs if not (run / "report.html").exists()]
    if missing:
        parser.error(f"no report.html in {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for run in args.runs:
            png, overflowing = shoot(browser, run / "report.html", args.width)
            target = args.out / f"report-{run.resolve().name}.png"
            target.write_bytes(quantised(png, args.colors))
            width, height = Image.open(target).size
            print(f"{target}: {width}x{height} px, {target.stat().st_size / 1e6:.2f} MB")
            print("\n".join(f"  overflows: {line}" for line in overflowing) or "  nothing overflows the window")
            failed = failed or bool(overflowing)
        browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
