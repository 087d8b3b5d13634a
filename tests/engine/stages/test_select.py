"""The select stage's budgets: in ms, or placed along the front's measured latency range (selection.budgets_span),
and their configuration errors."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from engine.config import SelectionConfig
from engine.stages.select import pick

FRONT = pd.DataFrame({"key": ["a", "b", "c", "d"], "latency_ms": [2.0, 3.5, 5.0, 10.0],
                      "miou": [0.10, 0.20, 0.25, 0.30]})


def test_span_budgets_pick_along_the_front_s_latency_range_its_ends_exactly() -> None:
    picked, notes = pick(FRONT, {}, False, {"fastest": 0.0, "middle": 0.375, "slowest": 1.0})
    assert notes == []
    assert [(p["label"], p["key"], p["budget_ms"], p["budget_span"]) for p in picked] == [
        ("fastest", "a", 2.0, 0.0), ("middle", "c", 5.0, 0.375), ("slowest", "d", 10.0, 1.0)]


def test_a_span_budget_in_a_gap_of_the_front_takes_the_nearest_point_not_the_one_below() -> None:
    """Session 14's quickstart front: nothing between 2.40 and 4.37 ms; a third of the range is 4.19 ms."""
    front = pd.DataFrame({"key": ["a", "b", "c", "d"], "latency_ms": [2.40, 4.37, 5.45, 7.83],
                          "miou": [0.05, 0.10, 0.12, 0.20]})
    picked, _ = pick(front, {}, False, {"small": 0.0, "large": 0.33, "xlarge": 1.0})
    assert [p["key"] for p in picked] == ["a", "b", "d"] and picked[1]["budget_ms"] == pytest.approx(4.1919)
    picked, _ = pick(front, {"large": 4.19}, False, {})  # a budget in ms stays a limit
    assert [p["key"] for p in picked] == ["a"]
    even = front.assign(latency_ms=[2.0, 4.0, 5.0, 10.0])
    picked, _ = pick(even, {}, False, {"middle": 0.125})  # 3.0 ms, as near a as b: the faster
    assert [(p["key"], p["budget_ms"]) for p in picked] == [("a", 3.0)]


def test_span_and_ms_budgets_pick_together_in_order_of_their_ms() -> None:
    picked, _ = pick(FRONT, {"edge": 4.0}, False, {"fastest": 0.0})
    assert [(p["label"], p["key"], "budget_span" in p) for p in picked] == [("fastest", "a", True),
                                                                             ("edge", "b", False)]


@pytest.mark.parametrize("selection, field", [
    ({"budgets_span": {"small": 1.5}}, "budget small must be a fraction"),
    ({"budgets_span": {"small": -0.1}}, "budget small must be a fraction"),
    ({"budgets_span": {"small": 0.2}, "budgets_ms": {"small": 4.0}}, "given twice"),
    ({"budgets_span": {"knee": 0.2}, "budgets_ms": {}}, "name the knee"),
    ({"budgets_span": {"a/b": 0.2}}, "letters, digits"),
])
def test_bad_span_budgets_are_refused_naming_the_label(selection: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        SelectionConfig(**selection)
