"""Stage latency: measure chosen genotypes on the target device, fit the latency predictor, report its accuracy.

The device is this machine (a backend of hardware/backends.py) or a device agent reached over HTTP
(`python -m hardware.agent` on the target, hardware/client.py here). Every measurement goes through the per-device
measurement store, so a genotype measured by any earlier run is not measured again.

Which genotypes: `latency.measurements` spread over the MACs range of a seeded random pool (predictors/design.py;
with several skeletons an even share over each skeleton's range),
`latency.heldout` other random genotypes measured only to test the predictor, and optionally `latency.active`
more, chosen where the predictor's interval is widest near the optimistic front of the pool (inherited mIoU vs
predicted latency). The predictor's features are the space's per-layer costs, with or without the candidates'
one-hot columns, whichever explains the training measurements better (leave-one-out); with several skeletons the
skeleton is drawn first, the extremes of each are in the pool, and the predictor is one over all skeletons or one per
skeleton, whichever cross-validates better (engine/latency/model.py); accuracy.json then gives the held-out
accuracy per skeleton too.

With `latency.transfer.enabled` and other devices' measurements of this space in the store (engine/latency/transfer.py),
the stage measures `latency.transfer.shots` genotypes instead of `latency.measurements`, chosen where the sources
disagree most (predictors/fewshot.py), and the sources' combination competes with the plain predictor on
cross-validated error; accuracy.json says which sources carried weight and which predictor was kept. Without sources it
measures `latency.measurements` as usual and accuracy.json says why it did not transfer.

Writes runs/<name>/latency/: measurements.csv, predictor/ (JSON files; one folder per skeleton when there is one
predictor per skeleton; the sources' table, sources.csv, when there were sources), heldout.csv and accuracy.json.
"""

from __future__ import annotations

import logging
import math
import random
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from rich.progress import track

from engine.config import UNSEEN, ExperimentConfig
from engine.errors import DeviceError
from engine.evaluation.inherited import evaluator_for
from engine.files import write_csv, write_json
from engine.latency.meter import STAT_FIELD, Meter, experiment_spaces, latency_of, origin
from engine.latency.model import (
    FEATURE_SETS,
    LatencyModel,
    Model,
    Transfer,
    fit_predictor,
    fit_transferred,
    save_latency_model,
    space_costs,
    space_features,
)
from engine.latency.transfer import Source, SourceTable, find_sources
from engine.paths import ARTEFACTS as A
from engine.paths import RunPaths
from engine.runner import Context, Stage
from engine.training.distributed import World
from engine.training.supernet import load_supernets
from hardware.protocol import Measurement
from predictors.design import active, spread
from predictors.evaluation import accuracy_report
from spaces import Genotype, extremes, sample_of

log = logging.getLogger(__name__)
Choose = Callable[[list[Genotype], int], np.ndarray]


def candidate_pool(config: ExperimentConfig) -> list[Genotype]:
    """The extremes and a seeded random pool of distinct genotypes."""
    names = config.space.skeletons
    rng = random.Random(config.seed)
    pool = extremes(names) + [sample_of(names, rng) for _ in range(config.latency.pool)]
    return list(dict.fromkeys(pool))


def spread_genotypes(config: ExperimentConfig, pool: list[Genotype], count: int, choose: Choose) -> list[Genotype]:
    """`count` pool genotypes as `choose` picks them from each skeleton's own: an even share of each (a skeleton with
    a narrow range is not left with few)."""
    shares = np.array_split(np.arange(count), len(config.space.skeletons))
    chosen = []
    for name, share in zip(config.space.skeletons, shares):
        own = [g for g in pool if g.skeleton == name]
        chosen += [own[i] for i in choose(own, min(len(share), len(own)))]
    return chosen


def by_macs(config: ExperimentConfig) -> Choose:
    """Spread over the MACs range (predictors.design.spread)."""
    costs = space_costs(config)
    return lambda own, count: spread(np.array([costs.genotype_macs(g) for g in own], dtype=np.float64), count,
                                     config.seed)


def by_sources(config: ExperimentConfig, transfer: Transfer) -> Choose:
    """Where the sources disagree most (FewShotRegressor.design), over the space's cost features."""
    feature_set = FEATURE_SETS[0]
    regressor = transfer.regressor(feature_set)
    return lambda own, count: regressor.design(space_features(own, transfer.costs, feature_set), count, config.seed)


def read_sources(config: ExperimentConfig, meter: Meter) -> tuple[SourceTable | None, str]:
    """The store's sources of this space for this device (engine/latency/transfer.py), or None and why."""
    protocol, settings = meter.protocol, config.latency.transfer
    target = Source(meter.store.device, config.latency.backend, protocol.resolution, protocol.batch, protocol.threads)
    return find_sources(config.latency.store, settings.sources, set(experiment_spaces(config).values()), target,
                        STAT_FIELD[config.latency.statistic], settings.min_rows)


def measure_train(config: ExperimentConfig, meter: Meter, pool: list[Genotype], transfer: Transfer | None
                  ) -> tuple[list[Genotype], list[Measurement], list[dict]]:
    """The genotypes the predictor is fit on, measured: latency.measurements spread over MACs, or with a transfer
    latency.transfer.shots where the sources disagree most."""
    if transfer is None:
        train = spread_genotypes(config, pool, config.latency.measurements, by_macs(config))
        measured = meter.measure(train, "spread genotypes")
    else:
        train = spread_genotypes(config, pool, config.latency.transfer.shots, by_sources(config, transfer))
        measured = meter.measure(train, "shots chosen where the sources disagree")
    return train, measured, _rows(train, measured, "train", meter)


def transfer_sources(config: ExperimentConfig, meter: Meter, paths: RunPaths | None = None
                     ) -> tuple[SourceTable | None, dict]:
    """The sources of a transfer (none unless latency.transfer.enabled) and what accuracy.json says of them: those
    the stage read from the store when it started (`paths.transfer_sources`, its work), else the store's now."""
    settings = config.latency.transfer
    if not settings.enabled:
        return None, {}
    kept = None if paths is None else SourceTable.load(paths.transfer_sources)
    table, reason = (kept, "") if kept is not None else read_sources(config, meter)
    if paths is not None and table is not None and kept is None:
        table.save(paths.transfer_sources)
    if table is None:
        log.warning("latency transfer: not transferring, %s; measuring latency.measurements (%d) genotypes", reason,
                    config.latency.measurements)
        return None, {"enabled": True, "used": False, "reason": reason}
    log.info("latency transfer from %d sources (%s): measuring latency.transfer.shots (%d) genotypes",
             len(table.sources), ", ".join(table.sources), settings.shots)
    return table, {"enabled": True, "used": True, "sources": table.rows()}


def heldout_genotypes(config: ExperimentConfig, exclude: set[Genotype]) -> list[Genotype]:
    rng = random.Random(config.seed + 1)
    chosen: dict[Genotype, None] = {}
    while len(chosen) < config.latency.heldout:
        genotype = sample_of(config.space.skeletons, rng)
        if genotype not in exclude:
            chosen[genotype] = None
    return list(chosen)


ACTIVE_CANDIDATES = 8
"""Pool genotypes scored (inherited mIoU) per active measurement, to choose where to measure."""


def choose_active(config: ExperimentConfig, model: LatencyModel, pool: list[Genotype], measured: set[Genotype],
                  score: Callable[[Genotype], float]) -> list[Genotype]:
    """`latency.active` pool genotypes where the interval is widest near the optimistic front; the other
    objective (inherited mIoU) is scored on a latency-spread subset of the pool only, as it costs a forward pass
    over the validation images per genotype."""
    count = config.latency.active
    predicted, _, _ = model.predict(pool)
    subset = [pool[i] for i in spread(predicted, min(len(pool), ACTIVE_CANDIDATES * count), config.seed)]
    _, lower, upper = model.predict(subset)
    miou = np.array([score(g) for g in track(subset, description="scoring candidates for active measurement")])
    taken = np.array([g in measured for g in subset])
    return [subset[i] for i in active(lower, upper, miou, count, taken)]


def accuracy(heldout: pd.DataFrame) -> dict:
    """The predictor's accuracy on the held-out genotypes; with several skeletons also on each one's
    (`per_skeleton`)."""
    def report(rows: pd.DataFrame) -> dict:
        if len(rows) < 2:  # nothing to rank
            return {"count": len(rows)}
        return accuracy_report(rows.measured_ms.to_numpy(), rows.predicted_ms.to_numpy()).as_dict()

    skeletons = heldout.key.map(lambda key: Genotype.from_key(key).skeleton)
    out = report(heldout)
    if skeletons.nunique() > 1:
        out["per_skeleton"] = {name: report(rows) for name, rows in heldout.groupby(skeletons, sort=False)}
    return out


def write_tables(paths: RunPaths, rows: list[dict], heldout: pd.DataFrame, model: Model,
                 sources: SourceTable | None, transfer: dict) -> None:
    write_csv(paths.measurements, pd.DataFrame(rows))
    write_csv(paths.heldout, heldout)
    save_latency_model(model, paths.predictor, sources)
    layout = {"layout": model.layout, "layout_cv_mape": model.errors} if model.errors else {}
    write_json(paths.accuracy, {**accuracy(heldout), **layout, **({"transfer": transfer} if transfer else {})})


def _rows(genotypes: Sequence[Genotype], measurements: Sequence[Measurement], role: str, meter: Meter) -> list[dict]:
    """measurements.csv rows: every statistic a run may search by (STAT_FIELD), so the search finds its column, and
    where each measurement came from (ORIGIN_COLUMNS)."""
    return [{"key": g.key, "role": role, **{field: getattr(m.stats, field) for field in STAT_FIELD.values()},
             "cv": m.stats.cv, **origin(m, meter.store.device, g.key in meter.fresh)}
            for g, m in zip(genotypes, measurements)]


def mean_iou_scorer(config: ExperimentConfig, world: World) -> Callable[[Genotype], float]:
    """Inherited mIoU of a genotype, the supernet loaded on first use (cached in runs/<name>/inherited.jsonl)."""

    @lru_cache(maxsize=1)
    def evaluator():
        return evaluator_for(config, load_supernets(config, world.device), world.device)

    return lambda genotype: evaluator().score(genotype)["miou"]


def run(ctx: Context) -> None:
    """Measure, fit and report (module docstring)."""
    config, meter = ctx.config, ctx.meter
    if meter is None:
        raise DeviceError("the latency stage has to measure but the device is unreachable; start the device agent "
                          "or check latency.agent.url")
    settings, costs = config.latency, space_costs(config)
    pool = candidate_pool(config)
    sources, transfer = transfer_sources(config, meter, ctx.paths)
    base = None if sources is None else Transfer(sources, costs)
    train, measured, rows = measure_train(config, meter, pool, base)
    model = fit_predictor(costs, train, latency_of(measured, settings.statistic), config.seed, base)
    if settings.active:
        extra = choose_active(config, model, pool, set(train), mean_iou_scorer(config, ctx.world))
        extra_measured = meter.measure(extra, "active genotypes")
        rows += _rows(extra, extra_measured, "active", meter)
        train, measured = train + extra, measured + extra_measured
        model = fit_predictor(costs, train, latency_of(measured, settings.statistic), config.seed, base)
    if base is not None:
        fit = model if model.layout == "transfer" else \
            fit_transferred(costs, train, latency_of(measured, settings.statistic), config.seed, base)
        transfer.update(chosen=model.layout == "transfer", measured=len(train), fit=fit.transfer,
                        compared=all(math.isfinite(error) for error in model.errors.values()))
    tests = heldout_genotypes(config, set(train))
    tested = meter.measure(tests, "held-out genotypes")
    rows += _rows(tests, tested, "heldout", meter)
    predicted, lower, upper = model.predict(tests)
    heldout = pd.DataFrame({"key": [g.key for g in tests], "measured_ms": latency_of(tested, settings.statistic),
                            "predicted_ms": predicted, "lower_ms": lower, "upper_ms": upper})
    write_tables(ctx.paths, rows, heldout, model, sources, transfer)


def _reads(config: ExperimentConfig) -> tuple[str, ...]:
    return (A.supernet,) if config.latency.active else ()


def _config(config: ExperimentConfig) -> tuple[str, ...]:
    scoring = ("data", *UNSEEN, "evaluation") if config.latency.active else ()
    return ("seed", "space", "latency", *scoring)


STAGE = Stage("latency", run, reads=_reads, config=_config, device=True,
              work=(A.inherited_cache, A.transfer_sources), writes=(A.measurements, A.heldout, A.predictor, A.accuracy))
