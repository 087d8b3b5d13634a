"""`engine.metrics.SegmentationMetric`, the public entry point the design card names; it lives in
engine.evaluation.metrics."""

from engine.evaluation.metrics import SegmentationMetric

__all__ = ["SegmentationMetric"]
