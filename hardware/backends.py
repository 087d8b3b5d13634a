"""Inference backends behind one small interface: `prepare(model, shape, threads)` returns a runner.

A runner runs the prepared network once on a fixed input and returns only when the output is ready (GPU work is
synchronised), so the protocol can time it with a host clock. Backends by name (`backend(name)`):

- `torch-cpu`: PyTorch eager on the CPU in fp32 under `torch.inference_mode`, `torch.set_num_threads(threads)`.
- `onnxruntime-cpu`: ONNX Runtime's CPUExecutionProvider in fp32 with `threads` intra-op threads, one inter-op.
- `torch-cuda-fp16`: PyTorch on CUDA in fp16 (cuDNN autotuning on), warmed up on a side stream, captured once as
  a CUDA graph and replayed (no per-kernel launch cost, as a deployed network would run), synchronised after
  each replay.
- `tensorrt-fp16`: a TensorRT engine built from ONNX with the FP16 builder flag (Jetson and other CUDA devices),
  run through named tensor addresses and `execute_async_v3` on a CUDA stream (TensorRT >= 8.5).

- `replay-edgegpu`, `replay-raspi4`, `replay-pixel3`, `replay-eyeriss`, `replay-fpga`: not a runtime but a recorded
  device: a whole network of the FBNet skeletons (fbnet_cifar at 32x32, fbnet_imagenet at 224x224, width 1, the
  table's classes) answered from HW-NAS-Bench's per-block tables measured on that device (Jetson TX2 with TensorRT,
  Raspberry Pi 4, Pixel 3, the Eyeriss and FPGA accelerators; the file given as `table`, latency.replay), summed as
  hardware/lookup.py sums them. Nothing is timed: `answer` gives the latency, the protocol records it as every timed
  run and marks the measurement `replay` in its provenance. The device is named after it (`hwnasbench-raspi4`).

Modules become ONNX through `to_onnx`: the TorchScript exporter (`dynamo=False`) at one static input shape, which
needs nothing beyond torch and onnx (the new exporter, `dynamo=True`, would also need onnxscript).

Asking for a GPU backend where CUDA or TensorRT is missing raises `BackendUnavailable` at once.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

Runner = Callable[[], Any]
Model = nn.Module | bytes
ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
CUDA_GRAPH_WARMUP = 3
TENSORRT_WORKSPACE = 1 << 30
MIN_TENSORRT = (8, 5)


class BackendUnavailable(RuntimeError):
    """The backend needs something this machine lacks (CUDA, a package); the message says what."""


def example_input(shape: tuple[int, ...]) -> torch.Tensor:
    """The fixed, seeded fp32 input every backend runs on, so their outputs can be compared."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def to_onnx(model: nn.Module, shape: tuple[int, ...]) -> bytes:
    """The eval-mode model as an ONNX graph (opset 17) for one static input shape (module docstring)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Expected here: the TorchScript exporter's deprecation notice and tracer notes on static shapes.
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example_input(shape),), buffer, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    return buffer.getvalue()


class Backend(ABC):
    """One way of running a network on a device; constructing it checks that the device and libraries exist.

    A backend names itself and its precision, says what the machine lacks (`missing`, None when it can run), gives
    its library's version and prepares a runner; added to `BACKENDS` it becomes a value of `latency.backend`. An
    example (fp64 on the CPU; a real one also sets its library's thread count to `threads`):

    >>> import torch
    >>> from torch import nn
    >>> from hardware.backends import Backend
    >>> class TorchFP64(Backend):
    ...     name, precision = "torch-cpu-fp64", "fp64"
    ...     @property
    ...     def version(self) -> str:
    ...         return torch.__version__
    ...     def prepare(self, model, shape, threads):
    ...         module, x = self._module(model).double(), torch.zeros(shape, dtype=torch.float64)
    ...         def run():
    ...             with torch.inference_mode():
    ...                 return module(x)
    ...         return run
    >>> run = TorchFP64().prepare(nn.Conv2d(3, 4, 1), (1, 3, 8, 8), threads=1)
    >>> tuple(run().shape), run().dtype
    ((1, 4, 8, 8), torch.float64)
    >>> class OnSomeNPU(TorchFP64):
    ...     name = "npu-fp16"
    ...     @classmethod
    ...     def missing(cls):
    ...         return "no NPU driver on this machine"
    >>> OnSomeNPU()
    Traceback (most recent call last):
    hardware.backends.BackendUnavailable: backend 'npu-fp16' is unavailable: no NPU driver on this machine
    """

    name: str
    precision: str
    gpu: bool = False
    takes_onnx: bool = False  # whether prepare() also runs ONNX bytes (what the device agent receives)
    device: str | None = None  # the device's name where the backend is its own device (a replay)

    def __init__(self) -> None:
        missing = self.missing()
        if missing:
            raise BackendUnavailable(f"backend {self.name!r} is unavailable: {missing}")

    @classmethod
    def missing(cls) -> str | None:
        """What this machine lacks for the backend, or None when it can run."""
        return None

    @property
    @abstractmethod
    def version(self) -> str:
        """The version of the library that runs the network."""

    @abstractmethod
    def prepare(self, model: Model, shape: tuple[int, ...], threads: int) -> Runner:
        """A runner of `model` (an nn.Module, or ONNX bytes where the backend takes them) on an input of `shape`."""

    def answer(self, model: Model, shape: tuple[int, ...]) -> tuple[float, dict] | None:
        """A recorded latency (ms) and its provenance instead of timing; None for a backend that runs the network."""
        return None

    def _module(self, model: Model) -> nn.Module:
        if not isinstance(model, nn.Module):
            onnx = " or ".join(name for name, kind in BACKENDS.items() if kind.takes_onnx)
            raise TypeError(f"backend {self.name!r} runs an nn.Module, got {type(model).__name__}; "
                            f"ONNX bytes go to {onnx}")
        return model.eval()


class TorchCPU(Backend):
    name = "torch-cpu"
    precision = "fp32"

    @property
    def version(self) -> str:
        return torch.__version__

    def prepare(self, model: Model, shape: tuple[int, ...], threads: int) -> Runner:
        module, x = self._module(model), example_input(shape)
        torch.set_num_threads(threads)

        def run() -> torch.Tensor:
            with torch.inference_mode():
                return module(x)

        return run


class OnnxRuntimeCPU(Backend):
    name = "onnxruntime-cpu"
    takes_onnx = True
    precision = "fp32"

    @classmethod
    def missing(cls) -> str | None:
        return None if _importable("onnxruntime") else "the onnxruntime package is not installed"

    @property
    def version(self) -> str:
        return import_module("onnxruntime").__version__

    def prepare(self, model: Model, shape: tuple[int, ...], threads: int) -> Runner:
        ort = import_module("onnxruntime")
        graph = to_onnx(self._module(model), shape) if isinstance(model, nn.Module) else model
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: example_input(shape).numpy()}
        return lambda: session.run(None, feed)[0]


class TorchCUDAFP16(Backend):
    name = "torch-cuda-fp16"
    precision = "fp16"
    gpu = True

    @classmethod
    def missing(cls) -> str | None:
        if torch.cuda.is_available():
            return None
        return f"torch {torch.__version__} sees no CUDA device (install a CUDA build of torch on a GPU machine)"

    @property
    def version(self) -> str:
        return f"{torch.__version__} (CUDA {torch.version.cuda})"

    def prepare(self, model: Model, shape: tuple[int, ...], threads: int) -> Runner:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = True
        module = copy.deepcopy(self._module(model)).half().cuda()
        x = example_input(shape).half().cuda()
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(CUDA_GRAPH_WARMUP):
                    module(x)
            torch.cuda.current_stream().wait_stream(side)
            with torch.cuda.graph(graph):
                output = module(x)
        torch.cuda.synchronize()
        return _GraphRunner(module, x, graph, output)


@dataclass
class _GraphRunner:
    """Replays a captured CUDA graph; holds the module and input whose memory the graph reads."""

    module: nn.Module
    input: torch.Tensor
    graph: Any
    output: torch.Tensor

    def __call__(self) -> torch.Tensor:
        self.graph.replay()
        torch.cuda.synchronize()
        return self.output


class TensorRTFP16(Backend):
    name = "tensorrt-fp16"
    takes_onnx = True
    precision = "fp16"
    gpu = True

    @classmethod
    def missing(cls) -> str | None:
        if not _importable("tensorrt"):
            return "the tensorrt package is not installed (JetPack on Jetson, `pip install tensorrt` elsewhere)"
        version = import_module("tensorrt").__version__
        if tuple(int(part) for part in version.split(".")[:2]) < MIN_TENSORRT:
            return f"tensorrt {version} predates named tensor addresses (needs >= 8.5, JetPack >= 5.1)"
        return TorchCUDAFP16.missing()

    @property
    def version(self) -> str:
        return import_module("tensorrt").__version__

    def prepare(self, model: Model, shape: tuple[int, ...], threads: int) -> Runner:
        trt = import_module("tensorrt")
        torch.set_num_threads(threads)
        graph = to_onnx(self._module(model), shape) if isinstance(model, nn.Module) else model
        logger = trt.Logger(trt.Logger.WARNING)
        engine = trt.Runtime(logger).deserialize_cuda_engine(_build_engine(trt, logger, graph))
        context = engine.create_execution_context()
        buffers = _bind_buffers(trt, engine, context, shape)
        outputs = [n for n in buffers if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        torch.cuda.synchronize()
        return _EngineRunner(engine, context, buffers, buffers[outputs[0]], torch.cuda.Stream())


@dataclass
class _EngineRunner:
    """Runs a TensorRT execution context on its stream; holds the engine and the bound CUDA buffers."""

    engine: Any
    context: Any
    buffers: dict[str, torch.Tensor]
    output: torch.Tensor
    stream: Any

    def __call__(self) -> torch.Tensor:
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return self.output


def _build_engine(trt: Any, logger: Any, graph: bytes) -> Any:
    """A serialized FP16 TensorRT engine of the ONNX graph; RuntimeError with the parser's messages on failure."""
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(graph):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, TENSORRT_WORKSPACE)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build an FP16 engine (its log above says why)")
    return serialized


def _bind_buffers(trt: Any, engine: Any, context: Any, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """CUDA tensors for every I/O tensor of the engine, bound to the context; the input holds example_input."""
    buffers = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        buffer = torch.empty(tuple(engine.get_tensor_shape(name)), dtype=dtype, device="cuda")
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            buffer.copy_(example_input(shape).to(dtype))
        context.set_tensor_address(name, buffer.data_ptr())
        buffers[name] = buffer
    return buffers


def _importable(package: str) -> bool:
    try:
        import_module(package)
    except ImportError:
        return False
    return True


class Replay(Backend):
    """A device recorded in HW-NAS-Bench's per-block tables (module docstring); `table` is the file."""

    precision = "as recorded"
    replayed: str  # the device's name in HW-NAS-Bench

    def __init__(self, table: str | Path | None = None) -> None:
        if table is None:
            raise BackendUnavailable(f"backend {self.name!r} answers from HW-NAS-Bench's tables: set latency.replay to "
                                     f"hwnasbench_fbnet_lut.json")
        self.table = Path(table).expanduser()
        if not self.table.is_file():
            raise BackendUnavailable(f"backend {self.name!r}: latency.replay {self.table} is not a file")
        self.tables: dict[tuple[str, int], Any] = {}
        super().__init__()

    @property
    def version(self) -> str:
        return f"HW-NAS-Bench {self.table.name} sha256:{hashlib.sha256(self.table.read_bytes()).hexdigest()[:12]}"

    def prepare(self, model: Model, shape: tuple[int, ...], threads: int) -> Runner:
        raise TypeError(f"backend {self.name!r} replays recorded latencies and runs nothing")

    def check(self, skeleton: str, shape: tuple[int, ...], width: float, classes: int) -> Any:
        """The recorded table of `skeleton` with `classes` classes, read once; ValueError naming the setting that
        does not match what HW-NAS-Bench recorded (space.skeleton, space.input_size, latency.batch, space.width,
        the classes, latency.replay for a file that is not its table)."""
        lookup = import_module("hardware.lookup")
        size = lookup.HWNASBENCH_SIZES.get(skeleton)
        if size is None or tuple(shape) != (1, 3, size, size):
            known = ", ".join(f"{name} at 1x3x{n}x{n}" for name, n in lookup.HWNASBENCH_SIZES.items())
            raise ValueError(f"backend {self.name!r} has recorded {known}, not {skeleton} at "
                             f"{'x'.join(map(str, shape))} (space.skeleton, space.input_size, latency.batch)")
        if width != 1.0:
            raise ValueError(f"backend {self.name!r} has recorded width 1.0 only, not space.width {width:g}")
        if (skeleton, classes) not in self.tables:
            try:
                self.tables[skeleton, classes] = lookup.hwnasbench_table(self.table, self.replayed, skeleton, classes)
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
                raise ValueError(f"latency.replay {self.table}: not HW-NAS-Bench's table file ({error})") from None
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"latency.replay {self.table}: {str(error).splitlines()[0]}") from None
        return self.tables[skeleton, classes]

    def answer(self, model: Model, shape: tuple[int, ...]) -> tuple[float, dict]:
        """The lookup-table sum of a whole network of an FBNet skeleton at the table's size, width 1 and classes;
        ValueError saying what does not match."""
        genotype = getattr(model, "genotype", None)
        if not isinstance(model, nn.Module) or genotype is None:
            raise ValueError(f"backend {self.name!r} answers whole networks built from a genotype, got "
                             f"{type(model).__name__}")
        stem = import_module("spaces.space").skeleton(genotype.skeleton).stem
        width = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).out_channels / stem
        classes = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] or [0]  # 0: no classifier
        table = self.check(genotype.skeleton, shape, width, classes[-1])
        return table.predict(genotype), {"source": "HW-NAS-Bench", **table.provenance,
                                         "note": "per-block latencies recorded on the device, summed; not timed here"}


def _replay(device: str) -> type[Replay]:
    return type(f"Replay_{device}", (Replay,), {"name": f"replay-{device}", "replayed": device,
                                                "device": f"hwnasbench-{device}", "__doc__": Replay.__doc__})


REPLAYED = ("edgegpu", "raspi4", "pixel3", "eyeriss", "fpga")
BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (TorchCPU, OnnxRuntimeCPU, TorchCUDAFP16, TensorRTFP16,
                                                            *map(_replay, REPLAYED))}


def backend(name: str, replay: str | Path | None = None) -> Backend:
    """The backend called `name` (a replay answers from the table file `replay`); ValueError naming the known ones,
    BackendUnavailable saying what is missing."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    kind = BACKENDS[name]
    return kind(replay) if issubclass(kind, Replay) else kind()
