"""The class names of each dataset kind, by kind: the registry of kinds the configuration reads without importing
torch or the data stack (a kind's number of classes sizes the network's head). A kind whose entry is None takes its
classes from the configuration (`data.classes`): the folder kind, and kinds added by
`engine.data.register_dataset` without classes of their own."""

from __future__ import annotations

from cityscapesscripts.helpers.labels import labels as CITYSCAPES_TABLE

IGNORE_INDEX = 255
SYNTHETIC_CLASSES = ("sky", "building", "road", "sidewalk", "vegetation", "terrain", "car", "person", "pole",
                     "sign", "fence")
CAMVID_CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist")
CITYSCAPES_CLASSES = tuple(label.name for label in sorted(
    (label for label in CITYSCAPES_TABLE if 0 <= label.trainId < IGNORE_INDEX), key=lambda label: label.trainId))

DATASET_CLASSES: dict[str, tuple[str, ...] | None] = {
    "synthetic": SYNTHETIC_CLASSES, "camvid": CAMVID_CLASSES, "cityscapes": CITYSCAPES_CLASSES, "folder": None}
