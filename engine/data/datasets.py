"""Segmentation datasets on disk (Cityscapes, CamVid, a folder of your own) and the `build_dataset` factory (with
synthetic scenes); `register_dataset` adds a kind from outside the package.

Every dataset yields `(image, label)` after its transform (default: `eval_transform()`, i.e. float32 [3, H, W]
ImageNet-normalised and int64 [H, W]) and has `num_classes`, `class_names` and `ignore_index = 255`. Label ids
on disk are mapped to training classes through a 256-entry lookup table; ids that are ignored map to 255.
Layout problems are found when the dataset is built, bad files when a sample is loaded; both raise a one-line
`DatasetError` that names the file or folder.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from cityscapesscripts.helpers.labels import labels as CITYSCAPES_TABLE
from PIL import Image
from torch.utils.data import Dataset

from engine.data.classes import CAMVID_CLASSES, CITYSCAPES_CLASSES, DATASET_CLASSES
from engine.data.synthetic import SyntheticStreets
from engine.data.transforms import IGNORE_INDEX, eval_transform
from engine.errors import DatasetError

Transform = Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]
Pair = tuple[Path, Path]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_FOLDER_IMAGES = (".png", ".jpg", ".jpeg")



@dataclass(frozen=True)
class LabelMap:
    """Ids on disk -> training classes: `table[id]` is the class (255 = ignore); `known[id]` marks valid ids."""

    dataset: str
    table: np.ndarray
    known: np.ndarray

    @classmethod
    def from_pairs(cls, dataset: str, pairs: list[tuple[int, int]]) -> LabelMap:
        """From (id on disk, class) pairs; a class outside 0..254 means ignore."""
        table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        known = np.zeros(256, dtype=bool)
        for label_id, train_id in pairs:
            table[label_id] = train_id if 0 <= train_id < IGNORE_INDEX else IGNORE_INDEX
            known[label_id] = True
        return cls(dataset, table, known)

    def encode(self, ids: np.ndarray, path: Path) -> np.ndarray:
        """Map an id image to classes; ids that are not the dataset's raise DatasetError naming `path`."""
        if ids.ndim != 2:
            raise DatasetError(f"{path}: label has shape {list(ids.shape)}, expected a single-channel id map")
        if ids.dtype != np.uint8:
            if ids.min() < 0 or ids.max() > 255:
                raise DatasetError(f"{path}: label ids {ids.min()}..{ids.max()} are not {self.dataset} ids")
            ids = ids.astype(np.uint8)
        unknown = ~self.known[ids]
        if unknown.any():
            bad = np.unique(ids[unknown]).tolist()
            raise DatasetError(f"{path}: label ids {bad[:10]} are not {self.dataset} ids "
                               f"(known: {np.flatnonzero(self.known).tolist()})")
        return self.table[ids]


CITYSCAPES_LABELS = LabelMap.from_pairs(
    "Cityscapes", [(label.id, label.trainId) for label in CITYSCAPES_TABLE if label.id >= 0])
CAMVID_LABELS = LabelMap.from_pairs("CamVid", [(i, i) for i in range(len(CAMVID_CLASSES))] + [(11, IGNORE_INDEX)])


MAX_PIXELS = 64_000_000
"""The most pixels an image or label may have (a 16-bit 8192 x 8192 frame has 67 M): a larger one is refused from its
header, before it is decoded (a 144-megapixel image took 432 MB)."""


@contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """PIL's lazy image (header read, nothing decoded), without PIL's two-line warning for a large one (MAX_PIXELS
    refuses those in one line); a file PIL cannot read is a DatasetError naming it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                yield image
    except Image.DecompressionBombError as error:
        raise DatasetError(f"{path}: refused, too many pixels for an image of this dataset ({error})") from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot be read as an image ({error})") from None


def _size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header; nothing is decoded."""
    with _open(path) as image:
        return image.size


def _read(path: Path, mode: str | None = None) -> np.ndarray:
    with _open(path) as image:
        if image.width * image.height > MAX_PIXELS:
            raise DatasetError(f"{path}: {image.width}x{image.height} has more than {MAX_PIXELS:,} pixels; resize it "
                               f"(evaluation takes data.eval_size or the image's own size)")
        return np.asarray(image.convert(mode) if mode else image)


class FileDataset(Dataset):
    """Image and label files listed as pairs; subclasses find the pairs and give the label map and class names.

    A data set of images and single-channel label PNGs (ids 0 and 1 are classes, 9 is left out of the loss), made
    up on the spot; `engine.data.register_dataset(kind, builder, classes)` makes such a class a `data.kind`:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from engine.data.datasets import FileDataset, LabelMap
    >>> class Puddles(FileDataset):
    ...     class_names = ("dry", "puddle")
    ...     def __init__(self, root: Path):
    ...         pairs = [(image, root / "labels" / image.name) for image in sorted((root / "images").glob("*.png"))]
    ...         super().__init__(pairs, LabelMap.from_pairs("Puddles", [(0, 0), (1, 1), (9, 255)]))
    >>> root = Path(tempfile.mkdtemp())
    >>> for folder in ("images", "labels"):
    ...     (root / folder).mkdir()
    >>> Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(root / "images" / "a.png")
    >>> Image.fromarray(np.array([[0] * 16] * 4 + [[1] * 8 + [9] * 8] * 4, np.uint8)).save(root / "labels" / "a.png")
    >>> image, label = Puddles(root)[0]
    >>> tuple(image.shape), tuple(label.shape), sorted(set(label.flatten().tolist()))
    ((3, 8, 16), (8, 16), [0, 1, 255])
    """

    class_names: tuple[str, ...] = ()
    ignore_index = IGNORE_INDEX

    def __init__(self, pairs: list[Pair], label_map: LabelMap, transform: Transform | None = None):
        self.pairs = pairs
        self.label_map = label_map
        self.transform = eval_transform() if transform is None else transform

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw sample: RGB uint8 [H, W, 3] and class labels uint8 [H, W] (255 = ignore), before the transform."""
        image_path, label_path = self.pairs[index]
        (width, height), (label_width, label_height) = _size(image_path), _size(label_path)
        if (label_width, label_height) != (width, height):  # from the headers, before either is decoded
            raise DatasetError(f"{label_path}: label is {label_width}x{label_height} but its image {image_path} "
                               f"is {width}x{height}")
        image, ids = _read(image_path, "RGB"), _read(label_path)
        return image, self.label_map.encode(ids, label_path)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(*self.load(index))


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} does not exist")
    return path


def cityscapes_pairs(root: Path, split: str) -> list[Pair]:
    """root/leftImg8bit/<split>/<city>/*_leftImg8bit.png with root/gtFine/<split>/<city>/*_gtFine_labelIds.png."""
    _require_dir(root, "Cityscapes root")
    images_dir = _require_dir(root / "leftImg8bit" / split, f"split folder {split!r}")
    labels_dir = _require_dir(root / "gtFine" / split, f"split folder {split!r}")
    images = sorted(images_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise DatasetError(f"{images_dir}: split {split!r} has no <city>/*_leftImg8bit.png images")
    pairs = []
    for image in images:
        stem = image.name.removesuffix("_leftImg8bit.png")
        label = labels_dir / image.parent.name / f"{stem}_gtFine_labelIds.png"
        if not label.is_file():
            raise DatasetError(f"{image}: no label, expected {label}")
        pairs.append((image, label))
    return pairs


def _listed_pairs(root: Path, listing: Path) -> list[Pair]:
    """Pairs from a SegNet list file: one 'image mask' line per sample, paths relative to the root."""
    pairs = []
    try:
        lines = listing.read_text().splitlines()
    except UnicodeDecodeError:
        raise DatasetError(f"{listing}: not a text list of 'image mask' lines") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise DatasetError(f"{listing} line {number}: expected 'image mask', got {line.strip()!r}")
        image, label = root / fields[0], root / fields[1]
        for path in (image, label):
            if not path.resolve().is_relative_to(root.resolve()):
                raise DatasetError(f"{listing} line {number}: {path} lies outside data.root {root}; list paths "
                                   f"relative to the root, inside it")
        if not image.is_file():
            raise DatasetError(f"{listing} line {number}: image {image} does not exist")
        if not label.is_file():
            raise DatasetError(f"{listing} line {number}: {image} has no label ({label} does not exist)")
        pairs.append((image, label))
    return pairs


def _folder_pairs(root: Path, split: str) -> list[Pair]:
    """Pairs of root/<split>/X and root/<split>annot/X (same file name)."""
    images_dir = _require_dir(root / split, f"split folder {split!r} (and no {split}.txt list)")
    labels_dir = _require_dir(root / f"{split}annot", f"label folder of split {split!r}")
    pairs = []
    for image in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES):
        label = labels_dir / image.name
        if not label.is_file():
            raise DatasetError(f"{image}: no label, expected {label}")
        pairs.append((image, label))
    return pairs


def camvid_pairs(root: Path, split: str) -> list[Pair]:
    """From root/<split>.txt when present, else root/<split> and root/<split>annot paired by file name."""
    _require_dir(root, "CamVid root")
    listing = root / f"{split}.txt"
    pairs = _listed_pairs(root, listing) if listing.is_file() else _folder_pairs(root, split)
    if not pairs:
        raise DatasetError(f"{listing if listing.is_file() else root / split}: split {split!r} has no images")
    return pairs


class Cityscapes(FileDataset):
    """Cityscapes fine annotations, official layout; labelIds -> the 19 trainIds of cityscapesscripts' table."""

    class_names = CITYSCAPES_CLASSES

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None):
        super().__init__(cityscapes_pairs(Path(root), split), CITYSCAPES_LABELS, transform)


class CamVid(FileDataset):
    """CamVid, SegNet layout: 11 classes, mask value 11 (unlabelled) -> 255."""

    class_names = CAMVID_CLASSES

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None):
        super().__init__(camvid_pairs(Path(root), split), CAMVID_LABELS, transform)


def _stems(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """The files of a folder with one of `suffixes`, by stem; two files of one stem raise DatasetError."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file()):
        if path.stem in found:
            raise DatasetError(f"{path}: {found[path.stem].name} has the same stem; keep one image per name")
        found[path.stem] = path
    return found


def folder_pairs(root: Path, split: str) -> list[Pair]:
    """root/<split>/images/<stem>.png|jpg|jpeg with root/<split>/labels/<stem>.png; a file without its partner
    raises DatasetError naming it."""
    _require_dir(root, "data root")
    split_dir = _require_dir(root / split, f"split folder {split!r}")
    images = _stems(_require_dir(split_dir / "images", f"images folder of split {split!r}"), _FOLDER_IMAGES)
    labels = _stems(_require_dir(split_dir / "labels", f"labels folder of split {split!r}"), (".png",))
    for stem, image in images.items():
        if stem not in labels:
            raise DatasetError(f"{image}: no label, expected {split_dir / 'labels' / (stem + '.png')}")
    for stem, label in labels.items():
        if stem not in images:
            raise DatasetError(f"{label}: no image, expected {split_dir / 'images' / stem}.png, .jpg or .jpeg")
    if not images:
        raise DatasetError(f"{split_dir / 'images'}: split {split!r} has no .png, .jpg or .jpeg images")
    return [(images[stem], labels[stem]) for stem in images]


def folder_labels(classes: int, ignore_index: int = IGNORE_INDEX, label_map: dict[int, int] | None = None
                  ) -> LabelMap:
    """Label values of a folder data set -> classes: 0..classes-1 as they are, `ignore_index` ignored, and the
    values of `label_map` (raw value -> class id or ignore_index) mapped; any other value is refused."""
    pairs = {value: value for value in range(classes)}
    pairs[ignore_index] = IGNORE_INDEX
    for raw, target in (label_map or {}).items():
        pairs[raw] = IGNORE_INDEX if target == ignore_index and ignore_index >= classes else target
    return LabelMap.from_pairs("this data set's class", sorted(pairs.items()))


class Folder(FileDataset):
    """Your own data (`data.kind: folder`): images and single-channel PNG labels of class ids, paired by name."""

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None, *,
                 classes: tuple[str, ...], ignore_index: int = IGNORE_INDEX,
                 label_map: dict[int, int] | None = None):
        self.class_names = tuple(classes)
        super().__init__(folder_pairs(Path(root), split), folder_labels(len(classes), ignore_index, label_map),
                         transform)


def _synthetic(root: str | Path | None, split: str, transform: Transform | None = None, **options) -> Dataset:
    return SyntheticStreets(transform=transform, split=split, **options)


def _on_disk(kind: type[FileDataset]) -> Callable[..., Dataset]:
    def build(root: str | Path | None, split: str, transform: Transform | None = None, **options) -> Dataset:
        if root is None:
            raise DatasetError(f"dataset kind {kind.__name__.lower()!r} needs a root folder")
        return kind(root, split, transform, **options)

    return build


DATASETS: dict[str, Callable[..., Dataset]] = {"synthetic": _synthetic, "cityscapes": _on_disk(Cityscapes),
                                               "camvid": _on_disk(CamVid), "folder": _on_disk(Folder)}
"""Dataset kinds by name (the keys of engine.data.classes.DATASET_CLASSES): a builder (root, split, transform,
**options) each; a kind without classes of its own gets the options classes, ignore_index and label_map."""


def register_dataset(kind: str, builder: Callable[..., Dataset], classes: tuple[str, ...] | None = None) -> None:
    """Add a dataset kind, so `data.kind: <kind>` names it. `builder(root, split, transform, **options)` returns a
    Dataset with `load(index) -> (RGB uint8 [H, W, 3], class labels uint8 [H, W], 255 = ignore)`, a `transform`
    attribute it applies in `__getitem__`, `class_names` and `num_classes` (a `FileDataset` has them all);
    `classes`: the kind's class names, or None to take them from `data.classes` (the builder then gets the options
    classes, ignore_index and label_map). The kind lives in this process: with `retrain.workers` or
    `audit.workers` > 1, register it in a module the workers import too."""
    if not kind or not kind.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"dataset kind {kind!r} must be letters, digits, '_' or '-'")
    if kind in DATASETS:
        raise ValueError(f"dataset kind {kind!r} is already registered")
    DATASETS[kind] = builder
    DATASET_CLASSES[kind] = None if classes is None else tuple(classes)


def build_dataset(kind: str, root: str | Path | None, split: str, transform: Transform | None = None,
                  **options) -> Dataset:
    """A dataset by kind: cityscapes | camvid | folder (need `root`; folder's options: classes, ignore_index,
    label_map) or synthetic (options: size, count, seed), or a registered kind."""
    if kind not in DATASETS:
        raise DatasetError(f"unknown dataset kind {kind!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[kind](root, split, transform, **options)
