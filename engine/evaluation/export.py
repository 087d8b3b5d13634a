"""ONNX export of a trained network, checked with ONNX Runtime against torch on the same input.

The graph is written with hardware.backends.to_onnx (the exporter the device backends use, one static input
shape), loaded into an ONNX Runtime CPU session, and run on the backends' seeded example input; the largest
absolute difference from torch's logits is returned and must stay within `tolerance`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from engine.errors import ExportMismatch
from engine.files import atomic
from hardware.backends import INPUT_NAME, example_input, to_onnx


@torch.no_grad()
def export_checked(network: nn.Module, shape: tuple[int, ...], path: Path, tolerance: float = 1e-3) -> float:
    """Write `path` (ONNX) and return max |torch - ONNX Runtime| on the example input."""
    network = network.cpu().eval()
    graph = to_onnx(network, shape)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a check, not a benchmark: no thread pool left spinning after it
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    x = example_input(shape)
    theirs = session.run(None, {INPUT_NAME: x.numpy()})[0]
    diff = float(np.abs(network(x).numpy() - theirs).max())
    if not diff <= tolerance:
        raise ExportMismatch(f"{path}: ONNX Runtime differs from torch by {diff:.3g} (tolerance {tolerance:g})")
    with atomic(path, "wb") as handle:
        handle.write(graph)
    return diff
