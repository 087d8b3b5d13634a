"""Shared fixtures: the material in ../shared (skipped with a reason when absent, used when present as in CI)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SQUEEZENAS_SHARED", ROOT.parent / "shared"))
FRAME = "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def shared_path(relative: str) -> Path:
    """A path under ../shared/data; the calling test is skipped, with the path as reason, when it is absent."""
    path = SHARED / "data" / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not beside this checkout)")
    return path


@pytest.fixture(scope="session")
def cityscapes_frame() -> torch.Tensor:
    """The real Cityscapes frame, RGB 256x128 bilinearly resized to 1024x2048, ImageNet-normalised: [1,3,H,W]."""
    image = Image.open(shared_path("cityscapes-sample") / FRAME).convert("RGB")
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(1024, 2048), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std
