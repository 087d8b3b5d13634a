"""`engine.metrics.SegmentationMetric`, the public door DESIGN.md names; it lives in engine.evaluation.metrics."""

from engine.evaluation.metrics import SegmentationMetric

__all__ = ["SegmentationMetric"]
