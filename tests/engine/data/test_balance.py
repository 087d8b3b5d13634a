"""Median-frequency class weights: rare and thin classes weigh more than frequent ones; the training step uses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.data.balance import class_weights, median_frequency
from engine.data.classes import IGNORE_INDEX


class Labels(torch.utils.data.Dataset):
    """Four 10x10 label maps: class 0 everywhere but a 2x2 patch of class 1 in each, class 2 in one image only,
    some pixels ignored."""

    def __len__(self) -> int:
        return 4

    def load(self, index: int):
        labels = np.zeros((10, 10), dtype=np.int64)
        labels[:2, :2] = 1
        if index == 0:
            labels[5:, 5:] = 2
        labels[9, 0] = IGNORE_INDEX
        return np.zeros((10, 10, 3), dtype=np.uint8), labels.astype(np.uint8)


def test_median_frequency_weighs_rare_classes_up() -> None:
    weights = median_frequency(Labels(), 4)
    # frequencies: class 0 (4*99 - 4*4 - 25) / 396, class 1 16 / 396, class 2 25 / 99; class 3 absent
    frequency = np.array([(396 - 16 - 25) / 396, 16 / 396, 25 / 99])
    assert weights[:3].numpy() == pytest.approx(np.median(frequency) / frequency, rel=1e-6)
    assert weights[1] > weights[2] > weights[0] and float(weights[2]) == pytest.approx(1.0) and weights[3] == 1.0
    assert class_weights(Labels(), "none", 4) is None


def test_weighted_cross_entropy_counts_the_rare_class_more() -> None:
    logits, labels = torch.zeros(1, 3, 2, 2), torch.tensor([[[0, 0], [0, 1]]])
    plain = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
    weighted = torch.nn.functional.cross_entropy(logits, labels, torch.tensor([1.0, 5.0, 1.0]), reduction="sum")
    assert weighted == pytest.approx(plain * 8 / 4)
