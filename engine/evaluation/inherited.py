"""Inherited-weight evaluation: a subnet extracted from its skeleton's supernet, BN statistics recalibrated, mIoU
measured (every skeleton on the same calibration and validation images).

The calibration images and the validation batches are loaded once and kept in memory, so scoring hundreds of
subnets costs only their forward passes; scores are cached by genotype key in a JSON-lines file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, Dataset, Subset

from engine.config import ExperimentConfig
from engine.data.splits import eval_set, train_set, val_set
from engine.evaluation.metrics import SegmentationMetric
from engine.files import finite
from spaces import Genotype, Supernet

Batch = tuple[torch.Tensor, torch.Tensor]


def load_batches(dataset: Dataset, count: int | None, batch_size: int, num_workers: int = 0) -> list[Batch]:
    """The first `count` samples (all when None) of a dataset as in-memory batches; images of different sizes (a
    folder data set evaluated at its native sizes) go to batches of their own size, in order of first appearance."""
    if count is not None:
        dataset = Subset(dataset, range(min(count, len(dataset))))
    by_size: dict[tuple[int, ...], list[Batch]] = {}
    for image, label in DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers):
        by_size.setdefault(tuple(image.shape), []).append((image, label))
    return [(torch.stack([image for image, _ in samples[i:i + batch_size]]),
             torch.stack([label for _, label in samples[i:i + batch_size]]))
            for samples in by_size.values() for i in range(0, len(samples), batch_size)]


def recalibrate_batchnorm(model: nn.Module, images: Iterable[torch.Tensor], device: torch.device) -> None:
    """Replace running BN statistics by their exact averages over `images` (torch.optim.swa_utils.update_bn:
    train-mode forwards with a cumulative average), then leave the model in eval mode."""
    update_bn(images, model, device)
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Batch], num_classes: int, device: torch.device) -> dict:
    """mIoU, per-class IoU and pixel accuracy of `model` (eval mode) over the batches."""
    model.eval()
    metric = SegmentationMetric(num_classes)
    for images, labels in batches:
        metric.update(model(images.to(device)).argmax(1), labels.to(device))
    return metric.compute()


class InheritedEvaluator:
    """Scores genotypes with their skeleton's supernet weights, every skeleton on the same calibration and
    validation images; no calibration batches score without BN recalibration."""

    def __init__(self, supernets: dict[str, Supernet], calibration: list[Batch], validation: list[Batch],
                 num_classes: int, device: torch.device, cache: Path | None = None):
        self.supernets = supernets
        self.calibration = [images for images, _ in calibration]
        self.validation = validation
        self.num_classes = num_classes
        self.device = device
        self.cache_path = cache
        self.scores: dict[str, dict] = self._read_cache()

    def _read_cache(self) -> dict[str, dict]:
        if self.cache_path is None or not self.cache_path.exists():
            return {}
        scores = {}
        for line in self.cache_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut by a kill: scored again
                continue
            record = {**record, "miou": _nan(record["miou"]), "pixel_accuracy": _nan(record["pixel_accuracy"]),
                      "iou": [_nan(value) for value in record["iou"]]}  # null: NaN (an absent class's IoU)
            scores[record["key"]] = record
        return scores

    def score(self, genotype: Genotype) -> dict:
        """{'key', 'miou', 'pixel_accuracy', 'iou'} of the genotype, from the cache when already scored."""
        if genotype.key in self.scores:
            return self.scores[genotype.key]
        subnet = self.supernets[genotype.skeleton].extract(genotype).to(self.device)
        if self.calibration:
            recalibrate_batchnorm(subnet, self.calibration, self.device)
        result = evaluate(subnet, self.validation, self.num_classes, self.device)
        record = {"key": genotype.key, "miou": result["miou"], "pixel_accuracy": result["pixel_accuracy"],
                  "iou": result["iou"]}
        self.scores[genotype.key] = record
        if self.cache_path is not None:
            with self.cache_path.open("a") as handle:
                handle.write(json.dumps(finite(record), allow_nan=False) + "\n")  # strict JSON: null for NaN
        return record


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def validation_batches(config: ExperimentConfig) -> list[Batch]:
    """The experiment's validation images (`evaluation.val_images` of them, all when None), in memory."""
    settings = config.evaluation
    return load_batches(val_set(config.data, config.seed), settings.val_images, settings.batch_size)


def split_batches(config: ExperimentConfig, split: str) -> list[Batch]:
    """Every image of a split read as the validation split is (the test split: data.test_split), in memory."""
    return load_batches(eval_set(config.data, split, config.seed), None, config.evaluation.batch_size)


def evaluator_for(config: ExperimentConfig, supernets: dict[str, Supernet], device: torch.device, cache: bool = True
                  ) -> InheritedEvaluator:
    """The experiment's evaluator: calibration images from the training split (with its augmentation, as the
    statistics were learnt), validation images from the validation split, cache in runs/<name>/inherited.jsonl."""
    settings = config.evaluation
    calibration = load_batches(train_set(config.data, config.seed), settings.calibration_images, settings.batch_size)
    validation = validation_batches(config)
    path = config.run_dir / "inherited.jsonl" if cache else None
    return InheritedEvaluator(supernets, calibration, validation, config.space.num_classes, device, path)
