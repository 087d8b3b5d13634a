"""Semantic segmentation metric: a confusion matrix accumulated over label maps, and the scores read from it.

Rows are ground truth, columns are prediction. Per-class IoU is tp / (tp + fp + fn), NaN for a class absent from
both prediction and ground truth; mIoU is the mean over the classes that are not NaN, as the Cityscapes
evaluation (cityscapesscripts' evalPixelLevelSemanticLabeling) computes it. Pixels whose target is
`ignore_index` are skipped. `all_reduce` sums the matrix over torch.distributed ranks, so distributed evaluation
equals evaluation in one process.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

LabelMap = torch.Tensor | np.ndarray


class SegmentationMetric:
    """Confusion matrix of `num_classes` classes (int64, [ground truth, prediction]) with mIoU and accuracies."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: LabelMap, target: LabelMap) -> None:
        """Add integer label maps of one shape (any, batched or not); `pred` may not hold ignore_index."""
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
        device = pred.device if isinstance(pred, torch.Tensor) else torch.device("cpu")
        pred, target = _labels(pred, "prediction", device), _labels(target, "target", device)
        self._check_range(pred, "prediction")
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        self._check_range(target, "target")
        n = self.num_classes
        counts = torch.bincount(target * n + pred, minlength=n * n).reshape(n, n)
        self.confusion = self.confusion.to(counts.device) + counts

    def _check_range(self, labels: torch.Tensor, name: str) -> None:
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.numel():
            values = bad.unique()[:5].tolist()
            raise ValueError(f"{name} holds value(s) {values} outside 0..{self.num_classes - 1} "
                             f"(ignore_index={self.ignore_index} is allowed only in the target)")

    def merge(self, other: SegmentationMetric) -> SegmentationMetric:
        """Add another metric's counts (same classes and ignore index) into this one."""
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(f"cannot merge a metric of {other.num_classes} classes (ignore {other.ignore_index}) "
                             f"into one of {self.num_classes} classes (ignore {self.ignore_index})")
        self.confusion = self.confusion + other.confusion.to(self.confusion.device)
        return self

    def all_reduce(self) -> SegmentationMetric:
        """Sum the confusion matrix over all ranks of the default process group; a no-op when none is set up."""
        if dist.is_available() and dist.is_initialized():
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
            total = self.confusion.to(device)
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
            self.confusion = total
        return self

    def compute(self) -> dict:
        """miou, iou (per class, NaN if absent from both), pixel_accuracy, mean_accuracy, confusion (lists)."""
        confusion = self.confusion.cpu().numpy()
        matrix = confusion.astype(np.float64)
        tp, gt, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = tp / (gt + predicted - tp)
            accuracy = tp / gt
        return {"miou": _nan_mean(iou), "iou": iou.tolist(),
                "pixel_accuracy": float(tp.sum() / matrix.sum()) if matrix.sum() else float("nan"),
                "mean_accuracy": _nan_mean(accuracy), "confusion": confusion.tolist()}


def _labels(labels: LabelMap, name: str, device: torch.device) -> torch.Tensor:
    """A label map as a flat int64 tensor on `device`; floating-point maps are refused."""
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(labels.astype(np.int64, copy=False))
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor or numpy array, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class labels, got dtype {labels.dtype} (take argmax of logits)")
    return labels.to(device=device, dtype=torch.int64).flatten()


def _nan_mean(values: np.ndarray) -> float:
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else float("nan")
