"""Stage retrain: retrain each picked network stand-alone, evaluate it, export it to ONNX and re-measure it.

For every entry of selected/selection.json: training (engine/training/standalone.py, from scratch or from the supernet's
weights as `retrain.init` says; resumable, data-parallel under torchrun) into selected/<label>/, then on the main
process the validation mIoU and per-class IoU, model.onnx checked against torch with ONNX Runtime, and a new
latency measurement on the experiment's device (stored in the measurement store like any other) beside the
prediction the search used. A label whose metrics.json exists is not redone when the stage resumes.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist

from engine.config import ExperimentConfig
from engine.data.classes import DATASET_CLASSES
from engine.evaluation.export import export_checked
from engine.evaluation.inherited import Batch, evaluate, split_batches, validation_batches
from engine.files import write_json
from engine.latency.meter import MEASURING, Meter
from engine.paths import ARTEFACTS as A
from engine.paths import CHECKPOINT, METRICS_LOG, WEIGHTS, RunPaths
from engine.runner import Context, Stage
from engine.search.references import split_references
from engine.training.distributed import World
from engine.training.standalone import train_standalone
from engine.training.supernet import load_supernets
from spaces import Genotype, Network


def selection(config: ExperimentConfig) -> list[dict]:
    return json.loads(config.paths.selection.read_text())["picked"]


def train_picked(config: ExperimentConfig, genotype: Genotype, folder: Path, world: World) -> Network:
    space, retrain = config.space, config.retrain
    supernet = None
    if retrain.init == "inherited":
        supernet = load_supernets(config, torch.device("cpu"), (genotype.skeleton,))[genotype.skeleton]
    return train_standalone(genotype, config.data, retrain.train, folder, world, space.width, config.seed, supernet,
                            section="retrain.train")


def measured_stats(meter: Meter | None, genotype: Genotype, network: Network) -> dict | None:
    """The re-measured statistics (also stored), or None without a reachable device."""
    if meter is None or not meter.config.retrain.remeasure:
        return None
    measurement = meter.measure_network(network.cpu())
    meter.store.put(meter.key(genotype), measurement)
    return measurement.as_dict()


def finish(config: ExperimentConfig, entry: dict, network: Network, meter: Meter | None, world: World,
           batches: list[Batch], test: list[Batch] | None) -> dict:
    """Evaluate (on the validation `batches`, and the `test` ones when the experiment has a test split), export
    and re-measure one retrained network; the metrics.json record."""
    genotype = Genotype.from_key(entry["key"])
    result = evaluate(network.to(world.device), batches, config.space.num_classes, world.device)
    searched = split_references(pd.read_csv(config.paths.evaluations))[0].set_index("key").loc[entry["key"]]
    measured = measured_stats(meter, genotype, network)  # before the ONNX Runtime check runs threads of its own
    shape = (config.latency.batch, 3, *config.space.input_size)
    diff = export_checked(network, shape, config.paths.picked_onnx(entry["label"])) if config.retrain.export else None
    return {
        "label": entry["label"], "key": entry["key"], "budget_ms": entry["budget_ms"],
        "predicted_ms": float(searched.predicted_ms), "predicted_lower_ms": float(searched.latency_lower_ms),
        "predicted_upper_ms": float(searched.latency_upper_ms), "search_measured_ms": _number(searched.measured_ms),
        "inherited_miou": float(searched.miou),
        "retrained_miou": result["miou"], "pixel_accuracy": result["pixel_accuracy"],
        "iou": [None if math.isnan(v) else v for v in result["iou"]],
        "class_names": list(DATASET_CLASSES[config.data.kind]),
        "measured": measured, "onnx_max_abs_diff": diff,
        "macs": int(searched.macs), "params": int(searched.params), "retrain_init": config.retrain.init,
        "retrain_steps": config.retrain.train.steps, **scores_on_test(network, test, config, world),
    }


def scores_on_test(network: Network, test: list[Batch] | None, config: ExperimentConfig, world: World) -> dict:
    """test_miou, test_iou and test_pixel_accuracy on data.test_split ({} without one)."""
    if test is None:
        return {}
    result = evaluate(network.to(world.device), test, config.space.num_classes, world.device)
    return {"test_split": config.data.test_split, "test_miou": result["miou"],
            "test_pixel_accuracy": result["pixel_accuracy"],
            "test_iou": [None if math.isnan(v) else v for v in result["iou"]]}


def _number(value) -> float | None:
    return None if pd.isna(value) else float(value)


def copy_twin(config: ExperimentConfig, twin: dict, entry: dict) -> dict:
    """Another label's results for the same genotype, copied into this label's folder."""
    source, folder = (config.paths.picked(label) for label in (twin["label"], entry["label"]))
    for name in (WEIGHTS, "model.onnx"):
        if (source / name).exists():
            shutil.copyfile(source / name, folder / name)
    record = {**twin, "label": entry["label"], "budget_ms": entry["budget_ms"]}
    write_json(config.paths.picked_metrics(entry["label"]), record)
    return record


def finished(paths: RunPaths, label: str, export: bool) -> bool:
    """Whether a label's results are all there (its metrics.json, weights and, when exported, model.onnx)."""
    wanted = [paths.picked_metrics(label), paths.picked_weights(label)] + ([paths.picked_onnx(label)] if export else [])
    return all(path.exists() for path in wanted)


def run(ctx: Context) -> None:
    """Retrain, evaluate, export and re-measure every picked network (module docstring)."""
    config, world = ctx.config, ctx.world
    records, batches, test = [], None, None
    for entry in selection(config):
        out = ctx.paths.picked_metrics(entry["label"])
        if finished(ctx.paths, entry["label"], config.retrain.export):
            records.append(json.loads(out.read_text()))
            continue
        twin = next((r for r in records if r["key"] == entry["key"]), None)
        if twin is not None:  # the same genotype under two labels is trained once
            records.append(copy_twin(config, twin, entry) if world.is_main else twin)
            continue
        network = train_picked(config, Genotype.from_key(entry["key"]), out.parent, world)
        record = {"label": entry["label"], "key": entry["key"]}  # other ranks: enough to know the twins
        if world.is_main:
            if batches is None:
                batches = validation_batches(config)
                test = split_batches(config, config.data.test_split) if config.data.test_split else None
            record = finish(config, entry, network, ctx.meter, world, batches, test)
            write_json(out, record)
        records.append(record)
        if world.distributed:
            dist.barrier()


def _reads(config: ExperimentConfig) -> tuple[str, ...]:
    inherited = (A.supernet,) if config.retrain.init == "inherited" else ()
    return (A.selection, A.evaluations, *inherited)


STAGE = Stage("retrain", run, reads=_reads,
              writes=(A.picked_metrics("*"), A.picked_onnx("*"), A.picked_weights("*")),
              work=(A.picked("*") / CHECKPOINT, A.picked("*") / METRICS_LOG, A.picked("*") / "tensorboard"),
              config=("seed", "space", "data", "evaluation", "retrain", *MEASURING), ranks="all",
              device=lambda config: config.retrain.remeasure)
