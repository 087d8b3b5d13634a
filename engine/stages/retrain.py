"""Stage retrain: retrain each picked network stand-alone, evaluate it, export it to ONNX and re-measure it.

For every entry of selected/selection.json: training (engine/training/standalone.py, from scratch or from the supernet's
weights as `retrain.init` says; resumable, data-parallel under torchrun) under each of `retrain.seeds` seeds (the run's
seed, then + 1, ...: the initialisation and the batch order, and on synthetic streets the scenes) into selected/<label>/
(the first seed) and selected/<label>/seed<i>/; with `retrain.workers` > 1 every training of the stage runs first on a
Dask LocalCluster of single-threaded processes, the largest networks first, each writing its output to its folder's
train.log. Then on the main process the validation (and test split) mIoU and per-class IoU of each seed's network, kept
as their mean with the per-seed mIoU and its sample standard deviation; the first seed's network exported to model.onnx
(checked against torch with ONNX Runtime) and re-measured on the experiment's device (stored in the measurement store
like any other; a re-measurement more than 10 % above the search's measurement is taken once more and the lower kept)
beside the prediction the search used. A label whose metrics.json exists is not redone when the stage
resumes, nor a training whose weights.pt exists.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch.distributed as dist

from engine.config import ExperimentConfig
from engine.evaluation.export import export_checked
from engine.evaluation.inherited import Batch, evaluate, split_batches, validation_batches
from engine.evaluation.standalone import spread
from engine.files import write_json
from engine.latency.meter import MEASURING, STAT_FIELD, Meter
from engine.paths import ARTEFACTS as A
from engine.paths import CHECKPOINT, METRICS_LOG, ONNX, WEIGHTS, RunPaths
from engine.runner import Context, Stage
from engine.search.fronts import POINT_FIELDS
from engine.search.references import split_references
from engine.training.distributed import World
from engine.training.pool import TRAIN_LOG, train_job, train_on_cluster, untrained
from spaces import Genotype, Network


def selection(config: ExperimentConfig) -> list[dict]:
    return json.loads(config.paths.selection.read_text())["picked"]


def trainings(config: ExperimentConfig, entries: list[dict]) -> list[tuple[str, Path, int]]:
    """(key, folder, seed index) of every training the stage still needs: each genotype once, under its first label
    (a later label of it copies that one's results) unless that label is finished, under each seed, without a
    weights.pt yet."""
    labels = {}
    for entry in entries:
        labels.setdefault(entry["key"], entry["label"])
    wanted = [(key, config.paths.picked_seed(label, index), index) for key, label in labels.items()
              if not finished(config.paths, label, config.retrain.export) for index in range(config.retrain.seeds)]
    return untrained(wanted)


RECHECK_ABOVE = 1.10
"""A re-measurement above this many times the search's measurement is taken once more and the lower kept."""


def measured_stats(meter: Meter | None, genotype: Genotype, network: Network, searched_ms: float | None) -> dict | None:
    """The re-measured statistics (also stored), or None without a reachable device. One more than RECHECK_ABOVE
    times `searched_ms` (the search's measurement, by latency.statistic) is measured again and the lower kept
    (Meter.second_opinion: both values in its provenance)."""
    if meter is None or not meter.config.retrain.remeasure:
        return None
    measurement = meter.measure_network(network.cpu())
    value = getattr(measurement.stats, STAT_FIELD[meter.config.latency.statistic])
    if searched_ms is not None and value > RECHECK_ABOVE * searched_ms:
        measurement = meter.second_opinion(measurement, network)
    meter.store.put(meter.key(genotype), measurement)
    return measurement.as_dict()


def finish(config: ExperimentConfig, entry: dict, networks: list[Network], meter: Meter | None, world: World,
           batches: list[Batch], test: list[Batch] | None) -> dict:
    """Evaluate each seed's network (on the validation `batches`, and the `test` ones when the experiment has a test
    split), export and re-measure the first seed's; the metrics.json record."""
    network = networks[0]
    scores = {"": [evaluate(n.to(world.device), batches, config.space.num_classes, world.device) for n in networks]}
    if test is not None:
        scores["test_"] = [evaluate(n, test, config.space.num_classes, world.device) for n in networks]
    searched = split_references(pd.read_csv(config.paths.evaluations))[0].set_index("key").loc[entry["key"]]
    searched_ms = _number(searched.measured_ms)
    # measured before ONNX Runtime's threads start
    measured = measured_stats(meter, Genotype.from_key(entry["key"]), network, searched_ms)
    shape = (config.latency.batch, 3, *config.space.input_size)
    diff = export_checked(network, shape, config.paths.picked_onnx(entry["label"])) if config.retrain.export else None
    return {
        "label": entry["label"], "key": entry["key"], "budget_ms": entry["budget_ms"],
        "budget_span": entry.get("budget_span"), **{name: _number(searched[name]) for name in POINT_FIELDS},
        **over_seeds(scores[""], "retrained_"),
        "class_names": list(config.data.class_names), "class_colors": config.data.class_colors,
        "measured": measured, "onnx_max_abs_diff": diff,
        "macs": int(searched.macs), "params": int(searched.params), "retrain_init": config.retrain.init,
        "retrain_steps": config.retrain.train.steps, "seeds": [config.seed + i for i in range(len(networks))],
        **({"test_split": config.data.test_split, **over_seeds(scores["test_"], "test_")} if test is not None else {}),
    }


def over_seeds(results: list[dict], prefix: str) -> dict:
    """The seeds' mean mIoU (<prefix>miou; "retrained_" on val, "test_" on the test split), its per-seed values and
    sample standard deviation (None for one seed), and the mean pixel accuracy and per-class IoU (None for a class no
    seed's network met: absent from the images and never predicted). On val the accuracy and IoU keep the names
    pixel_accuracy and iou."""
    miou = spread([r["miou"] for r in results])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class NaN under every seed stays NaN
        iou = np.nanmean(np.array([r["iou"] for r in results], dtype=np.float64), axis=0)
    other = "" if prefix == "retrained_" else prefix
    return {f"{prefix}miou": miou["mean"], f"{prefix}miou_per_seed": miou["per_seed"], f"{prefix}miou_std": miou["std"],
            f"{other}pixel_accuracy": float(np.mean([r["pixel_accuracy"] for r in results])),
            f"{other}iou": [None if math.isnan(v) else float(v) for v in iou]}


def _number(value) -> float | None:
    return None if pd.isna(value) else float(value)


def copy_duplicate(config: ExperimentConfig, first: dict, entry: dict) -> dict:
    """The results of the first label of the same genotype, copied into this label's folder."""
    source, folder = (config.paths.picked(label) for label in (first["label"], entry["label"]))
    for name in (WEIGHTS, ONNX):
        if (source / name).exists():
            shutil.copyfile(source / name, folder / name)
    record = {**first, "label": entry["label"], "budget_ms": entry["budget_ms"],
              "budget_span": entry.get("budget_span")}
    write_json(config.paths.picked_metrics(entry["label"]), record)
    return record


def finished(paths: RunPaths, label: str, export: bool) -> bool:
    """Whether a label's results are all there (its metrics.json, weights and, when exported, model.onnx)."""
    wanted = [paths.picked_metrics(label), paths.picked_weights(label)] + ([paths.picked_onnx(label)] if export else [])
    return all(path.exists() for path in wanted)


def run(ctx: Context) -> None:
    """Retrain, evaluate, export and re-measure every picked network (module docstring)."""
    config, world = ctx.config, ctx.world
    entries = selection(config)
    jobs = trainings(config, entries)
    train_on_cluster(config, "retrain.train", jobs, config.retrain.workers, world, config.paths.dask)
    records, batches, test = [], None, None
    for entry in entries:
        out = ctx.paths.picked_metrics(entry["label"])
        if finished(ctx.paths, entry["label"], config.retrain.export):
            records.append(json.loads(out.read_text()))
            continue
        first = next((r for r in records if r["key"] == entry["key"]), None)
        if first is not None:  # the same genotype under two labels is trained once
            records.append(copy_duplicate(config, first, entry) if world.is_main else first)
            continue
        networks = [train_job(config, "retrain.train", entry["key"], ctx.paths.picked_seed(entry["label"], index),
                              index, world)
                    for index in range(config.retrain.seeds)]  # trained here, or loaded when trained already
        record = {"label": entry["label"], "key": entry["key"]}  # other ranks: enough to know the duplicates
        if world.is_main:
            if batches is None:
                batches = validation_batches(config)
                test = split_batches(config, config.data.test_split) if config.data.test_split else None
            record = finish(config, entry, networks, ctx.meter, world, batches, test)
            write_json(out, record)
        records.append(record)
        if world.distributed:
            dist.barrier()


def _reads(config: ExperimentConfig) -> tuple[str, ...]:
    inherited = (A.supernet,) if config.retrain.init == "inherited" else ()
    return (A.selection, A.evaluations, *inherited)


STAGE = Stage("retrain", run, reads=_reads,
              writes=(A.picked_metrics("*"), A.picked_onnx("*"), A.picked_weights("*")),
              work=(A.picked("*") / CHECKPOINT, A.picked("*") / METRICS_LOG, A.picked("*") / "tensorboard",
                    A.picked("*") / TRAIN_LOG, A.picked("*") / "seed*", A.dask),
              config=("seed", "space", "data", "evaluation", "retrain", *MEASURING), ranks="all",
              device=lambda config: config.retrain.remeasure)
