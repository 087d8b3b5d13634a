"""What the device agent accepts of an ONNX model before any runtime sees it.

A model must parse as an ONNX protobuf, keep its weights inside the file (external data would make the runtime read
the agent's disk: a file-existence and file-size oracle), pass `onnx.checker`, have one input of the query's shape
(dimensions left symbolic are set to it), hold no control flow (If, Loop, Scan, SequenceMap, or any node with a
subgraph attribute: their subgraphs escape the checks below), and give every tensor a static shape at that input
under ONNX shape inference, each at most `max_tensor` bytes and all of them together (weights, input and every node's
output, as if none were freed: an upper bound on what a runtime holds) at most `max_memory` bytes. A 200-byte model
that expands to a 40000 x 40000 tensor, or a symbolic one asked at a huge input, is refused with a one-line reason
instead of taking the agent's memory. Only protobuf parsing and shape inference run: nothing is unpickled or
evaluated.

Every graph the model holds is checked, not only the main one: the subgraphs of every node attribute (If branches,
Loop and Scan bodies, any GRAPH or GRAPHS attribute, recursively), every model-local function (`model.functions`,
with its own subgraphs) and the graphs of `training_info`. In each, every tensor the model carries (initializers,
sparse initializers and tensors held in node attributes, such as Constant values) must keep its data inside the file
and declare at most `max_tensor` bytes as a dense tensor (a runtime densifies a sparse one), and no node may hold
control flow. The tensors a function computes are bounded as the main graph's are: the functions are inlined (as
runtimes inline them) after their calls are counted, and shape inference runs on the result. Graphs and function
calls nest at most `MAX_DEPTH` deep, and a model holds at most `MAX_NODES` nodes with each function counted as often
as it is called. A refusal names where: the main graph's tensors by name (`tensor 'y' (Expand) would take ...`),
anything else after its place (`function 'f': node 'n': tensor ...`, `node 'if' (If) then_branch: tensor ...`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import onnx
from onnx import AttributeProto, inliner, shape_inference

CONTROL_FLOW = ("If", "Loop", "Scan", "SequenceMap")
MAX_DEPTH = 8
"""Most graphs and function calls nested inside one another (the main graph is depth 0, a call or subgraph in it 1)."""
MAX_NODES = 100_000
"""Most nodes of a model: every graph, subgraph and function body, each function counted once per call."""
MAX_NAME = 80
"""Names from the model are cut to this many characters in a refusal."""
_TAG = re.compile(r"guard(\d+)(?:__\d+)*")  # a node's name as _inlined sets it, with the suffixes inlining adds


class ModelRefused(ValueError):
    """The model is not one the agent measures; the message is one line saying why."""


@dataclass
class _Scope:
    """One graph or function body: where it is (as a refusal names it, '' for the main graph), its nodes and the
    tensors it carries, each with its own place."""

    where: str
    nodes: list[onnx.NodeProto]
    tensors: list[tuple[str, onnx.TensorProto | onnx.SparseTensorProto]] = field(default_factory=list)

    def at(self, what: str) -> str:
        return f"{self.where}: {what}" if self.where else what


def check_model(body: bytes, shape: tuple[int, ...], max_tensor: int, max_memory: int) -> onnx.ModelProto:
    """The parsed model, or ModelRefused (module docstring)."""
    try:
        model = onnx.load_model_from_string(body)
    except Exception as error:  # protobuf DecodeError or whatever onnx raises on bytes that are not a model
        raise ModelRefused(f"the body is not a valid ONNX model: {_first_line(error)}") from None
    scopes = _scopes(model)
    _no_external_data(scopes)
    held = _held_tensors(scopes, max_tensor)
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # checker ValidationError and kin
        raise ModelRefused(f"the body is not a valid ONNX model: {_first_line(error)}") from None
    _one_input_of(model, shape)
    _no_control_flow(scopes)
    _bounded_calls(model)
    concrete, origins = _inlined(model)
    total = _bounded_tensors(concrete, shape, max_tensor, origins) + held
    if total > max_memory:
        raise ModelRefused(f"the model's tensors at the input {'x'.join(map(str, shape))} add up to "
                           f"{_mib(total)} MiB, over the agent's memory budget of {_mib(max_memory)} MiB "
                           f"(--max-memory-mib)")
    return model


def _quoted(name: str) -> str:
    """A name from the model, quoted with its control characters escaped, cut to MAX_NAME characters."""
    return repr(name if len(name) <= MAX_NAME else name[:MAX_NAME] + "...")


def _plain(name: str) -> str:
    """A name from the model (an operator, an attribute) unquoted, its control characters escaped, cut short."""
    return _quoted(name)[1:-1]


def _node(node: onnx.NodeProto, index: int) -> str:
    """'node 'name'' or, for a node without a name, 'node #index' (its place in its graph)."""
    return f"node {_quoted(node.name)}" if node.name else f"node #{index}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:400] if text else type(error).__name__


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f}" if size < 2**1000 else f"2^{size.bit_length() - 21}"


def _dims(dims: list[int]) -> str:
    shown = "x".join(map(str, dims)) or "none"
    return shown if len(shown) <= MAX_NAME else f"{len(dims)}-dimensional"


def _itemsize(elem_type: int) -> int | None:
    """Bytes of one element of an ONNX tensor type; None for a type that is not one (UNDEFINED, unknown)."""
    try:
        return max(1, onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
    except (KeyError, ValueError, TypeError):
        return None


def _scopes(model: onnx.ModelProto) -> list[_Scope]:
    """Every graph and function body of the model, depth first; ModelRefused when they nest deeper than MAX_DEPTH
    or hold more than MAX_NODES nodes."""
    scopes: list[_Scope] = []
    count = 0

    def graph(held: onnx.GraphProto, where: str, depth: int, outermost: str = "") -> None:
        if depth > MAX_DEPTH:
            raise ModelRefused(f"{outermost}: graphs nested more than {MAX_DEPTH} deep; the agent measures "
                               f"feed-forward networks only")
        scope = _Scope(where, list(held.node))
        scope.tensors += [(scope.at(f"tensor {_quoted(t.name)}"), t) for t in held.initializer]
        scope.tensors += [(scope.at(f"tensor {_quoted(t.values.name)}"), t) for t in held.sparse_initializer]
        nodes(scope, depth, outermost)

    def nodes(scope: _Scope, depth: int, outermost: str = "") -> None:
        nonlocal count
        count += len(scope.nodes)
        if count > MAX_NODES:
            raise ModelRefused(f"the model holds more than {MAX_NODES:,} nodes in its graphs and functions; the "
                               f"agent measures smaller models only")
        scopes.append(scope)
        for index, node in enumerate(scope.nodes):
            label = scope.at(f"{_node(node, index)} ({_plain(node.op_type)})")
            for attr in node.attribute:
                place = f"{label} attribute {_quoted(attr.name)}"
                if attr.ref_attr_name:  # a function's reference to its caller's attribute, walked with the caller
                    continue
                if attr.type == AttributeProto.TENSOR:
                    scope.tensors.append((place, attr.t))
                elif attr.type == AttributeProto.SPARSE_TENSOR:
                    scope.tensors.append((place, attr.sparse_tensor))
                elif attr.type == AttributeProto.TENSORS:
                    scope.tensors += [(f"{place}[{i}]", t) for i, t in enumerate(attr.tensors)]
                elif attr.type == AttributeProto.SPARSE_TENSORS:
                    scope.tensors += [(f"{place}[{i}]", t) for i, t in enumerate(attr.sparse_tensors)]
                elif attr.type == AttributeProto.GRAPH:
                    where = f"{label} {_plain(attr.name)}"
                    graph(attr.g, where, depth + 1, outermost or where)
                elif attr.type == AttributeProto.GRAPHS:
                    for i, held in enumerate(attr.graphs):
                        where = f"{label} {_plain(attr.name)}[{i}]"
                        graph(held, where, depth + 1, outermost or where)

    graph(model.graph, "", 0)
    for function in model.functions:
        nodes(_Scope(f"function {_quoted(function.name)}", list(function.node)), 0)
    for i, info in enumerate(model.training_info):
        graph(info.initialization, f"training_info[{i}] initialization", 0)
        graph(info.algorithm, f"training_info[{i}] algorithm", 0)
    return scopes


def _parts(tensor: onnx.TensorProto | onnx.SparseTensorProto) -> tuple[onnx.TensorProto, ...]:
    if isinstance(tensor, onnx.SparseTensorProto):
        return tensor.values, tensor.indices
    return (tensor,)


def _no_external_data(scopes: list[_Scope]) -> None:
    for scope in scopes:
        for where, tensor in scope.tensors:
            if any(part.data_location == onnx.TensorProto.EXTERNAL or part.external_data for part in _parts(tensor)):
                raise ModelRefused(f"{where} keeps its data in an external file; the agent measures self-contained "
                                   f"models only (save with save_as_external_data=False)")


def _held_tensors(scopes: list[_Scope], max_tensor: int) -> int:
    """Every tensor the model carries at most `max_tensor` bytes as the dense tensor it declares; returns their
    total (the larger of declared and stored bytes each)."""
    total = 0
    for scope in scopes:
        for where, tensor in scope.tensors:
            values = tensor.values if isinstance(tensor, onnx.SparseTensorProto) else tensor
            dims, itemsize = list(tensor.dims), _itemsize(values.data_type)
            if itemsize is None or any(d < 0 for d in dims):
                raise ModelRefused(f"{where} is not a tensor: element type {values.data_type}, dimensions "
                                   f"{_dims(dims)}")
            size = math.prod(dims) * itemsize
            if size > max_tensor:
                raise ModelRefused(f"{where} would take {_mib(size)} MiB as a dense {_dims(dims)} tensor, over the "
                                   f"agent's limit of {_mib(max_tensor)} MiB (--max-tensor-mib)")
            total += max(size, tensor.ByteSize())
    return total


def _input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    initialisers = {tensor.name for tensor in model.graph.initializer}
    initialisers |= {tensor.values.name for tensor in model.graph.sparse_initializer}
    inputs = [value for value in model.graph.input if value.name not in initialisers]
    if len(inputs) != 1:
        raise ModelRefused(f"the model has {len(inputs)} inputs; the agent feeds one (batch x 3 x height x width)")
    return inputs[0]


def _one_input_of(model: onnx.ModelProto, shape: tuple[int, ...]) -> None:
    value = _input(model)
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value.type.tensor_type.shape.dim]
    if len(dims) != len(shape) or any(isinstance(d, int) and d != s for d, s in zip(dims, shape)):
        raise ModelRefused(f"the model's input {_quoted(value.name)} is {'x'.join(map(str, dims)) or 'a scalar'} "
                           f"but the query asks for {'x'.join(map(str, shape))}; export it at that shape or change "
                           "batch/height/width")


def _no_control_flow(scopes: list[_Scope]) -> None:
    for scope in scopes:
        for index, node in enumerate(scope.nodes):
            graphs = [attr.name for attr in node.attribute
                      if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS)]
            if node.op_type in CONTROL_FLOW or graphs:
                what = (f"control flow ({node.op_type})" if node.op_type in CONTROL_FLOW
                        else f"a subgraph (attribute {_quoted(graphs[0])} of {_quoted(node.op_type)})")
                raise ModelRefused(f"{scope.at(_node(node, index))} holds {what}; the agent measures feed-forward "
                                   f"networks only")


def _key(node_or_function: onnx.NodeProto | onnx.FunctionProto) -> tuple[str, str, str]:
    """What a call names (domain, operator, overload) and what a function is called by."""
    if isinstance(node_or_function, onnx.FunctionProto):
        return node_or_function.domain, node_or_function.name, getattr(node_or_function, "overload", "")
    return node_or_function.domain, node_or_function.op_type, getattr(node_or_function, "overload", "")


def _bounded_calls(model: onnx.ModelProto) -> None:
    """The main graph with every call to a model-local function counted as the function's nodes: at most MAX_NODES
    nodes, calls nested at most MAX_DEPTH deep, no function calling itself. Counted, not expanded, so a few nodes
    that would expand to millions are refused before anything inlines them."""
    functions = {_key(function): function for function in model.functions}
    counted: dict[tuple[str, str, str], tuple[int, int]] = {}  # function -> (nodes, depth of its deepest call)

    def count(nodes: list[onnx.NodeProto], depth: int, calling: tuple[tuple[str, str, str], ...]) -> tuple[int, int]:
        total, deepest = 0, 0
        for node in nodes:
            key = _key(node)
            if key not in functions:
                total += 1
                continue
            name = f"function {_quoted(key[1])}"
            if key in calling:
                raise ModelRefused(f"{name} calls itself; the agent measures feed-forward networks only")
            if key not in counted:
                if depth + 1 > MAX_DEPTH:
                    raise ModelRefused(f"{name}: function calls nested more than {MAX_DEPTH} deep; the agent "
                                       f"measures feed-forward networks only")
                counted[key] = count(list(functions[key].node), depth + 1, (*calling, key))
            size, below = counted[key]
            if depth + 1 + below > MAX_DEPTH:
                raise ModelRefused(f"{name}: function calls nested more than {MAX_DEPTH} deep; the agent "
                                   f"measures feed-forward networks only")
            total, deepest = total + size, max(deepest, 1 + below)
            if total > MAX_NODES:
                break
        if total > MAX_NODES:
            raise ModelRefused(f"the model holds more than {MAX_NODES:,} nodes with its functions inlined; the "
                               f"agent measures smaller models only")
        return total, deepest

    count(list(model.graph.node), 0, ())


def _inlined(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[int, tuple[str, onnx.NodeProto, int]]]:
    """A copy of the model with its local functions inlined, and where each of its nodes came from: the node's tag
    -> (its function's place, the function's node, its index). Nodes of the main graph are not in the map."""
    concrete = onnx.ModelProto()
    concrete.CopyFrom(model)
    for sparse in list(concrete.graph.sparse_initializer):  # shape inference types them as sparse, runtimes as dense
        placeholder = concrete.graph.initializer.add()
        placeholder.name, placeholder.data_type = sparse.values.name, sparse.values.data_type
        placeholder.dims.extend(sparse.dims)
    concrete.graph.ClearField("sparse_initializer")
    if not concrete.functions:
        return concrete, {}
    origins, tag = {}, 0
    for node in concrete.graph.node:
        node.name, tag = f"guard{tag}", tag + 1
    for function, original in zip(concrete.functions, model.functions):
        for index, (node, source) in enumerate(zip(function.node, original.node)):
            origins[tag] = (f"function {_quoted(original.name)}", source, index)
            node.name, tag = f"guard{tag}", tag + 1
    try:
        return inliner.inline_local_functions(concrete), origins
    except Exception as error:  # whatever the inliner raises on functions it cannot expand
        raise ModelRefused(f"the model's functions cannot be inlined: {_first_line(error)}") from None


def _bounded_tensors(model: onnx.ModelProto, shape: tuple[int, ...], max_tensor: int,
                     origins: dict[int, tuple[str, onnx.NodeProto, int]]) -> int:
    """Every node output static-shaped at the input `shape` and at most `max_tensor` bytes (the input too); returns
    their total bytes. A node inlined from a function is named as the function names it (`origins`)."""
    for dim, size in zip(_input(model).type.tensor_type.shape.dim, shape):
        dim.Clear()
        dim.dim_value = size
    at = "x".join(map(str, shape))
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as error:  # InferenceError on shapes that cannot fit together
        raise ModelRefused(f"the model's shapes do not follow from the input {at}: {_first_line(error)}") from None
    graph = inferred.graph
    types = {value.name: value.type.tensor_type for value in [*graph.input, *graph.value_info, *graph.output]}
    names = [(_input(inferred).name, f"tensor {_quoted(_input(inferred).name)} (input)")]
    for node in graph.node:
        match = _TAG.fullmatch(node.name)
        origin = origins.get(int(match.group(1))) if match else None
        for position, out in enumerate(node.output):
            if not out:
                continue
            if origin is None:
                names.append((out, f"tensor {_quoted(out)} ({_plain(node.op_type)})"))
                continue
            where, source, index = origin
            shown = source.output[position] if position < len(source.output) else out
            names.append((out, f"{where}: {_node(source, index)}: tensor {_quoted(shown)} ({_plain(node.op_type)})"))
    total = 0
    for name, label in names:
        kind = types.get(name)
        dims = list(kind.shape.dim) if kind is not None and kind.HasField("shape") else None
        itemsize = _itemsize(kind.elem_type) if kind is not None else None
        if dims is None or itemsize is None or not all(d.HasField("dim_value") for d in dims):
            raise ModelRefused(f"{label} has no static shape at the input {at}; the agent measures static-shape "
                               f"models only")
        size = math.prod(d.dim_value for d in dims) * itemsize
        if size > max_tensor:
            raise ModelRefused(f"{label} would take {_mib(size)} MiB at the input {at}, over the agent's limit of "
                               f"{_mib(max_tensor)} MiB (--max-tensor-mib)")
        total += size
    return total
