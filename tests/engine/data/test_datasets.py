"""Datasets and transforms: real CamVid and Cityscapes from ../shared, synthetic scenes, layout errors, augmentation."""

from __future__ import annotations

import zlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as CITYSCAPES_TABLE
from PIL import Image
from torch.utils.data import DataLoader

from engine.data.datasets import CAMVID_CLASSES, CamVid, Cityscapes, DatasetError, build_dataset
from engine.data.synthetic import SYNTHETIC_CLASSES, SyntheticStreets
from engine.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ColorJitter,
    TrainTransform,
    eval_transform,
    train_transform,
)

CITY_IMAGE = "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png"
CITY_LABEL = "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png"


def _values(label: torch.Tensor) -> set[int]:
    return set(torch.unique(label).tolist())


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rgb(height: int = 4, width: int = 6) -> np.ndarray:
    return np.full((height, width, 3), 128, np.uint8)


def _ids(value: int, height: int = 4, width: int = 6) -> np.ndarray:
    return np.full((height, width), value, np.uint8)


def _one_line_error(make, *fragments: str | Path) -> None:
    with pytest.raises(DatasetError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert str(fragment) in message, message


def test_camvid_splits_shapes_and_labels(shared) -> None:
    root = shared("camvid")
    train, val = CamVid(root, "train"), build_dataset("camvid", root, "val")
    assert (len(train), len(val)) == (367, 101)
    assert train.class_names == CAMVID_CLASSES and train.num_classes == 11 and train.ignore_index == 255
    for dataset in (train, val):
        image, label = dataset[0]
        assert image.shape == (3, 360, 480) and image.dtype == torch.float32
        assert label.shape == (360, 480) and label.dtype == torch.int64
        assert _values(label) <= set(range(11)) | {255}
    mask = np.asarray(Image.open(train.pairs[0][1]))
    label = train[0][1].numpy()
    assert (label[mask == 11] == 255).all() and (label[mask < 11] == mask[mask < 11]).all()


def test_camvid_without_list_pairs_folders_by_name(shared, tmp_path: Path) -> None:
    root = shared("camvid")
    for folder in ("val", "valannot"):
        (tmp_path / folder).symlink_to(root / folder)
    listed, paired = CamVid(root, "val"), CamVid(tmp_path, "val")
    assert [(i.name, m.name) for i, m in listed.pairs] == [(i.name, m.name) for i, m in paired.pairs]


def test_cityscapes_sample_maps_label_ids_through_the_official_table(shared) -> None:
    dataset = Cityscapes(shared("cityscapes-sample"), "val")
    assert len(dataset) == 1 and dataset.num_classes == 19
    assert dataset.class_names[0] == "road" and dataset.class_names[18] == "bicycle"
    image, label = dataset[0]
    assert image.shape == (3, 128, 256) and label.shape == (128, 256)
    assert _values(label) <= set(range(19)) | {255}
    ids = np.asarray(Image.open(dataset.pairs[0][1]))
    train_ids = {entry.id: entry.trainId for entry in CITYSCAPES_TABLE}
    for label_id in (1, 4, 7, 8, 11, 21, 23, 26):  # ego vehicle, static, road, sidewalk, building, vegetation, sky, car
        expected = train_ids[label_id] if 0 <= train_ids[label_id] < 255 else 255
        assert (ids == label_id).any() and (label.numpy()[ids == label_id] == expected).all(), label_id


def test_synthetic_is_deterministic_per_seed_split_and_index() -> None:
    first, same, other = (SyntheticStreets(size=(48, 96), count=3, seed=seed) for seed in (7, 7, 8))
    image, label = first[1]
    assert torch.equal(image, same[1][0]) and torch.equal(label, same[1][1])
    assert not torch.equal(image, other[1][0]) and not torch.equal(label, other[1][1])
    assert not torch.equal(label, first[2][1])
    validation = build_dataset("synthetic", None, "val", size=(48, 96), count=3, seed=7)
    assert not torch.equal(label, validation[1][1])


def test_synthetic_sizes_and_every_class_appears() -> None:
    dataset = SyntheticStreets(size=(96, 192), count=8, seed=0)
    assert dataset.num_classes == len(SYNTHETIC_CLASSES) and dataset.ignore_index == 255
    seen: set[int] = set()
    for image, label in dataset:
        assert image.shape == (3, 96, 192) and image.dtype == torch.float32
        assert label.shape == (96, 192) and label.dtype == torch.int64
        seen |= _values(label)
    assert seen == set(range(len(SYNTHETIC_CLASSES)))
    image, label = SyntheticStreets(size=(37, 50), count=1)[0]
    assert image.shape == (3, 37, 50) and label.shape == (37, 50)


def test_a_synthetic_scene_is_rendered_once_and_kept_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.data.synthetic as synthetic

    calls: list[int] = []
    render = synthetic.render_street
    monkeypatch.setattr(synthetic, "render_street", lambda size, seed: calls.append(seed[-1]) or render(size, seed))
    dataset = SyntheticStreets(size=(32, 64), count=3, seed=5, transform=train_transform((24, 40)))
    image, label = dataset.load(1)
    for _ in range(3):
        assert dataset.load(1)[0] is image and dataset.load(-2)[1] is label
        dataset[1]
    assert calls == [1]
    fresh = render((32, 64), (5, zlib.crc32(b"train"), 1))
    assert np.array_equal(image, fresh[0]) and np.array_equal(label, fresh[1])
    with pytest.raises(ValueError, match="read-only"):
        image[0, 0, 0] = 1
    monkeypatch.setattr(synthetic, "CACHE_BYTES", 0)
    uncached = SyntheticStreets(size=(32, 64), count=3, seed=5)
    assert uncached.load(2)[0] is not uncached.load(2)[0] and calls == [1, 2, 2]


def test_synthetic_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 16x16"):
        SyntheticStreets(size=(8, 64))
    with pytest.raises(ValueError, match="count must be positive"):
        SyntheticStreets(count=0)
    with pytest.raises(IndexError):
        SyntheticStreets(size=(32, 32), count=2)[2]


def test_missing_root(tmp_path: Path) -> None:
    _one_line_error(lambda: Cityscapes(tmp_path / "none", "val"), tmp_path / "none")
    _one_line_error(lambda: CamVid(tmp_path / "none", "val"), tmp_path / "none")


def test_missing_split_folder(tmp_path: Path) -> None:
    _one_line_error(lambda: Cityscapes(tmp_path, "val"), tmp_path / "leftImg8bit" / "val")
    _one_line_error(lambda: CamVid(tmp_path, "val"), tmp_path / "val")
    (tmp_path / "val").mkdir()
    _one_line_error(lambda: CamVid(tmp_path, "val"), tmp_path / "valannot")


def test_empty_split(tmp_path: Path) -> None:
    for folder in ("leftImg8bit/val/aachen", "gtFine/val/aachen", "val", "valannot"):
        (tmp_path / folder).mkdir(parents=True)
    _one_line_error(lambda: Cityscapes(tmp_path, "val"), tmp_path / "leftImg8bit" / "val", "has no")
    _one_line_error(lambda: CamVid(tmp_path, "val"), tmp_path / "val", "has no images")
    (tmp_path / "val.txt").write_text("\n")
    _one_line_error(lambda: CamVid(tmp_path, "val"), tmp_path / "val.txt", "has no images")


def test_image_without_label(tmp_path: Path) -> None:
    image = _png(tmp_path / CITY_IMAGE, _rgb())
    (tmp_path / "gtFine" / "val" / "aachen").mkdir(parents=True)
    _one_line_error(lambda: Cityscapes(tmp_path, "val"), image, tmp_path / CITY_LABEL)
    image = _png(tmp_path / "val" / "a.png", _rgb())
    (tmp_path / "valannot").mkdir()
    _one_line_error(lambda: CamVid(tmp_path, "val"), image, tmp_path / "valannot" / "a.png")
    (tmp_path / "val.txt").write_text("val/a.png valannot/a.png\n")
    _one_line_error(lambda: CamVid(tmp_path, "val"), tmp_path / "val.txt", "line 1", tmp_path / "valannot" / "a.png")


def test_image_and_label_sizes_must_match(tmp_path: Path) -> None:
    _png(tmp_path / CITY_IMAGE, _rgb(4, 6))
    label = _png(tmp_path / CITY_LABEL, _ids(7, 5, 6))
    dataset = Cityscapes(tmp_path, "val")
    _one_line_error(lambda: dataset[0], label, "6x5", "6x4")
    _png(tmp_path / "val" / "a.png", _rgb(4, 6))
    mask = _png(tmp_path / "valannot" / "a.png", _ids(3, 4, 7))
    _one_line_error(lambda: CamVid(tmp_path, "val")[0], mask, "7x4")


def test_label_ids_outside_the_dataset(tmp_path: Path) -> None:
    _png(tmp_path / CITY_IMAGE, _rgb())
    label = _png(tmp_path / CITY_LABEL, _ids(40))
    _one_line_error(lambda: Cityscapes(tmp_path, "val")[0], label, "[40]")
    _png(tmp_path / "val" / "a.png", _rgb())
    mask = _png(tmp_path / "valannot" / "a.png", _ids(12))
    _one_line_error(lambda: CamVid(tmp_path, "val")[0], mask, "[12]")
    _png(mask, _ids(11))
    assert _values(CamVid(tmp_path, "val")[0][1]) == {255}


def test_a_decompression_bomb_is_refused_naming_the_file(tmp_path: Path, monkeypatch) -> None:
    image = _png(tmp_path / "val" / "a.png", _rgb(60, 60))
    _png(tmp_path / "valannot" / "a.png", _ids(3, 60, 60))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 3,600 pixels is then past PIL's bomb limit (2x)
    _one_line_error(lambda: CamVid(tmp_path, "val")[0], image, "too many pixels")


def test_a_binary_list_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    (tmp_path / "val.txt").write_bytes(b"\xff\xfe\x00binary")
    _one_line_error(lambda: CamVid(tmp_path, "val"), tmp_path / "val.txt", "not a text list")


def test_build_dataset_rejects_unknown_kinds_and_missing_roots() -> None:
    with pytest.raises(DatasetError, match="unknown dataset kind 'kitti'"):
        build_dataset("kitti", "data", "train")
    with pytest.raises(DatasetError, match="'camvid' needs a root folder"):
        build_dataset("camvid", None, "train")


def test_crop_sizes_and_padding_with_ignore() -> None:
    image, label = np.full((10, 12, 3), 200, np.uint8), np.full((10, 12), 3, np.uint8)
    transform = train_transform((20, 30), scale=(1.0, 1.0), flip=False, jitter=None)
    x, y = transform(image, label, np.random.default_rng(0))
    assert x.shape == (3, 20, 30) and x.dtype == torch.float32 and y.shape == (20, 30) and y.dtype == torch.int64
    pad = y == 255
    assert int(pad.sum()) == 20 * 30 - 10 * 12 and int((y == 3).sum()) == 10 * 12
    assert torch.all(x[:, pad] == 0)
    inside = torch.from_numpy((200 / 255 - IMAGENET_MEAN) / IMAGENET_STD)
    assert torch.allclose(x[:, ~pad], inside[:, None])
    for crop in ((6, 8), (16, 5)):
        x, y = train_transform(crop)(image, label, np.random.default_rng(1))
        assert x.shape == (3, *crop) and y.shape == crop


def test_flip_moves_image_and_label_together() -> None:
    image, label = np.zeros((8, 16, 3), np.uint8), np.zeros((8, 16), np.uint8)
    image[:, :5, 0], label[:, :5] = 255, 1
    transform = TrainTransform(crop=(8, 16), scale=(1.0, 1.0), flip=True, jitter=None)
    flipped = set()
    for seed in range(12):
        x, y = transform(image, label, np.random.default_rng(seed))
        assert torch.equal(x[0] > 0, y == 1)
        flipped.add(bool(y[0, -1] == 1))
    assert flipped == {True, False}


def test_augmentation_is_reproducible() -> None:
    source = np.random.default_rng(0)
    image, label = source.integers(0, 256, (40, 50, 3), dtype=np.uint8), source.integers(0, 6, (40, 50))
    transform = train_transform((24, 32))
    first, again, other = (transform(image, label, np.random.default_rng(seed)) for seed in (3, 3, 4))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    outputs = []
    for _ in range(2):
        torch.manual_seed(0)
        outputs.append(transform(image, label))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])


def test_loader_augmentations_repeat_with_the_seed_and_change_per_epoch() -> None:
    dataset = SyntheticStreets(size=(32, 64), count=2, transform=train_transform((24, 40)))

    def epochs() -> list[torch.Tensor]:
        torch.manual_seed(0)
        loader = DataLoader(dataset, batch_size=2, num_workers=0)
        return [next(iter(loader))[0] for _ in range(2)]

    run, rerun = epochs(), epochs()
    assert torch.equal(run[0], rerun[0]) and torch.equal(run[1], rerun[1])
    assert not torch.equal(run[0], run[1])


def test_eval_transform_normalises_and_resizes_labels_by_nearest() -> None:
    image = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    label = np.zeros((12, 20), np.uint8)
    label[:6], label[:, :3] = 7, 255
    x, y = eval_transform()(image, label)
    expected = (image.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    assert torch.allclose(x, torch.from_numpy(expected).permute(2, 0, 1))
    assert torch.equal(y, torch.from_numpy(label).long())
    x, y = eval_transform((9, 13))(image, label)
    assert x.shape == (3, 9, 13) and y.shape == (9, 13) and _values(y) == {0, 7, 255}


def test_colour_jitter_strengths_are_checked() -> None:
    with pytest.raises(ValueError, match="brightness"):
        ColorJitter(brightness=1.5)
    pixels = np.random.default_rng(0).random((4, 4, 3), dtype=np.float32)
    out = ColorJitter(0.5, 0.5, 0.5)(pixels, np.random.default_rng(0))
    assert out.shape == pixels.shape and out.min() >= 0 and out.max() <= 1 and not np.allclose(out, pixels)


def test_an_image_over_the_pixel_bound_is_refused_before_it_is_decoded(tmp_path: Path, monkeypatch) -> None:
    image = _png(tmp_path / "val" / "a.png", _rgb(60, 60))
    _png(tmp_path / "valannot" / "a.png", _ids(3, 60, 60))
    decoded = []
    monkeypatch.setattr(np, "asarray", lambda *a, **k: decoded.append(a) or np.array(*a, **k))
    monkeypatch.setattr("engine.data.datasets.MAX_PIXELS", 3000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's own two-line warning would fail the test
        _one_line_error(lambda: CamVid(tmp_path, "val")[0], image, "60x60 has more than 3,000 pixels")
    assert decoded == []


def test_a_label_of_another_size_is_found_from_the_headers(tmp_path: Path, monkeypatch) -> None:
    _png(tmp_path / "val" / "a.png", _rgb(60, 60))
    label = _png(tmp_path / "valannot" / "a.png", _ids(3, 30, 60))
    decoded = []
    monkeypatch.setattr("engine.data.datasets._read", lambda *a: decoded.append(a))
    _one_line_error(lambda: CamVid(tmp_path, "val")[0], label, "label is 60x30 but its image")
    assert decoded == []


@pytest.mark.parametrize("listed", ["../outside/a.png", "/etc/hostname"])
def test_a_list_file_path_outside_the_root_is_refused(tmp_path: Path, listed: str) -> None:
    root = tmp_path / "camvid"
    _png(root / "val" / "a.png", _rgb())
    _png(root / "valannot" / "a.png", _ids(3))
    _png(tmp_path / "outside" / "a.png", _rgb())
    (root / "val.txt").write_text(f"{listed} valannot/a.png\n")
    _one_line_error(lambda: CamVid(root, "val"), "val.txt line 1", "lies outside data.root")
