"""Images and labels: dataset kinds (synthetic streets, CamVid, Cityscapes, a folder of your own), transforms,
seeded step loaders. `register_dataset` adds a kind from outside the package (read on first use, so importing
engine.data.classes, as the configuration does, loads no torch)."""

__all__ = ["FileDataset", "LabelMap", "register_dataset"]


def __getattr__(name: str):
    if name in __all__:
        from engine.data import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module 'engine.data' has no attribute {name!r}")
