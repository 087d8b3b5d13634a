"""Numbers as the report prints them (in tables and in hover text): fixed decimals, SI prefixes, a dash when absent."""

from __future__ import annotations

import math
from typing import Any

MISSING = "—"


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: Any, spec: str = ".3f", unit: str = "") -> str:
    """A number formatted with `spec` (and a unit), or a dash when it is absent."""
    return MISSING if is_missing(value) else f"{value:{spec}}{unit}"


def si(value: Any) -> str:
    """A count with an SI prefix: 1.23 G, 45.6 M, 7.8 k."""
    if is_missing(value):
        return MISSING
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g}"
