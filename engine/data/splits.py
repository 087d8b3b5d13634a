"""Datasets of an experiment, built from its `data` section: training (augmented), validation and test sets. The
search, selection and audit see train and val only; the test split is scored after the search.

With `data.val_from_train = n`, the validation set is n images of the training split chosen with a fixed seed
(CARVE_SEED, the same in every run and for every experiment seed) and training uses the others, so a dataset whose
test labels are not public (Cityscapes) can keep its official val split as the test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from torch.utils.data import Dataset, Subset

from engine.config import DataConfig
from engine.data.classes import DATASET_CLASSES
from engine.data.datasets import Transform, build_dataset
from engine.data.transforms import eval_transform, train_transform
from engine.errors import DatasetError

CARVE_SEED = 0


def _build(data: DataConfig, split: str, transform: Transform, seed: int) -> Dataset:
    options = {}
    if data.kind == "synthetic":
        count = data.synthetic_train if split == data.train_split else data.synthetic_val
        options = {"size": data.synthetic_size, "count": count, "seed": seed}
    elif DATASET_CLASSES[data.kind] is None:
        options = {"classes": data.class_names, "ignore_index": data.ignore_index, "label_map": data.label_map}
    return build_dataset(data.kind, data.root, split, transform, **options)


class Wrapping:
    """A dataset over another (`self.dataset`) that keeps saying what its classes are and gives its `transform`, which
    the seeded training loader reads (engine.data.loader)."""

    def __getattr__(self, name: str):
        if name in ("num_classes", "class_names", "ignore_index"):
            return getattr(self.dataset, name)
        raise AttributeError(name)

    @property
    def transform(self) -> Transform:
        return self.dataset.transform


class Carved(Wrapping, Subset):
    """Some images of a dataset, read by their position in the subset, with the raw `load` of each."""

    def load(self, index: int):
        return self.dataset.load(self.indices[index])


class InMemory(Wrapping, Dataset):
    """A dataset whose raw samples (decoded image and labels) are kept after their first read, up to `megabytes`
    (data.cache_mb): a training that revisits its images decodes each once. The transform still runs on every read."""

    def __init__(self, dataset: Dataset, megabytes: int):
        self.dataset, self.room, self.samples = dataset, megabytes * 2**20, {}

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int):
        if index in self.samples:
            return self.samples[index]
        sample = self.dataset.load(index)
        size = sum(array.nbytes for array in sample)
        if size <= self.room:
            self.samples[index], self.room = sample, self.room - size
        return sample

    def __getitem__(self, index: int):
        return self.transform(*self.load(index))


def carved_indices(data: DataConfig, size: int) -> tuple[list[int], list[int]]:
    """(training, validation) indices of the training split when data.val_from_train carves a validation set."""
    if data.val_from_train >= size:
        raise DatasetError(f"data.val_from_train {data.val_from_train} must be below the {size} images of the "
                           f"training split {data.train_split!r}")
    order = np.random.default_rng(CARVE_SEED).permutation(size)
    return sorted(order[data.val_from_train:].tolist()), sorted(order[:data.val_from_train].tolist())


def _training_split(data: DataConfig, transform: Transform, seed: int, part: int) -> Dataset:
    dataset = _build(data, data.train_split, transform, seed)
    return dataset if not data.val_from_train else Carved(dataset, carved_indices(data, len(dataset))[part])


def train_set(data: DataConfig, seed: int = 0) -> Dataset:
    """The training split (less the carved validation images) with random scale, crop, flip and colour jitter; its
    decoded images kept in memory up to data.cache_mb."""
    transform = train_transform(data.crop, data.scale, jitter=data.jitter or None)
    dataset = _training_split(data, transform, seed, 0)
    return InMemory(dataset, data.cache_mb) if data.cache_mb and hasattr(dataset, "load") else dataset


def val_set(data: DataConfig, seed: int = 0) -> Dataset:
    """The validation split (or the images carved from train), resized to data.eval_size when set."""
    if data.val_from_train:
        return _training_split(data, eval_transform(data.eval_size), seed, 1)
    return _build(data, data.val_split, eval_transform(data.eval_size), seed)


def eval_set(data: DataConfig, split: str, seed: int = 0) -> Dataset:
    """Any split as the validation split is read (the test split, data.test_split), resized to data.eval_size."""
    return _build(data, split, eval_transform(data.eval_size), seed)


@dataclass(frozen=True)
class SplitListing:
    """A split the run reads: the setting naming it, its name, its image count and the sizes (H, W) of up to
    SIZES_READ of its images (read from the files' headers)."""

    setting: str
    split: str
    images: int
    sizes: tuple[tuple[int, int], ...]


SIZES_READ = 16


def image_sizes(dataset: Dataset, count: int = SIZES_READ) -> tuple[tuple[int, int], ...]:
    """The distinct sizes (H, W) of the first `count` images, from their headers where the dataset lists files."""
    dataset, indices = (dataset.dataset, dataset.indices[:count]) if isinstance(dataset, Subset) else \
        (dataset, range(min(count, len(dataset))))
    if not hasattr(dataset, "pairs"):  # generated images (synthetic streets) all have the size they are drawn at
        return (tuple(dataset.size),) if hasattr(dataset, "size") and len(indices) else ()
    sizes = []
    for index in indices:
        try:
            with Image.open(dataset.pairs[index][0]) as image:
                sizes.append((image.height, image.width))
        except OSError as error:
            raise DatasetError(f"{dataset.pairs[index][0]}: cannot be read as an image ({error})") from None
    return tuple(dict.fromkeys(sizes))


def check_splits(data: DataConfig, seed: int = 0) -> list[SplitListing]:
    """List every split the run will read (train, val or the carved images, test) before anything is trained, so a
    missing or empty one stops the run at once: DatasetError naming the setting and the folder. File names are
    listed, the test split's included, and the headers of a few images read (never the test split's)."""
    named = [("data.train_split", data.train_split)]
    named += [] if data.val_from_train else [("data.val_split", data.val_split)]
    named += [] if data.test_split is None else [("data.test_split", data.test_split)]
    listings = []
    for setting, split in named:
        try:
            dataset = _build(data, split, eval_transform(data.eval_size), seed)
            size = len(dataset)
            if size and setting == "data.train_split" and data.val_from_train:
                carved_indices(data, size)
            unseen = setting == "data.test_split"  # not even a header of the test split is read before retraining
            listings.append(SplitListing(setting, split, size, image_sizes(dataset) if size and not unseen else ()))
        except DatasetError as error:
            raise DatasetError(f"{setting} {split!r}: {error}") from None
        if size == 0:
            raise DatasetError(f"{setting} {split!r} has no images")
    return listings


def size_mismatch(data: DataConfig, input_size: tuple[int, int], listings: list[SplitListing]) -> str | None:
    """A warning when the search evaluates images at another size than latency is measured at (space.input_size),
    or None: the front would pair an accuracy at one size with a latency at another."""
    evaluated = {tuple(data.eval_size)} if data.eval_size else \
        {size for listing in listings if listing.setting != "data.train_split" or data.val_from_train
         for size in listing.sizes}
    if not evaluated or evaluated == {tuple(input_size)}:
        return None
    shown = ", ".join(f"{h}x{w}" for h, w in sorted(evaluated))
    return (f"images are evaluated at {shown} but latency is measured at {input_size[0]}x{input_size[1]} "
            f"(space.input_size); set data.eval_size={list(input_size)} or space.input_size to the images' size")
