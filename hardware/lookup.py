"""Per-block latency lookup tables, as SqueezeNAS predicts latency: a network costs the sum of its blocks.

`measure_lookup_table` times every candidate block alone at each searchable layer's input shape, on one backend
under one protocol (blocks of the same shape at several layers are timed once). Identity skips cost 0: they run
no kernel. The fixed part (stem, neck, head) is the whole all-skip network's median minus its skip layers' table
entries, as spaces/costs.py counts the fixed MACs. This times the head on the real features of a network (the
LR-ASPP/ASPP head takes two inputs and the input size, which a stand-alone head module would need a harness
for) and puts the per-network costs that no block carries (the Network's forward, a runtime's call overhead)
into the fixed part once, where timing stem, neck and head as modules would leave them out. A genotype is
predicted as fixed + the sum of its chosen entries; the table is saved as JSON.

`hwnasbench_table` reads HW-NAS-Bench's FBNet tables (the file's `{device}_latency` entries, ms) into the same
form: its keys are ConvBlock_..., Skip_... (also for identity skips, which cost 0 on some devices and not on
others), the stem and head ConvNorm_..., AvgP_... and FC_.... Summing stem + blocks or skips + head ConvNorm +
AvgP + FC gives HELP's raspi4, pixel3, eyeriss and fpga columns exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import nn

from hardware.backends import Backend
from hardware.protocol import MeasurementProtocol, measure
from spaces.candidates import Candidate, build_candidate
from spaces.genotype import Genotype, smallest
from spaces.network import build, initialise
from spaces.space import LayerSpec, Skeleton, skeleton, space_of

FORMAT = "squeezenas-engine/latency-lookup-table"
VERSION = 1
HWNASBENCH_SIZES = {"fbnet_cifar": 32, "fbnet_imagenet": 224}


@dataclass(frozen=True)
class LookupTable:
    """latency_ms[layer, candidate] of each block alone, and fixed_ms for what every genotype adds."""

    skeleton: str
    size: tuple[int, int]
    width: float
    num_classes: int
    backend: str
    latency_ms: np.ndarray
    fixed_ms: float
    provenance: dict[str, object] = field(default_factory=dict)

    def predict(self, genotype: Genotype) -> float:
        return float(self.predict_many([genotype])[0])

    def predict_many(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        """fixed_ms + the chosen entries' sum, per genotype."""
        wrong = {g.skeleton for g in genotypes} - {self.skeleton}
        if wrong:
            raise ValueError(f"genotypes of skeleton {sorted(wrong)} priced with a {self.skeleton!r} lookup table")
        choices = np.array([g.choices for g in genotypes]).reshape(len(genotypes), -1)
        layers = np.arange(self.latency_ms.shape[0])
        return self.fixed_ms + self.latency_ms[layers, choices].sum(axis=1)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"format": FORMAT, "version": VERSION, "skeleton": self.skeleton, "size": list(self.size),
                  "width": self.width, "num_classes": self.num_classes, "backend": self.backend,
                  "candidates": [c.name for c in space_of(self.skeleton).candidates],
                  "latency_ms": self.latency_ms.tolist(), "fixed_ms": self.fixed_ms, "provenance": self.provenance}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # then renamed: a killed save leaves no half file
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LookupTable":
        path = Path(path)
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a latency lookup table ({error})") from None
        if record.get("format") != FORMAT or record.get("version") != VERSION:
            raise ValueError(f"{path}: format {record.get('format')!r} version {record.get('version')!r}, "
                             f"expected {FORMAT!r} version {VERSION}")
        return cls(record["skeleton"], tuple(record["size"]), record["width"], record["num_classes"],
                   record["backend"], np.array(record["latency_ms"], dtype=np.float64), record["fixed_ms"],
                   record["provenance"])


def _block(candidate: Candidate, spec: LayerSpec, skip_style: str) -> nn.Module:
    module = build_candidate(candidate, spec.c_in, spec.c_out, spec.stride, skip_style)
    initialise(module)
    return module


def measure_lookup_table(skeleton_name: str, backend: Backend, protocol: MeasurementProtocol, width: float = 1.0,
                         num_classes: int | None = None, statistic: str = "median_ms") -> LookupTable:
    """Time every candidate at every layer's input shape, and the fixed part, at protocol.size (module docstring);
    each by `statistic` of its timed runs (a LatencyStats field: median_ms, min_ms, ...), kept in the provenance."""
    frame = skeleton(skeleton_name).scaled(width, num_classes)
    space = space_of(skeleton_name)
    table = np.zeros((frame.num_layers, len(space.candidates)))
    timed: dict[tuple, float] = {}
    for i, (spec, (h, w)) in enumerate(zip(frame.layers(), frame.input_sizes(protocol.size))):
        for j, candidate in enumerate(space.candidates):
            module = _block(candidate, spec, space.skip_style)
            if isinstance(module, nn.Identity):
                continue
            signature = (candidate.name, spec, h, w)
            if signature not in timed:
                shape = (protocol.batch, spec.c_in, h, w)
                timed[signature] = getattr(measure(module, backend, protocol, shape).stats, statistic)
            table[i, j] = timed[signature]
    base = smallest(skeleton_name)
    whole = measure(build(base, width, num_classes), backend, protocol)
    fixed = getattr(whole.stats, statistic) - table[np.arange(frame.num_layers), base.choices].sum()
    return LookupTable(skeleton_name, protocol.size, width, frame.num_classes, backend.name, table, float(fixed),
                       {**whole.provenance, "statistic": statistic})


def _hwnasbench_keys(frame: Skeleton, size: int) -> tuple[list[list[str]], list[str]]:
    """Table keys per layer and candidate, and of the fixed part (stem, head conv, pooling, FC)."""
    space = space_of(frame.name)
    layers = []
    sizes = frame.input_sizes((size, size))
    for spec, (h, w) in zip(frame.layers(), sizes):
        shape = f"H{h}_W{w}_Cin{spec.c_in}_Cout{spec.c_out}"
        layers.append([
            f"Skip_{shape}_stride{spec.stride}" if c.is_skip else
            f"ConvBlock_{shape}_exp{c.expansion:g}_kernel{c.kernel}_stride{spec.stride}_group{c.groups}"
            for c in space.candidates
        ])
    last = frame.layers()[-1]
    h, w = frame.output_sizes((size, size))[-1]
    neck = frame.neck
    fixed = [f"ConvNorm_H{size}_W{size}_Cin3_Cout{frame.stem}_kernel3_stride{frame.stem_stride}_group1",
             f"ConvNorm_H{h}_W{w}_Cin{last.c_out}_Cout{neck}_kernel1_stride1_group1",
             f"AvgP_H{h}_W{w}_Cin{neck}_Cout{neck}_kernel{h}_stride1",
             f"FC_Cin{neck}_Cout{frame.num_classes}"]
    return layers, fixed


def hwnasbench_table(path: str | Path, device: str, skeleton_name: str = "fbnet_cifar",
                     num_classes: int | None = None) -> LookupTable:
    """HW-NAS-Bench's `{device}_latency` table of the FBNet space (file hwnasbench_fbnet_lut.json) as a
    LookupTable for `skeleton_name` (fbnet_cifar at 32x32, fbnet_imagenet at 224x224)."""
    if skeleton_name not in HWNASBENCH_SIZES:
        raise ValueError(f"HW-NAS-Bench tables cover {', '.join(HWNASBENCH_SIZES)}, not {skeleton_name!r}")
    path = Path(path)
    record = json.loads(path.read_text())
    name = f"{device}_latency"
    if name not in record:
        raise ValueError(f"{path}: no table {name!r}; devices: {', '.join(record.get('devices', []))}")
    entries = record[name]
    frame = skeleton(skeleton_name).scaled(1.0, num_classes)
    size = HWNASBENCH_SIZES[skeleton_name]
    layer_keys, fixed_keys = _hwnasbench_keys(frame, size)
    absent = [k for k in fixed_keys + [k for row in layer_keys for k in row] if k not in entries]
    if absent:
        raise ValueError(f"{path}: table {name!r} has no entry {absent[0]} ({len(absent)} missing)")
    table = np.array([[entries[k] for k in row] for row in layer_keys], dtype=np.float64)
    return LookupTable(skeleton_name, (size, size), 1.0, frame.num_classes, f"hwnasbench-{device}", table,
                       float(sum(entries[k] for k in fixed_keys)),
                       {"source": "HW-NAS-Bench", "file": path.name, "table": name})
