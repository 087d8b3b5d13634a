"""Datasets of an experiment, built from its `data` section: training (augmented), validation and test sets. The
search, selection and audit see train and val only; the test split is scored after the search."""

from __future__ import annotations

from torch.utils.data import Dataset

from engine.config import DataConfig
from engine.data.datasets import Transform, build_dataset
from engine.data.transforms import eval_transform, train_transform


def _build(data: DataConfig, split: str, transform: Transform, seed: int) -> Dataset:
    options = {}
    if data.kind == "synthetic":
        count = data.synthetic_train if split == data.train_split else data.synthetic_val
        options = {"size": data.synthetic_size, "count": count, "seed": seed}
    return build_dataset(data.kind, data.root, split, transform, **options)


def train_set(data: DataConfig, seed: int = 0) -> Dataset:
    """The training split with random scale, crop, flip and colour jitter."""
    return _build(data, data.train_split, train_transform(data.crop, data.scale, jitter=data.jitter or None), seed)


def val_set(data: DataConfig, seed: int = 0) -> Dataset:
    """The validation split, resized to data.eval_size when set."""
    return _build(data, data.val_split, eval_transform(data.eval_size), seed)


def eval_set(data: DataConfig, split: str, seed: int = 0) -> Dataset:
    """Any split as the validation split is read (the test split, data.test_split), resized to data.eval_size."""
    return _build(data, split, eval_transform(data.eval_size), seed)
