"""Class weights for the training loss: median-frequency balancing (Eigen & Fergus 2015, SegNet's CamVid protocol).

A class's frequency is its pixels over the pixels of the training images it appears in; its weight is the median
frequency over the classes that appear divided by its own, so thin and rare classes (poles, signs, people) weigh
more than road and sky. Counted on the raw labels (`dataset.load`, before cropping and scaling) of up to `IMAGES`
training images spread over the split. The weighted cross-entropy is still divided by the labelled pixels (as
SegNet's), so its scale, and its balance against the sandwich rule's distillation term, moves with the mean
weight of a batch's pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.data.classes import IGNORE_INDEX

IMAGES = 200


def median_frequency(dataset: Dataset, num_classes: int, images: int = IMAGES) -> torch.Tensor:
    """[num_classes] weights; a class absent from the counted images gets weight 1."""
    pixels = np.zeros(num_classes, dtype=np.float64)
    image_pixels = np.zeros(num_classes, dtype=np.float64)
    for index in np.linspace(0, len(dataset) - 1, min(images, len(dataset))).round().astype(int):
        labels = np.asarray(dataset.load(int(index))[1]).ravel().astype(np.int64)
        labels = labels[labels != IGNORE_INDEX]
        counts = np.bincount(labels, minlength=num_classes)[:num_classes]
        pixels += counts
        image_pixels += (counts > 0) * labels.size
    present = pixels > 0
    frequency = np.divide(pixels, image_pixels, out=np.zeros(num_classes), where=present)
    weights = np.ones(num_classes)
    weights[present] = np.median(frequency[present]) / frequency[present]
    return torch.tensor(weights, dtype=torch.float32)


def class_weights(dataset: Dataset, kind: str, num_classes: int) -> torch.Tensor | None:
    """The loss's class weights of a training setting (`class_weights`): None for plain cross-entropy."""
    return median_frequency(dataset, num_classes) if kind == "median_frequency" else None
