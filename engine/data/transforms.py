"""Paired image/label transforms for semantic segmentation (numpy and PIL, no torchvision).

A transform is a callable `transform(image, label, rng=None) -> (image, label)`. It takes an RGB uint8 array
[H, W, 3] (or a PIL image) and an integer label map [H, W] with values 0..255 (255 = ignore), and returns a
float32 tensor [3, H, W], ImageNet-normalised from RGB in [0, 1], and an int64 tensor [H, W].

Randomness: `TrainTransform` draws every random choice from the `numpy.random.Generator` passed as `rng`. The
datasets pass none; the transform then seeds a fresh generator for the sample with one draw from torch's global
RNG (`sample_generator`). A DataLoader seeds that RNG in each worker from its own generator (base seed + worker
id) and, with num_workers=0, it is the process's RNG; so `torch.manual_seed(s)` (and, with workers,
`DataLoader(..., generator=torch.Generator().manual_seed(s))`) makes a run's augmentations reproducible for a
fixed number of workers, while each epoch still draws new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from engine.data.classes import IGNORE_INDEX

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def sample_generator() -> np.random.Generator:
    """A generator for one sample, seeded by one draw from torch's global RNG (see the module docstring)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, ())))


def as_arrays(image: np.ndarray | Image.Image, label: np.ndarray | Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The pair as an RGB uint8 array [H, W, 3] and a uint8 label array [H, W]; shapes and ranges are checked."""
    image = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    label = np.asarray(label)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be RGB uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
    if label.shape != image.shape[:2]:
        raise ValueError(f"label {list(label.shape)} does not match image {list(image.shape[:2])}")
    if label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > IGNORE_INDEX):
            raise ValueError(f"label values must lie in 0..255, got {label.min()}..{label.max()}")
        label = label.astype(np.uint8)
    return image, label


def resize(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize to `size` (H, W): the image bilinearly, the label by nearest neighbour."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image, label
    image = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    label = np.asarray(Image.fromarray(label).resize((width, height), Image.Resampling.NEAREST))
    return image, label


def normalise(pixels: np.ndarray) -> np.ndarray:
    """RGB floats in [0, 1] -> ImageNet-normalised floats (the mean colour becomes 0)."""
    return (pixels - IMAGENET_MEAN) / IMAGENET_STD


def to_tensors(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A normalised float image [H, W, 3] and a label [H, W] -> float32 [3, H, W] and int64 [H, W] tensors."""
    image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    return image, torch.from_numpy(label.astype(np.int64))


def _check_size(name: str, size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name} must be (height, width) of positive integers, got {size}")
    return int(size[0]), int(size[1])


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast and saturation factors, each drawn uniformly from [1 - s, 1 + s]."""

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"colour jitter {name} must lie in [0, 1], got {getattr(self, name)}")

    def __call__(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Jitter RGB floats [H, W, 3] in [0, 1]; the result is clipped to [0, 1]."""
        brightness, contrast, saturation = (
            rng.uniform(1 - s, 1 + s) for s in (self.brightness, self.contrast, self.saturation))
        pixels = np.clip(pixels * np.float32(brightness), 0, 1)
        mean = np.float32((pixels @ _LUMA).mean())
        pixels = np.clip((pixels - mean) * np.float32(contrast) + mean, 0, 1)
        grey = (pixels @ _LUMA)[..., None]
        return np.clip(grey + (pixels - grey) * np.float32(saturation), 0, 1)


def _window(size: int, crop: int, rng: np.random.Generator) -> tuple[slice, slice]:
    """Source and target slices on one axis: a random crop when size >= crop, else a random placement."""
    offset = int(rng.integers(0, abs(size - crop) + 1))
    if size >= crop:
        return slice(offset, offset + crop), slice(0, crop)
    return slice(0, size), slice(offset, offset + size)


@dataclass(frozen=True)
class TrainTransform:
    """Random scale, random crop (padding with the mean colour and 255 where the image is smaller), horizontal
    flip and colour jitter, then normalisation. The scale factor applies to the image's own size."""

    crop: tuple[int, int]
    scale: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    jitter: ColorJitter | None = ColorJitter()

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop", _check_size("crop", self.crop))
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale range must satisfy 0 < low <= high, got {self.scale}")

    def __call__(self, image: np.ndarray | Image.Image, label: np.ndarray | Image.Image,
                 rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        rng = sample_generator() if rng is None else rng
        image, label = as_arrays(image, label)
        factor = rng.uniform(*self.scale)
        height, width = label.shape
        image, label = resize(image, label, (max(1, round(height * factor)), max(1, round(width * factor))))
        (rows, to_rows), (cols, to_cols) = (_window(n, c, rng) for n, c in zip(label.shape, self.crop, strict=True))
        flip = self.flip and rng.random() < 0.5
        pixels = image[rows, cols].astype(np.float32) / 255
        if self.jitter is not None:
            pixels = self.jitter(pixels, rng)
        out_image = np.zeros((*self.crop, 3), dtype=np.float32)
        out_image[to_rows, to_cols] = normalise(pixels)
        out_label = np.full(self.crop, IGNORE_INDEX, dtype=np.uint8)
        out_label[to_rows, to_cols] = label[rows, cols]
        if flip:
            out_image, out_label = out_image[:, ::-1], out_label[:, ::-1]
        return to_tensors(out_image, out_label)


@dataclass(frozen=True)
class EvalTransform:
    """Optional resize to a fixed `size` (H, W), then normalisation; deterministic (`rng` is ignored)."""

    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.size is not None:
            object.__setattr__(self, "size", _check_size("size", self.size))

    def __call__(self, image: np.ndarray | Image.Image, label: np.ndarray | Image.Image,
                 rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = as_arrays(image, label)
        if self.size is not None:
            image, label = resize(image, label, self.size)
        return to_tensors(normalise(image.astype(np.float32) / 255), label)


def train_transform(crop: tuple[int, int], scale: tuple[float, float] = (0.5, 2.0), flip: bool = True,
                    jitter: float | tuple[float, float, float] | None = 0.2) -> TrainTransform:
    """The training transform; `jitter` is one strength for brightness, contrast and saturation, or three."""
    strengths = (jitter,) * 3 if isinstance(jitter, (int, float)) else jitter
    colour = ColorJitter(*strengths) if strengths is not None and any(strengths) else None
    return TrainTransform(tuple(crop), tuple(scale), flip, colour)


def eval_transform(size: tuple[int, int] | None = None) -> EvalTransform:
    """The evaluation transform: optional resize to `size` (H, W), then normalisation."""
    return EvalTransform(None if size is None else tuple(size))
