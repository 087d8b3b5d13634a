"""The splits a run reads: the validation images carved from train (data.val_from_train) and the check at the start
of a run that every split it will read is there and not empty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import DataConfig
from engine.data.loader import step_batches
from engine.data.splits import InMemory, check_splits, train_set, val_set
from engine.errors import DatasetError
from engine.run import main


def carved(**options) -> DataConfig:
    return DataConfig(synthetic_size=(32, 64), crop=(32, 64), synthetic_train=20, synthetic_val=3, **options)


def scenes(dataset) -> set[bytes]:
    return {dataset[i][0].numpy().tobytes() for i in range(len(dataset))}


def test_the_carved_validation_images_leave_training_and_are_the_same_in_every_run() -> None:
    data = carved(val_from_train=5, test_split="val", jitter=0.0, scale=(1.0, 1.0))
    train, val = train_set(data, seed=0), val_set(data, seed=0)
    assert (len(train), len(val), val.num_classes) == (15, 5, train.num_classes)
    assert sorted(train.indices + val.indices) == list(range(20))
    whole = train.dataset
    assert {i for i in val.indices} == set(val_set(data, seed=0).indices)
    assert all(np.array_equal(val.dataset.load(i)[0], whole.load(i)[0]) for i in val.indices)
    assert not scenes(val) & scenes(train)


def test_kept_training_images_are_decoded_once_within_the_bound_and_give_the_same_batches() -> None:
    data = carved(val_from_train=5)
    plain, kept = train_set(data, seed=0), train_set(data.model_copy(update={"cache_mb": 1}), seed=0)
    assert isinstance(kept, InMemory) and not isinstance(plain, InMemory)
    reads = []
    kept.dataset.load = lambda index, load=kept.dataset.load: reads.append(index) or load(index)
    for _ in range(2):
        batches = [step_batches(dataset, 4, 0, 5)(0) for dataset in (plain, kept)]
        for (images, labels), (kept_images, kept_labels) in zip(*batches):
            assert torch.equal(images, kept_images) and torch.equal(labels, kept_labels)
    assert len(reads) == len(set(reads)) == len(kept.samples) > len(kept) // 2
    one = sum(array.nbytes for array in plain.load(0))
    bounded = InMemory(plain, 1)
    bounded.room = 2 * one
    for index in range(5):
        bounded.load(index)
    assert len(bounded.samples) == 2 and len(bounded) == len(plain) and bounded.num_classes == plain.num_classes


def test_carving_frees_the_val_split_for_the_test_split_and_checks_its_size() -> None:
    with pytest.raises(ValueError, match="data.test_split 'val' is also the train or val split"):
        carved(test_split="val")
    carved(val_from_train=5, test_split="val")
    with pytest.raises(DatasetError, match="data.val_from_train 20 must be below the 20 images"):
        check_splits(carved(val_from_train=20))


def camvid(root: Path, splits: tuple[str, ...]) -> Path:
    for split in splits:
        for folder, array in ((split, np.zeros((8, 8, 3), np.uint8)), (f"{split}annot", np.zeros((8, 8), np.uint8))):
            (root / folder).mkdir(parents=True)
            Image.fromarray(array).save(root / folder / "0001.png")
    return root


@pytest.mark.parametrize("empty", [False, True])
def test_a_missing_or_empty_test_split_stops_the_run_before_training_naming_it(
        quickstart, tmp_path: Path, capsys, empty: bool) -> None:
    root = camvid(tmp_path / "camvid", ("train", "val"))
    if empty:
        (root / "test").mkdir()
        (root / "testannot").mkdir()
    code = main([quickstart, f"runs_dir={tmp_path / 'runs'}", "data.kind=camvid", f"data.root={root}",
                 "data.test_split=test"])
    error = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in error, error
    assert "data.test_split 'test'" in error and str(root / "test") in error
    assert not (tmp_path / "runs" / "quickstart" / "stages").exists()


def test_the_seeded_training_loader_reads_only_the_images_left_for_training() -> None:
    """Training batches come from the carved training set through its own indices (review finding: the loader
    needs load/transform, and load must go through the subset, or training would read the validation images)."""
    data = carved(val_from_train=5, jitter=0.0, scale=(1.0, 1.0))
    train, val = train_set(data, seed=0), val_set(data, seed=0)
    held = {val.dataset.load(i)[0].tobytes() for i in val.indices}
    assert all(train.load(i)[0].tobytes() not in held for i in range(len(train)))
    images, labels = next(iter(step_batches(train, 5, 0, 3)(0)))
    assert images.shape == (5, 3, 32, 64) and labels.shape == (5, 32, 64)
