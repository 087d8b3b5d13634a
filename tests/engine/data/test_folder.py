"""`data.kind: folder`: your own images and PNG labels without code; one-line errors naming the file; the registries
that are the one source of a setting's allowed values; `register_dataset` from outside the package; and a whole run
on a 4-class folder data set of JPEG images with 255 borders and odd sizes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import ExperimentConfig, OneOf, load, one_of
from engine.data import FileDataset, LabelMap, register_dataset
from engine.data.classes import DATASET_CLASSES
from engine.data.datasets import DATASETS, Folder, build_dataset
from engine.data.splits import check_splits, size_mismatch, val_set
from engine.errors import ConfigError, DatasetError
from engine.evaluation.inherited import load_batches
from engine.run import main

CLASSES = ["background", "road", "car", "person"]


def write_pair(split_dir: Path, stem: str, size: tuple[int, int], seed: int, suffix: str = ".jpg") -> None:
    """An image (JPEG by default) and its label: class regions of a made-up scene, a 255 border of 2 pixels."""
    rng = np.random.default_rng(seed)
    height, width = size
    label = np.zeros(size, dtype=np.uint8)
    label[height // 2:] = 1
    label[height // 2:, width // 3: width // 2] = 2
    label[height // 4: height // 2, width - width // 4:] = 3
    palette = np.array([[70, 130, 180], [128, 64, 128], [0, 0, 142], [220, 20, 60]], dtype=np.uint8)
    image = np.clip(palette[label].astype(np.int16) + rng.integers(-20, 20, (*size, 3)), 0, 255).astype(np.uint8)
    label[:2], label[-2:], label[:, :2], label[:, -2:] = 255, 255, 255, 255
    (split_dir / "images").mkdir(parents=True, exist_ok=True)
    (split_dir / "labels").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(split_dir / "images" / f"{stem}{suffix}")
    Image.fromarray(label).save(split_dir / "labels" / f"{stem}.png")


def make_folder(root: Path, counts: dict[str, int]) -> Path:
    """A folder data set of odd-sized JPEG images (two sizes in every split) with 255-bordered PNG labels."""
    for split, count in counts.items():
        for index in range(count):
            write_pair(root / split, f"{split}_{index:03d}", (67, 101) if index % 2 else (75, 93), index)
    return root


def folder_config(root: Path, **data) -> dict:
    return {"name": "own", "data": {"kind": "folder", "root": str(root), "classes": CLASSES, **data}}


def test_pairs_labels_and_class_names(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "set", {"train": 3})
    dataset = build_dataset("folder", root, "train", classes=tuple(CLASSES))
    assert len(dataset) == 3 and dataset.class_names == tuple(CLASSES) and dataset.num_classes == 4
    image, label = dataset.load(1)
    assert image.shape == (67, 101, 3) and set(np.unique(label)) == {0, 1, 2, 3, 255}
    _, tensor = dataset[0]
    assert tensor.shape == (75, 93) and tensor.dtype == torch.int64


def test_label_map_and_ignore_index(tmp_path: Path) -> None:
    split = tmp_path / "set" / "train"
    write_pair(split, "a", (40, 50), 0, ".png")
    raw = np.asarray(Image.open(split / "labels" / "a.png")).copy()
    remapped = np.select([raw == 0, raw == 1, raw == 2, raw == 3], [0, 7, 26, 24], 0).astype(np.uint8)  # 0: ignore
    Image.fromarray(remapped).save(split / "labels" / "a.png")
    dataset = Folder(tmp_path / "set", "train", classes=("road", "car", "person"), ignore_index=0,
                     label_map={7: 0, 26: 1, 24: 2})
    label = dataset.load(0)[1]
    expected = np.select([raw == 1, raw == 2, raw == 3], [0, 1, 2], 255)
    assert np.array_equal(label, expected)


@pytest.mark.parametrize("damage, message", [
    (lambda split: (split / "labels" / "b.png").unlink(), r"images/b\.jpg: no label, expected .*labels/b\.png"),
    (lambda split: (split / "images" / "b.jpg").unlink(), r"labels/b\.png: no image, expected .*images/b\.png"),
    (lambda split: Image.fromarray(np.zeros((9, 9), np.uint8)).save(split / "labels" / "b.png"),
     r"labels/b\.png: label is 9x9 but its image .*b\.jpg is 50x40"),
    (lambda split: Image.fromarray(np.full((40, 50), 4, np.uint8)).save(split / "labels" / "b.png"),
     r"labels/b\.png: label ids \[4\] are not this data set's class ids \(known: \[0, 1, 2, 3, 255\]\)"),
    (lambda split: (split / "images" / "b.jpg").write_bytes(b"not a jpeg"), r"images/b\.jpg: cannot be read"),
    (lambda split: write_pair(split, "b", (40, 50), 1, ".png"), r"images/b\.png: b\.jpg has the same stem"),
])
def test_bad_files_are_one_line_naming_the_file(tmp_path: Path, damage, message: str) -> None:
    split = tmp_path / "set" / "train"
    for stem in ("a", "b"):
        write_pair(split, stem, (40, 50), 0)
    damage(split)
    with pytest.raises(DatasetError, match=message) as caught:
        dataset = Folder(tmp_path / "set", "train", classes=tuple(CLASSES))
        for index in range(len(dataset)):
            dataset.load(index)
    assert "\n" not in str(caught.value)


def test_a_missing_split_is_named_by_its_setting(tmp_path: Path) -> None:
    make_folder(tmp_path / "set", {"train": 2})
    config = ExperimentConfig.model_validate(folder_config(tmp_path / "set"))
    with pytest.raises(DatasetError, match=r"data.val_split 'val': .*set/val: split folder 'val' does not exist"):
        check_splits(config.data)


@pytest.mark.parametrize("data, message", [
    ({"classes": None}, r"data: Value error, data.classes is required for kind folder"),
    ({"classes": ["a", "b", "a"]}, r"names a class twice"),
    ({"ignore_index": 2}, r"data.ignore_index 2 is also a class id"),
    ({"label_map": {300: 1}}, r"data.label_map 300: 1: label values are 0..255"),
    ({"label_map": {7: 9}}, r"map to a class id 0..3 or ignore_index 255"),
    ({"classes": [{"name": "road", "color": [0, 0, 300]}]},
     r"data.classes.0.color: Value error, a colour is \[r, g, b\] with each in 0..255"),
    ({"kind": "camvid"}, r"data.classes is for kind folder; kind camvid has its own classes"),
    ({"kind": "kitti"}, r"data.kind: Value error, unknown 'kitti'; known: synthetic, camvid, cityscapes, folder"),
])
def test_bad_folder_settings_are_one_line(tmp_path: Path, data: dict, message: str) -> None:
    make_folder(tmp_path / "set", {"train": 1})
    path = tmp_path / "own.yaml"
    path.write_text(json.dumps(folder_config(tmp_path / "set", **data)))
    with pytest.raises(ConfigError, match=message) as caught:
        load(path)
    assert "\n" not in str(caught.value)


def test_the_head_follows_the_classes_and_their_colours(tmp_path: Path) -> None:
    make_folder(tmp_path / "set", {"train": 1})
    classes = [{"name": "road", "color": [128, 64, 128]}, "car"]
    config = ExperimentConfig.model_validate(folder_config(tmp_path / "set", classes=classes))
    assert config.space.num_classes == 2 and config.data.class_names == ("road", "car")
    assert config.data.class_colors == [(128, 64, 128), None]


def test_images_of_several_sizes_are_evaluated_at_their_own_size(tmp_path: Path) -> None:
    make_folder(tmp_path / "set", {"train": 2, "val": 5})
    config = ExperimentConfig.model_validate(folder_config(tmp_path / "set"))
    batches = load_batches(val_set(config.data), None, 2)
    assert sorted(tuple(images.shape) for images, _ in batches) == [
        (1, 3, 75, 93), (2, 3, 67, 101), (2, 3, 75, 93)]
    assert sum(len(labels) for _, labels in batches) == 5


def test_a_size_other_than_the_latency_input_is_warned_about(tmp_path: Path) -> None:
    make_folder(tmp_path / "set", {"train": 2, "val": 2})
    config = ExperimentConfig.model_validate({**folder_config(tmp_path / "set"), "space": {"input_size": [64, 96]}})
    listings = check_splits(config.data)
    assert [(listing.split, listing.images, listing.sizes) for listing in listings] == [
        ("train", 2, ((75, 93), (67, 101))), ("val", 2, ((75, 93), (67, 101)))]
    warning = size_mismatch(config.data, config.space.input_size, listings)
    assert warning.startswith("images are evaluated at 67x101, 75x93 but latency is measured at 64x96")
    resized = config.data.model_copy(update={"eval_size": (64, 96)})
    assert size_mismatch(resized, config.space.input_size, listings) is None


def stripes(root, split: str, transform=None) -> FileDataset:
    """A kind registered from this test module: the folder layout read with fixed classes."""
    dataset = Folder(root, split, transform, classes=("sky", "ground"))
    return FileDataset(dataset.pairs, LabelMap.from_pairs("stripes", [(0, 0), (1, 1), (255, 255)]), transform)


def test_register_dataset_adds_a_kind_from_outside_the_package(tmp_path: Path) -> None:
    split = tmp_path / "set" / "train"
    write_pair(split, "a", (40, 50), 0)
    Image.fromarray(np.asarray(Image.open(split / "labels" / "a.png")) % 2).save(split / "labels" / "a.png")
    register_dataset("stripes_test", stripes, classes=("sky", "ground"))
    try:
        config = ExperimentConfig.model_validate({"name": "s", "data": {"kind": "stripes_test", "root": str(tmp_path /
                                                                                                         "set")}})
        assert config.space.num_classes == 2 and config.data.class_names == ("sky", "ground")
        assert set(np.unique(build_dataset("stripes_test", tmp_path / "set", "train").load(0)[1])) == {0, 1}
        with pytest.raises(ValueError, match="already registered"):
            register_dataset("stripes_test", stripes)
    finally:
        DATASETS.pop("stripes_test"), DATASET_CLASSES.pop("stripes_test")


REGISTRIES = {  # setting -> the registry that is its one list of allowed values
    ("data", "kind"): ("engine.data.classes", "DATASET_CLASSES"),
    ("latency", "backend"): ("hardware.backends", "BACKENDS"),
    ("supernet", "optimizer"): ("engine.training.optim", "OPTIMIZERS"),
    ("supernet", "schedule"): ("engine.training.optim", "SCHEDULES"),
    ("supernet", "sampling"): ("engine.training.sampling", "SAMPLING"),
    ("search", "algorithm"): ("engine.search.operators", "ALGORITHMS"),
    ("search", "accuracy_surrogate", "kinds"): ("predictors.accuracy", "KINDS"),
}


@pytest.mark.parametrize("setting", REGISTRIES, ids=".".join)
def test_each_registry_is_its_settings_list_of_values(setting: tuple[str, ...]) -> None:
    """The setting's validator reads the registry; every registered name is accepted and nothing else is."""
    module, registry = REGISTRIES[setting]
    model = ExperimentConfig
    for part in setting[:-1]:
        model = model.model_fields[part].annotation
    assert one_of(model.model_fields[setting[-1]]) == OneOf(module, registry)
    names = OneOf(module, registry).names()
    assert names and set(names) == set(__import__(module, fromlist=[registry]).__dict__[registry])

    def tree(value) -> dict:
        node: dict = {"name": "r"}
        inner = node
        for part in setting[:-1]:
            inner = inner.setdefault(part, {})
        inner[setting[-1]] = [value] if setting[-1] == "kinds" else value
        return node

    extra = {"data": {"root": "."}} if setting == ("data", "kind") else {}
    for name in names:
        if name in ("folder",) or (setting == ("data", "kind") and name != "synthetic"):
            continue  # kinds that read files need a root with data; their names are checked by the next line
        ExperimentConfig.model_validate({**tree(name), **{k: v for k, v in extra.items() if k not in tree(name)}})
    with pytest.raises(ValueError, match=re.escape("unknown 'no-such-name'; known: " + ", ".join(names))):
        ExperimentConfig.model_validate(tree("no-such-name"))


def test_a_four_class_folder_data_set_runs_end_to_end(quickstart, run_args, tmp_path: Path) -> None:
    """The quickstart's pipeline on a folder data set, no code changed: the head, metrics.json and the report have
    the 4 classes and no other."""
    root = make_folder(tmp_path / "set", {"train": 12, "val": 4, "test": 3})
    classes = f"data.classes=[{','.join(CLASSES)}]"
    args = [a for a in run_args if not a.startswith("data.synthetic")]
    code = main([quickstart, *args, "data.kind=folder", f"data.root={root}", classes, "data.test_split=test",
                 "data.crop=[64,96]", "data.eval_size=[64,128]", "name=own"])
    assert code == 0
    run = tmp_path / "own"
    picked = json.loads((run / "selected" / "selection.json").read_text())["picked"]
    report = re.sub(r"<script[^>]*>.*?</script>", lambda m: "" if len(m.group()) > 10**6 else m.group(),
                    (run / "report.html").read_text(), flags=re.S)  # without plotly.js's own words
    for entry in picked:
        metrics = json.loads((run / "selected" / entry["label"] / "metrics.json").read_text())
        assert metrics["class_names"] == CLASSES and len(metrics["iou"]) == 4
        assert len(metrics["test_iou"]) == 4
    for name in CLASSES:
        assert name in report
    for name in ("sky", "building", "sidewalk", "vegetation", "terrain", "pole", "fence"):  # synthetic classes
        assert name not in report
