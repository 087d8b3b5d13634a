"""What the device agent accepts of an ONNX model before any runtime sees it.

A model must parse as an ONNX protobuf, keep its weights inside the file (external data would make the runtime read
the agent's disk: a file-existence and file-size oracle), pass `onnx.checker`, have one input of the query's shape
(dimensions left symbolic are set to it), hold no control flow (If, Loop, Scan: their subgraphs escape the checks
below), and give every tensor a static shape at that input under ONNX shape inference, each at most `max_tensor`
bytes and all of them together (weights, input and every node's output, as if none were freed: an upper bound on
what a runtime holds) at most `max_memory` bytes. A 200-byte model that expands to a 40000 x 40000 tensor, or a
symbolic one asked at a huge input, is refused with a one-line reason instead of taking the agent's memory. Only
protobuf parsing and shape inference run: nothing is unpickled or evaluated.
"""

from __future__ import annotations

import math

import onnx
from onnx import shape_inference

CONTROL_FLOW = ("If", "Loop", "Scan", "SequenceMap")


class ModelRefused(ValueError):
    """The model is not one the agent measures; the message is one line saying why."""


def check_model(body: bytes, shape: tuple[int, ...], max_tensor: int, max_memory: int) -> onnx.ModelProto:
    """The parsed model, or ModelRefused (module docstring)."""
    try:
        model = onnx.load_model_from_string(body)
    except Exception as error:  # protobuf DecodeError or whatever onnx raises on bytes that are not a model
        raise ModelRefused(f"the body is not a valid ONNX model: {error}") from None
    _no_external_data(model)
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # checker ValidationError and kin
        raise ModelRefused(f"the body is not a valid ONNX model: {error}") from None
    _one_input_of(model, shape)
    _no_control_flow(model)
    total = _bounded_tensors(model, shape, max_tensor) + sum(len(t.SerializeToString()) for t in _tensors_of(model))
    if total > max_memory:
        raise ModelRefused(f"the model's tensors at the input {'x'.join(map(str, shape))} add up to "
                           f"{total / 2**20:,.0f} MiB, over the agent's memory budget of {max_memory / 2**20:,.0f} MiB "
                           f"(--max-memory-mib)")
    return model


def _tensors_of(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Initialisers and the tensors held in node attributes (Constant values and the like)."""
    graph = model.graph
    held = [attr.t for node in graph.node for attr in node.attribute if attr.type == onnx.AttributeProto.TENSOR]
    return [*graph.initializer, *held, *(sparse.values for sparse in graph.sparse_initializer)]


def _no_external_data(model: onnx.ModelProto) -> None:
    for tensor in _tensors_of(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise ModelRefused(f"tensor {tensor.name!r} keeps its data in an external file; the agent measures "
                               f"self-contained models only (save with save_as_external_data=False)")


def _input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    initialisers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initialisers]
    if len(inputs) != 1:
        raise ModelRefused(f"the model has {len(inputs)} inputs; the agent feeds one (batch x 3 x height x width)")
    return inputs[0]


def _one_input_of(model: onnx.ModelProto, shape: tuple[int, ...]) -> None:
    value = _input(model)
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value.type.tensor_type.shape.dim]
    if len(dims) != len(shape) or any(isinstance(d, int) and d != s for d, s in zip(dims, shape)):
        raise ModelRefused(f"the model's input {value.name!r} is {'x'.join(map(str, dims)) or 'a scalar'} but the "
                           f"query asks for {'x'.join(map(str, shape))}; export it at that shape or change "
                           "batch/height/width")


def _no_control_flow(model: onnx.ModelProto) -> None:
    found = sorted({node.op_type for node in model.graph.node if node.op_type in CONTROL_FLOW})
    if found:
        raise ModelRefused(f"the model holds control flow ({', '.join(found)}); the agent measures feed-forward "
                           f"networks only")


def _bounded_tensors(model: onnx.ModelProto, shape: tuple[int, ...], max_tensor: int) -> int:
    """Every node output static-shaped at the input `shape` and at most `max_tensor` bytes (the input too); returns
    their total bytes."""
    concrete = onnx.ModelProto()
    concrete.CopyFrom(model)
    for dim, size in zip(_input(concrete).type.tensor_type.shape.dim, shape):
        dim.Clear()
        dim.dim_value = size
    try:
        inferred = shape_inference.infer_shapes(concrete, strict_mode=True, data_prop=True)
    except Exception as error:  # InferenceError on shapes that cannot fit together
        raise ModelRefused(f"the model's shapes do not follow from the input {'x'.join(map(str, shape))}: "
                           f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    graph = inferred.graph
    types = {value.name: value.type.tensor_type for value in [*graph.input, *graph.value_info, *graph.output]}
    names = [(_input(inferred).name, "input")] + [(out, node.op_type) for node in graph.node
                                                  for out in node.output if out]
    total = 0
    for name, op in names:
        kind = types.get(name)
        dims = list(kind.shape.dim) if kind is not None and kind.HasField("shape") else None
        if dims is None or not all(d.HasField("dim_value") for d in dims):
            raise ModelRefused(f"tensor {name!r} ({op}) has no static shape at the input "
                               f"{'x'.join(map(str, shape))}; the agent measures static-shape models only")
        size = math.prod(d.dim_value for d in dims) * onnx.helper.tensor_dtype_to_np_dtype(kind.elem_type).itemsize
        if size > max_tensor:
            raise ModelRefused(f"tensor {name!r} ({op}) would take {size / 2**20:,.0f} MiB at the input "
                               f"{'x'.join(map(str, shape))}, over the agent's limit of {max_tensor / 2**20:,.0f} "
                               f"MiB (--max-tensor-mib)")
        total += size
    return total
