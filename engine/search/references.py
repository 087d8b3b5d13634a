"""The networks SqueezeNAS released for the run's skeletons (lat_<skeleton>, mac_<skeleton>) as reference points.

After the search, each is scored as every trial is (inherited-weight mIoU from the run's supernet, BN
recalibrated, on the same validation images) and measured on the device through the meter and its store, or, when
the stage has no device (search.measure_limit 0 and no DNAS), given the predictor's latency, labelled
`predicted`. They join evaluations.csv with `reference` set to their name and `strategy` 'reference'; they are not
trials (not in the study) and never on the front, so the search's own results stay as they were, and the report
draws them on the trade-off figure.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from engine.evaluation.scoring import open_scorer
from engine.latency.meter import Meter, latency_of
from spaces import squeezenas

if TYPE_CHECKING:
    from engine.search.evolution import EvolutionarySearch


def reference_rows(search: EvolutionarySearch, meter: Meter | None, device) -> pd.DataFrame:
    """One evaluations row per released network of the run's skeletons (module docstring)."""
    config = search.config
    named = {name: genotype for skeleton in config.space.skeletons
             for name, genotype in squeezenas.released_for(skeleton).items()}
    if not named or not config.search.references:
        return pd.DataFrame()
    genotypes = list(named.values())
    rows = search.describe(genotypes, {"strategy": "reference"})
    with open_scorer(config, device) as scorer:
        miou = {genotype.key: float(record["miou"]) for genotype, record in scorer.scores(genotypes)}
    measurements = meter.measure(genotypes, "reference networks") if meter is not None else None
    for index, (name, row) in enumerate(zip(named, rows)):
        row.update({"reference": name, "miou": miou[row["key"]], "front": False, "trial": math.nan})
        if measurements is not None:
            ms = float(latency_of(measurements, config.latency.statistic)[index])
            row.update({"latency_ms": ms, "measured_ms": ms, "latency_source": "measured",
                        "measured_p90_ms": float(measurements[index].stats.p90_ms)})
            row["feasible"] = search.feasible(row)
    return pd.DataFrame(rows)


def split_references(evaluations: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the search's evaluations, the reference rows) of an evaluations.csv table."""
    if "reference" not in evaluations:
        return evaluations, evaluations.iloc[:0]
    is_reference = evaluations.reference.notna()
    return evaluations[~is_reference], evaluations[is_reference]
