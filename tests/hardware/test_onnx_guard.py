"""What the agent refuses before a runtime sees the model: memory bombs (a tiny Expand, a symbolic model asked at a
huge input), external data (a disk oracle), control flow, in the main graph and in every graph nested in it (If /
Loop / Scan bodies, model-local functions: a seeded fuzz of bombs at random depths); the engine's own networks pass."""

from __future__ import annotations

import math
import random
import re
import resource

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hardware.backends import to_onnx
from hardware.onnx_guard import MAX_DEPTH, MAX_NODES, ModelRefused, check_model
from spaces import build, largest

MIB = 2**20


def serialised(nodes, inputs, outputs, initializers=()) -> bytes:
    graph = helper.make_graph(nodes, "probe", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def image(name: str = "x", dims=(1, 3, 8, 8)) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


def test_an_expand_to_a_huge_tensor_is_refused_by_size() -> None:
    shape = numpy_helper.from_array(np.array([1, 3, 40000, 40000], dtype=np.int64), "shape")
    body = serialised([helper.make_node("Expand", ["x", "shape"], ["y"])], [image(dims=(1, 3, 1, 1))],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])], [shape])
    assert len(body) < 400
    with pytest.raises(ModelRefused, match="tensor 'y' \\(Expand\\) would take 18,311 MiB"):
        check_model(body, (1, 3, 1, 1), 1024 * MIB, 8192 * MIB)


def test_a_symbolic_model_at_a_huge_input_is_refused_by_size() -> None:
    symbolic = image(dims=("batch", 3, "height", "width"))
    body = serialised([helper.make_node("Relu", ["x"], ["y"])], [symbolic],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])])
    check_model(body, (1, 3, 64, 64), 1024 * MIB, 8192 * MIB)
    with pytest.raises(ModelRefused, match="tensor 'x' \\(input\\) would take 12,288 MiB at the input 64x3x4096x4096"):
        check_model(body, (64, 3, 4096, 4096), 1024 * MIB, 8192 * MIB)


def test_external_data_is_refused_before_anything_reads_it(tmp_path) -> None:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../../root/.squeezenas-token")
    body = serialised([helper.make_node("Add", ["x", "w"], ["y"])], [image()], [image("y")], [weight])
    with pytest.raises(ModelRefused, match="tensor 'w' keeps its data in an external file"):
        check_model(body, (1, 3, 8, 8), 1024 * MIB, 8192 * MIB)


def test_control_flow_is_refused() -> None:
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "branch", [], [image("z")])
    condition = numpy_helper.from_array(np.array(True), "c")
    body = serialised([helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)], [image()],
                      [image("y")], [condition])
    with pytest.raises(ModelRefused, match="control flow \\(If\\)"):
        check_model(body, (1, 3, 8, 8), 1024 * MIB, 8192 * MIB)


def test_the_engines_networks_pass() -> None:
    body = to_onnx(build(largest("small"), 0.5, 11), (1, 3, 128, 256))
    assert check_model(body, (1, 3, 128, 256), 1024 * MIB, 8192 * MIB).graph.node
    with pytest.raises(ModelRefused, match="over the agent's limit of 1 MiB"):
        check_model(body, (1, 3, 128, 256), MIB, 8192 * MIB)


def test_all_tensors_together_are_held_to_the_memory_budget() -> None:
    chain = [helper.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}"]) for i in range(8)]
    body = serialised(chain, [image(dims=(1, 3, 512, 512))], [image("t8", dims=(1, 3, 512, 512))])
    check_model(body, (1, 3, 512, 512), 4 * MIB, 28 * MIB)  # 9 tensors of 3 MiB
    with pytest.raises(ModelRefused, match="add up to 27 MiB, over the agent's memory budget of 20 MiB"):
        check_model(body, (1, 3, 512, 512), 4 * MIB, 20 * MIB)


# Nested graphs: model-local functions (FunctionProto) and the subgraphs of If, Loop and Scan. The guard walks every
# graph a model holds; a bomb placed anywhere is refused with one line naming where it is, without its tensor ever
# being built.

OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
SHAPE = (1, 3, 8, 8)
HUGE = 20000  # a 1 x 1 x 20000 x 20000 float tensor: 1,526 MiB, over the 1024 MiB limit below
HUGE_MIB = "1,526 MiB"
LIMITS = (1024 * MIB, 8192 * MIB)
BOMBS = ("ConstantOfShape", "Expand", "sparse Constant", "sparse initializer", "Loop")
CONTAINERS = ("function", "If", "Loop", "Scan")


def tensor_of(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(SHAPE))


def sparse(name: str, side: int) -> onnx.SparseTensorProto:
    """One stored value of a 1 x 1 x side x side float tensor: a few bytes that a runtime densifies."""
    values = helper.make_tensor(name, TensorProto.FLOAT, [1], [1.0])
    return helper.make_sparse_tensor(values, helper.make_tensor(f"{name}_at", TensorProto.INT64, [1], [0]),
                                     [1, 1, side, side])


class Nest:
    """One model: `payload` (a bomb, or its benign counterpart of the same structure) inside a chain of containers,
    each computing a 1x3x8x8 tensor from another; `expected` is the guard's refusal, None when the model must pass."""

    def __init__(self, chain: tuple[str, ...], bomb: str, big: bool):
        self.chain, self.bomb, self.side = chain, bomb, HUGE if big else 4
        self.functions: list[onnx.FunctionProto] = []
        self.count = 0
        self.scope = ""           # where the payload ends up, as the guard names it ("" is the main graph)
        self.control_flow = None  # the guard's refusal of the first If / Loop / Scan on the way, if any
        nodes, initializers, sparse_initializers = self.block(0, "x", "y", "")
        graph = helper.make_graph(nodes, "nest", [tensor_of("x")], [tensor_of("y")], initializers,
                                  sparse_initializer=sparse_initializers)
        self.body = helper.make_model(graph, opset_imports=OPSETS, functions=self.functions).SerializeToString()
        self.expected = self.refusal(big)

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def block(self, depth: int, x: str, y: str, scope: str) -> tuple[list, list, list]:
        """Nodes computing `y` from `x` in the graph or function named `scope`, with initializers for a graph."""
        if depth == len(self.chain):
            self.scope = scope
            return self.payload(x, y, in_function=scope.startswith("function"))
        container, prefix = self.chain[depth], f"{scope}: " if scope else ""
        if container == "function":
            name, inner_x, inner_y = self.fresh("f"), self.fresh("fx"), self.fresh("fy")
            nodes, _, _ = self.block(depth + 1, inner_x, inner_y, f"function '{name}'")
            self.functions.insert(0, helper.make_function("local", name, [inner_x], [inner_y], nodes,
                                                          opset_imports=OPSETS))
            return [helper.make_node(name, [x], [y], domain="local", name=self.fresh("call"))], [], []
        name = self.fresh(container.lower())
        if self.control_flow is None:
            self.control_flow = f"{prefix}node '{name}' holds control flow ({container})"
        if container == "If":
            branch = f"{prefix}node '{name}' (If) then_branch"
            then_out, else_out, condition = self.fresh("then"), self.fresh("else"), self.fresh("cond")
            nodes, initializers, sparse_initializers = self.block(depth + 1, x, then_out, branch)
            then_branch = helper.make_graph(nodes, "then", [], [tensor_of(then_out)], initializers,
                                            sparse_initializer=sparse_initializers)
            else_branch = helper.make_graph([helper.make_node("Identity", [x], [else_out])], "else", [],
                                            [tensor_of(else_out)])
            return [helper.make_node("Constant", [], [condition], value=numpy_helper.from_array(np.array(True))),
                    helper.make_node("If", [condition], [y], name=name, then_branch=then_branch,
                                     else_branch=else_branch)], [], []
        body_scope = f"{prefix}node '{name}' ({container}) body"
        state_in, state_out, extra_in, extra_out = (self.fresh(stem) for stem in ("in", "out", "extra", "extra_out"))
        nodes, initializers, sparse_initializers = self.block(depth + 1, state_in, state_out, body_scope)
        nodes.append(helper.make_node("Identity", [extra_in], [extra_out]))
        if container == "Loop":
            trips, condition = self.fresh("trips"), self.fresh("cond")
            inputs = [helper.make_tensor_value_info(self.fresh("i"), TensorProto.INT64, []),
                      helper.make_tensor_value_info(extra_in, TensorProto.BOOL, []), tensor_of(state_in)]
            outputs = [helper.make_tensor_value_info(extra_out, TensorProto.BOOL, []), tensor_of(state_out)]
            body = helper.make_graph(nodes, "body", inputs, outputs, initializers,
                                     sparse_initializer=sparse_initializers)
            return [helper.make_node("Constant", [], [trips], value=numpy_helper.from_array(np.array(1, np.int64))),
                    helper.make_node("Constant", [], [condition], value=numpy_helper.from_array(np.array(True))),
                    helper.make_node("Loop", [trips, condition, x], [y], name=name, body=body)], [], []
        sequence, stacked = self.fresh("sequence"), self.fresh("stacked")
        inputs = [tensor_of(state_in), helper.make_tensor_value_info(extra_in, TensorProto.FLOAT, [1])]
        outputs = [tensor_of(state_out), helper.make_tensor_value_info(extra_out, TensorProto.FLOAT, [1])]
        body = helper.make_graph(nodes, "body", inputs, outputs, initializers, sparse_initializer=sparse_initializers)
        steps = numpy_helper.from_array(np.ones((2, 1), np.float32))
        return [helper.make_node("Constant", [], [sequence], value=steps),
                helper.make_node("Scan", [x, sequence], [y, stacked], name=name, num_scan_inputs=1, body=body)], [], []

    def payload(self, x: str, y: str, in_function: bool) -> tuple[list, list, list]:
        side, bomb = self.side, self.bomb
        self.big_name, self.node_name, peak = self.fresh("big"), self.fresh("n"), self.fresh("peak")
        reduce_and_add = [helper.make_node("ReduceMax", [self.big_name], [peak], keepdims=0),
                          helper.make_node("Add", [x, peak], [y])]
        shape = numpy_helper.from_array(np.array([1, 1, side, side], np.int64))
        if bomb == "ConstantOfShape":
            dims = self.fresh("dims")
            return [helper.make_node("Constant", [], [dims], value=shape),
                    helper.make_node("ConstantOfShape", [dims], [self.big_name], name=self.node_name),
                    *reduce_and_add], [], []
        if bomb == "Expand":
            dims, one = self.fresh("dims"), self.fresh("one")
            return [helper.make_node("Constant", [], [dims], value=shape),
                    helper.make_node("Constant", [], [one], value=numpy_helper.from_array(np.array(1, np.float32))),
                    helper.make_node("Expand", [one, dims], [self.big_name], name=self.node_name),
                    *reduce_and_add], [], []
        if bomb == "sparse initializer" and not in_function:  # a function holds no initializers
            return reduce_and_add, [], [sparse(self.big_name, side)]
        if bomb in ("sparse Constant", "sparse initializer"):
            self.bomb = "sparse Constant"
            return [helper.make_node("Constant", [], [self.big_name], name=self.node_name,
                                     sparse_value=sparse(self.fresh("values"), side)), *reduce_and_add], [], []
        return self.loop_payload(x, y), [], []

    def loop_payload(self, x: str, y: str) -> list:
        """A Loop of one trip passing x through (the bomb), or Identity (its benign counterpart)."""
        if self.side != HUGE:
            return [helper.make_node("Identity", [x], [y])]
        trips, condition, i, c_in, c_out, v_in, v_out = (self.fresh(stem) for stem in
                                                         ("trips", "cond", "i", "c", "co", "v", "vo"))
        inputs = [helper.make_tensor_value_info(i, TensorProto.INT64, []),
                  helper.make_tensor_value_info(c_in, TensorProto.BOOL, []), tensor_of(v_in)]
        outputs = [helper.make_tensor_value_info(c_out, TensorProto.BOOL, []), tensor_of(v_out)]
        body = helper.make_graph([helper.make_node("Identity", [c_in], [c_out]),
                                  helper.make_node("Identity", [v_in], [v_out])], "body", inputs, outputs)
        return [helper.make_node("Constant", [], [trips], value=numpy_helper.from_array(np.array(1, np.int64))),
                helper.make_node("Constant", [], [condition], value=numpy_helper.from_array(np.array(True))),
                helper.make_node("Loop", [trips, condition, x], [y], name=self.node_name, body=body)]

    def refusal(self, big: bool) -> str | None:
        prefix = f"{self.scope}: " if self.scope else ""
        if self.bomb == "sparse Constant" and big:
            return f"{prefix}node '{self.node_name}' (Constant) attribute 'sparse_value' would take {HUGE_MIB}"
        if self.bomb == "sparse initializer" and big:
            return f"{prefix}tensor '{self.big_name}' would take {HUGE_MIB}"
        if self.control_flow:
            return self.control_flow
        if self.bomb == "Loop":
            return f"{prefix}node '{self.node_name}' holds control flow (Loop)" if big else None
        if not big or self.bomb not in ("ConstantOfShape", "Expand"):
            return None
        where = f"{prefix}node '{self.node_name}': " if self.scope else ""
        return f"{where}tensor '{self.big_name}' ({self.bomb}) would take {HUGE_MIB}"


def test_fuzz_bombs_in_nested_graphs_are_refused_by_name_and_memory_stays_flat() -> None:
    """Each bomb at random depths (0-3) inside functions and If / Loop / Scan bodies is refused with one line naming
    where it is; its benign counterpart of the same structure passes unless control flow holds it (refused by name).
    The bombs would take 1.5 GB each if anything built them; the process's peak memory does not move."""
    rng = random.Random(31)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seen = set()
    for bomb in BOMBS:
        for chain in [()] + [tuple(rng.choice(CONTAINERS) for _ in range(rng.randint(1, 3))) for _ in range(12)]:
            for big in (True, False):
                nest = Nest(chain, bomb, big)
                seen.update((container, depth) for depth, container in enumerate(chain))
                if nest.expected is None:
                    assert check_model(nest.body, SHAPE, *LIMITS).graph.node, (chain, bomb)
                    continue
                with pytest.raises(ModelRefused) as refused:
                    check_model(nest.body, SHAPE, *LIMITS)
                message = str(refused.value)
                assert message.startswith(nest.expected) and "\n" not in message, (chain, bomb, big, message)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 256, grown_mib
    assert {container for container, _ in seen} == set(CONTAINERS) and max(depth for _, depth in seen) == 2


def test_a_bomb_one_function_down_is_refused_as_at_the_top() -> None:
    """The same ConstantOfShape bomb in the main graph and inside a function: both refused, each named where it is
    (the function's own node and tensor names, not the names inlining gives them)."""
    top, inside = Nest((), "ConstantOfShape", True), Nest(("function",), "ConstantOfShape", True)
    for nest, says in ((top, f"tensor '{top.big_name}' (ConstantOfShape) would take 1,526 MiB"),
                       (inside, f"function 'f1': node '{inside.node_name}': tensor '{inside.big_name}' "
                                "(ConstantOfShape) would take 1,526 MiB at the input 1x3x8x8, over the agent's limit")):
        with pytest.raises(ModelRefused, match=re.escape(says)):
            check_model(nest.body, SHAPE, *LIMITS)


def test_external_data_inside_a_function_is_refused_before_the_checker_looks_for_the_file(tmp_path,
                                                                                          monkeypatch) -> None:
    """onnx.checker stats an external data file relative to the working directory: whether it exists shows in its
    message (a file-existence oracle). The guard refuses first, with the same line whether the file exists or not."""
    (tmp_path / "exists").write_text("secret")
    monkeypatch.chdir(tmp_path)
    answers = set()
    for location in ("exists", "absent"):
        weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        weight.external_data.add(key="location", value=location)
        nodes = [helper.make_node("Constant", [], ["w"], name="c", value=weight),
                 helper.make_node("Add", ["a", "w"], ["b"])]
        function = helper.make_function("local", "f", ["a"], ["b"], nodes, opset_imports=OPSETS)
        graph = helper.make_graph([helper.make_node("f", ["x"], ["y"], domain="local")], "g", [image()], [image("y")])
        body = helper.make_model(graph, opset_imports=OPSETS, functions=[function]).SerializeToString()
        with pytest.raises(ModelRefused, match="function 'f': node 'c' \\(Constant\\) attribute 'value' keeps its "
                                               "data in an external file") as refused:
            check_model(body, (1, 3, 8, 8), *LIMITS)
        answers.add(str(refused.value))
    assert len(answers) == 1


def test_nesting_depth_and_node_count_are_bounded() -> None:
    """Functions nested deeper than MAX_DEPTH, and a few hundred nodes that expand to more than MAX_NODES through
    calls, are refused by counting, before anything is inlined or inferred."""
    deep = Nest(("function",) * (MAX_DEPTH + 1), "ConstantOfShape", False)
    with pytest.raises(ModelRefused, match=f"nested more than {MAX_DEPTH} deep"):
        check_model(deep.body, SHAPE, *LIMITS)
    assert check_model(Nest(("function",) * (MAX_DEPTH - 1), "ConstantOfShape", False).body, SHAPE, *LIMITS)
    width = math.isqrt(MAX_NODES) + 1  # f2 calls f1 `width` times, f1 holds `width` nodes: more than MAX_NODES
    relus = [helper.make_node("Relu", [f"r{i}" if i else "a"], ["b" if i == width - 1 else f"r{i + 1}"])
             for i in range(width)]
    calls = [helper.make_node("f1", [f"c{i}" if i else "a"], ["b" if i == width - 1 else f"c{i + 1}"],
                              domain="local") for i in range(width)]
    functions = [helper.make_function("local", "f1", ["a"], ["b"], relus, opset_imports=OPSETS),
                 helper.make_function("local", "f2", ["a"], ["b"], calls, opset_imports=OPSETS)]
    graph = helper.make_graph([helper.make_node("f2", ["x"], ["y"], domain="local")], "g", [image()], [image("y")])
    body = helper.make_model(graph, opset_imports=OPSETS, functions=functions).SerializeToString()
    assert len(body) < 200_000
    with pytest.raises(ModelRefused, match=f"more than {MAX_NODES:,} nodes"):
        check_model(body, (1, 3, 8, 8), *LIMITS)


def test_a_function_constant_given_by_its_caller_is_checked_at_the_call() -> None:
    """A function's Constant may take its value from the calling node's attribute (ref_attr_name): the tensor is
    the caller's, checked there; a benign one passes, through inlining."""
    constant = helper.make_node("Constant", [], ["k"], name="c")
    constant.attribute.add(name="sparse_value", ref_attr_name="v", type=onnx.AttributeProto.SPARSE_TENSOR)
    nodes = [constant, helper.make_node("ReduceMax", ["k"], ["m"], keepdims=0),
             helper.make_node("Add", ["a", "m"], ["b"])]
    function = helper.make_function("local", "f", ["a"], ["b"], nodes, opset_imports=OPSETS, attributes=["v"])

    def body(side: int) -> bytes:
        call = helper.make_node("f", ["x"], ["y"], domain="local", name="call", v=sparse("values", side))
        graph = helper.make_graph([call], "g", [image()], [image("y")])
        return helper.make_model(graph, opset_imports=OPSETS, functions=[function]).SerializeToString()

    assert check_model(body(4), SHAPE, *LIMITS)
    with pytest.raises(ModelRefused, match=f"^node 'call' \\(f\\) attribute 'v' would take {HUGE_MIB}"):
        check_model(body(HUGE), SHAPE, *LIMITS)
