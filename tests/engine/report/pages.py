"""Reading a written report back in the report's tests: a figure's traces and layout, a table's rows."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import numpy as np


def figure(page: str, div_id: str) -> tuple[list[dict], dict]:
    """The traces and the layout Plotly draws in the figure whose div id is `div_id`."""
    start = page.index("Plotly.newPlot(", page.index(f'<div id="{div_id}"'))
    decoder = json.JSONDecoder()
    rest = page[page.index("[", start):]
    data, end = decoder.raw_decode(rest)
    layout, _ = decoder.raw_decode(rest[end:].lstrip(", "))
    return data, layout


def values(array: Any) -> list:
    """A trace's array as a list, decoding the typed arrays Plotly writes for numpy data ({"bdata", "dtype"})."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def traces(data: list[dict], name: str) -> list[dict]:
    """Every trace called `name`."""
    return [item for item in data if item["name"] == name]


def trace(data: list[dict], name: str) -> dict:
    """The trace called `name` that draws markers (the first one when none does)."""
    found = traces(data, name)
    return next((item for item in found if "markers" in item.get("mode", "")), found[0])


def section(page: str, heading: str) -> str:
    """The HTML under `heading`, up to the next heading."""
    return page.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]


def table_rows(page: str, heading: str) -> list[list[str]]:
    """The body rows (cell texts) of the first table under `heading`."""
    body = section(page, heading).split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]
