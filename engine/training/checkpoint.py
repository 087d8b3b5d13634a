"""Checkpoints written atomically and read without unpickling code: weights, optimizer, scheduler, RNG states."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import RECOMPUTE, CorruptFile
from engine.files import atomic


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states in a form torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached": cached},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A model's weights and buffers, detached, on the CPU (synchronised BN keeps BatchNorm2d's names)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (engine.files.atomic: a temporary file beside `path`, fsynced, renamed over it)."""
    with atomic(path, "wb") as handle:
        torch.save(payload, handle)


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint with weights_only=True: tensors and plain containers only, no code."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CorruptFile(f"{path}: not a readable checkpoint ({type(error).__name__}: {str(error).splitlines()[0]})"
                          + RECOMPUTE) from None
