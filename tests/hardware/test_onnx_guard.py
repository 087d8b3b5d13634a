"""What the agent refuses before a runtime sees the model: memory bombs (a tiny Expand, a symbolic model asked at a
huge input), external data (a disk oracle), control flow; the engine's own networks pass."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hardware.backends import to_onnx
from hardware.onnx_guard import ModelRefused, check_model
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
